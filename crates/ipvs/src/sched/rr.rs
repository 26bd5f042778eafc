//! Round robin (`rr`, lvs-semantics.md §15).
//!
//! The kernel keeps a cursor on a list node (or the list head) under a spinlock. Here the cursor
//! is a position in the list the mark was built for (0 = head, i + 1 = `dests[i]`), advanced by
//! compare-and-swap so workers never block. Every `update` builds a new mark that carries the
//! cursor over to the same dest in the new list; if that dest was deleted, it moves to the dest
//! before it, as the kernel's `ip_vs_rr_del_dest` does.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::AcqRel, Ordering::Acquire};

use arc_swap::ArcSwap;
use std::collections::HashMap;

use crate::dest::Dest;
use crate::sched::load::{eligible, ident};
use crate::sched::{SchedInput, Scheduler};

#[derive(Debug, Default)]
struct RrMark {
    /// Identities of the list this mark is for (control plane only).
    idents: Vec<usize>,
    /// 0 = list head, i + 1 = `dests[i]`.
    cursor: AtomicUsize,
}

#[derive(Debug, Default)]
pub struct Rr {
    mark: ArcSwap<RrMark>,
}

impl Rr {
    pub fn new() -> Self {
        Self::default()
    }
}

impl Scheduler for Rr {
    fn name(&self) -> &'static str {
        "rr"
    }

    fn update(&self, dests: &[Arc<Dest>]) {
        let old = self.mark.load();
        let idents: Vec<usize> = dests.iter().map(ident).collect();
        let index: HashMap<usize, usize> = idents.iter().enumerate().map(|(i, p)| (*p, i)).collect();
        let cur = old.cursor.load(Acquire);
        // Walk back from the old cursor to the first dest still present.
        let cursor =
            old.idents[..cur.min(old.idents.len())].iter().rev().find_map(|p| index.get(p)).map_or(0, |i| i + 1);
        self.mark.store(Arc::new(RrMark { idents, cursor: AtomicUsize::new(cursor) }));
    }

    fn schedule(&self, dests: &[Arc<Dest>], _pkt: &SchedInput) -> Option<Arc<Dest>> {
        let n = dests.len();
        if n == 0 {
            return None;
        }
        let mark = self.mark.load();
        let mut cur = mark.cursor.load(Acquire);
        loop {
            // A cursor beyond this list (a worker still holding an older list) restarts at head.
            let start = if cur > n { 0 } else { cur };
            let idx = (0..n).map(|k| (start + k) % n).find(|&i| eligible(&dests[i]))?;
            match mark.cursor.compare_exchange_weak(cur, idx + 1, AcqRel, Acquire) {
                Ok(_) => return Some(dests[idx].clone()),
                Err(now) => cur = now,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sched::load::testutil::*;
    use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

    fn picks(s: &Rr, list: &[Arc<Dest>], k: usize) -> Vec<usize> {
        (0..k).map(|_| pos(list, &s.schedule(list, &any_pkt()).expect("a dest"))).collect()
    }

    #[test]
    fn sequence_c_b_a() {
        // test-vectors.md §8: A, B, C added → C, B, A, C, B, A
        let (a, b, c) = (dest(1, 1), dest(2, 1), dest(3, 1));
        let s = Rr::new();
        let mut added = vec![];
        for d in [&a, &b, &c] {
            added.push(d.clone());
            s.update(&kernel_list(&added));
        }
        let list = kernel_list(&added);
        assert!(Arc::ptr_eq(&list[0], &c));
        assert_eq!(picks(&s, &list, 6), [0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn weight0_overloaded_empty() {
        let s = Rr::new();
        assert!(s.schedule(&[], &any_pkt()).is_none());
        let list = vec![dest(1, 0), dest(2, 1), dest(3, 1)];
        list[2].set_overloaded(true);
        s.update(&list);
        assert_eq!(picks(&s, &list, 4), [1, 1, 1, 1]);
        list[1].set_overloaded(true);
        assert!(s.schedule(&list, &any_pkt()).is_none());
    }

    #[test]
    fn cursor_survives_add_and_moves_back_on_delete() {
        let (a, b, c, d) = (dest(1, 1), dest(2, 1), dest(3, 1), dest(4, 1));
        let s = Rr::new();
        let list = vec![c.clone(), b.clone(), a.clone()];
        s.update(&list);
        assert_eq!(picks(&s, &list, 2), [0, 1]); // C, B; cursor on B
        // Add D at the head: the cursor stays on B, so A comes next, then D.
        let list = vec![d.clone(), c.clone(), b.clone(), a.clone()];
        s.update(&list);
        assert_eq!(picks(&s, &list, 3), [3, 0, 1]); // A, D, C; cursor on C
        // Delete C (the cursor): it moves to D (the one before), so B is next.
        let list = vec![d.clone(), b.clone(), a.clone()];
        s.update(&list);
        assert!(Arc::ptr_eq(&s.schedule(&list, &any_pkt()).unwrap(), &b));
        // Delete the first dest while the cursor is on it: back to the head.
        s.update(&list);
        let p = s.schedule(&list, &any_pkt()).unwrap(); // A
        assert!(Arc::ptr_eq(&p, &a));
        let p = s.schedule(&list, &any_pkt()).unwrap(); // D
        assert!(Arc::ptr_eq(&p, &d));
        let list = vec![b.clone(), a.clone()];
        s.update(&list);
        assert!(Arc::ptr_eq(&s.schedule(&list, &any_pkt()).unwrap(), &b));
    }

    #[test]
    fn concurrent_schedule_during_updates() {
        // 4 workers schedule while the control plane swaps lists; every pick must be an
        // eligible member of the list the worker passed.
        let pool: Vec<Arc<Dest>> = (1..=8).map(|n| dest(n, 1)).collect();
        let zero = dest(100, 0);
        let over = dest(101, 1);
        over.set_overloaded(true);
        let make = |k: usize| -> Arc<Vec<Arc<Dest>>> {
            let mut v: Vec<Arc<Dest>> = pool.iter().take(1 + k % pool.len()).cloned().collect();
            v.insert(k % v.len(), zero.clone());
            v.push(over.clone());
            Arc::new(v)
        };
        let s = Arc::new(Rr::new());
        let first = make(0);
        s.update(&first);
        let current = Arc::new(ArcSwap::new(first));
        let stop = Arc::new(AtomicBool::new(false));
        let workers: Vec<_> = (0..4)
            .map(|_| {
                let (s, current, stop) = (s.clone(), current.clone(), stop.clone());
                std::thread::spawn(move || {
                    let mut n = 0u64;
                    while !stop.load(Relaxed) || n < 1000 {
                        let list = current.load_full();
                        let p = s.schedule(&list, &any_pkt()).expect("eligible dests exist");
                        assert!(list.iter().any(|d| Arc::ptr_eq(d, &p)));
                        assert!(p.weight() > 0 && !p.is_overloaded());
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        for k in 1..2000 {
            let next = make(k);
            s.update(&next);
            current.store(next);
        }
        stop.store(true, Relaxed);
        for w in workers {
            assert!(w.join().expect("worker did not panic") >= 1000);
        }
    }

    #[test]
    fn concurrent_picks_stay_balanced() {
        // With a fixed list, every successful CAS advances the cursor by one dest.
        let list = Arc::new((1..=4).map(|n| dest(n, 1)).collect::<Vec<_>>());
        let s = Arc::new(Rr::new());
        s.update(&list);
        let workers: Vec<_> = (0..4)
            .map(|_| {
                let (s, list) = (s.clone(), list.clone());
                std::thread::spawn(move || {
                    let mut counts = [0usize; 4];
                    for _ in 0..10_000 {
                        counts[pos(&list, &s.schedule(&list, &any_pkt()).unwrap())] += 1;
                    }
                    counts
                })
            })
            .collect();
        let mut total = [0usize; 4];
        for w in workers {
            for (t, c) in total.iter_mut().zip(w.join().unwrap()) {
                *t += c;
            }
        }
        assert_eq!(total, [10_000; 4]);
    }
}
