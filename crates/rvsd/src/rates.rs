//! Rate estimation for every stats object: the total, each service, each dest
//! (lvs-semantics.md §17). A thread ticks [`RateTable::tick`] every 2 s; listings read the
//! rates; `-Z` resets them.
//!
//! Objects are keyed by the address of their `Stats`, which is stable: service stats live in
//! an `Arc` carried from snapshot to snapshot, dest stats inside the `Arc<Dest>`. The table
//! keeps those `Arc`s alive so an address cannot be reused while its entry exists; entries of
//! objects no longer in the service table are pruned at the next tick.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use ipvs::stats::{Estimator, Rates};
use ipvs::{Dest, Ipvs, Stats};

/// Tick period of the kernel's estimator.
pub const TICK: std::time::Duration = std::time::Duration::from_secs(2);

enum Keep {
    Total,
    Service(#[allow(dead_code)] Arc<Stats>),
    Dest(#[allow(dead_code)] Arc<Dest>),
}

struct Entry {
    est: Estimator,
    _keep: Keep,
}

#[derive(Default)]
pub struct RateTable {
    inner: Mutex<HashMap<usize, Entry>>,
}

fn key(s: &Stats) -> usize {
    s as *const Stats as usize
}

impl RateTable {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<usize, Entry>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One estimator tick over every stats object of the current service table.
    pub fn tick(&self, ipvs: &Ipvs) {
        let table = ipvs.services_full();
        let mut m = self.lock();
        // A set, not a list: `retain` asks it once per entry (a list made a tick O(n²),
        // minutes at 300 000 services and real servers, with the table locked).
        let mut seen = std::collections::HashSet::with_capacity(m.len() + 1);
        let mut visit = |s: &Stats, keep: &dyn Fn() -> Keep| {
            let k = key(s);
            seen.insert(k);
            let now = s.raw();
            m.entry(k)
                .or_insert_with(|| {
                    let mut est = Estimator::default();
                    est.reset(now);
                    Entry { est, _keep: keep() }
                })
                .est
                .tick(now);
        };
        visit(&ipvs.total, &|| Keep::Total);
        for svc in table.iter() {
            visit(&svc.stats, &|| Keep::Service(svc.stats.clone()));
            for d in &svc.dests {
                visit(&d.stats, &|| Keep::Dest(d.clone()));
            }
        }
        m.retain(|k, _| seen.contains(k));
    }

    /// Current rates of `s` (zero until its first tick).
    /// Rates of many stats under one lock (a listing of 300 000 services and real servers
    /// would otherwise take the lock 300 000 times, each time behind a running tick).
    pub fn reader(&self) -> impl Fn(&Stats) -> Rates + '_ {
        let m = self.lock();
        move |s| m.get(&key(s)).map(|e| e.est.rates()).unwrap_or_default()
    }

    pub fn rates(&self, s: &Stats) -> Rates {
        self.lock().get(&key(s)).map(|e| e.est.rates()).unwrap_or_default()
    }

    /// `-Z`: the rates of `s` restart from 0.
    pub fn reset(&self, s: &Stats) {
        if let Some(e) = self.lock().get_mut(&key(s)) {
            e.est.reset(s.raw());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ipvs::{DestConfig, ForwardMethod, ServiceConfig, ServiceKey};

    #[test]
    fn rates_follow_counters_and_reset() {
        let ipvs = Ipvs::new(16);
        let key = ServiceKey::tcp("10.0.0.100".parse().unwrap(), 80);
        ipvs.add_service(ServiceConfig::new(key, "rr")).unwrap();
        ipvs.add_dest(&key, DestConfig::new("192.168.1.11".parse().unwrap(), 80).method(ForwardMethod::Masq)).unwrap();
        let rt = RateTable::default();
        rt.tick(&ipvs);
        let svc = ipvs.services_full().get(&key).unwrap().clone();
        // 2000 packets of 100 bytes in one 2 s tick: 1000 pps, 100000 B/s; EWMA weight 1/4.
        for _ in 0..2000 {
            svc.stats.count_in(0, 100);
        }
        rt.tick(&ipvs);
        let r = rt.rates(&svc.stats);
        assert_eq!(r.inpps, 250, "{r:?}");
        assert_eq!(r.inbps, 25000, "{r:?}");
        assert_eq!(rt.rates(&svc.dests[0].stats).inpps, 0);
        rt.reset(&svc.stats);
        assert_eq!(rt.rates(&svc.stats), Rates::default());
        // Deleted services are pruned.
        ipvs.delete_service(&key).unwrap();
        rt.tick(&ipvs);
        assert_eq!(rt.lock().len(), 1, "only the total remains");
    }
}
