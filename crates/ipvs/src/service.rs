//! Virtual services and the immutable service table the workers read (lvs-semantics.md §4).
//!
//! The control plane publishes a new [`ServiceTable`] (arc-swap) on every change to the set of
//! services or dests; workers load it only for packets that find no connection.

use std::net::IpAddr;
use std::sync::Arc;

use crate::dest::Dest;

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
/// Cloning copies the maps of `Arc`s, not the services. Adding or replacing one service in
/// a table that is not shared ([`ServiceTable::insert`], [`ServiceTable::replace`]) costs
/// O(1) amortised, so a batch of commands (`Ipvs::batch`) builds its table in place and
/// publishes once; removing one rebuilds the maps (O(n)).
#[derive(Clone, Debug, Default)]
pub struct ServiceTable {
    by_addr: FastMap<(u8, IpAddr, u16), Arc<Service>>,
    by_mark: FastMap<(u32, bool), Arc<Service>>,
    /// Services in creation order (listing order before sorting).
    pub order: Vec<Arc<Service>>,
    port_zero: bool,
    /// The active VIPs of the address services: the node answers ARP/ND for them and routes
    /// them to LOCAL_IN. Without a gate every VIP is active.
    vips: VipSet,
    /// Every VIP of every address service, active or standby (listings, warnings).
    configured: Vec<IpAddr>,
    /// Services per configured VIP (a VIP goes when its last service does).
    vip_services: FastMap<IpAddr, u32>,
    /// Where each service sits in `order`.
    pos: FastMap<ServiceKey, usize>,
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
        t.order.reserve(services.len());
        for s in services {
            t.insert(s, gate);
        }
        t
    }

    /// Appends a service whose key is not in the table yet (`gate` as in
    /// [`ServiceTable::build_gated`]). O(1) amortised.
    pub fn insert(&mut self, s: Arc<Service>, gate: Option<&[IpAddr]>) {
        let key = s.config.key;
        match key {
            ServiceKey::Addr { protocol, addr, port } => {
                self.by_addr.insert((protocol, addr, port), s.clone());
                let n = self.vip_services.entry(addr).or_insert(0);
                *n += 1;
                if *n == 1 {
                    self.configured.push(addr);
                }
                if gate.is_none_or(|g| g.contains(&addr)) {
                    self.vips.insert(addr);
                }
                self.port_zero |= port == 0;
            }
            ServiceKey::Fwmark { mark, ipv6 } => {
                self.by_mark.insert((mark, ipv6), s.clone());
            }
        }
        self.pos.insert(key, self.order.len());
        self.order.push(s);
    }

    /// Puts `s` in the place of the service with the same key (edit, dest changes); its VIP
    /// is unchanged. O(1). Returns false (and changes nothing) when the key is not here.
    pub fn replace(&mut self, s: Arc<Service>) -> bool {
        let key = s.config.key;
        let Some(&i) = self.pos.get(&key) else { return false };
        match key {
            ServiceKey::Addr { protocol, addr, port } => {
                self.by_addr.insert((protocol, addr, port), s.clone());
            }
            ServiceKey::Fwmark { mark, ipv6 } => {
                self.by_mark.insert((mark, ipv6), s.clone());
            }
        }
        self.order[i] = s;
        true
    }

    /// Removes the service `key`, keeping the others' order. O(n): the maps are rebuilt.
    pub fn remove(&mut self, key: &ServiceKey, gate: Option<&[IpAddr]>) {
        if self.pos.contains_key(key) {
            let rest = std::mem::take(&mut self.order).into_iter().filter(|s| s.config.key != *key).collect();
            *self = ServiceTable::build_gated(rest, gate);
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
        if self.port_zero {
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

    /// Is there a firewall-mark service for this mark (the node routes such packets locally)?
    #[inline]
    pub fn has_mark(&self, mark: u32, ipv6: bool) -> bool {
        mark != 0 && self.by_mark.contains_key(&(mark, ipv6))
    }

    #[inline]
    pub fn is_vip(&self, addr: &IpAddr) -> bool {
        self.vips.contains(addr)
    }

    /// [`ServiceTable::is_vip`] for an IPv4 address as a number (the per-packet prefetch).
    #[inline]
    pub fn is_vip_v4(&self, addr: u32) -> bool {
        if self.vips.all.len() <= VIP_SCAN_MAX {
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

    /// Every configured VIP, active or standby.
    pub fn vips(&self) -> impl Iterator<Item = &IpAddr> {
        self.configured.iter()
    }

    /// The VIPs this director answers for and forwards now (all of [`ServiceTable::vips`]
    /// unless a gate is set).
    pub fn active_vips(&self) -> impl Iterator<Item = &IpAddr> {
        self.vips.all.iter()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

/// The VIPs, asked about for every packet: a short list is scanned (a few compares beat
/// hashing), a long one hashed.
#[derive(Clone, Debug, Default)]
struct VipSet {
    all: Vec<IpAddr>,
    v4: Vec<u32>,
    map: FastMap<IpAddr, ()>,
}

const VIP_SCAN_MAX: usize = 16;

impl VipSet {
    fn insert(&mut self, a: IpAddr) {
        if self.map.insert(a, ()).is_some() {
            return;
        }
        self.all.push(a);
        if let IpAddr::V4(v) = a {
            self.v4.push(v.into());
        }
    }

    #[inline]
    fn contains(&self, a: &IpAddr) -> bool {
        if self.all.len() <= VIP_SCAN_MAX {
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
