//! The connection sync daemons (`ipvsadm --start-daemon master|backup`, keepalived's
//! `lvs_sync_daemon`; lvs-semantics.md §18): a master thread that multicasts the entries the
//! workers decided to send, and a backup thread that receives them and hands each to the worker
//! that owns its client. Both may run at once.
//!
//! Queues, all bounded, none waited on by a worker:
//! - worker → master: each worker fills its own record buffer on the packet path
//!   (`ipvs::sync::master`) and, once per loop turn, `try_send`s the whole buffer here
//!   ([`OUT_BATCHES`] buffers queued at most); a full queue drops the batch, counted. The master
//!   gives emptied buffers back through a per-worker channel, so buffers are reused.
//! - master → network: encoded datagrams wait in a queue of at most `sync_qlen_max`; the socket
//!   is non-blocking and a datagram beyond the cap is dropped, counted.
//! - backup → worker: one bounded channel per worker ([`APPLY_BATCHES`]), taken once per loop
//!   turn; a full one drops the datagram's entries for that worker, counted.

mod backup;
pub mod follow;
mod master;
pub mod resync;
pub mod sock;

use std::cell::Cell;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use control::api::{ApiError, DaemonConfig, DaemonView, ErrorKind, SyncRole};
use ipvs::Ipvs;
use ipvs::sync::SyncConn;
use ipvs::sync::backup::Applied;

/// Record buffers a worker may have queued for the master.
pub const OUT_BATCHES: usize = 64;
/// Batches of received entries queued for one worker.
pub const APPLY_BATCHES: usize = 256;

/// A batch of entries from worker `.0`.
type Batch = (usize, Vec<SyncConn>);

/// Counters of both daemons (summed over workers where it applies), as `GET /v1/stats`
/// reports them under `sync`.
#[derive(Debug, Default)]
pub struct SyncStats {
    /// Master: datagrams sent, entries in them.
    pub sent_msgs: AtomicU64,
    pub sent_conns: AtomicU64,
    /// Master: entries dropped in a worker (its buffer full, or the queue to the master full).
    pub worker_dropped: AtomicU64,
    /// Master: datagrams dropped because `sync_qlen_max` were waiting, or a send failed.
    pub queue_dropped: AtomicU64,
    pub send_errors: AtomicU64,
    /// Backup: datagrams received and used, entries in them.
    pub recv_msgs: AtomicU64,
    pub recv_conns: AtomicU64,
    /// Backup: datagrams dropped by reason.
    pub truncated: AtomicU64,
    pub bad_size: AtomicU64,
    pub malformed: AtomicU64,
    pub other_syncid: AtomicU64,
    /// Backup: datagrams from one of this host's own addresses, ignored.
    pub own: AtomicU64,
    /// Backup: records skipped (unknown protocol, state or mandatory option).
    pub skipped: AtomicU64,
    /// Backup: entries created bound to one of our real servers / left unbound / updated /
    /// ignored as stale / refused by a full table / dropped on the way to their worker.
    pub bound: AtomicU64,
    pub unbound: AtomicU64,
    pub updated: AtomicU64,
    pub stale: AtomicU64,
    pub table_full: AtomicU64,
    pub apply_dropped: AtomicU64,
}

impl SyncStats {
    /// Every counter by name (for the stats listing and metrics).
    pub fn list(&self) -> Vec<(&'static str, u64)> {
        let g = |a: &AtomicU64| a.load(Relaxed);
        vec![
            ("sent_msgs", g(&self.sent_msgs)),
            ("sent_conns", g(&self.sent_conns)),
            ("worker_dropped", g(&self.worker_dropped)),
            ("queue_dropped", g(&self.queue_dropped)),
            ("send_errors", g(&self.send_errors)),
            ("recv_msgs", g(&self.recv_msgs)),
            ("recv_conns", g(&self.recv_conns)),
            ("truncated", g(&self.truncated)),
            ("bad_size", g(&self.bad_size)),
            ("malformed", g(&self.malformed)),
            ("other_syncid", g(&self.other_syncid)),
            ("own", g(&self.own)),
            ("skipped", g(&self.skipped)),
            ("bound", g(&self.bound)),
            ("unbound", g(&self.unbound)),
            ("updated", g(&self.updated)),
            ("stale", g(&self.stale)),
            ("table_full", g(&self.table_full)),
            ("apply_dropped", g(&self.apply_dropped)),
        ]
    }
}

/// A request for a slice of a worker's table (the bulk resync): records of the slab positions
/// from `from`, answered with the next position (`None`: done).
pub struct SnapReq {
    pub from: usize,
    pub reply: SyncSender<(Vec<SyncConn>, Option<usize>)>,
}

/// A worker's end of the sync queues.
pub struct WorkerLink {
    id: usize,
    out: SyncSender<Batch>,
    spare: Receiver<Vec<SyncConn>>,
    apply: Receiver<Vec<SyncConn>>,
    snap: Receiver<SnapReq>,
    stats: Arc<SyncStats>,
    ipvs: Arc<Ipvs>,
    /// The worker's own drop count already added to `stats`.
    reported: Cell<u64>,
}

/// Once per worker loop turn: hand this batch's records to the master, apply what the backup
/// received for this worker. Never blocks.
pub fn worker_turn(w: &mut ipvs::Worker, link: &WorkerLink) {
    if !w.sync.records.is_empty() {
        let spare = link.spare.try_recv().unwrap_or_else(|_| ipvs::sync::master::SyncOut::buffer());
        let full = std::mem::replace(&mut w.sync.records, spare);
        let n = full.len() as u64;
        if let Err(e) = link.out.try_send((link.id, full)) {
            let (mpsc::TrySendError::Full((_, mut back)) | mpsc::TrySendError::Disconnected((_, mut back))) = e;
            back.clear();
            w.sync.records = back;
            link.stats.worker_dropped.fetch_add(n, Relaxed);
        }
    }
    if w.sync.dropped != link.reported.get() {
        link.stats.worker_dropped.fetch_add(w.sync.dropped - link.reported.get(), Relaxed);
        link.reported.set(w.sync.dropped);
    }
    while let Ok(req) = link.snap.try_recv() {
        let mut records = Vec::new();
        let next = w.sync_snapshot(req.from, resync::SNAP_SLICE, &mut records);
        let _ = req.reply.try_send((records, next));
    }
    let mut threshold = None;
    while let Ok(batch) = link.apply.try_recv() {
        let t = *threshold.get_or_insert_with(|| link.ipvs.sync.sysctl.params().threshold);
        for c in &batch {
            let counter = match w.sync_apply(c, t) {
                Applied::Bound => &link.stats.bound,
                Applied::Unbound => &link.stats.unbound,
                Applied::Updated => &link.stats.updated,
                Applied::Stale => &link.stats.stale,
                Applied::Full => &link.stats.table_full,
                Applied::NoEngine => &link.stats.skipped,
            };
            counter.fetch_add(1, Relaxed);
        }
    }
}

/// One running daemon.
struct Running<T> {
    view: DaemonView,
    stop: Arc<AtomicBool>,
    handle: JoinHandle<T>,
}

struct Inner {
    master: Option<Running<Receiver<Batch>>>,
    backup: Option<Running<()>>,
    /// The workers' queue while no master reads it.
    out_rx: Option<Receiver<Batch>>,
    spares: Vec<SyncSender<Vec<SyncConn>>>,
    apply: Vec<SyncSender<Vec<SyncConn>>>,
    snaps: Vec<SyncSender<SnapReq>>,
}

/// The sync daemons of this director: started and stopped by the API, listed by
/// `ipvsadm -L --daemon`.
pub struct SyncDaemons {
    ipvs: Arc<Ipvs>,
    workers: usize,
    pub stats: Arc<SyncStats>,
    inner: Mutex<Inner>,
}

/// The settings a daemon runs with, defaults filled in as the kernel fills them (what
/// `-L --daemon` prints).
pub fn effective(cfg: &DaemonConfig) -> DaemonView {
    let group = cfg.mcast_group.unwrap_or(IpAddr::V4(ipvs::sync::DEFAULT_GROUP));
    let hlen: u16 = if group.is_ipv4() { 28 } else { 48 };
    let maxlen = match (cfg.role, cfg.sync_maxlen) {
        (SyncRole::Master, 0) => {
            if group.is_ipv4() {
                ipvs::sync::DEFAULT_MAXLEN_V4
            } else {
                ipvs::sync::DEFAULT_MAXLEN_V6
            }
        }
        (SyncRole::Master, n) => n.clamp(1, 65535 - hlen),
        (SyncRole::Backup, 0) => {
            let mtu = sock::mtu(&cfg.mcast_ifn).unwrap_or(1500).clamp(1500, 65535) as u16;
            mtu - hlen
        }
        (SyncRole::Backup, n) => n.clamp(1024, 65535 - hlen),
    };
    DaemonView {
        role: cfg.role,
        mcast_ifn: cfg.mcast_ifn.clone(),
        syncid: cfg.syncid,
        sync_maxlen: maxlen,
        mcast_group: Some(group),
        mcast_port: if cfg.mcast_port == 0 { ipvs::sync::DEFAULT_PORT } else { cfg.mcast_port },
        mcast_ttl: if cfg.mcast_ttl == 0 { 1 } else { cfg.mcast_ttl },
    }
}

impl SyncDaemons {
    /// The daemons' side of `workers` workers, and each worker's end.
    pub fn new(ipvs: Arc<Ipvs>, workers: usize) -> (Arc<SyncDaemons>, Vec<WorkerLink>) {
        let stats = Arc::new(SyncStats::default());
        let (out_tx, out_rx) = mpsc::sync_channel(OUT_BATCHES);
        let mut links = Vec::with_capacity(workers);
        let (mut spares, mut apply, mut snaps) = (Vec::new(), Vec::new(), Vec::new());
        for id in 0..workers {
            let (spare_tx, spare_rx) = mpsc::sync_channel(OUT_BATCHES);
            let (apply_tx, apply_rx) = mpsc::sync_channel(APPLY_BATCHES);
            let (snap_tx, snap_rx) = mpsc::sync_channel(4);
            spares.push(spare_tx);
            apply.push(apply_tx);
            snaps.push(snap_tx);
            links.push(WorkerLink {
                id,
                out: out_tx.clone(),
                spare: spare_rx,
                apply: apply_rx,
                snap: snap_rx,
                stats: stats.clone(),
                ipvs: ipvs.clone(),
                reported: Cell::new(0),
            });
        }
        let inner = Inner { master: None, backup: None, out_rx: Some(out_rx), spares, apply, snaps };
        (Arc::new(SyncDaemons { ipvs, workers, stats, inner: Mutex::new(inner) }), links)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `--start-daemon`: `DaemonRunning` when that role runs already; the interface must exist
    /// (and, for an IPv4 master, have an address).
    pub fn start(&self, cfg: &DaemonConfig) -> Result<(), ApiError> {
        let mut inner = self.lock();
        let running = match cfg.role {
            SyncRole::Master => inner.master.is_some(),
            SyncRole::Backup => inner.backup.is_some(),
        };
        if running {
            return Err(ApiError::new(ErrorKind::DaemonRunning, "Daemon has already run"));
        }
        let view = effective(cfg);
        let group = view.mcast_group.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        let sock_size = self.ipvs.sync.sysctl.sync_sock_size.load(Relaxed);
        let fail = |e: std::io::Error| {
            let kind = if e.raw_os_error() == Some(libc::ENODEV) { ErrorKind::NotFound } else { ErrorKind::Invalid };
            let msg = if e.raw_os_error() == Some(libc::ENODEV) { "No such device".to_string() } else { e.to_string() };
            ApiError::new(kind, format!("{msg} ({})", cfg.mcast_ifn))
        };
        let stop = Arc::new(AtomicBool::new(false));
        match cfg.role {
            SyncRole::Master => {
                let s =
                    sock::sender(&cfg.mcast_ifn, group, view.mcast_port, view.mcast_ttl, sock_size).map_err(fail)?;
                let Some(rx) = inner.out_rx.take() else {
                    return Err(ApiError::new(ErrorKind::Internal, "sync queue missing"));
                };
                // Whatever waited from an earlier run is stale.
                while rx.try_recv().is_ok() {}
                let m = master::Master {
                    sock: s,
                    view: view.clone(),
                    rx,
                    spares: inner.spares.clone(),
                    ipvs: self.ipvs.clone(),
                    stats: self.stats.clone(),
                    stop: stop.clone(),
                };
                let handle = spawn("rvsd-sync-m", move || m.run())?;
                self.ipvs.sync.master.store(true, Relaxed);
                inner.master = Some(Running { view, stop, handle });
            }
            SyncRole::Backup => {
                let s =
                    sock::receiver(&cfg.mcast_ifn, group, view.mcast_port, sock_size, backup::TICK).map_err(fail)?;
                let b = backup::Backup {
                    sock: s,
                    view: view.clone(),
                    apply: inner.apply.clone(),
                    workers: self.workers,
                    ipvs: self.ipvs.clone(),
                    stats: self.stats.clone(),
                    stop: stop.clone(),
                };
                let handle = spawn("rvsd-sync-b", move || b.run())?;
                inner.backup = Some(Running { view, stop, handle });
            }
        }
        tracing::info!("sync daemon started: {}", control::ipvsadm::format::list_daemons(&[effective(cfg)]).trim());
        Ok(())
    }

    /// `--stop-daemon`: `NoDaemon` when that role does not run.
    pub fn stop(&self, role: SyncRole) -> Result<(), ApiError> {
        let mut inner = self.lock();
        match role {
            SyncRole::Master => {
                let Some(r) = inner.master.take() else {
                    return Err(ApiError::new(ErrorKind::NoDaemon, "No daemon is running"));
                };
                self.ipvs.sync.master.store(false, Relaxed);
                r.stop.store(true, Relaxed);
                match r.handle.join() {
                    Ok(rx) => inner.out_rx = Some(rx),
                    Err(_) => tracing::error!("sync master thread panicked"),
                }
            }
            SyncRole::Backup => {
                let Some(r) = inner.backup.take() else {
                    return Err(ApiError::new(ErrorKind::NoDaemon, "No daemon is running"));
                };
                r.stop.store(true, Relaxed);
                let _ = r.handle.join();
            }
        }
        tracing::info!("sync daemon {role:?} stopped");
        Ok(())
    }

    /// Each worker's queue of received entries (the bulk resync's client waits on them).
    pub fn apply_senders(&self) -> Vec<SyncSender<Vec<SyncConn>>> {
        self.lock().apply.clone()
    }

    /// Each worker's queue of snapshot requests (the bulk resync's server).
    pub fn snap_senders(&self) -> Vec<SyncSender<SnapReq>> {
        self.lock().snaps.clone()
    }

    /// The steering program's client mask for the current services (which worker owns a client).
    pub fn client_mask(&self) -> u32 {
        if self.workers > 1 { self.ipvs.services().client_mask() } else { u32::MAX }
    }

    /// The running daemons, master first.
    pub fn views(&self) -> Vec<DaemonView> {
        let inner = self.lock();
        inner.master.iter().map(|r| r.view.clone()).chain(inner.backup.iter().map(|r| r.view.clone())).collect()
    }
}

fn spawn<T: Send + 'static>(name: &str, f: impl FnOnce() -> T + Send + 'static) -> Result<JoinHandle<T>, ApiError> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(f)
        .map_err(|e| ApiError::new(ErrorKind::Internal, format!("cannot start {name}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;

    fn rec(cport: u16) -> SyncConn {
        SyncConn {
            protocol: 6,
            flags: 3,
            state: 1,
            cport,
            vport: 80,
            dport: 80,
            fwmark: 0,
            timeout: 900,
            caddr: "10.0.0.1".parse().unwrap(),
            vaddr: "10.0.0.100".parse().unwrap(),
            daddr: "192.168.0.11".parse().unwrap(),
            seq: None,
            pe_data: vec![],
            pe_name: vec![],
        }
    }

    #[test]
    fn a_worker_hands_its_records_over_without_waiting_and_counts_what_the_queue_refuses() {
        let ipvs = Arc::new(Ipvs::new(100));
        let (daemons, links) = SyncDaemons::new(ipvs.clone(), 1);
        let mut w = ipvs::Worker::new(0, ipvs.clone());
        // Nobody reads the queue (no master): it takes OUT_BATCHES batches, then refuses.
        for i in 0..OUT_BATCHES + 3 {
            w.sync.records.push(rec(i as u16));
            worker_turn(&mut w, &links[0]);
            assert!(w.sync.records.is_empty(), "the buffer is emptied every turn");
        }
        assert_eq!(daemons.stats.worker_dropped.load(Relaxed), 3);
        let rx = daemons.lock().out_rx.take().unwrap();
        let (id, first) = rx.try_recv().unwrap();
        assert_eq!((id, first[0].cport), (0, 0));
    }

    #[test]
    fn a_worker_applies_what_the_backup_received_for_it() {
        let ipvs = Arc::new(Ipvs::new(100));
        let key = ipvs::ServiceKey::tcp("10.0.0.100".parse().unwrap(), 80);
        ipvs.add_service(ipvs::ServiceConfig::new(key, "rr")).unwrap();
        ipvs.add_dest(&key, ipvs::DestConfig::new("192.168.0.11".parse().unwrap(), 80)).unwrap();
        let (daemons, links) = SyncDaemons::new(ipvs.clone(), 1);
        let mut w = ipvs::Worker::new(0, ipvs.clone());
        w.set_now(1000);
        let mut other = rec(2);
        other.daddr = "192.168.0.99".parse().unwrap();
        daemons.lock().apply[0].try_send(vec![rec(1), other]).unwrap();
        worker_turn(&mut w, &links[0]);
        assert_eq!(w.conns.len(), 2);
        assert_eq!(daemons.stats.bound.load(Relaxed), 1);
        assert_eq!(daemons.stats.unbound.load(Relaxed), 1);
    }

    #[test]
    fn the_backup_puts_an_entry_where_the_steering_puts_its_client() {
        let c: IpAddr = "198.51.100.7".parse().unwrap();
        for workers in [1, 2, 3, 8] {
            let want = if workers == 1 {
                0
            } else {
                crate::steer::worker_for_masked("198.51.100.7".parse().unwrap(), u32::MAX, workers)
            };
            assert_eq!(backup::owner(&c, u32::MAX, workers), want);
        }
        // Under a persistence mask, a whole client network goes to one worker.
        let a = backup::owner(&"198.51.100.7".parse().unwrap(), 0xffff_ff00, 4);
        let b = backup::owner(&"198.51.100.200".parse().unwrap(), 0xffff_ff00, 4);
        assert_eq!(a, b);
        assert_eq!(backup::owner(&"2001:db8::1".parse().unwrap(), u32::MAX, 4), 0);
    }

    #[test]
    fn the_backup_ignores_its_own_host_other_groups_and_bad_datagrams() {
        let mut w = ipvs::sync::v1::Writer::new(7, 1472);
        w.push(&rec(1));
        let msg = w.as_bytes();
        let own: Vec<IpAddr> = vec!["192.168.77.2".parse().unwrap()];
        let peer: IpAddr = "192.168.77.1".parse().unwrap();
        assert_eq!(backup::take(msg, peer, &own, 7).unwrap().conns, vec![rec(1)]);
        assert_eq!(backup::take(msg, own[0], &own, 7), Err(backup::Refused::Own));
        assert_eq!(backup::take(msg, peer, &own, 8), Err(backup::Refused::Drop(ipvs::sync::Drop::OtherSyncId)));
        assert!(backup::take(msg, peer, &own, 0).is_ok(), "syncid 0 takes every group");
        let r = backup::take(&msg[..msg.len() - 1], peer, &own, 7);
        assert_eq!(r, Err(backup::Refused::Drop(ipvs::sync::Drop::BadSize)));
    }

    #[test]
    fn effective_settings_fill_the_kernel_defaults() {
        let cfg = |role, maxlen, group: Option<&str>| DaemonConfig {
            role,
            mcast_ifn: "rvs-none0".into(),
            syncid: 3,
            sync_maxlen: maxlen,
            mcast_group: group.map(|g| g.parse().unwrap()),
            mcast_port: 0,
            mcast_ttl: 0,
        };
        let v = effective(&cfg(SyncRole::Master, 0, None));
        assert_eq!(
            (v.sync_maxlen, v.mcast_group, v.mcast_port, v.mcast_ttl),
            (1472, Some("224.0.0.81".parse().unwrap()), 8848, 1)
        );
        assert_eq!(effective(&cfg(SyncRole::Master, 0, Some("ff02::81"))).sync_maxlen, 1452);
        assert_eq!(effective(&cfg(SyncRole::Master, 9000, None)).sync_maxlen, 9000);
        // The backup: the interface MTU (at least 1500) less the headers; given values ≥ 1024.
        assert_eq!(effective(&cfg(SyncRole::Backup, 0, None)).sync_maxlen, 1472);
        assert_eq!(effective(&cfg(SyncRole::Backup, 100, None)).sync_maxlen, 1024);
    }
}
