//! The destination-address cache of lblc and lblcr (lvs-semantics.md §15): 1024 buckets keyed
//! by `hash_32(ntohl(daddr_fold), 10)`, with the kernel's garbage collection.
//!
//! The kernel runs the collector from a 60 s timer. rvs has no timer per scheduler, so the
//! collector runs lazily from `schedule` once a period has passed, replaying the missed ticks
//! (at most one full check's worth) at the current time.

use std::net::IpAddr;
use std::time::Duration;

use crate::sched::hash::{addr_fold, hash_32};

const TAB_BITS: u32 = 10;
const TAB_SIZE: usize = 1 << TAB_BITS;
/// `IP_VS_LBLC_TAB_SIZE * 16`: above this, stale entries are collected every period.
const MAX_SIZE: usize = TAB_SIZE * 16;
const CHECK_EXPIRE_INTERVAL: Duration = Duration::from_secs(60);
/// `ENTRY_TIMEOUT`: an entry unused this long may go when the table is over `MAX_SIZE`.
const ENTRY_TIMEOUT: Duration = Duration::from_secs(6 * 60);
/// Every 30th period is a full pass with the `lblc(r)_expiration` sysctl.
const COUNT_FOR_FULL_EXPIRATION: u32 = 30;

/// The `lblc_expiration` / `lblcr_expiration` default (24 h).
pub const DEFAULT_EXPIRATION: Duration = Duration::from_secs(24 * 60 * 60);

#[derive(Debug)]
pub(crate) struct Entry<V> {
    pub addr: IpAddr,
    pub lastuse: Duration,
    pub val: V,
}

pub(crate) struct CacheTable<V> {
    buckets: Vec<Vec<Entry<V>>>,
    entries: usize,
    counter: u32,
    rover: usize,
    next_gc: Duration,
}

impl<V> std::fmt::Debug for CacheTable<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CacheTable").field("entries", &self.entries).field("counter", &self.counter).finish()
    }
}

fn bucket(addr: &IpAddr) -> usize {
    hash_32(addr_fold(addr), TAB_BITS) as usize
}

impl<V> CacheTable<V> {
    pub fn new(now: Duration) -> Self {
        CacheTable {
            buckets: (0..TAB_SIZE).map(|_| Vec::new()).collect(),
            entries: 0,
            counter: 1,
            rover: 0,
            next_gc: now + CHECK_EXPIRE_INTERVAL,
        }
    }

    pub fn len(&self) -> usize {
        self.entries
    }

    pub fn get_mut(&mut self, addr: &IpAddr) -> Option<&mut Entry<V>> {
        self.buckets[bucket(addr)].iter_mut().find(|e| e.addr == *addr)
    }

    /// Insert or replace the entry of `addr`.
    pub fn insert(&mut self, addr: IpAddr, now: Duration, val: V) {
        let b = &mut self.buckets[bucket(&addr)];
        if let Some(e) = b.iter_mut().find(|e| e.addr == addr) {
            e.lastuse = now;
            e.val = val;
        } else {
            b.push(Entry { addr, lastuse: now, val });
            self.entries += 1;
        }
    }

    /// Keep the entries for which `f` is true (`f` may also edit them).
    pub fn retain(&mut self, mut f: impl FnMut(&mut Entry<V>) -> bool) {
        for b in &mut self.buckets {
            let before = b.len();
            b.retain_mut(&mut f);
            self.entries -= before - b.len();
        }
    }

    /// Remove the entries unused since `now - age` in buckets after the rover, stopping once
    /// `goal` entries are gone (a whole bucket at a time, as the kernel does).
    fn sweep(&mut self, now: Duration, age: Duration, mut goal: Option<usize>) {
        let mut j = self.rover;
        for _ in 0..TAB_SIZE {
            j = (j + 1) & (TAB_SIZE - 1);
            let b = &mut self.buckets[j];
            let before = b.len();
            b.retain(|e| now < e.lastuse + age);
            let removed = before - b.len();
            self.entries -= removed;
            if let Some(g) = goal.as_mut() {
                *g = g.saturating_sub(removed);
                if *g == 0 {
                    break;
                }
            }
        }
        self.rover = j;
    }

    /// One run of `ip_vs_lblc(r)_check_expire`.
    fn tick(&mut self, now: Duration, expiration: Duration) {
        if self.counter.is_multiple_of(COUNT_FOR_FULL_EXPIRATION) {
            self.sweep(now, expiration, None);
            self.counter = 1;
            return;
        }
        if self.entries <= MAX_SIZE {
            self.counter += 1;
            return;
        }
        let goal = ((self.entries - MAX_SIZE) * 4 / 3).min(MAX_SIZE / 2);
        self.sweep(now, ENTRY_TIMEOUT, Some(goal));
    }

    /// Run the collector if its period has come (see the module doc).
    pub fn maybe_gc(&mut self, now: Duration, expiration: Duration) {
        if now < self.next_gc {
            return;
        }
        let missed = ((now - self.next_gc).as_secs() / CHECK_EXPIRE_INTERVAL.as_secs()) + 1;
        for _ in 0..missed.min(COUNT_FOR_FULL_EXPIRATION as u64 + 1) {
            self.tick(now, expiration);
        }
        self.next_gc += CHECK_EXPIRE_INTERVAL * missed as u32;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(n: u32) -> IpAddr {
        IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + n))
    }

    #[test]
    fn insert_replace_get() {
        let mut t = CacheTable::new(Duration::ZERO);
        t.insert(a(1), Duration::ZERO, 1);
        t.insert(a(1), Duration::from_secs(1), 2);
        t.insert(a(2), Duration::ZERO, 3);
        assert_eq!(t.len(), 2);
        assert_eq!(t.get_mut(&a(1)).map(|e| e.val), Some(2));
        t.retain(|e| e.val != 3);
        assert_eq!(t.len(), 1);
        assert!(t.get_mut(&a(2)).is_none());
    }

    #[test]
    fn full_check_every_30th_period() {
        let exp = Duration::from_secs(600);
        let mut t = CacheTable::new(Duration::ZERO);
        t.insert(a(1), Duration::ZERO, ());
        let mut now = Duration::ZERO;
        // 29 periods: counter 1 → 30, nothing removed although the entry is stale.
        for _ in 0..29 {
            now += CHECK_EXPIRE_INTERVAL;
            t.maybe_gc(now, exp);
        }
        assert_eq!(t.len(), 1);
        now += CHECK_EXPIRE_INTERVAL;
        t.maybe_gc(now, exp);
        assert_eq!(t.len(), 0);
    }

    #[test]
    fn full_check_keeps_recent_entries() {
        let exp = Duration::from_secs(3600);
        let mut t = CacheTable::new(Duration::ZERO);
        t.insert(a(1), Duration::ZERO, ());
        // One late call replays the missed ticks, including a full check at "now" = 31 min.
        let now = Duration::from_secs(31 * 60);
        t.insert(a(2), now, ());
        t.maybe_gc(now, exp);
        assert_eq!(t.len(), 2, "nothing is older than an hour");
        let now = Duration::from_secs(2 * 3600);
        for k in 0..=30u64 {
            t.maybe_gc(now + CHECK_EXPIRE_INTERVAL * k as u32, exp);
        }
        assert_eq!(t.len(), 0);
    }

    #[test]
    fn oversized_table_drops_idle_entries() {
        let mut t = CacheTable::new(Duration::ZERO);
        for n in 0..(MAX_SIZE as u32 + 300) {
            t.insert(a(n), Duration::ZERO, ());
        }
        let now = ENTRY_TIMEOUT;
        t.insert(a(1 << 20), now, ()); // recent: never a victim
        t.maybe_gc(now, DEFAULT_EXPIRATION);
        // goal = 301·4/3 = 401, removed a bucket at a time.
        let removed = MAX_SIZE + 301 - t.len();
        assert!((401..401 + 64).contains(&removed), "{removed}");
        assert!(t.get_mut(&a(1 << 20)).is_some());
    }
}
