//! The packet path (DESIGN.md "How a packet travels"): L2 → PRE_ROUTING → route decision →
//! LOCAL_IN or FORWARD → (LOCAL_OUT) → POST_ROUTING → neighbour → transmit. Like the
//! kernel's `ip_rcv`, it validates the IP header before any hook sees the packet.

use ipvs::service::FastMap as HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use netfilter::{
    CsumState, DropReason, Family, HookPoint, Hooks, Output, PktType, Route, RouteKind, Skb, Traversal, Verdict,
};
use wire::{EthernetFrame, MacAddr, checksum, ethernet::ethertype};

use crate::counters::NodeCounters;
use crate::net::NetState;
use crate::worker::WorkerCtx;

/// What the io backend does with a frame after [`Node::process`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Discarded (the reason is counted).
    Drop(DropReason),
    /// Send the (rewritten) frame on this interface.
    Tx(u32),
    /// Delivered to the local stack (rvs: nothing to do; the kernel has its own copy).
    Local,
    /// Copied into the neighbour queue until the next hop resolves (`neighq.rs`); the io
    /// backend does nothing with the frame. [`Node::neighbour_turn`] sends it later.
    Held,
}

/// Neighbours learnt from ARP traffic, shared by all workers (written rarely, read per batch).
type Learnt = HashMap<IpAddr, MacAddr>;

/// Bound on learnt neighbours (real servers, gateways and clients on the segments).
const MAX_LEARNT: usize = 4096;

/// The node: hook chains, the network snapshot, IPVS and the counters.
pub struct Node {
    pub hooks: Hooks<WorkerCtx>,
    pub ipvs: Arc<ipvs::Ipvs>,
    net: ArcSwap<NetState>,
    learnt: ArcSwap<Learnt>,
    learn_lock: Mutex<()>,
    /// The firewall-mark classifier's registration, present while it has rules.
    classifier: Mutex<Option<[netfilter::HookHandle; 2]>>,
    /// IPVS's IPv4 in-hook (LOCAL_IN) and out-hook (FORWARD) registrations.
    pub(crate) ipvs_v4: [netfilter::HookHandle; 2],
    /// Use the established-flow shortcut (`shortcut.rs`) when the chains allow it.
    pub(crate) shortcut: AtomicBool,
    /// Also ask the director's kernel to resolve next hops (`neighq.rs`), beside the io
    /// loop's own ARP/NS from `WorkerCtx::arp_wanted`.
    pub(crate) kernel_resolution: AtomicBool,
    pub counters: NodeCounters,
}

impl Node {
    /// A node with IPVS registered on its hooks.
    pub fn new(ipvs: Arc<ipvs::Ipvs>, net: NetState) -> Arc<Self> {
        let hooks = Hooks::new();
        // [v4 in, v4 out, v6 in, v6 out]
        let h = ipvs::hooks::register(&hooks);
        let node = Node {
            hooks,
            ipvs_v4: [h[0], h[1]],
            shortcut: AtomicBool::new(true),
            kernel_resolution: AtomicBool::new(false),
            ipvs,
            net: ArcSwap::from_pointee(net),
            learnt: ArcSwap::from_pointee(HashMap::default()),
            learn_lock: Mutex::new(()),
            classifier: Mutex::new(None),
            counters: NodeCounters::default(),
        };
        Arc::new(node)
    }

    /// Turn the established-flow shortcut on or off (on by default; off runs every packet
    /// through the chains, e.g. to compare the two).
    pub fn set_shortcut(&self, on: bool) {
        self.shortcut.store(on, Relaxed);
    }

    /// Set the firewall-mark classifier's rules (first match wins). The classifier hook sits on
    /// PRE_ROUTING only while there are rules, so packets do not pay for it otherwise.
    pub fn set_fwmark_rules(&self, rules: Vec<ipvs::fwmark::FwmarkRule>) {
        let mut reg = self.classifier.lock().unwrap_or_else(|e| e.into_inner());
        let want = !rules.is_empty();
        self.ipvs.set_fwmark_rules(rules);
        match (want, reg.is_some()) {
            (true, false) => *reg = Some(ipvs::fwmark::register(&self.hooks)),
            (false, true) => {
                for h in reg.take().into_iter().flatten() {
                    self.hooks.unregister(h);
                }
            }
            _ => {}
        }
    }

    pub fn set_net(&self, net: NetState) {
        self.net.store(Arc::new(net));
    }

    pub fn net(&self) -> Arc<NetState> {
        self.net.load_full()
    }

    /// A per-worker context (worker ids 0..MAX_WORKERS).
    pub fn worker(&self, id: usize) -> WorkerCtx {
        WorkerCtx::new(id, ipvs::Worker::new(id, self.ipvs.clone()), self.net.load_full(), self.learnt.load_full())
    }

    /// Start a batch: advance the clock, pick up new configuration, snapshot the chains.
    pub fn begin_batch(&self, cx: &mut WorkerCtx, now_ms: u64) -> Traversal<WorkerCtx> {
        cx.ipvs.set_now(now_ms);
        let net = self.net.load();
        if !Arc::ptr_eq(&cx.net, &net) {
            cx.net = net.clone();
            cx.clear_neigh_cache();
        }
        let learnt = self.learnt.load();
        if !Arc::ptr_eq(&cx.learnt, &learnt) {
            cx.learnt = learnt.clone();
            cx.clear_neigh_cache();
        }
        self.hooks.snapshot()
    }

    /// How many neighbours were learnt from ARP/NDP (metrics, tests).
    pub fn learnt_neighbours(&self) -> usize {
        self.learnt.load().len()
    }

    /// Record a neighbour. Callers only learn from ARP/NDP that concerns the node (a request
    /// for one of its addresses or VIPs, an answer addressed to it) or that updates a known
    /// entry, as the kernel does; the table is bounded, so a flood of made-up senders can
    /// neither grow it nor make every packet pay for it.
    pub(crate) fn learn(&self, ip: IpAddr, mac: MacAddr, new_allowed: bool) {
        let cur = self.learnt.load();
        match cur.get(&ip) {
            Some(m) if *m == mac => return,
            None if !new_allowed || cur.len() >= MAX_LEARNT => return,
            _ => {}
        }
        drop(cur);
        let _g = self.learn_lock.lock().unwrap_or_else(|e| e.into_inner());
        let mut m: Learnt = self.learnt.load().as_ref().clone();
        m.insert(ip, mac);
        self.learnt.store(Arc::new(m));
    }

    /// Run a batch of received frames through the path, overlapping the connection-table
    /// memory accesses with the work on earlier frames (a rolling pipeline, below).
    /// `actions[i]` receives the action for `skbs[i]`.
    pub fn process_batch(
        &self,
        tr: &Traversal<WorkerCtx>,
        cx: &mut WorkerCtx,
        skbs: &mut [Skb<'_>],
        actions: &mut [Action],
    ) {
        self.process_batch_ahead(tr, cx, skbs, actions, &mut [])
    }

    /// [`Node::process_batch`] with the batch to come in hand (a ring hands over more than one
    /// batch). Each frame goes through three stages: its flow hashed and its index slot
    /// prefetched, then its entry prefetched `ENTRY_AHEAD` frames before it is processed, then
    /// processed. `next`'s first stage runs here, one frame of it per frame of this batch, so
    /// when `next` is processed (the same worker's next call) its index lines have had a whole
    /// batch to arrive and its entry prefetches do not wait for them. Without a staged batch the
    /// first stage runs for the whole batch at once and the first `ENTRY_AHEAD` frames wait for
    /// their index lines (BENCHMARKS.md, "The table's misses").
    pub fn process_batch_ahead(
        &self,
        tr: &Traversal<WorkerCtx>,
        cx: &mut WorkerCtx,
        skbs: &mut [Skb<'_>],
        actions: &mut [Action],
        next: &mut [Skb<'_>],
    ) {
        const ENTRY_AHEAD: usize = 8;
        let fast = self.shortcut_allowed(tr);
        let n = skbs.len().min(actions.len());
        let (skbs, actions) = (&mut skbs[..n], &mut actions[..n]);
        let staged = cx.staged_under.take().is_some_and(|t| Arc::ptr_eq(&t, cx.ipvs.services()));
        if !staged {
            for skb in skbs.iter_mut() {
                stage_one(cx, skb);
            }
        }
        for i in 0..n + ENTRY_AHEAD {
            if let Some(skb) = skbs.get(i)
                && skb.hash != 0
            {
                cx.ipvs.conns.prefetch_entry(skb.hash);
            }
            if let Some(skb) = next.get_mut(i) {
                stage_one(cx, skb);
            }
            if let Some(k) = i.checked_sub(ENTRY_AHEAD)
                && k < n
            {
                actions[k] = self.process_one(tr, cx, &mut skbs[k], fast);
            }
        }
        if !next.is_empty() {
            for skb in next.iter_mut().skip(n + ENTRY_AHEAD) {
                stage_one(cx, skb);
            }
            cx.staged_under = Some(cx.ipvs.services().clone());
        }
    }

    /// Run one received frame through the path. The frame in `skb` is rewritten in place.
    pub fn process(&self, tr: &Traversal<WorkerCtx>, cx: &mut WorkerCtx, skb: &mut Skb<'_>) -> Action {
        let fast = self.shortcut_allowed(tr);
        self.process_one(tr, cx, skb, fast)
    }

    #[inline]
    fn process_one(&self, tr: &Traversal<WorkerCtx>, cx: &mut WorkerCtx, skb: &mut Skb<'_>, fast: bool) -> Action {
        let w = cx.id;
        self.counters.rx(w);
        let shortcut = if fast { self.shortcut(cx, skb) } else { None };
        let a = match shortcut {
            Some(a) => a,
            None => self.path(tr, cx, skb),
        };
        match a {
            Action::Drop(r) => self.counters.drop(w, r),
            Action::Tx(_) => {
                if let Some(r) = skb.drop_reason {
                    // An ICMP error replaced the packet: count why the original went.
                    self.counters.drop(w, r);
                }
                self.counters.tx(w)
            }
            Action::Local => self.counters.local(w),
            Action::Held => {
                if let Some(r) = skb.drop_reason {
                    // What is held replaced the packet (a stray RST, an ICMP error): count why
                    // the original went, as for one sent at once.
                    self.counters.drop(w, r);
                }
                self.counters.neigh_held(w)
            }
        }
        a
    }

    fn path(&self, tr: &Traversal<WorkerCtx>, cx: &mut WorkerCtx, skb: &mut Skb<'_>) -> Action {
        let Some(ifc_mac) = cx.net.interface(skb.in_if).map(|i| i.mac) else {
            return Action::Drop(DropReason::NotForUs);
        };
        let (dst_mac, etype) = match EthernetFrame::new_checked(skb.frame.data()) {
            Ok(e) => (e.dst_addr(), e.ethertype()),
            Err(_) => return Action::Drop(DropReason::Truncated),
        };
        skb.pkt_type = if dst_mac == ifc_mac {
            PktType::Host
        } else if dst_mac.is_broadcast() {
            PktType::Broadcast
        } else if dst_mac.is_multicast() {
            PktType::Multicast
        } else {
            PktType::OtherHost
        };
        skb.network = wire::ethernet::HEADER_LEN;
        let family = match etype {
            ethertype::ARP => return self.arp(tr, cx, skb, ifc_mac),
            ethertype::IPV4 => Family::Ipv4,
            ethertype::IPV6 => Family::Ipv6,
            _ => return Action::Drop(DropReason::NotForUs),
        };
        if skb.pkt_type == PktType::OtherHost {
            return Action::Drop(DropReason::NotForUs);
        }
        skb.family = family;
        let daddr = match family {
            Family::Ipv4 => {
                if let Err(r) = validate_ipv4(skb) {
                    return Action::Drop(r);
                }
                IpAddr::V4(wire::Ipv4Packet::new_unchecked(skb.network_bytes()).dst_addr())
            }
            _ => {
                match validate_ipv6(skb) {
                    Ok(true) => return self.ndp(cx, skb, ifc_mac),
                    Ok(false) => {}
                    Err(r) => return Action::Drop(r),
                }
                IpAddr::V6(wire::Ipv6Packet::new_unchecked(skb.network_bytes()).dst_addr())
            }
        };
        if skb.pkt_type != PktType::Host {
            // Multicast and broadcast IP traffic is not load balanced (NDP was handled above).
            return Action::Drop(DropReason::NotForUs);
        }
        match tr.traverse(family, HookPoint::PreRouting, cx, skb) {
            Verdict::Accept => {}
            v => return self.after_steal(tr, cx, skb, v),
        }
        let local = cx.ipvs.services().is_vip(&daddr)
            || cx.ipvs.services().has_mark(skb.mark, family == Family::Ipv6)
            || cx.net.is_local(&daddr);
        if local {
            skb.route = Route { kind: RouteKind::Local, ..Route::default() };
            match tr.traverse(family, HookPoint::LocalIn, cx, skb) {
                Verdict::Accept => Action::Local,
                v => self.after_steal(tr, cx, skb, v),
            }
        } else {
            self.forward(tr, cx, skb, &daddr)
        }
    }

    /// FORWARD: rvs forwards only what a hook claimed (IPVS NAT replies); it is not a router.
    fn forward(&self, tr: &Traversal<WorkerCtx>, cx: &mut WorkerCtx, skb: &mut Skb<'_>, daddr: &IpAddr) -> Action {
        let Some(rt) = ipvs::Routing::route(&*cx.net, daddr) else {
            return Action::Drop(DropReason::NoRoute);
        };
        let v6 = skb.family == Family::Ipv6;
        if skb.network_bytes()[if v6 { 7 } else { 8 }] <= 1 {
            return Action::Drop(DropReason::TtlExceeded);
        }
        skb.route = Route { kind: RouteKind::Forward, out_if: rt.out_if, next_hop: Some(rt.next_hop), mtu: rt.mtu };
        match tr.traverse(skb.family, HookPoint::Forward, cx, skb) {
            Verdict::Accept if skb.ipvs_property => {}
            Verdict::Accept => return Action::Drop(DropReason::NotForUs),
            v => return self.after_steal(tr, cx, skb, v),
        }
        if v6 {
            wire::Ipv6Packet::new_unchecked(skb.network_bytes_mut()).dec_hop_limit();
        } else {
            wire::Ipv4Packet::new_unchecked(skb.network_bytes_mut()).dec_ttl();
        }
        self.post_routing(tr, cx, skb)
    }

    /// A hook's verdict other than ACCEPT.
    fn after_steal(&self, tr: &Traversal<WorkerCtx>, cx: &mut WorkerCtx, skb: &mut Skb<'_>, v: Verdict) -> Action {
        match v {
            Verdict::Stolen if skb.output == Output::LocalOut => {
                match tr.traverse(skb.family, HookPoint::LocalOut, cx, skb) {
                    Verdict::Accept => self.post_routing(tr, cx, skb),
                    Verdict::Stolen => Action::Drop(skb.drop_reason.unwrap_or(DropReason::HookDrop)),
                    _ => Action::Drop(skb.drop_reason.unwrap_or(DropReason::HookDrop)),
                }
            }
            Verdict::Queue(_) => Action::Drop(DropReason::Queued),
            _ => Action::Drop(skb.drop_reason.unwrap_or(DropReason::HookDrop)),
        }
    }

    /// POST_ROUTING, then the neighbour stage writes the Ethernet header.
    fn post_routing(&self, tr: &Traversal<WorkerCtx>, cx: &mut WorkerCtx, skb: &mut Skb<'_>) -> Action {
        match tr.traverse(skb.family, HookPoint::PostRouting, cx, skb) {
            Verdict::Accept => {}
            _ => return Action::Drop(skb.drop_reason.unwrap_or(DropReason::HookDrop)),
        }
        let out_if = skb.route.out_if;
        let Some(next_hop) = skb.route.next_hop else {
            return Action::Drop(DropReason::NoRoute);
        };
        let Some(src_mac) = cx.net.interface(out_if).map(|i| i.mac) else {
            return Action::Drop(DropReason::NoRoute);
        };
        let etype = if skb.family == Family::Ipv6 { ethertype::IPV6 } else { ethertype::IPV4 };
        let Some(dst_mac) = self.next_hop_mac(cx, out_if, &next_hop) else {
            return self.hold(cx, skb, out_if, next_hop, src_mac, etype);
        };
        let mut eth = EthernetFrame::new_unchecked(skb.frame.data_mut());
        eth.set_dst_addr(dst_mac);
        eth.set_src_addr(src_mac);
        eth.set_ethertype(etype);
        Action::Tx(out_if)
    }

    /// ARP: learn the sender, answer requests for our addresses and VIPs in place.
    fn arp(&self, tr: &Traversal<WorkerCtx>, cx: &mut WorkerCtx, skb: &mut Skb<'_>, our_mac: MacAddr) -> Action {
        skb.family = Family::Arp;
        let (op, sha, spa, tpa) = match wire::ArpPacket::new_checked(skb.network_bytes()) {
            Ok(a) => (a.operation(), a.sender_hw(), a.sender_ip(), a.target_ip()),
            Err(_) => return Action::Drop(DropReason::BadL2),
        };
        match tr.traverse(Family::Arp, HookPoint::LocalIn, cx, skb) {
            Verdict::Accept => {}
            _ => return Action::Drop(skb.drop_reason.unwrap_or(DropReason::HookDrop)),
        }
        let target = IpAddr::V4(tpa);
        let own_addr = cx.net.interface(skb.in_if).is_some_and(|i| i.addrs.iter().any(|(a, _)| *a == target));
        let ours =
            own_addr || cx.ipvs.services().is_vip(&target) || cx.ipvs.fwmark_rules().iter().any(|r| r.covers(&target));
        if !spa.is_unspecified() && sha.is_unicast() {
            // New entries only from ARP aimed at us (a request for one of ours, or the answer
            // to our request); any ARP may refresh a known entry.
            self.learn(IpAddr::V4(spa), sha, ours);
        }
        if op != wire::arp::operation::REQUEST || !ours {
            return Action::Local;
        }
        {
            let mut a = wire::ArpPacket::new_unchecked(skb.network_bytes_mut());
            a.set_operation(wire::arp::operation::REPLY);
            a.set_target_hw(sha);
            a.set_target_ip(spa);
            a.set_sender_hw(our_mac);
            a.set_sender_ip(tpa);
        }
        let mut eth = EthernetFrame::new_unchecked(skb.frame.data_mut());
        eth.set_dst_addr(sha);
        eth.set_src_addr(our_mac);
        self.counters.arp_reply(cx.id);
        Action::Tx(skb.in_if)
    }
}

/// `ip_rcv`'s checks, plus rvs's own limits: no IP options, no fragments (no reassembly yet).
/// Also trims Ethernet padding and completes offloaded (partial) transport checksums.
fn validate_ipv4(skb: &mut Skb<'_>) -> Result<(), DropReason> {
    let net = skb.network;
    let (total, l4, proto) = {
        let ip = wire::Ipv4Packet::new_checked(skb.network_bytes()).map_err(|e| match e {
            wire::Error::Truncated => DropReason::Truncated,
            wire::Error::Malformed => DropReason::BadIpHeader,
        })?;
        if !ip.verify_checksum() {
            return Err(DropReason::BadIpChecksum);
        }
        if ip.header_len() != 20 {
            return Err(DropReason::IpOptions);
        }
        if ip.is_fragment() {
            return Err(DropReason::Fragment);
        }
        let src = ip.src_addr();
        if src.is_multicast() || src.is_broadcast() || src == Ipv4Addr::UNSPECIFIED {
            return Err(DropReason::BadIpHeader);
        }
        (ip.total_len() as usize, ip.header_len(), ip.protocol())
    };
    skb.frame.set_len(net + total).map_err(|_| DropReason::Truncated)?;
    if skb.csum == CsumState::Partial {
        complete_partial_checksum(skb, l4, proto);
        skb.csum = CsumState::Unnecessary;
    }
    Ok(())
}

/// IPv6 header checks. Extension headers are not walked: a packet whose next header is not
/// TCP, UDP, SCTP or ICMPv6 is dropped (fragments and options counted as such). Returns
/// `Ok(true)` for neighbour discovery messages (handled by the node itself).
fn validate_ipv6(skb: &mut Skb<'_>) -> Result<bool, DropReason> {
    let net = skb.network;
    let (total, nh, src) = {
        let ip = wire::Ipv6Packet::new_checked(skb.network_bytes()).map_err(|e| match e {
            wire::Error::Truncated => DropReason::Truncated,
            wire::Error::Malformed => DropReason::BadIpHeader,
        })?;
        (40 + ip.payload_len() as usize, ip.next_header(), ip.src_addr())
    };
    match nh {
        6 | 17 | 132 | 58 => {}
        44 => return Err(DropReason::Fragment),
        0 | 43 | 60 | 51 | 50 | 135 | 139 | 140 => return Err(DropReason::IpOptions),
        _ => return Err(DropReason::NotForUs),
    }
    if src.is_multicast() {
        return Err(DropReason::BadIpHeader);
    }
    skb.frame.set_len(net + total).map_err(|_| DropReason::Truncated)?;
    if skb.csum == CsumState::Partial {
        complete_partial_checksum(skb, 40, nh);
        skb.csum = CsumState::Unnecessary;
    }
    let ndp = nh == 58 && skb.network_bytes().get(40).is_some_and(|t| matches!(t, 135 | 136));
    Ok(ndp)
}

/// The transport checksum field of a CHECKSUM_PARTIAL frame holds the folded pseudo-header sum;
/// summing the whole segment with it in place and complementing gives the real checksum.
pub(crate) fn complete_partial_checksum(skb: &mut Skb<'_>, l4: usize, proto: u8) {
    let off = match proto {
        wire::ip::protocol::TCP => wire::tcp::CHECKSUM_OFFSET,
        wire::ip::protocol::UDP => wire::udp::CHECKSUM_OFFSET,
        _ => return,
    };
    let seg = &mut skb.network_bytes_mut()[l4..];
    if seg.len() < off + 2 {
        return;
    }
    let mut c = !checksum::fold(checksum::sum(seg));
    if proto == wire::ip::protocol::UDP && c == 0 {
        c = 0xffff;
    }
    seg[off..off + 2].copy_from_slice(&c.to_be_bytes());
}

/// The pipeline's first stage for one frame: its flow's hash (kept in `skb.hash` for the
/// lookup) and a prefetch of its connection-index line. Not IPv4: no hash.
#[inline]
fn stage_one(cx: &WorkerCtx, skb: &mut Skb<'_>) {
    let f = skb.frame.data();
    skb.hash = if f.len() > 14 && f[12..14] == [0x08, 0x00] { cx.ipvs.prefetch(&f[14..]) } else { 0 };
}
