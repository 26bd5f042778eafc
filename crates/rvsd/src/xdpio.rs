//! The XDP backend's wiring (`--io xdp|auto`): attach the steering program to every served
//! interface, open one AF_XDP socket per (interface, receive queue) sharing one UMEM, and keep
//! the program's maps in step with the services (`IoHooks`, called by the admin before a
//! command returns, and once a second for address changes).
//!
//! One worker serves every socket (docs/design.md "AF_XDP: one worker"): the connection table
//! is per worker without locks, and the two directions of a NAT connection can arrive on
//! different queues or devices, so a single worker is what keeps them together today.

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
    /// `None` once released to a daemon taking over (hot restart).
    steering: Mutex<Option<xdp::Steering>>,
    node: Arc<Node>,
    ifs: Mutex<Vec<IfIo>>,
    /// Sockets prepared but not bound yet (a hot restart binds them once the old daemon let go).
    pending: Mutex<Option<Pending>>,
}

/// What `--io xdp` has done at start: the program loaded (and attached, unless it waits for a
/// daemon it takes over from), the worker's sockets (bound, or prepared only).
pub struct Started {
    steering: xdp::Steering,
    ifs: Vec<IfIo>,
    worker: Option<xdp::worker::Setup>,
    pending: Option<Pending>,
}

/// The UMEM and sockets with their rings, not bound yet: everything that does not conflict
/// with the old daemon of a hot restart, which holds the interfaces' queues and program slot.
pub struct Pending {
    interfaces: Vec<String>,
    umem: Umem,
    /// (ifindex, interface, queue, socket): the first socket registers the UMEM.
    socks: Vec<(u32, String, u32, Socket)>,
    busy_poll: bool,
}

impl Started {
    /// The hooks the admin calls (maps follow the node's services from now on; they are
    /// filled before the program is attached) and the worker's setup when it is bound.
    pub fn hooks(self, node: Arc<Node>) -> (Arc<XdpIo>, Option<xdp::worker::Setup>) {
        let io = Arc::new(XdpIo {
            steering: Mutex::new(Some(self.steering)),
            node,
            ifs: Mutex::new(self.ifs),
            pending: Mutex::new(self.pending),
        });
        io.services_changed(&[]);
        (io, self.worker)
    }
}

/// The director's own addresses (frames to them stay with its kernel).
fn locals(node: &Node) -> Vec<IpAddr> {
    node.net().interfaces.iter().flat_map(|i| i.addrs.iter().map(|(a, _)| *a)).collect()
}

/// Prepares the UMEM and one socket per (interface, queue) without
/// binding or attaching anything (the costly part: verifier, UMEM pinned, rings mapped).
fn prepare(interfaces: &[String], busy_poll: bool) -> Result<Pending, String> {
    let mut queues = Vec::new();
    for name in interfaces {
        let ifindex = xdp::sys::if_index(name).map_err(|e| format!("{name}: {e}"))?;
        let n = xdp::sys::rx_queues(name).min(xdp::program::QUEUES_PER_IF);
        queues.extend((0..n).map(|q| (ifindex, name.clone(), q)));
    }
    let mtu = interfaces.iter().filter_map(|n| node::io::if_mtu(n).ok()).max().unwrap_or(1500);
    let frame = xdp::xsk::frame_size_for_mtu(mtu);
    let umem =
        Umem::new(RINGS.frames() * queues.len() as u32 + 1024, frame).map_err(|e| format!("AF_XDP UMEM: {e}"))?;
    tracing::info!("AF_XDP UMEM: {} frames of {frame} bytes (largest MTU {mtu})", umem.frames());
    let mut socks = Vec::with_capacity(queues.len());
    for (k, (ifindex, name, q)) in queues.into_iter().enumerate() {
        let s = Socket::prepare(&umem, RINGS, k == 0).map_err(|e| format!("{name} queue {q}: AF_XDP socket: {e}"))?;
        socks.push((ifindex, name, q, s));
    }
    Ok(Pending { interfaces: interfaces.to_vec(), umem, socks, busy_poll })
}

/// Attaches the program to every interface and binds the prepared sockets, waiting up to
/// `wait` for a program or socket still held by a daemon going away; then fills the rings
/// and puts the sockets in the program's map.
fn activate(
    steering: &mut xdp::Steering,
    p: Pending,
    wait: Duration,
) -> Result<(Vec<IfIo>, xdp::worker::Setup), String> {
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
            queues: p.socks.iter().filter(|s| s.1 == *name).count() as u32,
        });
    }
    let mut socks: Vec<Socket> = Vec::with_capacity(p.socks.len());
    let mut queues = Vec::with_capacity(p.socks.len());
    for (ifindex, name, q, mut s) in p.socks {
        s.bind(ifindex, q, socks.first(), wait).map_err(|e| format!("{name} queue {q}: AF_XDP socket: {e}"))?;
        if let Some(i) = ifs.iter_mut().find(|i| i.name == name) {
            i.zero_copy = Some(s.zero_copy());
        }
        queues.push((ifindex, q));
        socks.push(s);
    }
    // Fill rings full before any socket is in the program's map (worker.rs `Setup::new`).
    let worker = xdp::worker::Setup::new(0, p.umem, socks, xdp::worker::Options { busy_poll: p.busy_poll });
    for ((ifindex, q), s) in queues.iter().zip(&worker.socks) {
        steering.set_socket(*ifindex, *q, s).map_err(|e| e.to_string())?;
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
    Ok((ifs, worker))
}

/// Attaches and binds; on any error everything done so far is undone (dropping the program
/// detaches it) and the error says what failed.
pub fn start(interfaces: &[String], busy_poll: bool) -> Result<Started, String> {
    let mut steering = xdp::Steering::load().map_err(|e| e.to_string())?;
    let pending = prepare(interfaces, busy_poll)?;
    let (ifs, worker) = activate(&mut steering, pending, xdp::xsk::BIND_WAIT)?;
    Ok(Started { steering, ifs, worker: Some(worker), pending: None })
}

/// A hot restart's start: the program loaded and the sockets prepared, nothing attached or
/// bound while the old daemon holds the interfaces ([`XdpIo::activate`] does it once the old
/// one has let go).
pub fn prepare_takeover(interfaces: &[String], busy_poll: bool) -> Result<Started, String> {
    let steering = xdp::Steering::load().map_err(|e| e.to_string())?;
    let pending = prepare(interfaces, busy_poll)?;
    let ifs = interfaces
        .iter()
        .map(|n| IfIo {
            name: n.clone(),
            backend: "xdp".into(),
            xdp_mode: None,
            zero_copy: None,
            queues: pending.socks.iter().filter(|s| s.1 == *n).count() as u32,
        })
        .collect();
    Ok(Started { steering, ifs, worker: None, pending: Some(pending) })
}

impl XdpIo {
    /// Hot restart, new daemon: attaches and binds what [`prepare_takeover`] prepared, as
    /// soon as the old daemon's link and sockets are gone (within `wait`).
    pub fn activate(&self, wait: Duration) -> Result<xdp::worker::Setup, String> {
        let p = self.pending.lock().unwrap_or_else(|e| e.into_inner()).take().ok_or("nothing prepared to attach")?;
        let mut g = self.steering.lock().unwrap_or_else(|e| e.into_inner());
        let steering = g.as_mut().ok_or("the XDP program was released")?;
        let (ifs, worker) = activate(steering, p, wait)?;
        *self.ifs.lock().unwrap_or_else(|e| e.into_inner()) = ifs;
        Ok(worker)
    }

    /// Hot restart, old daemon (its worker has stopped and closed its sockets): detaches the
    /// program, so that the new daemon can attach its own.
    pub fn release(&self) {
        drop(self.steering.lock().unwrap_or_else(|e| e.into_inner()).take());
        self.pending.lock().unwrap_or_else(|e| e.into_inner()).take();
    }
}

impl IoHooks for XdpIo {
    fn report(&self) -> (Vec<IfIo>, Option<XdpCounters>) {
        let st =
            self.steering.lock().unwrap_or_else(|e| e.into_inner()).as_ref().map(|s| s.stats()).unwrap_or_default();
        let ifs = self.ifs.lock().unwrap_or_else(|e| e.into_inner()).clone();
        (ifs, Some(XdpCounters { steered: st.steered, no_socket: st.no_socket, passed: st.passed }))
    }

    fn services_changed(&self, extra: &[ipvs::ServiceKey]) {
        let ipvs = &self.node.ipvs;
        let want = xdp::SteerMaps::of(&ipvs.services_full(), &ipvs.fwmark_rules(), extra, &locals(&self.node));
        let mut g = self.steering.lock().unwrap_or_else(|e| e.into_inner());
        let Some(s) = g.as_mut() else { return };
        if *s.current() == want {
            return;
        }
        match s.sync(&want) {
            Ok(n) => tracing::debug!("XDP steering maps: {n} entries changed"),
            Err(e) => tracing::error!("XDP steering maps: {e}"),
        }
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
