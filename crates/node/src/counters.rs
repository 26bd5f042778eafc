//! Node counters: received, transmitted, delivered locally, and drops by reason. Per worker
//! slot (single writer, plain load + store), summed when read.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use netfilter::DropReason;

const REASONS: usize = DropReason::ALL.len();

#[derive(Debug)]
#[repr(align(64))]
struct Slot {
    rx: AtomicU64,
    tx: AtomicU64,
    local: AtomicU64,
    arp_replies: AtomicU64,
    /// Forwarded by the established-flow shortcut (also counted in `tx`).
    shortcut: AtomicU64,
    /// Held in the neighbour queue (`neighq.rs`) until the next hop resolved.
    neigh_held: AtomicU64,
    /// Frames this worker received but another owns, passed to it (AF_XDP multi-queue).
    handed_out: AtomicU64,
    /// Frames another worker passed to this one.
    handed_in: AtomicU64,
    /// The I/O loop's stages: times it slept in `poll()`, batches it ran through the node,
    /// transmit wake-ups (`sendto`) it made. Frames per batch and per wake-up follow.
    polls: AtomicU64,
    batches: AtomicU64,
    tx_kicks: AtomicU64,
    drops: [AtomicU64; REASONS],
}

impl Default for Slot {
    fn default() -> Self {
        Slot {
            rx: AtomicU64::new(0),
            tx: AtomicU64::new(0),
            local: AtomicU64::new(0),
            arp_replies: AtomicU64::new(0),
            shortcut: AtomicU64::new(0),
            neigh_held: AtomicU64::new(0),
            handed_out: AtomicU64::new(0),
            handed_in: AtomicU64::new(0),
            polls: AtomicU64::new(0),
            batches: AtomicU64::new(0),
            tx_kicks: AtomicU64::new(0),
            drops: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

#[derive(Debug)]
pub struct NodeCounters {
    /// A fixed-size array: indexing by `worker % MAX_WORKERS` needs no bounds check.
    slots: Box<[Slot; ipvs::stats::MAX_WORKERS]>,
}

impl Default for NodeCounters {
    fn default() -> Self {
        NodeCounters { slots: Box::new(std::array::from_fn(|_| Slot::default())) }
    }
}

/// A read-out of the node counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeCounts {
    pub rx: u64,
    pub tx: u64,
    pub local: u64,
    pub arp_replies: u64,
    /// Of `tx`, how many went by the established-flow shortcut.
    pub shortcut: u64,
    /// Packets held while their next hop was resolved; each later counted in `tx` when sent
    /// or as a drop (`no_neighbour`, `neigh_queue_full`).
    pub neigh_held: u64,
    /// (reason, count) for every reason, in `DropReason::ALL` order.
    pub drops: Vec<(DropReason, u64)>,
}

/// One worker's share of the counters (`GET /v1/stats` `per_worker`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WorkerCounts {
    pub rx: u64,
    pub tx: u64,
    /// Frames received here and passed to the worker that owns them.
    pub handed_out: u64,
    /// Frames another worker passed here (also counted in `rx` when processed).
    pub handed_in: u64,
    /// Times the I/O loop slept in `poll()`.
    pub polls: u64,
    /// Batches run through the node (frames per batch: `rx / batches`).
    pub batches: u64,
    /// Transmit wake-ups (`sendto`/`send` system calls).
    pub tx_kicks: u64,
    pub drops: u64,
}

impl NodeCounts {
    pub fn drops_of(&self, r: DropReason) -> u64 {
        self.drops.iter().find(|(x, _)| *x == r).map_or(0, |(_, n)| *n)
    }
    pub fn total_drops(&self) -> u64 {
        self.drops.iter().map(|(_, n)| n).sum()
    }
}

#[inline(always)]
fn bump(c: &AtomicU64) {
    c.store(c.load(Relaxed) + 1, Relaxed);
}

impl NodeCounters {
    #[inline]
    fn slot(&self, w: usize) -> &Slot {
        &self.slots[w % ipvs::stats::MAX_WORKERS]
    }
    #[inline]
    pub fn rx(&self, w: usize) {
        bump(&self.slot(w).rx)
    }
    #[inline]
    pub fn tx(&self, w: usize) {
        bump(&self.slot(w).tx)
    }
    #[inline]
    pub fn local(&self, w: usize) {
        bump(&self.slot(w).local)
    }
    #[inline]
    pub fn arp_reply(&self, w: usize) {
        bump(&self.slot(w).arp_replies)
    }
    #[inline]
    pub fn shortcut(&self, w: usize) {
        bump(&self.slot(w).shortcut)
    }
    #[inline]
    pub fn neigh_held(&self, w: usize) {
        bump(&self.slot(w).neigh_held)
    }
    #[inline]
    pub fn drop(&self, w: usize, r: DropReason) {
        let i = r as usize; // ALL lists the variants in declaration order
        bump(&self.slot(w).drops[i])
    }

    /// Count `n` frames passed to other workers at once (one hand-off batch).
    pub fn handed_out_n(&self, w: usize, n: u64) {
        let c = &self.slot(w).handed_out;
        c.store(c.load(Relaxed) + n, Relaxed);
    }

    /// Count `n` frames taken from other workers at once.
    pub fn handed_in_n(&self, w: usize, n: u64) {
        let c = &self.slot(w).handed_in;
        c.store(c.load(Relaxed) + n, Relaxed);
    }

    /// One I/O loop turn's stage counts, added once per turn.
    pub fn io_turn(&self, w: usize, polls: u64, batches: u64, tx_kicks: u64) {
        let s = self.slot(w);
        for (c, n) in [(&s.polls, polls), (&s.batches, batches), (&s.tx_kicks, tx_kicks)] {
            if n > 0 {
                c.store(c.load(Relaxed) + n, Relaxed);
            }
        }
    }

    /// Worker `w`'s counters alone.
    pub fn read_worker(&self, w: usize) -> WorkerCounts {
        let s = self.slot(w);
        WorkerCounts {
            rx: s.rx.load(Relaxed),
            tx: s.tx.load(Relaxed),
            handed_out: s.handed_out.load(Relaxed),
            handed_in: s.handed_in.load(Relaxed),
            polls: s.polls.load(Relaxed),
            batches: s.batches.load(Relaxed),
            tx_kicks: s.tx_kicks.load(Relaxed),
            drops: s.drops.iter().map(|d| d.load(Relaxed)).sum(),
        }
    }

    /// Count `n` drops at once (e.g. the kernel's receive-ring drops, read per loop turn).
    /// Count `n` frames sent at once (released from the neighbour queue).
    pub fn tx_n(&self, w: usize, n: u64) {
        let c = &self.slot(w).tx;
        c.store(c.load(Relaxed) + n, Relaxed);
    }

    pub fn drop_n(&self, w: usize, r: DropReason, n: u64) {
        let c = &self.slot(w).drops[r as usize];
        c.store(c.load(Relaxed) + n, Relaxed);
    }

    pub fn read(&self) -> NodeCounts {
        let mut c = NodeCounts { drops: DropReason::ALL.iter().map(|r| (*r, 0)).collect(), ..Default::default() };
        for s in self.slots.iter() {
            c.rx += s.rx.load(Relaxed);
            c.tx += s.tx.load(Relaxed);
            c.local += s.local.load(Relaxed);
            c.arp_replies += s.arp_replies.load(Relaxed);
            c.shortcut += s.shortcut.load(Relaxed);
            c.neigh_held += s.neigh_held.load(Relaxed);
            for (i, d) in s.drops.iter().enumerate() {
                c.drops[i].1 += d.load(Relaxed);
            }
        }
        c
    }
}
