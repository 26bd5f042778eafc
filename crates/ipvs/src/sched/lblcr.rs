//! Locality-based least connection with replication (`lblcr`, lvs-semantics.md §15): a cache
//! from destination address to a *set* of dests; the least loaded member serves, wlc adds a
//! member when it is missing or overloaded, and a set unchanged for `lblcr_expiration` sheds
//! its most loaded member.
//!
//! The cache is behind a `Mutex` for the same reason as lblc: only new connections schedule.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use std::collections::HashSet;

use crate::dest::Dest;
use crate::sched::cache::{CacheTable, DEFAULT_EXPIRATION};
use crate::sched::clock::{Clock, MonotonicClock};
use crate::sched::load::{ident, lblc_overloaded, less_loaded, weighted_least};
use crate::sched::{SchedInput, Scheduler};

/// `struct ip_vs_dest_set`: members newest first, and when the set last changed.
#[derive(Debug)]
struct DestSet {
    members: Vec<Arc<Dest>>,
    lastmod: Duration,
}

impl DestSet {
    /// `ip_vs_dest_set_insert(.., check = true)`: add at the head unless already a member.
    fn insert(&mut self, d: &Arc<Dest>, now: Duration) {
        if self.members.iter().any(|m| Arc::ptr_eq(m, d)) {
            return;
        }
        self.members.insert(0, d.clone());
        self.lastmod = now;
    }

    fn erase(&mut self, d: &Arc<Dest>, now: Duration) {
        if let Some(i) = self.members.iter().position(|m| Arc::ptr_eq(m, d)) {
            self.members.remove(i);
            self.lastmod = now;
        }
    }

    /// `ip_vs_dest_set_min`: weighted least-connection among members that are AVAILABLE, have
    /// no OVERLOAD flag and (for the start) weight > 0.
    fn min(&self) -> Option<&Arc<Dest>> {
        let start = self.members.iter().position(|d| !d.is_overloaded() && d.weight() > 0 && d.is_available())?;
        let mut least = &self.members[start];
        let mut loh = least.overhead();
        for d in &self.members[start + 1..] {
            if d.is_overloaded() {
                continue;
            }
            let doh = d.overhead();
            if less_loaded(doh, d.weight(), loh, least.weight()) && d.is_available() {
                least = d;
                loh = doh;
            }
        }
        Some(least)
    }

    /// `ip_vs_dest_set_max`: the weighted most-loaded member with weight > 0 (flags ignored).
    fn max(&self) -> Option<&Arc<Dest>> {
        let start = self.members.iter().position(|d| d.weight() > 0)?;
        let mut most = &self.members[start];
        let mut moh = most.overhead();
        for d in &self.members[start + 1..] {
            let doh = d.overhead();
            let dw = d.weight();
            if (moh as i128) * (dw as i128) < (doh as i128) * (most.weight() as i128) && dw > 0 {
                most = d;
                moh = doh;
            }
        }
        Some(most)
    }
}

#[derive(Debug)]
pub struct Lblcr {
    clock: Arc<dyn Clock>,
    /// The `lblcr_expiration` sysctl: both the set-shrinking age and the full-collection age.
    expiration: Duration,
    cache: Mutex<CacheTable<DestSet>>,
}

impl Default for Lblcr {
    fn default() -> Self {
        Self::with_clock(Arc::new(MonotonicClock::default()), DEFAULT_EXPIRATION)
    }
}

impl Lblcr {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with_clock(clock: Arc<dyn Clock>, expiration: Duration) -> Self {
        let now = clock.now();
        Lblcr { clock, expiration, cache: Mutex::new(CacheTable::new(now)) }
    }

    fn cache(&self) -> MutexGuard<'_, CacheTable<DestSet>> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Number of cached destination addresses.
    pub fn cached(&self) -> usize {
        self.cache().len()
    }

    /// The set cached for a destination address (newest member first).
    pub fn members(&self, daddr: &std::net::IpAddr) -> Vec<Arc<Dest>> {
        self.cache().get_mut(daddr).map(|e| e.val.members.clone()).unwrap_or_default()
    }
}

impl Scheduler for Lblcr {
    fn name(&self) -> &'static str {
        "lblcr"
    }

    /// Members that left the service are dropped from every set (without counting as a set
    /// change); entries left empty go.
    fn update(&self, dests: &[Arc<Dest>]) {
        let live: HashSet<usize> = dests.iter().map(ident).collect();
        self.cache().retain(|e| {
            e.val.members.retain(|m| live.contains(&ident(m)));
            !e.val.members.is_empty()
        });
    }

    fn schedule(&self, dests: &[Arc<Dest>], pkt: &SchedInput) -> Option<Arc<Dest>> {
        let now = self.clock.now();
        let mut cache = self.cache();
        cache.maybe_gc(now, self.expiration);
        if let Some(en) = cache.get_mut(&pkt.daddr) {
            en.lastuse = now;
            let set = &mut en.val;
            let pick = set.min().cloned();
            if set.members.len() > 1
                && now > set.lastmod + self.expiration
                && let Some(m) = set.max().cloned()
            {
                set.erase(&m, now);
            }
            if let Some(d) = pick
                && !lblc_overloaded(&d, dests)
            {
                return Some(d);
            }
            let d = weighted_least(dests, Dest::overhead)?.clone();
            set.insert(&d, now);
            return Some(d);
        }
        let d = weighted_least(dests, Dest::overhead)?.clone();
        let set = DestSet { members: vec![d.clone()], lastmod: now };
        cache.insert(pkt.daddr, now, set);
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

    fn setup(exp: u64) -> (Arc<ManualClock>, Lblcr) {
        let clock = Arc::new(ManualClock::default());
        let s = Lblcr::with_clock(clock.clone(), Duration::from_secs(exp));
        (clock, s)
    }

    #[test]
    fn set_grows_when_member_overloaded() {
        let (_c, s) = setup(3600);
        let list = vec![dest(1, 2), dest(2, 4)];
        let t = to("10.9.0.1");
        assert_eq!(pos(&list, &s.schedule(&list, &t).unwrap()), 0);
        list[0].set_conns(3, 0); // 3 > 2 and dest 2 is idle (0 < 4): overloaded
        assert_eq!(pos(&list, &s.schedule(&list, &t).unwrap()), 1);
        let m = s.members(&t.daddr);
        assert_eq!(m.len(), 2);
        assert!(Arc::ptr_eq(&m[0], &list[1]), "new members at the head");
        // Now the set's least loaded member serves: dest 2.
        list[1].set_conns(1, 0);
        assert_eq!(pos(&list, &s.schedule(&list, &t).unwrap()), 1);
    }

    #[test]
    fn set_min_skips_ineligible_members() {
        let (_c, s) = setup(3600);
        let list = vec![dest(1, 1), dest(2, 1)];
        let t = to("10.9.0.1");
        s.schedule(&list, &t).unwrap(); // {1}
        list[0].set_overloaded(true);
        assert_eq!(pos(&list, &s.schedule(&list, &t).unwrap()), 1); // {2, 1}
        list[0].set_overloaded(false);
        list[0].set_conns(0, 0);
        list[1].set_conns(5, 0);
        // Both members: the least loaded (dest 1).
        assert_eq!(pos(&list, &s.schedule(&list, &t).unwrap()), 0);
        list[0].apply(&list[0].config().weight(0));
        assert_eq!(pos(&list, &s.schedule(&list, &t).unwrap()), 1);
        list[1].set_available(false);
        // No usable member; wlc over the service still finds dest 2 (wlc ignores AVAILABLE,
        // as the kernel's list holds only available dests).
        assert_eq!(pos(&list, &s.schedule(&list, &t).unwrap()), 1);
        list[1].set_overloaded(true);
        assert!(s.schedule(&list, &t).is_none());
    }

    #[test]
    fn expiration_sheds_most_loaded() {
        let (clock, s) = setup(600);
        let list = vec![dest(1, 2), dest(2, 4)];
        let t = to("10.9.0.1");
        s.schedule(&list, &t).unwrap();
        list[0].set_conns(3, 0);
        s.schedule(&list, &t).unwrap(); // set {2, 1}, lastmod 0
        list[1].set_conns(2, 0); // 2·2 < 4 is false: dest 1 no longer "overloaded"
        clock.advance(Duration::from_secs(600));
        s.schedule(&list, &t).unwrap();
        assert_eq!(s.members(&t.daddr).len(), 2, "not strictly after the expiration yet");
        clock.advance(Duration::from_secs(1));
        // Most loaded by overhead/weight: dest 1 (768/2) vs dest 2 (512/4) → dest 1 goes.
        s.schedule(&list, &t).unwrap();
        let m = s.members(&t.daddr);
        assert_eq!(m.len(), 1);
        assert!(Arc::ptr_eq(&m[0], &list[1]));
        // A single member is never shed.
        clock.advance(Duration::from_secs(1000));
        s.schedule(&list, &t).unwrap();
        assert_eq!(s.members(&t.daddr).len(), 1);
    }

    #[test]
    fn deleted_dests_leave_sets() {
        let (_c, s) = setup(3600);
        let list = vec![dest(1, 1), dest(2, 1)];
        s.update(&list);
        s.schedule(&list, &to("10.9.0.1")).unwrap();
        s.schedule(&list, &to("10.9.0.2")).unwrap();
        assert_eq!(s.cached(), 2);
        s.update(&list[1..]);
        assert_eq!(s.cached(), 0);
        assert!(s.schedule(&[], &to("10.9.0.1")).is_none());
    }
}
