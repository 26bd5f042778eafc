//! Transmitters: one per forwarding method. Each writes the whole outgoing packet in place
//! (headroom for encapsulation), sets the route, marks the packet as IPVS's own and STEALs it
//! for re-injection at LOCAL_OUT (lvs-semantics.md §1, §16).

mod dr;
pub(crate) mod encap;
pub(crate) mod icmp;
mod nat;
pub(crate) mod rst;
pub(crate) mod tun;

use netfilter::{DropReason, Family, Output, Route, RouteKind, Skb, Verdict};

use crate::conn::{Conn, ConnAddrs};
use crate::ctx::{RouteTo, Routing};
use crate::dest::ForwardMethod;
use crate::packet::Tuple;

pub(crate) use nat::{nat_out_rewrite, rewrite_v4};

/// Transmit a client → real packet of connection `c`. `ip_id` feeds outer tunnel headers.
#[inline]
pub(crate) fn xmit(
    c: &Conn,
    a: &ConnAddrs,
    skb: &mut Skb<'_>,
    t: &Tuple,
    routing: &dyn Routing,
    ip_id: &mut u16,
    pmtu_disc: bool,
) -> Verdict {
    let Some(rt) = routing.route(&a.daddr) else {
        return skb.drop_with(DropReason::NoRoute);
    };
    // TTL first, before encapsulation and the MTU check (§16 step 2).
    if ttl(skb) <= 1 {
        return icmp::send_error(skb, routing, icmp::Error::TimeExceeded, DropReason::TtlExceeded);
    }
    match c.method() {
        ForwardMethod::Masq => nat::xmit(c, a, skb, t, &rt, routing),
        ForwardMethod::Route => dr::xmit(skb, t, &rt, routing),
        ForwardMethod::Tunnel => tun::xmit(c, a, skb, t, &rt, routing, ip_id, pmtu_disc),
        // A local real server or a bypass entry: leave the packet to the stack.
        ForwardMethod::Local | ForwardMethod::Bypass => Verdict::Accept,
    }
}

/// The TTL (IPv4) or hop limit (IPv6).
#[inline]
pub(crate) fn ttl(skb: &Skb<'_>) -> u8 {
    let n = skb.network_bytes();
    match skb.family {
        Family::Ipv6 => n.get(7).copied().unwrap_or(0),
        _ => n.get(8).copied().unwrap_or(0),
    }
}

/// Decrement the TTL (incremental header checksum) or the hop limit. Callers checked it is
/// above 1.
#[inline]
pub(crate) fn dec_ttl(skb: &mut Skb<'_>) {
    let v6 = skb.family == Family::Ipv6;
    let n = skb.network_bytes_mut();
    if v6 {
        if let Some(h) = n.get_mut(7) {
            *h = h.saturating_sub(1);
        }
        return;
    }
    // One fixed-size view: no bounds check per field.
    if let Some(h) = n.first_chunk_mut::<20>() {
        dec_ttl_v4(h);
    }
}

/// Decrement an IPv4 TTL with the RFC 1624 header checksum update (the packet layer's own,
/// on a fixed-size header).
#[inline(always)]
pub(crate) fn dec_ttl_v4(h: &mut [u8; 20]) {
    wire::Ipv4Packet::new_unchecked(&mut h[..]).dec_ttl();
}

/// Packets over the usable MTU get fragmentation-needed / packet-too-big with that MTU and are
/// dropped (§16 step 3). rvs does not fragment, so unlike the kernel it answers IPv4 packets
/// without DF the same way rather than fragmenting them (docs/semantics.md).
#[inline]
pub(crate) fn check_mtu(skb: &mut Skb<'_>, t: &Tuple, mtu: usize, routing: &dyn Routing) -> Option<Verdict> {
    if t.ip_len > mtu {
        return Some(icmp::send_error(skb, routing, icmp::Error::TooBig(mtu as u32), DropReason::FragNeeded));
    }
    None
}

/// Attach the route and hand the packet to LOCAL_OUT.
#[inline]
pub(crate) fn steal(skb: &mut Skb<'_>, rt: &RouteTo) -> Verdict {
    skb.route = Route { kind: RouteKind::Forward, out_if: rt.out_if, next_hop: Some(rt.next_hop), mtu: rt.mtu };
    skb.ipvs_property = true;
    skb.output = Output::LocalOut;
    skb.hash = 0;
    Verdict::Stolen
}
