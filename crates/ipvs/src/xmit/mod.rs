//! Transmitters: one per forwarding method. Each writes the whole outgoing packet in place
//! (headroom for encapsulation), sets the route, marks the packet as IPVS's own and STEALs it
//! for re-injection at LOCAL_OUT (lvs-semantics.md §1, §16).

mod dr;
pub(crate) mod encap;
pub(crate) mod icmp;
mod nat;
mod tun;

use netfilter::{DropReason, Output, Route, RouteKind, Skb, Verdict};

use crate::conn::Conn;
use crate::ctx::{RouteTo, Routing};
use crate::dest::ForwardMethod;
use crate::packet::Tuple;

pub(crate) use nat::nat_out_rewrite;

/// Transmit a client → real packet of connection `c`. `ip_id` feeds outer tunnel headers.
#[inline]
pub(crate) fn xmit(
    c: &Conn,
    skb: &mut Skb<'_>,
    t: &Tuple,
    routing: &dyn Routing,
    ip_id: &mut u16,
    pmtu_disc: bool,
) -> Verdict {
    let Some(rt) = routing.route(&c.daddr) else {
        return skb.drop_with(DropReason::NoRoute);
    };
    // TTL first, before encapsulation and the MTU check (§16 step 2).
    let ttl = skb.network_bytes()[8];
    if ttl <= 1 {
        return icmp::send_error_v4(skb, routing, wire::icmpv4::msg_type::TIME_EXCEEDED, 0, 0, DropReason::TtlExceeded);
    }
    match c.method() {
        ForwardMethod::Masq => nat::xmit(c, skb, t, &rt, routing),
        ForwardMethod::Route => dr::xmit(skb, t, &rt, routing),
        ForwardMethod::Tunnel => tun::xmit(c, skb, t, &rt, routing, ip_id, pmtu_disc),
        // A local real server or a bypass entry: leave the packet to the stack.
        ForwardMethod::Local | ForwardMethod::Bypass => Verdict::Accept,
    }
}

/// Decrement the TTL (incremental header checksum).
#[inline]
pub(crate) fn dec_ttl(skb: &mut Skb<'_>) {
    wire::Ipv4Packet::new_unchecked(skb.network_bytes_mut()).dec_ttl();
}

/// DF packets over the usable MTU get ICMP fragmentation-needed (§16 step 3).
#[inline]
pub(crate) fn check_mtu(skb: &mut Skb<'_>, t: &Tuple, mtu: usize, routing: &dyn Routing) -> Option<Verdict> {
    let df = skb.network_bytes()[6] & 0x40 != 0;
    if df && t.ip_len > mtu {
        return Some(icmp::send_error_v4(
            skb,
            routing,
            wire::icmpv4::msg_type::DEST_UNREACH,
            wire::icmpv4::code::FRAG_NEEDED,
            mtu as u32,
            DropReason::FragNeeded,
        ));
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
