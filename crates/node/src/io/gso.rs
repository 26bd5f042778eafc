//! Software segmentation of TCP/IPv4 super-packets read from the ring.
//!
//! A sender on a veth peer (or behind a bridge) with TSO on hands the director GSO packets of
//! up to 64 KB: veth passes them on unsegmented, whatever GRO setting the director has
//! (turning GRO off only stops the director's own aggregation). No link can carry them, and
//! answering "fragmentation needed" does not help: the sender's MSS already fits, it is its
//! offload that built the big packet. So the worker cuts such a packet back into segments
//! before the node sees it, as the kernel's `skb_gso_segment` would at transmit: IP length,
//! id (+1 per segment) and header checksum; TCP sequence number, FIN/PSH only on the last,
//! CWR only on the first segment, and a full TCP checksum for each.
//!
//! The segment size: the ring does not say the sender's `gso_size` (that would take
//! `PACKET_VNET_HDR`). Cutting smaller than the sender would is always safe for TCP; cutting
//! larger is not (after a "fragmentation needed" the sender shrinks its segments, and cut
//! pieces that still do not fit would stall the flow). So the pieces are sized for the
//! smallest MTU of any served interface or route, minus [`TUNNEL_ROOM`] so that a tunnelled
//! piece still fits (DESIGN.md "TUN and full-size segments").

use std::net::{IpAddr, Ipv4Addr};

/// Room left in front of every segment (like the ring's `PACKET_RESERVE`) for encapsulation.
pub const HEADROOM: usize = 128;

const ETH: usize = 14;

/// Bytes kept free for the largest encapsulation a transmitter adds (an outer IPv6 header;
/// IPIP 20, GRE 24-28, GUE 32).
pub const TUNNEL_ROOM: usize = 40;

/// IP packet size to cut super-packets to: the smallest interface or route MTU of the node,
/// and at most what a TX slot holds (`tx_max_ip`: the slot's frame size minus the Ethernet
/// header; the rings are sized from the MTUs at start, an MTU raised later is not), minus
/// [`TUNNEL_ROOM`].
pub fn cut_size(net: &crate::NetState, tx_max_ip: usize) -> usize {
    let ifs = net.interfaces.iter().map(|i| i.mtu);
    let routes = net.routes.iter().filter_map(|r| r.mtu);
    let mtu = ifs.chain(routes).min().map_or(1500, usize::from).min(tx_max_ip);
    mtu.saturating_sub(TUNNEL_ROOM).max(576)
}

/// If `frame` (from its Ethernet header) is a TCP/IPv4 packet longer than `mtu` (IP bytes),
/// cuts its payload into pieces that make `mtu`-sized packets and writes each segment into `buf` at offset [`HEADROOM`] and calls
/// `emit(buf, HEADROOM, len)`; returns the number of segments. Returns 0 (and emits nothing)
/// for anything else: the caller processes the frame as it is.
pub fn segment_tcp4(
    frame: &[u8],
    mtu: usize,
    buf: &mut Vec<u8>,
    mut emit: impl FnMut(&mut [u8], usize, usize),
) -> usize {
    if frame.len() < ETH + 20 || frame[12..14] != [0x08, 0x00] {
        return 0;
    }
    let ip = &frame[ETH..];
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    let frag = u16::from_be_bytes([ip[6], ip[7]]) & 0x3fff;
    if ip[0] >> 4 != 4 || ihl < 20 || ip[9] != 6 || frag != 0 || ip.len() < ihl + 20 {
        return 0;
    }
    // GSO packets carry their full length; 0 or more than we have means "use what we have".
    let tot = match usize::from(u16::from_be_bytes([ip[2], ip[3]])) {
        0 => ip.len(),
        t => t.min(ip.len()),
    };
    let ip = &ip[..tot];
    if ip.len() < ihl + 20 {
        return 0;
    }
    let tcp = &ip[ihl..];
    let thl = usize::from(tcp[12] >> 4) * 4;
    if thl < 20 || tcp.len() < thl {
        return 0;
    }
    let payload = &tcp[thl..];
    let max_payload = mtu.saturating_sub(ihl + thl);
    if max_payload == 0 || ihl + thl + payload.len() <= mtu {
        return 0;
    }
    let src = IpAddr::V4(Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]));
    let dst = IpAddr::V4(Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]));
    let seq = u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]]);
    let id = u16::from_be_bytes([ip[4], ip[5]]);
    let flags = tcp[13];
    let n = payload.len().div_ceil(max_payload);
    for (i, chunk) in payload.chunks(max_payload).enumerate() {
        buf.clear();
        buf.resize(HEADROOM, 0);
        buf.extend_from_slice(&frame[..ETH]);
        buf.extend_from_slice(&ip[..ihl]);
        buf.extend_from_slice(&tcp[..thl]);
        buf.extend_from_slice(chunk);
        let len = buf.len() - HEADROOM;
        {
            let seg = &mut buf[HEADROOM + ETH..];
            let tot = (ihl + thl + chunk.len()) as u16;
            seg[2..4].copy_from_slice(&tot.to_be_bytes());
            seg[4..6].copy_from_slice(&id.wrapping_add(i as u16).to_be_bytes());
            seg[10..12].copy_from_slice(&[0, 0]);
            let c = wire::checksum::checksum(&seg[..ihl]);
            seg[10..12].copy_from_slice(&c.to_be_bytes());
            let t = &mut seg[ihl..];
            t[4..8].copy_from_slice(&seq.wrapping_add((i * max_payload) as u32).to_be_bytes());
            let mut f = flags;
            if i + 1 < n {
                f &= !(0x01 | 0x08); // FIN, PSH: last segment only
            }
            if i > 0 {
                f &= !0x80; // CWR: first segment only
            }
            t[13] = f;
            t[16..18].copy_from_slice(&[0, 0]);
            let c = wire::checksum::transport(&src, &dst, 6, t);
            t[16..18].copy_from_slice(&c.to_be_bytes());
        }
        emit(buf, HEADROOM, len);
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{PacketBuilder, SlicedPacket, TransportSlice};

    fn big(payload: &[u8], flags_fin_psh: bool) -> Vec<u8> {
        let b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4([198, 51, 100, 7], [10, 0, 0, 100], 64)
            .tcp(40000, 80, 1000, 64240)
            .ack(77);
        let b = if flags_fin_psh { b.psh().fin().cwr() } else { b.cwr() };
        let mut out = Vec::new();
        b.write(&mut out, payload).unwrap();
        out
    }

    #[test]
    fn a_super_packet_becomes_valid_mtu_sized_segments() {
        let payload: Vec<u8> = (0..10_000u32).map(|i| (i * 31 % 251) as u8).collect();
        let frame = big(&payload, true);
        let mut buf = Vec::new();
        let mut segs: Vec<Vec<u8>> = Vec::new();
        let n = segment_tcp4(&frame, 1500, &mut buf, |b, s, l| segs.push(b[s..s + l].to_vec()));
        assert_eq!(n, 7);
        assert_eq!(segs.len(), 7);
        let mut joined = Vec::new();
        for (i, s) in segs.iter().enumerate() {
            let p = SlicedPacket::from_ethernet(s).expect("parses");
            let Some(etherparse::NetSlice::Ipv4(ip)) = &p.net else { panic!() };
            let h = ip.header().to_header();
            assert_eq!(h.header_checksum, h.calc_header_checksum(), "IP checksum of {i}");
            let Some(TransportSlice::Tcp(t)) = &p.transport else { panic!() };
            assert_eq!(t.checksum(), t.to_header().calc_checksum_ipv4(&h, t.payload()).unwrap(), "TCP csum {i}");
            assert_eq!(t.sequence_number(), 1000 + (i as u32) * 1460);
            assert_eq!(t.acknowledgment_number(), 77);
            let last = i == 6;
            assert_eq!((t.fin(), t.psh(), t.cwr(), t.ack()), (last, last, i == 0, true), "flags of {i}");
            assert!(s.len() <= 14 + 20 + 20 + 1460);
            joined.extend_from_slice(t.payload());
        }
        assert_eq!(joined, payload);
        // Consecutive IP ids.
        let id = |s: &Vec<u8>| u16::from_be_bytes([s[18], s[19]]);
        assert!(segs.windows(2).all(|w| id(&w[1]) == id(&w[0]).wrapping_add(1)));
    }

    #[test]
    fn cut_size_leaves_room_for_a_tunnel_on_the_smallest_link() {
        let ifc = |index, mtu| crate::Interface {
            index,
            name: format!("i{index}"),
            mac: wire::MacAddr([2, 0, 0, 0, 0, index as u8]),
            mtu,
            addrs: vec![],
        };
        let net = crate::NetState::new(vec![ifc(1, 1500), ifc(2, 9000)], vec![], Default::default());
        assert_eq!(cut_size(&net, 9000), 1460);
        let net = crate::NetState::new(vec![ifc(1, 1500), ifc(2, 1400)], vec![], Default::default());
        assert_eq!(cut_size(&net, 9000), 1360);
        assert_eq!(cut_size(&crate::NetState::default(), 9000), 1460);
        // Jumbo links: jumbo segments, unless the TX slots are smaller (an MTU raised after
        // the rings were made).
        let jumbo = crate::NetState::new(vec![ifc(1, 9000), ifc(2, 9000)], vec![], Default::default());
        assert_eq!(cut_size(&jumbo, 9000), 8960);
        assert_eq!(cut_size(&jumbo, 2048 - 48 - 14), 2048 - 48 - 14 - 40);
    }

    #[test]
    fn small_and_other_packets_are_left_alone() {
        let mut buf = Vec::new();
        let mut called = false;
        let small = big(&[1; 100], false);
        assert_eq!(segment_tcp4(&small, 1500, &mut buf, |_, _, _| called = true), 0);
        let mut udp = Vec::new();
        PacketBuilder::ethernet2([2; 6], [3; 6])
            .ipv4([1, 1, 1, 1], [2, 2, 2, 2], 64)
            .udp(1, 2)
            .write(&mut udp, &[0; 5000])
            .unwrap();
        assert_eq!(segment_tcp4(&udp, 1500, &mut buf, |_, _, _| called = true), 0);
        assert_eq!(segment_tcp4(&[0u8; 10], 1500, &mut buf, |_, _, _| called = true), 0);
        let mut garbage = big(&[0; 3000], false);
        garbage[14 + 20 + 12] = 0xf0; // TCP header longer than the packet's
        garbage.truncate(14 + 20 + 30);
        assert_eq!(segment_tcp4(&garbage, 1500, &mut buf, |_, _, _| called = true), 0);
        assert!(!called);
    }
}
