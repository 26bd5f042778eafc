//! Connection entries carried across a restart of the daemon (hot restart hand-over, rvsd's
//! handover.rs): the old process lists its tables as [`Restored`] records, the new one
//! stashes them per worker in [`Ipvs`] before its workers exist, and each worker inserts its
//! share when it is created ([`Worker::new`]), bound to the new process's own dests. Entries
//! whose service or real server the new configuration lacks are counted, not inserted.
//!
//! What does not cross: the link from a connection to its persistence template (templates
//! cross as entries of their own and keep steering the client's new connections to the same
//! real server; an old connection no longer defers its template's expiry), per-entry packet
//! counts, and the service/dest statistics (they restart at zero, like after a reload of the
//! kernel module).

use std::net::IpAddr;
use std::sync::Mutex;

use crate::conn::{Conn, ConnAddrs, ConnFlags};
use crate::ipvs::Ipvs;
use crate::proto::{sctp, tcp};
use crate::worker::Worker;

/// One connection entry as it crosses a restart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Restored {
    pub protocol: u8,
    pub caddr: IpAddr,
    pub cport: u16,
    pub vaddr: IpAddr,
    pub vport: u16,
    pub daddr: IpAddr,
    pub dport: u16,
    pub state: u8,
    /// `IP_VS_CONN_F_*` as the old entry had them.
    pub flags: u32,
    /// Time left before expiry, milliseconds.
    pub expires_in_ms: u64,
    pub fwmark: u32,
}

/// What a worker made of its share.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RestoreCount {
    pub inserted: usize,
    /// No such service or real server in the new configuration.
    pub unbound: usize,
    /// The table was full.
    pub full: usize,
}

/// Records waiting for their worker, by worker id, and what the workers made of them.
#[derive(Debug, Default)]
pub(crate) struct Stash {
    waiting: Mutex<Vec<Vec<Restored>>>,
    done: Mutex<RestoreCount>,
}

impl Ipvs {
    /// Hands `per_worker[i]` to worker `i` when it is created. Call before the workers start.
    pub fn stash_restored(&self, per_worker: Vec<Vec<Restored>>) {
        *self.restore.waiting.lock().unwrap_or_else(|e| e.into_inner()) = per_worker;
    }

    /// Totals over the workers that have taken their share.
    pub fn restored(&self) -> RestoreCount {
        *self.restore.done.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn take_restored(&self, id: usize) -> Vec<Restored> {
        let mut w = self.restore.waiting.lock().unwrap_or_else(|e| e.into_inner());
        w.get_mut(id).map(std::mem::take).unwrap_or_default()
    }
}

impl Worker {
    /// Inserts `recs` bound to this director's dests, with their state, flags and time left
    /// (on this worker's clock, whose `now` is where it is at creation).
    pub fn restore(&mut self, recs: &[Restored]) -> RestoreCount {
        let mut n = RestoreCount::default();
        let services = self.ipvs.services_full();
        let globals = self.ipvs.timeouts();
        for r in recs {
            let Some(svc) = services.lookup(r.fwmark, r.protocol, &r.vaddr, r.vport) else {
                n.unbound += 1;
                continue;
            };
            let Some(dest) = svc.find_dest(&r.daddr, r.dport) else {
                n.unbound += 1;
                continue;
            };
            let template = r.flags & ConnFlags::TEMPLATE != 0;
            let svc_t = dest.svc_timeouts.load();
            let t = svc_t.as_deref().unwrap_or(&globals);
            let timeout = match r.protocol {
                _ if template => svc.config.persistent.unwrap_or(300),
                6 => t.tcp[(r.state as usize).min(tcp::STATES - 1)],
                132 => t.sctp[(r.state as usize).min(sctp::STATES - 1)],
                _ => t.udp,
            };
            let mut c = Conn::new(r.protocol, r.cport, r.vport, r.dport);
            // The hash bit is the table's to set; the method is the dest's now.
            c.flags = (r.flags & !(ConnFlags::HASHED | ConnFlags::FWD_MASK)) | dest.method() as u32;
            c.state = r.state;
            c.timeout = timeout;
            c.expires = self.now() + r.expires_in_ms;
            c.dest = Some(dest.clone());
            c.fwmark = r.fwmark;
            let a = ConnAddrs { caddr: r.caddr, vaddr: r.vaddr, daddr: r.daddr };
            if self.conns.insert(a, c).is_err() {
                n.full += 1;
                continue;
            }
            dest.bind(template);
            if !template && r.flags & ConnFlags::INACTIVE == 0 {
                dest.set_active(true);
            }
            n.inserted += 1;
        }
        let mut done = self.ipvs.restore.done.lock().unwrap_or_else(|e| e.into_inner());
        done.inserted += n.inserted;
        done.unbound += n.unbound;
        done.full += n.full;
        n
    }
}
