//! Decapsulation as a pure function: from the bytes a socket hands over to the
//! range of the inner IPv4 packet, or the reason to drop. No I/O here, so every
//! path is unit-tested with crafted frames.
//!
//! Formats are the ones a director writes for TUN dests (lvs-semantics.md §16):
//! IPIP (outer protocol 4), GRE (outer protocol 47, 4- or 8-byte header,
//! protocol 0x0800) and GUE (UDP payload: 4-byte header + `hlen` option words).

use core::ops::Range;

use wire::ethernet::ethertype;
use wire::ip::{self, protocol};
use wire::{Error, GrePacket, GuePacket, Ipv4Packet, checksum, gue};

/// What a socket delivers, which says where the inner packet starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encap {
    /// Raw `IPPROTO_IPIP` socket: outer IPv4 header, then the inner packet.
    Ipip,
    /// Raw `IPPROTO_GRE` socket: outer IPv4 header, GRE header, inner packet.
    Gre,
    /// UDP socket payload (the kernel already removed IP and UDP): GUE header,
    /// its options, inner packet.
    Gue,
}

impl Encap {
    pub const ALL: [Encap; 3] = [Encap::Ipip, Encap::Gre, Encap::Gue];

    pub fn label(self) -> &'static str {
        match self {
            Encap::Ipip => "ipip",
            Encap::Gre => "gre",
            Encap::Gue => "gue",
        }
    }

    /// Dense index for counter arrays.
    pub fn index(self) -> usize {
        self as usize
    }
}

/// Why a received packet was not delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// A header or a length field runs past the data (also: a datagram larger
    /// than the receive buffer).
    Truncated,
    /// Outer header is not IPv4, or GUE is not variant 0/1.
    BadVersion,
    /// Header length field out of range, GRE version/routing bits, remote
    /// checksum option pointing outside the packet.
    Malformed,
    /// The outer protocol is not the one this socket is for.
    WrongProtocol,
    /// The outer packet is still a fragment (the kernel reassembles before raw
    /// delivery, so this is unexpected).
    Fragment,
    /// A GUE control message (C bit): nothing to deliver.
    Control,
    /// The payload is not IPv4 (GUE proto ≠ 4, GRE type ≠ 0x0800, inner
    /// version ≠ 4).
    InnerNotIpv4,
    /// Outer or inner IPv4 header checksum, or GRE checksum, is wrong.
    BadChecksum,
}

impl DropReason {
    pub const ALL: [DropReason; 8] = [
        DropReason::Truncated,
        DropReason::BadVersion,
        DropReason::Malformed,
        DropReason::WrongProtocol,
        DropReason::Fragment,
        DropReason::Control,
        DropReason::InnerNotIpv4,
        DropReason::BadChecksum,
    ];
    pub const COUNT: usize = Self::ALL.len();

    /// Name used in the counter lines (`name=value`).
    pub fn label(self) -> &'static str {
        match self {
            DropReason::Truncated => "truncated",
            DropReason::BadVersion => "bad_version",
            DropReason::Malformed => "malformed",
            DropReason::WrongProtocol => "wrong_protocol",
            DropReason::Fragment => "fragment",
            DropReason::Control => "gue_control",
            DropReason::InnerNotIpv4 => "inner_not_ipv4",
            DropReason::BadChecksum => "bad_checksum",
        }
    }

    /// Dense index for counter arrays.
    pub fn index(self) -> usize {
        self as usize
    }
}

fn map_err(e: Error) -> DropReason {
    match e {
        Error::Truncated => DropReason::Truncated,
        Error::Malformed => DropReason::Malformed,
    }
}

/// Returns the range of `buf` holding the inner IPv4 packet (header to its
/// total length, without padding), after validating every header on the way.
///
/// `buf` is mutable for one case only: a GUE packet with the remote checksum
/// offload option, whose inner transport checksum is finished here as the
/// kernel's `fou` would (lvs-semantics.md §16, remcsum).
pub fn decapsulate(encap: Encap, buf: &mut [u8]) -> Result<Range<usize>, DropReason> {
    let (payload, remcsum) = match encap {
        Encap::Ipip => (outer(buf, protocol::IPIP)?, None),
        Encap::Gre => {
            let o = outer(buf, protocol::GRE)?;
            let g = gre(&buf[o.clone()])?;
            (o.start + g.start..o.start + g.end, None)
        }
        Encap::Gue => gue_payload(buf)?,
    };
    let inner = inner(&buf[payload.clone()])?;
    let inner = payload.start + inner.start..payload.start + inner.end;
    if let Some((start, offset)) = remcsum {
        finish_remcsum(&mut buf[inner.clone()], start, offset)?;
    }
    Ok(inner)
}

/// Outer IPv4 header as a raw socket delivers it; returns the payload range.
fn outer(buf: &[u8], proto: u8) -> Result<Range<usize>, DropReason> {
    match ip::version(buf) {
        None => return Err(DropReason::Truncated),
        Some(4) => {}
        Some(_) => return Err(DropReason::BadVersion),
    }
    let p = Ipv4Packet::new_checked(buf).map_err(map_err)?;
    if p.protocol() != proto {
        return Err(DropReason::WrongProtocol);
    }
    if p.is_fragment() {
        return Err(DropReason::Fragment);
    }
    if !p.verify_checksum() {
        return Err(DropReason::BadChecksum);
    }
    Ok(p.header_len()..usize::from(p.total_len()))
}

/// GRE header (RFC 2784; K/S tolerated); returns the payload range.
fn gre(buf: &[u8]) -> Result<Range<usize>, DropReason> {
    let g = GrePacket::new_checked(buf).map_err(map_err)?;
    if g.protocol_type() != ethertype::IPV4 {
        return Err(DropReason::InnerNotIpv4);
    }
    if !g.verify_checksum() {
        return Err(DropReason::BadChecksum);
    }
    Ok(g.header_len()..buf.len())
}

/// GUE (draft-ietf-intarea-gue): variant 0 with `hlen` option words, or
/// variant 1 (the IP header directly, first bits 01). Returns the payload range
/// and, with the remote checksum option, `(csum_start, csum_offset)`.
#[allow(clippy::type_complexity)]
fn gue_payload(buf: &[u8]) -> Result<(Range<usize>, Option<(usize, usize)>), DropReason> {
    let first = *buf.first().ok_or(DropReason::Truncated)?;
    match first >> 6 {
        0 => {}
        1 => return Ok((0..buf.len(), None)),
        _ => return Err(DropReason::BadVersion),
    }
    let g = GuePacket::new_checked(buf).map_err(map_err)?;
    if g.is_control() {
        return Err(DropReason::Control);
    }
    if g.protocol() != protocol::IPIP {
        return Err(DropReason::InnerNotIpv4);
    }
    // The PRIV flag puts a private flags word first among the options; its
    // REMCSUM bit adds {csum_start, csum_offset} right after it.
    let mut remcsum = None;
    if g.flags() & gue::flags::PRIV != 0 {
        let opts = g.options();
        let word = opts.get(..4).ok_or(DropReason::Malformed)?;
        let pflags = u32::from_be_bytes([word[0], word[1], word[2], word[3]]);
        if pflags & gue::PRIV_REMCSUM != 0 {
            let o = opts.get(4..8).ok_or(DropReason::Malformed)?;
            let start = usize::from(u16::from_be_bytes([o[0], o[1]]));
            let offset = usize::from(u16::from_be_bytes([o[2], o[3]]));
            remcsum = Some((start, offset));
        }
    }
    Ok((g.header_len()..buf.len(), remcsum))
}

/// The inner packet; returns its range (up to its total length).
fn inner(buf: &[u8]) -> Result<Range<usize>, DropReason> {
    match ip::version(buf) {
        None => return Err(DropReason::Truncated),
        Some(4) => {}
        Some(_) => return Err(DropReason::InnerNotIpv4),
    }
    let p = Ipv4Packet::new_checked(buf).map_err(map_err)?;
    if !p.verify_checksum() {
        return Err(DropReason::BadChecksum);
    }
    Ok(0..usize::from(p.total_len()))
}

/// Remote checksum offload: the option carries `{csum_start, csum_start + csum_offset}` (the
/// second value is the absolute position of the checksum field, as the kernel's fou and IPVS
/// encoders write it and `remcsum_adjust` reads it). The field holds the pseudo-header sum (a
/// CHECKSUM_PARTIAL packet); summing from `start` to the end and complementing gives the
/// final checksum.
fn finish_remcsum(inner: &mut [u8], start: usize, at: usize) -> Result<(), DropReason> {
    if start > at || start > inner.len() || at + 2 > inner.len() {
        return Err(DropReason::Malformed);
    }
    let c = checksum::checksum(&inner[start..]);
    inner[at..at + 2].copy_from_slice(&c.to_be_bytes());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::craft;
    use std::net::{IpAddr, Ipv4Addr};
    use wire::UdpPacket;

    const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);
    const VIP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 100);
    const DIRECTOR: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 1);
    const RIP: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 11);

    fn inner_pkt() -> Vec<u8> {
        craft::ipv4_udp(CLIENT, 40000, VIP, 53, b"hello")
    }

    fn decap(encap: Encap, mut buf: Vec<u8>) -> Result<Vec<u8>, DropReason> {
        decapsulate(encap, &mut buf).map(|r| buf[r].to_vec())
    }

    #[test]
    fn ipip_gives_inner_packet() {
        let inner = inner_pkt();
        let mut outer = craft::ipip(DIRECTOR, RIP, &inner);
        outer.extend_from_slice(&[0, 0, 0]); // padding past the total length is not delivered
        assert_eq!(decap(Encap::Ipip, outer), Ok(inner.clone()));
        // Inner padding (total length shorter than the payload) is cut too.
        let mut padded = inner.clone();
        padded.extend_from_slice(&[0xee; 4]);
        assert_eq!(decap(Encap::Ipip, craft::ipip(DIRECTOR, RIP, &padded)), Ok(inner));
    }

    #[test]
    fn ipip_with_outer_options() {
        let inner = inner_pkt();
        let mut outer = craft::ipip(DIRECTOR, RIP, &inner);
        // Grow the outer header to 24 bytes with a NOP-padded option.
        outer.splice(20..20, [1u8, 1, 1, 0]);
        let total = outer.len() as u16;
        let mut p = Ipv4Packet::new_unchecked(&mut outer[..]);
        p.set_header_len(24);
        p.set_total_len(total);
        p.fill_checksum();
        assert_eq!(decap(Encap::Ipip, outer), Ok(inner));
    }

    #[test]
    fn gre_plain_and_checksummed() {
        let inner = inner_pkt();
        assert_eq!(decap(Encap::Gre, craft::gre(DIRECTOR, RIP, &inner, false)), Ok(inner.clone()));
        assert_eq!(decap(Encap::Gre, craft::gre(DIRECTOR, RIP, &inner, true)), Ok(inner.clone()));
        // A flipped payload bit breaks the GRE checksum, caught before the inner header.
        let mut bad = craft::gre(DIRECTOR, RIP, &inner, true);
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert_eq!(decap(Encap::Gre, bad), Err(DropReason::BadChecksum));
        // IPv6 payload type.
        let mut v6 = craft::gre(DIRECTOR, RIP, &inner, false);
        v6[22..24].copy_from_slice(&ethertype::IPV6.to_be_bytes());
        assert_eq!(decap(Encap::Gre, v6), Err(DropReason::InnerNotIpv4));
        // Version bits set.
        let mut ver = craft::gre(DIRECTOR, RIP, &inner, false);
        ver[21] = 1;
        assert_eq!(decap(Encap::Gre, ver), Err(DropReason::Malformed));
        // A GRE packet read on the IPIP socket (and the reverse) is refused.
        assert_eq!(decap(Encap::Ipip, craft::gre(DIRECTOR, RIP, &inner, false)), Err(DropReason::WrongProtocol));
        assert_eq!(decap(Encap::Gre, craft::ipip(DIRECTOR, RIP, &inner)), Err(DropReason::WrongProtocol));
    }

    #[test]
    fn gue_plain_options_and_direct() {
        let inner = inner_pkt();
        assert_eq!(decap(Encap::Gue, craft::gue(&inner, 0)), Ok(inner.clone()));
        // Two option words (unknown to us, no PRIV flag) are skipped by hlen.
        let with_opts = craft::gue(&inner, 2);
        assert_eq!(with_opts.len(), 12 + inner.len());
        assert_eq!(decap(Encap::Gue, with_opts), Ok(inner.clone()));
        // Variant 1: the IPv4 header directly.
        assert_eq!(decap(Encap::Gue, inner.clone()), Ok(inner.clone()));
        // Control message, wrong proto, variant 2, truncated options.
        let mut ctl = craft::gue(&inner, 0);
        ctl[0] |= 0x20;
        assert_eq!(decap(Encap::Gue, ctl), Err(DropReason::Control));
        let mut v6 = craft::gue(&inner, 0);
        v6[1] = protocol::IPV6;
        assert_eq!(decap(Encap::Gue, v6), Err(DropReason::InnerNotIpv4));
        let mut v2 = craft::gue(&inner, 0);
        v2[0] = 0x80;
        assert_eq!(decap(Encap::Gue, v2), Err(DropReason::BadVersion));
        assert_eq!(decap(Encap::Gue, vec![0x1f, 4, 0, 0, 0x45]), Err(DropReason::Truncated));
        assert_eq!(decap(Encap::Gue, vec![]), Err(DropReason::Truncated));
    }

    #[test]
    fn gue_remcsum_finishes_inner_checksum() {
        let inner = inner_pkt();
        let (src, dst) = (IpAddr::V4(CLIENT), IpAddr::V4(VIP));
        // Make it a CHECKSUM_PARTIAL packet: the field holds the folded pseudo
        // header sum, as a sender with offload would leave it.
        let mut partial = inner.clone();
        let udp_len = partial.len() - 20;
        let pseudo = checksum::fold(checksum::pseudo_header(&src, &dst, protocol::UDP, udp_len as u32));
        partial[26..28].copy_from_slice(&pseudo.to_be_bytes());
        let mut pkt = vec![0x02, protocol::IPIP, 0, 1];
        pkt.extend_from_slice(&gue::PRIV_REMCSUM.to_be_bytes());
        pkt.extend_from_slice(&[0, 20, 0, 26]); // csum_start = UDP header, field at 20 + 6
        pkt.extend_from_slice(&partial);
        let out = decap(Encap::Gue, pkt.clone()).expect("delivered");
        assert_eq!(out, inner, "checksum finished to the full value");
        assert!(UdpPacket::new_checked(&out[20..]).expect("udp").verify_checksum(&src, &dst));
        // An option pointing past the packet is refused.
        let mut bad = pkt;
        bad[10..12].copy_from_slice(&500u16.to_be_bytes());
        assert_eq!(decap(Encap::Gue, bad), Err(DropReason::Malformed));
        // PRIV flag without room for the private word.
        let mut short = vec![0x00, protocol::IPIP, 0, 1];
        short.extend_from_slice(&inner);
        assert_eq!(decap(Encap::Gue, short), Err(DropReason::Malformed));
    }

    #[test]
    fn garbage_is_dropped_with_a_reason() {
        let inner = inner_pkt();
        let ok = craft::ipip(DIRECTOR, RIP, &inner);
        // Every strict prefix is truncated (outer total length, then inner).
        for len in 0..ok.len() {
            let got = decap(Encap::Ipip, ok[..len].to_vec());
            assert_eq!(got, Err(DropReason::Truncated), "prefix {len}");
        }
        // Outer total length shortened so the inner packet is cut.
        let mut cut = ok.clone();
        let mut p = Ipv4Packet::new_unchecked(&mut cut[..]);
        p.set_total_len(30);
        p.fill_checksum();
        assert_eq!(decap(Encap::Ipip, cut), Err(DropReason::Truncated));
        // Outer version 6.
        let mut v6 = ok.clone();
        v6[0] = 0x65;
        assert_eq!(decap(Encap::Ipip, v6), Err(DropReason::BadVersion));
        // Outer IHL 4.
        let mut ihl = ok.clone();
        ihl[0] = 0x44;
        assert_eq!(decap(Encap::Ipip, ihl), Err(DropReason::Malformed));
        // Outer header checksum wrong.
        let mut csum = ok.clone();
        csum[8] ^= 1;
        assert_eq!(decap(Encap::Ipip, csum), Err(DropReason::BadChecksum));
        // Outer fragment.
        let mut frag = ok.clone();
        let mut p = Ipv4Packet::new_unchecked(&mut frag[..]);
        p.set_flags_frag(false, true, 0);
        p.fill_checksum();
        assert_eq!(decap(Encap::Ipip, frag), Err(DropReason::Fragment));
        // Inner version 6 (an IPv6 header inside protocol 4).
        let mut in6 = inner.clone();
        in6[0] = 0x60;
        assert_eq!(decap(Encap::Ipip, craft::ipip(DIRECTOR, RIP, &in6)), Err(DropReason::InnerNotIpv4));
        // Inner header checksum wrong.
        let mut inbad = inner.clone();
        inbad[10] ^= 0xff;
        assert_eq!(decap(Encap::Ipip, craft::ipip(DIRECTOR, RIP, &inbad)), Err(DropReason::BadChecksum));
        // Inner too short for a header, and empty.
        assert_eq!(decap(Encap::Ipip, craft::ipip(DIRECTOR, RIP, &inner[..10])), Err(DropReason::Truncated));
        assert_eq!(decap(Encap::Ipip, craft::ipip(DIRECTOR, RIP, &[])), Err(DropReason::Truncated));
    }

    #[test]
    fn random_bytes_never_panic() {
        // xorshift64: deterministic garbage through every path.
        let mut s = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        };
        let inner = inner_pkt();
        let seeds =
            [craft::ipip(DIRECTOR, RIP, &inner), craft::gre(DIRECTOR, RIP, &inner, true), craft::gue(&inner, 1)];
        for i in 0..30_000 {
            let encap = Encap::ALL[i % 3];
            let mut b = seeds[i % 3].clone();
            // Flip a few bytes and cut at a random length.
            for _ in 0..(next() % 4) {
                let at = (next() as usize) % b.len();
                b[at] = next() as u8;
            }
            b.truncate((next() as usize) % (b.len() + 1));
            if let Ok(r) = decapsulate(encap, &mut b) {
                assert!(r.end <= b.len() && r.len() >= 20);
                assert_eq!(b[r.start] >> 4, 4);
            }
        }
    }
}
