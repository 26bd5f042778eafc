//! When the master sends an entry: the kernel's `ip_vs_sync_conn_needed` rules
//! (lvs-semantics.md §18) as a pure function, and the sync sysctls they read.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicBool, AtomicU32};

use crate::proto::{sctp, tcp};

/// The sync sysctls, by their kernel names, settable while packets flow (rows of the
/// registry, `crate::sysctl`: `rvsadm --sysctl`, the `[sysctl]` table).
#[derive(Debug)]
pub struct SyncSysctls {
    /// `sync_threshold` "T P": first value.
    pub sync_threshold: AtomicU32,
    /// `sync_threshold` "T P": second value (`sync_period`).
    pub sync_period: AtomicU32,
    /// `sync_refresh_period`, seconds (0 = off).
    pub sync_refresh_period: AtomicU32,
    /// `sync_retries`, 0..3.
    pub sync_retries: AtomicU32,
    /// `sync_persist_mode`: 1 = sync only templates of persistent services.
    pub sync_persist_mode: AtomicU32,
    /// `sync_version`: the format the master sends (0 or 1).
    pub sync_version: AtomicU32,
    /// `sync_qlen_max`: messages the sender queue holds before entries are dropped.
    pub sync_qlen_max: AtomicU32,
    /// `sync_sock_size`: SO_SNDBUF / SO_RCVBUF of the sync sockets (0 = system default).
    pub sync_sock_size: AtomicU32,
}

impl Default for SyncSysctls {
    fn default() -> Self {
        SyncSysctls {
            sync_threshold: AtomicU32::new(3),
            sync_period: AtomicU32::new(50),
            sync_refresh_period: AtomicU32::new(0),
            sync_retries: AtomicU32::new(0),
            sync_persist_mode: AtomicU32::new(0),
            sync_version: AtomicU32::new(1),
            // The kernel's default is a share of RAM (totalram / 32 pages); rvs bounds its
            // queue by a count of messages instead.
            sync_qlen_max: AtomicU32::new(4096),
            sync_sock_size: AtomicU32::new(0),
        }
    }
}

impl SyncSysctls {
    pub fn params(&self) -> Params {
        Params {
            threshold: self.sync_threshold.load(Relaxed),
            period: self.sync_period.load(Relaxed),
            refresh_ms: u64::from(self.sync_refresh_period.load(Relaxed)) * 1000,
            retries: self.sync_retries.load(Relaxed),
            persist_mode: self.sync_persist_mode.load(Relaxed) != 0,
        }
    }
}

/// What the workers read to know whether a master runs; shared with the daemon.
#[derive(Debug, Default)]
pub struct SyncControl {
    /// A master sync daemon runs: workers record entries to send.
    pub master: AtomicBool,
    pub sysctl: SyncSysctls,
}

/// The sysctls the rules read, copied once per batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Params {
    pub threshold: u32,
    pub period: u32,
    pub refresh_ms: u64,
    pub retries: u32,
    pub persist_mode: bool,
}

impl Default for Params {
    fn default() -> Self {
        SyncSysctls::default().params()
    }
}

/// What the rules need to know of an entry.
#[derive(Clone, Copy, Debug)]
pub struct Entry {
    pub protocol: u8,
    pub state: u8,
    pub template: bool,
    /// Controlled by a persistence template.
    pub in_persistence: bool,
    /// The state changed since the entry was last synced (the kernel's `state != old_state`).
    pub state_changed: bool,
    /// Idle timeout, seconds.
    pub timeout: u32,
}

/// Is the entry sent now? `pkts` is its in_pkts after this packet; `sync_end` its bookkeeping
/// (the kernel's `sync_endtime`: expiry time in ms with the low 2 bits counting retries),
/// updated when the answer is yes — the caller then also clears `state_changed`.
pub fn needed(p: &Params, e: &Entry, pkts: u32, now_ms: u64, sync_end: &mut u64) -> bool {
    // A state change forces the send at once, except into ESTABLISHED, which waits for the
    // packet count like any other packet (and stays "changed" until it is sent).
    if e.template {
        // Templates: no state filter.
    } else if p.persist_mode && e.in_persistence {
        return false;
    } else if e.protocol == 6 {
        let syncable =
            matches!(e.state, tcp::ESTABLISHED | tcp::FIN_WAIT | tcp::CLOSE | tcp::CLOSE_WAIT | tcp::TIME_WAIT);
        if !syncable {
            return false;
        }
        if e.state_changed && e.state != tcp::ESTABLISHED {
            return set(now_ms, e, sync_end);
        }
    } else if e.protocol == 132 {
        let syncable = matches!(
            e.state,
            sctp::ESTABLISHED | sctp::SHUTDOWN_SENT | sctp::SHUTDOWN_RECEIVED | sctp::SHUTDOWN_ACK_SENT | sctp::CLOSED
        );
        if !syncable {
            return false;
        }
        if e.state_changed && e.state != sctp::ESTABLISHED {
            return set(now_ms, e, sync_end);
        }
    }
    let timeout_ms = u64::from(e.timeout) * 1000;
    let orig = *sync_end;
    let mut n = (now_ms + timeout_ms) & !3;
    if p.refresh_ms > 0 {
        let diff = n.abs_diff(orig);
        let min_diff = (timeout_ms / 2).max(10_000);
        if diff < p.refresh_ms.min(min_diff) {
            let retries = (orig & 3) as u32;
            if retries >= p.retries {
                return false;
            }
            if now_ms < (orig + p.refresh_ms / 8).saturating_sub(timeout_ms) {
                return false;
            }
            n |= u64::from(retries) + 1;
        }
    }
    if p.period > 0 {
        if !e.template && pkts % p.period != p.threshold {
            return false;
        }
    } else if p.refresh_ms == 0 && pkts != p.threshold {
        return false;
    }
    *sync_end = n;
    true
}

fn set(now_ms: u64, e: &Entry, sync_end: &mut u64) -> bool {
    *sync_end = (now_ms + u64::from(e.timeout) * 1000) & !3;
    true
}
