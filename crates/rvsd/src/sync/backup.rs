//! The backup thread (`sync_thread_backup`): receives sync datagrams, ignores those from this
//! host's own addresses and other groups, decodes them as the kernel does, and sends each entry
//! to the worker that owns its client (the steering hash of `steer.rs`, so the client's packets
//! find it after a failover).

use std::net::{IpAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::mpsc::SyncSender;
use std::time::{Duration, Instant};

use control::api::DaemonView;
use ipvs::Ipvs;
use ipvs::sync::{Drop, SyncConn};

use super::SyncStats;

/// Longest a read waits, so a stop is seen.
pub const TICK: Duration = Duration::from_millis(100);
/// The host's own addresses are read again this often.
const OWN_REFRESH: Duration = Duration::from_secs(2);

pub struct Backup {
    pub sock: UdpSocket,
    pub view: DaemonView,
    pub apply: Vec<SyncSender<Vec<SyncConn>>>,
    pub workers: usize,
    pub ipvs: Arc<Ipvs>,
    pub stats: Arc<SyncStats>,
    pub stop: Arc<AtomicBool>,
}

impl Backup {
    pub fn run(self) {
        // Longer datagrams are cut at sync_maxlen and then fail the size check, as in the kernel.
        let mut buf = vec![0u8; usize::from(self.view.sync_maxlen).max(64)];
        let mut own: Vec<IpAddr> = Vec::new();
        let mut own_at: Option<Instant> = None;
        let mut per_worker: Vec<Vec<SyncConn>> = vec![Vec::new(); self.workers.max(1)];
        while !self.stop.load(Relaxed) {
            let (n, from) = match self.sock.recv_from(&mut buf) {
                Ok(x) => x,
                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => continue,
                Err(e) => {
                    tracing::warn!("sync backup: receive: {e}");
                    std::thread::sleep(TICK);
                    continue;
                }
            };
            if own_at.is_none_or(|t| t.elapsed() >= OWN_REFRESH) {
                own = super::sock::host_addrs().into_iter().map(|(_, a)| a).collect();
                own_at = Some(Instant::now());
            }
            let m = match take(&buf[..n], from.ip(), &own, self.view.syncid) {
                Ok(m) => m,
                Err(c) => {
                    self.stats.count(c);
                    continue;
                }
            };
            self.stats.recv_msgs.fetch_add(1, Relaxed);
            self.stats.recv_conns.fetch_add(m.conns.len() as u64, Relaxed);
            self.stats.skipped.fetch_add(m.skipped.len() as u64, Relaxed);
            let mask = self.mask();
            for c in m.conns {
                let w = owner(&c.caddr, mask, self.workers);
                per_worker[w].push(c);
            }
            for (w, v) in per_worker.iter_mut().enumerate() {
                if v.is_empty() {
                    continue;
                }
                let n = v.len() as u64;
                if self.apply[w].try_send(std::mem::take(v)).is_err() {
                    self.stats.apply_dropped.fetch_add(n, Relaxed);
                }
            }
        }
    }
}

/// Why a datagram was not used, by counter name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// From one of this host's own addresses.
    Own,
    Drop(Drop),
}

/// The backup's checks on one datagram from `from`: not from this host, then the kernel's
/// (size, syncid, version, records).
pub fn take(buf: &[u8], from: IpAddr, own: &[IpAddr], syncid: u8) -> Result<ipvs::sync::Message, Refused> {
    if own.contains(&from) {
        return Err(Refused::Own);
    }
    ipvs::sync::decode(buf, syncid).map_err(Refused::Drop)
}

impl SyncStats {
    fn count(&self, r: Refused) {
        let c = match r {
            Refused::Own => &self.own,
            Refused::Drop(Drop::Truncated) => &self.truncated,
            Refused::Drop(Drop::BadSize) => &self.bad_size,
            Refused::Drop(Drop::Malformed) => &self.malformed,
            Refused::Drop(Drop::OtherSyncId) => &self.other_syncid,
        };
        c.fetch_add(1, Relaxed);
    }
}

impl Backup {
    fn mask(&self) -> u32 {
        if self.workers > 1 { self.ipvs.services().client_mask() } else { u32::MAX }
    }
}

/// The worker whose table holds a client's entries: the steering program's choice for IPv4,
/// worker 0 for IPv6 (the program sends every non-IPv4 frame there).
pub fn owner(caddr: &IpAddr, client_mask: u32, workers: usize) -> usize {
    match caddr {
        IpAddr::V4(a) if workers > 1 => crate::steer::worker_for_masked(*a, client_mask, workers),
        _ => 0,
    }
}
