//! The master thread (`sync_thread_master`): packs the workers' records into messages of at
//! most `sync_maxlen` bytes in the format `sync_version` picks, queues a message when it is
//! full or when its first entry waited [`FLUSH_AFTER`], and sends the queue without ever
//! blocking (a full socket buffer is retried at the next turn).

use std::collections::VecDeque;
use std::net::UdpSocket;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::time::{Duration, Instant};

use control::api::DaemonView;
use ipvs::Ipvs;
use ipvs::sync::{SyncConn, v0, v1};

use super::{Batch, SyncStats};

/// A message is sent at the latest this long after its first entry (`IPVS_SYNC_FLUSH_TIME`).
pub const FLUSH_AFTER: Duration = Duration::from_secs(2);
/// The thread looks at its queue at least this often (`IPVS_SYNC_SEND_DELAY`, 20 ms).
const TURN: Duration = Duration::from_millis(20);

pub struct Master {
    pub sock: UdpSocket,
    pub view: DaemonView,
    pub rx: Receiver<Batch>,
    pub spares: Vec<SyncSender<Vec<SyncConn>>>,
    pub ipvs: Arc<Ipvs>,
    pub stats: Arc<SyncStats>,
    pub stop: Arc<AtomicBool>,
}

/// The message being filled, in either version.
struct Packer {
    v1: v1::Writer,
    v0: v0::Writer,
    since: Option<Instant>,
}

impl Master {
    /// Runs until stopped; gives the workers' queue back for the next master.
    pub fn run(self) -> Receiver<Batch> {
        let maxlen = usize::from(self.view.sync_maxlen);
        let mut p = Packer {
            v1: v1::Writer::new(self.view.syncid, maxlen),
            v0: v0::Writer::new(self.view.syncid, maxlen),
            since: None,
        };
        let mut queue: VecDeque<Vec<u8>> = VecDeque::new();
        let mut last_err = Instant::now() - Duration::from_secs(10);
        while !self.stop.load(Relaxed) {
            let first = match self.rx.recv_timeout(TURN) {
                Ok(b) => Some(b),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => break,
            };
            for (id, mut batch) in first.into_iter().chain(std::iter::from_fn(|| self.rx.try_recv().ok())) {
                let version = self.ipvs.sync.sysctl.sync_version.load(Relaxed);
                for c in &batch {
                    self.add(&mut p, &mut queue, c, version);
                }
                batch.clear();
                if let Some(s) = self.spares.get(id) {
                    let _ = s.try_send(batch);
                }
            }
            if p.since.is_some_and(|t| t.elapsed() >= FLUSH_AFTER) {
                self.flush(&mut p, &mut queue);
            }
            while let Some(d) = queue.front() {
                match self.sock.send(d) {
                    Ok(_) => {
                        self.stats.sent_msgs.fetch_add(1, Relaxed);
                        self.stats.sent_conns.fetch_add(count(d), Relaxed);
                        queue.pop_front();
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(e) => {
                        // The kernel logs and drops too (a link down, no route).
                        self.stats.send_errors.fetch_add(1, Relaxed);
                        if last_err.elapsed() >= Duration::from_secs(1) {
                            tracing::warn!("sync master: send to {:?}: {e}", self.view.mcast_group);
                            last_err = Instant::now();
                        }
                        queue.pop_front();
                    }
                }
            }
        }
        self.rx
    }

    fn add(&self, p: &mut Packer, queue: &mut VecDeque<Vec<u8>>, c: &SyncConn, version: u32) {
        if version == 0 {
            if c.is_v6() {
                return; // version 0 carries IPv4 only
            }
            if !p.v1.is_empty() {
                self.flush(p, queue);
            }
            if !p.v0.push(c) {
                self.flush(p, queue);
                p.v0.push(c);
            }
        } else {
            if !p.v0.is_empty() {
                self.flush(p, queue);
            }
            if !p.v1.push(c) {
                self.flush(p, queue);
                p.v1.push(c);
            }
        }
        p.since.get_or_insert_with(Instant::now);
    }

    /// Queues the message being filled (or drops it, counted, when `sync_qlen_max` wait).
    fn flush(&self, p: &mut Packer, queue: &mut VecDeque<Vec<u8>>) {
        let qlen_max = self.ipvs.sync.sysctl.sync_qlen_max.load(Relaxed) as usize;
        for bytes in [(!p.v1.is_empty()).then(|| p.v1.as_bytes()), (!p.v0.is_empty()).then(|| p.v0.as_bytes())]
            .into_iter()
            .flatten()
        {
            if queue.len() < qlen_max {
                queue.push_back(bytes.to_vec());
            } else {
                self.stats.queue_dropped.fetch_add(1, Relaxed);
            }
        }
        p.v1.clear();
        p.v0.clear();
        p.since = None;
    }
}

/// Entries in an encoded message (nr_conns: byte 4 in version 1, byte 0 in version 0).
fn count(d: &[u8]) -> u64 {
    if v1::is_v1(d) { u64::from(d[4]) } else { u64::from(d[0]) }
}
