//! Pure parsing of rtnetlink messages (RFC 3549; `include/uapi/linux/{netlink,rtnetlink,
//! if_link,if_addr,neighbour}.h`). Every length is checked against the buffer: a malformed
//! message or attribute ends the walk at that point and is never trusted, nothing panics.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::{Addr, Link, Neigh, NeighState, NextHop, Route};

pub(crate) const NLMSG_HDRLEN: usize = 16;
pub(crate) const NLMSG_ERROR: u16 = 2;
pub(crate) const NLMSG_DONE: u16 = 3;
pub(crate) const NLMSG_OVERRUN: u16 = 4;
pub(crate) const NLM_F_DUMP_INTR: u16 = 0x10;

pub(crate) const RTM_NEWLINK: u16 = 16;
pub(crate) const RTM_DELLINK: u16 = 17;
pub(crate) const RTM_GETLINK: u16 = 18;
pub(crate) const RTM_NEWADDR: u16 = 20;
pub(crate) const RTM_DELADDR: u16 = 21;
pub(crate) const RTM_GETADDR: u16 = 22;
pub(crate) const RTM_NEWROUTE: u16 = 24;
pub(crate) const RTM_DELROUTE: u16 = 25;
pub(crate) const RTM_GETROUTE: u16 = 26;
pub(crate) const RTM_NEWNEIGH: u16 = 28;
pub(crate) const RTM_DELNEIGH: u16 = 29;
pub(crate) const RTM_GETNEIGH: u16 = 30;

/// Fixed header sizes following `nlmsghdr`: ifinfomsg, ifaddrmsg, rtmsg, ndmsg.
pub(crate) const IFINFOMSG_LEN: usize = 16;
pub(crate) const IFADDRMSG_LEN: usize = 8;
pub(crate) const RTMSG_LEN: usize = 12;
pub(crate) const NDMSG_LEN: usize = 12;

const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;

const IFLA_ADDRESS: u16 = 1;
const IFLA_IFNAME: u16 = 3;
const IFLA_MTU: u16 = 4;
const IFLA_LINKINFO: u16 = 18;
const IFLA_INFO_KIND: u16 = 1;
const IFF_UP: u32 = 0x1;
const IFF_LOWER_UP: u32 = 0x1_0000;

const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;

const RTA_DST: u16 = 1;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;
const RTA_PRIORITY: u16 = 6;
const RTA_PREFSRC: u16 = 7;
const RTA_METRICS: u16 = 8;
const RTA_MULTIPATH: u16 = 9;
const RTA_TABLE: u16 = 15;
const RTA_VIA: u16 = 18;
const RTAX_MTU: u16 = 2;
const RT_TABLE_MAIN: u32 = 254;
const RTN_UNICAST: u8 = 1;
/// `struct rtnexthop`: len u16, flags u8, hops u8, ifindex i32.
const RTNH_LEN: usize = 8;

const NDA_DST: u16 = 1;
const NDA_LLADDR: u16 = 2;

const fn align4(n: usize) -> usize {
    (n + 3) & !3
}

fn u16_at(b: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(off..off + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(off..off + 4)?.try_into().ok()?))
}

/// One netlink message; `payload` is what follows the 16-byte header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct NlMsg<'a> {
    pub ty: u16,
    pub flags: u16,
    pub seq: u32,
    pub pid: u32,
    pub payload: &'a [u8],
}

/// Iterates the messages of one datagram. Stops at the first header whose length is below
/// the header size or beyond the buffer: the framing after it cannot be trusted.
pub(crate) struct Messages<'a>(&'a [u8]);

pub(crate) fn messages(buf: &[u8]) -> Messages<'_> {
    Messages(buf)
}

impl<'a> Iterator for Messages<'a> {
    type Item = NlMsg<'a>;

    fn next(&mut self) -> Option<NlMsg<'a>> {
        let b = self.0;
        let len = u32_at(b, 0)? as usize;
        if len < NLMSG_HDRLEN || len > b.len() {
            self.0 = &[];
            return None;
        }
        let msg = NlMsg {
            ty: u16_at(b, 4)?,
            flags: u16_at(b, 6)?,
            seq: u32_at(b, 8)?,
            pid: u32_at(b, 12)?,
            payload: &b[NLMSG_HDRLEN..len],
        };
        self.0 = b.get(align4(len)..).unwrap_or(&[]);
        Some(msg)
    }
}

/// Iterates `rtattr`/`nlattr` (type without the NESTED/BYTEORDER flags, payload). Stops at
/// the first attribute whose length is below 4 or beyond the buffer.
pub(crate) struct Attrs<'a>(&'a [u8]);

pub(crate) fn attrs(buf: &[u8]) -> Attrs<'_> {
    Attrs(buf)
}

impl<'a> Iterator for Attrs<'a> {
    type Item = (u16, &'a [u8]);

    fn next(&mut self) -> Option<(u16, &'a [u8])> {
        let b = self.0;
        let len = u16_at(b, 0)? as usize;
        if len < 4 || len > b.len() {
            self.0 = &[];
            return None;
        }
        let ty = u16_at(b, 2)? & 0x3fff;
        self.0 = b.get(align4(len)..).unwrap_or(&[]);
        Some((ty, &b[4..len]))
    }
}

/// The errno of an `NLMSG_ERROR` payload (0 is an acknowledgement).
pub(crate) fn error_code(payload: &[u8]) -> Option<i32> {
    u32_at(payload, 0).map(|v| v as i32)
}

fn ip_of(family: u8, b: &[u8]) -> Option<IpAddr> {
    match (family, b.len()) {
        (AF_INET, 4) => Some(IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]))),
        (AF_INET6, 16) => {
            let a: [u8; 16] = b.try_into().ok()?;
            Some(IpAddr::V6(Ipv6Addr::from(a)))
        }
        _ => None,
    }
}

fn mac_of(b: &[u8]) -> Option<[u8; 6]> {
    b.try_into().ok()
}

/// A NUL-terminated (or not) attribute string; invalid UTF-8 is rejected.
fn str_of(b: &[u8]) -> Option<String> {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    std::str::from_utf8(&b[..end]).ok().map(str::to_owned)
}

fn u32_attr(b: &[u8]) -> Option<u32> {
    (b.len() == 4).then(|| u32_at(b, 0)).flatten()
}

/// `RTM_NEWLINK` payload. Requires an index and a name.
pub(crate) fn parse_link(p: &[u8]) -> Option<Link> {
    if p.len() < IFINFOMSG_LEN {
        return None;
    }
    let arphrd = u16_at(p, 2)?;
    let index = u32::try_from(u32_at(p, 4)? as i32).ok().filter(|&i| i > 0)?;
    let flags = u32_at(p, 8)?;
    let (mut name, mut mac, mut mtu, mut kind) = (None, None, 0, None);
    for (ty, v) in attrs(&p[IFINFOMSG_LEN..]) {
        match ty {
            IFLA_IFNAME => name = str_of(v),
            IFLA_ADDRESS => mac = mac_of(v),
            IFLA_MTU => mtu = u32_attr(v).unwrap_or(0),
            IFLA_LINKINFO => {
                kind = attrs(v).find(|&(t, _)| t == IFLA_INFO_KIND).and_then(|(_, k)| str_of(k));
            }
            _ => {}
        }
    }
    Some(Link {
        index,
        name: name?,
        mac,
        mtu,
        up: flags & IFF_UP != 0,
        lower_up: flags & IFF_LOWER_UP != 0,
        arphrd,
        kind,
    })
}

/// `RTM_NEWADDR` payload, IPv4 or IPv6. The local address (`IFA_LOCAL`) wins over
/// `IFA_ADDRESS`, which is the peer on point-to-point links.
pub(crate) fn parse_addr(p: &[u8]) -> Option<Addr> {
    if p.len() < IFADDRMSG_LEN {
        return None;
    }
    let family = p[0];
    let prefix_len = p[1];
    let scope = p[3];
    let ifindex = u32_at(p, 4)?;
    let max = if family == AF_INET { 32 } else { 128 };
    if prefix_len > max {
        return None;
    }
    let (mut local, mut address) = (None, None);
    for (ty, v) in attrs(&p[IFADDRMSG_LEN..]) {
        match ty {
            IFA_LOCAL => local = ip_of(family, v),
            IFA_ADDRESS => address = ip_of(family, v),
            _ => {}
        }
    }
    Some(Addr { ifindex, addr: local.or(address)?, prefix_len, scope })
}

/// `RTA_VIA`: `struct rtvia { family: u16, addr }`.
fn via_of(v: &[u8]) -> Option<IpAddr> {
    let family = u16_at(v, 0)?;
    ip_of(u8::try_from(family).ok()?, v.get(2..)?)
}

fn parse_multipath(family: u8, mut b: &[u8]) -> Vec<NextHop> {
    let mut hops = Vec::new();
    while b.len() >= RTNH_LEN {
        let (Some(len), Some(ifindex)) = (u16_at(b, 0), u32_at(b, 4)) else {
            break;
        };
        let len = len as usize;
        if len < RTNH_LEN || len > b.len() {
            break;
        }
        let mut gateway = None;
        for (ty, v) in attrs(&b[RTNH_LEN..len]) {
            match ty {
                RTA_GATEWAY => gateway = ip_of(family, v),
                RTA_VIA => gateway = via_of(v),
                _ => {}
            }
        }
        hops.push(NextHop {
            gateway,
            oif: ifindex,
            // rtnh_hops is weight - 1.
            weight: u16::from(b[3]) + 1,
        });
        b = b.get(align4(len)..).unwrap_or(&[]);
    }
    hops
}

/// `RTM_NEWROUTE` payload: only unicast routes of the main table, IPv4 and IPv6.
pub(crate) fn parse_route(p: &[u8]) -> Option<Route> {
    if p.len() < RTMSG_LEN {
        return None;
    }
    let family = p[0];
    if family != AF_INET && family != AF_INET6 {
        return None;
    }
    let prefix_len = p[1];
    let max = if family == AF_INET { 32 } else { 128 };
    if prefix_len > max || p[7] != RTN_UNICAST {
        return None;
    }
    let mut table = u32::from(p[4]);
    let (protocol, scope) = (p[5], p[6]);
    let mut r = Route {
        dst: if family == AF_INET { IpAddr::V4(Ipv4Addr::UNSPECIFIED) } else { IpAddr::V6(Ipv6Addr::UNSPECIFIED) },
        prefix_len,
        gateway: None,
        oif: None,
        prefsrc: None,
        mtu: None,
        metric: None,
        nexthops: Vec::new(),
        protocol,
        scope,
    };
    for (ty, v) in attrs(&p[RTMSG_LEN..]) {
        match ty {
            RTA_DST => r.dst = ip_of(family, v)?,
            RTA_GATEWAY => r.gateway = ip_of(family, v),
            RTA_VIA => r.gateway = via_of(v),
            RTA_OIF => r.oif = u32_attr(v),
            RTA_PREFSRC => r.prefsrc = ip_of(family, v),
            RTA_PRIORITY => r.metric = u32_attr(v),
            RTA_TABLE => table = u32_attr(v)?,
            RTA_METRICS => {
                r.mtu = attrs(v).find(|&(t, _)| t == RTAX_MTU).and_then(|(_, m)| u32_attr(m)).filter(|&m| m > 0);
            }
            RTA_MULTIPATH => r.nexthops = parse_multipath(family, v),
            _ => {}
        }
    }
    (table == RT_TABLE_MAIN).then_some(r)
}

/// `RTM_NEWNEIGH` payload, IPv4 (ARP) or IPv6 (ND). Requires the IP address. Entries for
/// multicast and limited-broadcast destinations are skipped: the kernel makes NOARP entries
/// for them (e.g. `ff02::16` when it sends an MLD report) whose MAC is derived from the
/// address, so they carry nothing the node needs.
pub(crate) fn parse_neigh(p: &[u8]) -> Option<Neigh> {
    if p.len() < NDMSG_LEN {
        return None;
    }
    let family = p[0];
    let ifindex = u32_at(p, 4)?;
    let state = u16_at(p, 8)?;
    let (mut ip, mut mac) = (None, None);
    for (ty, v) in attrs(&p[NDMSG_LEN..]) {
        match ty {
            NDA_DST => ip = ip_of(family, v),
            NDA_LLADDR => mac = mac_of(v),
            _ => {}
        }
    }
    let ip = ip?;
    let derived = match ip {
        IpAddr::V4(a) => a.is_multicast() || a.is_broadcast(),
        IpAddr::V6(a) => a.is_multicast(),
    };
    if derived {
        return None;
    }
    Some(Neigh { ifindex, ip, mac, state: NeighState(state) })
}

/// True for a notification that changes what a dump would return (new and deleted objects
/// carry the same payload), and for an overrun, after which nothing is known.
pub(crate) fn is_relevant(ty: u16, payload: &[u8]) -> bool {
    match ty {
        RTM_NEWLINK | RTM_DELLINK => parse_link(payload).is_some(),
        RTM_NEWADDR | RTM_DELADDR => parse_addr(payload).is_some(),
        RTM_NEWROUTE | RTM_DELROUTE => parse_route(payload).is_some(),
        RTM_NEWNEIGH | RTM_DELNEIGH => parse_neigh(payload).is_some(),
        NLMSG_OVERRUN => true,
        _ => false,
    }
}

#[cfg(test)]
pub(crate) mod build {
    //! Byte builders for hand-made messages (tests only).

    pub fn rta(ty: u16, data: &[u8]) -> Vec<u8> {
        let len = 4 + data.len();
        let mut v = Vec::with_capacity(super::align4(len));
        v.extend_from_slice(&(len as u16).to_ne_bytes());
        v.extend_from_slice(&ty.to_ne_bytes());
        v.extend_from_slice(data);
        v.resize(super::align4(len), 0);
        v
    }

    pub fn nlmsg(ty: u16, flags: u16, seq: u32, payload: &[u8]) -> Vec<u8> {
        let len = 16 + payload.len();
        let mut v = Vec::new();
        v.extend_from_slice(&(len as u32).to_ne_bytes());
        v.extend_from_slice(&ty.to_ne_bytes());
        v.extend_from_slice(&flags.to_ne_bytes());
        v.extend_from_slice(&seq.to_ne_bytes());
        v.extend_from_slice(&77u32.to_ne_bytes());
        v.extend_from_slice(payload);
        v.resize(super::align4(len), 0);
        v
    }

    pub fn ifinfomsg(index: i32, flags: u32, attrs: &[Vec<u8>]) -> Vec<u8> {
        let mut v = vec![0u8, 0];
        v.extend_from_slice(&1u16.to_ne_bytes()); // ARPHRD_ETHER
        v.extend_from_slice(&index.to_ne_bytes());
        v.extend_from_slice(&flags.to_ne_bytes());
        v.extend_from_slice(&0u32.to_ne_bytes());
        attrs.iter().for_each(|a| v.extend_from_slice(a));
        v
    }

    pub fn ifaddrmsg(family: u8, plen: u8, index: u32, attrs: &[Vec<u8>]) -> Vec<u8> {
        let mut v = vec![family, plen, 0, 0];
        v.extend_from_slice(&index.to_ne_bytes());
        attrs.iter().for_each(|a| v.extend_from_slice(a));
        v
    }

    pub fn rtmsg(family: u8, dst_len: u8, table: u8, rtype: u8, attrs: &[Vec<u8>]) -> Vec<u8> {
        let mut v = vec![family, dst_len, 0, 0, table, 4, 0, rtype, 0, 0, 0, 0];
        attrs.iter().for_each(|a| v.extend_from_slice(a));
        v
    }

    pub fn ndmsg(family: u8, index: i32, state: u16, attrs: &[Vec<u8>]) -> Vec<u8> {
        let mut v = vec![family, 0, 0, 0];
        v.extend_from_slice(&index.to_ne_bytes());
        v.extend_from_slice(&state.to_ne_bytes());
        v.extend_from_slice(&[0, 0]);
        attrs.iter().for_each(|a| v.extend_from_slice(a));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::build::*;
    use super::*;

    const MAC: [u8; 6] = [2, 0, 0, 0, 0, 0xfe];

    fn link_payload() -> Vec<u8> {
        ifinfomsg(
            3,
            IFF_UP | IFF_LOWER_UP,
            &[
                rta(IFLA_IFNAME, b"veth0\0"),
                rta(IFLA_ADDRESS, &MAC),
                rta(IFLA_MTU, &1500u32.to_ne_bytes()),
                rta(IFLA_LINKINFO | 0x8000, &rta(IFLA_INFO_KIND, b"veth\0")),
            ],
        )
    }

    fn route_payload() -> Vec<u8> {
        let metrics = rta(RTAX_MTU, &1400u32.to_ne_bytes());
        rtmsg(
            AF_INET,
            16,
            254,
            RTN_UNICAST,
            &[
                rta(RTA_TABLE, &254u32.to_ne_bytes()),
                rta(RTA_DST, &[10, 99, 0, 0]),
                rta(RTA_GATEWAY, &[10, 88, 0, 254]),
                rta(RTA_OIF, &3u32.to_ne_bytes()),
                rta(RTA_PREFSRC, &[10, 88, 0, 1]),
                rta(RTA_PRIORITY, &100u32.to_ne_bytes()),
                rta(RTA_METRICS | 0x8000, &metrics),
            ],
        )
    }

    #[test]
    fn link() {
        let l = parse_link(&link_payload()).expect("link");
        assert_eq!(
            l,
            Link {
                index: 3,
                name: "veth0".into(),
                mac: Some(MAC),
                mtu: 1500,
                up: true,
                lower_up: true,
                arphrd: 1,
                kind: Some("veth".into()),
            }
        );
        // No name: not a usable link.
        assert_eq!(parse_link(&ifinfomsg(3, 0, &[])), None);
        // A 20-byte (InfiniBand) address is not a MAC.
        let ib = ifinfomsg(4, 0, &[rta(IFLA_IFNAME, b"ib0"), rta(IFLA_ADDRESS, &[9; 20])]);
        assert_eq!(parse_link(&ib).map(|l| (l.name, l.mac)), Some(("ib0".into(), None)));
        // Index 0 or negative is invalid.
        assert_eq!(parse_link(&ifinfomsg(-1, 0, &[rta(IFLA_IFNAME, b"x")])), None);
    }

    #[test]
    fn addr_v4_prefers_local_and_v6() {
        let p = ifaddrmsg(AF_INET, 24, 3, &[rta(IFA_ADDRESS, &[10, 0, 0, 9]), rta(IFA_LOCAL, &[10, 0, 0, 1])]);
        let a = parse_addr(&p).expect("addr");
        assert_eq!((a.addr, a.prefix_len, a.ifindex), ("10.0.0.1".parse().unwrap(), 24, 3));

        let v6: Ipv6Addr = "2001:db8::1".parse().unwrap();
        let p = ifaddrmsg(AF_INET6, 64, 5, &[rta(IFA_ADDRESS, &v6.octets())]);
        let a = parse_addr(&p).expect("addr6");
        assert_eq!((a.addr, a.prefix_len), (IpAddr::V6(v6), 64));

        // Wrong address length for the family, or an impossible prefix.
        assert_eq!(parse_addr(&ifaddrmsg(AF_INET, 24, 3, &[rta(IFA_LOCAL, &[1; 16])])), None);
        assert_eq!(parse_addr(&ifaddrmsg(AF_INET, 33, 3, &[rta(IFA_LOCAL, &[1; 4])])), None);
    }

    #[test]
    fn route_main_unicast() {
        let r = parse_route(&route_payload()).expect("route");
        assert_eq!(r.dst, "10.99.0.0".parse::<IpAddr>().unwrap());
        assert_eq!(r.prefix_len, 16);
        assert_eq!(r.gateway, Some("10.88.0.254".parse().unwrap()));
        assert_eq!(r.oif, Some(3));
        assert_eq!(r.prefsrc, Some("10.88.0.1".parse().unwrap()));
        assert_eq!(r.mtu, Some(1400));
        assert_eq!(r.metric, Some(100));
        assert!(r.nexthops.is_empty());

        // Default route: no RTA_DST.
        let d = rtmsg(AF_INET6, 0, 254, RTN_UNICAST, &[rta(RTA_OIF, &2u32.to_ne_bytes())]);
        let r = parse_route(&d).expect("default");
        assert_eq!((r.dst, r.prefix_len), (IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0));
    }

    #[test]
    fn route_filters() {
        // Local table (255), via rtm_table and via RTA_TABLE.
        assert_eq!(parse_route(&rtmsg(AF_INET, 32, 255, RTN_UNICAST, &[])), None);
        let t = rtmsg(AF_INET, 32, 254, RTN_UNICAST, &[rta(RTA_TABLE, &255u32.to_ne_bytes())]);
        assert_eq!(parse_route(&t), None);
        // RTN_LOCAL (2), RTN_BROADCAST (3), RTN_MULTICAST (5) are skipped.
        for ty in [2, 3, 5] {
            assert_eq!(parse_route(&rtmsg(AF_INET, 32, 254, ty, &[])), None);
        }
        // Other families (e.g. AF_MPLS 28).
        assert_eq!(parse_route(&rtmsg(28, 20, 254, RTN_UNICAST, &[])), None);
        // A RTA_DST of the wrong size makes the route unusable rather than 0/0.
        let bad = rtmsg(AF_INET, 24, 254, RTN_UNICAST, &[rta(RTA_DST, &[1, 2, 3])]);
        assert_eq!(parse_route(&bad), None);
    }

    #[test]
    fn route_multipath() {
        let mut mp = Vec::new();
        for (gw, oif, hops) in [([10, 0, 0, 1], 2u32, 0u8), ([10, 0, 1, 1], 3, 4)] {
            let a = rta(RTA_GATEWAY, &gw);
            let len = (RTNH_LEN + a.len()) as u16;
            mp.extend_from_slice(&len.to_ne_bytes());
            mp.extend_from_slice(&[0, hops]);
            mp.extend_from_slice(&oif.to_ne_bytes());
            mp.extend_from_slice(&a);
        }
        // A trailing truncated nexthop is ignored.
        mp.extend_from_slice(&[200, 0, 0, 0]);
        let p = rtmsg(AF_INET, 0, 254, RTN_UNICAST, &[rta(RTA_MULTIPATH | 0x8000, &mp)]);
        let r = parse_route(&p).expect("route");
        assert_eq!(
            r.nexthops,
            vec![
                NextHop { gateway: Some("10.0.0.1".parse().unwrap()), oif: 2, weight: 1 },
                NextHop { gateway: Some("10.0.1.1".parse().unwrap()), oif: 3, weight: 5 },
            ]
        );
    }

    #[test]
    fn route_via_ipv6_gateway() {
        let gw: Ipv6Addr = "fe80::1".parse().unwrap();
        let mut via = (AF_INET6 as u16).to_ne_bytes().to_vec();
        via.extend_from_slice(&gw.octets());
        let p = rtmsg(AF_INET, 0, 254, RTN_UNICAST, &[rta(RTA_VIA, &via)]);
        assert_eq!(parse_route(&p).and_then(|r| r.gateway), Some(IpAddr::V6(gw)));
    }

    #[test]
    fn neigh() {
        let p = ndmsg(AF_INET, 3, 0x80, &[rta(NDA_DST, &[10, 88, 0, 254]), rta(NDA_LLADDR, &MAC)]);
        let n = parse_neigh(&p).expect("neigh");
        assert_eq!(n.ip, "10.88.0.254".parse::<IpAddr>().unwrap());
        assert_eq!(n.mac, Some(MAC));
        assert_eq!(n.state, NeighState::PERMANENT);
        assert!(n.usable());

        // Incomplete: no MAC yet, not usable.
        let p = ndmsg(AF_INET, 3, 0x01, &[rta(NDA_DST, &[10, 88, 0, 7])]);
        let n = parse_neigh(&p).expect("incomplete");
        assert!(!n.usable());
        // Multicast and broadcast entries: skipped.
        let mc: Ipv6Addr = "ff02::16".parse().unwrap();
        let p = ndmsg(AF_INET6, 3, 0x40, &[rta(NDA_DST, &mc.octets()), rta(NDA_LLADDR, &MAC)]);
        assert_eq!(parse_neigh(&p), None);
        for v4 in [[224, 0, 0, 22], [255, 255, 255, 255]] {
            assert_eq!(parse_neigh(&ndmsg(AF_INET, 3, 0x40, &[rta(NDA_DST, &v4)])), None);
        }
        // No destination: skipped.
        assert_eq!(parse_neigh(&ndmsg(AF_INET, 3, 0x80, &[rta(NDA_LLADDR, &MAC)])), None);
    }

    #[test]
    fn relevance() {
        assert!(is_relevant(RTM_NEWROUTE, &route_payload()));
        assert!(is_relevant(RTM_DELROUTE, &route_payload()));
        assert!(is_relevant(RTM_DELLINK, &link_payload()));
        assert!(is_relevant(NLMSG_OVERRUN, &[]));
        // Local-table route, multicast neighbour, unknown type, garbage: not relevant.
        assert!(!is_relevant(RTM_NEWROUTE, &rtmsg(AF_INET, 32, 255, 2, &[])));
        let mc = ndmsg(AF_INET, 3, 0x40, &[rta(NDA_DST, &[224, 0, 0, 22])]);
        assert!(!is_relevant(RTM_NEWNEIGH, &mc));
        assert!(!is_relevant(RTM_GETLINK, &link_payload()));
        assert!(!is_relevant(RTM_NEWADDR, &[1, 2]));
    }

    #[test]
    fn message_framing() {
        let mut buf = nlmsg(RTM_NEWLINK, 2, 9, &link_payload());
        buf.extend(nlmsg(NLMSG_DONE, 2, 9, &0u32.to_ne_bytes()));
        let msgs: Vec<_> = messages(&buf).collect();
        assert_eq!(msgs.len(), 2);
        assert_eq!((msgs[0].ty, msgs[0].seq, msgs[0].pid), (RTM_NEWLINK, 9, 77));
        assert_eq!(msgs[0].payload, &link_payload()[..]);
        assert_eq!(msgs[1].ty, NLMSG_DONE);

        // Truncated buffer: the header claims more than there is.
        let cut = &buf[..buf.len() - 3];
        assert_eq!(messages(cut).count(), 1);
        // Length below the header size.
        let mut bad = buf.clone();
        bad[0..4].copy_from_slice(&8u32.to_ne_bytes());
        assert_eq!(messages(&bad).count(), 0);
        // Fewer than 16 bytes in all.
        assert_eq!(messages(&buf[..10]).count(), 0);
        // Error payloads.
        assert_eq!(error_code(&(-17i32).to_ne_bytes()), Some(-17));
        assert_eq!(error_code(&[1, 2]), None);
    }

    #[test]
    fn attribute_framing() {
        let mut b = rta(IFLA_IFNAME, b"abc\0");
        b.extend(rta(IFLA_MTU, &[]));
        assert_eq!(attrs(&b).count(), 2);
        // rta_len 2 (< 4) stops the walk.
        let mut bad = b.clone();
        bad[0..2].copy_from_slice(&2u16.to_ne_bytes());
        assert_eq!(attrs(&bad).count(), 0);
        // rta_len beyond the buffer.
        let mut bad = b.clone();
        bad[0..2].copy_from_slice(&200u16.to_ne_bytes());
        assert_eq!(attrs(&bad).count(), 0);
        // A zero-length MTU attribute is ignored, not misread.
        let p = ifinfomsg(1, 0, &[rta(IFLA_IFNAME, b"lo"), rta(IFLA_MTU, &[])]);
        assert_eq!(parse_link(&p).map(|l| l.mtu), Some(0));
        // Invalid UTF-8 name.
        assert_eq!(parse_link(&ifinfomsg(1, 0, &[rta(IFLA_IFNAME, &[0xff, 0xfe])])), None);
    }

    /// Every prefix and many byte mutations of valid messages: no panic, and prefixes shorter
    /// than the fixed header give nothing.
    #[test]
    fn garbage_never_panics() {
        let samples = [
            link_payload(),
            route_payload(),
            ifaddrmsg(AF_INET6, 64, 5, &[rta(IFA_ADDRESS, &[7; 16])]),
            ndmsg(AF_INET6, 3, 2, &[rta(NDA_DST, &[1; 16]), rta(NDA_LLADDR, &MAC)]),
        ];
        let parse_all = |b: &[u8]| {
            let _ = parse_link(b);
            let _ = parse_addr(b);
            let _ = parse_route(b);
            let _ = parse_neigh(b);
            for m in messages(b) {
                let _ = parse_link(m.payload);
                let _ = parse_route(m.payload);
            }
        };
        for s in &samples {
            for n in 0..=s.len() {
                parse_all(&s[..n]);
            }
            assert_eq!(parse_link(&s[..IFINFOMSG_LEN - 1]), None);
            let framed = nlmsg(RTM_NEWROUTE, 0, 1, s);
            for n in 0..=framed.len() {
                parse_all(&framed[..n]);
            }
        }
        // Deterministic xorshift mutations.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for round in 0..20_000 {
            let mut m = nlmsg(RTM_NEWROUTE, 0, 1, &samples[round % samples.len()]);
            for _ in 0..4 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let i = (x as usize) % m.len();
                m[i] = (x >> 32) as u8;
            }
            parse_all(&m);
            parse_all(&m[16..]);
        }
    }
}
