//! GUE and GRE tunnel types (`--tun-type gue|gre`) and SCTP services through the node path.
//! Expected frames are built here independently (etherparse for IP/UDP, own one's-complement
//! and CRC32c code) and compared byte for byte.

mod common;

use common::*;
use etherparse::{IpNumber, Ipv4Header, UdpHeader};
use ipvs::{DestConfig, ForwardMethod, ServiceConfig, ServiceKey, TunnelCsum, TunnelType};
use node::Action;
use std::net::{IpAddr, Ipv4Addr};

fn vip() -> IpAddr {
    IpAddr::V4(VIP)
}

fn tunnel_lab(tun_type: TunnelType, csum: TunnelCsum, port: u16) -> Lab {
    let lab = Lab::new();
    let key = ServiceKey::tcp(vip(), 8443);
    lab.ipvs().add_service(ServiceConfig::new(key, "rr")).unwrap();
    let mut d = DestConfig::new(rs(3).into(), 8443).method(ForwardMethod::Tunnel);
    d.tun_type = tun_type;
    d.tun_csum = csum;
    d.tun_port = port;
    lab.ipvs().add_dest(&key, d).unwrap();
    lab
}

fn ones_complement(b: &[u8]) -> u16 {
    let mut s = 0u32;
    for c in b.chunks(2) {
        s += u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]) as u32;
    }
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

fn outer(protocol: IpNumber, payload_len: usize, df: bool) -> Vec<u8> {
    let mut o = Ipv4Header::new(payload_len as u16, 63, protocol, INT_ADDR.octets(), rs(3).octets()).unwrap();
    o.dont_fragment = df;
    o.identification = 0;
    o.header_checksum = o.calc_header_checksum();
    o.to_bytes().to_vec()
}

#[test]
fn gre_with_checksum() {
    let mut lab = tunnel_lab(TunnelType::Gre, TunnelCsum::Csum, 0);
    let syn = Pkt::tcp(CLIENT, 40000, VIP, 8443, SYN);
    let inner = syn.clone().ttl(63).ip_bytes();
    let mut gre = vec![0x80, 0x00, 0x08, 0x00, 0, 0, 0, 0];
    let mut body = gre.clone();
    body.extend_from_slice(&inner);
    let c = ones_complement(&body);
    gre[4..6].copy_from_slice(&c.to_be_bytes());
    let mut ip = outer(IpNumber::GRE, gre.len() + inner.len(), true);
    ip.extend_from_slice(&gre);
    ip.extend_from_slice(&inner);
    let want = eth(INT_MAC, rs_mac(3), &ip);
    let (a, out) = lab.send(EXT, &syn.build());
    assert_eq!(a, Action::Tx(INT));
    assert_eq!(out, want);
}

#[test]
fn gre_without_checksum() {
    let mut lab = tunnel_lab(TunnelType::Gre, TunnelCsum::NoCsum, 0);
    let syn = Pkt::tcp(CLIENT, 40001, VIP, 8443, SYN);
    let inner = syn.clone().ttl(63).ip_bytes();
    let mut ip = outer(IpNumber::GRE, 4 + inner.len(), true);
    ip.extend_from_slice(&[0, 0, 0x08, 0x00]);
    ip.extend_from_slice(&inner);
    let (a, out) = lab.send(EXT, &syn.build());
    assert_eq!(a, Action::Tx(INT));
    assert_eq!(out, eth(INT_MAC, rs_mac(3), &ip));
}

#[test]
fn gue_with_udp_checksum() {
    let mut lab = tunnel_lab(TunnelType::Gue, TunnelCsum::Csum, 6080);
    let syn = Pkt::tcp(CLIENT, 40002, VIP, 8443, SYN);
    let inner = syn.clone().ttl(63).ip_bytes();
    let (a, out) = lab.send(EXT, &syn.build());
    assert_eq!(a, Action::Tx(INT));
    // The source port comes from a flow hash in the local port range; take it from the
    // output and check everything else exactly.
    let sport = u16::from_be_bytes([out[34], out[35]]);
    assert!((32768..=60999).contains(&sport), "{sport}");
    let mut payload = vec![0x00, 0x04, 0x00, 0x00]; // GUE v0, no options, proto 4 (IPIP)
    payload.extend_from_slice(&inner);
    let o = {
        let mut o =
            Ipv4Header::new((8 + payload.len()) as u16, 63, IpNumber::UDP, INT_ADDR.octets(), rs(3).octets()).unwrap();
        o.dont_fragment = true;
        o.header_checksum = o.calc_header_checksum();
        o
    };
    let udp = UdpHeader::with_ipv4_checksum(sport, 6080, &o, &payload).unwrap();
    let mut ip = o.to_bytes().to_vec();
    ip.extend_from_slice(&udp.to_bytes());
    ip.extend_from_slice(&payload);
    assert_eq!(out, eth(INT_MAC, rs_mac(3), &ip));
    verify_checksums(&out);
    // The same flow always gets the same source port (one flow, one path through ECMP).
    let (_, again) = lab.send(EXT, &Pkt::tcp(CLIENT, 40002, VIP, 8443, ACK).build());
    assert_eq!(u16::from_be_bytes([again[34], again[35]]), sport);
}

#[test]
fn tunnel_mtu_accounts_for_the_encapsulation() {
    // A full-size DF segment does not fit once wrapped: ICMP fragmentation-needed with
    // MTU = 1500 − 20 (outer IP) − 12 (UDP + GUE).
    let mut lab = tunnel_lab(TunnelType::Gue, TunnelCsum::NoCsum, 6080);
    let big = Pkt::tcp(CLIENT, 40003, VIP, 8443, SYN).payload(&vec![0u8; 1460]);
    let (a, out) = lab.send(EXT, &big.build());
    assert_eq!(a, Action::Tx(EXT));
    assert_eq!((out[34], out[35]), (3, 4), "ICMP frag needed");
    assert_eq!(u16::from_be_bytes([out[40], out[41]]), 1468);
    let mut lab = tunnel_lab(TunnelType::Ipip, TunnelCsum::NoCsum, 0);
    let (_, out) = lab.send(EXT, &Pkt::tcp(CLIENT, 40004, VIP, 8443, SYN).payload(&vec![0u8; 1460]).build());
    assert_eq!(u16::from_be_bytes([out[40], out[41]]), 1480);
    verify_checksums(&out);
}

/// CRC32c (Castagnoli), bit by bit: independent of the wire crate's table version.
fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0x82F6_3B78 } else { crc >> 1 };
        }
    }
    !crc
}

/// An SCTP packet with one chunk, checksum stored as the kernel stores it (little-endian).
fn sctp(src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16, ttl: u8, chunk_type: u8) -> Vec<u8> {
    let mut s = Vec::new();
    s.extend_from_slice(&sport.to_be_bytes());
    s.extend_from_slice(&dport.to_be_bytes());
    s.extend_from_slice(&0x1234_5678u32.to_be_bytes());
    s.extend_from_slice(&[0; 4]);
    // chunk: type, flags, length 20, then 16 bytes of body
    s.extend_from_slice(&[chunk_type, 0, 0, 20]);
    s.extend_from_slice(&[0xab; 16]);
    let c = crc32c(&s);
    s[8..12].copy_from_slice(&c.to_le_bytes());
    let mut ip = Ipv4Header::new(s.len() as u16, ttl, IpNumber::SCTP, src.octets(), dst.octets()).unwrap();
    ip.identification = 9;
    ip.header_checksum = ip.calc_header_checksum();
    let mut out = ip.to_bytes().to_vec();
    out.extend_from_slice(&s);
    out
}

#[test]
fn sctp_nat_and_state_machine() {
    let mut lab = Lab::new();
    let key = ServiceKey::Addr { protocol: 132, addr: vip(), port: 3868 };
    lab.ipvs().add_service(ServiceConfig::new(key, "rr")).unwrap();
    lab.ipvs().add_dest(&key, DestConfig::new(rs(1).into(), 3869).method(ForwardMethod::Masq)).unwrap();
    const INIT: u8 = 1;
    const INIT_ACK: u8 = 2;
    const DATA: u8 = 0;
    // Not an INIT: not scheduled.
    let (a, _) = lab.send(EXT, &eth(CLIENT_MAC, EXT_MAC, &sctp(CLIENT, 5000, VIP, 3868, 64, DATA)));
    assert_eq!(a, Action::Local);
    let (a, out) = lab.send(EXT, &eth(CLIENT_MAC, EXT_MAC, &sctp(CLIENT, 5000, VIP, 3868, 64, INIT)));
    assert_eq!(a, Action::Tx(INT));
    assert_eq!(out, eth(INT_MAC, rs_mac(1), &sctp(CLIENT, 5000, rs(1), 3869, 63, INIT)));
    let state = |lab: &Lab| {
        let t = &lab.cx.ipvs.conns;
        t.ids().filter_map(|i| t.get(i)).find(|c| c.cport == 5000).map(|c| ipvs::proto::sctp::NAMES[c.state as usize])
    };
    assert_eq!(state(&lab), Some("INIT1"));
    // The INIT-ACK reply is rewritten back to the VIP with a new CRC32c.
    let reply = eth(rs_mac(1), INT_MAC, &sctp(rs(1), 3869, CLIENT, 5000, 64, INIT_ACK));
    let (a, out) = lab.send(INT, &reply);
    assert_eq!(a, Action::Tx(EXT));
    assert_eq!(out, eth(EXT_MAC, CLIENT_MAC, &sctp(VIP, 3868, CLIENT, 5000, 63, INIT_ACK)));
    assert_eq!(state(&lab), Some("C-SENT"));
}

/// rvs does not fragment: an IPv4 packet without DF that no longer fits once wrapped is answered
/// like a DF one (a deliberate difference from the kernel, docs/semantics.md).
#[test]
fn oversized_packet_without_df_is_not_sent_silently() {
    let lab = Lab::new();
    let key = ServiceKey::udp(vip(), 4500);
    lab.ipvs().add_service(ServiceConfig::new(key, "rr")).unwrap();
    lab.ipvs().add_dest(&key, DestConfig::new(rs(3).into(), 4500).method(ForwardMethod::Tunnel)).unwrap();
    let mut lab = lab;
    let big = Pkt::udp(CLIENT, 4501, VIP, 4500, &vec![0u8; 1472]);
    assert!(!big.df);
    let (a, out) = lab.send(EXT, &big.build());
    assert_eq!(a, Action::Tx(EXT));
    assert_eq!((out[34], out[35]), (3, 4), "ICMP frag needed");
    assert_eq!(u16::from_be_bytes([out[40], out[41]]), 1480);
    assert_eq!(lab.node.counters.read().drops_of(netfilter::DropReason::FragNeeded), 1);
}
