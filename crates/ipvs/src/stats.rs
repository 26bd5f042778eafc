//! Counters per service, per dest and in total (reference/lvs-semantics.md §17).
//!
//! Like the kernel's per-CPU stats: each worker writes only its own cache-line slot with a plain
//! load + store (no locked instruction on the packet path); readers sum the slots.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};

/// Upper bound on data-plane workers; each owns one slot of every [`Stats`].
pub const MAX_WORKERS: usize = 32;

/// Slots that readers sum: [`MAX_WORKERS`] unless the daemon said how many workers it runs
/// ([`set_workers`]). With 300 000 services and real servers, summing 32 slots where 2 are
/// used was most of a listing's and of the rate estimator's time.
static SLOTS_IN_USE: AtomicUsize = AtomicUsize::new(MAX_WORKERS);

/// The number of workers that count (ids `0..n`); set once at start, before any worker runs.
pub fn set_workers(n: usize) {
    SLOTS_IN_USE.store(n.clamp(1, MAX_WORKERS), Relaxed);
}

/// A snapshot of the five IPVS counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub conns: u64,
    pub inpkts: u64,
    pub outpkts: u64,
    pub inbytes: u64,
    pub outbytes: u64,
}

impl Counters {
    fn sub(self, b: Counters) -> Counters {
        Counters {
            conns: self.conns.wrapping_sub(b.conns),
            inpkts: self.inpkts.wrapping_sub(b.inpkts),
            outpkts: self.outpkts.wrapping_sub(b.outpkts),
            inbytes: self.inbytes.wrapping_sub(b.inbytes),
            outbytes: self.outbytes.wrapping_sub(b.outbytes),
        }
    }
}

#[derive(Debug, Default)]
#[repr(align(64))]
struct Slot {
    conns: AtomicU64,
    inpkts: AtomicU64,
    outpkts: AtomicU64,
    inbytes: AtomicU64,
    outbytes: AtomicU64,
}

#[inline(always)]
fn bump(c: &AtomicU64, by: u64) {
    // Single writer per slot: a plain load + store, not a locked read-modify-write.
    c.store(c.load(Relaxed).wrapping_add(by), Relaxed);
}

/// Per-worker counters plus the `-Z` baseline.
#[derive(Debug)]
pub struct Stats {
    /// A fixed-size array: indexing by `worker % MAX_WORKERS` needs no bounds check.
    slots: Box<[Slot; MAX_WORKERS]>,
    zero: std::sync::Mutex<Counters>,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            slots: Box::new(std::array::from_fn(|_| Slot::default())),
            zero: std::sync::Mutex::new(Counters::default()),
        }
    }
}

impl Stats {
    #[inline]
    pub fn count_conn(&self, worker: usize) {
        bump(&self.slots[worker % MAX_WORKERS].conns, 1);
    }
    #[inline(always)]
    pub fn count_in(&self, worker: usize, bytes: usize) {
        let s = &self.slots[worker % MAX_WORKERS];
        bump(&s.inpkts, 1);
        bump(&s.inbytes, bytes as u64);
    }
    #[inline(always)]
    pub fn count_out(&self, worker: usize, bytes: usize) {
        let s = &self.slots[worker % MAX_WORKERS];
        bump(&s.outpkts, 1);
        bump(&s.outbytes, bytes as u64);
    }

    /// Sum of every worker's slot since creation (ignores `-Z`).
    pub fn raw(&self) -> Counters {
        let mut c = Counters::default();
        let n = SLOTS_IN_USE.load(Relaxed).min(MAX_WORKERS);
        for s in self.slots[..n].iter() {
            c.conns += s.conns.load(Relaxed);
            c.inpkts += s.inpkts.load(Relaxed);
            c.outpkts += s.outpkts.load(Relaxed);
            c.inbytes += s.inbytes.load(Relaxed);
            c.outbytes += s.outbytes.load(Relaxed);
        }
        c
    }

    /// The counters as `ipvsadm -L --stats` shows them (since the last `-Z`).
    pub fn read(&self) -> Counters {
        let base = *self.zero.lock().unwrap_or_else(|e| e.into_inner());
        self.raw().sub(base)
    }

    /// `ipvsadm -Z`: from now on the counters read as 0.
    pub fn zero(&self) {
        let raw = self.raw();
        *self.zero.lock().unwrap_or_else(|e| e.into_inner()) = raw;
    }
}

/// The kernel's rate estimator (§17): fixed-point EWMA over 2-second ticks.
#[derive(Clone, Copy, Debug, Default)]
pub struct Estimator {
    last: Counters,
    cps: u64,
    inpps: u64,
    outpps: u64,
    inbps: u64,
    outbps: u64,
}

/// Rates as ipvsadm `--rate` prints them (per second).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rates {
    pub cps: u64,
    pub inpps: u64,
    pub outpps: u64,
    pub inbps: u64,
    pub outbps: u64,
}

fn ewma(e: &mut u64, delta: u64, shift: u32) {
    let rate = (delta << shift) as i64;
    let cur = *e as i64;
    *e = (cur + ((rate - cur) >> 2)) as u64;
}

impl Estimator {
    /// One 2-second tick with the current raw counters.
    pub fn tick(&mut self, now: Counters) {
        let d = now.sub(self.last);
        self.last = now;
        ewma(&mut self.cps, d.conns, 9);
        ewma(&mut self.inpps, d.inpkts, 9);
        ewma(&mut self.outpps, d.outpkts, 9);
        ewma(&mut self.inbps, d.inbytes, 4);
        ewma(&mut self.outbps, d.outbytes, 4);
    }

    pub fn rates(&self) -> Rates {
        Rates {
            cps: (self.cps + 0x1FF) >> 10,
            inpps: (self.inpps + 0x1FF) >> 10,
            outpps: (self.outpps + 0x1FF) >> 10,
            inbps: (self.inbps + 0xF) >> 5,
            outbps: (self.outbps + 0xF) >> 5,
        }
    }

    /// `-Z` sets the rates to 0 and rebases on the current counters.
    pub fn reset(&mut self, now: Counters) {
        *self = Estimator { last: now, ..Default::default() };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn estimator_matches_reference_vectors() {
        // reference/test-vectors.md §9
        let mut e = Estimator::default();
        let mut c = Counters::default();
        let want = [25, 44, 58, 68, 76, 82, 87, 90, 92, 94, 96, 97];
        for w in want {
            c.conns += 200;
            e.tick(c);
            assert_eq!(e.rates().cps, w);
        }
        let mut e = Estimator::default();
        let mut c = Counters::default();
        let want = [250000, 437500, 578125, 683594, 762695, 822021, 866516, 899887, 924915, 943686, 957765, 968324];
        for w in want {
            c.inbytes += 2_000_000;
            e.tick(c);
            assert_eq!(e.rates().inbps, w);
        }
    }

    #[test]
    fn zero_rebases_counters() {
        let s = Stats::default();
        s.count_in(0, 100);
        s.count_in(3, 50);
        s.count_conn(1);
        assert_eq!(s.read().inpkts, 2);
        assert_eq!(s.read().inbytes, 150);
        s.zero();
        assert_eq!(s.read(), Counters::default());
        s.count_out(2, 10);
        assert_eq!(s.read().outpkts, 1);
        assert_eq!(s.raw().inpkts, 2);
    }
}
