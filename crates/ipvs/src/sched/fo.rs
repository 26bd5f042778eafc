//! Weighted failover (`fo`, lvs-semantics.md §15): the highest weight among eligible dests;
//! strictly greater, so the first (newest) of equal weights wins.

use std::sync::Arc;

use crate::dest::Dest;
use crate::sched::{SchedInput, Scheduler};

#[derive(Debug, Default)]
pub struct Fo;

impl Scheduler for Fo {
    fn name(&self) -> &'static str {
        "fo"
    }

    fn update(&self, _dests: &[Arc<Dest>]) {}

    fn schedule(&self, dests: &[Arc<Dest>], _pkt: &SchedInput) -> Option<Arc<Dest>> {
        let mut hw = 0;
        let mut best = None;
        for d in dests.iter().filter(|d| !d.is_overloaded()) {
            let w = d.weight();
            if w > hw {
                hw = w;
                best = Some(d);
            }
        }
        best.cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sched::load::testutil::*;

    #[test]
    fn highest_weight_first_of_equals() {
        let list = vec![dest(1, 5), dest(2, 9), dest(3, 9), dest(4, 1)];
        list[1].set_conns(1000, 0); // load is ignored
        assert_eq!(pos(&list, &Fo.schedule(&list, &any_pkt()).unwrap()), 1);
        list[1].set_overloaded(true);
        assert_eq!(pos(&list, &Fo.schedule(&list, &any_pkt()).unwrap()), 2);
    }

    #[test]
    fn weight0_overloaded_empty() {
        assert!(Fo.schedule(&[], &any_pkt()).is_none());
        let list = vec![dest(1, 0), dest(2, 3)];
        list[1].set_overloaded(true);
        assert!(Fo.schedule(&list, &any_pkt()).is_none());
        list[1].set_overloaded(false);
        assert_eq!(pos(&list, &Fo.schedule(&list, &any_pkt()).unwrap()), 1);
    }
}
