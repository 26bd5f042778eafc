//! The established-flow shortcut: IPVS's in-hook and out-hook for a packet of a known IPv4
//! TCP/UDP connection, done in one pass over the packet instead of through the generic
//! parse → hook → transmitter layers (in the spirit of the kernel's flowtable fast path).
//!
//! It is an exact shortcut, not a second implementation of the rules: the node takes it only
//! while IPVS is the only registration on the IPv4 path (so skipping the chains skips nothing),
//! and each function here either does precisely what the hooks would do — the same stats, the
//! same [`Worker::transition`], the same rewrite arithmetic, the tunnel transmitter itself —
//! or returns `None` having changed nothing, and the packet goes through the hooks. Everything
//! unusual (a SYN, a dest that is not available, TTL 1, a packet over the MTU, SCTP, a UDP
//! packet without checksum, IPv6 or mixed-family tunnels, one-packet scheduling) is left to the
//! hooks. `crates/node/tests/shortcut.rs` checks that both give the same frames, verdicts,
//! states and counters.

use std::net::IpAddr;
use std::sync::atomic::Ordering::Relaxed;

use netfilter::{Skb, Verdict};

use crate::conn::ConnFlags;
use crate::ctx::{RouteV4, Routing};
use crate::dest::ForwardMethod;
use crate::packet::Tuple;
use crate::proto::{Dir, tcp};
use crate::worker::Worker;
use crate::xmit;

/// What the shortcut did with a client → VIP packet it took.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FastIn {
    /// Rewritten (NAT: destination and TTL; DR: TTL; TUN: encapsulated, `skb.route` set):
    /// transmit towards this next hop.
    Forward(RouteV4),
    /// Dropped by the transmitter after IPVS accounted it, as the hook would have been
    /// (`skb.drop_reason` says why).
    Dropped,
}

/// Ports and state-machine event of a TCP/UDP segment, checked as [`crate::packet::parse`]
/// checks them; `None` for anything else and for UDP without a checksum.
#[inline]
fn ports(protocol: u8, seg: &[u8]) -> Option<(u16, u16, u8)> {
    let h: &[u8; 8] = seg.first_chunk()?;
    let (sport, dport) = (u16::from_be_bytes([h[0], h[1]]), u16::from_be_bytes([h[2], h[3]]));
    match protocol {
        wire::ip::protocol::TCP => {
            let doff = (seg.get(12)? >> 4) as usize;
            if seg.len() < wire::tcp::HEADER_LEN || doff < 5 || doff * 4 > seg.len() {
                return None;
            }
            Some((sport, dport, seg[13]))
        }
        wire::ip::protocol::UDP => {
            let ulen = u16::from_be_bytes([h[4], h[5]]) as usize;
            if ulen < 8 || ulen > seg.len() || h[6..8] == [0, 0] {
                return None;
            }
            Some((sport, dport, 0))
        }
        _ => None,
    }
}

impl Worker {
    /// The in-hook for a client → VIP packet of an existing NAT, DR or IPv4-in-IPv4 tunnel
    /// connection (the caller found its destination among the VIPs). `skb` holds the IPv4
    /// packet as the node validated it (20-byte header with a good checksum, not a fragment,
    /// trimmed to its total length, `skb.hash` the prefetch stage's key hash or 0). `None`:
    /// nothing was changed, the hooks take the packet.
    #[inline]
    pub fn fast_in<R: Routing>(&mut self, skb: &mut Skb<'_>, routing: &R) -> Option<FastIn> {
        let net = skb.network_bytes();
        let h: &[u8; 20] = net.first_chunk()?;
        let (protocol, ttl, ip_len) = (h[9], h[8], u16::from_be_bytes([h[2], h[3]]) as usize);
        let saddr = u32::from_be_bytes([h[12], h[13], h[14], h[15]]);
        let daddr = u32::from_be_bytes([h[16], h[17], h[18], h[19]]);
        let (sport, dport, flags) = ports(protocol, &net[20..])?;
        if protocol == wire::ip::protocol::TCP && tcp::schedules(flags, false) {
            // May open (or reopen) a connection: the reuse rules live in the hook.
            return None;
        }
        let hash = if skb.hash != 0 { skb.hash } else { self.conns.hash_v4(protocol, saddr, sport) };
        let id = self.conns.lookup_in_v4(hash, protocol, saddr, sport, daddr, dport)?;
        let c = self.conns.get(id)?;
        let method = c.method();
        let (Some([_, _, rip]), Some(d)) = (c.v4_addrs(), c.dest.as_ref()) else { return None };
        if c.flags & (ConnFlags::ONE_PACKET | ConnFlags::SYNPROXY) != 0 || !d.is_available() || ttl <= 1 {
            return None;
        }
        let (rt, tunnel) = match method {
            ForwardMethod::Masq | ForwardMethod::Route => {
                let rt = routing.route_v4(rip)?;
                if ip_len > rt.mtu as usize {
                    return None;
                }
                (rt, None)
            }
            ForwardMethod::Tunnel => {
                // IPv4 in IPv4 (or GUE/GRE over IPv4); the transmitter is the hook's own.
                let full = routing.route(&IpAddr::V4(rip.into()))?;
                let (IpAddr::V4(_), IpAddr::V4(hop)) = (full.src, full.next_hop) else { return None };
                let pmtu = self.ipvs.sysctl.pmtu_disc.load(Relaxed) != 0;
                if pmtu && ip_len > xmit::tun::inner_mtu(c, full.mtu, false) {
                    return None;
                }
                (RouteV4 { out_if: full.out_if, next_hop: hop.into(), mtu: full.mtu }, Some((full, pmtu)))
            }
            _ => return None,
        };
        let rport = c.dport;
        // From here on the packet is IPVS's, as in `Worker::in_packet` and `xmit`.
        let w = self.id;
        d.stats.count_in(w, ip_len);
        d.svc_stats.count_in(w, ip_len);
        self.ipvs.total.count_in(w, ip_len);
        self.transition(id, Dir::Input, flags);
        if let Some(c) = self.conns.get_mut(id) {
            c.in_pkts = c.in_pkts.wrapping_add(1);
            let pkts = c.in_pkts;
            self.sync_conn(id, pkts);
        }
        if let Some((full, pmtu)) = tunnel {
            let Worker { conns, ip_id, .. } = self;
            let c = conns.get(id)?;
            let t = Tuple {
                protocol,
                saddr: IpAddr::V4(saddr.into()),
                daddr: IpAddr::V4(daddr.into()),
                sport,
                dport,
                tcp_flags: flags,
                l4: 20,
                ip_len,
            };
            return Some(match xmit::tun::xmit(c, &conns.addrs(c), skb, &t, &full, routing, ip_id, pmtu) {
                Verdict::Stolen => FastIn::Forward(rt),
                _ => FastIn::Dropped,
            });
        }
        let net = skb.network_bytes_mut();
        if method == ForwardMethod::Masq {
            let udp = protocol == wire::ip::protocol::UDP;
            xmit::rewrite_v4(net, udp, false, true, (daddr, dport), (rip, rport));
        } else if let Some(h) = net.first_chunk_mut::<20>() {
            xmit::dec_ttl_v4(h);
        }
        Some(FastIn::Forward(rt))
    }

    /// The out-hook for a real server → client packet the node is forwarding (it routed it and
    /// checked the TTL). On success the reply of a NAT connection has the VIP as source and
    /// the state machine has run; the node then decrements the TTL and transmits. `None`:
    /// not a known connection's packet (or not one the shortcut takes), nothing changed.
    #[inline]
    pub fn fast_out(&mut self, hash: u32, net: &mut [u8]) -> Option<()> {
        let h: &[u8; 20] = net.first_chunk()?;
        let (protocol, ip_len) = (h[9], u16::from_be_bytes([h[2], h[3]]) as usize);
        let saddr = u32::from_be_bytes([h[12], h[13], h[14], h[15]]);
        let daddr = u32::from_be_bytes([h[16], h[17], h[18], h[19]]);
        let (sport, dport, flags) = ports(protocol, &net[20..])?;
        let hash = if hash != 0 { hash } else { self.conns.hash_v4(protocol, daddr, dport) };
        let (raddr, caddr) = (IpAddr::V4(saddr.into()), IpAddr::V4(daddr.into()));
        let id = self.conns.lookup_out_hashed(hash, protocol, &raddr, sport, &caddr, dport)?;
        let c = self.conns.get(id)?;
        if c.flags & ConnFlags::SYNPROXY != 0 {
            return None; // sequence numbers shifted: the hooks (synproxy.rs)
        }
        let nat = c.flags & ConnFlags::FWD_MASK == 0;
        let vport = c.vport;
        let [_, vaddr, _] = c.v4_addrs()?;
        let w = self.id;
        if let Some(d) = &c.dest
            && d.is_available()
        {
            d.stats.count_out(w, ip_len);
            d.svc_stats.count_out(w, ip_len);
            self.ipvs.total.count_out(w, ip_len);
        }
        if nat {
            let udp = protocol == wire::ip::protocol::UDP;
            xmit::rewrite_v4(net, udp, true, false, (saddr, sport), (vaddr, vport));
        }
        self.transition(id, Dir::Output, flags);
        Some(())
    }
}
