//! What the steering program's maps should hold, computed from the published service table,
//! the firewall-mark rules and the node's own addresses. Layouts match `bpf/steer.bpf.c`:
//! addresses as 16 bytes (IPv4 as `::ffff:a.b.c.d`), ports in network byte order.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use ipvs::dest::{ForwardMethod, TunnelType};
use ipvs::fwmark::FwmarkRule;
use ipvs::service::Service;
use ipvs::{ServiceKey, ServiceTable};

/// `struct svc_key`: a service (address, protocol, port) or a real server's.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SvcKey {
    pub addr: [u8; 16],
    pub proto: u8,
    pub pad: u8,
    /// Network byte order; 0 = any.
    pub port: u16,
}

// SAFETY: repr(C), no padding bytes left uninitialised (explicit `pad`), plain integers.
unsafe impl aya::Pod for SvcKey {}

/// `struct addr_key`.
pub type AddrKey = [u8; 16];

/// The 16-byte form of an address.
pub fn addr16(a: &IpAddr) -> [u8; 16] {
    match a {
        IpAddr::V4(v) => v.to_ipv6_mapped().octets(),
        IpAddr::V6(v) => v.octets(),
    }
}

impl SvcKey {
    pub fn new(addr: &IpAddr, proto: u8, port: u16) -> Self {
        SvcKey { addr: addr16(addr), proto, pad: 0, port: port.to_be() }
    }
}

/// Desired contents of the maps.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SteerMaps {
    /// Address services (port 0 = any).
    pub services: HashSet<SvcKey>,
    /// Every VIP address (ARP/ND answers, and any frame to it the kernel does not own).
    pub vip_addrs: HashSet<AddrKey>,
    /// Real servers whose replies rvs rewrites (NAT), and tunnel endpoints (ICMP errors
    /// about tunnelled packets).
    pub reals: HashSet<SvcKey>,
    /// The director's own addresses: frames to them stay with the kernel unless they are
    /// for a service.
    pub locals: HashSet<AddrKey>,
    /// Firewall-mark rules' destination prefixes (16-byte address, prefix length).
    pub prefixes: HashSet<([u8; 16], u8)>,
}

const TCP: u8 = 6;
const UDP: u8 = 17;
const SCTP: u8 = 132;

impl SteerMaps {
    /// The maps for a service table and classifier rules, plus `extra` services about to be
    /// published (so their first packets are already steered). O(table): the reference for
    /// [`SteerModel`], and what a full resynchronisation writes.
    pub fn of(table: &ServiceTable, rules: &[FwmarkRule], extra: &[ServiceKey], locals: &[IpAddr]) -> Self {
        let mut m = SteerMaps::default();
        let add_service = |m: &mut SteerMaps, key: &ServiceKey| {
            if let Some((k, a)) = vip_keys(key) {
                m.services.insert(k);
                m.vip_addrs.insert(a);
            }
        };
        for k in extra {
            add_service(&mut m, k);
        }
        let mut reals = Vec::new();
        for s in table.iter() {
            add_service(&mut m, &s.config.key);
            reals.clear();
            reply_keys(s, &mut reals);
            m.reals.extend(reals.iter().copied());
        }
        m.prefixes = prefixes_of(rules);
        m.locals = locals.iter().map(addr16).collect();
        m
    }

    /// Applies `d` (what was added goes in, what went comes out).
    pub fn apply(&mut self, d: &MapDiff) {
        fn one<K: Eq + std::hash::Hash + Copy>(set: &mut HashSet<K>, add: &HashSet<K>, remove: &HashSet<K>) {
            set.extend(add.iter().copied());
            remove.iter().for_each(|k| {
                set.remove(k);
            });
        }
        one(&mut self.services, &d.add.services, &d.remove.services);
        one(&mut self.vip_addrs, &d.add.vip_addrs, &d.remove.vip_addrs);
        one(&mut self.reals, &d.add.reals, &d.remove.reals);
        one(&mut self.locals, &d.add.locals, &d.remove.locals);
        one(&mut self.prefixes, &d.add.prefixes, &d.remove.prefixes);
    }

    /// What turns `self` into `want`.
    pub fn diff(&self, want: &SteerMaps) -> MapDiff {
        fn one<K: Eq + std::hash::Hash + Copy>(have: &HashSet<K>, want: &HashSet<K>) -> (HashSet<K>, HashSet<K>) {
            (want.difference(have).copied().collect(), have.difference(want).copied().collect())
        }
        let mut d = MapDiff::default();
        (d.add.services, d.remove.services) = one(&self.services, &want.services);
        (d.add.vip_addrs, d.remove.vip_addrs) = one(&self.vip_addrs, &want.vip_addrs);
        (d.add.reals, d.remove.reals) = one(&self.reals, &want.reals);
        (d.add.locals, d.remove.locals) = one(&self.locals, &want.locals);
        (d.add.prefixes, d.remove.prefixes) = one(&self.prefixes, &want.prefixes);
        d
    }
}

/// Map entries to insert and to remove.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MapDiff {
    pub add: SteerMaps,
    pub remove: SteerMaps,
}

impl MapDiff {
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Entries changed.
    pub fn len(&self) -> usize {
        self.add.len_all() + self.remove.len_all()
    }
}

impl SteerMaps {
    /// Entries in every map.
    pub fn len_all(&self) -> usize {
        self.services.len() + self.vip_addrs.len() + self.reals.len() + self.locals.len() + self.prefixes.len()
    }
}

/// An address service's `rvs_vips` and `rvs_vip_addrs` keys (a fwmark service has none: its
/// packets are found by the rules' prefixes).
fn vip_keys(key: &ServiceKey) -> Option<(SvcKey, AddrKey)> {
    match key {
        ServiceKey::Addr { protocol, addr, port } => Some((SvcKey::new(addr, *protocol, *port), addr16(addr))),
        ServiceKey::Fwmark { .. } => None,
    }
}

/// The `rvs_reals` keys of a service's real servers: NAT real servers (address, protocol,
/// port; a fwmark service's under each protocol it carries), whose replies rvs rewrites, and
/// tunnel endpoints (ICMP errors about tunnelled packets).
fn reply_keys(s: &Service, out: &mut Vec<SvcKey>) {
    let one;
    let protos: &[u8] = match s.config.key {
        ServiceKey::Addr { protocol, .. } => {
            one = [protocol];
            &one
        }
        // A fwmark service carries any protocol.
        ServiceKey::Fwmark { .. } => &[TCP, UDP, SCTP],
    };
    for d in &s.dests {
        match d.method() {
            ForwardMethod::Masq => out.extend(protos.iter().map(|&p| SvcKey::new(&d.addr, p, d.port))),
            ForwardMethod::Tunnel => {
                let (t, _, port) = d.tunnel();
                let (p, port) = match (t, d.addr) {
                    (TunnelType::Gue, _) => (UDP, port),
                    (TunnelType::Gre, _) => (47, 0),
                    (TunnelType::Ipip, IpAddr::V4(_)) => (4, 0),
                    (TunnelType::Ipip, IpAddr::V6(_)) => (41, 0),
                };
                out.push(SvcKey::new(&d.addr, p, port));
            }
            _ => {}
        }
    }
}

/// The firewall-mark rules' destination prefixes (16-byte address, prefix length).
fn prefixes_of(rules: &[FwmarkRule]) -> HashSet<([u8; 16], u8)> {
    rules
        .iter()
        .map(|r| {
            let len = match r.daddr {
                IpAddr::V4(_) => r.dprefix.min(32) + 96,
                IpAddr::V6(_) => r.dprefix.min(128),
            };
            (mask(addr16(&r.daddr), len), len)
        })
        .collect()
}

/// Entries kept by their number of owners, with the entries touched since the last diff
/// (and whether each was present before).
#[derive(Debug)]
struct Counted<K> {
    n: HashMap<K, u32>,
    touched: HashMap<K, bool>,
}

impl<K> Default for Counted<K> {
    fn default() -> Self {
        Counted { n: HashMap::new(), touched: HashMap::new() }
    }
}

impl<K: Eq + std::hash::Hash + Copy> Counted<K> {
    fn add(&mut self, k: K) {
        let c = self.n.entry(k).or_insert(0);
        self.touched.entry(k).or_insert(*c > 0);
        *c += 1;
    }

    fn sub(&mut self, k: K) {
        if let Some(c) = self.n.get_mut(&k) {
            self.touched.entry(k).or_insert(true);
            *c -= 1;
            if *c == 0 {
                self.n.remove(&k);
            }
        }
    }

    /// (now present, now gone) among the touched entries whose presence changed.
    fn take(&mut self, add: &mut HashSet<K>, remove: &mut HashSet<K>) {
        for (k, was) in self.touched.drain() {
            match (was, self.n.contains_key(&k)) {
                (false, true) => {
                    add.insert(k);
                }
                (true, false) => {
                    remove.insert(k);
                }
                _ => {}
            }
        }
        // A restore touched every entry once: give that memory back.
        self.touched.shrink_to(1024);
    }

    fn keys(&self) -> HashSet<K> {
        self.n.keys().copied().collect()
    }
}

/// The maps kept incrementally: every entry counts its owners (the services that need it),
/// so a change of one service adds and removes only that service's entries, O(its real
/// servers) whatever the table's size. A VIP address or a NAT real server shared by several
/// services leaves its map with its last owner. [`SteerMaps::of`] of the same table is
/// the reference (tests check they agree).
#[derive(Debug, Default)]
pub struct SteerModel {
    /// The `rvs_reals` keys each service of the model owns (its VIP keys follow from its key).
    owned: HashMap<ServiceKey, Box<[SvcKey]>>,
    /// Services steered ahead of their publish, one owner each until [`SteerModel::changed`].
    ahead: Vec<ServiceKey>,
    services: Counted<SvcKey>,
    vip_addrs: Counted<AddrKey>,
    reals: Counted<SvcKey>,
    locals: HashSet<AddrKey>,
    prefixes: HashSet<([u8; 16], u8)>,
    /// Pending changes of the two sets above.
    pending: MapDiff,
}

impl SteerModel {
    /// The model of a whole table (O(table)), as [`SteerMaps::of`] with the same arguments;
    /// `extra` is steered ahead. Its diff is empty: it is meant for a full resynchronisation
    /// with [`SteerModel::maps`].
    pub fn of(table: &ServiceTable, rules: &[FwmarkRule], extra: &[ServiceKey], locals: &[IpAddr]) -> Self {
        let mut m = SteerModel::default();
        for s in table.iter() {
            m.own(s);
        }
        m.ahead(extra);
        m.set_rules(rules);
        m.set_locals(locals);
        m.take_diff();
        m
    }

    /// What the maps hold according to the model (O(entries)).
    pub fn maps(&self) -> SteerMaps {
        SteerMaps {
            services: self.services.keys(),
            vip_addrs: self.vip_addrs.keys(),
            reals: self.reals.keys(),
            locals: self.locals.clone(),
            prefixes: self.prefixes.clone(),
        }
    }

    /// The services steered ahead and not yet settled.
    pub fn ahead_keys(&self) -> &[ServiceKey] {
        &self.ahead
    }

    /// `keys` are about to be published: their VIPs are steered from now on.
    pub fn ahead(&mut self, keys: &[ServiceKey]) {
        for k in keys {
            if let Some((s, a)) = vip_keys(k) {
                self.services.add(s);
                self.vip_addrs.add(a);
                self.ahead.push(*k);
            }
        }
    }

    /// The services `keys` changed in `table` (added, edited, deleted, their real servers
    /// changed — in place too): their entries follow the table; what was steered ahead is
    /// settled. O(keys and their real servers).
    pub fn changed(&mut self, table: &ServiceTable, keys: &[ServiceKey]) {
        for k in keys {
            self.disown(k);
            if let Some(s) = table.get(k) {
                self.own(s);
            }
        }
        for k in std::mem::take(&mut self.ahead) {
            if let Some((s, a)) = vip_keys(&k) {
                self.services.sub(s);
                self.vip_addrs.sub(a);
            }
        }
    }

    fn own(&mut self, s: &Service) {
        let key = s.config.key;
        self.disown(&key);
        if let Some((k, a)) = vip_keys(&key) {
            self.services.add(k);
            self.vip_addrs.add(a);
        }
        let mut reals = Vec::new();
        reply_keys(s, &mut reals);
        for r in &reals {
            self.reals.add(*r);
        }
        self.owned.insert(key, reals.into_boxed_slice());
    }

    fn disown(&mut self, key: &ServiceKey) {
        let Some(reals) = self.owned.remove(key) else { return };
        if let Some((k, a)) = vip_keys(key) {
            self.services.sub(k);
            self.vip_addrs.sub(a);
        }
        for r in reals.iter() {
            self.reals.sub(*r);
        }
    }

    /// The classifier's rules (O(rules)).
    pub fn set_rules(&mut self, rules: &[FwmarkRule]) {
        let next = prefixes_of(rules);
        set_to(&mut self.prefixes, next, &mut self.pending.add.prefixes, &mut self.pending.remove.prefixes);
    }

    /// The director's own addresses (O(addresses)).
    pub fn set_locals(&mut self, locals: &[IpAddr]) {
        let next = locals.iter().map(addr16).collect();
        set_to(&mut self.locals, next, &mut self.pending.add.locals, &mut self.pending.remove.locals);
    }

    /// The map changes since the last call (O(changes)).
    pub fn take_diff(&mut self) -> MapDiff {
        let mut d = std::mem::take(&mut self.pending);
        self.services.take(&mut d.add.services, &mut d.remove.services);
        self.vip_addrs.take(&mut d.add.vip_addrs, &mut d.remove.vip_addrs);
        self.reals.take(&mut d.add.reals, &mut d.remove.reals);
        d
    }
}

/// `cur` becomes `next`; what changed is noted in `add` / `remove` (cancelling earlier notes).
fn set_to<K: Eq + std::hash::Hash + Copy>(
    cur: &mut HashSet<K>,
    next: HashSet<K>,
    add: &mut HashSet<K>,
    remove: &mut HashSet<K>,
) {
    for k in next.difference(cur) {
        if !remove.remove(k) {
            add.insert(*k);
        }
    }
    for k in cur.difference(&next) {
        if !add.remove(k) {
            remove.insert(*k);
        }
    }
    *cur = next;
}

/// `a` with the bits past `len` cleared.
fn mask(mut a: [u8; 16], len: u8) -> [u8; 16] {
    for (i, b) in a.iter_mut().enumerate() {
        let bits = (usize::from(len)).saturating_sub(i * 8).min(8);
        *b &= if bits == 0 { 0 } else { 0xffu8 << (8 - bits) };
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_clear_host_bits() {
        let a = addr16(&"10.1.2.3".parse().unwrap());
        assert_eq!(mask(a, 96 + 24), addr16(&"10.1.2.0".parse().unwrap()));
        assert_eq!(mask(a, 96 + 32), a);
        assert_eq!(mask(a, 0), [0; 16]);
    }

    #[test]
    fn keys_hold_ports_in_network_order_and_ipv4_mapped() {
        let k = SvcKey::new(&"10.0.0.1".parse().unwrap(), 6, 80);
        assert_eq!(k.port.to_ne_bytes(), [0, 80]);
        assert_eq!(&k.addr[10..], &[0xff, 0xff, 10, 0, 0, 1]);
        assert_eq!(std::mem::size_of::<SvcKey>(), 20);
    }

    /// Random lone changes and batches, each followed by [`SteerModel::changed`] of the keys
    /// touched (steered ahead first or not), keep the model equal to [`SteerMaps::of`] of the
    /// table, and its diffs turn the previous maps into the new ones exactly. VIP addresses
    /// shared by several services (ports, protocols), NAT real servers shared by several
    /// services, fwmark services (three protocols each), tunnels and in-place `-e` of a real
    /// server's method are all exercised.
    #[test]
    fn incremental_changes_keep_the_maps_a_full_computation_gives() {
        use ipvs::{DestConfig, Ipvs, ServiceConfig};
        let ipvs = Ipvs::new(64);
        let locals: Vec<IpAddr> = vec!["198.51.100.1".parse().unwrap()];
        let mut model = SteerModel::of(&ipvs.services_full(), &[], &[], &locals);
        let mut kernel = model.maps();
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut rnd = |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        let (mut shared_vip, mut shared_real) = (false, false);
        for step in 0..3000 {
            let batch = 1 + if rnd(5) == 0 { rnd(6) } else { 0 };
            let mut keys = Vec::new();
            let mut ahead = Vec::new();
            for _ in 0..batch {
                let addr: IpAddr = if rnd(6) == 0 {
                    format!("2001:db8::{}", rnd(3)).parse().unwrap()
                } else {
                    format!("10.0.0.{}", rnd(4)).parse().unwrap()
                };
                let key = match rnd(10) {
                    0 => ServiceKey::Fwmark { mark: 1 + rnd(2) as u32, ipv6: false },
                    1 => ServiceKey::udp(addr, 53),
                    _ => ServiceKey::tcp(addr, [80, 443][rnd(2) as usize]),
                };
                let rs_addr: IpAddr = match key {
                    ServiceKey::Addr { addr: IpAddr::V6(_), .. } => format!("2001:db8:1::{}", rnd(3)).parse().unwrap(),
                    _ => format!("192.168.1.{}", rnd(4)).parse().unwrap(),
                };
                let method = match rnd(6) {
                    0 => ForwardMethod::Route,
                    1 => ForwardMethod::Tunnel,
                    _ => ForwardMethod::Masq,
                };
                let mut rs = DestConfig::new(rs_addr, 8080).method(method);
                if method == ForwardMethod::Tunnel && rnd(2) == 0 {
                    rs.tun_type = TunnelType::Gue;
                    rs.tun_port = 6080;
                }
                let op = rnd(7);
                if op <= 1 && rnd(2) == 0 {
                    model.ahead(&[key]);
                    ahead.push(key);
                }
                if keys.is_empty() && !ahead.is_empty() {
                    // Nothing changed yet in this batch: the maps are the table's and the VIPs ahead.
                    assert_eq!(
                        model.maps(),
                        SteerMaps::of(&ipvs.services_full(), &[], &ahead, &locals),
                        "step {step}: ahead"
                    );
                }
                let _ = match op {
                    0 => ipvs.add_service(ServiceConfig::new(key, "rr")),
                    1 => ipvs.edit_service(ServiceConfig::new(key, "wlc")),
                    2 => ipvs.delete_service(&key),
                    3 => ipvs.delete_dest(&key, &rs.addr, 8080),
                    4 => ipvs.edit_dest(&key, rs),
                    _ => ipvs.add_dest(&key, rs),
                };
                keys.push(key);
            }
            let t = ipvs.services_full();
            if rnd(2) == 0 {
                // What a batch with a service command does: the ahead set is held over it.
                let d = model.take_diff();
                kernel.apply(&d);
            }
            model.changed(&t, &keys);
            let want = SteerMaps::of(&t, &[], &[], &locals);
            assert_eq!(model.maps(), want, "step {step}");
            let d = model.take_diff();
            let exact = kernel.diff(&want);
            // The diff may be smaller than the exact one only where the kernel already had
            // what an earlier diff put there: it is never wrong, and applied it gives `want`.
            assert!(d.add.services.is_disjoint(&kernel.services), "step {step}: nothing added twice");
            assert!(d.remove.reals.is_subset(&kernel.reals), "step {step}: nothing removed that was not there");
            kernel.apply(&d);
            assert_eq!(kernel, want, "step {step}: the diffs rebuild the maps");
            assert_eq!(d, exact, "step {step}: the diff is the exact one");
            shared_vip |= model.vip_addrs.n.values().any(|c| *c > 1);
            shared_real |= model.reals.n.values().any(|c| *c > 1);
        }
        assert!(shared_vip && shared_real, "some VIP address and some real server had several owners");
        let t = ipvs.services_full();
        let rules = [FwmarkRule {
            daddr: "10.1.0.0".parse().unwrap(),
            dprefix: 16,
            saddr: None,
            protocol: 0,
            dports: (0, 65535),
            mark: 1,
        }];
        model.set_rules(&rules);
        model.set_locals(&[]);
        let d = model.take_diff();
        kernel.apply(&d);
        assert_eq!(kernel, SteerMaps::of(&t, &rules, &[], &[]));
        assert_eq!(d.len(), 2, "one prefix in, one local address out");
    }
}
