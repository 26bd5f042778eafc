//! The backup's half in a worker: a received entry is created or updated in this worker's
//! table (`ip_vs_proc_conn`), bound to this director's own dest of the same service and real
//! server when there is one, with the synced state and timeout, flagged SYNC.

use super::{BACKUP_MASK, BACKUP_UPD_MASK, SyncConn};
use crate::conn::{Conn, ConnAddrs, ConnFlags};
use crate::dest::ForwardMethod;
use crate::proto::{sctp, tcp};
use crate::worker::Worker;

/// Timeout of a version 0 template (the message carries none): 3 minutes, as the kernel.
const V0_TEMPLATE_TIMEOUT: u32 = 180;

/// What became of one received entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    /// A new entry bound to one of our dests.
    Bound,
    /// A new entry with no matching service or real server here (kept unbound, as the
    /// kernel keeps it, and counted).
    Unbound,
    /// An entry we had, updated.
    Updated,
    /// The expiry message of an entry already replaced by a newer one: ignored.
    Stale,
    /// The table is full.
    Full,
    /// The entry needs a persistence engine rvs does not have (only "sip" exists): skipped,
    /// as the kernel skips an entry whose engine is not loaded.
    NoEngine,
}

impl Worker {
    /// Takes one synced entry; `threshold` is our `sync_threshold` (the entry's in_pkts).
    pub fn sync_apply(&mut self, s: &SyncConn, threshold: u32) -> Applied {
        let mut flags = (s.flags & BACKUP_MASK) | ConnFlags::SYNC;
        let template = flags & ConnFlags::TEMPLATE != 0;
        // A SIP template is found by its Call-ID; the kernel keeps engine data on templates
        // only, so a connection's is dropped.
        let pe = match (s.pe_data.is_empty(), template) {
            (true, _) | (false, false) => None,
            (false, true) if s.pe_name == crate::pe_sip::NAME.as_bytes() => Some(&s.pe_data[..]),
            (false, true) => return Applied::NoEngine,
        };
        let existing = if let Some(d) = pe {
            self.conns.lookup_template_pe(s.protocol, &s.caddr, &s.vaddr, s.vport, d)
        } else if template {
            self.conns.lookup_template(s.protocol, &s.caddr, &s.vaddr, s.vport, s.fwmark)
        } else {
            match self.conns.lookup_in(s.protocol, &s.caddr, s.cport, &s.vaddr, s.vport) {
                Some(id) => {
                    let moved =
                        self.conns.get(id).is_some_and(|c| c.dport != s.dport || self.conns.daddr(c) != s.daddr);
                    if !moved {
                        Some(id)
                    } else if flags & ConnFlags::INACTIVE == 0 {
                        // The master moved the client to another real server.
                        self.remove(id);
                        None
                    } else {
                        return Applied::Stale;
                    }
                }
                None => None,
            }
        };
        let timeout = match s.timeout {
            0 if template => V0_TEMPLATE_TIMEOUT,
            0 => {
                let t = self.timeouts();
                match s.protocol {
                    6 => t.tcp[usize::from(s.state).min(tcp::STATES - 1)],
                    132 => t.sctp[usize::from(s.state).min(sctp::STATES - 1)],
                    _ => t.udp,
                }
            }
            t => t,
        };
        let now = self.now();
        let outcome;
        let id = match existing {
            Some(id) => {
                let Some(c) = self.conns.get_mut(id) else { return Applied::Full };
                if (c.flags ^ flags) & ConnFlags::INACTIVE != 0
                    && !template
                    && let Some(d) = &c.dest
                {
                    d.set_active(flags & ConnFlags::INACTIVE == 0);
                }
                c.flags = (flags & BACKUP_UPD_MASK) | (c.flags & !BACKUP_UPD_MASK);
                if c.dest.is_none() {
                    // `ip_vs_try_bind_dest`: the real server may have been configured since.
                    self.sync_bind(id, s);
                }
                outcome = Applied::Updated;
                id
            }
            None => {
                let dest = self.sync_find_dest(s);
                if let Some(d) = &dest {
                    flags = with_method(flags, d.method());
                }
                let cport = pe.map_or(s.cport, |d| self.conns.pe_port(d));
                let mut conn = Conn::new(s.protocol, cport, s.vport, s.dport);
                conn.flags = flags;
                conn.fwmark = s.fwmark;
                conn.dest = dest.clone();
                let addrs = ConnAddrs { caddr: s.caddr, vaddr: s.vaddr, daddr: s.daddr };
                let Ok(id) = self.conns.insert(addrs, conn) else { return Applied::Full };
                self.sync_forget(id);
                if let Some(d) = pe {
                    self.conns.set_pe_data(id, d);
                }
                if let Some(d) = &dest {
                    d.bind(template);
                    if !template && flags & ConnFlags::INACTIVE == 0 {
                        d.set_active(true);
                    }
                }
                outcome = if dest.is_some() { Applied::Bound } else { Applied::Unbound };
                id
            }
        };
        if let Some(c) = self.conns.get_mut(id) {
            c.in_pkts = threshold;
            c.state = s.state as u8;
            c.flags &= !ConnFlags::SYNC_STATE_CHANGED;
            c.timeout = timeout;
            c.expires = now + u64::from(timeout) * 1000;
        }
        outcome
    }

    /// Our dest for a synced entry (`ip_vs_find_dest`): the service by fwmark or address,
    /// then the real server by address and port (port 0 too for a fwmark service).
    fn sync_find_dest(&self, s: &SyncConn) -> Option<std::sync::Arc<crate::dest::Dest>> {
        let svc = self.services().lookup(s.fwmark, s.protocol, &s.vaddr, s.vport)?;
        svc.find_dest(&s.daddr, s.dport)
            .or_else(|| (s.fwmark != 0).then(|| svc.find_dest(&s.daddr, 0)).flatten())
            .cloned()
    }

    /// Binds an unbound synced entry to our dest if there is one now.
    fn sync_bind(&mut self, id: crate::conn::ConnId, s: &SyncConn) {
        let Some(d) = self.sync_find_dest(s) else { return };
        let Some(c) = self.conns.get_mut(id) else { return };
        let template = c.is_template();
        c.flags = with_method(c.flags, d.method());
        d.bind(template);
        if !template && c.flags & ConnFlags::INACTIVE == 0 {
            d.set_active(true);
        }
        c.dest = Some(d);
    }
}

/// The entry forwards as our dest does (method, and NOOUTPUT unless NAT); activity and the
/// rest come from the message.
fn with_method(flags: u32, method: ForwardMethod) -> u32 {
    let mut f = flags & !(ConnFlags::FWD_MASK | ConnFlags::NOOUTPUT);
    f |= method as u32;
    if method != ForwardMethod::Masq {
        f |= ConnFlags::NOOUTPUT;
    }
    f
}
