//! Shortest expected delay (`sed`, lvs-semantics.md §15): wlc with overhead `activeconns + 1`.

use std::sync::Arc;

use crate::dest::Dest;
use crate::sched::load::{active_plus_one, weighted_least};
use crate::sched::{SchedInput, Scheduler};

#[derive(Debug, Default)]
pub struct Sed;

impl Scheduler for Sed {
    fn name(&self) -> &'static str {
        "sed"
    }

    fn update(&self, _dests: &[Arc<Dest>]) {}

    fn schedule(&self, dests: &[Arc<Dest>], _pkt: &SchedInput) -> Option<Arc<Dest>> {
        weighted_least(dests, active_plus_one).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sched::load::testutil::*;

    #[test]
    fn expected_delay_ignores_inactive() {
        let list = vec![dest(1, 1), dest(2, 2)];
        list[0].set_conns(0, 1000); // (0+1)/1 = 1
        list[1].set_conns(1, 0); // (1+1)/2 = 1: tie → first
        assert_eq!(pos(&list, &Sed.schedule(&list, &any_pkt()).unwrap()), 0);
        list[1].set_conns(0, 0); // 1/2 < 1
        assert_eq!(pos(&list, &Sed.schedule(&list, &any_pkt()).unwrap()), 1);
    }

    #[test]
    fn idle_heavy_dest_wins_over_idle_light() {
        // Unlike nq, sed does not return the first idle dest: 1/4 beats 1/1.
        let list = vec![dest(1, 1), dest(2, 4)];
        assert_eq!(pos(&list, &Sed.schedule(&list, &any_pkt()).unwrap()), 1);
    }

    #[test]
    fn weight0_overloaded_empty() {
        assert!(Sed.schedule(&[], &any_pkt()).is_none());
        let list = vec![dest(1, 0), dest(2, 1), dest(3, 5)];
        list[2].set_overloaded(true);
        assert_eq!(pos(&list, &Sed.schedule(&list, &any_pkt()).unwrap()), 1);
        list[1].set_overloaded(true);
        assert!(Sed.schedule(&list, &any_pkt()).is_none());
    }
}
