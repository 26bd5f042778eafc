//! What IPVS needs from the node it is registered on: its per-worker state and routing
//! (the kernel's per-CPU data and `ip_route_output`).

use std::net::IpAddr;

use crate::worker::Worker;

/// A route towards an address, as the node resolved it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RouteTo {
    /// Node interface index.
    pub out_if: u32,
    /// Gateway, or the destination itself when on-link.
    pub next_hop: IpAddr,
    /// Path MTU of the route.
    pub mtu: u16,
    /// The node's source address on that path (outer source of tunnels, ICMP source).
    pub src: IpAddr,
}

/// The part of a [`RouteTo`] the shortcut needs, for an IPv4 route (small enough to pass in
/// registers).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RouteV4 {
    pub out_if: u32,
    pub next_hop: u32,
    pub mtu: u16,
}

pub trait Routing {
    fn route(&self, dst: &IpAddr) -> Option<RouteTo>;

    /// [`Routing::route`] for an IPv4 destination with an IPv4 next hop, all as numbers (the
    /// shortcut's per-packet lookup).
    #[inline]
    fn route_v4(&self, dst: u32) -> Option<RouteV4> {
        let r = self.route(&IpAddr::V4(dst.into()))?;
        let IpAddr::V4(hop) = r.next_hop else { return None };
        Some(RouteV4 { out_if: r.out_if, next_hop: hop.into(), mtu: r.mtu })
    }
}

/// Implemented by the node's per-worker context, so the IPVS hooks reach their connection table
/// without any lock.
pub trait IpvsContext: 'static {
    fn ipvs(&mut self) -> (&mut Worker, &dyn Routing);
}
