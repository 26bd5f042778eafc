//! NAT (masquerading): destination rewritten towards the real server, source rewritten back
//! to the VIP on replies; RFC 1624 incremental checksums (§16, §12 for the UDP zero checksum).

use std::net::IpAddr;

use netfilter::{Skb, Verdict};
use wire::checksum;

use crate::conn::{Conn, ConnAddrs};
use crate::ctx::{RouteTo, Routing};
use crate::packet::Tuple;

#[inline]
pub(super) fn xmit(
    c: &Conn,
    a: &ConnAddrs,
    skb: &mut Skb<'_>,
    t: &Tuple,
    rt: &RouteTo,
    routing: &dyn Routing,
) -> Verdict {
    if let Some(v) = super::check_mtu(skb, t, rt.mtu as usize, routing) {
        return v;
    }
    super::dec_ttl(skb);
    nat_in_rewrite(skb, t, &a.daddr, c.dport);
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

/// One's-complement sum of the two 16-bit halves of `x` (unfolded).
#[inline(always)]
fn halves(x: u32) -> u32 {
    (x >> 16) + (x & 0xffff)
}

#[inline(always)]
fn get16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// RFC 1624 eqn 3 with a precomputed, unfolded difference `delta` = Σ~m + Σm'.
#[inline(always)]
fn apply(hc: u16, delta: u32) -> u16 {
    !checksum::fold(u32::from(!hc) + delta)
}

/// Rewrite one address and port of an IPv4 TCP/UDP packet: the IP header checksum and the
/// transport checksum (pseudo-header address + port) are both updated from one difference.
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
    let net = skb.network_bytes_mut();
    let addr_delta = match (old_addr, new_addr) {
        (IpAddr::V4(old4), IpAddr::V4(new4)) => set_v4_addr(net, source, u32::from(*old4), u32::from(*new4)),
        (IpAddr::V6(old6), IpAddr::V6(new6)) => {
            // No IPv6 header checksum; only the transport pseudo header changes.
            let d = old6.segments().iter().map(|w| u32::from(!w)).sum::<u32>()
                + new6.segments().iter().map(|&w| u32::from(w)).sum::<u32>();
            let a = if source { 8 } else { 24 };
            net[a..a + 16].copy_from_slice(&new6.octets());
            d
        }
        _ => return,
    };
    let l4 = t.l4;
    let p = if source { l4 } else { l4 + 2 };
    net[p..p + 2].copy_from_slice(&new_port.to_be_bytes());
    let l4_delta = addr_delta + u32::from(!old_port) + u32::from(new_port);
    if t.protocol == wire::ip::protocol::SCTP {
        // SCTP's CRC32c has no incremental form: recomputed in full when ports change (§13).
        let end = t.ip_len.min(net.len());
        if let Ok(mut p) = wire::SctpPacket::new_checked(&mut net[l4..end]) {
            p.fill_checksum();
        }
    } else if t.protocol == wire::ip::protocol::TCP {
        set_l4_csum(net, l4 + wire::tcp::CHECKSUM_OFFSET, l4_delta);
    } else {
        let off = l4 + wire::udp::CHECKSUM_OFFSET;
        let c = get16(net, off);
        let c = if c == 0 {
            // No checksum on the wire: IPVS computes a full one (§12).
            net[off] = 0;
            net[off + 1] = 0;
            let (s, d) = match new_addr {
                IpAddr::V4(_) => (
                    IpAddr::V4(std::net::Ipv4Addr::new(net[12], net[13], net[14], net[15])),
                    IpAddr::V4(std::net::Ipv4Addr::new(net[16], net[17], net[18], net[19])),
                ),
                IpAddr::V6(_) => {
                    let a = |o: usize| {
                        let mut b = [0u8; 16];
                        b.copy_from_slice(&net[o..o + 16]);
                        IpAddr::V6(b.into())
                    };
                    (a(8), a(24))
                }
            };
            let ulen = (get16(net, l4 + 4) as usize).min(net.len() - l4);
            checksum::transport(&s, &d, wire::ip::protocol::UDP, &net[l4..l4 + ulen])
        } else {
            apply(c, l4_delta)
        };
        let c = if c == 0 { 0xffff } else { c };
        net[off..off + 2].copy_from_slice(&c.to_be_bytes());
    }
}

/// Replace the IPv4 source (`source`) or destination address and update the header checksum;
/// returns the difference the transport checksum's pseudo header takes.
#[inline(always)]
fn set_v4_addr(net: &mut [u8], source: bool, old: u32, new: u32) -> u32 {
    let d = halves(!old) + halves(new);
    let a = if source { 12 } else { 16 };
    net[a..a + 4].copy_from_slice(&new.to_be_bytes());
    let hc = apply(get16(net, 10), d);
    net[10..12].copy_from_slice(&hc.to_be_bytes());
    d
}

/// Apply a difference to the TCP checksum, or to a UDP checksum that is present, at `off`.
#[inline(always)]
fn set_l4_csum(net: &mut [u8], off: usize, delta: u32) {
    let c = apply(get16(net, off), delta);
    net[off..off + 2].copy_from_slice(&c.to_be_bytes());
}

/// The shortcut's rewrite (`fastpath`): an IPv4 TCP packet, or a UDP one whose checksum is
/// present (the caller checked), with a 20-byte header; with `dec_ttl` the TTL (above 1) is
/// decremented in the same header checksum update. Same arithmetic as [`rewrite`] after
/// `dec_ttl` (one's-complement sums are associative), on fixed-size views of the headers.
#[inline(always)]
pub(crate) fn rewrite_v4(net: &mut [u8], udp: bool, source: bool, dec_ttl: bool, old: (u32, u16), new: (u32, u16)) {
    if udp {
        if let Some(b) = net.first_chunk_mut::<28>() {
            rewrite_fixed(b, 20 + wire::udp::CHECKSUM_OFFSET, true, source, dec_ttl, old, new);
        }
    } else if let Some(b) = net.first_chunk_mut::<38>() {
        rewrite_fixed(b, 20 + wire::tcp::CHECKSUM_OFFSET, false, source, dec_ttl, old, new);
    }
}

#[inline(always)]
fn rewrite_fixed<const N: usize>(
    b: &mut [u8; N],
    off: usize,
    udp: bool,
    source: bool,
    dec_ttl: bool,
    old: (u32, u16),
    new: (u32, u16),
) {
    let ad = halves(!old.0) + halves(new.0);
    let a = if source { 12 } else { 16 };
    b[a..a + 4].copy_from_slice(&new.0.to_be_bytes());
    let mut hd = ad;
    if dec_ttl && b[8] > 0 {
        // RFC 1624: the TTL is the high byte of the TTL/protocol word.
        let w = get16(b, 8);
        b[8] -= 1;
        hd += u32::from(!w) + u32::from(w - 0x100);
    }
    let hc = apply(get16(b, 10), hd);
    b[10..12].copy_from_slice(&hc.to_be_bytes());
    let d = ad + u32::from(!old.1) + u32::from(new.1);
    let p = if source { 20 } else { 22 };
    b[p..p + 2].copy_from_slice(&new.1.to_be_bytes());
    set_l4_csum(b, off, d);
    if udp && get16(b, off) == 0 {
        // A computed zero is sent as all ones (RFC 768).
        b[off..off + 2].copy_from_slice(&[0xff, 0xff]);
    }
}
