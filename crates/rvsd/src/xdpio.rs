//! The XDP backend's wiring (`--io xdp|auto`): attach the steering program to every served
//! interface, open one AF_XDP socket per (interface, receive queue), the sockets of a worker
//! sharing its UMEM, and keep the program's maps in step with the services (`IoHooks`, called
//! by the admin before a command returns: only the entries of the services a command touched
//! change, O(1) in the table's size; [`XdpIo::tick`] twice a second follows the director's
//! addresses).
//!
//! `--workers N` (docs/design.md "AF_XDP: workers by queue, connections by client"): worker
//! i serves queues i (mod N) of every interface; the connection table is per worker without
//! locks, and a frame received by a worker that does not own its client address is handed to
//! the owner over a lock-free ring (xdp/src/handoff.rs). A hot restart prepares all of it
//! (program loaded, UMEMs, sockets with rings) and binds and attaches once the old daemon has
//! let go of the queues (handover.rs, docs/design.md "Hot restart").

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use node::Node;
use xdp::xsk::{Socket, SocketConfig, Umem};

use crate::admin::{IfIo, IoHooks, XdpCounters};

/// Ring sizes of every socket. The fill and RX rings hold a burst of 8192 frames while the
/// worker is away (descheduled on a busy machine): 16 MiB of UMEM per socket at MTU 1500
/// (2 KiB frames), 32 MiB above.
const RINGS: SocketConfig = SocketConfig { fill: 8192, comp: 2048, rx: 8192, tx: 2048 };

/// The program and what rvsd reports about it.
pub struct XdpIo {
    /// The program with the model of its maps; `None` once released to a daemon taking over
    /// (hot restart).
    steering: Mutex<Option<Maps>>,
    node: Arc<Node>,
    ifs: Mutex<Vec<IfIo>>,
    /// Per worker, its queues (`interface:queue`).
    queues: Vec<Vec<String>>,
    /// Sockets prepared but not bound yet (a hot restart binds them once the old daemon let go).
    pending: Mutex<Option<Pending>>,
}

/// The program with the model of its maps (docs/design.md "XDP maps follow the services").
struct Maps {
    prog: xdp::Steering,
    model: xdp::SteerModel,
    /// The table and rules the model was last brought to: a table published without the
    /// admin telling (none is known) is caught by the tick.
    seen: Option<(Arc<ipvs::ServiceTable>, Arc<Vec<ipvs::fwmark::FwmarkRule>>)>,
    /// A map update failed: the next tick resynchronises the whole maps.
    stale: bool,
}

/// What `--io xdp` has done at start: the program loaded (and attached, unless it waits for a
/// daemon it takes over from), the workers' sockets (bound, or prepared only).
pub struct Started {
    steering: xdp::Steering,
    ifs: Vec<IfIo>,
    queues: Vec<Vec<String>>,
    workers: Vec<xdp::worker::Setup>,
    pending: Option<Pending>,
}

/// One worker's UMEM and sockets with their rings, not bound yet.
struct PendingWorker {
    umem: Umem,
    /// (ifindex, interface, queue, socket): the first socket registers the UMEM.
    socks: Vec<(u32, String, u32, Socket)>,
}

/// Everything that does not conflict with the old daemon of a hot restart, which holds the
/// interfaces' queues and program slot: the workers' UMEMs, their sockets with rings mapped,
/// the hand-off rings between workers.
pub struct Pending {
    interfaces: Vec<String>,
    workers: Vec<PendingWorker>,
    peers: Vec<Option<xdp::worker::Peers>>,
    opts: xdp::worker::Options,
}

impl Started {
    /// The number of AF_XDP workers (bound now or once a hot restart's old daemon let go).
    pub fn worker_count(&self) -> usize {
        self.queues.len()
    }

    /// The hooks the admin calls (maps follow the node's services from now on; they are
    /// filled before the program is attached) and the workers' setups when they are bound.
    pub fn hooks(self, node: Arc<Node>) -> (Arc<XdpIo>, Vec<xdp::worker::Setup>) {
        let maps = Maps { prog: self.steering, model: xdp::SteerModel::default(), seen: None, stale: true };
        let io = Arc::new(XdpIo {
            steering: Mutex::new(Some(maps)),
            node,
            ifs: Mutex::new(self.ifs),
            queues: self.queues,
            pending: Mutex::new(self.pending),
        });
        io.services_resync();
        (io, self.workers)
    }
}

/// The director's own addresses (frames to them stay with its kernel).
fn locals(node: &Node) -> Vec<IpAddr> {
    node.net().interfaces.iter().flat_map(|i| i.addrs.iter().map(|(a, _)| *a)).collect()
}

/// How many AF_XDP workers `--workers wanted` gives on these interfaces: at most the fewest
/// receive queues of any of them (each worker needs a queue, so a socket to transmit on, on
/// every interface). With the reason when fewer than asked.
pub fn worker_count(interfaces: &[String], wanted: usize) -> (usize, Option<String>) {
    let fewest = interfaces
        .iter()
        .map(|n| xdp::sys::rx_queues(n).min(xdp::program::QUEUES_PER_IF) as usize)
        .min()
        .unwrap_or(1)
        .max(1);
    if wanted <= fewest {
        (wanted.max(1), None)
    } else {
        (fewest, Some(format!("{wanted} workers asked, but an interface has only {fewest} receive queue(s)")))
    }
}

/// A receive queue: (ifindex, interface, queue).
type Queue = (u32, String, u32);

/// Per worker, its queues: worker i owns the receive queues i, i + workers, ... of every
/// interface.
fn queues_of(interfaces: &[String], workers: usize) -> Result<Vec<Vec<Queue>>, String> {
    let mut queues: Vec<Vec<Queue>> = vec![Vec::new(); workers];
    for name in interfaces {
        let ifindex = xdp::sys::if_index(name).map_err(|e| format!("{name}: {e}"))?;
        let n = xdp::sys::rx_queues(name).min(xdp::program::QUEUES_PER_IF);
        for q in 0..n {
            queues[q as usize % workers].push((ifindex, name.clone(), q));
        }
    }
    Ok(queues)
}

/// Prepares, for `workers` workers, each worker's UMEM (shared by its sockets: forwarding
/// between its interfaces stays without a copy), one socket per (interface, queue) it owns and
/// the hand-off rings to the others (xdp/src/handoff.rs), without binding or attaching
/// anything (the costly part: UMEMs pinned, rings mapped).
fn prepare(interfaces: &[String], busy_poll: bool, workers: usize) -> Result<(Pending, Vec<Vec<String>>), String> {
    let opts = xdp::worker::Options::from_env(busy_poll)?;
    let workers = workers.max(1);
    let queues = queues_of(interfaces, workers)?;
    let mtu = interfaces.iter().filter_map(|n| node::io::if_mtu(n).ok()).max().unwrap_or(1500);
    let frame = xdp::xsk::frame_size_for_mtu(mtu);
    let peers = if workers > 1 {
        let slot = frame - xdp::xsk::TX_HEADROOM;
        xdp::worker::peers(workers, slot)
            .map_err(|e| format!("AF_XDP hand-off doorbells: {e}"))?
            .into_iter()
            .map(Some)
            .collect()
    } else {
        vec![None]
    };
    let mut pending = Vec::with_capacity(workers);
    for (w, mine) in queues.iter().enumerate() {
        let umem = Umem::new(RINGS.frames() * mine.len() as u32 + 1024, frame)
            .map_err(|e| format!("AF_XDP UMEM of worker {w}: {e}"))?;
        tracing::info!(
            "AF_XDP worker {w}: UMEM of {} frames of {frame} bytes (largest MTU {mtu}), {} queue(s)",
            umem.frames(),
            mine.len()
        );
        let mut socks = Vec::with_capacity(mine.len());
        for (k, (ifindex, name, q)) in mine.iter().enumerate() {
            let s =
                Socket::prepare(&umem, RINGS, k == 0).map_err(|e| format!("{name} queue {q}: AF_XDP socket: {e}"))?;
            socks.push((*ifindex, name.clone(), *q, s));
        }
        pending.push(PendingWorker { umem, socks });
    }
    let names = queues.iter().map(|m| m.iter().map(|(_, name, q)| format!("{name}:{q}")).collect()).collect();
    Ok((Pending { interfaces: interfaces.to_vec(), workers: pending, peers, opts }, names))
}

/// Attaches the program to every interface and binds the prepared sockets, waiting up to
/// `wait` for a program or socket still held by a daemon going away; then fills the rings
/// and puts the sockets in the program's map.
fn activate(
    steering: &mut xdp::Steering,
    mut p: Pending,
    wait: Duration,
) -> Result<(Vec<IfIo>, Vec<xdp::worker::Setup>), String> {
    let mut ifs = Vec::new();
    for name in &p.interfaces {
        let mode = steering.attach_waiting(name, false, wait).map_err(|e| e.to_string())?;
        if mode == xdp::AttachMode::Generic {
            tracing::warn!(
                "{name}: XDP in generic mode (the driver has no native XDP): slower, and GSO super-frames from a peer with TSO are dropped"
            );
        }
        ifs.push(IfIo {
            name: name.clone(),
            backend: "xdp".into(),
            xdp_mode: Some(mode.name().into()),
            zero_copy: None,
            queues: p.workers.iter().flat_map(|w| &w.socks).filter(|s| s.1 == *name).count() as u32,
        });
    }
    let mut setups = Vec::with_capacity(p.workers.len());
    let mut bound = Vec::with_capacity(p.workers.len());
    for (w, pw) in p.workers.into_iter().enumerate() {
        let mut socks: Vec<Socket> = Vec::with_capacity(pw.socks.len());
        let mut queues = Vec::with_capacity(pw.socks.len());
        for (ifindex, name, q, mut s) in pw.socks {
            s.bind(ifindex, q, socks.first(), wait).map_err(|e| format!("{name} queue {q}: AF_XDP socket: {e}"))?;
            if let Some(i) = ifs.iter_mut().find(|i| i.name == name) {
                i.zero_copy = Some(s.zero_copy());
            }
            socks.push(s);
            queues.push((ifindex, q));
        }
        // Fill rings full before any socket is in the program's map (worker.rs `Setup::new`).
        let mut setup = xdp::worker::Setup::new(w, pw.umem, socks, p.opts);
        setup.peers = p.peers.get_mut(w).and_then(Option::take);
        setups.push(setup);
        bound.push(queues);
    }
    for (queues, setup) in bound.iter().zip(&setups) {
        for ((ifindex, q), s) in queues.iter().zip(&setup.socks) {
            steering.set_socket(*ifindex, *q, s).map_err(|e| e.to_string())?;
        }
    }
    for i in &ifs {
        tracing::info!(
            "{}: XDP steering attached ({} mode), {} AF_XDP socket(s), {}",
            i.name,
            i.xdp_mode.as_deref().unwrap_or("?"),
            i.queues,
            if i.zero_copy == Some(true) { "zero-copy" } else { "copy mode" }
        );
    }
    Ok((ifs, setups))
}

/// Attaches and binds, for `workers` workers (≤ [`worker_count`]). On any error everything
/// done so far is undone (dropping the program detaches it) and the error says what failed.
pub fn start(interfaces: &[String], busy_poll: bool, workers: usize) -> Result<Started, String> {
    let mut steering = xdp::Steering::load().map_err(|e| e.to_string())?;
    let (pending, queues) = prepare(interfaces, busy_poll, workers)?;
    let (ifs, workers) = activate(&mut steering, pending, xdp::xsk::BIND_WAIT)?;
    Ok(Started { steering, ifs, queues, workers, pending: None })
}

/// A hot restart's start: the program loaded and the sockets prepared, nothing attached or
/// bound while the old daemon holds the interfaces ([`XdpIo::activate`] does it once the old
/// one has let go).
pub fn prepare_takeover(interfaces: &[String], busy_poll: bool, workers: usize) -> Result<Started, String> {
    let steering = xdp::Steering::load().map_err(|e| e.to_string())?;
    let (pending, queues) = prepare(interfaces, busy_poll, workers)?;
    let ifs = interfaces
        .iter()
        .map(|n| IfIo {
            name: n.clone(),
            backend: "xdp".into(),
            xdp_mode: None,
            zero_copy: None,
            queues: pending.workers.iter().flat_map(|w| &w.socks).filter(|s| s.1 == *n).count() as u32,
        })
        .collect();
    Ok(Started { steering, ifs, queues, workers: Vec::new(), pending: Some(pending) })
}

impl XdpIo {
    /// Hot restart, new daemon: attaches and binds what [`prepare_takeover`] prepared, as
    /// soon as the old daemon's link and sockets are gone (within `wait`).
    pub fn activate(&self, wait: Duration) -> Result<Vec<xdp::worker::Setup>, String> {
        let p = self.pending.lock().unwrap_or_else(|e| e.into_inner()).take().ok_or("nothing prepared to attach")?;
        let mut g = self.lock();
        let maps = g.as_mut().ok_or("the XDP program was released")?;
        let (ifs, workers) = activate(&mut maps.prog, p, wait)?;
        *self.ifs.lock().unwrap_or_else(|e| e.into_inner()) = ifs;
        Ok(workers)
    }

    /// Hot restart, old daemon (its worker has stopped and closed its sockets): detaches the
    /// program, so that the new daemon can attach its own.
    pub fn release(&self) {
        drop(self.lock().take());
        self.pending.lock().unwrap_or_else(|e| e.into_inner()).take();
    }
}

impl XdpIo {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Maps>> {
        self.steering.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every half second: the director's addresses (O(addresses)); a whole resynchronisation
    /// (O(table)) only after a failed update or a table published without the admin telling.
    pub fn tick(&self) {
        let ipvs = &self.node.ipvs;
        let (table, rules) = (ipvs.services_full(), ipvs.fwmark_rules());
        let mut g = self.lock();
        let Some(m) = g.as_mut() else { return };
        let told = m.seen.as_ref().is_some_and(|(t, r)| Arc::ptr_eq(t, &table) && Arc::ptr_eq(r, &rules));
        if m.stale || !told {
            let extra = m.model.ahead_keys().to_vec();
            if !m.stale {
                tracing::debug!("XDP steering maps: the table changed without a command: resynchronising");
            }
            return m.resync(table, rules, &extra, &locals(&self.node));
        }
        m.model.set_locals(&locals(&self.node));
        m.flush();
    }
}

impl Maps {
    /// Writes the model's pending changes to the maps.
    fn flush(&mut self) {
        let d = self.model.take_diff();
        if d.is_empty() {
            return;
        }
        match self.prog.apply(&d) {
            Ok(n) => tracing::debug!("XDP steering maps: {n} entries changed"),
            Err(e) => {
                tracing::error!("XDP steering maps: {e} (resynchronising at the next tick)");
                self.stale = true;
            }
        }
    }

    /// The model rebuilt from the whole table and the maps brought to it (O(table)).
    fn resync(
        &mut self,
        table: Arc<ipvs::ServiceTable>,
        rules: Arc<Vec<ipvs::fwmark::FwmarkRule>>,
        extra: &[ipvs::ServiceKey],
        locals: &[IpAddr],
    ) {
        self.model = xdp::SteerModel::of(&table, &rules, extra, locals);
        match self.prog.sync(&self.model.maps()) {
            Ok(n) => {
                tracing::debug!("XDP steering maps: resynchronised, {n} entries changed");
                self.stale = false;
            }
            Err(e) => {
                tracing::error!("XDP steering maps: {e} (resynchronising at the next tick)");
                self.stale = true;
            }
        }
        self.seen = Some((table, rules));
    }
}

impl IoHooks for XdpIo {
    fn report(&self) -> (Vec<IfIo>, Option<XdpCounters>) {
        let st = self.lock().as_ref().map(|m| m.prog.stats()).unwrap_or_default();
        let ifs = self.ifs.lock().unwrap_or_else(|e| e.into_inner()).clone();
        (ifs, Some(XdpCounters { steered: st.steered, no_socket: st.no_socket, passed: st.passed }))
    }

    fn services_ahead(&self, keys: &[ipvs::ServiceKey]) {
        let mut g = self.lock();
        let Some(m) = g.as_mut() else { return };
        m.model.ahead(keys);
        m.flush();
    }

    fn services_changed(&self, keys: &[ipvs::ServiceKey]) {
        let ipvs = &self.node.ipvs;
        let (table, rules) = (ipvs.services_full(), ipvs.fwmark_rules());
        let mut g = self.lock();
        let Some(m) = g.as_mut() else { return };
        let same_rules = m.seen.as_ref().is_some_and(|(_, r)| Arc::ptr_eq(r, &rules));
        if m.stale || !same_rules {
            return m.resync(table, rules, &[], &locals(&self.node));
        }
        m.model.changed(&table, keys);
        m.flush();
        m.seen = Some((table, rules));
    }

    fn services_resync(&self) {
        let ipvs = &self.node.ipvs;
        if let Some(m) = self.lock().as_mut() {
            m.resync(ipvs.services_full(), ipvs.fwmark_rules(), &[], &locals(&self.node));
        }
    }

    fn worker_queues(&self) -> Vec<Vec<String>> {
        self.queues.clone()
    }
}

/// The AF_PACKET backend's report (no program).
pub struct AfPacketIo(pub Vec<String>);

impl IoHooks for AfPacketIo {
    fn report(&self) -> (Vec<IfIo>, Option<XdpCounters>) {
        let ifs = self
            .0
            .iter()
            .map(|n| IfIo { name: n.clone(), backend: "afpacket".into(), xdp_mode: None, zero_copy: None, queues: 0 })
            .collect();
        (ifs, None)
    }

    fn services_ahead(&self, _keys: &[ipvs::ServiceKey]) {}
    fn services_changed(&self, _keys: &[ipvs::ServiceKey]) {}
    fn services_resync(&self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `lo` has one receive queue: more workers than that are refused with the reason, and
    /// an interface that does not exist counts as one queue (the attach then names it).
    #[test]
    fn workers_at_most_the_fewest_queues() {
        let lo = vec!["lo".to_string()];
        assert_eq!(worker_count(&lo, 1), (1, None));
        let (n, why) = worker_count(&lo, 2);
        assert_eq!(n, 1);
        assert!(why.is_some_and(|w| w.contains("2 workers asked") && w.contains("1 receive queue")));
        assert_eq!(worker_count(&["rvs-no-such-if".to_string()], 4).0, 1);
    }
}
