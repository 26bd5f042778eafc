//! Packets waiting for their next hop's link-layer address. The kernel keeps them on the
//! unresolved neighbour (`unres_qlen`, 101 packets by default) and sends them when the answer
//! comes; dropping them instead costs a client a 1 s SYN retransmission on the first
//! connection to each real server (DESIGN.md, "The first packet to a new neighbour").
//!
//! One queue per worker (no lock), all memory preallocated: fixed-size slots linked into one
//! FIFO per pending neighbour. Per neighbour at most [`PER_NEIGH`] packets, the oldest dropped
//! first (`neigh_queue_full`); a neighbour still unresolved after [`RESOLVE_MS`] (the kernel's
//! 3 probes 1 s apart) has its packets dropped as `no_neighbour`.

use std::net::IpAddr;
use std::sync::atomic::Ordering::Relaxed;

use netfilter::{DropReason, Skb};
use wire::{EthernetFrame, MacAddr};

use crate::path::{Action, Node};
use crate::worker::WorkerCtx;

/// Packets held per neighbour: the kernel's default `unres_qlen`.
pub const PER_NEIGH: usize = 101;
/// Packets held per worker over all neighbours.
pub const SLOTS: usize = 512;
/// Bytes per slot: an Ethernet frame of a 1500-byte MTU fits; larger frames are not held.
pub const SLOT_BYTES: usize = 2048;
/// Neighbours being resolved at once per worker.
pub const PENDING: usize = 32;
/// How long a neighbour may stay unresolved: the kernel's `mcast_solicit` (3) probes
/// `retrans_time` (1 s) apart before the entry fails.
pub const RESOLVE_MS: u64 = 3000;

const NIL: u16 = u16::MAX;

#[derive(Clone, Copy, Debug)]
struct Pending {
    ip: IpAddr,
    out_if: u32,
    head: u16,
    tail: u16,
    count: u16,
    /// When the first packet was held (engine ms).
    since: u64,
    /// Resolution was asked for (the kernel resolver, once per neighbour).
    asked: bool,
}

/// What [`NeighQueue::hold`] did with a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hold {
    /// Copied into the queue.
    Held,
    /// Copied; the neighbour's oldest packet was dropped to make room.
    HeldOldestDropped,
    /// Not held: no slot, no free neighbour entry, or larger than a slot.
    Refused,
}

/// Frames released or dropped by [`NeighQueue::release`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Released {
    pub sent: u64,
    pub expired: u64,
}

pub struct NeighQueue {
    buf: Box<[u8]>,
    len: Box<[u16]>,
    next: Box<[u16]>,
    free: u16,
    pending: Box<[Option<Pending>]>,
    held: usize,
}

impl Default for NeighQueue {
    fn default() -> Self {
        Self::new()
    }
}

impl NeighQueue {
    pub fn new() -> Self {
        let next: Vec<u16> = (1..=SLOTS as u16).map(|i| if i as usize == SLOTS { NIL } else { i }).collect();
        NeighQueue {
            buf: vec![0u8; SLOTS * SLOT_BYTES].into_boxed_slice(),
            len: vec![0u16; SLOTS].into_boxed_slice(),
            next: next.into_boxed_slice(),
            free: 0,
            pending: vec![None; PENDING].into_boxed_slice(),
            held: 0,
        }
    }

    /// Nothing held: the per-packet check on the forwarding path.
    #[inline(always)]
    pub fn is_empty(&self) -> bool {
        self.held == 0
    }

    /// Packets held over all neighbours.
    pub fn len(&self) -> usize {
        self.held
    }

    /// Is a packet for `ip` waiting? (A later packet must queue behind it, not overtake it.)
    pub fn holds(&self, ip: &IpAddr) -> bool {
        self.pending.iter().flatten().any(|p| p.ip == *ip)
    }

    /// Packets held for `ip`.
    pub fn held_for(&self, ip: &IpAddr) -> usize {
        self.pending.iter().flatten().find(|p| p.ip == *ip).map_or(0, |p| p.count as usize)
    }

    fn alloc(&mut self) -> Option<u16> {
        let s = self.free;
        if s == NIL {
            return None;
        }
        self.free = self.next[s as usize];
        Some(s)
    }

    fn free_slot(&mut self, s: u16) {
        self.next[s as usize] = self.free;
        self.free = s;
    }

    /// Unlinks the oldest packet of `p` and frees its slot.
    fn pop_front(&mut self, k: usize) -> Option<u16> {
        let p = self.pending[k].as_mut()?;
        let s = p.head;
        if s == NIL {
            return None;
        }
        p.head = self.next[s as usize];
        p.count -= 1;
        if p.head == NIL {
            p.tail = NIL;
        }
        self.held -= 1;
        Some(s)
    }

    /// Holds a copy of `frame` (its Ethernet destination is written on release) for next hop
    /// `ip` on interface `out_if`.
    pub fn hold(&mut self, out_if: u32, ip: IpAddr, frame: &[u8], now: u64) -> Hold {
        if frame.len() > SLOT_BYTES {
            return Hold::Refused;
        }
        let k = match self.pending.iter().position(|p| p.is_some_and(|p| p.ip == ip)) {
            Some(k) => k,
            None => {
                let Some(k) = self.pending.iter().position(Option::is_none) else { return Hold::Refused };
                if self.free == NIL {
                    return Hold::Refused;
                }
                self.pending[k] =
                    Some(Pending { ip, out_if, head: NIL, tail: NIL, count: 0, since: now, asked: false });
                k
            }
        };
        let mut dropped = false;
        if self.pending[k].is_some_and(|p| p.count as usize >= PER_NEIGH) {
            if let Some(s) = self.pop_front(k) {
                self.free_slot(s);
            }
            dropped = true;
        }
        let s = match self.alloc() {
            Some(s) => s,
            None => {
                // The pool is used up: make room with this neighbour's own oldest packet.
                match self.pop_front(k) {
                    Some(s) => {
                        dropped = true;
                        s
                    }
                    None => {
                        self.pending[k] = None;
                        return Hold::Refused;
                    }
                }
            }
        };
        let at = s as usize * SLOT_BYTES;
        self.buf[at..at + frame.len()].copy_from_slice(frame);
        self.len[s as usize] = frame.len() as u16;
        self.next[s as usize] = NIL;
        let Some(p) = self.pending[k].as_mut() else { return Hold::Refused };
        if p.tail == NIL {
            p.head = s;
        } else {
            self.next[p.tail as usize] = s;
        }
        p.tail = s;
        p.count += 1;
        p.out_if = out_if;
        self.held += 1;
        if dropped { Hold::HeldOldestDropped } else { Hold::Held }
    }

    /// Neighbours not yet asked for, marked asked: `ask(out_if, ip)` for each.
    pub fn take_asks(&mut self, mut ask: impl FnMut(u32, IpAddr)) {
        for p in self.pending.iter_mut().flatten() {
            if !p.asked {
                p.asked = true;
                ask(p.out_if, p.ip);
            }
        }
    }

    /// Sends, in order, the packets of every neighbour `lookup` now knows (their Ethernet
    /// destination written), and drops those of neighbours unresolved for [`RESOLVE_MS`].
    pub fn release(
        &mut self,
        now: u64,
        mut lookup: impl FnMut(&IpAddr) -> Option<MacAddr>,
        mut tx: impl FnMut(u32, &[u8]),
    ) -> Released {
        let mut r = Released::default();
        if self.held == 0 {
            return r;
        }
        for k in 0..self.pending.len() {
            let Some(p) = self.pending[k] else { continue };
            let mac = lookup(&p.ip);
            if mac.is_none() && now.saturating_sub(p.since) < RESOLVE_MS {
                continue;
            }
            while let Some(s) = self.pop_front(k) {
                let at = s as usize * SLOT_BYTES;
                let f = &mut self.buf[at..at + self.len[s as usize] as usize];
                match mac {
                    Some(m) => {
                        f[..6].copy_from_slice(&m.0);
                        tx(p.out_if, f);
                        r.sent += 1;
                    }
                    None => r.expired += 1,
                }
                self.free_slot(s);
            }
            self.pending[k] = None;
        }
        r
    }
}

impl Node {
    /// Also ask the director's kernel to resolve next hops (`RTM_NEWNEIGH` with `NTF_USE`, see
    /// `netlink/resolve.rs`), beside the io loop's own ARP/NS frames. The daemon turns it on:
    /// the kernel then holds an entry that the answer completes, and the answer reaches rvs
    /// as a kernel neighbour event on every backend (XDP passes ARP replies to the kernel).
    pub fn set_kernel_resolution(&self, on: bool) {
        self.kernel_resolution.store(on, Relaxed);
    }

    /// The next hop's MAC, unless it is unknown or packets for it are still queued (a later
    /// packet must not overtake them). One branch on the hot path when nothing is queued.
    #[inline]
    pub(crate) fn next_hop_mac(&self, cx: &mut WorkerCtx, _out_if: u32, ip: &IpAddr) -> Option<MacAddr> {
        let mac = cx.neighbour(ip)?;
        if !cx.neighq.is_empty() && cx.neighq.holds(ip) {
            return None;
        }
        Some(mac)
    }

    /// The neighbour stage without a MAC: hold a copy of the frame (source MAC and EtherType
    /// written now, the destination on release) and ask for the neighbour.
    #[cold]
    pub(crate) fn hold(
        &self,
        cx: &mut WorkerCtx,
        skb: &mut Skb<'_>,
        out_if: u32,
        next_hop: IpAddr,
        src_mac: MacAddr,
        etype: u16,
    ) -> Action {
        if cx.neighbour(&next_hop).is_none() {
            cx.want_neighbour(out_if, next_hop);
        }
        {
            let mut eth = EthernetFrame::new_unchecked(skb.frame.data_mut());
            eth.set_src_addr(src_mac);
            eth.set_ethertype(etype);
        }
        let now = cx.ipvs.now();
        match cx.neighq.hold(out_if, next_hop, skb.frame.data(), now) {
            Hold::Held => Action::Held,
            Hold::HeldOldestDropped => {
                self.counters.drop(cx.id, DropReason::NeighQueueFull);
                Action::Held
            }
            Hold::Refused => Action::Drop(DropReason::NoNeighbour),
        }
    }

    /// Once per turn of a worker's loop, after its batches: ask the kernel for neighbours
    /// newly waited for (when kernel resolution is on), send the packets of neighbours now
    /// known through `tx(out_if, frame)` in the order they came, and drop those whose
    /// neighbour stayed unresolved for [`RESOLVE_MS`] (`no_neighbour`). Free when nothing is
    /// queued.
    pub fn neighbour_turn(&self, cx: &mut WorkerCtx, now_ms: u64, tx: impl FnMut(u32, &[u8])) {
        if cx.neighq.is_empty() {
            return;
        }
        if self.kernel_resolution.load(Relaxed) {
            if cx.resolver.is_none() {
                // The node has no logger: a resolver that cannot open or ask shows as
                // `no_neighbour` drops after RESOLVE_MS (and the io loop's ARP still runs).
                cx.resolver = crate::netlink::resolve::Resolver::open().ok();
            }
            if let Some(r) = cx.resolver.as_mut() {
                // The io loop still sends its own ARP/NS (`arp_wanted`): the kernel sends no
                // neighbour solicitation without a link-local address on the interface, and
                // an answer to either request completes the kernel's entry it created here.
                cx.neighq.take_asks(|out_if, ip| {
                    let _ = r.ask(out_if, ip);
                });
            }
        }
        let WorkerCtx { neighq, net, learnt, .. } = cx;
        let r = neighq.release(now_ms, |ip| net.neighbours.get(ip).or_else(|| learnt.get(ip)).copied(), tx);
        if r.sent > 0 {
            self.counters.tx_n(cx.id, r.sent);
        }
        if r.expired > 0 {
            self.counters.drop_n(cx.id, DropReason::NoNeighbour, r.expired);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(n: u8) -> IpAddr {
        IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, n))
    }

    fn frame(tag: u16) -> Vec<u8> {
        let mut f = vec![0u8; 60];
        f[14..16].copy_from_slice(&tag.to_be_bytes());
        f
    }

    fn tag(f: &[u8]) -> u16 {
        u16::from_be_bytes([f[14], f[15]])
    }

    const MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 9]);

    #[test]
    fn released_in_order_with_the_mac_written() {
        let mut q = NeighQueue::new();
        for t in 0..5 {
            assert_eq!(q.hold(3, ip(1), &frame(t), 100), Hold::Held);
        }
        assert_eq!(q.hold(3, ip(2), &frame(99), 100), Hold::Held);
        assert!(q.holds(&ip(1)) && q.holds(&ip(2)) && !q.holds(&ip(3)));
        assert_eq!(q.len(), 6);
        // Only ip(1) resolved: its five go, in order, on interface 3; ip(2) waits.
        let mut out = Vec::new();
        let r = q.release(200, |a| (*a == ip(1)).then_some(MAC), |i, f| out.push((i, f[..6].to_vec(), tag(f))));
        assert_eq!(r, Released { sent: 5, expired: 0 });
        assert_eq!(out, (0..5).map(|t| (3, MAC.0.to_vec(), t)).collect::<Vec<_>>());
        assert!(!q.holds(&ip(1)));
        assert_eq!(q.len(), 1);
    }

    #[test]
    fn the_oldest_goes_when_a_neighbour_has_its_fill() {
        let mut q = NeighQueue::new();
        for t in 0..PER_NEIGH as u16 {
            assert_eq!(q.hold(1, ip(1), &frame(t), 0), Hold::Held);
        }
        assert_eq!(q.hold(1, ip(1), &frame(1000), 0), Hold::HeldOldestDropped);
        assert_eq!(q.held_for(&ip(1)), PER_NEIGH);
        let mut tags = Vec::new();
        q.release(1, |_| Some(MAC), |_, f| tags.push(tag(f)));
        let want: Vec<u16> = (1..PER_NEIGH as u16).chain([1000]).collect();
        assert_eq!(tags, want);
        assert!(q.is_empty());
    }

    #[test]
    fn unresolved_neighbours_expire_after_the_kernels_retries() {
        let mut q = NeighQueue::new();
        q.hold(1, ip(1), &frame(1), 1000);
        q.hold(1, ip(2), &frame(2), 2500);
        let r = q.release(1000 + RESOLVE_MS - 1, |_| None, |_, _| panic!("nothing resolved"));
        assert_eq!(r, Released::default());
        let r = q.release(1000 + RESOLVE_MS, |_| None, |_, _| panic!("nothing resolved"));
        assert_eq!(r, Released { sent: 0, expired: 1 });
        assert!(!q.holds(&ip(1)) && q.holds(&ip(2)));
    }

    #[test]
    fn bounded_in_total_and_every_slot_comes_back() {
        let mut q = NeighQueue::new();
        let mut refused = 0;
        let mut held = 0;
        // More neighbours than entries, more packets than slots.
        for round in 0..3u16 {
            for n in 0..(PENDING + 8) as u8 {
                for t in 0..20u16 {
                    match q.hold(1, ip(n), &frame(round * 100 + t), 0) {
                        Hold::Refused => refused += 1,
                        _ => held += 1,
                    }
                }
            }
        }
        assert!(refused > 0 && held > 0);
        assert!(q.len() <= SLOTS);
        let r = q.release(0, |_| Some(MAC), |_, _| {});
        assert_eq!(r.sent as usize, SLOTS.min(PENDING * PER_NEIGH));
        assert!(q.is_empty());
        // The pool is whole again: a full load fits once more.
        for t in 0..PER_NEIGH as u16 {
            assert_eq!(q.hold(1, ip(1), &frame(t), 0), Hold::Held);
        }
        assert_eq!(q.hold(1, ip(1), &vec![0u8; SLOT_BYTES + 1], 0), Hold::Refused);
    }

    #[test]
    fn each_neighbour_is_asked_for_once() {
        let mut q = NeighQueue::new();
        q.hold(4, ip(1), &frame(1), 0);
        q.hold(4, ip(1), &frame(2), 0);
        q.hold(5, ip(2), &frame(3), 0);
        let mut asked = Vec::new();
        q.take_asks(|i, a| asked.push((i, a)));
        assert_eq!(asked, vec![(4, ip(1)), (5, ip(2))]);
        q.take_asks(|_, _| panic!("asked twice"));
    }
}
