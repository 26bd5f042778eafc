//! The master's half in a worker: after each client packet (and when an expiry is deferred)
//! the kernel's rules decide whether the entry is sent; if so a record goes into this worker's
//! buffer. The buffer is reserved when the master starts and handed to the sender once per
//! batch by the daemon, so the packet path never allocates, locks or makes a syscall for sync;
//! a full buffer drops the record and counts it.

use std::sync::atomic::Ordering::Relaxed;

use super::SyncConn;
use super::rules::{Entry, Params, needed};
use crate::conn::{ConnFlags, ConnId};
use crate::worker::Worker;

/// Records one worker keeps between two hand-overs.
pub const RECORDS_PER_BATCH: usize = 4096;

/// A worker's sync output: the records of this batch and the per-entry bookkeeping.
#[derive(Debug, Default)]
pub struct SyncOut {
    /// A master runs (read from [`super::SyncControl`] once per batch).
    pub(crate) on: bool,
    params: Params,
    /// Entries to send, in the order they were decided.
    pub records: Vec<SyncConn>,
    /// Records not kept because [`RECORDS_PER_BATCH`] were already waiting.
    pub dropped: u64,
    /// The kernel's `sync_endtime` per entry id (ms, low 2 bits = retries).
    sync_end: Vec<u64>,
}

impl SyncOut {
    /// An empty buffer with room for a batch (the daemon swaps buffers at hand-over).
    pub fn buffer() -> Vec<SyncConn> {
        Vec::with_capacity(RECORDS_PER_BATCH)
    }

    /// `sync_threshold` as of this batch.
    pub fn threshold(&self) -> u32 {
        self.params.threshold
    }

    fn end_mut(&mut self, id: ConnId) -> &mut u64 {
        let i = id as usize;
        if i >= self.sync_end.len() {
            // Within the capacity reserved when the master started: no allocation.
            self.sync_end.resize(i + 1, 0);
        }
        &mut self.sync_end[i]
    }
}

impl Worker {
    /// Picks up the master's state and the sysctls; once per batch.
    pub(crate) fn sync_tick(&mut self) {
        let ctl = &self.ipvs.sync;
        let on = ctl.master.load(Relaxed);
        if on && !self.sync.on {
            self.sync.sync_end.reserve(self.ipvs.max_conns.saturating_sub(self.sync.sync_end.len()));
            if self.sync.records.capacity() < RECORDS_PER_BATCH {
                self.sync.records.reserve(RECORDS_PER_BATCH);
            }
        }
        self.sync.on = on;
        if on {
            self.sync.params = ctl.sysctl.params();
        }
    }

    /// A new entry took slot `id`: forget what a previous entry there was synced as.
    #[inline]
    pub(crate) fn sync_forget(&mut self, id: ConnId) {
        if let Some(e) = self.sync.sync_end.get_mut(id as usize) {
            *e = 0;
        }
    }

    /// `ip_vs_sync_conn`: after a client packet on `id` whose in_pkts is now `pkts`. Sends the
    /// entry if the rules say so, then its controlling template (whose in_pkts goes up by one).
    #[inline]
    pub fn sync_conn(&mut self, id: ConnId, pkts: u32) {
        if self.sync.on {
            self.sync_conn_slow(id, pkts);
        }
    }

    #[inline(never)]
    fn sync_conn_slow(&mut self, mut id: ConnId, mut pkts: u32) {
        let now = self.now();
        let params = self.sync.params;
        // A chain of controllers is at most entry → template; the bound is for safety.
        for _ in 0..4 {
            let Some(c) = self.conns.get(id) else { return };
            let control = c.control;
            if c.flags & ConnFlags::ONE_PACKET == 0 {
                let in_persistence = control != u32::MAX && self.conns.get(control).is_some_and(|t| t.is_template());
                let e = Entry {
                    protocol: c.protocol,
                    state: c.state,
                    template: c.is_template(),
                    in_persistence,
                    state_changed: c.flags & ConnFlags::SYNC_STATE_CHANGED != 0,
                    timeout: c.timeout,
                };
                if needed(&params, &e, pkts, now, self.sync.end_mut(id)) {
                    self.sync_record(id);
                }
            }
            if control == u32::MAX {
                return;
            }
            let Some(ct) = self.conns.get_mut(control) else { return };
            pkts = if ct.is_template() {
                ct.in_pkts = ct.in_pkts.wrapping_add(1);
                ct.in_pkts
            } else {
                params.threshold
            };
            id = control;
        }
    }

    /// Puts entry `id` into the batch's records (or counts it dropped).
    fn sync_record(&mut self, id: ConnId) {
        let Some(c) = self.conns.get_mut(id) else { return };
        c.flags &= !ConnFlags::SYNC_STATE_CHANGED;
        let Some(c) = self.conns.get(id) else { return };
        if self.sync.records.len() >= RECORDS_PER_BATCH {
            self.sync.dropped += 1;
            return;
        }
        if let Some(r) = self.sync_conn_record(id, c) {
            self.sync.records.push(r);
        }
    }

    /// An entry as a sync record; `None` for a mixed-family (TUN) entry: the format has one
    /// family per record. A SIP template carries its Call-ID (PE_DATA, PE_NAME "sip") and
    /// client port 0, as the kernel's (rvs indexes it under a port of its own); those two
    /// options are the one allocation a record can make.
    pub(crate) fn sync_conn_record(&self, id: ConnId, c: &crate::conn::Conn) -> Option<SyncConn> {
        let a = self.conns.addrs(c);
        if a.caddr.is_ipv6() != a.vaddr.is_ipv6() || a.caddr.is_ipv6() != a.daddr.is_ipv6() {
            return None;
        }
        Some(SyncConn {
            protocol: c.protocol,
            flags: c.flags,
            state: u16::from(c.state),
            cport: c.cport,
            vport: c.vport,
            dport: c.dport,
            fwmark: c.fwmark,
            timeout: c.timeout,
            caddr: a.caddr,
            vaddr: a.vaddr,
            daddr: a.daddr,
            seq: None,
            pe_data: Vec::new(),
            pe_name: Vec::new(),
        })
        .map(|mut r| {
            if c.is_template()
                && let Some(d) = self.conns.pe_data(id)
            {
                r.cport = 0;
                r.pe_data = d.to_vec();
                r.pe_name = crate::pe_sip::NAME.as_bytes().to_vec();
            }
            r
        })
    }
}
