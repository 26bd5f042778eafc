//! Defence under memory pressure (lvs-semantics.md §19): `drop_packet`, `drop_entry` and
//! `secure_tcp`, with the kernel's modes 0 (off), 1/2 (automatic) and 3 (always). rvs measures
//! pressure by the connection table, not by free RAM: "available" is the table's free entries
//! and `amemthresh` is counted in entries (default: a sixteenth of the maximum). The state is
//! evaluated once per second per worker, as the kernel does, and each worker judges its own
//! table (the sysctls are not rewritten to 2; [`DefenseState`] says what is active).
//!
//! The kernel's table has no count limit, so a SYN flood costs it memory and drop_entry's slow
//! scan (1/32 of the table a second) is enough. rvs's table has a maximum, and a flood that
//! fills it would lock every new client out until the half-open entries time out (60 s). So
//! while drop_entry is active, a new connection that finds the table full takes the place of
//! a half-open entry picked at random ([`Worker::evict_half_open`]): a legitimate client's
//! SYN gets in, and its own half-open entry survives the few milliseconds until its ACK with
//! high probability (a flood of F SYN/s evicts a given entry within t seconds with
//! probability about F·t / table size).

use std::sync::atomic::Ordering::Relaxed;

use crate::conn::{ConnFlags, ConnId};
use crate::proto::{sctp, tcp};
use crate::worker::Worker;

/// What is in force on one worker, re-evaluated every second.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DefenseState {
    /// Drop one in `drop_rate` new-connection packets (0 = off).
    pub drop_rate: u32,
    drop_counter: u32,
    pub drop_entry: bool,
    pub secure_tcp: bool,
    /// Engine second of the last evaluation.
    last: u64,
    /// Next bucket of the table the drop_entry scan visits.
    scan: usize,
    /// xorshift state for picking eviction victims (seeded from the clock at the first tick).
    rng: u64,
    /// Half-open entries evicted to make room for a new connection.
    pub evicted: u64,
}

/// Random slots tried for a half-open victim before the new connection is refused.
const EVICT_PROBES: usize = 16;
/// Half-open entries compared to pick the one idle longest.
const EVICT_CANDIDATES: usize = 4;

/// Is this entry half-open (drop_entry's first kind of candidate, §19)?
fn half_open(protocol: u8, state: u8) -> bool {
    match protocol {
        6 => matches!(state, tcp::SYN_RECV | tcp::SYNACK),
        132 => matches!(state, sctp::INIT1 | sctp::INIT),
        _ => false,
    }
}

/// Idle time before an ESTABLISHED or UDP entry may be dropped by drop_entry (§19).
const DROP_ENTRY_IDLE_MS: u64 = 60_000;

impl Worker {
    /// Once a second: work out which defences are active from the table's fill.
    pub(crate) fn defense_tick(&mut self) {
        let sec = self.now() / 1000;
        if sec == self.defense.last {
            return;
        }
        self.defense.last = sec;
        if self.defense.rng == 0 {
            self.defense.rng = (self.now() ^ 0x9e37_79b9_7f4a_7c15).wrapping_mul(self.id as u64 * 2 + 1) | 1;
        }
        let s = &self.ipvs.sysctl;
        let max = self.conns.max();
        let thresh = match s.amemthresh.load(Relaxed) as usize {
            0 => (max / 16).max(1),
            t => t,
        };
        let avail = max - self.conns.len().min(max);
        let short = avail < thresh;
        let mode = |m: u32| match m {
            3 => true,
            1 | 2 => short,
            _ => false,
        };
        let dp = s.drop_packet.load(Relaxed);
        self.defense.drop_rate = match dp {
            3 => s.am_droprate.load(Relaxed).max(1),
            1 | 2 if short => {
                // As the kernel: the countdown restarts with each automatic rate, so a rate
                // that rises under a flood applies now, not after the old countdown.
                let rate = (thresh / (thresh - avail).max(1)).max(1) as u32;
                self.defense.drop_counter = rate;
                rate
            }
            _ => 0,
        };
        self.defense.drop_entry = mode(s.drop_entry.load(Relaxed));
        self.defense.secure_tcp = match s.secure_tcp.load(Relaxed) {
            3 => true,
            1 | 2 => short,
            _ => false,
        };
        if self.defense.drop_entry {
            self.drop_entry_scan();
        }
    }

    /// drop_packet: should this new-connection packet be dropped (1 in `drop_rate`)?
    #[inline]
    pub(crate) fn defense_drops_new(&mut self) -> bool {
        let d = &mut self.defense;
        if d.drop_rate == 0 {
            return false;
        }
        if d.drop_counter <= 1 {
            d.drop_counter = d.drop_rate;
            return true;
        }
        d.drop_counter -= 1;
        false
    }

    /// drop_entry: visit 1/32 of the table and drop half-open and idle, lightly used entries
    /// (§19: an entry with k incoming packets is dropped on every k-th visit).
    fn drop_entry_scan(&mut self) {
        let n = self.conns.capacity_used();
        if n == 0 {
            return;
        }
        let step = n.div_ceil(32);
        let now = self.now();
        let start = self.defense.scan % n;
        self.defense.scan = start + step;
        let mut victims: Vec<ConnId> = Vec::new();
        for i in start..(start + step).min(n) {
            let id = i as ConnId;
            let Some(c) = self.conns.get_mut(id) else { continue };
            if c.flags & ConnFlags::TEMPLATE != 0 {
                continue;
            }
            let half_open = half_open(c.protocol, c.state);
            let idle_candidate = match c.protocol {
                6 => c.state == tcp::ESTABLISHED,
                132 => c.state == sctp::ESTABLISHED,
                _ => true,
            };
            let idle = c.expires.saturating_sub(c.timeout as u64 * 1000) + DROP_ENTRY_IDLE_MS <= now;
            let drop = if half_open {
                true
            } else if idle_candidate && idle && (1..=8).contains(&c.in_pkts) {
                // The kernel drops an entry with k packets on every k-th visit; the round
                // number of this scan stands in for the visit count.
                (self.defense.scan / step).is_multiple_of(c.in_pkts as usize)
            } else {
                false
            };
            if drop {
                victims.push(id);
            }
        }
        for id in victims {
            // The entry's template (if it controls nothing else) goes with it.
            let control = self.conns.get(id).map(|c| c.control).unwrap_or(u32::MAX);
            self.remove(id);
            if control != u32::MAX && self.conns.get(control).is_some_and(|t| t.n_control == 0) {
                self.remove(control);
            }
        }
    }

    /// rvs: the table is full and drop_entry is active: remove a half-open entry so that the
    /// new connection fits. Of [`EVICT_CANDIDATES`] half-open entries found at random slots
    /// (at most [`EVICT_PROBES`] tried), the one idle longest goes: a flood entry is older
    /// than a legitimate client's, whose ACK follows its SYN within a round trip, so the
    /// freshest entries are almost never the victims. True if one was removed.
    pub(crate) fn evict_half_open(&mut self) -> bool {
        let n = self.conns.capacity_used();
        if n == 0 {
            return false;
        }
        let mut best: Option<(u64, ConnId)> = None;
        let mut found = 0;
        for _ in 0..EVICT_PROBES {
            let mut x = self.defense.rng.max(1);
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.defense.rng = x;
            let id = (x % n as u64) as ConnId;
            let Some(c) = self.conns.get(id) else { continue };
            if c.flags & ConnFlags::TEMPLATE != 0 || c.n_control != 0 || !half_open(c.protocol, c.state) {
                continue;
            }
            // Time of its last packet: the timer is re-armed with the state's timeout.
            let last = c.expires.saturating_sub(c.timeout as u64 * 1000);
            if best.is_none_or(|(t, _)| last < t) {
                best = Some((last, id));
            }
            found += 1;
            if found == EVICT_CANDIDATES {
                break;
            }
        }
        let Some((_, id)) = best else { return false };
        self.remove(id);
        self.defense.evicted += 1;
        true
    }

    /// What is active on this worker.
    pub fn defense(&self) -> DefenseState {
        self.defense
    }
}
