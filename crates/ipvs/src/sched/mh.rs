//! Maglev hashing (`mh`, lvs-semantics.md §15 "mh (Maglev hashing), exact").
//!
//! `update` runs the kernel's permutation and fill over the whole list and publishes the table
//! with `ArcSwap`; `schedule` reads it lock-free. Weights are `last_weight`, so a dest edited to
//! weight 0 keeps its slots and its clients get no dest (or a fallback).

use std::net::IpAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::dest::Dest;
use crate::sched::hash::{HsipKey, addr_fold, hsiphash_u32};
use crate::sched::load::{gcd, hash_port};
use crate::sched::{SchedFlags, SchedInput, Scheduler};

/// Table size: the prime of `CONFIG_IP_VS_MH_TAB_INDEX` = 12.
pub const MH_TAB_SIZE: usize = 4093;
/// `IP_VS_MH_TAB_BITS` = index / 2.
const TAB_BITS: i32 = 6;

/// Fixed keys, not random (the kernel's `generate_hash_secret`).
pub const HASH1: HsipKey = [2654435761, 2654435761];
pub const HASH2: HsipKey = [2654446892, 2654446892];

const EMPTY: u32 = u32::MAX;

/// `ip_vs_mh_hashkey`: hsiphash of `offset + ntohs(port) + ntohl(addr_fold)` as a u32.
pub fn mh_hashkey(addr: &IpAddr, port: u16, key: &HsipKey, offset: u32) -> u32 {
    let v = offset.wrapping_add(port as u32).wrapping_add(addr_fold(addr));
    hsiphash_u32(v, key)
}

/// `(gcd, rshift, turns)` from the last weights in list order.
pub fn mh_turns(last_weights: &[i32]) -> (i32, u32, Vec<i32>) {
    let g = last_weights.iter().filter(|w| **w > 0).fold(0, |g, &w| if g > 0 { gcd(w, g) } else { w });
    if g < 1 {
        return (0, 0, vec![0; last_weights.len()]);
    }
    let mw = last_weights.iter().copied().fold(0, i32::max) / g;
    let fls = 32 - (mw as u32).leading_zeros() as i32;
    let rshift = (fls - TAB_BITS).max(0) as u32;
    let turns = last_weights
        .iter()
        .map(|&lw| {
            let t = (lw / g) >> rshift;
            if t != 0 { t } else { (lw != 0) as i32 }
        })
        .collect();
    (g, rshift, turns)
}

struct MhTable {
    dests: Vec<Arc<Dest>>,
    /// `MH_TAB_SIZE` indexes into `dests`, or empty when no dest has a weight.
    slots: Vec<u32>,
}

impl std::fmt::Debug for MhTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MhTable").field("dests", &self.dests.len()).field("filled", &!self.slots.is_empty()).finish()
    }
}

impl MhTable {
    fn empty() -> Self {
        MhTable { dests: Vec::new(), slots: Vec::new() }
    }

    /// `ip_vs_mh_permutate` + `ip_vs_mh_populate`.
    fn build(dests: &[Arc<Dest>]) -> Self {
        let lws: Vec<i32> = dests.iter().map(|d| d.last_weight()).collect();
        let (g, _, turns) = mh_turns(&lws);
        if g < 1 {
            return MhTable::empty();
        }
        let m = MH_TAB_SIZE as u32;
        let mut perm: Vec<(u32, u32)> = dests
            .iter()
            .map(|d| {
                let offset = mh_hashkey(&d.addr, d.port, &HASH1, 0) % m;
                let skip = mh_hashkey(&d.addr, d.port, &HASH2, 0) % (m - 1) + 1;
                (offset, skip)
            })
            .collect();
        let mut slots = vec![EMPTY; MH_TAB_SIZE];
        let mut n = 0;
        // g ≥ 1 means some dest has turns ≥ 1, so every pass claims at least one slot.
        'fill: loop {
            for (i, t) in turns.iter().enumerate() {
                for _ in 0..*t {
                    let (p, skip) = &mut perm[i];
                    while slots[*p as usize] != EMPTY {
                        *p += *skip;
                        if *p >= m {
                            *p -= m;
                        }
                    }
                    slots[*p as usize] = i as u32;
                    n += 1;
                    if n == MH_TAB_SIZE {
                        break 'fill;
                    }
                }
            }
        }
        MhTable { dests: dests.to_vec(), slots }
    }

    fn at(&self, slot: u32) -> Option<&Arc<Dest>> {
        let i = *self.slots.get(slot as usize)?;
        self.dests.get(i as usize)
    }
}

fn unavailable(d: &Dest) -> bool {
    d.weight() <= 0 || d.is_overloaded()
}

#[derive(Debug)]
pub struct Mh {
    /// mh-fallback (flag-1).
    fallback: bool,
    /// mh-port (flag-2).
    port: bool,
    table: ArcSwap<MhTable>,
}

impl Mh {
    pub fn new(flags: SchedFlags) -> Self {
        Mh { fallback: flags.flag1, port: flags.flag2, table: ArcSwap::from_pointee(MhTable::empty()) }
    }
}

impl Scheduler for Mh {
    fn name(&self) -> &'static str {
        "mh"
    }

    fn max_dests(&self) -> Option<usize> {
        Some(MH_TAB_SIZE)
    }

    fn update(&self, dests: &[Arc<Dest>]) {
        if dests.len() > MH_TAB_SIZE {
            // The kernel refuses the add with EINVAL (see `max_dests`); if the caller did not
            // check, keep the last good table rather than build an impossible one.
            return;
        }
        self.table.store(Arc::new(MhTable::build(dests)));
    }

    fn schedule(&self, _dests: &[Arc<Dest>], pkt: &SchedInput) -> Option<Arc<Dest>> {
        let table = self.table.load();
        let m = MH_TAB_SIZE as u32;
        let port = hash_port(pkt, self.port);
        let ihash = mh_hashkey(&pkt.saddr, port, &HASH1, 0) % m;
        let d = table.at(ihash)?;
        if !unavailable(d) {
            return Some(d.clone());
        }
        if !self.fallback {
            return None;
        }
        for k in 0..m {
            let r = (ihash + k) % m;
            let d = table.at(mh_hashkey(&pkt.saddr, port, &HASH1, r) % m)?;
            if !unavailable(d) {
                return Some(d.clone());
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dest::DestConfig;
    use crate::sched::load::testutil::*;

    fn d(last: u8, w: i32) -> Arc<Dest> {
        let addr: IpAddr = format!("192.168.10.{last}").parse().unwrap();
        Arc::new(Dest::new(&DestConfig::new(addr, 80).weight(w)))
    }

    fn counts(s: &Mh, list: &[Arc<Dest>]) -> Vec<usize> {
        let t = s.table.load();
        let mut c = vec![0; list.len()];
        for i in t.slots.iter() {
            let x = &t.dests[*i as usize];
            c[pos(list, x)] += 1;
        }
        c
    }

    fn three(w: [i32; 3], flags: SchedFlags) -> (Vec<Arc<Dest>>, Mh) {
        let added = [d(1, w[0]), d(2, w[1]), d(3, w[2])];
        let s = Mh::new(flags);
        for k in 1..=3 {
            s.update(&kernel_list(&added[..k]));
        }
        (kernel_list(&added), s)
    }

    fn client(a: &str) -> SchedInput {
        pkt(a, 40000, "10.0.0.100")
    }

    #[test]
    fn offsets_and_skips() {
        // test-vectors.md §5
        let rows = [
            ("192.168.10.3", 0xfcc8ed86u32, 0x07399fe7u32, 3093, 3776),
            ("192.168.10.2", 0xe48ccbf1, 0x66667d2c, 3679, 3377),
            ("192.168.10.1", 0x93997a7f, 0x27e8d3fa, 3189, 175),
        ];
        for (a, h1, h2, off, skip) in rows {
            let addr: IpAddr = a.parse().unwrap();
            assert_eq!(mh_hashkey(&addr, 80, &HASH1, 0), h1, "{a}");
            assert_eq!(mh_hashkey(&addr, 80, &HASH2, 0), h2, "{a}");
            assert_eq!(h1 % 4093, off);
            assert_eq!(h2 % 4092 + 1, skip);
        }
    }

    #[test]
    fn slot_counts_and_lookups() {
        let (list, s) = three([1, 1, 1], SchedFlags::default());
        assert_eq!(counts(&s, &list), [1365, 1364, 1364]); // .3, .2, .1
        for (c, hash, slot, last) in [
            ("10.0.0.1", 0x03080ce4u32, 3711u32, 2u8),
            ("10.0.0.2", 0x41cfde13, 1884, 3),
            ("10.0.0.3", 0x264d5ec5, 3741, 3),
            ("203.0.113.7", 0xa86e2c15, 1705, 1),
        ] {
            let addr: IpAddr = c.parse().unwrap();
            assert_eq!(mh_hashkey(&addr, 0, &HASH1, 0), hash, "{c}");
            assert_eq!(hash % 4093, slot);
            let p = s.schedule(&list, &client(c)).unwrap();
            assert_eq!(p.addr, format!("192.168.10.{last}").parse::<IpAddr>().unwrap(), "{c}");
        }
    }

    #[test]
    fn weighted_counts() {
        let (list, s) = three([1, 2, 3], SchedFlags::default());
        assert_eq!(counts(&s, &list), [2047, 1364, 682]);
    }

    #[test]
    fn turns_table() {
        let rows: [(&[i32], i32, u32, &[i32]); 7] = [
            (&[1, 1, 1], 1, 0, &[1, 1, 1]),
            (&[1, 2, 3], 1, 0, &[1, 2, 3]),
            (&[100, 200], 100, 0, &[1, 2]),
            (&[1000, 1], 1, 4, &[62, 1]),
            (&[64, 1], 1, 1, &[32, 1]),
            (&[63, 1], 1, 0, &[63, 1]),
            (&[0, 5, 10], 5, 0, &[0, 1, 2]),
        ];
        for (lw, g, rs, turns) in rows {
            assert_eq!(mh_turns(lw), (g, rs, turns.to_vec()), "{lw:?}");
        }
        assert_eq!(mh_turns(&[0, 0]).0, 0);
        assert_eq!(mh_turns(&[]).0, 0);
    }

    #[test]
    fn mh_port() {
        let flags = SchedFlags { flag2: true, ..Default::default() };
        let (list, s) = three([1, 1, 1], flags);
        let (plain_list, plain) = three([1, 1, 1], SchedFlags::default());
        let addr: IpAddr = "10.0.0.1".parse().unwrap();
        // The port enters the key; find a port whose slot differs from port 0's dest.
        let mut differs = false;
        for port in 1..200u16 {
            let slot = mh_hashkey(&addr, port, &HASH1, 0) % 4093;
            let want = &s.table.load().dests[s.table.load().slots[slot as usize] as usize].addr;
            let got = s.schedule(&list, &pkt("10.0.0.1", port, "10.0.0.100")).unwrap();
            assert_eq!(&got.addr, want);
            let p0 = plain.schedule(&plain_list, &pkt("10.0.0.1", port, "10.0.0.100")).unwrap();
            assert_eq!(p0.addr, "192.168.10.2".parse::<IpAddr>().unwrap());
            differs |= got.addr != p0.addr;
        }
        assert!(differs);
    }

    #[test]
    fn weight0_edit_keeps_slots_and_fallback() {
        let (list, s) = three([1, 1, 1], SchedFlags::default());
        let before: Vec<u32> = s.table.load().slots.clone();
        let two = &list[1]; // .2, where 10.0.0.1 lands
        two.apply(&two.config().weight(0));
        s.update(&list);
        assert_eq!(s.table.load().slots, before, "weight-0 edit keeps the slots");
        assert!(s.schedule(&list, &client("10.0.0.1")).is_none());
        // With mh-fallback another dest is found, and clients of other dests do not move.
        let fb = Mh::new(SchedFlags { flag1: true, ..Default::default() });
        fb.update(&list);
        let p = fb.schedule(&list, &client("10.0.0.1")).unwrap();
        assert!(!Arc::ptr_eq(&p, two));
        assert_eq!(fb.schedule(&list, &client("203.0.113.7")).unwrap().addr, list[2].addr);
        // All unavailable: nothing, even with fallback.
        list[0].set_overloaded(true);
        list[2].set_overloaded(true);
        assert!(fb.schedule(&list, &client("10.0.0.1")).is_none());
    }

    #[test]
    fn added_with_weight0_gets_no_slots() {
        let (list, s) = three([1, 0, 1], SchedFlags::default());
        let c = counts(&s, &list);
        assert_eq!(c[1], 0);
        assert_eq!(c[0] + c[2], MH_TAB_SIZE);
    }

    #[test]
    fn disruption_bound_on_removal() {
        let all: Vec<Arc<Dest>> = (1..=10).map(|n| d(n, 1)).collect();
        let s = Mh::new(SchedFlags::default());
        s.update(&all);
        let before = s.table.load_full();
        let removed = &all[4];
        let rest: Vec<Arc<Dest>> = all.iter().filter(|x| !Arc::ptr_eq(x, removed)).cloned().collect();
        s.update(&rest);
        let after = s.table.load_full();
        let mut moved_other = 0;
        for k in 0..MH_TAB_SIZE {
            let b = &before.dests[before.slots[k] as usize];
            let a = &after.dests[after.slots[k] as usize];
            assert!(!Arc::ptr_eq(a, removed));
            if !Arc::ptr_eq(b, removed) && !Arc::ptr_eq(a, b) {
                moved_other += 1;
            }
        }
        // Only the removed dest's ~409 slots must move; Maglev moves a few more.
        assert!(moved_other * 100 < MH_TAB_SIZE * 3, "{moved_other} extra slots moved");
        // Every slot filled, balanced within a slot or two.
        let c = counts(&s, &rest);
        assert_eq!(c.iter().sum::<usize>(), MH_TAB_SIZE);
        let (lo, hi) = (c.iter().min().unwrap(), c.iter().max().unwrap());
        assert!(hi - lo <= 1, "{c:?}");
    }

    #[test]
    fn empty_and_too_many() {
        let s = Mh::new(SchedFlags::default());
        assert!(s.schedule(&[], &client("10.0.0.1")).is_none());
        s.update(&[]);
        assert!(s.schedule(&[], &client("10.0.0.1")).is_none());
        assert_eq!(s.max_dests(), Some(MH_TAB_SIZE));
        let one = vec![d(1, 1)];
        s.update(&one);
        let many: Vec<Arc<Dest>> = (0..MH_TAB_SIZE + 1).map(|_| one[0].clone()).collect();
        s.update(&many); // refused: the previous table stays
        assert_eq!(s.table.load().dests.len(), 1);
        assert!(s.schedule(&one, &client("10.0.0.1")).is_some());
    }

    #[test]
    fn ipv6_clients_hash_by_fold() {
        let (list, s) = three([1, 1, 1], SchedFlags::default());
        // ::a00:1 folds to 0x0a000001 like 10.0.0.1, so it lands on the same slot.
        let p = s.schedule(&list, &pkt("::a00:1", 1, "::1")).unwrap();
        assert_eq!(p.addr, list[1].addr);
    }
}
