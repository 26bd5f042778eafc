//! Tunnel headers between the outer IP header and the inner packet, as IPVS writes them for
//! `--tun-type gue` and `--tun-type gre` (lvs-semantics.md §16 TUN, §7 tunnel types/flags).
//! Pure functions over byte slices: the TUN transmitter opens the gap, splits the frame into
//! `(headers, inner)` and calls these; the outer IP header is its business.
//!
//! The packet views and the Internet checksum come from the `wire` crate; these functions only
//! add what the views cannot do alone: checksums over a header and a payload that sit in two
//! slices, and the kernel's choice of fields.

// Wired into the TUN transmitter by the engine; until then only the tests use it.

use std::net::IpAddr;

use wire::checksum;
use wire::gre::{self, GrePacket};
use wire::gue::{self, GuePacket};
use wire::ip::protocol;
use wire::udp::{self, UdpPacket};

use crate::dest::{TunnelCsum, TunnelType};

/// Why a tunnel header could not be written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EncapError {
    /// The header buffer is shorter than the header.
    BufferTooSmall,
    /// The UDP datagram would be longer than 65535 bytes.
    TooLong,
    /// The partial checksum does not point inside the inner packet.
    BadCsumOffset,
}

/// The kernel's default local port range (`ip_local_port_range`), from which the GUE source
/// port is drawn (§16).
pub const LOCAL_PORT_MIN: u16 = 32768;
pub const LOCAL_PORT_MAX: u16 = 60999;

/// Private flags word plus the remote checksum option {start, offset} (`GUE_LEN_PRIV` +
/// `GUE_PLEN_REMCSUM`).
pub const GUE_REMCSUM_OPT_LEN: usize = 8;

/// An inner packet whose transport checksum is left to offload (the kernel's
/// `CHECKSUM_PARTIAL`): the checksum field holds only the pseudo-header sum, and the sum from
/// `start` to the end remains to be folded in. Both relative to the inner packet; `offset` is
/// counted from `start` (the kernel's `csum_start` and `csum_offset`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PartialCsum {
    pub start: u16,
    pub offset: u16,
}

/// GRE header length: 4, or 8 with the checksum.
#[inline]
pub fn gre_header_len(csum: bool) -> usize {
    if csum { gre::HEADER_LEN_CSUM } else { gre::HEADER_LEN }
}

/// Writes the GRE header into `buf[..len]` and returns `len` (4, or 8 with `csum`). The header
/// carries no key and no sequence number; with `csum` the C bit is set and the checksum covers
/// the GRE header and `inner` (RFC 2784 §2.5). `inner_proto` is the EtherType of `inner`
/// (0x0800 or 0x86DD). GRE has no remote checksum offload: ipvsadm refuses remcsum for it,
/// and the kernel checksums only for `csum`, which [`gre_csum`] maps.
#[inline]
pub fn write_gre(buf: &mut [u8], inner_proto: u16, csum: bool, inner: &[u8]) -> Result<usize, EncapError> {
    let len = gre_header_len(csum);
    let hdr = buf.get_mut(..len).ok_or(EncapError::BufferTooSmall)?;
    GrePacket::new_unchecked(&mut *hdr).fill_header(inner_proto, csum);
    if csum {
        // The header length is even, so the two sums concatenate.
        let c = !checksum::fold(checksum::combine(checksum::sum(hdr), checksum::sum(inner)));
        hdr[4..6].copy_from_slice(&c.to_be_bytes());
    }
    Ok(len)
}

/// Whether a GRE tunnel checksums: only with `csum` (the kernel tests the CSUM flag alone).
#[inline]
pub fn gre_csum(csum: TunnelCsum) -> bool {
    csum == TunnelCsum::Csum
}

/// The GUE encapsulation of one packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gue {
    /// From [`gue_source_port`].
    pub src_port: u16,
    /// The dest's `--tun-port`.
    pub dst_port: u16,
    /// IP protocol of the inner packet: 4 (IPv4) or 41 (IPv6).
    pub inner_proto: u8,
    pub csum: TunnelCsum,
    /// Set when the inner checksum is left to offload; only then does remcsum add its option.
    pub partial: Option<PartialCsum>,
}

impl Gue {
    /// Whether the remote checksum option is written: remcsum on an offloaded checksum.
    #[inline]
    fn remcsum(&self) -> Option<PartialCsum> {
        self.partial.filter(|_| self.csum == TunnelCsum::RemCsum)
    }

    /// UDP + GUE header length: 12, or 20 with the remote checksum option.
    #[inline]
    pub fn header_len(&self) -> usize {
        udp::HEADER_LEN + gue::HEADER_LEN + if self.remcsum().is_some() { GUE_REMCSUM_OPT_LEN } else { 0 }
    }
}

/// Writes the UDP and GUE headers into `buf[..len]` and returns `len` ([`Gue::header_len`]).
///
/// - UDP: ports from `g`, length = headers + `inner`; the checksum over the outer pseudo header
///   (`outer_src`, `outer_dst`), the headers and `inner` with `csum` or `remcsum`, 0 with
///   `nocsum` (a computed 0 is sent as `ffff`).
/// - GUE: variant 0, data message, proto `g.inner_proto`, flags 0; with remcsum on an offloaded
///   checksum, flags = PRIV, a private flags word with REMCSUM and the option
///   {csum_start, csum_start + csum_offset}, both relative to the inner packet, as the kernel's
///   `ipvs_gue_encap` writes them. The inner checksum is then left for the receiver to finish.
#[inline]
pub fn write_gue(
    buf: &mut [u8],
    g: &Gue,
    outer_src: IpAddr,
    outer_dst: IpAddr,
    inner: &[u8],
) -> Result<usize, EncapError> {
    let len = g.header_len();
    let hdr = buf.get_mut(..len).ok_or(EncapError::BufferTooSmall)?;
    let udp_len = u16::try_from(len + inner.len()).map_err(|_| EncapError::TooLong)?;
    let remcsum = g.remcsum();
    let option = match remcsum {
        Some(p) => {
            let at = p.start.checked_add(p.offset).ok_or(EncapError::BadCsumOffset)?;
            if usize::from(p.start) > inner.len() || usize::from(at) + 2 > inner.len() {
                return Err(EncapError::BadCsumOffset);
            }
            Some((p.start, at))
        }
        None => None,
    };

    let (udp_hdr, gue_hdr) = hdr.split_at_mut(udp::HEADER_LEN);
    let mut gp = GuePacket::new_unchecked(gue_hdr);
    match option {
        Some((start, at)) => {
            gp.fill_header(g.inner_proto, (GUE_REMCSUM_OPT_LEN / 4) as u8, gue::flags::PRIV);
            let opts = gp.options_mut();
            opts[..4].copy_from_slice(&gue::PRIV_REMCSUM.to_be_bytes());
            opts[4..6].copy_from_slice(&start.to_be_bytes());
            opts[6..8].copy_from_slice(&at.to_be_bytes());
        }
        None => gp.fill_header(g.inner_proto, 0, 0),
    }

    let mut u = UdpPacket::new_unchecked(udp_hdr);
    u.set_src_port(g.src_port);
    u.set_dst_port(g.dst_port);
    u.set_len(udp_len);
    u.set_checksum(0);
    if g.csum != TunnelCsum::NoCsum {
        // Both headers have even lengths, so the sums concatenate.
        let s = checksum::combine(
            checksum::pseudo_header(&outer_src, &outer_dst, protocol::UDP, u32::from(udp_len)),
            checksum::combine(checksum::sum(hdr), checksum::sum(inner)),
        );
        let c = !checksum::fold(s);
        hdr[udp::CHECKSUM_OFFSET..udp::CHECKSUM_OFFSET + 2]
            .copy_from_slice(&(if c == 0 { 0xffff } else { c }).to_be_bytes());
    }
    Ok(len)
}

/// The GUE source port for a flow: the kernel's `udp_flow_src_port` over the default local
/// port range. The hash is folded (`h ^ h << 16`) so the port does not leak it, then scaled
/// into [`LOCAL_PORT_MIN`, `LOCAL_PORT_MAX`); like the kernel, the top port itself is never
/// produced.
#[inline]
pub fn gue_source_port(flow_hash: u32) -> u16 {
    let h = flow_hash ^ (flow_hash << 16);
    let span = u64::from(LOCAL_PORT_MAX - LOCAL_PORT_MIN);
    LOCAL_PORT_MIN + ((u64::from(h) * span) >> 32) as u16
}

/// Bytes a tunnel adds between the outer IP header and the inner packet, to subtract from the
/// route MTU after the outer header (§16): IPIP 0; GUE 8 + 4, plus 8 with remcsum on an
/// offloaded checksum (`csum_partial`); GRE 4, or 8 with `csum`.
#[inline]
pub fn overhead(tun_type: TunnelType, csum: TunnelCsum, csum_partial: bool) -> usize {
    match tun_type {
        TunnelType::Ipip => 0,
        TunnelType::Gue => {
            let opt = if csum == TunnelCsum::RemCsum && csum_partial { GUE_REMCSUM_OPT_LEN } else { 0 };
            udp::HEADER_LEN + gue::HEADER_LEN + opt
        }
        TunnelType::Gre => gre_header_len(gre_csum(csum)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{Ipv4Header, PacketBuilder, SlicedPacket, TransportSlice};
    use std::net::{Ipv4Addr, Ipv6Addr};

    const CLIENT: [u8; 4] = [198, 51, 100, 7];
    const VIP: [u8; 4] = [10, 0, 0, 100];
    const DIRECTOR: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 1);
    const RIP: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 11);

    /// A real client → VIP IPv4/TCP segment with payload (odd length, to test checksum padding).
    fn inner_tcp(payload: &[u8]) -> Vec<u8> {
        let b = PacketBuilder::ipv4(CLIENT, VIP, 63).tcp(40000, 80, 0x1234_5678, 64240).ack(7).psh();
        let mut v = Vec::with_capacity(b.size(payload.len()));
        b.write(&mut v, payload).unwrap();
        v
    }

    /// The inner packet with its TCP checksum as an offloading sender leaves it: the
    /// (uncomplemented) pseudo-header sum. Returns the packet and its `PartialCsum`.
    fn inner_tcp_partial(payload: &[u8]) -> (Vec<u8>, PartialCsum) {
        let mut p = inner_tcp(payload);
        let tcp_len = (p.len() - 20) as u32;
        let ph = checksum::pseudo_header(&IpAddr::from(CLIENT), &IpAddr::from(VIP), protocol::TCP, tcp_len);
        p[36..38].copy_from_slice(&checksum::fold(ph).to_be_bytes());
        (p, PartialCsum { start: 20, offset: 16 })
    }

    /// Outer IPv4 header + `headers` + `inner`, as the TUN transmitter would send it.
    fn outer_v4(proto: u8, headers: &[u8], inner: &[u8]) -> Vec<u8> {
        let mut ip = Ipv4Header::new(
            (headers.len() + inner.len()) as u16,
            inner[8],
            etherparse::IpNumber(proto),
            DIRECTOR.octets(),
            RIP.octets(),
        )
        .unwrap();
        ip.header_checksum = ip.calc_header_checksum();
        let mut v = ip.to_bytes().to_vec();
        v.extend_from_slice(headers);
        v.extend_from_slice(inner);
        v
    }

    /// The inner TCP checksum is valid (checked with etherparse's own computation).
    fn inner_tcp_ok(inner: &[u8]) -> bool {
        let s = SlicedPacket::from_ip(inner).unwrap();
        let (Some(etherparse::NetSlice::Ipv4(ip)), Some(TransportSlice::Tcp(tcp))) = (s.net, s.transport) else {
            panic!("inner is not IPv4/TCP");
        };
        let h = ip.header();
        tcp.checksum() == tcp.calc_checksum_ipv4(h.source(), h.destination()).unwrap()
    }

    fn gue(csum: TunnelCsum, partial: Option<PartialCsum>) -> Gue {
        Gue { src_port: gue_source_port(0xdead_beef), dst_port: 6080, inner_proto: protocol::IPIP, csum, partial }
    }

    #[test]
    fn gre_plain_and_checksummed() {
        let inner = inner_tcp(b"hello, real server");
        for csum in [false, true] {
            let mut hdr = [0xeeu8; 8];
            let n = write_gre(&mut hdr, wire::ethernet::ethertype::IPV4, csum, &inner).unwrap();
            assert_eq!(n, if csum { 8 } else { 4 });
            let pkt = outer_v4(protocol::GRE, &hdr[..n], &inner);

            // The outer packet parses; its payload is our GRE packet.
            let outer = wire::Ipv4Packet::new_checked(&pkt[..]).unwrap();
            assert!(outer.verify_checksum());
            assert_eq!(outer.protocol(), protocol::GRE);
            let g = GrePacket::new_checked(outer.payload()).unwrap();
            assert_eq!(g.flags(), if csum { gre::flags::CHECKSUM } else { 0 });
            assert_eq!((g.protocol_type(), g.header_len(), g.key()), (0x0800, n, None));
            assert_eq!(g.checksum_present(), csum);
            assert!(g.verify_checksum());
            assert_eq!(g.payload(), &inner[..]);
            assert!(inner_tcp_ok(g.payload()));
            if csum {
                // Reserved1 is zero and the checksum actually covers the payload.
                assert_eq!(hdr[6..8], [0, 0]);
                let mut bad = outer.payload().to_vec();
                *bad.last_mut().unwrap() ^= 1;
                assert!(!GrePacket::new_checked(&bad[..]).unwrap().verify_checksum());
            }
        }
        // IPv6 inner: only the protocol type changes.
        let mut hdr = [0u8; 4];
        assert_eq!(write_gre(&mut hdr, 0x86DD, false, &[0x60; 40]), Ok(4));
        assert_eq!(hdr, [0, 0, 0x86, 0xdd]);
    }

    #[test]
    fn gre_checksum_with_odd_payload_and_short_buffer() {
        for len in [0usize, 1, 3, 7, 1499] {
            let inner: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
            let mut pkt = vec![0u8; 8];
            write_gre(&mut pkt, 0x0800, true, &inner).unwrap();
            pkt.extend_from_slice(&inner);
            assert_eq!(checksum::checksum(&pkt), 0, "len {len}");
        }
        assert_eq!(write_gre(&mut [0u8; 7], 0x0800, true, &[]), Err(EncapError::BufferTooSmall));
        assert_eq!(write_gre(&mut [0u8; 3], 0x0800, false, &[]), Err(EncapError::BufferTooSmall));
        assert_eq!(write_gre(&mut [0u8; 4], 0x0800, false, &[]), Ok(4));
    }

    /// Parses the outer IPv4/UDP with etherparse and returns the UDP payload (GUE packet).
    fn udp_payload_via_etherparse(pkt: &[u8]) -> (u16, u16, Vec<u8>) {
        let s = SlicedPacket::from_ip(pkt).unwrap();
        let Some(TransportSlice::Udp(u)) = s.transport else { panic!("outer is not UDP") };
        (u.source_port(), u.destination_port(), u.payload().to_vec())
    }

    #[test]
    fn gue_csum_and_nocsum_v4() {
        let inner = inner_tcp(b"odd payload");
        let (src, dst) = (IpAddr::V4(DIRECTOR), IpAddr::V4(RIP));
        for csum in [TunnelCsum::NoCsum, TunnelCsum::Csum, TunnelCsum::RemCsum] {
            // remcsum without an offloaded checksum is a plain checksum (no option).
            let g = gue(csum, None);
            let mut hdr = [0xeeu8; 20];
            let n = write_gue(&mut hdr, &g, src, dst, &inner).unwrap();
            assert_eq!(n, 12, "{csum:?}");
            let pkt = outer_v4(protocol::UDP, &hdr[..n], &inner);

            let (sport, dport, payload) = udp_payload_via_etherparse(&pkt);
            assert_eq!((sport, dport), (g.src_port, 6080));
            let outer = wire::Ipv4Packet::new_checked(&pkt[..]).unwrap();
            let u = UdpPacket::new_checked(outer.payload()).unwrap();
            assert_eq!(usize::from(u.len()), 12 + inner.len());
            assert_eq!(u.checksum() == 0, csum == TunnelCsum::NoCsum, "{csum:?}");
            assert!(u.verify_checksum(&src, &dst));
            if csum != TunnelCsum::NoCsum {
                // A wrong pseudo header fails: the outer addresses are covered.
                assert!(!u.verify_checksum(&dst, &IpAddr::V4(Ipv4Addr::new(192, 168, 1, 12))));
            }

            let gp = GuePacket::new_checked(u.payload()).unwrap();
            assert_eq!(u.payload(), &payload[..]);
            assert_eq!((gp.version(), gp.is_control(), gp.hlen(), gp.flags()), (0, false, 0, 0));
            assert_eq!(gp.protocol(), 4);
            assert_eq!(hdr[8..12], [0, 4, 0, 0]);
            assert_eq!(gp.payload(), &inner[..]);
            assert!(inner_tcp_ok(gp.payload()));
        }
    }

    #[test]
    fn gue_checksum_over_ipv6_outer() {
        let inner = vec![0x60u8; 41];
        let src = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1));
        let dst = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x11));
        let g = Gue { inner_proto: protocol::IPV6, ..gue(TunnelCsum::Csum, None) };
        let mut dgram = vec![0u8; 12];
        write_gue(&mut dgram, &g, src, dst, &inner).unwrap();
        dgram.extend_from_slice(&inner);
        let u = UdpPacket::new_checked(&dgram[..]).unwrap();
        assert_ne!(u.checksum(), 0);
        assert!(u.verify_checksum(&src, &dst));
        assert_eq!(GuePacket::new_checked(u.payload()).unwrap().protocol(), 41);
    }

    /// remcsum on an offloaded inner checksum: PRIV flag, REMCSUM private flag, option
    /// {start, start + offset}; the outer UDP checksum is complete; a receiver finishing the
    /// inner checksum as the kernel's `remcsum_adjust` does gets a valid TCP checksum.
    #[test]
    fn gue_remcsum_option_and_receiver_finish() {
        let (inner, partial) = inner_tcp_partial(b"remote checksum offload!");
        assert!(!inner_tcp_ok(&inner));
        let (src, dst) = (IpAddr::V4(DIRECTOR), IpAddr::V4(RIP));
        let g = gue(TunnelCsum::RemCsum, Some(partial));
        assert_eq!(g.header_len(), 20);
        let mut hdr = [0xeeu8; 20];
        assert_eq!(write_gue(&mut hdr, &g, src, dst, &inner), Ok(20));
        // The layout Linux emits for an inner TCP segment (start 20, checksum at 36).
        assert_eq!(hdr[8..20], [0x02, 4, 0, 1, 0x80, 0, 0, 0, 0, 20, 0, 36]);

        let pkt = outer_v4(protocol::UDP, &hdr, &inner);
        let outer = wire::Ipv4Packet::new_checked(&pkt[..]).unwrap();
        let u = UdpPacket::new_checked(outer.payload()).unwrap();
        assert!(u.verify_checksum(&src, &dst));
        let gp = GuePacket::new_checked(u.payload()).unwrap();
        assert_eq!((gp.hlen(), gp.flags(), gp.header_len()), (2, gue::flags::PRIV, 12));
        let opts = gp.options();
        assert_eq!(u32::from_be_bytes([opts[0], opts[1], opts[2], opts[3]]), gue::PRIV_REMCSUM);
        let start = usize::from(u16::from_be_bytes([opts[4], opts[5]]));
        let at = usize::from(u16::from_be_bytes([opts[6], opts[7]]));

        // Receiver: the checksum field gets the complement of the sum from `start` to the end.
        let mut got = gp.payload().to_vec();
        let c = checksum::checksum(&got[start..]);
        got[at..at + 2].copy_from_slice(&c.to_be_bytes());
        assert!(inner_tcp_ok(&got));
        assert_eq!(got, inner_tcp(b"remote checksum offload!"));
    }

    #[test]
    fn gue_errors() {
        let (src, dst) = (IpAddr::V4(DIRECTOR), IpAddr::V4(RIP));
        let inner = vec![0x45u8; 40];
        let g = gue(TunnelCsum::Csum, None);
        assert_eq!(write_gue(&mut [0u8; 11], &g, src, dst, &inner), Err(EncapError::BufferTooSmall));
        let big = vec![0u8; 65535 - 12 + 1];
        assert_eq!(write_gue(&mut [0u8; 12], &g, src, dst, &big), Err(EncapError::TooLong));
        assert_eq!(write_gue(&mut [0u8; 12], &g, src, dst, &big[1..]), Ok(12));
        let rem = |start, offset| gue(TunnelCsum::RemCsum, Some(PartialCsum { start, offset }));
        assert_eq!(write_gue(&mut [0u8; 19], &rem(20, 16), src, dst, &inner), Err(EncapError::BufferTooSmall));
        for (start, offset) in [(20, 19), (41, 0), (39, 0), (0xffff, 2), (2, 0xffff)] {
            assert_eq!(
                write_gue(&mut [0u8; 20], &rem(start, offset), src, dst, &inner),
                Err(EncapError::BadCsumOffset),
                "{start} {offset}"
            );
        }
        assert_eq!(write_gue(&mut [0u8; 20], &rem(20, 18), src, dst, &inner), Ok(20));
        // With nocsum or csum a partial checksum adds no option.
        for csum in [TunnelCsum::NoCsum, TunnelCsum::Csum] {
            let g = gue(csum, Some(PartialCsum { start: 20, offset: 16 }));
            assert_eq!(g.header_len(), 12);
            assert_eq!(write_gue(&mut [0u8; 12], &g, src, dst, &inner), Ok(12));
        }
    }

    #[test]
    fn source_port_range_and_formula() {
        // The kernel's arithmetic, worked by hand: h ^= h << 16; port = (h * 28231 >> 32) + 32768.
        assert_eq!(gue_source_port(0), 32768);
        assert_eq!(gue_source_port(0xffff_ffff), 32768); // folds to 0x0000ffff
        assert_eq!(gue_source_port(0x8000_0000), 32768 + 28231 / 2);
        assert_eq!(gue_source_port(0x0000_ffff), 60998); // folds to 0xffffffff
        let mut x = 0x9e37_79b9u32;
        let mut seen = std::collections::HashSet::new();
        for _ in 0..100_000 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let p = gue_source_port(x);
            assert!((LOCAL_PORT_MIN..LOCAL_PORT_MAX).contains(&p), "{p}");
            seen.insert(p);
        }
        // Spread over the range, not stuck on a few ports.
        assert!(seen.len() > 20_000, "{}", seen.len());
    }

    #[test]
    fn overheads() {
        use TunnelCsum::*;
        use TunnelType::*;
        for csum in [NoCsum, Csum, RemCsum] {
            for partial in [false, true] {
                assert_eq!(overhead(Ipip, csum, partial), 0);
            }
        }
        assert_eq!(overhead(Gue, NoCsum, true), 12);
        assert_eq!(overhead(Gue, Csum, true), 12);
        assert_eq!(overhead(Gue, RemCsum, false), 12);
        assert_eq!(overhead(Gue, RemCsum, true), 20);
        assert_eq!(overhead(Gre, NoCsum, false), 4);
        assert_eq!(overhead(Gre, Csum, false), 8);
        assert_eq!(overhead(Gre, RemCsum, true), 4);
        // The overhead is what the writers write.
        let g = gue(RemCsum, Some(PartialCsum { start: 20, offset: 16 }));
        assert_eq!(overhead(Gue, RemCsum, true), g.header_len());
        assert_eq!(overhead(Gre, Csum, false), gre_header_len(gre_csum(Csum)));
    }
}
