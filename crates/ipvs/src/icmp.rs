//! ICMP errors about IPVS connections (lvs-semantics.md §14): relayed to the real server when
//! a client reports a problem with our reply, rewritten back to the VIP when a real server's
//! side reports one about a client packet (NAT). An error never changes or deletes a
//! connection; errors with a bad checksum or about no connection are dropped and counted.

use std::net::{IpAddr, Ipv4Addr};

use netfilter::{DropReason, Skb, Verdict};
use wire::checksum;

use crate::conn::ConnFlags;
use crate::ctx::Routing;
use crate::worker::Worker;
use crate::xmit;

/// The parts of an ICMP error and the packet it quotes.
struct Quoted {
    /// Offset of the ICMP header from the network header.
    icmp: usize,
    /// Offset of the quoted IP header.
    inner: usize,
    inner_ihl: usize,
    protocol: u8,
    saddr: IpAddr,
    daddr: IpAddr,
    sport: u16,
    dport: u16,
    /// Whole outer IP length.
    ip_len: usize,
}

enum Check {
    /// Not an error IPVS relates to connections: the stack's business.
    NotOurs,
    Bad(DropReason),
    Quoted(Quoted),
}

/// Types IPVS handles: destination unreachable, source quench, time exceeded.
fn is_ipvs_error(t: u8) -> bool {
    matches!(t, 3 | 4 | 11)
}

fn examine(net: &[u8], v6: bool) -> Check {
    if v6 {
        return examine_v6(net);
    }
    let ihl = (net[0] & 0xf) as usize * 4;
    let ip_len = (u16::from_be_bytes([net[2], net[3]]) as usize).min(net.len());
    let Some(msg) = net.get(ihl..ip_len) else { return Check::Bad(DropReason::BadL4Header) };
    if msg.len() < 8 {
        return Check::Bad(DropReason::BadL4Header);
    }
    if !is_ipvs_error(msg[0]) {
        return Check::NotOurs;
    }
    if checksum::checksum(msg) != 0 {
        return Check::Bad(DropReason::BadChecksum);
    }
    let inner = ihl + 8;
    let Ok(q) = wire::Ipv4Packet::new_checked_header(&net[inner..ip_len]) else {
        return Check::Bad(DropReason::BadL4Header);
    };
    let protocol = q.protocol();
    if !matches!(protocol, 6 | 17) || q.frag_offset() != 0 {
        return Check::NotOurs;
    }
    let inner_ihl = q.header_len();
    let Some(ports) = net.get(inner + inner_ihl..inner + inner_ihl + 4) else {
        return Check::Bad(DropReason::BadL4Header);
    };
    Check::Quoted(Quoted {
        icmp: ihl,
        inner,
        inner_ihl,
        protocol,
        saddr: IpAddr::V4(q.src_addr()),
        daddr: IpAddr::V4(q.dst_addr()),
        sport: u16::from_be_bytes([ports[0], ports[1]]),
        dport: u16::from_be_bytes([ports[2], ports[3]]),
        ip_len,
    })
}

/// ICMPv6: every error type (< 128) relates to connections (§14).
fn examine_v6(net: &[u8]) -> Check {
    let ip_len = (40 + u16::from_be_bytes([net[4], net[5]]) as usize).min(net.len());
    let Some(msg) = net.get(40..ip_len) else { return Check::Bad(DropReason::BadL4Header) };
    if msg.len() < 8 {
        return Check::Bad(DropReason::BadL4Header);
    }
    if msg[0] >= 128 {
        return Check::NotOurs;
    }
    let (s, d) = (addr6(net, 8), addr6(net, 24));
    if checksum::transport(&s, &d, wire::ip::protocol::ICMPV6, msg) != 0 {
        return Check::Bad(DropReason::BadChecksum);
    }
    let inner = 48;
    let Ok(q) = wire::Ipv6Packet::new_checked_header(&net[inner..ip_len]) else {
        return Check::Bad(DropReason::BadL4Header);
    };
    let protocol = q.next_header();
    if !matches!(protocol, 6 | 17 | 132) {
        return Check::NotOurs;
    }
    let Some(ports) = net.get(inner + 40..inner + 44) else {
        return Check::Bad(DropReason::BadL4Header);
    };
    Check::Quoted(Quoted {
        icmp: 40,
        inner,
        inner_ihl: 40,
        protocol,
        saddr: IpAddr::V6(q.src_addr()),
        daddr: IpAddr::V6(q.dst_addr()),
        sport: u16::from_be_bytes([ports[0], ports[1]]),
        dport: u16::from_be_bytes([ports[2], ports[3]]),
        ip_len,
    })
}

fn addr6(net: &[u8], at: usize) -> IpAddr {
    let mut b = [0u8; 16];
    b.copy_from_slice(&net[at..at + 16]);
    IpAddr::V6(b.into())
}

/// Write an address into the quoted header at its source (`source`) or destination field.
fn put_addr(net: &mut [u8], inner: usize, source: bool, a: &IpAddr) {
    match a {
        IpAddr::V4(a) => {
            let at = inner + if source { 12 } else { 16 };
            net[at..at + 4].copy_from_slice(&a.octets());
        }
        IpAddr::V6(a) => {
            let at = inner + if source { 8 } else { 24 };
            net[at..at + 16].copy_from_slice(&a.octets());
        }
    }
}

/// Recompute the quoted IP header checksum and the ICMP checksum after a rewrite (the quoted
/// transport checksum is left alone, as the kernel does).
fn fix_checksums(net: &mut [u8], q: &Quoted, v6: bool) {
    if v6 {
        let (s, d) = (addr6(net, 8), addr6(net, 24));
        let msg = &mut net[q.icmp..q.ip_len];
        msg[2] = 0;
        msg[3] = 0;
        let c = checksum::transport(&s, &d, wire::ip::protocol::ICMPV6, msg);
        msg[2..4].copy_from_slice(&c.to_be_bytes());
        return;
    }
    let h = &mut net[q.inner..q.inner + q.inner_ihl];
    h[10] = 0;
    h[11] = 0;
    let c = checksum::checksum(h);
    h[10..12].copy_from_slice(&c.to_be_bytes());
    let msg = &mut net[q.icmp..q.ip_len];
    msg[2] = 0;
    msg[3] = 0;
    let c = checksum::checksum(msg);
    msg[2..4].copy_from_slice(&c.to_be_bytes());
}

fn set_outer(net: &mut [u8], source: bool, a: &IpAddr) {
    if let IpAddr::V6(new) = a {
        let at = if source { 8 } else { 24 };
        net[at..at + 16].copy_from_slice(&new.octets());
        return;
    }
    let (IpAddr::V4(new), at) = (a, if source { 12 } else { 16 }) else { return };
    let old = u32::from_be_bytes([net[at], net[at + 1], net[at + 2], net[at + 3]]);
    net[at..at + 4].copy_from_slice(&new.octets());
    let hc = u16::from_be_bytes([net[10], net[11]]);
    let hc = checksum::update32(hc, old, u32::from(*new));
    net[10..12].copy_from_slice(&hc.to_be_bytes());
}

impl Worker {
    /// An ICMP error arriving for a VIP (client side, LOCAL_IN).
    pub fn in_icmp(&mut self, skb: &mut Skb<'_>, routing: &dyn Routing) -> Verdict {
        let v6 = skb.family == netfilter::Family::Ipv6;
        let q = match examine(skb.network_bytes(), v6) {
            Check::NotOurs => return Verdict::Accept,
            Check::Bad(r) => return skb.drop_with(r),
            Check::Quoted(q) => q,
        };
        // The quoted packet is our reply VIP → client: look the connection up from the client.
        let Some(id) = self.conns.lookup_in(q.protocol, &q.daddr, q.dport, &q.saddr, q.sport) else {
            return skb.drop_with(DropReason::IcmpNoConn);
        };
        let w = self.id;
        self.touch(id);
        let Some(c) = self.conns.get(id) else { return Verdict::Accept };
        if let Some(d) = &c.dest
            && d.is_available()
        {
            d.stats.count_in(w, q.ip_len);
            d.svc_stats.count_in(w, q.ip_len);
            self.ipvs.total.count_in(w, q.ip_len);
        }
        let (daddr, dport, nat) = (self.conns.daddr(c), c.dport, c.flags & ConnFlags::FWD_MASK == 0);
        let Some(rt) = routing.route(&daddr) else { return skb.drop_with(DropReason::NoRoute) };
        if xmit::ttl(skb) <= 1 {
            return skb.drop_with(DropReason::TtlExceeded);
        }
        if nat {
            let net = skb.network_bytes_mut();
            set_outer(net, false, &daddr);
            put_addr(net, q.inner, true, &daddr);
            let p = q.inner + q.inner_ihl;
            net[p..p + 2].copy_from_slice(&dport.to_be_bytes());
            fix_checksums(net, &q, v6);
            xmit::dec_ttl(skb);
            return xmit::steal(skb, &rt);
        }
        // DR/TUN: forwarded unchanged through the entry's transmitter, never subject to the
        // fragmentation-needed check.
        let t = crate::packet::Tuple {
            protocol: 1,
            saddr: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            daddr,
            sport: 0,
            dport: 0,
            tcp_flags: 0,
            l4: q.icmp,
            ip_len: q.ip_len,
        };
        let Worker { conns, ip_id, .. } = self;
        let Some(c) = conns.get(id) else { return Verdict::Accept };
        xmit::xmit(c, &conns.addrs(c), skb, &t, routing, ip_id, false)
    }

    /// An ICMP error being forwarded towards a client (real-server side, FORWARD): about a
    /// client packet to a NAT real server, rewritten to come from the VIP.
    pub fn out_icmp(&mut self, skb: &mut Skb<'_>) -> Verdict {
        let v6 = skb.family == netfilter::Family::Ipv6;
        let q = match examine(skb.network_bytes(), v6) {
            Check::NotOurs => return Verdict::Accept,
            Check::Bad(r) => return skb.drop_with(r),
            Check::Quoted(q) => q,
        };
        // The quoted packet is client → RIP: the reply direction is RIP → client.
        let Some(id) = self.conns.lookup_out(q.protocol, &q.daddr, q.dport, &q.saddr, q.sport) else {
            return skb.drop_with(DropReason::IcmpNoConn);
        };
        let Some(c) = self.conns.get(id) else { return Verdict::Accept };
        if c.flags & ConnFlags::FWD_MASK != 0 {
            return Verdict::Accept;
        }
        let (vaddr, vport, dest) = (self.conns.vaddr(c), c.vport, c.dest.clone());
        self.touch(id);
        let net = skb.network_bytes_mut();
        set_outer(net, true, &vaddr);
        put_addr(net, q.inner, false, &vaddr);
        let p = q.inner + q.inner_ihl + 2;
        net[p..p + 2].copy_from_slice(&vport.to_be_bytes());
        fix_checksums(net, &q, v6);
        if let Some(d) = dest
            && d.is_available()
        {
            d.stats.count_out(self.id, q.ip_len);
            d.svc_stats.count_out(self.id, q.ip_len);
            self.ipvs.total.count_out(self.id, q.ip_len);
        }
        skb.ipvs_property = true;
        skb.hash = 0;
        Verdict::Accept
    }
}
