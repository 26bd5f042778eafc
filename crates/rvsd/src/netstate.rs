//! The node's network view from the director's kernel: served interfaces with their MAC, MTU
//! and addresses, main-table routes through them (default route included) and usable
//! neighbours, read over rtnetlink. A thread re-dumps whenever the kernel reports a change and
//! publishes a new snapshot to the node (node/src/netlink.rs explains why re-dumping).

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ipvs::service::FastMap;
use node::netlink::{self, Snapshot};
use node::{Interface, NetState, Node, RouteEntry};
use wire::MacAddr;

/// The [`NetState`] for the served interfaces `names` (interfaces missing from the dump are
/// left out; the start-up check refuses them first).
pub fn build(snap: &Snapshot, names: &[String]) -> NetState {
    let served: Vec<&netlink::Link> = names.iter().filter_map(|n| snap.links.iter().find(|l| &l.name == n)).collect();
    let is_served = |ifindex: u32| served.iter().any(|l| l.index == ifindex);
    let interfaces = served
        .iter()
        .filter_map(|l| {
            Some(Interface {
                index: l.index,
                name: l.name.clone(),
                mac: MacAddr(l.mac?),
                mtu: l.mtu.min(u16::MAX as u32) as u16,
                addrs: snap
                    .addrs
                    .iter()
                    .filter(|a| a.ifindex == l.index && a.scope != 254)
                    .map(|a| (a.addr, a.prefix_len))
                    .collect(),
            })
        })
        .collect();
    let mut routes = Vec::new();
    for r in &snap.routes {
        // Single path, or the first next hop through a served interface.
        let hop = match (r.oif, r.nexthops.is_empty()) {
            (Some(oif), true) => Some((oif, r.gateway)),
            _ => r.nexthops.iter().find(|h| is_served(h.oif)).map(|h| (h.oif, h.gateway)),
        };
        let Some((oif, gateway)) = hop else { continue };
        if !is_served(oif) {
            continue;
        }
        // A gateway of the other family (RTA_VIA) cannot be resolved by ARP here.
        if gateway.is_some_and(|g| g.is_ipv4() != r.dst.is_ipv4()) {
            continue;
        }
        routes.push(RouteEntry {
            dst: r.dst,
            prefix: r.prefix_len,
            gateway,
            out_if: oif,
            src: r.prefsrc,
            mtu: r.mtu.map(|m| m.min(u16::MAX as u32) as u16),
        });
    }
    let mut neighbours: FastMap<IpAddr, MacAddr> = FastMap::default();
    for n in &snap.neighs {
        if n.usable()
            && is_served(n.ifindex)
            && let Some(mac) = n.mac
        {
            neighbours.insert(n.ip, MacAddr(mac));
        }
    }
    NetState::new(interfaces, routes, neighbours)
}

fn describe(net: &NetState) -> String {
    let ifs: Vec<String> = net
        .interfaces
        .iter()
        .map(|i| {
            let addrs: Vec<String> = i.addrs.iter().map(|(a, p)| format!("{a}/{p}")).collect();
            format!("{}#{} mtu {} [{}]", i.name, i.index, i.mtu, addrs.join(" "))
        })
        .collect();
    format!("{}; {} routes, {} neighbours", ifs.join(", "), net.routes.len(), net.neighbours.len())
}

/// Watches the kernel for changes and republishes the node's network state until `stop`.
/// The monitor is created before the first dump so no change falls between them. With a
/// `follow`er (vipfollow.rs), VIPs on the kernel are the active ones, not a mistake.
pub fn watch(
    node: Arc<Node>,
    names: Vec<String>,
    mut monitor: netlink::Monitor,
    stop: Arc<AtomicBool>,
    mut follow: Option<crate::vipfollow::Follower>,
) {
    let mut last_warned: Vec<IpAddr> = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        if let Some(f) = &mut follow {
            f.tick(&node, None);
        }
        match monitor.wait(200) {
            Ok(true) => {}
            Ok(false) => continue,
            Err(e) => {
                tracing::error!("netlink monitor: {e}");
                std::thread::sleep(Duration::from_secs(1));
                continue;
            }
        }
        if !monitor.changed() {
            continue;
        }
        // Changes come in bursts (an address brings routes with it): settle, then dump once.
        // Shorter when following VIPs: a backup must stop answering at once.
        std::thread::sleep(Duration::from_millis(if follow.is_some() { 10 } else { 50 }));
        monitor.changed();
        match netlink::dump() {
            Ok(snap) => {
                let net = build(&snap, &names);
                tracing::debug!("network changed: {}", describe(&net));
                node.set_net(net);
                if let Some(f) = &mut follow {
                    f.update(&node, &snap);
                    continue;
                }
                // A VIP that became a kernel address breaks the director (see host.rs).
                let bad: Vec<IpAddr> =
                    node.ipvs.services().vips().filter(|v| crate::host::kernel_has_addr(&snap, v)).copied().collect();
                for v in bad.iter().filter(|v| !last_warned.contains(v)) {
                    tracing::warn!("VIP {v} is now configured on the director's kernel; remove it");
                }
                last_warned = bad;
            }
            Err(e) => tracing::error!("netlink dump: {e}"),
        }
    }
}

/// Logs the initial state.
pub fn log_initial(net: &NetState) {
    tracing::info!("network: {}", describe(net));
}

#[cfg(test)]
mod tests {
    use super::*;
    use node::netlink::{Addr, Link, Neigh, NeighState, Route};

    fn snap() -> Snapshot {
        let link = |index, name: &str, mac| Link {
            index,
            name: name.into(),
            mac,
            mtu: 1500,
            up: true,
            lower_up: true,
            arphrd: 1,
            kind: None,
        };
        let route = |dst: &str, len, gw: Option<&str>, oif| Route {
            dst: dst.parse().unwrap(),
            prefix_len: len,
            gateway: gw.map(|g| g.parse().unwrap()),
            oif: Some(oif),
            prefsrc: None,
            mtu: None,
            metric: None,
            nexthops: vec![],
            protocol: 4,
            scope: 0,
        };
        Snapshot {
            links: vec![link(1, "lo", None), link(2, "ext", Some([2, 0, 0, 0, 0, 1])), link(3, "mgmt", Some([2; 6]))],
            addrs: vec![
                Addr { ifindex: 1, addr: "127.0.0.1".parse().unwrap(), prefix_len: 8, scope: 254 },
                Addr { ifindex: 2, addr: "198.51.100.1".parse().unwrap(), prefix_len: 24, scope: 0 },
                Addr { ifindex: 3, addr: "172.16.0.1".parse().unwrap(), prefix_len: 16, scope: 0 },
            ],
            routes: vec![route("0.0.0.0", 0, Some("198.51.100.254"), 2), route("10.1.0.0", 16, Some("172.16.0.9"), 3)],
            neighs: vec![
                Neigh {
                    ifindex: 2,
                    ip: "198.51.100.254".parse().unwrap(),
                    mac: Some([2, 0, 0, 0, 0, 0xfe]),
                    state: NeighState::REACHABLE,
                },
                Neigh { ifindex: 2, ip: "198.51.100.9".parse().unwrap(), mac: None, state: NeighState::FAILED },
                Neigh {
                    ifindex: 3,
                    ip: "172.16.0.9".parse().unwrap(),
                    mac: Some([3; 6]),
                    state: NeighState::REACHABLE,
                },
            ],
        }
    }

    #[test]
    fn only_served_interfaces_their_routes_and_usable_neighbours() {
        let net = build(&snap(), &["ext".to_string()]);
        assert_eq!(net.interfaces.len(), 1);
        let i = &net.interfaces[0];
        assert_eq!((i.index, i.name.as_str(), i.mac, i.mtu), (2, "ext", MacAddr([2, 0, 0, 0, 0, 1]), 1500));
        assert_eq!(i.addrs, vec![("198.51.100.1".parse().unwrap(), 24)]);
        // Default route via ext kept, the mgmt route dropped; the connected route added.
        let gw: IpAddr = "198.51.100.254".parse().unwrap();
        assert!(net.routes.iter().any(|r| r.prefix == 0 && r.gateway == Some(gw) && r.out_if == 2));
        assert!(net.routes.iter().all(|r| r.out_if == 2));
        assert!(net.lookup(&"198.51.100.50".parse().unwrap()).is_some_and(|r| r.gateway.is_none()));
        assert_eq!(net.neighbours.len(), 1);
        assert_eq!(net.neighbours.get(&gw), Some(&MacAddr([2, 0, 0, 0, 0, 0xfe])));
    }
}
