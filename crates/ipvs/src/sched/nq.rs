//! Never queue (`nq`, lvs-semantics.md §15): the first eligible dest with no active connection
//! at once, otherwise the minimum of `(active + 1)/weight` (sed).

use std::sync::Arc;

use crate::dest::Dest;
use crate::sched::load::{active_plus_one, eligible, less_loaded};
use crate::sched::{SchedInput, Scheduler};

#[derive(Debug, Default)]
pub struct Nq;

impl Scheduler for Nq {
    fn name(&self) -> &'static str {
        "nq"
    }

    fn update(&self, _dests: &[Arc<Dest>]) {}

    fn schedule(&self, dests: &[Arc<Dest>], _pkt: &SchedInput) -> Option<Arc<Dest>> {
        let mut least: Option<(&Arc<Dest>, u64)> = None;
        for d in dests.iter().filter(|d| eligible(d)) {
            if d.activeconns() == 0 {
                return Some(d.clone());
            }
            let doh = active_plus_one(d);
            if least.is_none_or(|(l, loh)| less_loaded(doh, d.weight(), loh, l.weight())) {
                least = Some((d, doh));
            }
        }
        least.map(|(d, _)| d.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sched::load::testutil::*;

    #[test]
    fn first_idle_dest_at_once() {
        let list = vec![dest(1, 1), dest(2, 1), dest(3, 100)];
        list[0].set_conns(3, 0);
        list[1].set_conns(0, 50); // idle (no active), light weight: still taken first
        assert_eq!(pos(&list, &Nq.schedule(&list, &any_pkt()).unwrap()), 1);
    }

    #[test]
    fn otherwise_shortest_expected_delay() {
        let list = vec![dest(1, 1), dest(2, 3), dest(3, 2)];
        list[0].set_conns(1, 0); // 2/1
        list[1].set_conns(5, 0); // 6/3 = 2: tie, not better
        list[2].set_conns(2, 0); // 3/2 < 2
        assert_eq!(pos(&list, &Nq.schedule(&list, &any_pkt()).unwrap()), 2);
        list[2].set_conns(3, 0); // 4/2 = 2: tie → first
        assert_eq!(pos(&list, &Nq.schedule(&list, &any_pkt()).unwrap()), 0);
    }

    #[test]
    fn weight0_overloaded_empty() {
        assert!(Nq.schedule(&[], &any_pkt()).is_none());
        let list = vec![dest(1, 0), dest(2, 1), dest(3, 1)];
        list[1].set_overloaded(true);
        list[2].set_conns(9, 0);
        // The idle weight-0 and the idle overloaded dests are skipped.
        assert_eq!(pos(&list, &Nq.schedule(&list, &any_pkt()).unwrap()), 2);
        list[2].set_overloaded(true);
        assert!(Nq.schedule(&list, &any_pkt()).is_none());
    }
}
