//! Weighted random twos choice (`twos`, lvs-semantics.md §15): two weighted random picks, the
//! one with the lower overhead/weight wins.
//!
//! The random numbers come from a lock-free splitmix64 stream (one `fetch_add` per draw), so
//! workers never contend on a lock; quality is ample for load spreading.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::dest::Dest;
use crate::sched::load::eligible;
use crate::sched::{SchedInput, Scheduler};

const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

#[derive(Debug)]
pub struct Twos {
    rng: AtomicU64,
}

impl Default for Twos {
    fn default() -> Self {
        // Different instances get different streams: time plus a process-wide counter.
        static INSTANCES: AtomicU64 = AtomicU64::new(0);
        let t = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
        Self::with_seed(t ^ INSTANCES.fetch_add(1, Relaxed).wrapping_mul(GAMMA))
    }
}

impl Twos {
    pub fn new() -> Self {
        Self::default()
    }

    /// A deterministic stream (tests, simulations).
    pub fn with_seed(seed: u64) -> Self {
        Twos { rng: AtomicU64::new(seed) }
    }

    fn next_u64(&self) -> u64 {
        let mut z = self.rng.fetch_add(GAMMA, Relaxed).wrapping_add(GAMMA);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, bound)` (multiply-shift; bound > 0).
    fn below(&self, bound: u64) -> u64 {
        ((self.next_u64() as u128 * bound as u128) >> 64) as u64
    }
}

/// The dest where the running weight sum first reaches `r` (kernel: `r -= w; if r <= 0`).
fn weighted_pick(dests: &[Arc<Dest>], r: u64) -> Option<&Arc<Dest>> {
    let mut r = r as i64;
    for d in dests.iter().filter(|d| eligible(d)) {
        r -= d.weight() as i64;
        if r <= 0 {
            return Some(d);
        }
    }
    None
}

impl Scheduler for Twos {
    fn name(&self) -> &'static str {
        "twos"
    }

    fn update(&self, _dests: &[Arc<Dest>]) {}

    fn schedule(&self, dests: &[Arc<Dest>], _pkt: &SchedInput) -> Option<Arc<Dest>> {
        let mut total: u64 = 0;
        let mut last = None;
        for d in dests.iter().filter(|d| eligible(d)) {
            total += d.weight() as u64;
            last = Some(d);
        }
        let last = last?;
        // Inclusive: [0, W] (the kernel adds 1 to the bound).
        let c1 = weighted_pick(dests, self.below(total + 1));
        let c2 = weighted_pick(dests, self.below(total + 1));
        // A weight edit racing with us can leave a draw unmatched; fall back like the kernel
        // (choice1 starts as the last eligible dest).
        let c1 = c1.unwrap_or(last);
        let Some(c2) = c2 else {
            return Some(c1.clone());
        };
        let (w1, o1) = (c1.weight() as i128, c1.overhead() as i128);
        let (w2, o2) = (c2.weight() as i128, c2.overhead() as i128);
        Some(if w2 * o1 > w1 * o2 { c2 } else { c1 }.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sched::load::testutil::*;

    #[test]
    fn weighted_pick_inclusive_bounds() {
        let list = vec![dest(1, 2), dest(2, 3)];
        let at = |r| pos(&list, weighted_pick(&list, r).unwrap());
        assert_eq!([at(0), at(1), at(2), at(3), at(5)], [0, 0, 0, 1, 1]);
        assert!(weighted_pick(&list, 6).is_none());
    }

    #[test]
    fn picks_only_eligible() {
        let s = Twos::with_seed(1);
        let list = vec![dest(1, 0), dest(2, 1), dest(3, 2), dest(4, 5)];
        list[3].set_overloaded(true);
        for _ in 0..2000 {
            let p = pos(&list, &s.schedule(&list, &any_pkt()).unwrap());
            assert!(p == 1 || p == 2, "{p}");
        }
        list[1].set_overloaded(true);
        list[2].set_overloaded(true);
        assert!(s.schedule(&list, &any_pkt()).is_none());
        assert!(s.schedule(&[], &any_pkt()).is_none());
    }

    #[test]
    fn prefers_the_less_loaded() {
        // Two equal dests, one heavily loaded: it wins only when both draws land on it.
        // With the inclusive bound (W = 2) the first dest gets r ∈ {0, 1}, the second r = 2.
        let s = Twos::with_seed(7);
        let list = vec![dest(1, 1), dest(2, 1)];
        list[0].set_conns(100, 0);
        let mut loaded = 0;
        let n = 30_000;
        for _ in 0..n {
            if pos(&list, &s.schedule(&list, &any_pkt()).unwrap()) == 0 {
                loaded += 1;
            }
        }
        // P(both draws pick dest 0) = (2/3)^2 ≈ 0.444.
        let f = loaded as f64 / n as f64;
        assert!((f - 4.0 / 9.0).abs() < 0.02, "{f}");
        // Without load a tie keeps the first draw: P(dest 0) = 2/3 (the +1 quirk).
        list[0].set_conns(0, 0);
        let mut first = 0;
        for _ in 0..n {
            if pos(&list, &s.schedule(&list, &any_pkt()).unwrap()) == 0 {
                first += 1;
            }
        }
        let f = first as f64 / n as f64;
        assert!((f - 2.0 / 3.0).abs() < 0.02, "{f}");
    }

    #[test]
    fn seeds_differ() {
        let (a, b) = (Twos::new(), Twos::new());
        assert_ne!(a.next_u64(), b.next_u64());
    }
}
