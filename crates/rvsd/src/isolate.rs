//! The director's kernel kept away from rvs's frames on the AF_PACKET backend. An AF_PACKET
//! tap sees a frame beside the kernel, which then acts on it too: IPv6 to a VIP it has no
//! route for is answered with ICMPv6 unreachable (the client's first connections abort), and
//! kernel sockets for a VIP:port (a proxy that ran on the director) interfere with rvs's
//! connections (DESIGN.md, "Traps measured").
//!
//! An nftables table of the `netdev` family hooks the ingress of every served device. That
//! hook runs after the taps (`ptype_all`) have their copy, so rvs still gets every frame,
//! while the kernel never sees the ones dropped: exactly the frames rvs owns, matched by
//! named sets kept in step with the published service table —
//! - to a VIP: (address, protocol, port), or (address, protocol) for port-0 services;
//! - from a NAT real server: (address, protocol, port) as source, unless addressed to the
//!   director itself (`fib daddr type local`: its own health checks of that server);
//! - to a firewall-mark rule's prefix (protocol and ports as the rule says).
//!
//! Each change is a diff (`nft -f -` with element add/delete in one transaction), never a
//! reload. The table is removed on exit; one left by a killed daemon is replaced at start.

use std::collections::{BTreeSet, HashMap};
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::process::{Command, Stdio};
use std::sync::Mutex;

use ipvs::ForwardMethod;
use ipvs::fwmark::FwmarkRule;
use ipvs::service::{Service, ServiceKey, ServiceTable};

/// The table's name in the `netdev` family of the daemon's network namespace.
pub const TABLE: &str = "rvsd";

/// What the sets and the firewall-mark chain hold.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Owned {
    pub vip4: BTreeSet<String>,
    pub vip6: BTreeSet<String>,
    pub vip4any: BTreeSet<String>,
    pub vip6any: BTreeSet<String>,
    pub rs4: BTreeSet<String>,
    pub rs6: BTreeSet<String>,
    /// Rules of the `fwmark` chain, in order.
    pub fwmark: Vec<String>,
}

/// The named sets of the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Set {
    Vip4,
    Vip6,
    Vip4Any,
    Vip6Any,
    Rs4,
    Rs6,
}

impl Set {
    fn name(self) -> &'static str {
        match self {
            Set::Vip4 => "vip4",
            Set::Vip6 => "vip6",
            Set::Vip4Any => "vip4any",
            Set::Vip6Any => "vip6any",
            Set::Rs4 => "rs4",
            Set::Rs6 => "rs6",
        }
    }
}

/// The set elements one service owns (a real server's element may be owned by several).
fn owned_by(s: &Service) -> Vec<(Set, String)> {
    let mut v = Vec::new();
    if let ServiceKey::Addr { protocol, addr, port } = s.config.key {
        let (exact, any) = if addr.is_ipv4() { (Set::Vip4, Set::Vip4Any) } else { (Set::Vip6, Set::Vip6Any) };
        if port == 0 {
            v.push((any, format!("{addr} . {protocol}")));
        } else {
            v.push((exact, format!("{addr} . {protocol} . {port}")));
        }
    }
    let protocols: &[u8] = match s.config.key {
        ServiceKey::Addr { ref protocol, .. } => std::slice::from_ref(protocol),
        // A firewall-mark service takes whatever its rules send it.
        ServiceKey::Fwmark { .. } => &[6, 17, 132],
    };
    for d in s.dests.iter().filter(|d| d.method() == ForwardMethod::Masq) {
        let set = if d.addr.is_ipv4() { Set::Rs4 } else { Set::Rs6 };
        for p in protocols {
            v.push((set, format!("{} . {p} . {}", d.addr, d.port)));
        }
    }
    v
}

/// How many services own each element: an element leaves its set with its last owner.
type Counts = HashMap<(Set, String), u32>;

fn counts_of(table: &ServiceTable) -> Counts {
    let mut c = Counts::new();
    for s in table.iter() {
        for e in owned_by(s) {
            *c.entry(e).or_insert(0) += 1;
        }
    }
    c
}

impl Owned {
    /// What a published table and the classifier's rules own.
    pub fn of(table: &ServiceTable, rules: &[FwmarkRule]) -> Owned {
        let mut o = Owned::default();
        for s in table.iter() {
            for (set, e) in owned_by(s) {
                o.set_mut(set).insert(e);
            }
        }
        o.fwmark = rules.iter().map(fwmark_rule).collect();
        o
    }

    fn set_mut(&mut self, set: Set) -> &mut BTreeSet<String> {
        match set {
            Set::Vip4 => &mut self.vip4,
            Set::Vip6 => &mut self.vip6,
            Set::Vip4Any => &mut self.vip4any,
            Set::Vip6Any => &mut self.vip6any,
            Set::Rs4 => &mut self.rs4,
            Set::Rs6 => &mut self.rs6,
        }
    }

    /// The nft commands that turn `self` into `next`; empty when nothing changed.
    pub fn diff(&self, next: &Owned) -> String {
        let mut s = String::new();
        let sets = [
            ("vip4", &self.vip4, &next.vip4),
            ("vip6", &self.vip6, &next.vip6),
            ("vip4any", &self.vip4any, &next.vip4any),
            ("vip6any", &self.vip6any, &next.vip6any),
            ("rs4", &self.rs4, &next.rs4),
            ("rs6", &self.rs6, &next.rs6),
        ];
        for (name, old, new) in sets {
            let gone: Vec<&str> = old.difference(new).map(String::as_str).collect();
            let added: Vec<&str> = new.difference(old).map(String::as_str).collect();
            if !gone.is_empty() {
                s += &format!("delete element netdev {TABLE} {name} {{ {} }}\n", gone.join(", "));
            }
            if !added.is_empty() {
                s += &format!("add element netdev {TABLE} {name} {{ {} }}\n", added.join(", "));
            }
        }
        if self.fwmark != next.fwmark {
            s += &format!("flush chain netdev {TABLE} fwmark\n");
            for r in &next.fwmark {
                s += &format!("add rule netdev {TABLE} fwmark {r} drop\n");
            }
        }
        s
    }
}

/// A firewall-mark rule as an nft match (without the verdict).
fn fwmark_rule(r: &FwmarkRule) -> String {
    let fam = if r.daddr.is_ipv4() { "ip" } else { "ip6" };
    let mut m = format!("{fam} daddr {}", prefix(r.daddr, r.dprefix));
    if let Some((a, p)) = r.saddr {
        m += &format!(" {fam} saddr {}", prefix(a, p));
    }
    if r.protocol != 0 {
        m += &format!(" meta l4proto {}", r.protocol);
        if r.dports != (0, 65535) && matches!(r.protocol, 6 | 17 | 132) {
            m += &format!(" th dport {}-{}", r.dports.0, r.dports.1);
        }
    }
    m
}

/// `a/len` with the host bits cleared (nft refuses a prefix with host bits set).
fn prefix(a: IpAddr, len: u8) -> String {
    match a {
        IpAddr::V4(v) => {
            let len = len.min(32);
            let m = if len == 0 { 0 } else { u32::MAX << (32 - u32::from(len)) };
            format!("{}/{len}", Ipv4Addr::from(u32::from(v) & m))
        }
        IpAddr::V6(v) => {
            let len = len.min(128);
            let m = if len == 0 { 0 } else { u128::MAX << (128 - u32::from(len)) };
            format!("{}/{len}", Ipv6Addr::from(u128::from(v) & m))
        }
    }
}

/// The table: sets, the shared chain of drop rules, one ingress chain per device.
pub fn table(devices: &[String]) -> String {
    let mut s = format!("add table netdev {TABLE}\ndelete table netdev {TABLE}\ntable netdev {TABLE} {{\n");
    for (name, ty) in [
        ("vip4", "ipv4_addr . inet_proto . inet_service"),
        ("vip6", "ipv6_addr . inet_proto . inet_service"),
        ("vip4any", "ipv4_addr . inet_proto"),
        ("vip6any", "ipv6_addr . inet_proto"),
        ("rs4", "ipv4_addr . inet_proto . inet_service"),
        ("rs6", "ipv6_addr . inet_proto . inet_service"),
    ] {
        s += &format!("  set {name} {{ type {ty}; }}\n");
    }
    s += "  chain fwmark {\n  }\n";
    s += "  chain owned {\n\
         \x20   ip daddr . meta l4proto . th dport @vip4 drop\n\
         \x20   ip6 daddr . meta l4proto . th dport @vip6 drop\n\
         \x20   ip daddr . meta l4proto @vip4any drop\n\
         \x20   ip6 daddr . meta l4proto @vip6any drop\n\
         \x20   fib daddr type != local ip saddr . meta l4proto . th sport @rs4 drop\n\
         \x20   fib daddr type != local ip6 saddr . meta l4proto . th sport @rs6 drop\n\
         \x20   jump fwmark\n  }\n";
    for (k, d) in devices.iter().enumerate() {
        s += &format!(
            "  chain in{k} {{ type filter hook ingress device \"{d}\" priority 0; policy accept; jump owned; }}\n"
        );
    }
    s += "}\n";
    s
}

fn nft(script: &str) -> Result<(), String> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run nft: {e}"))?;
    if let Some(mut i) = child.stdin.take() {
        i.write_all(script.as_bytes()).map_err(|e| format!("nft stdin: {e}"))?;
    }
    let out = child.wait_with_output().map_err(|e| format!("nft: {e}"))?;
    if out.status.success() { Ok(()) } else { Err(String::from_utf8_lossy(&out.stderr).trim().to_string()) }
}

struct Isolation {
    current: Owned,
    /// Owners per element of `current`'s sets (for [`refresh_service`]).
    counts: Counts,
    /// A failed update: the next one recomputes everything.
    stale: bool,
}

static ACTIVE: Mutex<Option<Isolation>> = Mutex::new(None);

/// Removes the table when dropped (daemon exit).
pub struct Guard(bool);

impl Guard {
    /// Leaves the table in place (a hot restart: the new daemon has installed its own).
    pub fn keep(mut self) {
        ACTIVE.lock().unwrap_or_else(|e| e.into_inner()).take();
        self.0 = false;
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if !self.0 {
            return;
        }
        ACTIVE.lock().unwrap_or_else(|e| e.into_inner()).take();
        match nft(&format!("delete table netdev {TABLE}\n")) {
            Ok(()) => tracing::info!("kernel isolation removed (nftables table netdev {TABLE})"),
            Err(e) => tracing::warn!("removing nftables table netdev {TABLE}: {e}"),
        }
    }
}

/// Installs the (empty) table on `devices`. Without nftables the daemon still runs, with the
/// kernel seeing rvs's frames as before; the log says so.
pub fn start(devices: &[String]) -> Guard {
    match nft(&table(devices)) {
        Ok(()) => {
            tracing::info!("kernel isolation: nftables netdev ingress drop of rvs's frames on {}", devices.join(", "));
            *ACTIVE.lock().unwrap_or_else(|e| e.into_inner()) =
                Some(Isolation { current: Owned::default(), counts: Counts::new(), stale: false });
            Guard(true)
        }
        Err(e) => {
            tracing::warn!("kernel isolation off (the director's kernel also sees VIP traffic): {e}");
            Guard(false)
        }
    }
}

/// Brings the sets in step with the published table and classifier rules (after every
/// publish). A failed update leaves the previous sets (nft applies a script all or nothing).
pub fn refresh(table: &ServiceTable, rules: &[FwmarkRule]) {
    let mut g = ACTIVE.lock().unwrap_or_else(|e| e.into_inner());
    let Some(iso) = g.as_mut() else { return };
    full(iso, table, rules);
}

fn full(iso: &mut Isolation, table: &ServiceTable, rules: &[FwmarkRule]) {
    let next = Owned::of(table, rules);
    let script = iso.current.diff(&next);
    if !script.is_empty()
        && let Err(e) = nft(&script)
    {
        tracing::error!("kernel isolation update failed: {e}");
        iso.stale = true;
        return;
    }
    iso.current = next;
    iso.counts = counts_of(table);
    iso.stale = false;
}

/// The set elements a service owned before a command: taken before the command runs, since
/// `-e` changes a real server in place (the old `Service` would already show the new method).
pub struct Before(Vec<(Set, String)>);

/// What `s` owns now (nothing when absent), to give [`refresh_service`] after the change.
pub fn before(s: Option<&Service>) -> Before {
    Before(s.map(owned_by).unwrap_or_default())
}

/// [`refresh`] after a lone command changed one service (`old` → `new`, `None` when absent):
/// only its elements are looked at, O(its real servers) whatever the table's size. `table`
/// is the published table, for a full refresh when an earlier update failed.
pub fn refresh_service(table: &ServiceTable, rules: &[FwmarkRule], old: Before, new: Option<&Service>) {
    refresh_services(table, rules, &[(old, new)]);
}

/// [`refresh_service`] for the services a batch changed (each once, before → after).
pub fn refresh_services(table: &ServiceTable, rules: &[FwmarkRule], changes: &[(Before, Option<&Service>)]) {
    let mut g = ACTIVE.lock().unwrap_or_else(|e| e.into_inner());
    let Some(iso) = g.as_mut() else { return };
    if iso.stale {
        return full(iso, table, rules);
    }
    let (script, delta) = iso.delta(changes);
    if !script.is_empty()
        && let Err(e) = nft(&script)
    {
        tracing::error!("kernel isolation update failed: {e}");
        iso.stale = true;
        return;
    }
    iso.commit(delta);
}

type Delta = HashMap<(Set, String), i64>;

impl Isolation {
    /// The nft script for services going from `old` to `new`, and the owner changes.
    fn delta(&self, changes: &[(Before, Option<&Service>)]) -> (String, Delta) {
        let mut delta = Delta::new();
        for (old, new) in changes {
            for e in &old.0 {
                *delta.entry(e.clone()).or_insert(0) -= 1;
            }
            for e in new.map(owned_by).unwrap_or_default() {
                *delta.entry(e).or_insert(0) += 1;
            }
        }
        let (mut added, mut gone) = (Vec::new(), Vec::new());
        for (e, d) in delta.iter().filter(|(_, d)| **d != 0) {
            let before = i64::from(self.counts.get(e).copied().unwrap_or(0));
            let after = before + d;
            if before == 0 && after > 0 {
                added.push(e);
            } else if before > 0 && after <= 0 {
                gone.push(e);
            }
        }
        let mut script = String::new();
        for (list, verb) in [(&mut gone, "delete"), (&mut added, "add")] {
            list.sort();
            for set in [Set::Vip4, Set::Vip6, Set::Vip4Any, Set::Vip6Any, Set::Rs4, Set::Rs6] {
                let elems: Vec<&str> = list.iter().filter(|(s, _)| *s == set).map(|(_, e)| e.as_str()).collect();
                if !elems.is_empty() {
                    script += &format!("{verb} element netdev {TABLE} {} {{ {} }}\n", set.name(), elems.join(", "));
                }
            }
        }
        (script, delta)
    }

    /// Takes the owner changes in once the kernel took the script.
    fn commit(&mut self, delta: Delta) {
        for ((set, e), d) in delta {
            let key = (set, e);
            let after = (i64::from(self.counts.get(&key).copied().unwrap_or(0)) + d).max(0) as u32;
            if after == 0 {
                self.counts.remove(&key);
                self.current.set_mut(set).remove(&key.1);
            } else {
                self.counts.insert(key.clone(), after);
                self.current.set_mut(set).insert(key.1);
            }
        }
    }
}

#[cfg(test)]
fn owns_vip(o: &Owned, a: &IpAddr, protocol: u8, port: u16) -> bool {
    o.vip4.contains(&format!("{a} . {protocol} . {port}")) || o.vip6.contains(&format!("{a} . {protocol} . {port}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ipvs::{DestConfig, ServiceConfig};

    fn table_of(ipvs: &ipvs::Ipvs) -> std::sync::Arc<ServiceTable> {
        ipvs.services_full()
    }

    #[test]
    fn sets_follow_services_and_changes_are_diffs() {
        let ipvs = ipvs::Ipvs::new(64);
        let web = ServiceKey::tcp("10.0.0.1".parse().unwrap(), 80);
        ipvs.add_service(ServiceConfig::new(web, "rr")).unwrap();
        ipvs.add_dest(&web, DestConfig::new("192.168.1.11".parse().unwrap(), 8080).method(ForwardMethod::Masq))
            .unwrap();
        ipvs.add_dest(&web, DestConfig::new("192.168.1.12".parse().unwrap(), 80).method(ForwardMethod::Route)).unwrap();
        let v6 = ServiceKey::Addr { protocol: 17, addr: "2001:db8::1".parse().unwrap(), port: 0 };
        let mut c = ServiceConfig::new(v6, "rr");
        c.persistent = Some(300);
        ipvs.add_service(c).unwrap();
        let a = Owned::of(&table_of(&ipvs), &[]);
        assert!(owns_vip(&a, &"10.0.0.1".parse().unwrap(), 6, 80));
        assert_eq!(a.vip6any.iter().collect::<Vec<_>>(), ["2001:db8::1 . 17"]);
        // Only the NAT real server's replies are the node's; DR replies bypass the director.
        assert_eq!(a.rs4.iter().collect::<Vec<_>>(), ["192.168.1.11 . 6 . 8080"]);
        assert_eq!(Owned::default().diff(&a).lines().count(), 3);
        assert_eq!(a.diff(&a), "");

        ipvs.delete_service(&v6).unwrap();
        let b = Owned::of(&table_of(&ipvs), &[]);
        assert_eq!(a.diff(&b), format!("delete element netdev {TABLE} vip6any {{ 2001:db8::1 . 17 }}\n"));
    }

    #[test]
    fn fwmark_rules_become_matches() {
        let r = FwmarkRule {
            daddr: "10.9.1.130".parse().unwrap(),
            dprefix: 28,
            saddr: None,
            protocol: 17,
            dports: (5000, 5000),
            mark: 1,
        };
        assert_eq!(fwmark_rule(&r), "ip daddr 10.9.1.128/28 meta l4proto 17 th dport 5000-5000");
        let o = Owned { fwmark: vec![fwmark_rule(&r)], ..Owned::default() };
        let d = Owned::default().diff(&o);
        assert!(d.starts_with(&format!("flush chain netdev {TABLE} fwmark\nadd rule")), "{d}");
    }

    #[test]
    fn one_ingress_chain_per_device() {
        let t = table(&["ext".into(), "int".into()]);
        assert!(t.contains("hook ingress device \"ext\""));
        assert!(t.contains("hook ingress device \"int\""));
        assert!(t.starts_with(&format!("add table netdev {TABLE}\ndelete table netdev {TABLE}\n")));
    }

    /// Lone changes, one service at a time (`refresh_service`'s delta; `-e` switching a real
    /// server between NAT and DR in place included), keep the sets and
    /// owner counts a full recomputation gives, and their scripts turn the old sets into
    /// the new ones exactly (nothing else added or deleted). Real servers shared by several
    /// services (and fwmark services, three protocols each) leave a set with their last owner.
    #[test]
    fn lone_changes_keep_the_sets_a_full_refresh_computes() {
        let ipvs = ipvs::Ipvs::new(64);
        let mut iso = Isolation { current: Owned::default(), counts: Counts::new(), stale: false };
        let mut switched = 0usize;
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut rnd = |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        for step in 0..600 {
            let key = match rnd(8) {
                0 => ServiceKey::Fwmark { mark: 1 + rnd(2) as u32, ipv6: false },
                _ => ServiceKey::tcp(IpAddr::V4(Ipv4Addr::new(10, 0, 0, rnd(6) as u8)), [0, 80][rnd(2) as usize]),
            };
            let old_elems = before(table_of(&ipvs).get(&key).map(|s| &**s));
            // Port 80 as well: a DR real server takes the service's port, so `-e` can switch
            // one between NAT and DR in place only when the ports agree.
            let port = [8080, 80][rnd(2) as usize];
            let rs = DestConfig::new(IpAddr::V4(Ipv4Addr::new(192, 168, 1, rnd(3) as u8)), port);
            let rs = if rnd(4) == 0 { rs.method(ForwardMethod::Route) } else { rs.method(ForwardMethod::Masq) };
            let _ = match rnd(6) {
                0 => ipvs.add_service(ServiceConfig { persistent: Some(60), ..ServiceConfig::new(key, "rr") }),
                1 => ipvs.delete_service(&key),
                2 => ipvs.delete_dest(&key, &rs.addr, port),
                // -e in place: NAT <-> DR changes the rs sets without a new Service.
                3 => {
                    let was = table_of(&ipvs)
                        .get(&key)
                        .and_then(|s| s.dests.iter().find(|d| d.addr == rs.addr && d.port == port).map(|d| d.method()));
                    let r = ipvs.edit_dest(&key, rs);
                    let now = table_of(&ipvs)
                        .get(&key)
                        .and_then(|s| s.dests.iter().find(|d| d.addr == rs.addr && d.port == port).map(|d| d.method()));
                    switched += usize::from(r.is_ok() && was != now);
                    r
                }
                _ => ipvs.add_dest(&key, rs),
            };
            let t = table_of(&ipvs);
            let (script, delta) = iso.delta(&[(old_elems, t.get(&key).map(|s| &**s))]);
            let old = iso.current.clone();
            iso.commit(delta);
            let want = Owned::of(&t, &[]);
            assert_eq!(iso.current, want, "step {step}");
            assert_eq!(iso.counts, counts_of(&t), "step {step}");
            let mut got: Vec<&str> = script.lines().collect();
            let mut exact: Vec<&str> = Vec::new();
            let full = old.diff(&want);
            exact.extend(full.lines());
            got.sort_unstable();
            exact.sort_unstable();
            assert_eq!(got, exact, "step {step}: the script is the diff");
        }
        assert!(iso.counts.values().any(|n| *n > 1), "some element had several owners");
        assert!(switched > 0, "no -e switched a real server between NAT and DR");
    }
}
