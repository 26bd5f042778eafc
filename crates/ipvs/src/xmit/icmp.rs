//! ICMP errors that IPVS sends (§14 "ICMP that IPVS generates"), built in place: the offending
//! packet becomes the quoted part of the error, so nothing is allocated.

use std::net::IpAddr;

use netfilter::{DropReason, Output, Route, RouteKind, Skb, Verdict};
use wire::checksum;

use crate::ctx::Routing;

/// At most this much of an ICMP error in total (RFC 1812: 576 bytes).
const MAX_ICMP_LEN: usize = 576;
const HDRS: usize = 20 + 8;

/// Turn the IPv4 packet in `skb` into an ICMP error back to its sender, sourced from the
/// address it was sent to (the VIP), and steal it for output. The original packet counts as
/// dropped with `reason`. No error is sent about an ICMP error, a non-first fragment or a
/// non-unicast source (RFC 1122 §3.2.2).
pub(crate) fn send_error_v4(
    skb: &mut Skb<'_>,
    routing: &dyn Routing,
    typ: u8,
    code: u8,
    info: u32,
    reason: DropReason,
) -> Verdict {
    skb.drop_reason = Some(reason);
    let n = skb.network_bytes();
    if n.len() < 20 {
        return Verdict::Drop;
    }
    let ihl = (n[0] & 0xf) as usize * 4;
    let ip_len = (u16::from_be_bytes([n[2], n[3]]) as usize).min(n.len());
    let frag_off = u16::from_be_bytes([n[6], n[7]]) & 0x1fff;
    let proto = n[9];
    let saddr = std::net::Ipv4Addr::new(n[12], n[13], n[14], n[15]);
    let daddr = std::net::Ipv4Addr::new(n[16], n[17], n[18], n[19]);
    let tos = n[1];
    if frag_off != 0 || saddr.is_multicast() || saddr.is_broadcast() || saddr.is_unspecified() {
        return Verdict::Drop;
    }
    if proto == wire::ip::protocol::ICMP {
        // Never an error about an error (only queries may be answered with one).
        let t = n.get(ihl).copied().unwrap_or(255);
        if !matches!(t, 0 | 8 | 13 | 14 | 15 | 16 | 17 | 18) {
            return Verdict::Drop;
        }
    }
    let Some(rt) = routing.route(&IpAddr::V4(saddr)) else {
        return Verdict::Drop;
    };
    let quote = ip_len.min(MAX_ICMP_LEN - HDRS);
    let net = skb.network;
    if skb.frame.set_len(net + quote).is_err() || skb.frame.insert_gap(net, HDRS).is_err() {
        skb.drop_reason = Some(DropReason::HeadroomExhausted);
        return Verdict::Drop;
    }
    let m = skb.network_bytes_mut();
    let total = HDRS + quote;
    m[0] = 0x45;
    m[1] = (tos & 0x1e) | 0xc0;
    m[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    m[4..8].copy_from_slice(&[0, 0, 0, 0]);
    m[8] = 64;
    m[9] = wire::ip::protocol::ICMP;
    m[10..12].copy_from_slice(&[0, 0]);
    m[12..16].copy_from_slice(&daddr.octets());
    m[16..20].copy_from_slice(&saddr.octets());
    let c = checksum::checksum(&m[..20]);
    m[10..12].copy_from_slice(&c.to_be_bytes());
    let icmp = &mut m[20..total];
    icmp[0] = typ;
    icmp[1] = code;
    icmp[2..4].copy_from_slice(&[0, 0]);
    icmp[4..8].copy_from_slice(&info.to_be_bytes());
    let c = checksum::checksum(icmp);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    skb.route = Route { kind: RouteKind::Forward, out_if: rt.out_if, next_hop: Some(rt.next_hop), mtu: rt.mtu };
    skb.ipvs_property = true;
    skb.output = Output::LocalOut;
    skb.hash = 0;
    Verdict::Stolen
}
