//! The director-wide IPVS state (the kernel's `struct netns_ipvs`): the published service
//! table, global timeouts and sysctls, total counters, and the administrative operations that
//! `ipvsadm` commands map to, with the kernel's errors.

use std::net::IpAddr;
use std::sync::atomic::AtomicU32;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;

use crate::dest::{Dest, DestConfig, ForwardMethod, TunnelType};
use crate::proto::Timeouts;
use crate::sched::{self};
use crate::service::{Service, ServiceConfig, ServiceKey, ServiceTable};
use crate::stats::Stats;

/// Why an administrative operation was refused (the kernel's errno, lvs-semantics.md and
/// ipvsadm-cli.md §6). Nothing changes when an operation fails.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AdminError {
    /// EEXIST on -A.
    ServiceExists,
    /// ENOENT on -A/-E.
    SchedulerNotFound,
    /// ESRCH on -E/-D/-Z.
    NoSuchService,
    /// ESRCH on -a/-e/-d.
    ServiceNotDefined,
    /// EEXIST on -a.
    DestExists,
    /// ENOENT on -e/-d.
    NoSuchDest,
    /// EINVAL, with what was wrong.
    Invalid(&'static str),
    /// ERANGE, with what was out of range.
    Range(&'static str),
}

impl std::fmt::Display for AdminError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AdminError::ServiceExists => f.write_str("Service already exists"),
            AdminError::SchedulerNotFound => f.write_str("Scheduler or persistence engine not found"),
            AdminError::NoSuchService => f.write_str("No such service"),
            AdminError::ServiceNotDefined => f.write_str("Service not defined"),
            AdminError::DestExists => f.write_str("Destination already exists"),
            AdminError::NoSuchDest => f.write_str("No such destination"),
            AdminError::Invalid(why) => write!(f, "Invalid operation: {why}"),
            AdminError::Range(why) => write!(f, "Numerical result out of range: {why}"),
        }
    }
}
impl std::error::Error for AdminError {}

/// Run-time switches (`/proc/sys/net/ipv4/vs/*`, lvs-semantics.md §20) the engine honours.
#[derive(Debug)]
pub struct Sysctls {
    pub expire_nodest_conn: AtomicU32,
    pub expire_quiescent_template: AtomicU32,
    pub sloppy_tcp: AtomicU32,
    pub sloppy_sctp: AtomicU32,
    pub conn_reuse_mode: AtomicU32,
    pub secure_tcp: AtomicU32,
    pub nat_icmp_send: AtomicU32,
    pub pmtu_disc: AtomicU32,
    /// Defence modes 0..3 (§19).
    pub drop_entry: AtomicU32,
    pub drop_packet: AtomicU32,
    pub am_droprate: AtomicU32,
    /// Free table entries below which the automatic defences engage (0 = max/16).
    pub amemthresh: AtomicU32,
    /// rvs: RSTs per second per worker for strays (0 = off; `xmit::rst`).
    pub stray_rst: AtomicU32,
    /// rvs: 1 = SYN cookies and a proxied handshake for IPv4 NAT services (synproxy.rs).
    pub syn_proxy: AtomicU32,
}

impl Default for Sysctls {
    fn default() -> Self {
        Sysctls {
            expire_nodest_conn: AtomicU32::new(0),
            expire_quiescent_template: AtomicU32::new(0),
            sloppy_tcp: AtomicU32::new(0),
            sloppy_sctp: AtomicU32::new(0),
            conn_reuse_mode: AtomicU32::new(1),
            secure_tcp: AtomicU32::new(0),
            nat_icmp_send: AtomicU32::new(0),
            pmtu_disc: AtomicU32::new(1),
            drop_entry: AtomicU32::new(0),
            drop_packet: AtomicU32::new(0),
            am_droprate: AtomicU32::new(10),
            amemthresh: AtomicU32::new(0),
            stray_rst: AtomicU32::new(1000),
            syn_proxy: AtomicU32::new(0),
        }
    }
}

/// The director-wide IPVS state shared by the control plane and every worker.
#[derive(Debug)]
pub struct Ipvs {
    table: ArcSwap<ServiceTable>,
    timeouts: ArcSwap<Timeouts>,
    fwmark_rules: ArcSwap<Vec<crate::fwmark::FwmarkRule>>,
    pub sysctl: Sysctls,
    /// Connection sync: whether a master runs, and the sync sysctls (§18).
    pub sync: crate::sync::SyncControl,
    pub total: Stats,
    /// Configured connection-table maximum per worker.
    pub max_conns: usize,
    /// Serialises writers (control plane only; workers never take it).
    admin: Mutex<Trash>,
    /// VIP follow-up: when set, only VIPs in this list are active
    /// ([`ServiceTable::build_gated`]). Written under `admin`.
    vip_gate: Mutex<Option<Vec<IpAddr>>>,
    /// Set by [`Ipvs::freeze_vips`]: the gate stays closed whatever the interfaces say.
    vips_frozen: std::sync::atomic::AtomicBool,
    /// Connection entries from the previous process, waiting for their worker (restore.rs).
    pub(crate) restore: crate::restore::Stash,
    /// The SYN proxy's cookie key (SipHash with a random key, per process).
    pub(crate) synproxy_key: std::collections::hash_map::RandomState,
    /// Inside [`Ipvs::batch`]: the table the commands change in place, published at its end.
    staged: Mutex<Option<Arc<ServiceTable>>>,
}

/// Deleted dests (the kernel's trash): re-adding the same dest to the same service takes it
/// back with its counters (§9). Live connections hold their own reference anyway. Draining
/// dests wait here too, with their deadline.
#[derive(Debug, Default)]
pub(crate) struct Trash(Vec<(ServiceKey, Arc<Dest>)>, Vec<Draining>);

/// A real server being removed gracefully (rvs, lvs-semantics.md §21.2).
#[derive(Clone, Debug)]
pub struct Draining {
    pub service: ServiceKey,
    pub dest: Arc<Dest>,
    /// When its remaining connections are cut (control-plane clock).
    pub deadline: std::time::Instant,
}

impl Ipvs {
    pub fn new(max_conns: usize) -> Self {
        Ipvs {
            table: ArcSwap::from_pointee(ServiceTable::default()),
            timeouts: ArcSwap::from_pointee(Timeouts::default()),
            fwmark_rules: ArcSwap::from_pointee(Vec::new()),
            sysctl: Sysctls::default(),
            sync: Default::default(),
            total: Stats::default(),
            max_conns,
            admin: Mutex::new(Trash::default()),
            vip_gate: Mutex::new(None),
            vips_frozen: std::sync::atomic::AtomicBool::new(false),
            restore: Default::default(),
            synproxy_key: Default::default(),
            staged: Mutex::new(None),
        }
    }

    /// Runs `f` (a batch of commands, e.g. `ipvsadm -R`) with one publish at the end: inside,
    /// every change is made in place in one private copy of the table, so a service or dest
    /// added costs O(1) amortised instead of a copy of the whole table. Workers see the table
    /// before the batch until it ends. Not nested (an inner call just runs `f`).
    pub fn batch<R>(&self, f: impl FnOnce() -> R) -> R {
        {
            let mut st = self.staged.lock().unwrap_or_else(|e| e.into_inner());
            if st.is_some() {
                drop(st);
                return f();
            }
            *st = Some(self.table.load_full());
        }
        let r = f();
        let _w = self.lock();
        if let Some(t) = self.staged.lock().unwrap_or_else(|e| e.into_inner()).take() {
            self.table.store(t);
        }
        r
    }

    /// The table commands read: the staged one inside a batch, else the published one. Drop
    /// it before [`Ipvs::edit`] (a batch's table is changed in place only when unshared).
    fn current(&self) -> Arc<ServiceTable> {
        match &*self.staged.lock().unwrap_or_else(|e| e.into_inner()) {
            Some(t) => t.clone(),
            None => self.table.load_full(),
        }
    }

    /// Changes the table: in place inside a batch, else on a clone (O(1): it shares the
    /// shards, `ipvs::shardmap`) that is then published.
    fn edit<R>(&self, f: impl FnOnce(&mut ServiceTable, Option<&[IpAddr]>) -> R) -> R {
        let gate = self.vip_gate.lock().unwrap_or_else(|e| e.into_inner());
        let mut st = self.staged.lock().unwrap_or_else(|e| e.into_inner());
        match st.as_mut() {
            Some(t) => f(Arc::make_mut(t), gate.as_deref()),
            None => {
                let mut t = ServiceTable::clone(&self.table.load());
                let r = f(&mut t, gate.as_deref());
                self.table.store(Arc::new(t));
                r
            }
        }
    }

    /// Closes the gate for every VIP for good (a hot restart hands the table over: from the
    /// next batch on, no worker takes a packet for a VIP, so no new entry is created and the
    /// table can be copied whole). `thaw` re-opens it with the given gate (hand-over failed).
    pub fn freeze_vips(&self, thaw: Option<Option<Vec<IpAddr>>>) {
        use std::sync::atomic::Ordering::SeqCst;
        match thaw {
            None => {
                self.vips_frozen.store(true, SeqCst);
                self.apply_vip_gate(Some(Vec::new()));
            }
            Some(gate) => {
                self.vips_frozen.store(false, SeqCst);
                self.apply_vip_gate(gate);
            }
        }
    }

    /// The current gate (`None`: every VIP active).
    pub fn vip_gate(&self) -> Option<Vec<IpAddr>> {
        self.vip_gate.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Sets the VIP gate (`None`: every configured VIP is active) and republishes the table
    /// if that changes which VIPs are active. Returns whether it republished.
    pub fn set_vip_gate(&self, gate: Option<Vec<IpAddr>>) -> bool {
        if self.vips_frozen.load(std::sync::atomic::Ordering::SeqCst) {
            return false;
        }
        self.apply_vip_gate(gate)
    }

    fn apply_vip_gate(&self, gate: Option<Vec<IpAddr>>) -> bool {
        let _w = self.lock();
        let mut g = self.vip_gate.lock().unwrap_or_else(|e| e.into_inner());
        if *g == gate {
            return false;
        }
        *g = gate;
        let cur = self.current();
        let next = ServiceTable::build_gated(cur.order(), g.as_deref());
        let changed = next.active_vip_count() != cur.active_vip_count() || !cur.active_vips().all(|a| next.is_vip(a));
        drop(cur);
        if changed {
            let mut st = self.staged.lock().unwrap_or_else(|e| e.into_inner());
            match st.as_mut() {
                Some(t) => *t = Arc::new(next),
                None => self.table.store(Arc::new(next)),
            }
        }
        changed
    }

    /// The current service table (workers: once per batch or per packet that misses).
    #[inline]
    pub fn services(&self) -> arc_swap::Guard<Arc<ServiceTable>> {
        self.table.load()
    }

    pub fn services_full(&self) -> Arc<ServiceTable> {
        self.table.load_full()
    }

    /// The global timeouts without touching the reference count (workers, per batch).
    #[inline]
    pub fn timeouts_guard(&self) -> arc_swap::Guard<Arc<Timeouts>> {
        self.timeouts.load()
    }

    pub fn timeouts(&self) -> Arc<Timeouts> {
        self.timeouts.load_full()
    }

    /// Replace the firewall-mark classifier's rules (first match wins).
    pub fn set_fwmark_rules(&self, rules: Vec<crate::fwmark::FwmarkRule>) {
        self.fwmark_rules.store(Arc::new(rules));
    }

    pub fn fwmark_rules(&self) -> Arc<Vec<crate::fwmark::FwmarkRule>> {
        self.fwmark_rules.load_full()
    }

    pub(crate) fn fwmark_rules_guard(&self) -> arc_swap::Guard<Arc<Vec<crate::fwmark::FwmarkRule>>> {
        self.fwmark_rules.load()
    }

    /// Replace every global timeout (all TCP and SCTP states, UDP) at once: configuration files
    /// set more than `--set` can. Live connections take a changed timeout at their next state
    /// change.
    pub fn set_all_timeouts(&self, t: Timeouts) {
        let _w = self.lock();
        self.timeouts.store(Arc::new(t));
    }

    /// `ipvsadm --set tcp tcpfin udp` (0 = unchanged).
    pub fn set_timeouts(&self, tcp: u32, tcpfin: u32, udp: u32) {
        let _w = self.lock();
        let mut t = **self.timeouts.load();
        t.set(tcp, tcpfin, udp);
        self.timeouts.store(Arc::new(t));
    }

    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, Trash> {
        self.admin.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn publish(&self, services: Vec<Arc<Service>>) {
        self.edit(|t, gate| *t = ServiceTable::build_gated(services, gate));
    }

    fn validate_service(cfg: &ServiceConfig) -> Result<(), AdminError> {
        if let ServiceKey::Addr { port: 0, .. } = cfg.key
            && cfg.persistent.is_none()
        {
            return Err(AdminError::Invalid("Zero port specified for non-persistent service"));
        }
        if cfg.ops {
            let udp_or_mark = matches!(cfg.key, ServiceKey::Fwmark { .. } | ServiceKey::Addr { protocol: 17, .. });
            if !udp_or_mark {
                return Err(AdminError::Invalid("One-Packet Scheduling is only for UDP virtual services"));
            }
        }
        if cfg.key.is_ipv6() && !(1..=128).contains(&cfg.netmask) {
            return Err(AdminError::Invalid("IPv6 prefix length must be 1..128"));
        }
        Ok(())
    }

    /// `-A`.
    pub fn add_service(&self, cfg: ServiceConfig) -> Result<(), AdminError> {
        Self::validate_service(&cfg)?;
        let _w = self.lock();
        if self.current().get(&cfg.key).is_some() {
            return Err(AdminError::ServiceExists);
        }
        let scheduler = sched::new_scheduler(&cfg.scheduler, cfg.sched_flags).ok_or(AdminError::SchedulerNotFound)?;
        scheduler.update(&[]);
        let timeouts = crate::dest::SvcTimeouts::default();
        timeouts.store(cfg.timeouts.map(Arc::new));
        let svc = Arc::new(Service {
            config: cfg,
            dests: Vec::new(),
            scheduler,
            stats: Arc::new(Stats::default()),
            timeouts,
        });
        self.edit(|t, gate| t.insert(svc, gate));
        Ok(())
    }

    /// Replace one service in the published list with `f(old)`.
    fn replace(
        &self,
        key: &ServiceKey,
        missing: AdminError,
        f: impl FnOnce(&Service) -> Result<Service, AdminError>,
    ) -> Result<(), AdminError> {
        let old = self.current().get(key).cloned().ok_or(missing)?;
        let new = Arc::new(f(&old)?);
        self.edit(|t, _| t.replace(new));
        Ok(())
    }

    /// Publish the service `key` with a new dest list computed from the old one (the
    /// scheduler learns the new list first).
    fn set_dests(&self, key: &ServiceKey, f: impl FnOnce(&[Arc<Dest>]) -> Vec<Arc<Dest>>) -> Result<(), AdminError> {
        self.replace(key, AdminError::ServiceNotDefined, |old| {
            let dests = f(&old.dests);
            old.scheduler.update(&dests);
            Ok(Service {
                config: old.config.clone(),
                dests,
                scheduler: old.scheduler.clone(),
                stats: old.stats.clone(),
                timeouts: old.timeouts.clone(),
            })
        })
    }

    /// The dest a `-d`/`-e`-style command names: ipvsadm gives DR/TUN dests the service port,
    /// so match either the given port or the service's.
    fn named_dest(svc: &Service, key: &ServiceKey, addr: &IpAddr, port: u16) -> Option<Arc<Dest>> {
        svc.find_dest(addr, port)
            .or_else(|| match key {
                ServiceKey::Addr { port: sp, .. } => svc.find_dest(addr, *sp),
                _ => None,
            })
            .cloned()
    }

    /// `-E`: replaces all service parameters (a new scheduler when the name or flags change).
    pub fn edit_service(&self, cfg: ServiceConfig) -> Result<(), AdminError> {
        Self::validate_service(&cfg)?;
        let _w = self.lock();
        let key = cfg.key;
        self.replace(&key, AdminError::NoSuchService, |old| {
            let scheduler = if old.config.scheduler == cfg.scheduler && old.config.sched_flags == cfg.sched_flags {
                old.scheduler.clone()
            } else {
                let s = sched::new_scheduler(&cfg.scheduler, cfg.sched_flags).ok_or(AdminError::SchedulerNotFound)?;
                s.update(&old.dests);
                s
            };
            old.timeouts.store(cfg.timeouts.map(Arc::new));
            Ok(Service {
                config: cfg,
                dests: old.dests.clone(),
                scheduler,
                stats: old.stats.clone(),
                timeouts: old.timeouts.clone(),
            })
        })
    }

    /// `-D`: the service and its dests go; their connections stay until they expire (§9).
    pub fn delete_service(&self, key: &ServiceKey) -> Result<(), AdminError> {
        let mut trash = self.lock();
        let svc = self.current().get(key).cloned().ok_or(AdminError::NoSuchService)?;
        for d in &svc.dests {
            d.set_available(false);
        }
        trash.0.retain(|(k, _)| k != key);
        self.edit(|t, gate| t.remove(key, gate));
        Ok(())
    }

    /// `-C`.
    pub fn clear(&self) {
        let mut trash = self.lock();
        for s in self.current().iter() {
            for d in &s.dests {
                d.set_available(false);
            }
        }
        trash.0.clear();
        self.publish(Vec::new());
    }

    fn validate_dest(key: &ServiceKey, cfg: &DestConfig) -> Result<(), AdminError> {
        if cfg.weight < 0 {
            return Err(AdminError::Range("weight"));
        }
        if cfg.u_threshold != 0 && cfg.l_threshold > cfg.u_threshold {
            return Err(AdminError::Range("l_threshold above u_threshold"));
        }
        if cfg.addr.is_ipv6() != key.is_ipv6() && cfg.method != ForwardMethod::Tunnel {
            return Err(AdminError::Invalid("Different address family is allowed only for tunneling servers"));
        }
        if cfg.method == ForwardMethod::Tunnel && cfg.tun_type == TunnelType::Gue && cfg.tun_port == 0 {
            return Err(AdminError::Invalid("GUE tunnel needs a port"));
        }
        if cfg.addr.is_unspecified() || cfg.addr.is_multicast() {
            return Err(AdminError::Invalid("address not unicast"));
        }
        if let IpAddr::V4(a) = cfg.addr
            && a.is_broadcast()
        {
            return Err(AdminError::Invalid("address not unicast"));
        }
        Ok(())
    }

    /// ipvsadm's hidden rule: DR and TUN dests of a non-fwmark service get the service port.
    fn normalise_dest(key: &ServiceKey, mut cfg: DestConfig) -> DestConfig {
        if let ServiceKey::Addr { port, .. } = key
            && matches!(cfg.method, ForwardMethod::Route | ForwardMethod::Tunnel)
        {
            cfg.port = *port;
        }
        cfg
    }

    /// `-a`: the new dest goes to the head of the list (newest first, §15).
    pub fn add_dest(&self, key: &ServiceKey, cfg: DestConfig) -> Result<(), AdminError> {
        let cfg = Self::normalise_dest(key, cfg);
        Self::validate_dest(key, &cfg)?;
        let mut trash = self.lock();
        let cur = self.current();
        let svc = cur.get(key).ok_or(AdminError::ServiceNotDefined)?;
        if svc.find_dest(&cfg.addr, cfg.port).is_some() {
            return Err(AdminError::DestExists);
        }
        if svc.scheduler.max_dests().is_some_and(|m| svc.dests.len() + 1 > m) {
            return Err(AdminError::Invalid("more dests than the scheduler's table size"));
        }
        let dest = match trash.0.iter().position(|(k, d)| k == key && d.addr == cfg.addr && d.port == cfg.port) {
            Some(i) => {
                let (_, d) = trash.0.swap_remove(i);
                trash.1.retain(|x| !Arc::ptr_eq(&x.dest, &d));
                d.apply(&cfg);
                d.set_available(true);
                d.set_draining(false);
                d
            }
            None => Arc::new(Dest::in_service(&cfg, svc.stats.clone(), svc.timeouts.clone())),
        };
        drop(cur);
        self.set_dests(key, |old| std::iter::once(dest).chain(old.iter().cloned()).collect())
    }

    /// `-e`: every parameter replaced in place; the dest keeps its list position.
    pub fn edit_dest(&self, key: &ServiceKey, cfg: DestConfig) -> Result<(), AdminError> {
        let cfg = Self::normalise_dest(key, cfg);
        Self::validate_dest(key, &cfg)?;
        let _w = self.lock();
        let cur = self.current();
        let svc = cur.get(key).ok_or(AdminError::ServiceNotDefined)?;
        let d = svc.find_dest(&cfg.addr, cfg.port).ok_or(AdminError::NoSuchDest)?;
        d.apply(&cfg);
        svc.scheduler.update(&svc.dests);
        Ok(())
    }

    /// `-d`: the dest leaves the service (it is no longer AVAILABLE); its connections stay
    /// bound to it until they expire (§9), or are expired with `expire_nodest_conn`.
    pub fn delete_dest(&self, key: &ServiceKey, addr: &IpAddr, port: u16) -> Result<(), AdminError> {
        let mut trash = self.lock();
        let cur = self.current();
        let svc = cur.get(key).ok_or(AdminError::ServiceNotDefined)?;
        let d = Self::named_dest(svc, key, addr, port).ok_or(AdminError::NoSuchDest)?;
        d.set_available(false);
        trash.0.push((*key, d.clone()));
        drop(cur);
        self.set_dests(key, |old| old.iter().filter(|x| !Arc::ptr_eq(x, &d)).cloned().collect())
    }

    /// Replace the whole table at once (configuration reload): one new snapshot is published,
    /// so packets see either the old table or the new one. Services and dests that exist in
    /// both keep their objects (counters, scheduler state, and the connections bound to them
    /// keep flowing); removed dests go to the trash like `-d`. `dests` are in the order they
    /// would be added (`-a` order); the kernel list is newest first. Everything is validated
    /// first: on error nothing changes.
    pub fn replace_table(&self, new: Vec<(ServiceConfig, Vec<DestConfig>)>) -> Result<(), AdminError> {
        let mut seen = std::collections::HashSet::new();
        for (svc, dests) in &new {
            Self::validate_service(svc)?;
            if !seen.insert(svc.key) {
                return Err(AdminError::ServiceExists);
            }
            if sched::new_scheduler(&svc.scheduler, svc.sched_flags).is_none() {
                return Err(AdminError::SchedulerNotFound);
            }
            let mut dseen = std::collections::HashSet::new();
            for d in dests {
                let d = Self::normalise_dest(&svc.key, *d);
                Self::validate_dest(&svc.key, &d)?;
                if !dseen.insert((d.addr, d.port)) {
                    return Err(AdminError::DestExists);
                }
            }
        }
        let mut trash = self.lock();
        let cur = self.current();
        let mut list = Vec::with_capacity(new.len());
        let mut kept: Vec<Arc<Dest>> = Vec::new();
        for (cfg, dests) in new {
            let old = cur.get(&cfg.key).cloned();
            let (stats, timeouts) = match &old {
                Some(o) => (o.stats.clone(), o.timeouts.clone()),
                None => (Arc::new(Stats::default()), crate::dest::SvcTimeouts::default()),
            };
            timeouts.store(cfg.timeouts.map(Arc::new));
            let scheduler = match &old {
                Some(o) if o.config.scheduler == cfg.scheduler && o.config.sched_flags == cfg.sched_flags => {
                    o.scheduler.clone()
                }
                _ => sched::new_scheduler(&cfg.scheduler, cfg.sched_flags).ok_or(AdminError::SchedulerNotFound)?,
            };
            let mut ds: Vec<Arc<Dest>> = Vec::with_capacity(dests.len());
            for d in dests.iter().rev() {
                let d = Self::normalise_dest(&cfg.key, *d);
                let existing = old.as_ref().and_then(|o| o.find_dest(&d.addr, d.port)).cloned().or_else(|| {
                    let i = trash.0.iter().position(|(k, x)| *k == cfg.key && x.addr == d.addr && x.port == d.port)?;
                    Some(trash.0.swap_remove(i).1)
                });
                let dest = match existing {
                    Some(x) => {
                        x.apply(&d);
                        x.set_available(true);
                        x.set_draining(false);
                        x
                    }
                    None => Arc::new(Dest::in_service(&d, stats.clone(), timeouts.clone())),
                };
                kept.push(dest.clone());
                ds.push(dest);
            }
            scheduler.update(&ds);
            list.push(Arc::new(Service { config: cfg, dests: ds, scheduler, stats, timeouts }));
        }
        for s in cur.order().iter() {
            for d in &s.dests {
                if !kept.iter().any(|k| Arc::ptr_eq(k, d)) {
                    d.set_available(false);
                    trash.0.push((s.config.key, d.clone()));
                }
            }
        }
        drop(cur);
        self.publish(list);
        Ok(())
    }

    /// Graceful removal (rvs): the dest leaves the scheduling list at once, so it gets no new
    /// connection (nor through persistence), while its established connections keep flowing.
    /// When they have all ended, or at `deadline`, [`Ipvs::drain_tick`] removes it for good.
    pub fn drain_dest(
        &self,
        key: &ServiceKey,
        addr: &IpAddr,
        port: u16,
        deadline: std::time::Instant,
    ) -> Result<(), AdminError> {
        let mut trash = self.lock();
        let cur = self.current();
        let svc = cur.get(key).ok_or(AdminError::ServiceNotDefined)?;
        let d = Self::named_dest(svc, key, addr, port).ok_or(AdminError::NoSuchDest)?;
        d.set_draining(true);
        trash.1.push(Draining { service: *key, dest: d.clone(), deadline });
        drop(cur);
        self.set_dests(key, |old| old.iter().filter(|x| !Arc::ptr_eq(x, &d)).cloned().collect())
    }

    /// Dests being drained, with their deadlines and live connection counts.
    pub fn draining(&self) -> Vec<Draining> {
        self.lock().1.clone()
    }

    /// Finish drains whose connections are gone or whose deadline passed: the dest becomes
    /// unavailable and the workers' expiry sweeps drop what is left of its connections.
    /// Returns the dests finished. Called by the control plane (e.g. every second).
    pub fn drain_tick(&self, now: std::time::Instant) -> Vec<Draining> {
        let mut trash = self.lock();
        let (done, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut trash.1).into_iter().partition(|d| {
            now >= d.deadline || (d.dest.activeconns() == 0 && d.dest.inactconns() == 0 && d.dest.persistconns() == 0)
        });
        trash.1 = keep;
        for d in &done {
            d.dest.set_available(false);
            trash.0.push((d.service, d.dest.clone()));
        }
        done
    }

    /// `-Z [service]`.
    pub fn zero(&self, key: Option<&ServiceKey>) -> Result<(), AdminError> {
        let _w = self.lock();
        let cur = self.current();
        match key {
            Some(k) => {
                let s = cur.get(k).ok_or(AdminError::NoSuchService)?;
                s.stats.zero();
                s.dests.iter().for_each(|d| d.stats.zero());
            }
            None => {
                for s in cur.iter() {
                    s.stats.zero();
                    s.dests.iter().for_each(|d| d.stats.zero());
                }
                self.total.zero();
            }
        }
        Ok(())
    }
}

/// Max per-worker table size used when none is configured.
pub const DEFAULT_MAX_CONNS: usize = 1 << 20;

impl Default for Ipvs {
    fn default() -> Self {
        Ipvs::new(DEFAULT_MAX_CONNS)
    }
}
