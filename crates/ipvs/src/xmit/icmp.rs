//! ICMP and ICMPv6 errors that IPVS sends (§14 "ICMP that IPVS generates"), built in place:
//! the offending packet becomes the quoted part of the error, so nothing is allocated.

use std::net::{IpAddr, Ipv4Addr};

use netfilter::{DropReason, Family, Output, Route, RouteKind, Skb, Verdict};
use wire::checksum;

use crate::ctx::Routing;

/// Which error, in family-independent terms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Error {
    /// 11/0; ICMPv6 3/0.
    TimeExceeded,
    /// 3/3; ICMPv6 1/4.
    PortUnreachable,
    /// 3/4 with the next-hop MTU; ICMPv6 2/0 packet too big.
    TooBig(u32),
}

/// RFC 1812: an ICMP error is at most 576 bytes; RFC 4443: an ICMPv6 error fits 1280.
const MAX_V4: usize = 576;
const MAX_V6: usize = 1280;

/// Turn the packet in `skb` into an ICMP error back to its sender, sourced from the address it
/// was sent to (the VIP), and steal it for output. The original packet counts as dropped with
/// `reason`. No error is sent about an error, a non-first fragment or a non-unicast source
/// (RFC 1122 §3.2.2, RFC 4443 §2.4).
pub(crate) fn send_error(skb: &mut Skb<'_>, routing: &dyn Routing, e: Error, reason: DropReason) -> Verdict {
    skb.drop_reason = Some(reason);
    match skb.family {
        Family::Ipv4 => send_v4(skb, routing, e),
        Family::Ipv6 => send_v6(skb, routing, e),
        Family::Arp => Verdict::Drop,
    }
}

fn finish(skb: &mut Skb<'_>, routing: &dyn Routing, to: &IpAddr) -> Verdict {
    let Some(rt) = routing.route(to) else { return Verdict::Drop };
    skb.route = Route { kind: RouteKind::Forward, out_if: rt.out_if, next_hop: Some(rt.next_hop), mtu: rt.mtu };
    skb.ipvs_property = true;
    skb.output = Output::LocalOut;
    skb.hash = 0;
    Verdict::Stolen
}

fn send_v4(skb: &mut Skb<'_>, routing: &dyn Routing, e: Error) -> Verdict {
    let (typ, code, info) = match e {
        Error::TimeExceeded => (11, 0, 0),
        Error::PortUnreachable => (3, 3, 0),
        Error::TooBig(mtu) => (3, 4, mtu & 0xffff),
    };
    let n = skb.network_bytes();
    if n.len() < 20 {
        return Verdict::Drop;
    }
    let ihl = (n[0] & 0xf) as usize * 4;
    let ip_len = (u16::from_be_bytes([n[2], n[3]]) as usize).min(n.len());
    let frag_off = u16::from_be_bytes([n[6], n[7]]) & 0x1fff;
    let proto = n[9];
    let saddr = Ipv4Addr::new(n[12], n[13], n[14], n[15]);
    let daddr = Ipv4Addr::new(n[16], n[17], n[18], n[19]);
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
    const HDRS: usize = 20 + 8;
    let quote = ip_len.min(MAX_V4 - HDRS);
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
    finish(skb, routing, &IpAddr::V4(saddr))
}

fn send_v6(skb: &mut Skb<'_>, routing: &dyn Routing, e: Error) -> Verdict {
    let (typ, code, info) = match e {
        Error::TimeExceeded => (3, 0, 0),
        Error::PortUnreachable => (1, 4, 0),
        Error::TooBig(mtu) => (2, 0, mtu),
    };
    let n = skb.network_bytes();
    let Ok(ip) = wire::Ipv6Packet::new_checked(n) else { return Verdict::Drop };
    let (saddr, daddr) = (ip.src_addr(), ip.dst_addr());
    let ip_len = 40 + ip.payload_len() as usize;
    if saddr.is_multicast() || saddr.is_unspecified() {
        return Verdict::Drop;
    }
    if ip.next_header() == wire::ip::protocol::ICMPV6 && n.get(40).is_some_and(|t| *t < 128) {
        return Verdict::Drop;
    }
    const HDRS: usize = 40 + 8;
    let quote = ip_len.min(MAX_V6 - HDRS);
    let net = skb.network;
    if skb.frame.set_len(net + quote).is_err() || skb.frame.insert_gap(net, HDRS).is_err() {
        skb.drop_reason = Some(DropReason::HeadroomExhausted);
        return Verdict::Drop;
    }
    let m = skb.network_bytes_mut();
    let plen = 8 + quote;
    m[..4].copy_from_slice(&[0x60, 0, 0, 0]);
    m[4..6].copy_from_slice(&(plen as u16).to_be_bytes());
    m[6] = wire::ip::protocol::ICMPV6;
    m[7] = 64;
    m[8..24].copy_from_slice(&daddr.octets());
    m[24..40].copy_from_slice(&saddr.octets());
    let icmp = &mut m[40..40 + plen];
    icmp[0] = typ;
    icmp[1] = code;
    icmp[2..4].copy_from_slice(&[0, 0]);
    icmp[4..8].copy_from_slice(&info.to_be_bytes());
    let c = checksum::transport(&IpAddr::V6(daddr), &IpAddr::V6(saddr), wire::ip::protocol::ICMPV6, icmp);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    finish(skb, routing, &IpAddr::V6(saddr))
}
