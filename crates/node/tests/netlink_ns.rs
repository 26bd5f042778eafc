//! rtnetlink client against a real kernel, in a fresh network namespace built here and
//! removed on every exit path. Needs root; without it the tests print a note and pass.
//!
//! ns N: lo (down), n0 10.88.0.1/24 + 2001:db8:88::1/64, route 10.99.0.0/16 via 10.88.0.254
//! mtu 1400, route 2001:db8:99::/48 via 2001:db8:88::fe, permanent neighbours for both
//! gateways. The veth peer n1 sits in a second namespace M so N holds only lo and n0.

mod nsutil;

use std::net::IpAddr;

use node::netlink::{self, Addr, Monitor, NeighState, Snapshot};
use nsutil::{Netns, in_netns, ip, skip_unless_root};

/// What these tests need root for (the note printed when skipping).
const NEEDS: &str = "network namespaces";

const GW_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0xfe];

fn build() -> (Netns, String) {
    let mut ns = Netns(vec![]);
    let n = ns.add("n");
    let m = ns.add("m");
    ip(&["-n", &n, "link", "add", "n0", "type", "veth", "peer", "name", "n1", "netns", &m]);
    // No link-local address: the IPv6 state is then exactly what is added below.
    ip(&["-n", &n, "link", "set", "n0", "addrgenmode", "none"]);
    ip(&["-n", &n, "link", "set", "n0", "mtu", "1480"]);
    ip(&["-n", &n, "link", "set", "n0", "up"]);
    ip(&["-n", &m, "link", "set", "n1", "up"]);
    ip(&["-n", &n, "addr", "add", "10.88.0.1/24", "dev", "n0"]);
    ip(&["-n", &n, "-6", "addr", "add", "2001:db8:88::1/64", "dev", "n0", "nodad"]);
    ip(&["-n", &n, "route", "add", "10.99.0.0/16", "via", "10.88.0.254", "mtu", "1400"]);
    ip(&["-n", &n, "-6", "route", "add", "2001:db8:99::/48", "via", "2001:db8:88::fe"]);
    for gw in ["10.88.0.254", "2001:db8:88::fe"] {
        ip(&["-n", &n, "neigh", "add", gw, "lladdr", "02:00:00:00:00:fe", "dev", "n0", "nud", "permanent"]);
    }
    (ns, n)
}

fn ipa(s: &str) -> IpAddr {
    s.parse().expect("ip literal")
}

#[test]
fn dump_returns_exactly_the_namespace_state() {
    if skip_unless_root("dump_returns_exactly_the_namespace_state", NEEDS) {
        return;
    }
    let (_ns, n) = build();
    let (snap, n0_mac): (Snapshot, [u8; 6]) =
        in_netns(&n, || (netlink::dump().expect("dump"), node::io::if_mac("n0").expect("mac")));
    let n0 = in_netns(&n, || node::io::if_index("n0")).expect("index");

    // Links: lo and n0, nothing else.
    let mut names: Vec<_> = snap.links.iter().map(|l| l.name.as_str()).collect();
    names.sort();
    assert_eq!(names, ["lo", "n0"]);
    let l = snap.links.iter().find(|l| l.name == "n0").expect("n0");
    assert_eq!(l.index, n0);
    assert_eq!(l.mac, Some(n0_mac));
    assert_eq!(l.mtu, 1480);
    assert!(l.up && l.lower_up);
    assert_eq!(l.kind.as_deref(), Some("veth"));
    let lo = snap.links.iter().find(|l| l.name == "lo").expect("lo");
    assert!(!lo.up);

    // Addresses.
    let mut addrs = snap.addrs.clone();
    addrs.sort_by_key(|a| a.addr);
    assert_eq!(
        addrs,
        vec![
            Addr { ifindex: n0, addr: ipa("10.88.0.1"), prefix_len: 24, scope: 0 },
            Addr { ifindex: n0, addr: ipa("2001:db8:88::1"), prefix_len: 64, scope: 0 },
        ]
    );

    // Routes: the two connected prefixes and the two via the gateways; nothing from the
    // local table (local/broadcast/multicast).
    let mut routes: Vec<_> =
        snap.routes.iter().map(|r| (r.dst, r.prefix_len, r.gateway, r.oif, r.prefsrc, r.mtu)).collect();
    routes.sort();
    assert_eq!(
        routes,
        vec![
            (ipa("10.88.0.0"), 24, None, Some(n0), Some(ipa("10.88.0.1")), None),
            (ipa("10.99.0.0"), 16, Some(ipa("10.88.0.254")), Some(n0), None, Some(1400)),
            (ipa("2001:db8:88::"), 64, None, Some(n0), None, None),
            (ipa("2001:db8:99::"), 48, Some(ipa("2001:db8:88::fe")), Some(n0), None, None),
        ]
    );
    assert!(snap.routes.iter().all(|r| r.nexthops.is_empty()));

    // Neighbours: the two permanent entries.
    let mut neighs: Vec<_> = snap.neighs.iter().map(|x| (x.ip, x.ifindex, x.mac, x.state)).collect();
    neighs.sort_by_key(|x| x.0);
    assert_eq!(
        neighs,
        vec![
            (ipa("10.88.0.254"), n0, Some(GW_MAC), NeighState::PERMANENT),
            (ipa("2001:db8:88::fe"), n0, Some(GW_MAC), NeighState::PERMANENT),
        ]
    );
    assert!(snap.neighs.iter().all(|x| x.usable()));
}

#[test]
fn monitor_reports_a_new_route() {
    if skip_unless_root("monitor_reports_a_new_route", NEEDS) {
        return;
    }
    let (_ns, n) = build();
    let mut mon = in_netns(&n, Monitor::new).expect("monitor");
    // Subscribed after the setup: nothing relevant pending. (The kernel may still announce
    // multicast neighbour entries for its MLD reports; those are not relevant.)
    std::thread::sleep(std::time::Duration::from_millis(100));
    assert!(!mon.changed());

    ip(&["-n", &n, "route", "add", "10.100.0.0/16", "via", "10.88.0.254"]);
    assert!(mon.wait(2000).expect("wait"), "no event for the new route");
    assert!(mon.changed());
    // Drained: quiet again.
    assert!(!mon.changed());

    let routes = in_netns(&n, netlink::dump).expect("dump").routes;
    assert!(routes.iter().any(|r| r.dst == ipa("10.100.0.0") && r.prefix_len == 16));

    // A neighbour change is reported too.
    ip(&["-n", &n, "neigh", "add", "10.88.0.7", "lladdr", "02:00:00:00:00:07", "dev", "n0", "nud", "permanent"]);
    assert!(mon.wait(2000).expect("wait"), "no event for the new neighbour");
    assert!(mon.changed());
}
