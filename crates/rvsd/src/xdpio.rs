//! The XDP backend's wiring (`--io xdp|auto`): attach the steering program to every served
//! interface, open one AF_XDP socket per (interface, receive queue) sharing one UMEM, and keep
//! the program's maps in step with the services (`IoHooks`, called by the admin before a
//! command returns: only the entries of the services a command touched change, O(1) in the
//! table's size; [`XdpIo::tick`] twice a second follows the director's addresses).
//!
//! One worker serves every socket (docs/design.md "AF_XDP: one worker"): the connection table
//! is per worker without locks, and the two directions of a NAT connection can arrive on
//! different queues or devices, so a single worker is what keeps them together today.

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
    steering: Mutex<Maps>,
    node: Arc<Node>,
    ifs: Vec<IfIo>,
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

/// Everything `--io xdp` needs to start: the attached program and the worker's sockets.
pub struct Started {
    steering: xdp::Steering,
    ifs: Vec<IfIo>,
    pub worker: xdp::worker::Setup,
}

impl Started {
    /// The hooks the admin calls (maps follow the node's services from now on).
    pub fn hooks(self, node: Arc<Node>) -> (Arc<XdpIo>, xdp::worker::Setup) {
        let maps = Maps { prog: self.steering, model: xdp::SteerModel::default(), seen: None, stale: true };
        let io = Arc::new(XdpIo { steering: Mutex::new(maps), node, ifs: self.ifs });
        io.services_resync();
        (io, self.worker)
    }
}

/// The director's own addresses (frames to them stay with its kernel).
fn locals(node: &Node) -> Vec<IpAddr> {
    node.net().interfaces.iter().flat_map(|i| i.addrs.iter().map(|(a, _)| *a)).collect()
}

/// Attaches and binds; on any error everything done so far is undone (dropping the program
/// detaches it) and the error says what failed.
pub fn start(interfaces: &[String], busy_poll: bool) -> Result<Started, String> {
    let mut steering = xdp::Steering::load().map_err(|e| e.to_string())?;
    let mut ifs = Vec::new();
    let mut queues = Vec::new();
    for name in interfaces {
        let mode = steering.attach(name, false).map_err(|e| e.to_string())?;
        let ifindex = xdp::sys::if_index(name).map_err(|e| format!("{name}: {e}"))?;
        let n = xdp::sys::rx_queues(name).min(xdp::program::QUEUES_PER_IF);
        if mode == xdp::AttachMode::Generic {
            tracing::warn!(
                "{name}: XDP in generic mode (the driver has no native XDP): slower, and GSO super-frames from a peer with TSO are dropped"
            );
        }
        queues.extend((0..n).map(|q| (ifindex, name.clone(), q)));
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
    let umem =
        Umem::new(RINGS.frames() * queues.len() as u32 + 1024, frame).map_err(|e| format!("AF_XDP UMEM: {e}"))?;
    tracing::info!("AF_XDP UMEM: {} frames of {frame} bytes (largest MTU {mtu})", umem.frames());
    let mut socks: Vec<Socket> = Vec::with_capacity(queues.len());
    for (ifindex, name, q) in &queues {
        let s = Socket::open(&umem, *ifindex, *q, RINGS, socks.first())
            .map_err(|e| format!("{name} queue {q}: AF_XDP socket: {e}"))?;
        if let Some(i) = ifs.iter_mut().find(|i| i.name == *name) {
            i.zero_copy = Some(s.zero_copy());
        }
        socks.push(s);
    }
    // Fill rings full before any socket is in the program's map (worker.rs `Setup::new`).
    let worker = xdp::worker::Setup::new(0, umem, socks, xdp::worker::Options { busy_poll });
    for ((ifindex, _, q), s) in queues.iter().zip(&worker.socks) {
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
    Ok(Started { steering, ifs, worker })
}

impl XdpIo {
    fn lock(&self) -> std::sync::MutexGuard<'_, Maps> {
        self.steering.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every half second: the director's addresses (O(addresses)); a whole resynchronisation
    /// (O(table)) only after a failed update or a table published without the admin telling.
    pub fn tick(&self) {
        let ipvs = &self.node.ipvs;
        let (table, rules) = (ipvs.services_full(), ipvs.fwmark_rules());
        let mut m = self.lock();
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
        let st = self.lock().prog.stats();
        (self.ifs.clone(), Some(XdpCounters { steered: st.steered, no_socket: st.no_socket, passed: st.passed }))
    }

    fn services_ahead(&self, keys: &[ipvs::ServiceKey]) {
        let mut m = self.lock();
        m.model.ahead(keys);
        m.flush();
    }

    fn services_changed(&self, keys: &[ipvs::ServiceKey]) {
        let ipvs = &self.node.ipvs;
        let (table, rules) = (ipvs.services_full(), ipvs.fwmark_rules());
        let mut m = self.lock();
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
        self.lock().resync(ipvs.services_full(), ipvs.fwmark_rules(), &[], &locals(&self.node));
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
