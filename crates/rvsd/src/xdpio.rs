//! The XDP backend's wiring (`--io xdp|auto`): attach the steering program to every served
//! interface, open one AF_XDP socket per (interface, receive queue), the sockets of a worker
//! sharing its UMEM, and keep the program's maps in step with the services (`IoHooks`,
//! called by the admin before a command returns, and once a second for address changes).
//!
//! `--workers N` (docs/design.md "AF_XDP: workers by queue, connections by client"): worker
//! i serves queues i (mod N) of every interface; the connection table is per worker without
//! locks, and a frame received by a worker that does not own its client address is handed to
//! the owner over a lock-free ring (xdp/src/handoff.rs).

use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use node::Node;
use xdp::xsk::{Socket, SocketConfig, Umem};

use crate::admin::{IfIo, IoHooks, XdpCounters};

/// Ring sizes of every socket. The fill and RX rings hold a burst of 8192 frames while the
/// worker is away (descheduled on a busy machine): 16 MiB of UMEM per socket at MTU 1500
/// (2 KiB frames), 32 MiB above.
const RINGS: SocketConfig = SocketConfig { fill: 8192, comp: 2048, rx: 8192, tx: 2048 };

/// The attached program and what rvsd reports about it.
pub struct XdpIo {
    steering: Mutex<xdp::Steering>,
    node: Arc<Node>,
    ifs: Vec<IfIo>,
    /// Per worker, its queues (`interface:queue`).
    queues: Vec<Vec<String>>,
}

/// Everything `--io xdp` needs to start: the attached program and the workers' sockets.
pub struct Started {
    steering: xdp::Steering,
    ifs: Vec<IfIo>,
    queues: Vec<Vec<String>>,
    pub workers: Vec<xdp::worker::Setup>,
}

impl Started {
    /// The hooks the admin calls (maps follow the node's services from now on).
    pub fn hooks(self, node: Arc<Node>) -> (Arc<XdpIo>, Vec<xdp::worker::Setup>) {
        let io = Arc::new(XdpIo { steering: Mutex::new(self.steering), node, ifs: self.ifs, queues: self.queues });
        io.services_changed(&[]);
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

/// Attaches and binds, for `workers` workers (≤ [`worker_count`]): worker i owns the
/// receive queues i, i + workers, ... of every interface, with its own UMEM shared by its
/// sockets (forwarding between its interfaces stays without a copy), and hand-off rings to
/// the others (xdp/src/handoff.rs). On any error everything done so far is undone (dropping
/// the program detaches it) and the error says what failed.
pub fn start(interfaces: &[String], busy_poll: bool, workers: usize) -> Result<Started, String> {
    let workers = workers.max(1);
    let mut steering = xdp::Steering::load().map_err(|e| e.to_string())?;
    let mut ifs = Vec::new();
    // Per worker: its (ifindex, name, queue)s.
    let mut queues: Vec<Vec<(u32, String, u32)>> = vec![Vec::new(); workers];
    for name in interfaces {
        let mode = steering.attach(name, false).map_err(|e| e.to_string())?;
        let ifindex = xdp::sys::if_index(name).map_err(|e| format!("{name}: {e}"))?;
        let n = xdp::sys::rx_queues(name).min(xdp::program::QUEUES_PER_IF);
        if mode == xdp::AttachMode::Generic {
            tracing::warn!(
                "{name}: XDP in generic mode (the driver has no native XDP): slower, and GSO super-frames from a peer with TSO are dropped"
            );
        }
        for q in 0..n {
            queues[q as usize % workers].push((ifindex, name.clone(), q));
        }
        ifs.push(IfIo {
            name: name.clone(),
            backend: "xdp".into(),
            xdp_mode: Some(mode.name().into()),
            zero_copy: None,
            queues: n,
        });
    }
    let mtu = interfaces.iter().filter_map(|n| node::io::if_mtu(n).ok()).max().unwrap_or(1500);
    let frame = xdp::xsk::frame_size_for_mtu(mtu);
    let mut peers = if workers > 1 {
        let slot = frame - xdp::xsk::TX_HEADROOM;
        xdp::worker::peers(workers, slot)
            .map_err(|e| format!("AF_XDP hand-off doorbells: {e}"))?
            .into_iter()
            .map(Some)
            .collect()
    } else {
        vec![None]
    };
    let mut setups = Vec::with_capacity(workers);
    for (w, mine) in queues.iter().enumerate() {
        let umem = Umem::new(RINGS.frames() * mine.len() as u32 + 1024, frame)
            .map_err(|e| format!("AF_XDP UMEM of worker {w}: {e}"))?;
        tracing::info!(
            "AF_XDP worker {w}: UMEM of {} frames of {frame} bytes (largest MTU {mtu}), {} queue(s)",
            umem.frames(),
            mine.len()
        );
        let mut socks: Vec<Socket> = Vec::with_capacity(mine.len());
        for (ifindex, name, q) in mine {
            let s = Socket::open(&umem, *ifindex, *q, RINGS, socks.first())
                .map_err(|e| format!("{name} queue {q}: AF_XDP socket: {e}"))?;
            if let Some(i) = ifs.iter_mut().find(|i| i.name == *name) {
                i.zero_copy = Some(s.zero_copy());
            }
            socks.push(s);
        }
        // Fill rings full before any socket is in the program's map (worker.rs `Setup::new`).
        let mut setup = xdp::worker::Setup::new(w, umem, socks, xdp::worker::Options { busy_poll });
        setup.peers = peers[w].take();
        setups.push(setup);
    }
    for (mine, setup) in queues.iter().zip(&setups) {
        for ((ifindex, _, q), s) in mine.iter().zip(&setup.socks) {
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
    let queues = queues.iter().map(|m| m.iter().map(|(_, name, q)| format!("{name}:{q}")).collect()).collect();
    Ok(Started { steering, ifs, queues, workers: setups })
}

impl IoHooks for XdpIo {
    fn report(&self) -> (Vec<IfIo>, Option<XdpCounters>) {
        let st = self.steering.lock().unwrap_or_else(|e| e.into_inner()).stats();
        (self.ifs.clone(), Some(XdpCounters { steered: st.steered, no_socket: st.no_socket, passed: st.passed }))
    }

    fn services_changed(&self, extra: &[ipvs::ServiceKey]) {
        let ipvs = &self.node.ipvs;
        let want = xdp::SteerMaps::of(&ipvs.services_full(), &ipvs.fwmark_rules(), extra, &locals(&self.node));
        let mut s = self.steering.lock().unwrap_or_else(|e| e.into_inner());
        if *s.current() == want {
            return;
        }
        match s.sync(&want) {
            Ok(n) => tracing::debug!("XDP steering maps: {n} entries changed"),
            Err(e) => tracing::error!("XDP steering maps: {e}"),
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

    fn services_changed(&self, _extra: &[ipvs::ServiceKey]) {}
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
