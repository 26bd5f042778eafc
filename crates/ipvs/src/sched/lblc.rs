//! Locality-based least connection (`lblc`, lvs-semantics.md §15): a cache from destination
//! address to dest; a miss or an unusable hit is scheduled by wlc and cached.
//!
//! The cache is behind a `Mutex`: only the first packet of a connection schedules, and each
//! lookup may write (lastuse, replacement, collection), so a lock is simpler than a concurrent
//! map and costs little. Hits are checked as the kernel checks them: AVAILABLE, weight > 0 and
//! the lblc "overloaded" rule (the kernel does not test the OVERLOAD flag on a hit).

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use std::collections::HashSet;

use crate::dest::Dest;
use crate::sched::cache::{CacheTable, DEFAULT_EXPIRATION};
use crate::sched::clock::{Clock, MonotonicClock};
use crate::sched::load::{ident, lblc_overloaded, weighted_least};
use crate::sched::{SchedInput, Scheduler};

#[derive(Debug)]
pub struct Lblc {
    clock: Arc<dyn Clock>,
    /// The `lblc_expiration` sysctl: entries unused this long go at the full collection.
    expiration: Duration,
    cache: Mutex<CacheTable<Arc<Dest>>>,
}

impl Default for Lblc {
    fn default() -> Self {
        Self::with_clock(Arc::new(MonotonicClock::default()), DEFAULT_EXPIRATION)
    }
}

impl Lblc {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with_clock(clock: Arc<dyn Clock>, expiration: Duration) -> Self {
        let now = clock.now();
        Lblc { clock, expiration, cache: Mutex::new(CacheTable::new(now)) }
    }

    fn cache(&self) -> MutexGuard<'_, CacheTable<Arc<Dest>>> {
        // The table stays consistent even if a holder panicked; keep serving.
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Number of cached destination addresses.
    pub fn cached(&self) -> usize {
        self.cache().len()
    }
}

impl Scheduler for Lblc {
    fn name(&self) -> &'static str {
        "lblc"
    }

    /// Drop entries of dests that left the service (the kernel lets them age out of its trash;
    /// rvs frees them at once).
    fn update(&self, dests: &[Arc<Dest>]) {
        let live: HashSet<usize> = dests.iter().map(ident).collect();
        self.cache().retain(|e| live.contains(&ident(&e.val)));
    }

    fn schedule(&self, dests: &[Arc<Dest>], pkt: &SchedInput) -> Option<Arc<Dest>> {
        let now = self.clock.now();
        let mut cache = self.cache();
        cache.maybe_gc(now, self.expiration);
        if let Some(en) = cache.get_mut(&pkt.daddr) {
            en.lastuse = now;
            let d = &en.val;
            if d.is_available() && d.weight() > 0 && !lblc_overloaded(d, dests) {
                return Some(d.clone());
            }
        }
        let d = weighted_least(dests, Dest::overhead)?.clone();
        cache.insert(pkt.daddr, now, d.clone());
        Some(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sched::clock::ManualClock;
    use crate::sched::load::testutil::*;

    fn to(daddr: &str) -> SchedInput {
        pkt("198.51.100.7", 1234, daddr)
    }

    #[test]
    fn sticks_to_cached_dest() {
        let list = vec![dest(1, 1), dest(2, 1)];
        let s = Lblc::new();
        s.update(&list);
        let first = s.schedule(&list, &to("10.9.0.1")).unwrap();
        assert_eq!(pos(&list, &first), 0);
        first.set_conns(1, 0); // now more loaded, but 1 ≤ weight... not "overloaded"
        list[0].apply(&list[0].config().weight(2));
        let again = s.schedule(&list, &to("10.9.0.1")).unwrap();
        assert!(Arc::ptr_eq(&first, &again));
        // Another destination address is scheduled by wlc: the idle dest.
        assert_eq!(pos(&list, &s.schedule(&list, &to("10.9.0.2")).unwrap()), 1);
        assert_eq!(s.cached(), 2);
    }

    #[test]
    fn overloaded_rule_moves_the_entry() {
        let list = vec![dest(1, 2), dest(2, 4)];
        let s = Lblc::new();
        let d = s.schedule(&list, &to("10.9.0.1")).unwrap();
        assert_eq!(pos(&list, &d), 0);
        list[0].set_conns(3, 0); // active 3 > weight 2
        list[1].set_conns(2, 0); // 2·2 < 4? no: nobody clearly idle → keep
        assert_eq!(pos(&list, &s.schedule(&list, &to("10.9.0.1")).unwrap()), 0);
        list[1].set_conns(1, 0); // 1·2 < 4 → overloaded → wlc: (1·256)/4 < (3·256)/2
        assert_eq!(pos(&list, &s.schedule(&list, &to("10.9.0.1")).unwrap()), 1);
        list[0].set_conns(0, 0);
        // The entry was replaced: it stays on the new dest.
        assert_eq!(pos(&list, &s.schedule(&list, &to("10.9.0.1")).unwrap()), 1);
    }

    #[test]
    fn weight0_unavailable_and_deleted() {
        let list = vec![dest(1, 1), dest(2, 1)];
        let s = Lblc::new();
        s.update(&list);
        assert_eq!(pos(&list, &s.schedule(&list, &to("10.9.0.1")).unwrap()), 0);
        list[0].apply(&list[0].config().weight(0));
        assert_eq!(pos(&list, &s.schedule(&list, &to("10.9.0.1")).unwrap()), 1);
        list[0].apply(&list[0].config().weight(1));
        list[1].set_available(false);
        assert_eq!(pos(&list, &s.schedule(&list, &to("10.9.0.1")).unwrap()), 0);
        // Deleting the cached dest drops its entry.
        let rest = vec![list[1].clone()];
        s.update(&rest);
        assert_eq!(s.cached(), 0);
    }

    #[test]
    fn overload_flag_skipped_on_miss() {
        let list = vec![dest(1, 1), dest(2, 1)];
        list[0].set_overloaded(true);
        let s = Lblc::new();
        assert_eq!(pos(&list, &s.schedule(&list, &to("10.9.0.1")).unwrap()), 1);
        list[1].set_overloaded(true);
        assert!(s.schedule(&list, &to("10.9.0.2")).is_none());
        assert!(s.schedule(&[], &to("10.9.0.3")).is_none());
    }

    #[test]
    fn entries_expire_with_the_clock() {
        let clock = Arc::new(ManualClock::default());
        let s = Lblc::with_clock(clock.clone(), Duration::from_secs(3600));
        let list = vec![dest(1, 1)];
        s.schedule(&list, &to("10.9.0.1")).unwrap();
        assert_eq!(s.cached(), 1);
        for _ in 0..31 {
            clock.advance(Duration::from_secs(60));
            s.schedule(&list, &to("10.9.0.2")).unwrap(); // keeps .2 fresh
        }
        assert_eq!(s.cached(), 2, "not yet an hour");
        clock.advance(Duration::from_secs(3600));
        s.schedule(&list, &to("10.9.0.2")).unwrap(); // triggers a full pass
        assert_eq!(s.cached(), 1);
    }
}
