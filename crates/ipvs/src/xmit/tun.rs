//! IP-in-IP tunnelling: an outer IPv4 header is written into the headroom in front of the
//! packet, as IPVS builds it (§16 TUN: TOS/ECN per RFC 6040, DF from the inner packet, TTL of
//! the inner packet after the decrement, protocol 4, source = the route's source address).

use std::net::IpAddr;

use netfilter::{DropReason, Family, Skb, Verdict};
use wire::checksum;

use crate::conn::{Conn, ConnAddrs};
use crate::ctx::{RouteTo, Routing};
use crate::dest::{TunnelCsum, TunnelType};
use crate::packet::Tuple;
use crate::xmit::encap;

/// Outer IPv4 header without options.
const OUTER_LEN: usize = 20;
/// Outer IPv6 header.
const OUTER_V6: usize = 40;

#[inline]
#[allow(clippy::too_many_arguments)] // the transmitter's inputs, as `xmit` passes them on
pub(crate) fn xmit(
    c: &Conn,
    a: &ConnAddrs,
    skb: &mut Skb<'_>,
    t: &Tuple,
    rt: &RouteTo,
    routing: &dyn Routing,
    ip_id: &mut u16,
    pmtu_disc: bool,
) -> Verdict {
    // The outer family is the real server's; the inner one the client's (mixed families are
    // allowed for tunnels, §16).
    let outer_v6 = match (rt.src, a.daddr) {
        (IpAddr::V4(_), IpAddr::V4(_)) => false,
        (IpAddr::V6(_), IpAddr::V6(_)) => true,
        _ => return skb.drop_with(DropReason::NoRoute),
    };
    let inner_v6 = skb.family == Family::Ipv6;
    let outer_len = if outer_v6 { OUTER_V6 } else { OUTER_LEN };
    let (tun_type, tun_csum, tun_port) =
        c.dest.as_ref().map_or((TunnelType::Ipip, TunnelCsum::NoCsum, 0), |d| d.tunnel());
    let extra = encap::overhead(tun_type, tun_csum, false);
    let mtu = inner_mtu(c, rt.mtu, outer_v6);
    if pmtu_disc && let Some(v) = super::check_mtu(skb, t, mtu, routing) {
        return v;
    }
    super::dec_ttl(skb);
    let (tos, df, ttl) = {
        let n = skb.network_bytes();
        if inner_v6 {
            ((u16::from_be_bytes([n[0], n[1]]) >> 4) as u8, true, n[7])
        } else {
            (n[1], n[6] & 0x40 != 0, n[8])
        }
    };
    let net = skb.network;
    // Drop Ethernet padding, then open the gap for the outer headers.
    if skb.frame.set_len(net + t.ip_len).is_err() || skb.frame.insert_gap(net, outer_len + extra).is_err() {
        return skb.drop_with(DropReason::HeadroomExhausted);
    }
    let inner_proto = if inner_v6 { wire::ip::protocol::IPV6 } else { wire::ip::protocol::IPIP };
    let protocol = match tun_type {
        TunnelType::Ipip => inner_proto,
        TunnelType::Gue => wire::ip::protocol::UDP,
        TunnelType::Gre => wire::ip::protocol::GRE,
    };
    // RFC 6040: inner CE (0b11) becomes ECT(0) (0b10) outside; everything else is copied.
    let outer_tos = if tos & 0x3 == 0x3 { (tos & !0x3) | 0x2 } else { tos };
    {
        let (outer, rest) = skb.network_bytes_mut().split_at_mut(outer_len);
        let (encap_hdr, inner) = rest.split_at_mut(extra);
        let inner = &inner[..t.ip_len];
        let written = match tun_type {
            TunnelType::Ipip => Ok(0),
            TunnelType::Gre => {
                let ethertype = if inner_v6 { 0x86dd } else { 0x0800 };
                encap::write_gre(encap_hdr, ethertype, encap::gre_csum(tun_csum), inner)
            }
            TunnelType::Gue => {
                let g = encap::Gue {
                    src_port: encap::gue_source_port(flow_of(c, a.caddr)),
                    dst_port: tun_port,
                    inner_proto,
                    csum: tun_csum,
                    partial: None,
                };
                encap::write_gue(encap_hdr, &g, rt.src, a.daddr, inner)
            }
        };
        if written != Ok(extra) {
            return skb.drop_with(DropReason::HeadroomExhausted);
        }
        match (rt.src, a.daddr) {
            (IpAddr::V4(src), IpAddr::V4(dst)) => {
                let id = if df {
                    0
                } else {
                    *ip_id = ip_id.wrapping_add(1);
                    *ip_id
                };
                let df = df && pmtu_disc;
                let h = outer;
                h[0] = 0x45;
                h[1] = outer_tos;
                h[2..4].copy_from_slice(&((t.ip_len + OUTER_LEN + extra) as u16).to_be_bytes());
                h[4..6].copy_from_slice(&id.to_be_bytes());
                h[6..8].copy_from_slice(&(if df { 0x4000u16 } else { 0 }).to_be_bytes());
                h[8] = ttl;
                h[9] = protocol;
                h[10..12].copy_from_slice(&[0, 0]);
                h[12..16].copy_from_slice(&src.octets());
                h[16..20].copy_from_slice(&dst.octets());
                let sum = match <&[u8; OUTER_LEN]>::try_from(&h[..OUTER_LEN]) {
                    Ok(fixed) => checksum::ipv4_header_checksum(fixed),
                    Err(_) => checksum::checksum(h),
                };
                h[10..12].copy_from_slice(&sum.to_be_bytes());
            }
            (IpAddr::V6(src), IpAddr::V6(dst)) => {
                // Traffic class by the same rule, flow label 0, hop limit of the inner packet.
                let h = outer;
                h[0] = 0x60 | (outer_tos >> 4);
                h[1] = outer_tos << 4;
                h[2] = 0;
                h[3] = 0;
                h[4..6].copy_from_slice(&((t.ip_len + extra) as u16).to_be_bytes());
                h[6] = protocol;
                h[7] = ttl;
                h[8..24].copy_from_slice(&src.octets());
                h[24..40].copy_from_slice(&dst.octets());
            }
            _ => return skb.drop_with(DropReason::NoRoute),
        }
    }
    skb.family = if outer_v6 { Family::Ipv6 } else { Family::Ipv4 };
    super::steal(skb, rt)
}

/// The largest inner packet a route of `route_mtu` carries to `c`'s real server: the outer IP
/// header and the GUE or GRE header come off (§16 TUN).
#[inline]
pub(crate) fn inner_mtu(c: &Conn, route_mtu: u16, outer_v6: bool) -> usize {
    let (tun_type, tun_csum, _) = c.dest.as_ref().map_or((TunnelType::Ipip, TunnelCsum::NoCsum, 0), |d| d.tunnel());
    let outer_len = if outer_v6 { OUTER_V6 } else { OUTER_LEN };
    (route_mtu as usize).saturating_sub(outer_len + encap::overhead(tun_type, tun_csum, false))
}

/// A per-flow value for the GUE source port, so one flow takes one path through ECMP.
fn flow_of(c: &Conn, caddr: IpAddr) -> u32 {
    let a = match caddr {
        IpAddr::V4(a) => u32::from(a),
        IpAddr::V6(a) => a.segments().iter().fold(0u32, |h, w| h.rotate_left(5) ^ u32::from(*w)),
    };
    a ^ (c.cport as u32).wrapping_mul(0x9e37_79b9)
}
