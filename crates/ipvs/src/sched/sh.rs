//! Source hashing (`sh`, lvs-semantics.md §15): 256 buckets, each dest taking `weight`
//! consecutive buckets in list order, keyed by the source address (and port with sh-port).
//!
//! The table is rebuilt on every update, published with `ArcSwap` and read lock-free.

use std::net::IpAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::dest::Dest;
use crate::sched::hash::{addr_fold, hash_32};
use crate::sched::load::hash_port;
use crate::sched::{SchedFlags, SchedInput, Scheduler};

const TAB_BITS: u32 = 8;
const TAB_SIZE: usize = 1 << TAB_BITS;

#[derive(Default)]
struct ShTable {
    /// `TAB_SIZE` dests, or empty for an empty service.
    buckets: Vec<Arc<Dest>>,
}

impl std::fmt::Debug for ShTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShTable").field("filled", &!self.buckets.is_empty()).finish()
    }
}

#[derive(Debug, Default)]
pub struct Sh {
    /// sh-fallback (flag-1): probe other buckets when the hashed dest is unavailable.
    fallback: bool,
    /// sh-port (flag-2): hash the source port too.
    port: bool,
    table: ArcSwap<ShTable>,
}

/// `ip_vs_sh_hashkey`: `(offset + hash_32(ntohs(port) + ntohl(addr_fold), 8)) & 255`.
pub fn sh_hashkey(addr: &IpAddr, port: u16, offset: u32) -> usize {
    (offset.wrapping_add(hash_32((port as u32).wrapping_add(addr_fold(addr)), TAB_BITS)) as usize) & (TAB_SIZE - 1)
}

fn unavailable(d: &Dest) -> bool {
    d.weight() <= 0 || d.is_overloaded()
}

impl Sh {
    pub fn new(flags: SchedFlags) -> Self {
        Sh { fallback: flags.flag1, port: flags.flag2, table: ArcSwap::default() }
    }
}

impl Scheduler for Sh {
    fn name(&self) -> &'static str {
        "sh"
    }

    fn update(&self, dests: &[Arc<Dest>]) {
        let mut buckets = Vec::new();
        if !dests.is_empty() {
            buckets.reserve(TAB_SIZE);
            let (mut p, mut count) = (0usize, 0i32);
            while buckets.len() < TAB_SIZE {
                let d = &dests[p];
                buckets.push(d.clone());
                count += 1;
                // A weight ≤ 0 still takes one bucket.
                if count >= d.weight() {
                    p = (p + 1) % dests.len();
                    count = 0;
                }
            }
        }
        self.table.store(Arc::new(ShTable { buckets }));
    }

    fn schedule(&self, _dests: &[Arc<Dest>], pkt: &SchedInput) -> Option<Arc<Dest>> {
        let table = self.table.load();
        if table.buckets.is_empty() {
            return None;
        }
        let port = hash_port(pkt, self.port);
        let ihash = sh_hashkey(&pkt.saddr, port, 0);
        let d = &table.buckets[ihash];
        if !unavailable(d) {
            return Some(d.clone());
        }
        if !self.fallback {
            return None;
        }
        // Probe (k + 2h) & 255 for k = 0..255: deterministic, starting from the hash.
        (0..TAB_SIZE as u32)
            .map(|k| &table.buckets[sh_hashkey(&pkt.saddr, port, (k + ihash as u32) % TAB_SIZE as u32)])
            .find(|d| !unavailable(d))
            .cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sched::load::testutil::*;

    fn from(saddr: &str, sport: u16) -> SchedInput {
        pkt(saddr, sport, "10.0.0.100")
    }

    fn ab(wa: i32, wb: i32, flags: SchedFlags) -> (Arc<Dest>, Arc<Dest>, Vec<Arc<Dest>>, Sh) {
        let (a, b) = (dest(1, wa), dest(2, wb));
        let list = kernel_list(&[a.clone(), b.clone()]);
        let s = Sh::new(flags);
        s.update(&list);
        (a, b, list, s)
    }

    #[test]
    fn worked_example_equal_weights() {
        // test-vectors.md §3: list B, A → buckets B, A, B, A…
        let (a, b, list, s) = ab(1, 1, SchedFlags::default());
        let pick = |c: &str| s.schedule(&list, &from(c, 80)).unwrap();
        assert!(Arc::ptr_eq(&pick("10.0.0.1"), &a)); // 39
        assert!(Arc::ptr_eq(&pick("10.0.0.2"), &a)); // 137
        assert!(Arc::ptr_eq(&pick("192.168.1.1"), &b)); // 136
        assert!(Arc::ptr_eq(&pick("203.0.113.7"), &b)); // 124
    }

    #[test]
    fn sh_port() {
        let flags = SchedFlags { flag2: true, ..Default::default() };
        let (a, b, list, s) = ab(1, 1, flags);
        // 10.0.0.1 port 80 → bucket 182 → B; port 0 → 39 → A.
        assert!(Arc::ptr_eq(&s.schedule(&list, &from("10.0.0.1", 80)).unwrap(), &b));
        assert!(Arc::ptr_eq(&s.schedule(&list, &from("10.0.0.1", 0)).unwrap(), &a));
        // Not TCP/UDP/SCTP: the port is not used.
        let mut icmp = from("10.0.0.1", 80);
        icmp.proto = 1;
        assert!(Arc::ptr_eq(&s.schedule(&list, &icmp).unwrap(), &a));
    }

    #[test]
    fn weighted_buckets() {
        // A = 2, B = 1, list B, A → B, A, A, B, A, A…; 10.0.0.1 → 39 (39 mod 3 = 0) → B.
        let (a, b, list, s) = ab(2, 1, SchedFlags::default());
        let t = s.table.load();
        for (i, d) in t.buckets.iter().enumerate() {
            let want = if i % 3 == 0 { &b } else { &a };
            assert!(Arc::ptr_eq(d, want), "bucket {i}");
        }
        assert!(Arc::ptr_eq(&s.schedule(&list, &from("10.0.0.1", 1)).unwrap(), &b));
    }

    #[test]
    fn weight0_keeps_bucket_no_fallback() {
        let (a, _b, list, s) = ab(1, 1, SchedFlags::default());
        a.apply(&a.config().weight(0));
        s.update(&list); // rebuilt: A still gets its one bucket per round
        assert!(s.schedule(&list, &from("10.0.0.1", 0)).is_none());
        a.apply(&a.config().weight(1));
        s.update(&list);
        a.set_overloaded(true);
        assert!(s.schedule(&list, &from("10.0.0.1", 0)).is_none());
    }

    #[test]
    fn fallback_probe_order() {
        // For h = 39 the probes are buckets 78, 79, 80, … ((k + 2h) & 255).
        let probes: Vec<usize> = (0..4).map(|k| sh_hashkey(&"10.0.0.1".parse().unwrap(), 0, (k + 39) % 256)).collect();
        assert_eq!(probes, [78, 79, 80, 81]);
        // Three dests C, B, A (w 1): buckets i%3 → C, B, A. Bucket 39 → C; probes 78 → C
        // (unavailable), 79 → B.
        let (a, b, c) = (dest(1, 1), dest(2, 1), dest(3, 1));
        let list = kernel_list(&[a.clone(), b.clone(), c.clone()]);
        let s = Sh::new(SchedFlags { flag1: true, ..Default::default() });
        s.update(&list);
        assert!(Arc::ptr_eq(&s.schedule(&list, &from("10.0.0.1", 0)).unwrap(), &c));
        c.set_overloaded(true);
        assert!(Arc::ptr_eq(&s.schedule(&list, &from("10.0.0.1", 0)).unwrap(), &b));
        b.set_overloaded(true);
        // 78 C, 79 B, 80 A
        assert!(Arc::ptr_eq(&s.schedule(&list, &from("10.0.0.1", 0)).unwrap(), &a));
        a.set_overloaded(true);
        assert!(s.schedule(&list, &from("10.0.0.1", 0)).is_none());
    }

    #[test]
    fn empty() {
        let s = Sh::new(SchedFlags::default());
        assert!(s.schedule(&[], &from("10.0.0.1", 0)).is_none());
        s.update(&[]);
        assert!(s.schedule(&[], &from("10.0.0.1", 0)).is_none());
    }
}
