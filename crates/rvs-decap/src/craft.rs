//! Builders for the packets a director sends to a TUN dest (lvs-semantics.md
//! §16), with every checksum computed in full. Used by the tests (unit and
//! namespace) and handy for poking a running decapsulator by hand.

use std::net::{IpAddr, Ipv4Addr};

use wire::ethernet::ethertype;
use wire::ip::protocol;
use wire::{GrePacket, GuePacket, Ipv4Packet, UdpPacket, gre, gue, ipv4, udp};

/// An IPv4 header (no options, TTL 64, DF clear, id 1) followed by `payload`.
pub fn ipv4(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, payload: &[u8]) -> Vec<u8> {
    let mut b = vec![0u8; ipv4::HEADER_LEN + payload.len()];
    let total = u16::try_from(b.len()).unwrap_or(u16::MAX);
    let mut p = Ipv4Packet::new_unchecked(&mut b[..]);
    p.set_version(4);
    p.set_header_len(ipv4::HEADER_LEN);
    p.set_total_len(total);
    p.set_ident(1);
    p.set_flags_frag(false, false, 0);
    p.set_ttl(64);
    p.set_protocol(proto);
    p.set_src_addr(src);
    p.set_dst_addr(dst);
    p.fill_checksum();
    b[ipv4::HEADER_LEN..].copy_from_slice(payload);
    b
}

/// A UDP datagram in IPv4 with a correct UDP checksum.
pub fn ipv4_udp(src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut d = vec![0u8; udp::HEADER_LEN + payload.len()];
    let len = u16::try_from(d.len()).unwrap_or(u16::MAX);
    let mut u = UdpPacket::new_unchecked(&mut d[..]);
    u.set_src_port(sport);
    u.set_dst_port(dport);
    u.set_len(len);
    u.payload_mut().copy_from_slice(payload);
    u.fill_checksum(&IpAddr::V4(src), &IpAddr::V4(dst));
    ipv4(src, dst, protocol::UDP, &d)
}

/// IPIP: outer header (protocol 4) + `inner`.
pub fn ipip(src: Ipv4Addr, dst: Ipv4Addr, inner: &[u8]) -> Vec<u8> {
    ipv4(src, dst, protocol::IPIP, inner)
}

/// GRE as IPVS writes it: outer header (protocol 47), a 4-byte header, or 8
/// bytes with the checksum, protocol 0x0800, then `inner`.
pub fn gre(src: Ipv4Addr, dst: Ipv4Addr, inner: &[u8], with_checksum: bool) -> Vec<u8> {
    let hl = if with_checksum { gre::HEADER_LEN_CSUM } else { gre::HEADER_LEN };
    let mut g = vec![0u8; hl + inner.len()];
    let mut p = GrePacket::new_unchecked(&mut g[..]);
    p.fill_header(ethertype::IPV4, with_checksum);
    p.payload_mut().copy_from_slice(inner);
    p.fill_checksum();
    ipv4(src, dst, protocol::GRE, &g)
}

/// A GUE UDP payload: variant 0, proto 4, `hlen` zeroed option words, `inner`.
pub fn gue(inner: &[u8], hlen: u8) -> Vec<u8> {
    let hl = gue::HEADER_LEN + usize::from(hlen & 0x1f) * 4;
    let mut b = vec![0u8; hl + inner.len()];
    let mut p = GuePacket::new_unchecked(&mut b[..]);
    p.fill_header(protocol::IPIP, hlen, 0);
    p.payload_mut().copy_from_slice(inner);
    b
}
