//! Destination hashing (`dh`, lvs-semantics.md §15): 256 buckets filled round robin over the
//! list, keyed by `hash_32(ntohl(daddr), 8)`.
//!
//! The kernel rebuilds on add and delete only, not on weight edits. The fill depends only on
//! the list order, so `update` rebuilds exactly when the list (by identity and order) changed;
//! the table is published with `ArcSwap` and read lock-free.

use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::dest::Dest;
use crate::sched::hash::{addr_fold, hash_32};
use crate::sched::load::ident;
use crate::sched::{SchedInput, Scheduler};

const TAB_BITS: u32 = 8;
const TAB_SIZE: usize = 1 << TAB_BITS;

#[derive(Default)]
struct DhTable {
    /// The list the table was built from.
    idents: Vec<usize>,
    /// `TAB_SIZE` dests, or empty for an empty service.
    buckets: Vec<Arc<Dest>>,
}

impl std::fmt::Debug for DhTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DhTable").field("dests", &self.idents.len()).finish()
    }
}

#[derive(Debug, Default)]
pub struct Dh {
    table: ArcSwap<DhTable>,
}

impl Dh {
    pub fn new() -> Self {
        Self::default()
    }

    /// The bucket of a destination address.
    pub fn bucket(daddr: &std::net::IpAddr) -> usize {
        hash_32(addr_fold(daddr), TAB_BITS) as usize
    }
}

impl Scheduler for Dh {
    fn name(&self) -> &'static str {
        "dh"
    }

    fn update(&self, dests: &[Arc<Dest>]) {
        let idents: Vec<usize> = dests.iter().map(ident).collect();
        if self.table.load().idents == idents {
            return; // an edit: the kernel keeps the table
        }
        let buckets =
            if dests.is_empty() { Vec::new() } else { (0..TAB_SIZE).map(|i| dests[i % dests.len()].clone()).collect() };
        self.table.store(Arc::new(DhTable { idents, buckets }));
    }

    fn schedule(&self, _dests: &[Arc<Dest>], pkt: &SchedInput) -> Option<Arc<Dest>> {
        let table = self.table.load();
        let d = table.buckets.get(Self::bucket(&pkt.daddr))?;
        if !d.is_available() || d.weight() <= 0 || d.is_overloaded() {
            return None;
        }
        Some(d.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sched::load::testutil::*;

    fn to(daddr: &str) -> SchedInput {
        pkt("198.51.100.7", 1234, daddr)
    }

    #[test]
    fn round_robin_buckets_by_destination() {
        // List B, A: even buckets → B, odd → A (test-vectors.md §3).
        let (a, b) = (dest(1, 1), dest(2, 5));
        let list = kernel_list(&[a.clone(), b.clone()]);
        let s = Dh::new();
        s.update(&list);
        let pick = |d: &str| s.schedule(&list, &to(d)).unwrap();
        assert!(Arc::ptr_eq(&pick("10.0.0.1"), &a)); // 39
        assert!(Arc::ptr_eq(&pick("10.0.0.2"), &a)); // 137
        assert!(Arc::ptr_eq(&pick("192.168.1.1"), &b)); // 136
        assert!(Arc::ptr_eq(&pick("203.0.113.7"), &b)); // 124
        // Same key, same dest, whatever the source.
        let p2 = s.schedule(&list, &pkt("203.0.113.99", 9, "10.0.0.1")).unwrap();
        assert!(Arc::ptr_eq(&p2, &a));
    }

    #[test]
    fn weight_edit_keeps_table_but_refuses() {
        let (a, b) = (dest(1, 1), dest(2, 1));
        let list = kernel_list(&[a.clone(), b.clone()]);
        let s = Dh::new();
        s.update(&list);
        let before = Arc::as_ptr(&s.table.load_full());
        a.apply(&a.config().weight(0));
        s.update(&list);
        assert_eq!(before, Arc::as_ptr(&s.table.load_full()), "not rebuilt on an edit");
        // 10.0.0.1 still maps to A, which is now refused (no fallback in dh).
        assert!(s.schedule(&list, &to("10.0.0.1")).is_none());
        assert!(Arc::ptr_eq(&s.schedule(&list, &to("192.168.1.1")).unwrap(), &b));
        b.set_overloaded(true);
        assert!(s.schedule(&list, &to("192.168.1.1")).is_none());
        b.set_overloaded(false);
        b.set_available(false);
        assert!(s.schedule(&list, &to("192.168.1.1")).is_none());
    }

    #[test]
    fn rebuilt_on_delete_and_empty() {
        let (a, b) = (dest(1, 1), dest(2, 1));
        let s = Dh::new();
        assert!(s.schedule(&[], &to("10.0.0.1")).is_none());
        s.update(&kernel_list(&[a.clone(), b.clone()]));
        s.update(std::slice::from_ref(&b));
        assert!(Arc::ptr_eq(&s.schedule(&[], &to("10.0.0.1")).unwrap(), &b));
        s.update(&[]);
        assert!(s.schedule(&[], &to("10.0.0.1")).is_none());
    }
}
