//! The node's view of the network: interfaces, addresses, routes and neighbours. An immutable
//! snapshot, replaced as a whole when netlink (or the config) says something changed.

use std::net::IpAddr;

use ipvs::service::FastMap as HashMap;
use ipvs::{RouteTo, RouteV4, Routing};
use wire::MacAddr;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Interface {
    /// Kernel ifindex (also the node's interface id).
    pub index: u32,
    pub name: String,
    pub mac: MacAddr,
    pub mtu: u16,
    /// Addresses with prefix length.
    pub addrs: Vec<(IpAddr, u8)>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteEntry {
    pub dst: IpAddr,
    pub prefix: u8,
    pub gateway: Option<IpAddr>,
    pub out_if: u32,
    /// Preferred source; else the first address of `out_if` in the family.
    pub src: Option<IpAddr>,
    /// Route MTU; else the interface MTU.
    pub mtu: Option<u16>,
}

#[derive(Clone, Debug, Default)]
pub struct NetState {
    pub interfaces: Vec<Interface>,
    /// Sorted longest prefix first by [`NetState::new`].
    pub routes: Vec<RouteEntry>,
    pub neighbours: HashMap<IpAddr, MacAddr>,
    /// IPv4 routes flattened to integer masks with their answer precomputed (per-packet path).
    v4: Vec<V4Route>,
}

#[derive(Clone, Copy, Debug)]
struct V4Route {
    net: u32,
    mask: u32,
    gateway: Option<IpAddr>,
    /// The next hop as the shortcut needs it.
    hop: Hop,
    /// `next_hop` is filled per lookup.
    to: RouteTo,
}

#[derive(Clone, Copy, Debug)]
enum Hop {
    OnLink,
    Gateway(u32),
    /// An IPv6 gateway for an IPv4 route: left to [`Routing::route`].
    NotV4,
}

pub(crate) fn prefix_match(a: &IpAddr, net: &IpAddr, prefix: u8) -> bool {
    match (a, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let m = if prefix == 0 { 0 } else { u32::MAX << (32 - prefix.min(32)) };
            u32::from(*a) & m == u32::from(*n) & m
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let m = if prefix == 0 { 0 } else { u128::MAX << (128 - prefix.min(128) as u32) };
            u128::from(*a) & m == u128::from(*n) & m
        }
        _ => false,
    }
}

impl NetState {
    pub fn new(interfaces: Vec<Interface>, mut routes: Vec<RouteEntry>, neighbours: HashMap<IpAddr, MacAddr>) -> Self {
        // Connected routes for every interface address, unless given.
        for i in &interfaces {
            for &(a, p) in &i.addrs {
                if !routes.iter().any(|r| r.prefix == p && prefix_match(&a, &r.dst, p) && r.gateway.is_none()) {
                    routes.push(RouteEntry {
                        dst: a,
                        prefix: p,
                        gateway: None,
                        out_if: i.index,
                        src: Some(a),
                        mtu: None,
                    });
                }
            }
        }
        routes.sort_by_key(|r| std::cmp::Reverse(r.prefix));
        let mut st = NetState { interfaces, routes, neighbours, v4: Vec::new() };
        st.v4 = st
            .routes
            .iter()
            .filter_map(|r| {
                let IpAddr::V4(net) = r.dst else { return None };
                let mask = if r.prefix == 0 { 0 } else { u32::MAX << (32 - r.prefix.min(32)) };
                let to = st.resolve(r, &IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED))?;
                let hop = match r.gateway {
                    Some(IpAddr::V4(g)) => Hop::Gateway(u32::from(g)),
                    Some(IpAddr::V6(_)) => Hop::NotV4,
                    None => Hop::OnLink,
                };
                Some(V4Route { net: u32::from(net) & mask, mask, gateway: r.gateway, hop, to })
            })
            .collect();
        st
    }

    #[inline]
    pub fn interface(&self, index: u32) -> Option<&Interface> {
        self.interfaces.iter().find(|i| i.index == index)
    }

    /// Is `a` one of the node's own addresses?
    pub fn is_local(&self, a: &IpAddr) -> bool {
        self.interfaces.iter().any(|i| i.addrs.iter().any(|(x, _)| x == a))
    }

    /// Longest-prefix match.
    #[inline]
    pub fn lookup(&self, dst: &IpAddr) -> Option<&RouteEntry> {
        self.routes.iter().find(|r| prefix_match(dst, &r.dst, r.prefix))
    }
}

impl NetState {
    /// Longest-prefix match over the flattened IPv4 routes: a plain loop over a handful of
    /// routes (no iterator set-up).
    #[inline(always)]
    fn find_v4(&self, d: u32) -> Option<&V4Route> {
        let mut i = 0;
        while i < self.v4.len() && d & self.v4[i].mask != self.v4[i].net {
            i += 1;
        }
        self.v4.get(i)
    }

    fn resolve(&self, r: &RouteEntry, dst: &IpAddr) -> Option<RouteTo> {
        let ifc = self.interface(r.out_if)?;
        let src = r.src.or_else(|| ifc.addrs.iter().find(|(a, _)| a.is_ipv4() == r.dst.is_ipv4()).map(|(a, _)| *a))?;
        Some(RouteTo { out_if: r.out_if, next_hop: r.gateway.unwrap_or(*dst), mtu: r.mtu.unwrap_or(ifc.mtu), src })
    }
}

impl Routing for NetState {
    #[inline]
    fn route(&self, dst: &IpAddr) -> Option<RouteTo> {
        if let IpAddr::V4(d) = dst {
            let r = self.find_v4(u32::from(*d))?;
            let mut to = r.to;
            to.next_hop = r.gateway.unwrap_or(*dst);
            return Some(to);
        }
        let r = self.lookup(dst)?;
        self.resolve(r, dst)
    }

    #[inline(always)]
    fn route_v4(&self, d: u32) -> Option<RouteV4> {
        let r = self.find_v4(d)?;
        let next_hop = match r.hop {
            Hop::OnLink => d,
            Hop::Gateway(g) => g,
            Hop::NotV4 => return None,
        };
        Some(RouteV4 { out_if: r.to.out_if, next_hop, mtu: r.to.mtu })
    }
}
