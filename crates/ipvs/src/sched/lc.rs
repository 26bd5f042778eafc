//! Least connection (`lc`, lvs-semantics.md §15): the minimum overhead among eligible dests,
//! weights otherwise ignored; the first minimum (newest dest) wins.

use std::sync::Arc;

use crate::dest::Dest;
use crate::sched::load::eligible;
use crate::sched::{SchedInput, Scheduler};

#[derive(Debug, Default)]
pub struct Lc;

impl Scheduler for Lc {
    fn name(&self) -> &'static str {
        "lc"
    }

    fn update(&self, _dests: &[Arc<Dest>]) {}

    fn schedule(&self, dests: &[Arc<Dest>], _pkt: &SchedInput) -> Option<Arc<Dest>> {
        let mut least: Option<(&Arc<Dest>, u64)> = None;
        for d in dests.iter().filter(|d| eligible(d)) {
            let doh = d.overhead();
            if least.is_none_or(|(_, loh)| doh < loh) {
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
    fn sequence_with_open_connections() {
        // test-vectors.md §8: A, B, C (w 1), each pick opens a connection → C, B, A, C, B, A
        let list = kernel_list(&[dest(1, 1), dest(2, 1), dest(3, 1)]);
        let s = Lc;
        let mut got = vec![];
        for _ in 0..6 {
            let d = s.schedule(&list, &any_pkt()).unwrap();
            d.set_conns(d.activeconns() + 1, d.inactconns());
            got.push(pos(&list, &d));
        }
        assert_eq!(got, [0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn ignores_weight_value_and_skips_ineligible() {
        let list = vec![dest(1, 100), dest(2, 1), dest(3, 0), dest(4, 1)];
        list[0].set_conns(1, 0); // 256
        list[1].set_conns(0, 10); // 10
        list[2].set_conns(0, 0); // weight 0: never
        list[3].set_conns(0, 5); // 5 but overloaded
        list[3].set_overloaded(true);
        assert_eq!(pos(&list, &Lc.schedule(&list, &any_pkt()).unwrap()), 1);
        list[1].set_overloaded(true);
        assert_eq!(pos(&list, &Lc.schedule(&list, &any_pkt()).unwrap()), 0);
        list[0].set_overloaded(true);
        assert!(Lc.schedule(&list, &any_pkt()).is_none());
        assert!(Lc.schedule(&[], &any_pkt()).is_none());
    }
}
