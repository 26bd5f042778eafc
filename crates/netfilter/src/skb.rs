//! The packet as it travels the hook path: the frame plus what the kernel keeps in an skb.

use std::net::IpAddr;

use wire::Frame;

use crate::Family;

/// Who the frame was addressed to at L2 (`PACKET_HOST`, ...).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum PktType {
    #[default]
    Host,
    Broadcast,
    Multicast,
    OtherHost,
    Outgoing,
}

/// The transport checksum state of a received frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum CsumState {
    /// Nothing known: the checksum in the packet is what the sender wrote.
    #[default]
    None,
    /// The device verified it.
    Unnecessary,
    /// Left to offload (`TP_STATUS_CSUMNOTREADY`): the field holds only the pseudo-header sum.
    /// The node completes it before the hooks run, so hooks never see this state.
    Partial,
}

/// The routing decision attached to a packet (the kernel's `skb_dst`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum RouteKind {
    #[default]
    None,
    /// Delivered locally (a VIP or one of the node's addresses): LOCAL_IN.
    Local,
    /// Forwarded: FORWARD, then POST_ROUTING.
    Forward,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Route {
    pub kind: RouteKind,
    /// Outgoing interface (node interface index) for forwarded/transmitted packets.
    pub out_if: u32,
    /// Next hop: the gateway, or the destination itself when on-link.
    pub next_hop: Option<IpAddr>,
    /// Usable MTU of the route.
    pub mtu: u16,
}

/// What happens to a packet a hook STOLE.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Output {
    /// Consumed: nothing is sent.
    #[default]
    Consumed,
    /// Rewritten in place and re-injected as a locally sent packet (`ip_local_out`): the node
    /// runs LOCAL_OUT and POST_ROUTING and transmits it along `route`.
    LocalOut,
}

/// Why a packet was dropped; counted per reason by the node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DropReason {
    Truncated,
    BadL2,
    BadIpHeader,
    BadIpChecksum,
    BadL4Header,
    BadChecksum,
    Fragment,
    IpOptions,
    NotForUs,
    NoRoute,
    NoNeighbour,
    TtlExceeded,
    FragNeeded,
    NoDest,
    NoDestConn,
    ConnTableFull,
    ReuseDrop,
    HeadroomExhausted,
    HookDrop,
    Queued,
    TxRingFull,
    Defense,
    IcmpNoConn,
    /// Dropped by the kernel before the node saw it: the receive ring had no free block
    /// (`PACKET_STATISTICS` of the io backend).
    RxRingFull,
    /// A persistence engine could not place a new flow (SIP: no Call-ID in the first
    /// datagram, or not UDP); the kernel drops it too.
    PeNoData,
    /// The oldest packet waiting for a neighbour's address, dropped for a newer one (the
    /// per-neighbour queue was full, as the kernel's `unres_qlen`).
    NeighQueueFull,
    /// A stray TCP segment for a service (no entry, opens none), answered with a RST.
    StrayRst,
    /// The same, over the stray RST rate: dropped without an answer.
    StrayRstLimited,
    /// A SYN answered by the SYN proxy with a cookie (no entry created).
    SynCookie,
    /// An AF_XDP worker received a frame another worker owns (by client address) and that
    /// worker's hand-off ring was full (crates/xdp/src/handoff.rs).
    HandoffFull,
}

impl DropReason {
    pub const ALL: [DropReason; 30] = [
        DropReason::Truncated,
        DropReason::BadL2,
        DropReason::BadIpHeader,
        DropReason::BadIpChecksum,
        DropReason::BadL4Header,
        DropReason::BadChecksum,
        DropReason::Fragment,
        DropReason::IpOptions,
        DropReason::NotForUs,
        DropReason::NoRoute,
        DropReason::NoNeighbour,
        DropReason::TtlExceeded,
        DropReason::FragNeeded,
        DropReason::NoDest,
        DropReason::NoDestConn,
        DropReason::ConnTableFull,
        DropReason::ReuseDrop,
        DropReason::HeadroomExhausted,
        DropReason::HookDrop,
        DropReason::Queued,
        DropReason::TxRingFull,
        DropReason::Defense,
        DropReason::IcmpNoConn,
        DropReason::RxRingFull,
        DropReason::PeNoData,
        DropReason::NeighQueueFull,
        DropReason::StrayRst,
        DropReason::StrayRstLimited,
        DropReason::SynCookie,
        DropReason::HandoffFull,
    ];

    pub fn name(self) -> &'static str {
        match self {
            DropReason::Truncated => "truncated",
            DropReason::BadL2 => "bad_l2",
            DropReason::BadIpHeader => "bad_ip_header",
            DropReason::BadIpChecksum => "bad_ip_checksum",
            DropReason::BadL4Header => "bad_l4_header",
            DropReason::BadChecksum => "bad_checksum",
            DropReason::Fragment => "fragment",
            DropReason::IpOptions => "ip_options",
            DropReason::NotForUs => "not_for_us",
            DropReason::NoRoute => "no_route",
            DropReason::NoNeighbour => "no_neighbour",
            DropReason::TtlExceeded => "ttl_exceeded",
            DropReason::FragNeeded => "frag_needed",
            DropReason::NoDest => "no_dest",
            DropReason::NoDestConn => "nodest_conn",
            DropReason::ConnTableFull => "conn_table_full",
            DropReason::ReuseDrop => "reuse_drop",
            DropReason::HeadroomExhausted => "headroom_exhausted",
            DropReason::HookDrop => "hook_drop",
            DropReason::Queued => "queued_no_handler",
            DropReason::TxRingFull => "tx_ring_full",
            DropReason::Defense => "defense",
            DropReason::IcmpNoConn => "icmp_no_conn",
            DropReason::RxRingFull => "rx_ring_full",
            DropReason::PeNoData => "pe_no_data",
            DropReason::NeighQueueFull => "neigh_queue_full",
            DropReason::StrayRst => "stray_rst",
            DropReason::StrayRstLimited => "stray_rst_limited",
            DropReason::SynCookie => "syn_cookie",
            DropReason::HandoffFull => "handoff_full",
        }
    }
}

/// The packet and its metadata (the kernel's `sk_buff`). `frame.data()` starts at the
/// Ethernet header; `network` is the offset of the IP header within it.
pub struct Skb<'a> {
    pub frame: Frame<'a>,
    pub network: usize,
    pub family: Family,
    pub pkt_type: PktType,
    pub in_if: u32,
    /// Firewall mark (`skb->mark`): set by classifiers, read by fwmark services.
    pub mark: u32,
    /// Set on every packet IPVS produced or rewrote, so its hooks skip it (no loops).
    pub ipvs_property: bool,
    pub csum: CsumState,
    pub route: Route,
    pub output: Output,
    /// Set by the hook that dropped the packet, for the per-reason counters.
    pub drop_reason: Option<DropReason>,
    /// Flow hash computed by an earlier stage (the kernel's `skb->hash`): IPVS stores the hash
    /// of the connection key it prefetched, so the lookup does not hash again. 0 = none. A hook
    /// that rewrites addresses or ports must clear it (as the kernel's `skb_clear_hash`).
    pub hash: u32,
}

impl<'a> Skb<'a> {
    pub fn new(frame: Frame<'a>, network: usize, family: Family) -> Self {
        Skb {
            frame,
            network,
            family,
            pkt_type: PktType::Host,
            in_if: 0,
            mark: 0,
            ipvs_property: false,
            csum: CsumState::None,
            route: Route::default(),
            output: Output::Consumed,
            drop_reason: None,
            hash: 0,
        }
    }

    /// The bytes from the network header to the end of the frame.
    #[inline(always)]
    pub fn network_bytes(&self) -> &[u8] {
        self.frame.data().get(self.network..).unwrap_or(&[])
    }

    #[inline(always)]
    pub fn network_bytes_mut(&mut self) -> &mut [u8] {
        let n = self.network;
        self.frame.data_mut().get_mut(n..).unwrap_or(&mut [])
    }

    /// Mark a drop with its reason and return the DROP verdict.
    #[inline]
    pub fn drop_with(&mut self, reason: DropReason) -> crate::Verdict {
        self.drop_reason = Some(reason);
        crate::Verdict::Drop
    }
}
