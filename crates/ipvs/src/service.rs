//! Virtual services and the immutable service table the workers read (lvs-semantics.md §4).
//!
//! The control plane publishes a new [`ServiceTable`] (arc-swap) on every change to the set of
//! services or dests; workers load it only for packets that find no connection.

use std::net::IpAddr;
use std::sync::Arc;

use crate::dest::Dest;
use crate::shardmap::ShardMap;

/// Hash maps of the packet path: hashbrown with a randomly seeded foldhash (keys come from
/// packets).
pub type FastMap<K, V> = hashbrown::HashMap<K, V, foldhash::fast::RandomState>;
use crate::proto::Timeouts;
use crate::sched::{SchedFlags, Scheduler};
use crate::stats::Stats;

/// How a service is addressed: ⟨protocol, VIP, port⟩ or a firewall mark (`-f`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ServiceKey {
    Addr { protocol: u8, addr: IpAddr, port: u16 },
    Fwmark { mark: u32, ipv6: bool },
}

impl ServiceKey {
    pub fn tcp(addr: IpAddr, port: u16) -> Self {
        ServiceKey::Addr { protocol: wire_proto::TCP, addr, port }
    }
    pub fn udp(addr: IpAddr, port: u16) -> Self {
        ServiceKey::Addr { protocol: wire_proto::UDP, addr, port }
    }
    pub fn is_ipv6(&self) -> bool {
        match self {
            ServiceKey::Addr { addr, .. } => addr.is_ipv6(),
            ServiceKey::Fwmark { ipv6, .. } => *ipv6,
        }
    }
}

mod wire_proto {
    pub const TCP: u8 = 6;
    pub const UDP: u8 = 17;
}

/// The parameters of a service that `ipvsadm -A/-E` sets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceConfig {
    pub key: ServiceKey,
    pub scheduler: String,
    pub sched_flags: SchedFlags,
    /// Persistence timeout in seconds (`-p`), `None` when not persistent.
    pub persistent: Option<u32>,
    /// Persistence granularity: IPv4 netmask as a u32, or the IPv6 prefix length.
    pub netmask: u32,
    /// One-packet scheduling (`-o`).
    pub ops: bool,
    /// Per-service timeouts (rvs extension, lvs-semantics.md §21.3); `None` = the global ones.
    pub timeouts: Option<Timeouts>,
    /// Persistence engine (`--pe`); only `sip` exists, as in the kernel.
    pub pe: Option<PersistenceEngine>,
}

/// The kernel's persistence engines (`--pe NAME`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PersistenceEngine {
    /// `ip_vs_pe_sip`: templates keyed by the SIP Call-ID (`crate::pe_sip`).
    Sip,
}

impl PersistenceEngine {
    pub fn from_name(name: &str) -> Option<Self> {
        (name == crate::pe_sip::NAME).then_some(PersistenceEngine::Sip)
    }
    pub fn name(self) -> &'static str {
        match self {
            PersistenceEngine::Sip => crate::pe_sip::NAME,
        }
    }
}

impl ServiceConfig {
    pub fn new(key: ServiceKey, scheduler: &str) -> Self {
        ServiceConfig {
            netmask: if key.is_ipv6() { 128 } else { u32::MAX },
            key,
            scheduler: scheduler.to_string(),
            sched_flags: SchedFlags::default(),
            persistent: None,
            ops: false,
            timeouts: None,
            pe: None,
        }
    }
}

/// A virtual service in one snapshot. Its stats and scheduler outlive the snapshot.
#[derive(Debug)]
pub struct Service {
    pub config: ServiceConfig,
    /// Kernel order: newest first.
    pub dests: Vec<Arc<Dest>>,
    pub scheduler: Arc<dyn Scheduler>,
    pub stats: Arc<Stats>,
    /// `config.timeouts`, shared with the dests so connections find it without a lookup.
    pub timeouts: crate::dest::SvcTimeouts,
}

impl Service {
    pub fn find_dest(&self, addr: &IpAddr, port: u16) -> Option<&Arc<Dest>> {
        self.dests.iter().find(|d| d.addr == *addr && d.port == port)
    }
}

/// Everything the workers need to schedule: the services by key, in a snapshot.
///
/// Every map is a [`ShardMap`]: cloning the table is O(1) and adding, replacing or removing
/// one service in the clone copies one shard of each map it touches (O(√n)), so a lone
/// command publishes a new table without copying it (issue 12), and a batch
/// (`Ipvs::batch`) changes its private table in place.
#[derive(Clone, Debug, Default)]
pub struct ServiceTable {
    by_addr: ShardMap<(u8, IpAddr, u16), Arc<Service>>,
    by_mark: ShardMap<(u32, bool), Arc<Service>>,
    /// Services by creation number: [`ServiceTable::order`] sorts them (listing order).
    by_seq: ShardMap<u64, Arc<Service>>,
    /// The creation number of each service.
    seq: ShardMap<ServiceKey, u64>,
    next_seq: u64,
    /// Address services on port 0 (the lookup then tries port 0 too).
    port_zero: usize,
    /// The active VIPs of the address services: the node answers ARP/ND for them and routes
    /// them to LOCAL_IN. Without a gate every VIP is active.
    vips: VipSet,
    /// Services per configured VIP, active or standby (a VIP goes when its last service does).
    vip_services: ShardMap<IpAddr, u32>,
    /// Persistence netmasks of the IPv4 persistent services, with how many use each (a few
    /// distinct ones): the steering's client mask in O(1).
    masks: Vec<(u32, u32)>,
}

impl ServiceTable {
    pub fn build(services: Vec<Arc<Service>>) -> Self {
        Self::build_gated(services, None)
    }

    /// A table whose active VIPs are only those in `gate` (VIP follow-up, rvsd's
    /// vipfollow.rs: the addresses keepalived put on the director's interfaces). A standby
    /// VIP keeps its services and dests, but the node neither answers ARP/ND for it nor takes
    /// its packets, so the director that owns it in VRRP is the only one that forwards.
    pub fn build_gated(services: Vec<Arc<Service>>, gate: Option<&[IpAddr]>) -> Self {
        let mut t = ServiceTable::default();
        for s in services {
            t.insert(s, gate);
        }
        t
    }

    fn persistence_mask(c: &ServiceConfig) -> Option<u32> {
        (c.persistent.is_some() && !c.key.is_ipv6()).then_some(c.netmask)
    }

    fn count_mask(&mut self, c: &ServiceConfig, up: bool) {
        let Some(m) = Self::persistence_mask(c) else { return };
        match self.masks.iter().position(|(x, _)| *x == m) {
            Some(i) if up => self.masks[i].1 += 1,
            Some(i) => {
                self.masks[i].1 -= 1;
                if self.masks[i].1 == 0 {
                    self.masks.swap_remove(i);
                }
            }
            None if up => self.masks.push((m, 1)),
            None => {}
        }
    }

    /// Appends a service whose key is not in the table yet (`gate` as in
    /// [`ServiceTable::build_gated`]). O(√n).
    pub fn insert(&mut self, s: Arc<Service>, gate: Option<&[IpAddr]>) {
        let key = s.config.key;
        match key {
            ServiceKey::Addr { protocol, addr, port } => {
                self.by_addr.insert((protocol, addr, port), s.clone());
                let n = self.vip_services.get(&addr).copied().unwrap_or(0);
                self.vip_services.insert(addr, n + 1);
                if gate.is_none_or(|g| g.contains(&addr)) {
                    self.vips.insert(addr);
                }
                self.port_zero += usize::from(port == 0);
            }
            ServiceKey::Fwmark { mark, ipv6 } => {
                self.by_mark.insert((mark, ipv6), s.clone());
            }
        }
        self.count_mask(&s.config, true);
        self.seq.insert(key, self.next_seq);
        self.by_seq.insert(self.next_seq, s);
        self.next_seq += 1;
    }

    /// Puts `s` in the place of the service with the same key (edit, dest changes); its VIP
    /// is unchanged. O(√n). Returns false (and changes nothing) when the key is not here.
    pub fn replace(&mut self, s: Arc<Service>) -> bool {
        let key = s.config.key;
        let Some(&i) = self.seq.get(&key) else { return false };
        match key {
            ServiceKey::Addr { protocol, addr, port } => {
                self.by_addr.insert((protocol, addr, port), s.clone());
            }
            ServiceKey::Fwmark { mark, ipv6 } => {
                self.by_mark.insert((mark, ipv6), s.clone());
            }
        }
        self.count_mask(&s.config, true);
        if let Some(old) = self.by_seq.insert(i, s) {
            self.count_mask(&old.config, false);
        }
        true
    }

    /// Removes the service `key`, keeping the others' order. O(√n).
    pub fn remove(&mut self, key: &ServiceKey, _gate: Option<&[IpAddr]>) {
        let Some(i) = self.seq.remove(key) else { return };
        if let Some(old) = self.by_seq.remove(&i) {
            self.count_mask(&old.config, false);
        }
        match *key {
            ServiceKey::Addr { protocol, addr, port } => {
                self.by_addr.remove(&(protocol, addr, port));
                match self.vip_services.get(&addr).copied().unwrap_or(0) {
                    0 | 1 => {
                        self.vip_services.remove(&addr);
                        self.vips.remove(&addr);
                    }
                    n => {
                        self.vip_services.insert(addr, n - 1);
                    }
                }
                self.port_zero -= usize::from(port == 0);
            }
            ServiceKey::Fwmark { mark, ipv6 } => {
                self.by_mark.remove(&(mark, ipv6));
            }
        }
    }

    /// Service lookup for a packet in the kernel's order: fwmark, exact, port 0 (§4).
    #[inline]
    pub fn lookup(&self, mark: u32, protocol: u8, daddr: &IpAddr, dport: u16) -> Option<&Arc<Service>> {
        if mark != 0
            && let Some(s) = self.by_mark.get(&(mark, daddr.is_ipv6()))
        {
            return Some(s);
        }
        if let Some(s) = self.by_addr.get(&(protocol, *daddr, dport)) {
            return Some(s);
        }
        if self.port_zero > 0 {
            return self.by_addr.get(&(protocol, *daddr, 0));
        }
        None
    }

    pub fn get(&self, key: &ServiceKey) -> Option<&Arc<Service>> {
        match *key {
            ServiceKey::Addr { protocol, addr, port } => self.by_addr.get(&(protocol, addr, port)),
            ServiceKey::Fwmark { mark, ipv6 } => self.by_mark.get(&(mark, ipv6)),
        }
    }

    /// Every service in creation order (listings, reloads): O(n log n), a sort of the
    /// creation numbers.
    pub fn order(&self) -> Vec<Arc<Service>> {
        let mut v: Vec<(u64, &Arc<Service>)> = self.by_seq.iter().map(|(i, s)| (*i, s)).collect();
        v.sort_unstable_by_key(|(i, _)| *i);
        v.into_iter().map(|(_, s)| s.clone()).collect()
    }

    /// Every service in no particular order (O(n), no sort).
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Service>> {
        self.by_seq.iter().map(|(_, s)| s)
    }

    /// How many services.
    pub fn len(&self) -> usize {
        self.by_seq.len()
    }

    /// Is there a firewall-mark service for this mark (the node routes such packets locally)?
    #[inline]
    pub fn has_mark(&self, mark: u32, ipv6: bool) -> bool {
        mark != 0 && self.by_mark.contains_key(&(mark, ipv6))
    }

    #[inline]
    pub fn is_vip(&self, addr: &IpAddr) -> bool {
        self.vips.contains(addr)
    }

    /// Is `addr` the VIP of a service (active or standby)? O(1).
    pub fn is_configured_vip(&self, addr: &IpAddr) -> bool {
        self.vip_services.contains_key(addr)
    }

    /// The widest (AND of all) persistence netmask of the IPv4 persistent services,
    /// `u32::MAX` without any: what the steering hashes clients with. O(distinct masks).
    pub fn client_mask(&self) -> u32 {
        self.masks.iter().fold(u32::MAX, |m, (x, _)| m & x)
    }

    /// [`ServiceTable::is_vip`] for an IPv4 address as a number (the per-packet prefetch).
    #[inline]
    pub fn is_vip_v4(&self, addr: u32) -> bool {
        if self.vips.map.len() <= VIP_SCAN_MAX {
            // A plain loop: for a handful of VIPs, cheaper than the unrolled `contains`.
            let mut i = 0;
            while i < self.vips.v4.len() {
                if self.vips.v4[i] == addr {
                    return true;
                }
                i += 1;
            }
            false
        } else {
            self.vips.map.contains_key(&IpAddr::V4(addr.into()))
        }
    }

    /// Every configured VIP, active or standby, in no particular order.
    pub fn vips(&self) -> impl Iterator<Item = &IpAddr> {
        self.vip_services.keys()
    }

    /// The VIPs this director answers for and forwards now (all of [`ServiceTable::vips`]
    /// unless a gate is set), in no particular order.
    pub fn active_vips(&self) -> impl Iterator<Item = &IpAddr> {
        self.vips.map.keys()
    }

    /// How many active VIPs.
    pub fn active_vip_count(&self) -> usize {
        self.vips.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_seq.is_empty()
    }
}

/// The VIPs, asked about for every packet: a short list is scanned (a few compares beat
/// hashing), a long one hashed.
#[derive(Clone, Debug, Default)]
struct VipSet {
    /// Every VIP while there are at most [`VIP_SCAN_MAX`], else empty.
    all: Vec<IpAddr>,
    v4: Vec<u32>,
    map: ShardMap<IpAddr, ()>,
}

const VIP_SCAN_MAX: usize = 16;

impl VipSet {
    fn insert(&mut self, a: IpAddr) {
        if self.map.insert(a, ()).is_some() {
            return;
        }
        if self.map.len() <= VIP_SCAN_MAX {
            self.all.push(a);
            if let IpAddr::V4(v) = a {
                self.v4.push(v.into());
            }
        } else if !self.all.is_empty() {
            self.all = Vec::new();
            self.v4 = Vec::new();
        }
    }

    fn remove(&mut self, a: &IpAddr) {
        if self.map.remove(a).is_none() || self.map.len() > VIP_SCAN_MAX {
            return;
        }
        self.all = self.map.keys().copied().collect();
        self.v4 = self
            .all
            .iter()
            .filter_map(|a| match a {
                IpAddr::V4(v) => Some(u32::from(*v)),
                IpAddr::V6(_) => None,
            })
            .collect();
    }

    #[inline]
    fn contains(&self, a: &IpAddr) -> bool {
        if self.map.len() <= VIP_SCAN_MAX {
            match a {
                IpAddr::V4(v) => {
                    let v = u32::from(*v);
                    self.v4.contains(&v)
                }
                IpAddr::V6(_) => self.all.contains(a),
            }
        } else {
            self.map.contains_key(a)
        }
    }
}
