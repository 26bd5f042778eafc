//! The packet worker on AF_XDP: ring to ring, run to completion.
//!
//! One turn: take what the kernel finished sending (completion rings → free frames), then for
//! every socket take up to [`BATCH`] received descriptors, wrap each frame where it lies in
//! the UMEM (headroom in front, no copy), run the batch through `Node::process_batch_ahead`, and put
//! every frame to send on the TX ring of a socket of its egress interface (a frame received
//! on one device leaves by another device's socket sharing the UMEM: no copy in user space);
//! frames not sent go back to the free list. Each TX ring is published once per batch, with
//! at most one `sendto` wake-up; the fill rings are topped up from the free list. Waiting is
//! `poll()` (≤ [`POLL_MS`]) unless busy polling is asked for (then the worker spins, and by
//! default runs the devices' NAPI itself: the kernel's preferred busy polling), so an idle
//! worker costs nothing.
//!
//! Nothing here allocates per packet or per batch: the batch vectors are reused, and the
//! frames of a batch are borrowed from the UMEM for the batch only.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use netfilter::{CsumState, DropReason, Family, Skb};
use node::{Action, Node, WorkerCtx};

use crate::handoff::{Consumer, Doorbell, Producer};
use crate::xsk::{Socket, Umem};

/// Descriptors taken from one RX ring per batch.
pub const BATCH: u32 = 64;
/// Frames the node processes at a time, the next ones' table lines in flight meanwhile
/// (the engine benchmark's batch).
const NODE_BATCH: usize = 32;
/// Poll timeout: the bound on expiry and housekeeping latency when no traffic arrives.
pub const POLL_MS: i32 = 50;
/// Connection-table slots the expiry sweep visits per turn.
const EXPIRE_BUDGET: usize = 4096;
/// At most one neighbour resolution per next hop per this many ms.
const RESOLVE_INTERVAL_MS: u64 = 1000;
/// Socket drop counters are read this often.
const STATS_MS: u64 = 100;
/// Most time a turn spends waiting for TX slots to come back (a slower egress, a shaper):
/// the worker paces itself to it for that long before it drops (`tx_ring_full`).
const TX_WAIT_MAX: std::time::Duration = std::time::Duration::from_millis(250);

/// How the worker waits for frames and batches them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Options {
    /// Spin on the rings instead of sleeping in `poll()` (lower latency, a full CPU).
    pub busy_poll: bool,
    /// Descriptors taken from one RX ring per batch ([`BATCH`]).
    pub batch: u32,
    /// When the TX rings are published and the kernel woken.
    pub kick: Kick,
    /// With `busy_poll`: the kernel's preferred busy polling on every socket
    /// (`Socket::prefer_busy_poll`), each idle turn driving the devices' NAPI with a
    /// `recvfrom`; without it, the worker only spins on its rings.
    pub prefer_busy: bool,
}

/// When the worker wakes the kernel to transmit (`sendto`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Kick {
    /// After every round of batches (one per socket): the default.
    #[default]
    PerBatch,
    /// Once per turn, after up to eight rounds: fewer system calls, later frames.
    PerTurn,
}

impl Default for Options {
    fn default() -> Self {
        Options { busy_poll: false, batch: BATCH, kick: Kick::PerBatch, prefer_busy: true }
    }
}

impl Options {
    /// The defaults with the benchmark's experiment knobs applied (BENCHMARKS.md, "AF_XDP:
    /// the I/O loop's own counters, worker placement, ..."): `RVS_XDP_BATCH` (1..=1024 descriptors per ring
    /// per batch), `RVS_XDP_KICK` (`batch` or `turn`) and `RVS_XDP_PREFER_BUSY` (`1`, the
    /// default, or `0`: with `--busy-poll`, spin on the rings only). A bad value is refused,
    /// named.
    pub fn from_env(busy_poll: bool) -> Result<Options, String> {
        let (batch, kick) = (std::env::var("RVS_XDP_BATCH").ok(), std::env::var("RVS_XDP_KICK").ok());
        let mut o = Options::with(busy_poll, batch.as_deref(), kick.as_deref())?;
        if let Ok(v) = std::env::var("RVS_XDP_PREFER_BUSY") {
            o.prefer_busy = match v.as_str() {
                "1" => true,
                "0" => false,
                _ => return Err(format!("RVS_XDP_PREFER_BUSY: '{v}' is not 0 or 1")),
            };
        }
        Ok(o)
    }

    fn with(busy_poll: bool, batch: Option<&str>, kick: Option<&str>) -> Result<Options, String> {
        let mut o = Options { busy_poll, ..Options::default() };
        if let Some(v) = batch {
            o.batch = v
                .parse()
                .ok()
                .filter(|n| (1..=1024).contains(n))
                .ok_or_else(|| format!("RVS_XDP_BATCH: '{v}' is not a number in 1..=1024"))?;
        }
        if let Some(v) = kick {
            o.kick = match v {
                "batch" => Kick::PerBatch,
                "turn" => Kick::PerTurn,
                _ => return Err(format!("RVS_XDP_KICK: '{v}' is not batch or turn")),
            };
        }
        Ok(o)
    }
}

/// What a worker owns: its UMEM and one socket per (interface, queue) it serves.
pub struct Setup {
    pub id: usize,
    pub umem: Umem,
    /// Sockets sharing `umem`; the first registered it.
    pub socks: Vec<Socket>,
    pub opts: Options,
    /// UMEM frames on no ring (chunk addresses).
    free: Vec<u64>,
    /// The other workers, when there are several (`handoff.rs`).
    pub peers: Option<Peers>,
}

/// A worker's links to the others: frames it receives but does not own go to their owner.
pub struct Peers {
    /// How many workers.
    pub workers: usize,
    /// Ring to worker j (`None` at this worker's own index).
    pub to: Vec<Option<Producer>>,
    /// Rings from the other workers.
    pub from: Vec<Consumer>,
    /// Every worker's doorbell, by worker id.
    pub doorbells: Arc<[Doorbell]>,
}

/// The hand-off rings and doorbells of `workers` workers, one [`Peers`] per worker, with
/// slots of `slot_bytes` (a received frame's most bytes).
pub fn peers(workers: usize, slot_bytes: usize) -> std::io::Result<Vec<Peers>> {
    let doorbells: Arc<[Doorbell]> = (0..workers).map(|_| Doorbell::new()).collect::<std::io::Result<Vec<_>>>()?.into();
    let mut out: Vec<Peers> = (0..workers)
        .map(|_| Peers {
            workers,
            to: (0..workers).map(|_| None).collect(),
            from: Vec::new(),
            doorbells: doorbells.clone(),
        })
        .collect();
    for a in 0..workers {
        for b in 0..workers {
            if a != b {
                let (p, c) = crate::handoff::ring(slot_bytes);
                out[a].to[b] = Some(p);
                out[b].from.push(c);
            }
        }
    }
    Ok(out)
}

impl Setup {
    /// Fills every fill ring at once, before the sockets go into the steering program's map:
    /// a frame steered to a socket with an empty fill ring is dropped (`rx_ring_full`), and
    /// the worker thread starts a few hundred milliseconds after the daemon serves (e2e:
    /// a client's first SYN lost that way waited 1 s for its retransmission). Frames steered
    /// before the worker runs wait in the RX ring.
    pub fn new(id: usize, umem: Umem, mut socks: Vec<Socket>, opts: Options) -> Self {
        let mut free: Vec<u64> = Vec::with_capacity(umem.frames() as usize);
        for f in (0..umem.frames()).rev() {
            free.push(u64::from(f) * umem.frame_size() as u64);
        }
        for s in &mut socks {
            if free.is_empty() {
                break;
            }
            s.fill(&mut free);
        }
        Setup { id, umem, socks, opts, free, peers: None }
    }

    /// Drops what the RX rings hold (frames another daemon handled, hot restart), giving the
    /// frames back to the fill rings.
    pub fn discard_received(&mut self) {
        for s in &mut self.socks {
            loop {
                let n = s.rx_ready(BATCH);
                if n == 0 {
                    break;
                }
                for i in 0..n {
                    let (addr, _) = s.rx_desc(i);
                    self.free.push(self.umem.chunk_of(addr));
                }
                s.rx_release(n);
            }
        }
        for s in &mut self.socks {
            s.fill(&mut self.free);
        }
    }
}

/// Asks for a neighbour to be resolved (the kernel resolves it for rvs: its ARP replies and
/// neighbour advertisements to the director's addresses stay with the kernel, which
/// publishes the result over netlink).
pub type Resolver = Box<dyn FnMut(u32, std::net::IpAddr) + Send>;

struct Loop {
    node: Arc<Node>,
    cx: WorkerCtx,
    umem: Umem,
    socks: Vec<Socket>,
    /// TX descriptors queued per socket this batch.
    pending: Vec<u32>,
    /// Free frames (chunk addresses).
    free: Vec<u64>,
    skbs: Vec<Skb<'static>>,
    chunks: Vec<u64>,
    actions: Vec<Action>,
    /// The kernel's drop counters last read, per socket (rx_dropped + rx_ring_full, tx invalid).
    last_drops: Vec<(u64, u64)>,
    resolve_last: std::collections::HashMap<std::net::IpAddr, u64>,
    resolver: Resolver,
    last_err_log: u64,
    /// Time spent waiting for TX slots this turn.
    tx_spent: std::time::Duration,
    /// The other workers (several workers only).
    peers: Option<Peers>,
    /// Frames pushed to each worker's ring this batch, not yet published.
    handed: Vec<u32>,
    /// Node batches run this turn (the `batches` counter).
    batches: u64,
    /// Descriptors per RX ring per batch (`Options::batch`).
    batch: u32,
}

impl Loop {
    /// Socket `j`'s TX ring is full: publish what is queued, wake the kernel and take
    /// completions until a slot is free, within what is left of [`TX_WAIT_MAX`] this turn.
    fn tx_wait(&mut self, j: usize) -> bool {
        let _ = self.socks[j].tx_submit(self.pending[j]);
        self.pending[j] = 0;
        let t0 = Instant::now();
        loop {
            self.socks[j].complete(&self.umem, &mut self.free);
            if self.socks[j].tx_free() > 0 {
                self.tx_spent += t0.elapsed();
                return true;
            }
            if self.tx_spent + t0.elapsed() >= TX_WAIT_MAX {
                self.tx_spent = TX_WAIT_MAX;
                return false;
            }
            let mut pfd =
                libc::pollfd { fd: std::os::fd::AsRawFd::as_raw_fd(&self.socks[j]), events: libc::POLLOUT, revents: 0 };
            // SAFETY: one valid pollfd.
            unsafe { libc::poll(&mut pfd, 1, 1) };
            let _ = self.socks[j].kick();
        }
    }

    /// The socket to transmit on for interface `ifindex`: the one on the same queue as the
    /// receiving socket if there is one, else the first of that interface.
    #[inline]
    fn egress(&self, ifindex: u32, queue: u32) -> Option<usize> {
        let mut first = None;
        for (j, s) in self.socks.iter().enumerate() {
            if s.ifindex == ifindex {
                if s.queue == queue {
                    return Some(j);
                }
                first = first.or(Some(j));
            }
        }
        first
    }

    /// Completed transmissions back to the free list.
    fn complete(&mut self) {
        for s in &mut self.socks {
            s.complete(&self.umem, &mut self.free);
        }
    }

    /// Tops every fill ring up from the free list.
    fn refill(&mut self) {
        for s in &mut self.socks {
            if self.free.is_empty() {
                break;
            }
            s.fill(&mut self.free);
        }
    }

    /// One batch from socket `k`. Returns the number of frames received. With several
    /// workers, a frame whose client address another worker owns is copied to that worker's
    /// hand-off ring and its UMEM frame freed at once; the rest run here.
    fn rx(&mut self, k: usize, tr: &netfilter::Traversal<WorkerCtx>) -> u32 {
        let n = self.socks[k].rx_ready(self.batch);
        if n == 0 {
            return 0;
        }
        let (in_if, in_queue) = (self.socks[k].ifindex, self.socks[k].queue);
        // The owner rule's inputs, once per batch (node::io::fanout::owner_of).
        let steer = self.peers.as_ref().map(|p| {
            let services = self.cx.ipvs.services().clone();
            let rules = self.cx.ipvs.fwmark_rules().clone();
            let mask = services.client_mask();
            (services, rules, mask, p.workers)
        });
        let me = self.cx.id;
        for i in 0..n {
            let (addr, len) = self.socks[k].rx_desc(i);
            let chunk = self.umem.chunk_of(addr);
            // SAFETY: the descriptor hands this frame to us until we put it on a ring or
            // the free list; `skbs` is cleared before that, so no slice outlives ownership.
            let Some(buf) = (unsafe { self.umem.chunk(addr) }) else {
                continue;
            };
            let Ok(frame) = wire::Frame::new(buf, (addr - chunk) as usize, len as usize) else {
                self.free.push(chunk);
                self.node.counters.drop(me, DropReason::Truncated);
                continue;
            };
            if let (Some((services, rules, mask, workers)), Some(peers)) = (&steer, self.peers.as_mut()) {
                let steered = |d: u32| {
                    services.is_vip_v4(d)
                        || (!rules.is_empty() && rules.iter().any(|r| r.covers(&std::net::IpAddr::V4(d.into()))))
                };
                let owner = node::io::fanout::owner_of(frame.data(), steered, *mask, *workers);
                if owner != me {
                    let pushed =
                        peers.to.get_mut(owner).and_then(Option::as_mut).is_some_and(|p| p.push(in_if, frame.data()));
                    if pushed {
                        self.handed[owner] += 1;
                    } else {
                        self.node.counters.drop(me, DropReason::HandoffFull);
                    }
                    self.free.push(chunk);
                    continue;
                }
            }
            self.skbs.push(received(frame, in_if));
            self.chunks.push(chunk);
        }
        self.socks[k].rx_release(n);
        self.hand_off();
        self.run_batch(tr, in_queue);
        n
    }

    /// Publishes this batch's hand-offs, one doorbell per owner at most.
    fn hand_off(&mut self) {
        let Some(peers) = self.peers.as_mut() else { return };
        let mut total = 0u64;
        for (j, p) in peers.to.iter_mut().enumerate() {
            if self.handed[j] == 0 {
                continue;
            }
            if let Some(p) = p {
                p.publish();
                peers.doorbells[j].ring();
            }
            total += u64::from(self.handed[j]);
            self.handed[j] = 0;
        }
        if total > 0 {
            self.node.counters.handed_out_n(self.cx.id, total);
        }
    }

    /// Frames other workers handed to this one, a batch from each ring: copied into free
    /// UMEM frames (headroom in front, as received) and run as received on their ingress
    /// interface. Returns how many.
    fn drain(&mut self, tr: &netfilter::Traversal<WorkerCtx>) -> u32 {
        let Some(mut peers) = self.peers.take() else { return 0 };
        let me = self.cx.id;
        let mut got = 0;
        for c in peers.from.iter_mut() {
            let n = c.ready(BATCH);
            if n == 0 {
                continue;
            }
            for i in 0..n {
                let (in_if, data) = c.get(i);
                let Some(chunk) = self.free.pop() else {
                    self.node.counters.drop(me, DropReason::HandoffFull);
                    continue;
                };
                let head = crate::xsk::TX_HEADROOM;
                // SAFETY: a free frame is ours alone until it goes on a ring; `skbs` is
                // cleared before the frame goes back.
                let Some(buf) = (unsafe { self.umem.chunk(chunk) }) else {
                    continue;
                };
                if head + data.len() > buf.len() {
                    self.free.push(chunk);
                    self.node.counters.drop(me, DropReason::Truncated);
                    continue;
                }
                buf[head..head + data.len()].copy_from_slice(data);
                let Ok(frame) = wire::Frame::new(buf, head, data.len()) else {
                    self.free.push(chunk);
                    self.node.counters.drop(me, DropReason::Truncated);
                    continue;
                };
                self.skbs.push(received(frame, in_if));
                self.chunks.push(chunk);
            }
            c.release(n);
            got += n;
            self.node.counters.handed_in_n(me, u64::from(n));
            // No RX queue of the ingress device here: transmit on any socket of the egress.
            self.run_batch(tr, u32::MAX);
        }
        self.peers = Some(peers);
        got
    }

    /// Whether another worker has published frames for this one.
    fn handed_waiting(&mut self) -> bool {
        self.peers.as_mut().is_some_and(|p| p.from.iter_mut().any(|c| c.ready(1) > 0))
    }

    /// Runs the frames gathered in `skbs` through the node and queues what leaves on the TX
    /// ring of a socket of its egress interface (the one on `in_queue` if this worker has it).
    fn run_batch(&mut self, tr: &netfilter::Traversal<WorkerCtx>, in_queue: u32) {
        let m = self.skbs.len();
        if m == 0 {
            return;
        }
        self.batches += 1;
        self.actions.clear();
        self.actions.resize(m, Action::Local);
        // Halves of up to `NODE_BATCH` frames, each processed with the next in hand (its
        // connection-table lines prefetched meanwhile: `Node::process_batch_ahead`).
        let mut done = 0;
        while done < m {
            let end = (done + NODE_BATCH).min(m);
            let (cur, next) = self.skbs[done..].split_at_mut(end - done);
            let ahead = next.len().min(NODE_BATCH);
            let next = &mut next[..ahead];
            self.node.process_batch_ahead(tr, &mut self.cx, cur, &mut self.actions[done..end], next);
            done = end;
        }
        for i in 0..m {
            let chunk = self.chunks[i];
            if let Action::Tx(out) = self.actions[i] {
                let (start, len) = (self.skbs[i].frame.start() as u64, self.skbs[i].frame.len() as u32);
                match self.egress(out, in_queue) {
                    Some(j) => {
                        if self.socks[j].tx_push(&mut self.pending[j], chunk + start, len)
                            || (self.tx_wait(j) && self.socks[j].tx_push(&mut self.pending[j], chunk + start, len))
                        {
                            continue;
                        }
                        self.node.counters.drop(self.cx.id, DropReason::TxRingFull);
                    }
                    None => self.node.counters.drop(self.cx.id, DropReason::NoRoute),
                }
            }
            self.free.push(chunk);
        }
        self.skbs.clear();
        self.chunks.clear();
    }

    /// Publishes every socket's queued TX descriptors, one wake-up each at most.
    fn flush(&mut self, now: u64) {
        let mut err = None;
        for (s, p) in self.socks.iter_mut().zip(self.pending.iter_mut()) {
            if *p > 0 {
                if let Err(e) = s.tx_submit(*p) {
                    err = Some((s.ifindex, e));
                }
                *p = 0;
            } else if s.tx_outstanding() > 0
                && let Err(e) = s.kick()
            {
                err = Some((s.ifindex, e));
            }
        }
        if let Some((ifindex, e)) = err
            && now.saturating_sub(self.last_err_log) >= 1000
        {
            self.last_err_log = now;
            tracing::error!("xdp worker {}: transmit on ifindex {ifindex}: {e}", self.cx.id);
        }
    }

    /// Packets the node held for a next hop that has since resolved (node/src/neighq.rs):
    /// each copied into a free frame and queued on the egress socket's TX ring.
    fn neighbour_turn(&mut self, now: u64) {
        let Loop { node, cx, umem, socks, pending, free, .. } = self;
        let w = cx.id;
        node.neighbour_turn(cx, now, |out, data| {
            let Some(j) = socks.iter().position(|s| s.ifindex == out) else { return };
            let Some(chunk) = free.pop() else {
                node.counters.drop(w, DropReason::TxRingFull);
                return;
            };
            // SAFETY: a free frame is ours alone until it goes on a ring.
            let buf = unsafe { umem.chunk(chunk) };
            let head = crate::xsk::TX_HEADROOM;
            match buf {
                Some(b) if head + data.len() <= b.len() => {
                    b[head..head + data.len()].copy_from_slice(data);
                    if !socks[j].tx_push(&mut pending[j], chunk + head as u64, data.len() as u32) {
                        free.push(chunk);
                        node.counters.drop(w, DropReason::TxRingFull);
                    }
                }
                _ => free.push(chunk),
            }
        });
    }

    /// Next hops the node found no MAC for: asked of the resolver, once a second each.
    fn resolve(&mut self, now: u64) {
        if self.cx.arp_wanted.is_empty() {
            return;
        }
        if self.resolve_last.len() > 4096 {
            self.resolve_last.clear();
        }
        for i in 0..self.cx.arp_wanted.len() {
            let (out_if, ip) = self.cx.arp_wanted[i];
            if self.resolve_last.get(&ip).is_some_and(|&t| now.saturating_sub(t) < RESOLVE_INTERVAL_MS) {
                continue;
            }
            self.resolve_last.insert(ip, now);
            tracing::debug!("xdp worker {}: resolving {ip} on ifindex {out_if}", self.cx.id);
            // The kernel creates an incomplete entry (and solicits, where it can: not for IPv6
            // without a link-local address); rvs's own request makes the answer come, and the
            // kernel, which passes it, completes its entry from it.
            (self.resolver)(out_if, ip);
            if let Some(frame) = node::ndp::resolution_frame(&self.cx.net, out_if, ip) {
                self.send_copy(out_if, &frame);
            }
        }
        self.cx.arp_wanted.clear();
        let _ = self.flush_pending();
    }

    /// Queues a copy of `data` (a frame built in user space) on a TX ring of `out_if`.
    fn send_copy(&mut self, out_if: u32, data: &[u8]) {
        let Some(j) = self.socks.iter().position(|s| s.ifindex == out_if) else { return };
        let Some(chunk) = self.free.pop() else {
            self.node.counters.drop(self.cx.id, DropReason::TxRingFull);
            return;
        };
        let head = crate::xsk::TX_HEADROOM;
        // SAFETY: a free frame is ours alone until it goes on a ring.
        match unsafe { self.umem.chunk(chunk) } {
            Some(b) if head + data.len() <= b.len() => {
                b[head..head + data.len()].copy_from_slice(data);
                if !self.socks[j].tx_push(&mut self.pending[j], chunk + head as u64, data.len() as u32) {
                    self.free.push(chunk);
                    self.node.counters.drop(self.cx.id, DropReason::TxRingFull);
                }
            }
            _ => self.free.push(chunk),
        }
    }

    /// Publishes queued TX descriptors (outside a batch).
    fn flush_pending(&mut self) -> std::io::Result<()> {
        for (s, p) in self.socks.iter_mut().zip(self.pending.iter_mut()) {
            if *p > 0 {
                s.tx_submit(*p)?;
                *p = 0;
            }
        }
        Ok(())
    }

    /// Frames the kernel could not give us (RX ring or fill ring empty), counted as
    /// `rx_ring_full`.
    fn ring_stats(&mut self) {
        for (s, last) in self.socks.iter().zip(self.last_drops.iter_mut()) {
            if let Ok(st) = s.statistics() {
                let rx = st.rx_dropped + st.rx_ring_full;
                if rx > last.0 {
                    self.node.counters.drop_n(self.cx.id, DropReason::RxRingFull, rx - last.0);
                }
                last.0 = rx;
                last.1 = st.tx_invalid_descs;
            }
        }
    }
}

/// Runs the worker until `stop` is set. `housekeeping` runs once per turn with the worker's
/// context (connection listings, table sizes: the daemon's business).
pub fn run(
    node: Arc<Node>,
    setup: Setup,
    clock: Instant,
    stop: Arc<AtomicBool>,
    resolver: Resolver,
    housekeeping: &mut dyn FnMut(&mut WorkerCtx),
) {
    let id = setup.id;
    let nsocks = setup.socks.len();
    let free = setup.free;
    let nworkers = setup.peers.as_ref().map_or(1, |p| p.workers);
    let mut lp = Loop {
        cx: node.worker(id),
        node,
        umem: setup.umem,
        socks: setup.socks,
        pending: vec![0; nsocks],
        free,
        skbs: Vec::with_capacity(setup.opts.batch.max(BATCH) as usize),
        chunks: Vec::with_capacity(setup.opts.batch.max(BATCH) as usize),
        actions: Vec::with_capacity(setup.opts.batch.max(BATCH) as usize),
        last_drops: vec![(0, 0); nsocks],
        resolve_last: std::collections::HashMap::new(),
        resolver,
        last_err_log: 0,
        tx_spent: std::time::Duration::ZERO,
        peers: setup.peers,
        handed: vec![0; nworkers],
        batches: 0,
        batch: setup.opts.batch,
    };
    lp.refill();
    let prefer_busy = setup.opts.busy_poll && setup.opts.prefer_busy;
    if prefer_busy {
        for s in &lp.socks {
            // 20 µs per busy poll, the batch as its budget.
            if let Err(e) = s.prefer_busy_poll(20, setup.opts.batch) {
                tracing::warn!("xdp worker {id}: preferred busy polling on ifindex {}: {e}", s.ifindex);
            }
        }
    }
    let mut pfds: Vec<libc::pollfd> = lp
        .socks
        .iter()
        .map(|s| libc::pollfd { fd: std::os::fd::AsRawFd::as_raw_fd(s), events: libc::POLLIN, revents: 0 })
        .collect();
    // The doorbell last: other workers ring it when they hand this one frames.
    let doorbells = lp.peers.as_ref().map(|p| p.doorbells.clone());
    if let Some(d) = &doorbells {
        pfds.push(libc::pollfd { fd: std::os::fd::AsRawFd::as_raw_fd(&d[id]), events: libc::POLLIN, revents: 0 });
    }
    let mut stats_at = 0u64;
    let mut idle_turns = 0u32;
    while !stop.load(Ordering::Relaxed) {
        let mut polls = 0;
        if !setup.opts.busy_poll || idle_turns > 1_000_000 {
            polls = 1;
            // Producers ring the doorbell from now on; frames handed before that are seen
            // here, and then the poll does not wait.
            let bell = doorbells.as_ref().map(|d| &d[id]);
            if let Some(b) = bell {
                b.going_to_sleep();
            }
            let timeout = if bell.is_some() && lp.handed_waiting() { 0 } else { POLL_MS };
            // SAFETY: valid pollfd array of the given length.
            let rc = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, timeout) };
            if let Some(b) = bell {
                b.awake(pfds.last().is_some_and(|p| p.revents & libc::POLLIN != 0));
            }
            if rc < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() != std::io::ErrorKind::Interrupted {
                    tracing::error!("xdp worker {id}: poll: {e}");
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
            }
            idle_turns = 0;
        }
        let now = clock.elapsed().as_millis() as u64;
        lp.tx_spent = std::time::Duration::ZERO;
        let mut got = 0;
        // Up to a few batches per socket per turn, then housekeeping. Each batch starts from
        // the current configuration and learnt neighbours: a round trip through rvs can take
        // less than a turn, and the reply must see the MAC its request's ARP taught.
        for _ in 0..8 {
            let tr = lp.node.begin_batch(&mut lp.cx, now);
            lp.complete();
            let mut n = 0;
            for k in 0..nsocks {
                n += lp.rx(k, &tr);
            }
            n += lp.drain(&tr);
            if setup.opts.kick == Kick::PerBatch {
                lp.flush(now);
            }
            lp.refill();
            got += n;
            if n == 0 {
                break;
            }
        }
        if setup.opts.busy_poll {
            if got == 0 {
                idle_turns += 1;
                std::hint::spin_loop();
            } else {
                idle_turns = 0;
            }
            for s in &lp.socks {
                // Preferred busy polling: an idle turn runs the device's NAPI here.
                if s.fill_needs_wakeup() || (prefer_busy && got == 0) {
                    s.wake_rx();
                }
            }
        }
        lp.neighbour_turn(now);
        lp.flush(now);
        lp.resolve(now);
        lp.cx.ipvs.expire(EXPIRE_BUDGET);
        if now >= stats_at + STATS_MS {
            stats_at = now;
            lp.ring_stats();
        }
        let kicks: u64 = lp.socks.iter().map(Socket::take_kicks).sum();
        lp.node.counters.io_turn(id, polls, std::mem::take(&mut lp.batches), kicks);
        housekeeping(&mut lp.cx);
    }
    tracing::debug!("xdp worker {id} stopped");
}

/// The AF_XDP worker as an I/O backend's worker (`node::io::IoWorker`).
pub struct XdpWorker {
    pub setup: Setup,
    pub resolver: Resolver,
}

impl node::io::IoWorker for XdpWorker {
    fn backend(&self) -> &'static str {
        "xdp"
    }

    fn id(&self) -> usize {
        self.setup.id
    }

    fn discard_received(&mut self) {
        self.setup.discard_received();
    }

    fn run(self: Box<Self>, node: Arc<Node>, clock: Instant, stop: Arc<AtomicBool>, mut hk: node::io::Housekeeping) {
        let XdpWorker { setup, resolver } = *self;
        run(node, setup, clock, stop, resolver, &mut *hk)
    }
}

/// A frame received on `in_if` as the path takes it: a checksum a veth peer left partial
/// (its TX offload) is marked so, for the node to finish.
#[inline]
fn received(frame: wire::Frame<'_>, in_if: u32) -> Skb<'_> {
    let csum = if crate::csum::partial_l4(frame.data()) { CsumState::Partial } else { CsumState::None };
    let mut skb = Skb::new(frame, wire::ethernet::HEADER_LEN, Family::Ipv4);
    skb.in_if = in_if;
    skb.csum = csum;
    skb
}

#[cfg(test)]
mod options_tests {
    use super::*;

    #[test]
    fn experiment_knobs_parse_and_refuse_bad_values() {
        assert_eq!(Options::with(false, None, None), Ok(Options::default()));
        let o = Options::with(true, Some("256"), Some("turn")).unwrap();
        assert_eq!((o.busy_poll, o.batch, o.kick), (true, 256, Kick::PerTurn));
        assert!(Options::with(false, Some("0"), None).unwrap_err().contains("RVS_XDP_BATCH: '0'"));
        assert!(Options::with(false, Some("2000"), None).is_err());
        assert!(Options::with(false, None, Some("often")).unwrap_err().contains("RVS_XDP_KICK: 'often'"));
    }
}
