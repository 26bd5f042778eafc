//! The AF_PACKET worker: one thread, one AF_PACKET socket per served interface (member `id`
//! of each interface's fanout group, see `fanout.rs`), run to completion.
//!
//! Loop: poll the sockets (≤ 10 ms), advance the engine clock (ms since daemon start), and
//! for every ready RX block: run its frames through the node, stage what is to be sent, push
//! it to this worker's socket of the egress interface and flush. Then ask ARP for missing next
//! hops, expire a bounded slice of the connection table, run the daemon's housekeeping
//! (connection listings). The worker owns its connection table: nothing here takes a lock.
//!
//! Frames to send are copied into a staging arena first: a frame is borrowed from one
//! socket's RX ring while `rx_blocks` runs, and may have to leave through that same socket's
//! TX ring, which the ring API does not allow to borrow at the same time. Transmitting after
//! every RX block (not after a lap of 32) keeps the staged frames within what a TX ring holds;
//! a ring that is full all the same (slots come back only at TX completion) is waited for,
//! `poll(POLLOUT)`, up to [`TX_WAIT_MAX`] per turn, and a ring that gives nothing back for
//! [`TX_STALL_MS`] is not waited for again that turn; only then are frames dropped
//! (`tx_ring_full`).

use std::collections::HashMap;
use std::net::IpAddr;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::io::AfPacket;
use crate::{Action, Node, WorkerCtx};
use netfilter::{CsumState, DropReason, Family, Skb, Traversal};

/// Poll timeout: the bound on expiry and listing latency when no traffic arrives.
const POLL_MS: i32 = 10;
/// Connection-table slots the expiry sweep visits per loop.
const EXPIRE_BUDGET: usize = 4096;
/// Most time a turn of the loop spends waiting for TX slots to come back: the worker paces
/// itself to a slower egress for that long before it drops (`tx_ring_full`).
const TX_WAIT_MAX: Duration = Duration::from_millis(250);
/// A TX ring that gives no slot back for this many ms is not waited for again this turn.
const TX_STALL_MS: i32 = 10;
/// At most one ARP request per next hop per this many ms.
const ARP_INTERVAL_MS: u64 = 1000;
/// The kernel's receive-ring drop counts are read (one getsockopt per socket) this often.
const RING_STATS_MS: u64 = 100;

/// What an AF_PACKET worker owns.
pub struct WorkerSetup {
    pub id: usize,
    /// One socket per served interface.
    pub socks: Vec<AfPacket>,
}

/// The CPUs the calling thread may run on.
pub fn allowed_cpus() -> Vec<usize> {
    // SAFETY: cpu_set_t is plain data; sched_getaffinity gets a valid pointer and size.
    unsafe {
        let mut allowed: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut allowed) != 0 {
            return Vec::new();
        }
        (0..libc::CPU_SETSIZE as usize).filter(|&c| libc::CPU_ISSET(c, &allowed)).collect()
    }
}

/// Pins the calling thread to the `n`-th CPU it may run on counted from the last (mod their
/// number): worker 0 on the highest CPU. CPU 0 is where device interrupts land without
/// irqbalance and where other tools pin by default (trafgen); measured on the lab, a lone
/// AF_XDP worker on CPU 0 beside the traffic generator forwarded half the packets it did on
/// CPU 1 (BENCHMARKS.md, "worker placement").
pub fn pin_to_cpu(n: usize) -> Option<usize> {
    let cpus = allowed_cpus();
    let len = cpus.len().max(1);
    let cpu = *cpus.get(len - 1 - n % len)?;
    pin_to_exact(cpu).then_some(cpu)
}

/// Pins the calling thread to CPU `cpu`.
pub fn pin_to_exact(cpu: usize) -> bool {
    if cpu >= libc::CPU_SETSIZE as usize {
        return false;
    }
    // SAFETY: cpu_set_t is plain data; sched_setaffinity gets a valid pointer and size.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0
    }
}

/// Runs one frame through the node and stages it if it is to be sent.
#[allow(clippy::too_many_arguments)]
fn process_one(
    node: &Node,
    tr: &Traversal<WorkerCtx>,
    cx: &mut WorkerCtx,
    ifs: &[u32],
    arena: &mut Vec<u8>,
    staged: &mut Vec<(usize, usize, usize)>,
    frame: wire::Frame<'_>,
    in_if: u32,
    csum: CsumState,
) {
    let mut skb = Skb::new(frame, wire::ethernet::HEADER_LEN, Family::Ipv4);
    skb.in_if = in_if;
    skb.csum = csum;
    if let Action::Tx(out) = node.process(tr, cx, &mut skb) {
        match ifs.iter().position(|&i| i == out) {
            Some(j) => {
                let d = skb.frame.data();
                staged.push((j, arena.len(), d.len()));
                arena.extend_from_slice(d);
            }
            None => node.counters.drop(cx.id, DropReason::NoRoute),
        }
    }
}

struct Loop {
    node: Arc<Node>,
    cx: WorkerCtx,
    socks: Vec<AfPacket>,
    /// `socks[k].ifindex()`.
    ifs: Vec<u32>,
    arena: Vec<u8>,
    /// Segments of a super-packet being cut (gso.rs).
    scratch: Vec<u8>,
    /// (socket index, start in arena, length)
    staged: Vec<(usize, usize, usize)>,
    arp_last: HashMap<IpAddr, u64>,
    last_err_log: u64,
    /// The largest IP packet every TX ring takes (slot minus Ethernet header): the GSO
    /// cutter never makes larger segments.
    tx_max_ip: usize,
    tx_wait: TxWait,
    /// A transmit error to log at the end of the turn.
    tx_err: Option<(u32, std::io::Error)>,
    /// RX blocks run this turn (the `batches` counter: on AF_PACKET a block is a batch).
    blocks: u64,
}

/// Waiting for TX completions within one loop turn. A full TX ring is normal for a moment
/// (the device gives slots back when it has sent them), so a frame is not given up at once;
/// but the loop must not hang on a link that sends nothing.
struct TxWait {
    /// Time spent waiting this turn (at most [`TX_WAIT_MAX`]).
    spent: Duration,
    /// Rings that gave no slot back within [`TX_STALL_MS`] this turn: no more waiting on them.
    stalled: Vec<bool>,
}

impl TxWait {
    fn new(rings: usize) -> Self {
        TxWait { spent: Duration::ZERO, stalled: vec![false; rings] }
    }

    fn reset(&mut self) {
        self.spent = Duration::ZERO;
        self.stalled.iter_mut().for_each(|s| *s = false);
    }
}

/// Pushes one frame to ring `j`. When the ring is full: flush, then wait for slots to come
/// back (bounded by [`TxWait`]) before the frame is given up as `tx_ring_full`.
fn push(node: &Node, w: usize, sock: &mut AfPacket, j: usize, data: &[u8], wait: &mut TxWait) {
    if data.len() > sock.tx_max_frame() {
        // Larger than a TX slot (an aggregate): no link of ours carries it.
        node.counters.drop(w, DropReason::FragNeeded);
        return;
    }
    if sock.tx_push(data) {
        return;
    }
    let _ = sock.tx_flush();
    while !sock.tx_push(data) {
        let stalled = wait.stalled.get(j).copied().unwrap_or(true);
        if stalled || wait.spent >= TX_WAIT_MAX {
            node.counters.drop(w, DropReason::TxRingFull);
            return;
        }
        let left = (TX_WAIT_MAX - wait.spent).as_millis().clamp(1, TX_STALL_MS as u128) as i32;
        let t0 = Instant::now();
        let freed = sock.tx_wait(left);
        let took = t0.elapsed();
        wait.spent += took;
        let no_progress = match freed {
            Ok(free) => !free && took >= Duration::from_millis(TX_STALL_MS as u64),
            Err(_) => true,
        };
        if no_progress && let Some(s) = wait.stalled.get_mut(j) {
            *s = true;
        }
    }
}

/// Sends what is staged: every frame to its ring, then every ring flushed. Returns the last
/// flush error with its ifindex (the caller logs it, rate-limited).
fn transmit(
    node: &Node,
    w: usize,
    socks: &mut [AfPacket],
    arena: &mut Vec<u8>,
    staged: &mut Vec<(usize, usize, usize)>,
    wait: &mut TxWait,
) -> Option<(u32, std::io::Error)> {
    for &(j, start, len) in staged.iter() {
        if let (Some(sock), Some(data)) = (socks.get_mut(j), arena.get(start..start + len)) {
            push(node, w, sock, j, data, wait);
        }
    }
    staged.clear();
    arena.clear();
    let mut err = None;
    for s in socks.iter_mut() {
        if let Err(e) = s.tx_flush() {
            err = Some((s.ifindex(), e));
        }
    }
    err
}

impl Loop {
    /// Receives and processes everything ready on every socket (at most one lap of RX blocks
    /// each), transmitting after every RX block: a lap of blocks holds far more frames than a
    /// TX ring has slots.
    fn rx(&mut self, now: u64) -> usize {
        let tr = self.node.begin_batch(&mut self.cx, now);
        let Loop { node, cx, socks, ifs, arena, staged, scratch, tx_max_ip, tx_wait, tx_err, blocks, .. } = self;
        let w = cx.id;
        let mut n = 0;
        for k in 0..socks.len() {
            let ring_if = ifs[k];
            for _ in 0..socks[k].rx_block_count() {
                if !socks[k].rx_ready() {
                    break;
                }
                *blocks += 1;
                n += socks[k].rx_blocks(1, |f| {
                    if f.truncated() {
                        node.counters.drop(w, DropReason::Truncated);
                        return;
                    }
                    if f.vlan_tci.is_some() {
                        // Tag stripped by the device: the frame belongs to a VLAN interface.
                        node.counters.drop(w, DropReason::NotForUs);
                        return;
                    }
                    let mtu = cx.net.interface(ring_if).map_or(1500, |i| usize::from(i.mtu));
                    if f.len > wire::ethernet::HEADER_LEN + mtu {
                        // A GSO super-packet from a peer with TSO (gso.rs): cut it first.
                        let to = crate::io::gso::cut_size(&cx.net, *tx_max_ip);
                        let cut = crate::io::gso::segment_tcp4(f.data(), to, scratch, |b, start, len| {
                            if let Ok(frame) = wire::Frame::new(b, start, len) {
                                process_one(node, &tr, cx, ifs, arena, staged, frame, ring_if, CsumState::None);
                            }
                        });
                        if cut > 0 {
                            return;
                        }
                    }
                    let csum = if f.csum_not_ready {
                        CsumState::Partial
                    } else if f.csum_valid {
                        CsumState::Unnecessary
                    } else {
                        CsumState::None
                    };
                    let Ok(frame) = f.into_frame() else {
                        node.counters.drop(w, DropReason::Truncated);
                        return;
                    };
                    process_one(node, &tr, cx, ifs, arena, staged, frame, ring_if, csum);
                });
                if let Some(e) = transmit(node, w, socks, arena, staged, tx_wait) {
                    *tx_err = Some(e);
                }
            }
        }
        n
    }

    /// End of a turn: whatever is still staged, ARP requests, a last flush; flush errors
    /// logged at most once a second.
    fn tx(&mut self, now: u64) {
        let Loop { node, cx, socks, ifs, arena, staged, tx_wait, tx_err, .. } = self;
        // Packets whose next hop has just resolved (node/src/neighq.rs), staged like the rest.
        node.neighbour_turn(cx, now, |out, data| {
            if let Some(j) = ifs.iter().position(|&i| i == out) {
                staged.push((j, arena.len(), data.len()));
                arena.extend_from_slice(data);
            }
        });
        if let Some(e) = transmit(node, cx.id, socks, arena, staged, tx_wait) {
            *tx_err = Some(e);
        }
        self.arp(now);
        for s in self.socks.iter_mut() {
            if let Err(e) = s.tx_flush() {
                self.tx_err = Some((s.ifindex(), e));
            }
        }
        if let Some((ifindex, e)) = self.tx_err.take()
            && now.saturating_sub(self.last_err_log) >= 1000
        {
            self.last_err_log = now;
            tracing::error!("worker {}: transmit on ifindex {ifindex}: {e}", self.cx.id);
        }
    }

    /// ARP requests for next hops the node had no MAC for, at most one per second each.
    fn arp(&mut self, now: u64) {
        if self.cx.arp_wanted.is_empty() {
            return;
        }
        if self.arp_last.len() > 4096 {
            self.arp_last.clear();
        }
        let wanted = std::mem::take(&mut self.cx.arp_wanted);
        for &(out_if, ip) in &wanted {
            if self.arp_last.get(&ip).is_some_and(|&t| now.saturating_sub(t) < ARP_INTERVAL_MS) {
                continue;
            }
            // ARP for IPv4, a neighbour solicitation for IPv6.
            let Some(frame) = crate::ndp::resolution_frame(&self.cx.net, out_if, ip) else { continue };
            let Some(j) = self.ifs.iter().position(|&i| i == out_if) else { continue };
            self.arp_last.insert(ip, now);
            tracing::debug!("worker {}: resolving {ip} on ifindex {out_if}", self.cx.id);
            if !self.socks[j].tx_push(&frame) {
                self.node.counters.drop(self.cx.id, DropReason::TxRingFull);
            }
        }
        self.cx.arp_wanted = wanted;
        self.cx.arp_wanted.clear();
    }
}

/// Runs the worker until `stop` is set; `housekeeping` runs once per turn.
pub fn run(
    node: Arc<Node>,
    setup: WorkerSetup,
    clock: Instant,
    stop: Arc<AtomicBool>,
    housekeeping: &mut dyn FnMut(&mut WorkerCtx),
) {
    let id = setup.id;
    let cx = node.worker(id);
    let mut pfds: Vec<libc::pollfd> =
        setup.socks.iter().map(|s| libc::pollfd { fd: s.as_raw_fd(), events: libc::POLLIN, revents: 0 }).collect();
    let nsocks = setup.socks.len();
    let tx_max_ip = setup.socks.iter().map(|s| s.tx_max_frame()).min().unwrap_or(0).saturating_sub(14);
    let mut ring_stats_at = 0u64;
    let mut lp = Loop {
        node,
        cx,
        ifs: setup.socks.iter().map(|s| s.ifindex()).collect(),
        socks: setup.socks,
        arena: Vec::with_capacity(256 * 1024),
        scratch: Vec::with_capacity(4096),
        staged: Vec::with_capacity(1024),
        arp_last: HashMap::new(),
        last_err_log: 0,
        tx_max_ip,
        tx_wait: TxWait::new(nsocks),
        tx_err: None,
        blocks: 0,
    };
    while !stop.load(Ordering::Relaxed) {
        // SAFETY: `pfds` is a valid array of pollfd of the given length.
        let rc = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, POLL_MS) };
        if rc < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                tracing::error!("worker {id}: poll: {e}");
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
        }
        let now = clock.elapsed().as_millis() as u64;
        lp.tx_wait.reset();
        lp.rx(now);
        lp.tx(now);
        lp.cx.ipvs.expire(EXPIRE_BUDGET);
        if now >= ring_stats_at + RING_STATS_MS {
            ring_stats_at = now;
            // Frames the kernel dropped because every RX block was still with us: invisible to
            // the path, so counted here as `rx_ring_full`.
            for s in &lp.socks {
                if let Ok(st) = s.stats()
                    && st.drops > 0
                {
                    lp.node.counters.drop_n(id, DropReason::RxRingFull, u64::from(st.drops));
                }
            }
        }
        let kicks: u64 = lp.socks.iter_mut().map(|s| s.take_kicks()).sum();
        lp.node.counters.io_turn(id, 1, std::mem::take(&mut lp.blocks), kicks);
        housekeeping(&mut lp.cx);
    }
    tracing::debug!("worker {id} stopped");
}

impl crate::io::IoWorker for WorkerSetup {
    fn backend(&self) -> &'static str {
        "afpacket"
    }

    fn id(&self) -> usize {
        self.id
    }

    fn discard_received(&mut self) {
        for sock in &mut self.socks {
            while sock.rx_ready() {
                sock.rx_blocks(1, |_| {});
            }
        }
    }

    fn run(self: Box<Self>, node: Arc<Node>, clock: Instant, stop: Arc<AtomicBool>, mut hk: crate::io::Housekeeping) {
        run(node, *self, clock, stop, &mut *hk)
    }
}
