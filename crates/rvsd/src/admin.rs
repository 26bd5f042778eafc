//! What the control API does: commands become IPVS admin operations, listings are built from
//! the published service table, counters and estimators. Transport-free (the HTTP side is in
//! `server.rs`), so it is tested without sockets.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use control::api::{ApiError, Command, DestView, ErrorKind, Reply, ServiceView, Snapshot, Timeouts};
use control::ops::{ConnFilter, DrainRequest, DrainingView};
use ipvs::ServiceKey;
use node::Node;
use serde::{Deserialize, Serialize};

use crate::convert::*;
use crate::rates::RateTable;
use node::io::fanout::{SteerSet, Steering};

pub use crate::listing::ConnRequest;

/// Every matching entry (in-process listings; the API streams them instead).
#[derive(Debug, Default)]
pub struct Listing {
    pub conns: Vec<control::api::ConnView>,
}

/// `GET /v1/stats`: the node's own counters (rvs extension; not an ipvsadm listing).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStats {
    /// Frames that entered the packet path.
    pub rx: u64,
    pub tx: u64,
    /// Delivered to the local stack (left to the kernel).
    pub local: u64,
    pub arp_replies: u64,
    /// Of `tx`, frames forwarded by the established-flow shortcut (docs/design.md).
    #[serde(default)]
    pub shortcut: u64,
    /// Frames held while their next hop was resolved (node/src/neighq.rs); each is later
    /// counted in `tx`, or as a `no_neighbour` / `neigh_queue_full` drop.
    #[serde(default)]
    pub neigh_held: u64,
    /// Drops by reason name (`netfilter::DropReason::name`), every reason listed.
    pub drops: BTreeMap<String, u64>,
    pub workers: usize,
    /// Connection-table entries per worker.
    pub conns: Vec<usize>,
    pub conns_total: usize,
    pub max_conns_per_worker: usize,
    pub interfaces: Vec<String>,
    /// Connection sync counters by name (`sync::SyncStats`).
    #[serde(default)]
    pub sync: BTreeMap<String, u64>,
    /// Per served interface: which I/O backend moves its frames (rvs extension).
    #[serde(default)]
    pub io: Vec<IfIo>,
    /// The XDP steering program's counters (absent on AF_PACKET).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xdp: Option<XdpCounters>,
    /// Per packet worker: what it serves and moved (rvs extension).
    #[serde(default)]
    pub per_worker: Vec<WorkerStats>,
}

/// One packet worker's share (`GET /v1/stats` `per_worker`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerStats {
    pub id: usize,
    /// The receive queues it serves, `interface:queue` (AF_XDP; empty on AF_PACKET, where
    /// every worker has a socket in every interface's fanout group).
    #[serde(default)]
    pub queues: Vec<String>,
    /// Frames it ran through the packet path (its own and those handed to it).
    pub rx: u64,
    pub tx: u64,
    /// Frames it received for a client another worker owns, passed to that worker.
    #[serde(default)]
    pub handed_out: u64,
    /// Frames other workers passed to it.
    #[serde(default)]
    pub handed_in: u64,
    /// Its I/O loop's stages: times it slept in `poll()`, batches run through the packet path
    /// (AF_PACKET: RX blocks), transmit wake-ups (`sendto`). Frames per batch: `rx / batches`.
    #[serde(default)]
    pub polls: u64,
    #[serde(default)]
    pub batches: u64,
    #[serde(default)]
    pub tx_kicks: u64,
    pub drops: u64,
    /// Its connection-table entries.
    pub conns: usize,
}

/// The I/O backend of one served interface (`rvsd --io`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IfIo {
    pub name: String,
    /// `xdp` (XDP steering + AF_XDP) or `afpacket`.
    pub backend: String,
    /// `native` or `generic` (XDP only).
    #[serde(default)]
    pub xdp_mode: Option<String>,
    /// AF_XDP sockets in zero-copy mode (else copy mode; XDP only).
    #[serde(default)]
    pub zero_copy: Option<bool>,
    /// Receive queues served.
    #[serde(default)]
    pub queues: u32,
}

/// Counters of the XDP steering program (summed over CPUs).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct XdpCounters {
    /// Frames redirected to rvs's AF_XDP sockets.
    pub steered: u64,
    /// Frames rvs owns that arrived on a queue without a socket: dropped, never passed.
    pub no_socket: u64,
    /// Frames left to the director's kernel.
    pub passed: u64,
}

/// What the I/O side reports and is told (set once at start, `Admin::set_io`).
pub trait IoHooks: Send + Sync {
    /// Per-interface backend and the XDP program's counters.
    fn report(&self) -> (Vec<IfIo>, Option<XdpCounters>);
    /// Services `keys` are about to be published: steer their VIPs now (a client may send
    /// the moment the command returns, or before, for a VIP it already knew).
    fn services_ahead(&self, keys: &[ipvs::ServiceKey]);
    /// Services `keys` changed (added, edited, deleted, their real servers changed): their
    /// steering follows, and what was steered ahead is settled, before the command returns.
    /// O(keys), whatever the table's size.
    fn services_changed(&self, keys: &[ipvs::ServiceKey]);
    /// Anything may have changed (`-C`, a configuration installed): steering recomputed
    /// from the whole table, O(table).
    fn services_resync(&self);
    /// Per worker, the receive queues it serves (`interface:queue`); empty when not by queue.
    fn worker_queues(&self) -> Vec<Vec<String>> {
        Vec::new()
    }
}

/// Everything a request handler needs; shared by the connection threads.
pub struct Admin {
    pub node: Arc<Node>,
    pub rates: Arc<RateTable>,
    /// Is this address configured on the director's kernel?
    kernel_local: Box<dyn Fn(&IpAddr) -> bool + Send + Sync>,
    /// One request channel per worker, for connection listings.
    workers: Vec<mpsc::Sender<ConnRequest>>,
    /// Connection-table size per worker, published by the workers.
    table_sizes: Arc<[AtomicUsize]>,
    steering: Option<Mutex<Steering>>,
    interfaces: Vec<String>,
    /// Serialises commands so logs and steering updates follow the order of changes.
    serial: Mutex<()>,
    /// The connection sync daemons (none wired to workers until [`Admin::with_sync`]).
    sync: Arc<crate::sync::SyncDaemons>,
    io: std::sync::OnceLock<Arc<dyn IoHooks>>,
}

pub const VERSION: &str = "1.2.1";

/// Drain deadline when the request gives none (`rvsadm --drain` without `--drain-timeout`).
pub const DEFAULT_DRAIN_SECS: u32 = 300;

/// The service a command changes (its dests included), if it changes one.
fn touched_key(cmd: &Command) -> Option<ServiceKey> {
    match cmd {
        Command::AddService(spec) | Command::EditService(spec) => service_config(spec).ok().map(|c| c.key),
        Command::DeleteService(k) | Command::AddDest(k, _) | Command::EditDest(k, _) | Command::DeleteDest(k, ..) => {
            service_key(k).ok()
        }
        _ => None,
    }
}

impl Admin {
    pub fn new(
        node: Arc<Node>,
        rates: Arc<RateTable>,
        kernel_local: Box<dyn Fn(&IpAddr) -> bool + Send + Sync>,
        workers: Vec<mpsc::Sender<ConnRequest>>,
        table_sizes: Arc<[AtomicUsize]>,
        steering: Option<Steering>,
        interfaces: Vec<String>,
    ) -> Self {
        let sync = crate::sync::SyncDaemons::new(node.ipvs.clone(), 0).0;
        Admin {
            sync,
            node,
            rates,
            kernel_local,
            workers,
            table_sizes,
            steering: steering.map(Mutex::new),
            interfaces,
            serial: Mutex::new(()),
            io: std::sync::OnceLock::new(),
        }
    }

    /// The sync daemons wired to the workers.
    pub fn with_sync(mut self, sync: Arc<crate::sync::SyncDaemons>) -> Self {
        self.sync = sync;
        self
    }

    /// The I/O backend's hooks (XDP steering maps, status); set once at start.
    pub fn set_io(&self, hooks: Arc<dyn IoHooks>) {
        let _ = self.io.set(hooks);
    }

    /// Runs `f` between two commands, never during one (the XDP maps' tick: a table a command
    /// published and has not yet told the maps about would look like a change nobody told).
    pub fn between_commands<R>(&self, f: impl FnOnce() -> R) -> R {
        let _g = self.serial.lock().unwrap_or_else(|e| e.into_inner());
        f()
    }

    /// `POST /v1/command`.
    pub fn command(&self, cmd: &Command) -> Result<Reply, ApiError> {
        if let Command::Batch(cmds) = cmd {
            return self.batch(cmds);
        }
        let _g = self.serial.lock().unwrap_or_else(|e| e.into_inner());
        // The one service a lone command changes: isolation and steering look at it only.
        let touched = touched_key(cmd);
        // The isolation's elements of that service now: `-e` changes a real server in place.
        let before =
            crate::isolate::before(touched.and_then(|k| self.node.ipvs.services().get(&k).cloned()).as_deref());
        let lone = self.steer_lone_ahead(cmd);
        if let Some(io) = self.io.get()
            && let Some(k) = touched.filter(|_| matches!(cmd, Command::AddService(_) | Command::EditService(_)))
        {
            io.services_ahead(&[k]);
        }
        if lone.is_none()
            && let Command::AddService(spec) | Command::EditService(spec) = cmd
            && let Ok(c) = service_config(spec)
        {
            self.steer_ahead(&SteerSet::of_services([&c]));
        }
        let r = self.apply(cmd);
        match &r {
            Ok(_) => tracing::info!("command {cmd:?}: done"),
            Err(e) => tracing::warn!("command {cmd:?}: {:?}: {}", e.kind, e.message),
        }
        let table = self.node.ipvs.services_full();
        let rules = self.node.ipvs.fwmark_rules();
        match touched {
            Some(k) => crate::isolate::refresh_service(&table, &rules, before, table.get(&k).map(|s| &**s)),
            None => crate::isolate::refresh(&table, &rules),
        }
        // Also after a failure: drops what was steered ahead. The XDP program steers NAT
        // replies by real server too: its maps follow `-a`/`-e`/`-d` at once (else replies
        // from a real server added by `-a` went to the kernel until the next refresh).
        if let Some(io) = self.io.get() {
            match touched {
                Some(k) => io.services_changed(&[k]),
                None if matches!(cmd, Command::Clear) => io.services_resync(),
                None => {}
            }
        }
        match lone {
            Some(vip) => self.steer_lone_after(vip),
            // Real servers change no VIP nor mask for the fanout steering.
            None if matches!(cmd, Command::AddDest(..) | Command::EditDest(..) | Command::DeleteDest(..)) => {}
            None => self.steer_full(),
        }
        r
    }

    /// A lone `-A`/`-E`/`-D` with eBPF steering: its VIP (if IPv4) and the mask it may need
    /// go into the map before the table changes, in O(1) whatever the table's size.
    /// `Some(vip)` when done so ([`Admin::steer_lone_after`] follows), `None` for the full
    /// recomputation (classic BPF, other commands).
    fn steer_lone_ahead(&self, cmd: &Command) -> Option<Option<Ipv4Addr>> {
        let steering = self.steering.as_ref()?;
        let (key, cfg) = match cmd {
            Command::AddService(spec) | Command::EditService(spec) => {
                let c = service_config(spec).ok()?;
                (c.key, Some(c))
            }
            Command::DeleteService(k) => (service_key(k).ok()?, None),
            _ => return None,
        };
        let vip = match key {
            ServiceKey::Addr { addr: IpAddr::V4(a), .. } => Some(a),
            _ => None,
        };
        let table = self.node.ipvs.services_full();
        let mut mask = table.client_mask();
        if let Some(c) = &cfg
            && c.persistent.is_some()
            && !c.key.is_ipv6()
        {
            mask &= c.netmask;
        }
        let prefixes = SteerSet::default().with_rules(&self.node.ipvs.fwmark_rules()).prefixes;
        let mut s = steering.lock().unwrap_or_else(|e| e.into_inner());
        let r =
            s.set_vip(vip, cfg.is_some() || vip.is_some_and(|v| table.is_configured_vip(&v.into())), mask, &prefixes)?;
        if let Err(e) = r {
            tracing::error!("steering program: {e}");
        }
        Some(vip)
    }

    /// After a lone command steered ahead: the VIP stays in the map while a service uses it,
    /// the mask is the table's. O(1).
    fn steer_lone_after(&self, vip: Option<Ipv4Addr>) {
        let table = self.node.ipvs.services_full();
        let rules = self.node.ipvs.fwmark_rules();
        if let Some(s) = &self.steering {
            let present = vip.is_some_and(|v| table.is_configured_vip(&v.into()));
            let prefixes = SteerSet::default().with_rules(&rules).prefixes;
            let mut s = s.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(Err(e)) = s.set_vip(vip, present, table.client_mask(), &prefixes) {
                tracing::error!("steering program: {e}");
            }
        }
    }

    /// `Command::Batch` (`rvsadm -R`): the commands in order, each succeeding or failing on
    /// its own, with one publish of the table (`Ipvs::batch`) and one steering update for
    /// all of them, so a restore of n services costs O(n), not O(n²). Refused whole (nothing
    /// changed) when too long or nested.
    fn batch(&self, cmds: &[Command]) -> Result<Reply, ApiError> {
        if cmds.len() > control::api::MAX_BATCH {
            return Err(ApiError::new(
                ErrorKind::Invalid,
                format!("a batch holds at most {} commands, not {}", control::api::MAX_BATCH, cmds.len()),
            ));
        }
        if cmds.iter().any(|c| matches!(c, Command::Batch(_))) {
            return Err(ApiError::new(ErrorKind::Invalid, "a batch cannot hold a batch"));
        }
        let _g = self.serial.lock().unwrap_or_else(|e| e.into_inner());
        let ahead: Vec<_> = cmds
            .iter()
            .filter_map(|c| match c {
                Command::AddService(spec) | Command::EditService(spec) => service_config(spec).ok(),
                _ => None,
            })
            .collect();
        if !ahead.is_empty() {
            self.steer_ahead(&SteerSet::of_services(&ahead));
            if let Some(io) = self.io.get() {
                io.services_ahead(&ahead.iter().map(|c| c.key).collect::<Vec<_>>());
            }
        }
        // The services the batch changes, as they were: the isolation's sets change by
        // their elements only (O(batch), not O(table)), unless the batch clears the table.
        let clears = cmds.iter().any(|c| matches!(c, Command::Clear));
        let mut keys: Vec<ServiceKey> = cmds.iter().filter_map(touched_key).collect();
        let mut seen = std::collections::HashSet::new();
        keys.retain(|k| seen.insert(*k));
        let before: Vec<crate::isolate::Before> = {
            let t = self.node.ipvs.services();
            keys.iter().map(|k| crate::isolate::before(t.get(k).map(|s| &**s))).collect()
        };
        let results: Vec<Option<ApiError>> =
            self.node.ipvs.batch(|| cmds.iter().map(|c| self.apply(c).err()).collect());
        let table = self.node.ipvs.services_full();
        let rules = self.node.ipvs.fwmark_rules();
        if clears {
            crate::isolate::refresh(&table, &rules);
        } else {
            let changes: Vec<_> = keys.iter().zip(before).map(|(k, b)| (b, table.get(k).map(|s| &**s))).collect();
            crate::isolate::refresh_services(&table, &rules, &changes);
        }
        let failed = results.iter().filter(|r| r.is_some()).count();
        for (c, e) in cmds.iter().zip(&results).filter_map(|(c, r)| Some((c, r.as_ref()?))).take(10) {
            tracing::warn!("command {c:?}: {:?}: {}", e.kind, e.message);
        }
        tracing::info!("batch of {} commands: {} done, {failed} failed", cmds.len(), cmds.len() - failed);
        // The XDP maps: the entries of the services the batch touched (O(batch)), or the
        // whole table after a `-C` in it.
        if let Some(io) = self.io.get() {
            if clears { io.services_resync() } else { io.services_changed(&keys) }
        }
        // Only service commands change VIPs or persistence masks (real servers do not).
        if cmds.iter().any(|c| {
            matches!(c, Command::AddService(_) | Command::EditService(_) | Command::DeleteService(_) | Command::Clear)
        }) {
            self.steer_full();
        }
        Ok(Reply::Batch(results))
    }

    /// Installs a configuration's table in one step (`Ipvs::replace_table`: packets see the
    /// old table or the new one; kept services and dests keep their connections and
    /// counters), then all its global timeouts (`Ipvs::set_all_timeouts`: states the file
    /// does not name are the defaults). Serialised with the commands. On error nothing
    /// changed.
    pub fn install(&self, plan: &crate::cfgload::Plan) -> Result<(), ApiError> {
        let _g = self.serial.lock().unwrap_or_else(|e| e.into_inner());
        self.check_vips(plan)?;
        self.steer_ahead(&SteerSet::of_services(plan.table.iter().map(|(c, _)| c)).with_rules(&plan.fwmark_rules));
        if let Some(io) = self.io.get() {
            io.services_ahead(&plan.table.iter().map(|(c, _)| c.key).collect::<Vec<_>>());
        }
        let r = self.node.ipvs.replace_table(plan.table.clone()).map_err(admin_error);
        if r.is_ok() {
            self.node.ipvs.set_all_timeouts(plan.timeouts);
            // The classifier's rules (`[[fwmark]]`): what gives packets the marks `-f`
            // services select.
            self.node.set_fwmark_rules(plan.fwmark_rules.clone());
        }
        if let Some(io) = self.io.get() {
            io.services_resync();
        }
        self.update_steering();
        r
    }

    /// Refuses a plan whose VIP is one of the director kernel's addresses (as `-A` does).
    pub fn check_vips(&self, plan: &crate::cfgload::Plan) -> Result<(), ApiError> {
        for (svc, _) in &plan.table {
            if let ServiceKey::Addr { addr, .. } = svc.key
                && (self.kernel_local)(&addr)
            {
                return Err(ApiError::new(
                    ErrorKind::Invalid,
                    format!(
                        "VIP {addr} is configured on the director's kernel; remove it (rvs answers ARP for VIPs itself)"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// `POST /v1/drain` (rvs): the dest leaves scheduling now; `drain_tick` (every second,
    /// main.rs) removes it once its connections are gone or at the deadline.
    pub fn drain(&self, req: &DrainRequest) -> Result<Reply, ApiError> {
        let _g = self.serial.lock().unwrap_or_else(|e| e.into_inner());
        let key = service_key(&req.service)?;
        let secs = req.timeout_secs.unwrap_or(DEFAULT_DRAIN_SECS);
        let deadline = std::time::Instant::now() + Duration::from_secs(u64::from(secs));
        let r = self.node.ipvs.drain_dest(&key, &req.addr, req.port, deadline).map_err(admin_error);
        // The dest left the service's list: the XDP maps follow at once, as after `-d`.
        if let Some(io) = self.io.get() {
            io.services_changed(&[key]);
        }
        match &r {
            Ok(()) => tracing::info!("drain {:?} {}:{} (deadline {secs} s): started", req.service, req.addr, req.port),
            Err(e) => tracing::warn!("drain {:?} {}:{}: {}", req.service, req.addr, req.port, e.message),
        }
        r.map(|()| Reply::Done)
    }

    /// `GET /v1/draining` (rvs).
    pub fn draining(&self) -> Vec<DrainingView> {
        let now = std::time::Instant::now();
        self.node
            .ipvs
            .draining()
            .iter()
            .map(|d| DrainingView {
                service: api_key(&d.service),
                addr: d.dest.addr,
                port: d.dest.port,
                active: d.dest.activeconns(),
                inactive: d.dest.inactconns(),
                persistent: d.dest.persistconns(),
                remaining_secs: d.deadline.saturating_duration_since(now).as_secs(),
            })
            .collect()
    }

    /// Every connection entry matching `f`, from every worker, page by page (each worker
    /// filters its own table and copies at most [`crate::listing::PAGE`] entries as compact
    /// records between two batches; the views are built here). The API streams the same pages
    /// instead (server.rs); this whole list is for in-process users (procfs.rs).
    pub fn connections_filtered(&self, f: &ConnFilter) -> Result<Listing, ApiError> {
        let mut out = Listing::default();
        for i in 0..self.workers.len() {
            let mut from = 0;
            loop {
                let page = self.connections_page(i, f, from, crate::listing::PAGE)?;
                out.conns.extend(crate::listing::views(&page));
                if !page.truncated {
                    break;
                }
                from = page.next;
            }
        }
        Ok(out)
    }

    /// Every worker's whole table, as compact records (hot restart, handover.rs): one list
    /// per worker, in worker order.
    pub fn export_conns(&self) -> Result<Vec<Vec<crate::listing::ConnRecord>>, String> {
        let mut answers = Vec::with_capacity(self.workers.len());
        for (i, w) in self.workers.iter().enumerate() {
            let (tx, rx) = mpsc::channel();
            let req = ConnRequest { filter: ConnFilter::default(), from: 0, limit: usize::MAX, reply: tx };
            w.send(req).map_err(|_| format!("worker {i} is not running"))?;
            answers.push((i, rx));
        }
        let mut out = Vec::with_capacity(answers.len());
        for (i, rx) in answers {
            let part = rx.recv_timeout(Duration::from_secs(10)).map_err(|_| format!("worker {i} did not answer"))?;
            out.push(part.records);
        }
        Ok(out)
    }

    /// Number of packet workers (each lists its own table).
    pub fn worker_count(&self) -> usize {
        self.workers.len()
    }

    /// One page of worker `i`'s listing: the matches of `f` from entry id `from` on, at most
    /// `limit` (`truncated`: there are more, from `next`).
    pub fn connections_page(
        &self,
        i: usize,
        f: &ConnFilter,
        from: ipvs::conn::ConnId,
        limit: usize,
    ) -> Result<crate::listing::ConnList, ApiError> {
        let (tx, rx) = mpsc::channel();
        let gone = || ApiError::new(ErrorKind::Internal, format!("worker {i} is not running"));
        let w = self.workers.get(i).ok_or_else(gone)?;
        w.send(ConnRequest { filter: f.clone(), from, limit, reply: tx }).map_err(|_| gone())?;
        rx.recv_timeout(Duration::from_secs(5))
            .map_err(|_| ApiError::new(ErrorKind::Internal, format!("worker {i} did not answer")))
    }

    /// The systemd watchdog's probe: every packet worker answers an empty listing request
    /// (between two batches) within `within`, so its loop turns.
    pub fn workers_alive(&self, within: Duration) -> Result<(), String> {
        let request = |reply| ConnRequest { filter: ConnFilter::default(), from: 0, limit: 0, reply };
        crate::notify::workers_answer(&self.workers, request, within)
    }

    /// What the steering program needs now: the published table and classifier rules.
    fn steer_set(&self) -> SteerSet {
        SteerSet::of(&self.node.ipvs.services_full(), &self.node.ipvs.fwmark_rules())
    }

    /// Before a table is published: attaches a program covering both the running table and
    /// `next` (its VIPs too, the wider mask). A SYN to a new VIP arriving between the publish
    /// and a later attach would be hashed by VIP while its reply is hashed by client; a VIP
    /// in the program but not yet in the table is harmless (hashed by client, as it will be).
    /// Removals are the other way round: publish, then [`Admin::update_steering`].
    fn steer_ahead(&self, next: &SteerSet) {
        if let Some(s) = &self.steering {
            let set = self.steer_set().union(next);
            let mut s = s.lock().unwrap_or_else(|e| e.into_inner());
            if let Err(e) = s.update(&set) {
                tracing::error!("steering program: {e}");
            }
        }
    }

    /// Keeps the fanout programs in step with the VIP set and the widest persistence
    /// netmask, before the command returns: a client may send the moment its `-A` succeeded.
    fn update_steering(&self) {
        crate::isolate::refresh(&self.node.ipvs.services_full(), &self.node.ipvs.fwmark_rules());
        self.steer_full();
    }

    /// The fanout programs recomputed from the whole table (O(n)).
    fn steer_full(&self) {
        if let Some(s) = &self.steering {
            let set = self.steer_set();
            let mut s = s.lock().unwrap_or_else(|e| e.into_inner());
            if let Err(e) = s.update(&set) {
                tracing::error!("steering program: {e}");
            }
        }
    }

    fn apply(&self, cmd: &Command) -> Result<Reply, ApiError> {
        let ipvs = &self.node.ipvs;
        match cmd {
            Command::AddService(spec) => {
                let cfg = service_config(spec)?;
                if let ServiceKey::Addr { addr, .. } = cfg.key
                    && (self.kernel_local)(&addr)
                {
                    return Err(ApiError::new(
                        ErrorKind::Invalid,
                        format!(
                            "VIP {addr} is configured on the director's kernel; remove it (rvs answers ARP for VIPs itself)"
                        ),
                    ));
                }
                ipvs.add_service(cfg).map_err(admin_error)?;
            }
            Command::EditService(spec) => ipvs.edit_service(service_config(spec)?).map_err(admin_error)?,
            Command::DeleteService(k) => ipvs.delete_service(&service_key(k)?).map_err(admin_error)?,
            Command::Clear => ipvs.clear(),
            Command::AddDest(k, d) => ipvs.add_dest(&service_key(k)?, dest_config(d)?).map_err(admin_error)?,
            Command::EditDest(k, d) => ipvs.edit_dest(&service_key(k)?, dest_config(d)?).map_err(admin_error)?,
            Command::DeleteDest(k, addr, port) => {
                ipvs.delete_dest(&service_key(k)?, addr, *port).map_err(admin_error)?
            }
            Command::Zero(k) => {
                let key = k.as_ref().map(service_key).transpose()?;
                ipvs.zero(key.as_ref()).map_err(admin_error)?;
                let table = ipvs.services_full();
                for s in table.iter().filter(|s| key.is_none_or(|k| s.config.key == k)) {
                    self.rates.reset(&s.stats);
                    s.dests.iter().for_each(|d| self.rates.reset(&d.stats));
                }
                if key.is_none() {
                    self.rates.reset(&ipvs.total);
                }
            }
            Command::SetTimeouts(t) => ipvs.set_timeouts(t.tcp, t.tcpfin, t.udp),
            Command::StartDaemon(d) => self.sync.start(d)?,
            Command::StopDaemon { role, .. } => self.sync.stop(*role)?,
            Command::Batch(_) => return Err(ApiError::new(ErrorKind::Invalid, "a batch cannot hold a batch")),
        }
        Ok(Reply::Done)
    }

    /// `GET /v1/snapshot`: services in creation order, dests newest first.
    pub fn snapshot(&self) -> Snapshot {
        let ipvs = &self.node.ipvs;
        let table = ipvs.services_full();
        let rate_of = self.rates.reader();
        let services = table
            .order()
            .iter()
            .map(|s| ServiceView {
                spec: service_spec(&s.config),
                stats: counters(s.stats.read()),
                rates: rates(rate_of(&s.stats)),
                dests: s
                    .dests
                    .iter()
                    .map(|d| DestView {
                        spec: dest_spec(&d.config()),
                        active: d.activeconns(),
                        inactive: d.inactconns(),
                        persistent: d.persistconns(),
                        stats: counters(d.stats.read()),
                        rates: rates(rate_of(&d.stats)),
                    })
                    .collect(),
            })
            .collect();
        let (tcp, tcpfin, udp) = ipvs.timeouts().triple();
        let tab = ipvs.max_conns.saturating_mul(self.workers.len().max(1));
        Snapshot {
            version: VERSION.into(),
            conn_tab_size: tab.min(u32::MAX as usize) as u32,
            services,
            timeouts: Timeouts { tcp, tcpfin, udp },
            daemons: self.sync.views(),
        }
    }

    /// `GET /v1/connections` without a filter.
    #[cfg(test)]
    pub fn connections(&self) -> Result<Listing, ApiError> {
        self.connections_filtered(&ConnFilter::default())
    }

    /// `GET /v1/stats`.
    pub fn stats(&self) -> NodeStats {
        let c = self.node.counters.read();
        let conns: Vec<usize> = self.table_sizes.iter().map(|n| n.load(Ordering::Relaxed)).collect();
        let io = self.io.get().map(|h| h.report()).unwrap_or_default();
        let wq = self.io.get().map(|h| h.worker_queues()).unwrap_or_default();
        let per_worker = (0..self.workers.len())
            .map(|w| {
                let c = self.node.counters.read_worker(w);
                WorkerStats {
                    id: w,
                    queues: wq.get(w).cloned().unwrap_or_default(),
                    rx: c.rx,
                    tx: c.tx,
                    handed_out: c.handed_out,
                    handed_in: c.handed_in,
                    polls: c.polls,
                    batches: c.batches,
                    tx_kicks: c.tx_kicks,
                    drops: c.drops,
                    conns: conns.get(w).copied().unwrap_or(0),
                }
            })
            .collect();
        NodeStats {
            rx: c.rx,
            tx: c.tx,
            local: c.local,
            arp_replies: c.arp_replies,
            shortcut: c.shortcut,
            neigh_held: c.neigh_held,
            drops: c.drops.iter().map(|(r, n)| (r.name().to_string(), *n)).collect(),
            workers: self.workers.len(),
            conns_total: conns.iter().sum(),
            conns,
            max_conns_per_worker: self.node.ipvs.max_conns,
            interfaces: self.interfaces.clone(),
            sync: self.sync.stats.list().into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
            io: io.0,
            xdp: io.1,
            per_worker,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use control::api::{self, DestSpec, ServiceSpec};

    const VIP: &str = "10.0.0.100";

    fn admin_with(kernel_addr: &'static str, workers: Vec<mpsc::Sender<ConnRequest>>) -> Admin {
        let ipvs = Arc::new(ipvs::Ipvs::new(1000));
        let node = Node::new(ipvs, node::NetState::default());
        let sizes: Arc<[AtomicUsize]> = (0..workers.len().max(1)).map(|_| AtomicUsize::new(0)).collect();
        Admin::new(
            node,
            Arc::new(RateTable::default()),
            Box::new(move |a: &IpAddr| a.to_string() == kernel_addr),
            workers,
            sizes,
            None,
            vec!["eth0".into()],
        )
    }

    fn admin() -> Admin {
        admin_with("192.0.2.1", Vec::new())
    }

    fn tcp(addr: &str, port: u16) -> api::ServiceKey {
        api::ServiceKey::Tcp { addr: addr.parse().unwrap(), port }
    }

    fn spec(key: api::ServiceKey, sched: &str) -> ServiceSpec {
        ServiceSpec {
            key,
            scheduler: sched.into(),
            sched_flags: Default::default(),
            persistent: None,
            netmask: u32::MAX,
            ops: false,
            pe: None,
        }
    }

    fn dest(addr: &str, port: u16, weight: u32) -> DestSpec {
        DestSpec {
            addr: addr.parse().unwrap(),
            port,
            method: api::ForwardMethod::Masq,
            weight,
            u_threshold: 0,
            l_threshold: 0,
            tun_type: Default::default(),
            tun_port: 0,
            tun_csum: Default::default(),
        }
    }

    #[test]
    fn commands_reach_the_engine_and_come_back_in_the_snapshot() {
        let a = admin();
        let k = tcp(VIP, 80);
        let k2 = api::ServiceKey::Udp { addr: VIP.parse().unwrap(), port: 53 };
        a.command(&Command::AddService(spec(k, "wrr"))).unwrap();
        a.command(&Command::AddService(spec(k2, "rr"))).unwrap();
        a.command(&Command::AddDest(k, dest("192.168.1.11", 8080, 1))).unwrap();
        a.command(&Command::AddDest(k, dest("192.168.1.12", 8080, 3))).unwrap();
        // The engine has it.
        let ek = ipvs::ServiceKey::tcp(VIP.parse().unwrap(), 80);
        let t = a.node.ipvs.services_full();
        assert_eq!(t.get(&ek).unwrap().dests.len(), 2);
        assert!(t.is_vip(&VIP.parse().unwrap()));

        let s = a.snapshot();
        assert_eq!(s.version, "1.2.1");
        assert_eq!(s.services.len(), 2);
        assert_eq!(s.services[0].spec, spec(k, "wrr"), "creation order");
        assert_eq!(s.services[1].spec, spec(k2, "rr"));
        let addrs: Vec<String> = s.services[0].dests.iter().map(|d| d.spec.addr.to_string()).collect();
        assert_eq!(addrs, ["192.168.1.12", "192.168.1.11"], "newest first");
        assert_eq!(s.services[0].dests[0].spec, dest("192.168.1.12", 8080, 3));
        assert_eq!(s.timeouts, Timeouts { tcp: 900, tcpfin: 60, udp: 300 });

        // Edit replaces every field; delete and clear.
        a.command(&Command::EditDest(k, dest("192.168.1.12", 8080, 0))).unwrap();
        assert_eq!(a.snapshot().services[0].dests[0].spec.weight, 0);
        a.command(&Command::EditService(spec(k, "lc"))).unwrap();
        assert_eq!(a.snapshot().services[0].spec.scheduler, "lc");
        a.command(&Command::DeleteDest(k, "192.168.1.11".parse().unwrap(), 8080)).unwrap();
        assert_eq!(a.snapshot().services[0].dests.len(), 1);
        a.command(&Command::SetTimeouts(Timeouts { tcp: 100, tcpfin: 0, udp: 7 })).unwrap();
        assert_eq!(a.snapshot().timeouts, Timeouts { tcp: 100, tcpfin: 60, udp: 7 });
        a.command(&Command::DeleteService(k2)).unwrap();
        assert_eq!(a.snapshot().services.len(), 1);
        a.command(&Command::Clear).unwrap();
        assert!(a.snapshot().services.is_empty());
    }

    #[test]
    fn errors_have_the_kinds_rvsadm_expects() {
        let a = admin();
        let k = tcp(VIP, 80);
        let kind = |c: Command| a.command(&c).unwrap_err().kind;
        assert_eq!(kind(Command::AddService(spec(k, "nosuch"))), ErrorKind::SchedulerNotFound);
        a.command(&Command::AddService(spec(k, "rr"))).unwrap();
        assert_eq!(kind(Command::AddService(spec(k, "rr"))), ErrorKind::ServiceExists);
        assert_eq!(kind(Command::EditService(spec(tcp(VIP, 81), "rr"))), ErrorKind::NoSuchService);
        assert_eq!(kind(Command::DeleteService(tcp(VIP, 81))), ErrorKind::NoSuchService);
        assert_eq!(kind(Command::AddDest(tcp(VIP, 81), dest("192.168.1.11", 80, 1))), ErrorKind::ServiceNotDefined);
        a.command(&Command::AddDest(k, dest("192.168.1.11", 80, 1))).unwrap();
        assert_eq!(kind(Command::AddDest(k, dest("192.168.1.11", 80, 1))), ErrorKind::DestExists);
        assert_eq!(kind(Command::EditDest(k, dest("192.168.1.99", 80, 1))), ErrorKind::NoSuchDest);
        assert_eq!(kind(Command::AddDest(k, dest("255.255.255.255", 80, 1))), ErrorKind::Invalid);
        assert_eq!(kind(Command::AddDest(k, dest("192.168.1.13", 80, u32::MAX))), ErrorKind::Range);
        assert_eq!(kind(Command::Zero(Some(tcp(VIP, 81)))), ErrorKind::NoSuchService);
        let sync = api::DaemonConfig {
            role: api::SyncRole::Master,
            mcast_ifn: "rvs-no-such-if0".into(),
            syncid: 0,
            sync_maxlen: 0,
            mcast_group: None,
            mcast_port: 0,
            mcast_ttl: 0,
        };
        let e = a.command(&Command::StartDaemon(sync)).unwrap_err();
        assert_eq!((e.kind, e.message.as_str()), (ErrorKind::NotFound, "No such device (rvs-no-such-if0)"));
        assert_eq!(kind(Command::StopDaemon { role: api::SyncRole::Backup, syncid: 0 }), ErrorKind::NoDaemon);
        assert!(a.snapshot().daemons.is_empty());
        // Nothing changed by the failures.
        assert_eq!(a.snapshot().services.len(), 1);
        assert_eq!(a.snapshot().services[0].dests.len(), 1);
    }

    #[test]
    fn a_batch_applies_each_command_on_its_own_and_publishes_once() {
        let a = admin();
        let k = tcp(VIP, 80);
        let before = a.node.ipvs.services_full();
        let r = a
            .command(&Command::Batch(vec![
                Command::AddService(spec(k, "rr")),
                Command::AddDest(k, dest("192.168.1.11", 80, 1)),
                Command::AddService(spec(k, "rr")),
                Command::AddService(spec(tcp("198.51.100.7", 80), "nosuch")),
                Command::AddDest(k, dest("192.168.1.12", 80, 2)),
            ]))
            .unwrap();
        let Reply::Batch(rs) = r else { panic!("{r:?}") };
        let kinds: Vec<_> = rs.iter().map(|r| r.as_ref().map(|e| e.kind)).collect();
        assert_eq!(kinds, [None, None, Some(ErrorKind::ServiceExists), Some(ErrorKind::SchedulerNotFound), None]);
        assert!(!Arc::ptr_eq(&before, &a.node.ipvs.services_full()));
        let s = a.snapshot();
        assert_eq!(s.services.len(), 1);
        assert_eq!(s.services[0].dests.len(), 2);
        // Nested or too long: refused whole, nothing changed.
        let nested = Command::Batch(vec![Command::Clear, Command::Batch(vec![])]);
        assert_eq!(a.command(&nested).unwrap_err().kind, ErrorKind::Invalid);
        let long = Command::Batch(vec![Command::Clear; control::api::MAX_BATCH + 1]);
        assert_eq!(a.command(&long).unwrap_err().kind, ErrorKind::Invalid);
        assert_eq!(a.snapshot().services.len(), 1);
    }

    #[test]
    fn a_vip_owned_by_the_kernel_is_refused() {
        let a = admin_with("198.51.100.1", Vec::new());
        let e = a.command(&Command::AddService(spec(tcp("198.51.100.1", 80), "rr"))).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Invalid);
        assert_eq!(
            e.message,
            "VIP 198.51.100.1 is configured on the director's kernel; remove it (rvs answers ARP for VIPs itself)"
        );
        assert!(a.snapshot().services.is_empty());
        // Fwmark services have no VIP to check.
        a.command(&Command::AddService(spec(api::ServiceKey::Fwmark { mark: 1, ipv6: false }, "rr"))).unwrap();
    }

    #[test]
    fn counters_and_zero_show_in_the_snapshot() {
        let a = admin();
        let k = tcp(VIP, 80);
        a.command(&Command::AddService(spec(k, "rr"))).unwrap();
        a.command(&Command::AddDest(k, dest("192.168.1.11", 80, 1))).unwrap();
        let t = a.node.ipvs.services_full();
        let svc = &t.order()[0];
        svc.stats.count_conn(0);
        svc.stats.count_in(1, 60);
        svc.dests[0].stats.count_out(0, 40);
        let s = a.snapshot();
        assert_eq!(s.services[0].stats, api::Counters { conns: 1, inpkts: 1, inbytes: 60, ..Default::default() });
        assert_eq!(s.services[0].dests[0].stats.outbytes, 40);
        a.command(&Command::Zero(None)).unwrap();
        let s = a.snapshot();
        assert_eq!(s.services[0].stats, api::Counters::default());
        assert_eq!(s.services[0].dests[0].stats, api::Counters::default());
    }

    #[test]
    fn connections_are_collected_from_every_worker() {
        let mut txs = Vec::new();
        let mut handles = Vec::new();
        for w in 0..2u16 {
            let (tx, rx) = mpsc::channel::<ConnRequest>();
            txs.push(tx);
            handles.push(std::thread::spawn(move || {
                // Worker 1 has two pages: the second is asked for past the first.
                while let Ok(req) = rx.recv() {
                    let r = crate::listing::ConnRecord {
                        caddr: "198.51.100.7".parse().unwrap(),
                        vaddr: VIP.parse().unwrap(),
                        daddr: "192.168.1.11".parse().unwrap(),
                        cport: 1000 + w,
                        vport: 80,
                        dport: 80,
                        protocol: 6,
                        state: 1,
                        flags: 0,
                        expires_secs: 900,
                        fwmark: 0,
                    };
                    assert_eq!(req.limit, crate::listing::PAGE);
                    assert_eq!(req.filter.state.as_deref(), Some("ESTABLISHED"), "the filter reaches the worker");
                    let more = w == 1 && req.from == 0;
                    let r = crate::listing::ConnRecord { cport: r.cport + 10 * req.from as u16, ..r };
                    let list =
                        crate::listing::ConnList { records: vec![r], truncated: more, next: 1, pe_data: Vec::new() };
                    let _ = req.reply.send(list);
                    if !more {
                        break;
                    }
                }
            }));
        }
        let a = admin_with("192.0.2.1", txs);
        let f = ConnFilter { state: Some("ESTABLISHED".into()), ..Default::default() };
        let l = a.connections_filtered(&f).unwrap();
        let ports: Vec<u16> = l.conns.iter().map(|c| c.cport).collect();
        assert_eq!(ports, [1000, 1001, 1011], "worker 1's second page too");
        assert_eq!(l.conns[0].state, "ESTABLISHED");
        for h in handles {
            h.join().unwrap();
        }
        // Workers gone: an error, not a hang.
        assert_eq!(a.connections().unwrap_err().kind, ErrorKind::Internal);
    }

    /// Records, at every attach, whether the program covers `VIP` and whether the published
    /// table already has it.
    struct Recorder {
        ipvs: Arc<ipvs::Ipvs>,
        log: Arc<Mutex<Vec<(bool, bool)>>>,
    }

    impl node::io::fanout::Target for Recorder {
        fn attach(&self, set: &SteerSet, _prog: &[libc::sock_filter]) -> std::io::Result<()> {
            let vip: std::net::Ipv4Addr = VIP.parse().unwrap();
            let published = self.ipvs.services_full().is_vip(&IpAddr::V4(vip));
            self.log.lock().unwrap().push((set.vips.contains(&vip), published));
            Ok(())
        }
    }

    #[test]
    fn steering_covers_a_new_vip_before_its_table_is_published_and_drops_it_after() {
        let ipvs = Arc::new(ipvs::Ipvs::new(1000));
        let node = Node::new(ipvs.clone(), node::NetState::default());
        let log = Arc::new(Mutex::new(Vec::new()));
        let rec = Recorder { ipvs, log: log.clone() };
        let sizes: Arc<[AtomicUsize]> = vec![AtomicUsize::new(0)].into();
        let steering = Steering::new(vec![Box::new(rec)], 2);
        let a = Admin::new(
            node,
            Arc::new(RateTable::default()),
            Box::new(|_| false),
            vec![],
            sizes,
            Some(steering),
            vec![],
        );
        let k = tcp(VIP, 80);
        a.command(&Command::AddService(spec(k, "rr"))).unwrap();
        // The first program with the VIP went in while the table did not have it yet.
        let first = log.lock().unwrap().iter().position(|(covers, _)| *covers).expect("VIP attached");
        assert_eq!(log.lock().unwrap()[first], (true, false), "attached before publishing");
        log.lock().unwrap().clear();
        a.command(&Command::DeleteService(k)).unwrap();
        assert_eq!(*log.lock().unwrap(), [(false, false)], "detached after the table lost it");

        // The same for a configuration install.
        log.lock().unwrap().clear();
        let mut sc = ipvs::ServiceConfig::new(ipvs::ServiceKey::tcp(VIP.parse().unwrap(), 80), "rr");
        sc.persistent = None;
        let plan =
            crate::cfgload::Plan { table: vec![(sc, vec![])], timeouts: Default::default(), fwmark_rules: vec![] };
        a.install(&plan).unwrap();
        assert_eq!(log.lock().unwrap().first(), Some(&(true, false)), "install: attached before publishing");
        log.lock().unwrap().clear();
        a.install(&crate::cfgload::Plan { table: vec![], timeouts: Default::default(), fwmark_rules: vec![] }).unwrap();
        assert_eq!(*log.lock().unwrap(), [(false, false)]);

        // A refused command leaves the program as it was.
        log.lock().unwrap().clear();
        a.command(&Command::AddService(spec(tcp(VIP, 81), "nosuch"))).unwrap_err();
        assert!(log.lock().unwrap().last().is_none_or(|(covers, _)| !covers));
    }

    /// Records every set attached.
    struct SetLog(Arc<Mutex<Vec<SteerSet>>>);

    impl node::io::fanout::Target for SetLog {
        fn attach(&self, set: &SteerSet, _prog: &[libc::sock_filter]) -> std::io::Result<()> {
            self.0.lock().unwrap().push(set.clone());
            Ok(())
        }
    }

    #[test]
    fn a_configuration_installs_its_fwmark_rules_and_steers_their_prefixes() {
        let node = Node::new(Arc::new(ipvs::Ipvs::new(1000)), node::NetState::default());
        let log = Arc::new(Mutex::new(Vec::new()));
        let sizes: Arc<[AtomicUsize]> = vec![AtomicUsize::new(0)].into();
        let steering = Steering::new(vec![Box::new(SetLog(log.clone()))], 2);
        let a = Admin::new(
            node,
            Arc::new(RateTable::default()),
            Box::new(|_| false),
            vec![],
            sizes,
            Some(steering),
            vec![],
        );
        let text = "[[fwmark]]\nmark = 5\ndaddr = \"10.7.0.0/16\"\nprotocol = \"tcp\"\nports = \"80-90\"\n\
                    [[services]]\nfwmark = 5\nscheduler = \"rr\"\n\
                    [[services.real_servers]]\naddress = \"192.168.1.11\"\nmethod = \"nat\"\n";
        let cfg = rvs_config::native::parse(text, "rvs.toml").unwrap();
        let plan = crate::cfgload::plan(&cfg, &Default::default()).unwrap();
        a.install(&plan).unwrap();
        let want = ipvs::fwmark::FwmarkRule {
            daddr: "10.7.0.0".parse().unwrap(),
            dprefix: 16,
            saddr: None,
            protocol: 6,
            dports: (80, 90),
            mark: 5,
        };
        assert_eq!(*a.node.ipvs.fwmark_rules(), [want], "the node classifies with the file's rules");
        let prefix = (std::net::Ipv4Addr::new(10, 7, 0, 0), 16);
        assert_eq!(log.lock().unwrap().last().map(|s| s.prefixes.clone()), Some(vec![prefix]));
        // A configuration without rules removes them, from the node and from the program.
        let cfg = rvs_config::native::parse("[[services]]\nfwmark = 5\n", "rvs.toml").unwrap();
        a.install(&crate::cfgload::plan(&cfg, &Default::default()).unwrap()).unwrap();
        assert!(a.node.ipvs.fwmark_rules().is_empty());
        assert_eq!(log.lock().unwrap().last().map(|s| s.prefixes.is_empty()), Some(true));
    }

    #[test]
    fn node_stats_list_every_drop_reason() {
        let a = admin();
        a.node.counters.drop(0, netfilter::DropReason::Truncated);
        a.node.counters.rx(0);
        let s = a.stats();
        assert_eq!(s.rx, 1);
        assert_eq!(s.drops.len(), netfilter::DropReason::ALL.len());
        assert_eq!(s.drops["truncated"], 1);
        assert_eq!(s.drops["no_route"], 0);
        assert_eq!(s.interfaces, ["eth0"]);
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<NodeStats>(&json).unwrap(), s);
    }
}
