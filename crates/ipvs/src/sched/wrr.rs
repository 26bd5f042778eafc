//! Weighted round robin (`wrr`, lvs-semantics.md §15), the kernel's `ip_vs_wrr.c` walk.
//!
//! The state the kernel guards with a spinlock (cursor `cl`, current weight `cw`) is one
//! `AtomicU64` here, advanced by compare-and-swap. `di` and `mw` only change in `update`, which
//! publishes a new mark; the after-update phase rule (`cw = (cw/di)·di + 1`) makes the phase
//! depend on history, so the old `cw` is carried into the new mark.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::AcqRel, Ordering::Acquire};

use arc_swap::ArcSwap;

use crate::dest::Dest;
use crate::sched::load::gcd;
use crate::sched::{SchedInput, Scheduler};

#[derive(Debug, Default)]
struct WrrMark {
    /// Decreasing interval: gcd of the weights > 0 (1 if none).
    di: i32,
    /// Max weight − (di − 1); 0 means no dest can be chosen.
    mw: i32,
    /// `cl << 32 | cw as u32`; `cl` 0 = list head, i + 1 = `dests[i]`.
    state: AtomicU64,
}

fn pack(cl: usize, cw: i32) -> u64 {
    ((cl as u64) << 32) | (cw as u32 as u64)
}

fn unpack(s: u64) -> (usize, i32) {
    ((s >> 32) as usize, s as u32 as i32)
}

#[derive(Debug, Default)]
pub struct Wrr {
    mark: ArcSwap<WrrMark>,
}

impl Wrr {
    /// A new scheduler for an empty service: cl = head, cw = mw = 0.
    pub fn new() -> Self {
        Self::default()
    }
}

/// One `ip_vs_wrr_schedule` call on state (cl, cw): the pick (index) and the new state.
fn walk(dests: &[Arc<Dest>], di: i32, mw: i32, cl: usize, mut cw: i32) -> (Option<usize>, usize, i32) {
    let n = dests.len();
    if mw <= 0 || n == 0 {
        return (None, cl, cw);
    }
    let cl = if cl > n { 0 } else { cl };
    let last = cl;
    let mut stop: Option<usize> = None;
    let mut last_pass = false;
    let mut restarted = false;
    let mut from = cl;
    loop {
        // list_for_each_entry_continue: positions after `from` up to the list end.
        for p in from + 1..=n {
            let d = &dests[p - 1];
            if !d.is_overloaded() && d.weight() >= cw {
                return (Some(p - 1), p, cw);
            }
            if stop == Some(p) {
                return (None, p, cw);
            }
        }
        from = 0;
        cw -= di;
        if cw <= 0 {
            cw = mw;
            if last_pass || last == 0 {
                return (None, 0, cw);
            }
            restarted = true;
        }
        last_pass = cw <= di;
        if last_pass && restarted && last != 0 {
            stop = Some(last);
        }
    }
}

impl Scheduler for Wrr {
    fn name(&self) -> &'static str {
        "wrr"
    }

    fn update(&self, dests: &[Arc<Dest>]) {
        let old = self.mark.load();
        let (_, mut cw) = unpack(old.state.load(Acquire));
        let di = dests.iter().map(|d| d.weight()).filter(|w| *w > 0).fold(0, |g, w| if g > 0 { gcd(w, g) } else { w });
        let di = if di > 0 { di } else { 1 };
        let max = dests.iter().map(|d| d.weight()).fold(0, i32::max);
        let mw = max - (di - 1);
        if cw > mw || cw == 0 {
            cw = mw;
        } else if di > 1 {
            cw = (cw / di) * di + 1;
        }
        self.mark.store(Arc::new(WrrMark { di, mw, state: AtomicU64::new(pack(0, cw)) }));
    }

    fn schedule(&self, dests: &[Arc<Dest>], _pkt: &SchedInput) -> Option<Arc<Dest>> {
        let mark = self.mark.load();
        let mut s = mark.state.load(Acquire);
        loop {
            let (cl, cw) = unpack(s);
            let (pick, ncl, ncw) = walk(dests, mark.di, mark.mw, cl, cw);
            let ns = pack(ncl, ncw);
            if ns == s {
                return pick.map(|i| dests[i].clone());
            }
            match mark.state.compare_exchange_weak(s, ns, AcqRel, Acquire) {
                Ok(_) => return pick.map(|i| dests[i].clone()),
                Err(now) => s = now,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sched::load::testutil::*;

    /// Add dests one at a time (an update after each), as ipvsadm -a does; return the list.
    fn build(s: &Wrr, weights: &[i32]) -> Vec<Arc<Dest>> {
        let mut added = vec![];
        for (i, w) in weights.iter().enumerate() {
            added.push(dest(i as u8 + 1, *w));
            s.update(&kernel_list(&added));
        }
        kernel_list(&added)
    }

    /// Picks as letters: dest 10.1.0.1 = 'A', .2 = 'B', ...
    fn letters(s: &Wrr, list: &[Arc<Dest>], k: usize) -> String {
        (0..k)
            .map(|_| match s.schedule(list, &any_pkt()) {
                Some(d) => match d.addr {
                    std::net::IpAddr::V4(a) => (b'A' + a.octets()[3] - 1) as char,
                    _ => '?',
                },
                None => '-',
            })
            .collect()
    }

    fn cw(s: &Wrr) -> i32 {
        unpack(s.mark.load().state.load(Acquire)).1
    }

    #[test]
    fn equal_weights() {
        let s = Wrr::new();
        let list = build(&s, &[1, 1, 1]);
        assert_eq!(letters(&s, &list, 6), "CBACBA");
    }

    #[test]
    fn nine_cycle() {
        let s = Wrr::new();
        let list = build(&s, &[4, 3, 2]);
        assert_eq!(cw(&s), 1);
        assert_eq!(letters(&s, &list, 3 + 27), format!("CBA{}", "ABACBACBA".repeat(3)));
    }

    #[test]
    fn gcd_two() {
        let s = Wrr::new();
        let list = build(&s, &[2, 4, 6]);
        assert_eq!(cw(&s), 1);
        assert_eq!(letters(&s, &list, 3 + 18), format!("CBA{}", "CCBCBA".repeat(3)));
    }

    #[test]
    fn three_to_one() {
        let s = Wrr::new();
        let list = build(&s, &[3, 1]);
        assert_eq!(letters(&s, &list, 12), "BAAABAAABAAA");
    }

    #[test]
    fn proportional_over_a_period() {
        let s = Wrr::new();
        let list = build(&s, &[5, 3, 2, 7]);
        // Period = sum / gcd = 17; after the first partial round, every 17 picks are exact.
        letters(&s, &list, 100);
        let p = letters(&s, &list, 17 * 10);
        for (ch, w) in [('A', 5), ('B', 3), ('C', 2), ('D', 7)] {
            assert_eq!(p.chars().filter(|c| *c == ch).count(), w * 10, "{ch}");
        }
    }

    #[test]
    fn weight0_overloaded_empty() {
        let s = Wrr::new();
        assert!(s.schedule(&[], &any_pkt()).is_none());
        s.update(&[]);
        assert!(s.schedule(&[], &any_pkt()).is_none());
        let list = build(&s, &[2, 0, 1]);
        let l = letters(&s, &list, 30);
        assert!(!l.contains('B') && l.contains('A') && l.contains('C'), "{l}");
        list[0].set_overloaded(true); // C
        assert_eq!(letters(&s, &list, 5), "AAAAA");
        list[2].set_overloaded(true); // A
        assert_eq!(letters(&s, &list, 3), "---");
        // All weights 0: mw = 0, nothing.
        let s = Wrr::new();
        let list = build(&s, &[0, 0]);
        assert_eq!(letters(&s, &list, 2), "--");
    }

    #[test]
    fn update_resets_cursor_and_phase() {
        let s = Wrr::new();
        let list = build(&s, &[2, 4, 6]); // di 2, mw 5
        letters(&s, &list, 4); // C B A, C at cw 5
        assert_eq!(cw(&s), 5);
        s.update(&list); // cw ≤ mw, di > 1: cw = (5/2)*2 + 1 = 5; cl = head
        assert_eq!(cw(&s), 5);
        assert_eq!(letters(&s, &list, 1), "C");
        // Raise the cap: cw 5 > new mw? no; an edit to weights 1 makes di 1 and mw 6.
        let e = list[2].config().weight(1);
        list[2].apply(&e);
        s.update(&list);
        assert_eq!(cw(&s), 5);
        // Lowering all weights below cw clamps cw to mw.
        for d in &list {
            d.apply(&d.config().weight(1));
        }
        s.update(&list);
        assert_eq!(cw(&s), 1);
        assert_eq!(letters(&s, &list, 3), "CBA");
    }
}
