//! Weighted least connection (`wlc`, the default scheduler; lvs-semantics.md §15): the minimum
//! overhead/weight, compared by cross-multiplication; ties keep the newer dest.

use std::sync::Arc;

use crate::dest::Dest;
use crate::sched::load::weighted_least;
use crate::sched::{SchedInput, Scheduler};

#[derive(Debug, Default)]
pub struct Wlc;

impl Scheduler for Wlc {
    fn name(&self) -> &'static str {
        "wlc"
    }

    fn update(&self, _dests: &[Arc<Dest>]) {}

    fn schedule(&self, dests: &[Arc<Dest>], _pkt: &SchedInput) -> Option<Arc<Dest>> {
        weighted_least(dests, Dest::overhead).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sched::load::testutil::*;

    #[test]
    fn sequence_with_open_connections() {
        let list = kernel_list(&[dest(1, 1), dest(2, 1), dest(3, 1)]);
        let mut got = vec![];
        for _ in 0..6 {
            let d = Wlc.schedule(&list, &any_pkt()).unwrap();
            d.set_conns(d.activeconns() + 1, d.inactconns());
            got.push(pos(&list, &d));
        }
        assert_eq!(got, [0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn keeps_overhead_per_weight_balanced() {
        let list = vec![dest(1, 1), dest(2, 3), dest(3, 6)];
        for _ in 0..1000 {
            let d = Wlc.schedule(&list, &any_pkt()).unwrap();
            d.set_conns(d.activeconns() + 1, d.inactconns());
        }
        // 1000 connections over weights 1:3:6 → 100 : 300 : 600, each within one connection.
        for (d, want) in list.iter().zip([100i64, 300, 600]) {
            assert!((d.activeconns() as i64 - want).abs() <= 1, "{}", d.activeconns());
        }
    }

    #[test]
    fn inactive_counts_a_256th() {
        let list = vec![dest(1, 1), dest(2, 1)];
        list[0].set_conns(1, 0); // 256
        list[1].set_conns(0, 255); // 255
        assert_eq!(pos(&list, &Wlc.schedule(&list, &any_pkt()).unwrap()), 1);
        list[1].set_conns(0, 256); // tie → the first
        assert_eq!(pos(&list, &Wlc.schedule(&list, &any_pkt()).unwrap()), 0);
    }

    #[test]
    fn weight0_overloaded_empty() {
        assert!(Wlc.schedule(&[], &any_pkt()).is_none());
        let list = vec![dest(1, 0), dest(2, 1), dest(3, 1)];
        list[1].set_conns(50, 0);
        list[2].set_conns(10, 0);
        list[2].set_overloaded(true);
        // Weight 0 with no connections is never chosen; the overloaded idler is skipped.
        assert_eq!(pos(&list, &Wlc.schedule(&list, &any_pkt()).unwrap()), 1);
        list[1].set_overloaded(true);
        assert!(Wlc.schedule(&list, &any_pkt()).is_none());
    }
}
