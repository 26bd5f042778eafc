//! Weighted overflow (`ovf`, lvs-semantics.md §15): the highest weight among eligible dests
//! whose active connections do not exceed their weight; the first of equals wins.

use std::sync::Arc;

use crate::dest::Dest;
use crate::sched::{SchedInput, Scheduler};

#[derive(Debug, Default)]
pub struct Ovf;

impl Scheduler for Ovf {
    fn name(&self) -> &'static str {
        "ovf"
    }

    fn update(&self, _dests: &[Arc<Dest>]) {}

    fn schedule(&self, dests: &[Arc<Dest>], _pkt: &SchedInput) -> Option<Arc<Dest>> {
        let mut best: Option<(&Arc<Dest>, i32)> = None;
        for d in dests {
            let w = d.weight();
            if d.is_overloaded() || w <= 0 || d.activeconns() as i64 > w as i64 {
                continue;
            }
            if best.is_none_or(|(_, bw)| w > bw) {
                best = Some((d, w));
            }
        }
        best.map(|(d, _)| d.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sched::load::testutil::*;

    #[test]
    fn overflows_to_next_weight_when_full() {
        let list = vec![dest(1, 2), dest(2, 5), dest(3, 5)];
        assert_eq!(pos(&list, &Ovf.schedule(&list, &any_pkt()).unwrap()), 1);
        list[1].set_conns(5, 0); // active == weight: still allowed
        assert_eq!(pos(&list, &Ovf.schedule(&list, &any_pkt()).unwrap()), 1);
        list[1].set_conns(6, 0); // over its weight → the next 5
        assert_eq!(pos(&list, &Ovf.schedule(&list, &any_pkt()).unwrap()), 2);
        list[2].set_conns(6, 100);
        assert_eq!(pos(&list, &Ovf.schedule(&list, &any_pkt()).unwrap()), 0);
        list[0].set_conns(3, 0);
        assert!(Ovf.schedule(&list, &any_pkt()).is_none());
    }

    #[test]
    fn weight0_overloaded_empty() {
        assert!(Ovf.schedule(&[], &any_pkt()).is_none());
        let list = vec![dest(1, 0), dest(2, 1), dest(3, 4)];
        list[2].set_overloaded(true);
        assert_eq!(pos(&list, &Ovf.schedule(&list, &any_pkt()).unwrap()), 1);
        list[1].set_overloaded(true);
        assert!(Ovf.schedule(&list, &any_pkt()).is_none());
    }
}
