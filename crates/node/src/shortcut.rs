//! The node's half of the established-flow shortcut (`ipvs::fastpath`): for an IPv4 frame of a
//! known connection, do in one pass what the path would do — the `ip_rcv` checks, the routing
//! decision, IPVS's hook, the TTL, the neighbour stage — while the IPv4 chains hold IPVS alone.
//!
//! The shortcut never drops or answers a packet on its own: every check that could lead to a
//! drop, an ICMP error or a new connection sends the frame down the full path instead, before
//! anything was changed (but for what the path's `ip_rcv` checks would do to the frame anyway:
//! Ethernet padding trimmed, an offloaded transport checksum completed). The exceptions happen
//! after IPVS has taken the packet, exactly as on the path: a next hop without a known MAC has
//! the packet held in the neighbour queue, and a tunnel transmitter's own drop is passed on.

use std::net::IpAddr;
use std::sync::atomic::Ordering::Relaxed;

use ipvs::fastpath::FastIn;
use ipvs::{RouteV4, Routing};
use netfilter::{CsumState, DropReason, Family, HookPoint, Output, PktType, Route, RouteKind, Skb, Traversal};
use wire::{EthernetFrame, ethernet::ethertype};

use crate::path::{Action, Node};
use crate::worker::WorkerCtx;

impl Node {
    /// May the shortcut stand in for the chains of this snapshot? Only when the IPv4 path holds
    /// nothing but IPVS's two hooks: then skipping the chains skips nothing.
    #[inline]
    pub(crate) fn shortcut_allowed(&self, tr: &Traversal<WorkerCtx>) -> bool {
        self.shortcut.load(Relaxed)
            && tr.is_empty(Family::Ipv4, HookPoint::PreRouting)
            && tr.is_empty(Family::Ipv4, HookPoint::LocalOut)
            && tr.is_empty(Family::Ipv4, HookPoint::PostRouting)
            && tr.is_only(&self.ipvs_v4[0])
            && tr.is_only(&self.ipvs_v4[1])
    }

    /// Forward `skb` by the shortcut, or return `None` for the full path (nothing changed but
    /// the normalisation `validate_ipv4` would do anyway).
    #[inline]
    pub(crate) fn shortcut(&self, cx: &mut WorkerCtx, skb: &mut Skb<'_>) -> Option<Action> {
        if skb.ipvs_property || skb.mark != 0 {
            return None;
        }
        let f = skb.frame.data();
        let eth: &[u8; 34] = f.first_chunk()?;
        if eth[12..14] != [0x08, 0x00] || eth[0..6] != cx.net.interface(skb.in_if)?.mac.0 {
            return None;
        }
        // `validate_ipv4`, stricter where that is simpler: no options, a good checksum, not a
        // fragment, a unicast-able source, a total length within the frame.
        let ip: &[u8; 20] = f[14..].first_chunk()?;
        let total = u16::from_be_bytes([ip[2], ip[3]]) as usize;
        let src = [ip[12], ip[13], ip[14], ip[15]];
        if ip[0] != 0x45
            || total < 20
            || total > f.len() - 14
            || u16::from_be_bytes([ip[6], ip[7]]) & 0x3fff != 0
            || src[0] >= 224
            || src == [0; 4]
            || !wire::checksum::ipv4_header_ok(ip)
        {
            return None;
        }
        let daddr = u32::from_be_bytes([ip[16], ip[17], ip[18], ip[19]]);
        let ttl = ip[8];
        let protocol = ip[9];
        skb.frame.set_len(14 + total).ok()?;
        if skb.csum == CsumState::Partial {
            // As `validate_ipv4` does: a frame from a peer that left its transport checksum to
            // the device gets it completed here, whichever path it then takes.
            crate::path::complete_partial_checksum(skb, 20, protocol);
            skb.csum = CsumState::Unnecessary;
        }
        skb.network = wire::ethernet::HEADER_LEN;
        skb.family = Family::Ipv4;
        skb.pkt_type = PktType::Host;
        let hash = skb.hash;
        let rt = if cx.ipvs.services().is_vip_v4(daddr) {
            // LOCAL_IN: IPVS's in-hook, then LOCAL_OUT and POST_ROUTING (both empty).
            match cx.ipvs.fast_in(skb, &*cx.net)? {
                FastIn::Forward(rt) => {
                    skb.output = Output::LocalOut;
                    rt
                }
                FastIn::Dropped => return Some(Action::Drop(skb.drop_reason.unwrap_or(DropReason::HookDrop))),
            }
        } else {
            // FORWARD (a reply): not for the node itself, routed, TTL above 1, IPVS's out-hook.
            let d = IpAddr::V4(daddr.into());
            if cx.net.is_local(&d) || ttl <= 1 {
                return None;
            }
            let rt = cx.net.route_v4(daddr)?;
            cx.ipvs.fast_out(hash, skb.network_bytes_mut())?;
            if let Some(h) = skb.network_bytes_mut().first_chunk_mut::<20>() {
                // The forward path's TTL decrement, on a fixed-size header.
                wire::Ipv4Packet::new_unchecked(&mut h[..]).dec_ttl();
            }
            rt
        };
        let next_hop = IpAddr::V4(rt.next_hop.into());
        skb.route = Route { kind: RouteKind::Forward, out_if: rt.out_if, next_hop: Some(next_hop), mtu: rt.mtu };
        skb.ipvs_property = true;
        skb.hash = 0;
        Some(self.neighbour_stage(cx, skb, &rt))
    }

    /// The end of POST_ROUTING: Ethernet addresses for the next hop.
    #[inline]
    fn neighbour_stage(&self, cx: &mut WorkerCtx, skb: &mut Skb<'_>, rt: &RouteV4) -> Action {
        let Some(src_mac) = cx.net.interface(rt.out_if).map(|i| i.mac) else {
            return Action::Drop(DropReason::NoRoute);
        };
        let next_hop = IpAddr::V4(rt.next_hop.into());
        let Some(dst_mac) = self.next_hop_mac(cx, rt.out_if, &next_hop) else {
            return self.hold(cx, skb, rt.out_if, next_hop, src_mac, ethertype::IPV4);
        };
        let mut eth = EthernetFrame::new_unchecked(skb.frame.data_mut());
        eth.set_dst_addr(dst_mac);
        eth.set_src_addr(src_mac);
        eth.set_ethertype(ethertype::IPV4);
        self.counters.shortcut(cx.id);
        Action::Tx(rt.out_if)
    }
}
