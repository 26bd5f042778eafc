//! The whole table as sync records, a slice at a time: what a (re)starting peer pulls before it
//! becomes active (the bulk resync, an rvs addition beside the kernel's protocol).

use super::SyncConn;
use crate::conn::ConnId;
use crate::worker::Worker;

impl Worker {
    /// Appends the entries in slab positions `from..from + max` to `out`, each as the master
    /// would send it (state timeout, not the time left: the receiving entry's timer restarts
    /// from it, as a synced entry's does). Returns where the next slice starts, or `None` when
    /// the table is done. Mixed-family entries are left out (the format has one family).
    pub fn sync_snapshot(&self, from: usize, max: usize, out: &mut Vec<SyncConn>) -> Option<usize> {
        let end = self.conns.capacity_used();
        let to = from.saturating_add(max).min(end);
        for id in from..to {
            let Some(c) = self.conns.get(id as ConnId) else { continue };
            if let Some(r) = self.sync_conn_record(id as ConnId, c) {
                out.push(r);
            }
        }
        (to < end).then_some(to)
    }
}
