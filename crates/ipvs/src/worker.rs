//! Per-worker IPVS state: the connection table, the engine clock and the connection life cycle
//! (creation, state transitions with ActiveConn/InActConn accounting, expiry by incremental
//! sweep — no timer object per connection; lvs-semantics.md §9, §11).

use std::net::IpAddr;
use std::sync::Arc;

use crate::conn::{Conn, ConnAddrs, ConnFlags, ConnId, ConnTable, TableFull};
use crate::dest::{Dest, ForwardMethod};
use crate::ipvs::Ipvs;
use crate::proto::{Dir, NO_EVENT, Timeouts, sctp, tcp, udp};
use crate::service::ServiceTable;

/// Initial timeout of a new entry before its first transition (§9), seconds.
const INITIAL_TIMEOUT: u32 = 3;
/// Deferred expiry of an entry that still controls others (§9), seconds.
const DEFER_TIMEOUT: u32 = 60;

pub struct Worker {
    pub id: usize,
    pub ipvs: Arc<Ipvs>,
    pub conns: ConnTable,
    /// Engine clock, milliseconds; set by the node once per batch.
    now: u64,
    timeouts: Arc<Timeouts>,
    /// The service table as of the current batch (no atomic operation per packet).
    services: Arc<ServiceTable>,
    fwmark_rules: Arc<Vec<crate::fwmark::FwmarkRule>>,
    pub(crate) defense: crate::defense::DefenseState,
    /// IP identification for outer tunnel headers without DF.
    pub(crate) ip_id: u16,
    /// Stray RSTs this worker may still send (`stray_rst` per second).
    pub(crate) rst_bucket: crate::xmit::rst::RstBucket,
    /// SYN proxy: per entry, the cookie until the real server answers, then the sequence
    /// shift (synproxy.rs). Zeroed pages, committed as entries use them.
    pub(crate) synproxy_seq: Vec<u32>,
    /// SYN proxy: per entry, the director's TSval until the real server answers, then the
    /// timestamp shift; and what the handshake negotiated (synproxy.rs `Negotiated`).
    pub(crate) synproxy_ts: Vec<u32>,
    pub(crate) synproxy_opt: Vec<u32>,
    /// SYN proxy: held client segments (synproxy.rs), allocated once.
    pub(crate) synproxy_park: Vec<u8>,
    pub(crate) synproxy_parked: Vec<crate::synproxy::Parked>,
    /// Entries to send to the sync backups (empty unless a master runs).
    pub sync: crate::sync::master::SyncOut,
}

/// The tuple of a packet that opens a connection.
#[derive(Clone, Copy, Debug)]
pub struct NewConn {
    pub protocol: u8,
    pub caddr: IpAddr,
    pub cport: u16,
    pub vaddr: IpAddr,
    pub vport: u16,
    pub dport: u16,
    pub fwmark: u32,
}

impl Worker {
    pub fn new(id: usize, ipvs: Arc<Ipvs>) -> Self {
        let max_conns = ipvs.max_conns;
        let mut conns = ConnTable::new(ipvs.max_conns);
        // Address space for the whole table up front (pages are committed as used), so the
        // slab never reallocates on the packet path.
        conns.reserve(ipvs.max_conns);
        let timeouts = ipvs.timeouts();
        let services = ipvs.services_full();
        let fwmark_rules = ipvs.fwmark_rules();
        let restored = ipvs.take_restored(id);
        let mut w = Worker {
            fwmark_rules,
            defense: Default::default(),
            id,
            ipvs,
            conns,
            now: 0,
            timeouts,
            services,
            ip_id: (id as u16).wrapping_mul(0x9e37),
            rst_bucket: Default::default(),
            synproxy_seq: vec![0; max_conns],
            synproxy_ts: vec![0; max_conns],
            synproxy_opt: vec![0; max_conns],
            synproxy_park: vec![0; crate::synproxy::PARK_SLOTS * crate::synproxy::PARK_BYTES],
            synproxy_parked: vec![Default::default(); crate::synproxy::PARK_SLOTS],
            sync: Default::default(),
        };
        if !restored.is_empty() {
            // A hot restart's share of the previous process's table (restore.rs).
            w.restore(&restored);
        }
        w
    }

    /// Advance the clock (milliseconds) and pick up configuration published since the last
    /// batch. Call once per batch.
    pub fn set_now(&mut self, now_ms: u64) {
        self.now = now_ms;
        let t = self.ipvs.timeouts_guard();
        if !Arc::ptr_eq(&self.timeouts, &t) {
            self.timeouts = t.clone();
        }
        let cur = self.ipvs.services();
        if !Arc::ptr_eq(&self.services, &cur) {
            self.services = cur.clone();
        }
        let rules = self.ipvs.fwmark_rules_guard();
        if !Arc::ptr_eq(&self.fwmark_rules, &rules) {
            self.fwmark_rules = rules.clone();
        }
        self.defense_tick();
        self.sync_tick();
    }

    /// The classifier rules as of this batch.
    #[inline]
    pub fn fwmark_rules(&self) -> &Arc<Vec<crate::fwmark::FwmarkRule>> {
        &self.fwmark_rules
    }

    /// The service table as of this batch.
    #[inline]
    pub fn services(&self) -> &Arc<ServiceTable> {
        &self.services
    }

    /// First stage of batch pipelining: from an IPv4 packet (network header first), compute
    /// the connection hash of its client side and prefetch the index line. Returns the hash
    /// (store it in `skb.hash`) for [`ConnTable::prefetch_entry`] and the lookup. Garbage
    /// yields 0; nothing is validated here.
    #[inline]
    pub fn prefetch(&self, ip: &[u8]) -> u32 {
        let Some(h) = ip.get(..20) else { return 0 };
        let proto = h[9];
        if proto != 6 && proto != 17 && proto != 132 {
            return 0;
        }
        let ihl = (h[0] & 0xf) as usize * 4;
        let Some(ports) = ip.get(ihl..ihl + 4) else { return 0 };
        let saddr = u32::from_be_bytes([h[12], h[13], h[14], h[15]]);
        let daddr = u32::from_be_bytes([h[16], h[17], h[18], h[19]]);
        let hash = if self.services.is_vip_v4(daddr) {
            self.conns.hash_v4(proto, saddr, u16::from_be_bytes([ports[0], ports[1]]))
        } else {
            self.conns.hash_v4(proto, daddr, u16::from_be_bytes([ports[2], ports[3]]))
        };
        self.conns.prefetch(hash);
        hash
    }

    #[inline]
    pub fn now(&self) -> u64 {
        self.now
    }

    /// Create an entry bound to `dest` (§7: the dest's conn_flags — method, INACTIVE, and
    /// NOOUTPUT unless NAT). The caller counts the connection in the stats.
    pub fn create(
        &mut self,
        t: &NewConn,
        dest: &Arc<Dest>,
        control: Option<ConnId>,
        extra_flags: u32,
    ) -> Result<ConnId, TableFull> {
        if self.conns.len() >= self.conns.max() && self.defense.drop_entry {
            // rvs: a full table under drop_entry makes room from a half-open entry (defense.rs).
            self.evict_half_open();
        }
        let method = dest.method();
        let mut flags = method as u32 | ConnFlags::INACTIVE | extra_flags;
        if method != ForwardMethod::Masq {
            flags |= ConnFlags::NOOUTPUT;
        }
        let mut conn = Conn::new(t.protocol, t.cport, t.vport, t.dport);
        conn.flags = flags;
        conn.timeout = INITIAL_TIMEOUT;
        conn.expires = self.now + INITIAL_TIMEOUT as u64 * 1000;
        conn.dest = Some(dest.clone());
        conn.control = control.unwrap_or(u32::MAX);
        conn.fwmark = t.fwmark;
        let addrs = ConnAddrs { caddr: t.caddr, vaddr: t.vaddr, daddr: dest.addr };
        let id = self.conns.insert(addrs, conn)?;
        self.sync_forget(id);
        dest.bind(flags & ConnFlags::TEMPLATE != 0);
        if let Some(c) = control
            && let Some(ct) = self.conns.get_mut(c)
        {
            ct.n_control += 1;
        }
        Ok(id)
    }

    /// Run the protocol state machine for one packet and re-arm the entry's timer.
    /// Returns the new state.
    #[inline(always)]
    pub fn transition(&mut self, id: ConnId, dir: Dir, tcp_flags: u8) -> u8 {
        let secure = self.defense.secure_tcp;
        let now = self.now;
        let Some(c) = self.conns.get_mut(id) else {
            return 0;
        };
        let table_dir = if dir == Dir::Input && c.flags & ConnFlags::NOOUTPUT != 0 { Dir::InputOnly } else { dir };
        let new_state = match c.protocol {
            6 => tcp::transition(table_dir, c.state, tcp_flags, secure),
            132 => match sctp::Event::from_u8(tcp_flags) {
                Some(ev) if tcp_flags != NO_EVENT => sctp::transition(table_dir, c.state, ev),
                _ => c.state,
            },
            _ => udp::NORMAL,
        };
        if new_state == c.state && c.timeout != INITIAL_TIMEOUT && c.control == u32::MAX {
            // Most packets: same state, so the same timeout and activity, and no template to
            // assure — just re-arm the timer (what `change_state` comes to in that case).
            c.expires = now + c.timeout as u64 * 1000;
            if dir == Dir::Output {
                c.flags &= !ConnFlags::NOOUTPUT;
            }
            return new_state;
        }
        self.change_state(id, dir, new_state)
    }

    /// The rest of [`Worker::transition`]: timeout of the new state, activity counts, the
    /// controlling template.
    #[inline(never)]
    fn change_state(&mut self, id: ConnId, dir: Dir, new_state: u8) -> u8 {
        let now = self.now;
        let timeouts = &self.timeouts;
        let Some(c) = self.conns.get_mut(id) else {
            return 0;
        };
        // The state's timeout is looked up when the state changes (and on the first packet):
        // the service's own timeouts if it has them, else the global ones. A changed timeout
        // therefore applies to a live connection from its next state change.
        let timeout = if new_state != c.state || c.timeout == INITIAL_TIMEOUT {
            let svc = c.dest.as_ref().map(|d| d.svc_timeouts.load());
            let t: &Timeouts = match svc.as_ref().and_then(|g| g.as_deref()) {
                Some(t) => t,
                None => timeouts,
            };
            match c.protocol {
                6 => t.tcp[new_state as usize],
                132 => t.sctp[(new_state as usize).min(sctp::STATES - 1)],
                _ => t.udp,
            }
        } else {
            c.timeout
        };
        if dir == Dir::Output {
            c.flags &= !ConnFlags::NOOUTPUT;
        }
        let was_active = c.flags & ConnFlags::INACTIVE == 0;
        let now_active = match c.protocol {
            6 => tcp::is_active(new_state),
            132 => sctp::is_active(new_state),
            _ => false,
        };
        if new_state != c.state {
            c.flags |= ConnFlags::SYNC_STATE_CHANGED;
        }
        c.state = new_state;
        c.timeout = timeout;
        c.expires = now + timeout as u64 * 1000;
        if was_active != now_active {
            if now_active {
                c.flags &= !ConnFlags::INACTIVE;
            } else {
                c.flags |= ConnFlags::INACTIVE;
            }
            if let Some(d) = &c.dest {
                d.set_active(now_active);
            }
        }
        // Reaching ESTABLISHED (or a UDP reply) assures the controlling template (§10).
        let assure = (c.protocol == 6 && new_state == tcp::ESTABLISHED)
            || (c.protocol == 132 && new_state == sctp::ESTABLISHED)
            || (c.protocol == 17 && dir == Dir::Output);
        let control = c.control;
        if assure
            && control != u32::MAX
            && let Some(ct) = self.conns.get_mut(control)
        {
            ct.state = 1;
        }
        new_state
    }

    /// Re-arm the timer without a state change (e.g. an ICMP error about the entry).
    #[inline]
    pub fn touch(&mut self, id: ConnId) {
        let now = self.now;
        if let Some(c) = self.conns.get_mut(id) {
            c.expires = now + c.timeout as u64 * 1000;
        }
    }

    /// Unlink an entry right away: unbind from its dest, detach from its controller.
    pub fn remove(&mut self, id: ConnId) {
        let Some(c) = self.conns.remove(id) else {
            return;
        };
        if let Some(d) = &c.dest {
            d.unbind(c.flags & ConnFlags::TEMPLATE != 0, c.flags & ConnFlags::INACTIVE == 0);
        }
        if c.control != u32::MAX
            && let Some(ct) = self.conns.get_mut(c.control)
        {
            ct.n_control = ct.n_control.saturating_sub(1);
        }
    }

    /// Visit up to `budget` slab positions and expire what is due; returns how many expired.
    /// Called between batches, so expiry costs a bounded slice of time and needs no timers.
    pub fn expire(&mut self, budget: usize) -> usize {
        let n = self.conns.capacity_used();
        if n == 0 {
            return 0;
        }
        let mut expired = 0;
        for _ in 0..budget.min(n) {
            let id = (self.conns.sweep_cursor % n) as ConnId;
            self.conns.sweep_cursor = (self.conns.sweep_cursor + 1) % n;
            expired += self.expire_one(id) as usize;
        }
        expired
    }

    /// A full sweep (tests, shutdown).
    pub fn expire_all(&mut self) -> usize {
        let n = self.conns.capacity_used();
        (0..n as ConnId).map(|id| self.expire_one(id) as usize).sum()
    }

    fn expire_one(&mut self, id: ConnId) -> bool {
        let now = self.now;
        let Some(c) = self.conns.get_mut(id) else {
            return false;
        };
        // A drained dest's leftovers go at the next sweep (the drain deadline passed).
        let cut = c.dest.as_ref().is_some_and(|d| d.is_draining() && !d.is_available());
        if c.expires > now && !cut {
            return false;
        }
        if c.n_control > 0 {
            // Still controls live entries: defer in 60 s steps (§9).
            c.timeout = DEFER_TIMEOUT;
            c.expires = now + DEFER_TIMEOUT as u64 * 1000;
            // The kernel syncs a deferred entry (with in_pkts = sync_threshold).
            let threshold = self.sync.threshold();
            self.sync_conn(id, threshold);
            return false;
        }
        self.remove(id);
        true
    }

    /// Timeouts currently in force.
    pub fn timeouts(&self) -> &Timeouts {
        &self.timeouts
    }
}
