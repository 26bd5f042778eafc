//! NAT (masquerading): destination rewritten towards the real server, source rewritten back
//! to the VIP on replies; RFC 1624 incremental checksums (§16, §12 for the UDP zero checksum).

use std::net::IpAddr;

use netfilter::{Skb, Verdict};
use wire::checksum;

use crate::conn::Conn;
use crate::ctx::{RouteTo, Routing};
use crate::packet::Tuple;

#[inline]
pub(super) fn xmit(c: &Conn, skb: &mut Skb<'_>, t: &Tuple, rt: &RouteTo, routing: &dyn Routing) -> Verdict {
    if let Some(v) = super::check_mtu(skb, t, rt.mtu as usize, routing) {
        return v;
    }
    super::dec_ttl(skb);
    nat_in_rewrite(skb, t, &c.daddr, c.dport);
    super::steal(skb, rt)
}

/// Rewrite the destination VIP:vport → RIP:dport.
#[inline]
pub(crate) fn nat_in_rewrite(skb: &mut Skb<'_>, t: &Tuple, new_addr: &IpAddr, new_port: u16) {
    rewrite(skb, t, false, &t.daddr, new_addr, t.dport, new_port);
}

/// Rewrite the source RIP:dport → VIP:vport of a reply.
#[inline]
pub(crate) fn nat_out_rewrite(skb: &mut Skb<'_>, t: &Tuple, new_addr: &IpAddr, new_port: u16) {
    rewrite(skb, t, true, &t.saddr, new_addr, t.sport, new_port);
}

#[inline]
fn rewrite(
    skb: &mut Skb<'_>,
    t: &Tuple,
    source: bool,
    old_addr: &IpAddr,
    new_addr: &IpAddr,
    old_port: u16,
    new_port: u16,
) {
    let (IpAddr::V4(old4), IpAddr::V4(new4)) = (old_addr, new_addr) else {
        return;
    };
    let (old_b, new_b) = (old4.octets(), new4.octets());
    let net = skb.network_bytes_mut();
    // IP header: address and header checksum.
    let a = if source { 12 } else { 16 };
    net[a..a + 4].copy_from_slice(&new_b);
    let hc = u16::from_be_bytes([net[10], net[11]]);
    let hc = checksum::update_bytes(hc, &old_b, &new_b);
    net[10..12].copy_from_slice(&hc.to_be_bytes());
    // L4: port, and the checksum over pseudo-header address + port.
    let l4 = t.l4;
    let p = if source { l4 } else { l4 + 2 };
    net[p..p + 2].copy_from_slice(&new_port.to_be_bytes());
    if t.protocol == wire::ip::protocol::TCP {
        let off = l4 + wire::tcp::CHECKSUM_OFFSET;
        let c = u16::from_be_bytes([net[off], net[off + 1]]);
        let c = checksum::update_bytes(c, &old_b, &new_b);
        let c = checksum::update16(c, old_port, new_port);
        net[off..off + 2].copy_from_slice(&c.to_be_bytes());
    } else {
        let off = l4 + wire::udp::CHECKSUM_OFFSET;
        let c = u16::from_be_bytes([net[off], net[off + 1]]);
        let c = if c == 0 {
            // No checksum on the wire: IPVS computes a full one (§12).
            net[off] = 0;
            net[off + 1] = 0;
            let (s, d) = (
                IpAddr::V4(wire::Ipv4Packet::new_unchecked(&net[..]).src_addr()),
                IpAddr::V4(wire::Ipv4Packet::new_unchecked(&net[..]).dst_addr()),
            );
            let ulen = u16::from_be_bytes([net[l4 + 4], net[l4 + 5]]) as usize;
            checksum::transport(&s, &d, wire::ip::protocol::UDP, &net[l4..l4 + ulen])
        } else {
            checksum::update16(checksum::update_bytes(c, &old_b, &new_b), old_port, new_port)
        };
        let c = if c == 0 { 0xffff } else { c };
        net[off..off + 2].copy_from_slice(&c.to_be_bytes());
    }
}
