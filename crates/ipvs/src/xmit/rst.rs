//! A RST for a stray TCP segment (issue 12 item 6): a segment for a service that matches no
//! entry and cannot open one (a client whose connection the director forgot, e.g. after a
//! restart). Kernel LVS leaves such a segment to the director's stack, which answers it with a
//! RST (`tcp_v4_send_reset`); rvs answers the same way, built in place from the offending
//! segment, so the client fails fast instead of retransmitting into silence.
//!
//! RFC 793 "Reset Generation": if the segment has ACK, the RST takes its sequence number from
//! SEG.ACK and carries no ACK; otherwise it has sequence 0 and ACKs SEG.SEQ + SEG.LEN (SYN and
//! FIN counted). Never a RST for a RST. Source: the VIP and port the segment was sent to; IPv4
//! with DF and TTL 64, no options, window 0, as Linux sends it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use netfilter::{DropReason, Family, Output, Route, RouteKind, Skb, Verdict};
use wire::checksum;

use crate::ctx::Routing;
use crate::packet::Tuple;

const RST: u8 = 0x04;
const ACK: u8 = 0x10;
const SYN: u8 = 0x02;
const FIN: u8 = 0x01;

/// Token bucket of one worker for stray RSTs: refilled from the engine clock, no allocation.
#[derive(Clone, Copy, Debug, Default)]
pub struct RstBucket {
    tokens: u32,
    /// Engine milliseconds of the last refill.
    last: u64,
}

impl RstBucket {
    /// Take a token if the bucket (capacity and refill `rate` per second) has one.
    pub fn take(&mut self, now_ms: u64, rate: u32) -> bool {
        let elapsed = now_ms.saturating_sub(self.last);
        let add = elapsed.saturating_mul(rate as u64) / 1000;
        if add > 0 {
            self.tokens = (self.tokens as u64 + add).min(rate as u64) as u32;
            self.last = now_ms;
        } else if self.last == 0 && self.tokens == 0 {
            // First use: a full bucket.
            self.tokens = rate;
            self.last = now_ms;
        }
        if self.tokens == 0 {
            return false;
        }
        self.tokens -= 1;
        true
    }
}

/// Turn the TCP segment in `skb` (tuple `t`) into a RST back to its sender and steal it for
/// output; the segment counts as dropped with [`DropReason::StrayRst`]. `Err` when no RST may
/// be sent (a RST itself, a non-unicast source, no route): the caller decides.
pub(crate) fn send(skb: &mut Skb<'_>, t: &Tuple, routing: &dyn Routing) -> Result<Verdict, ()> {
    let n = skb.network_bytes();
    let Some(seg) = n.get(t.l4..t.ip_len) else { return Err(()) };
    if seg.len() < 20 {
        return Err(());
    }
    let flags = seg[13];
    if flags & RST != 0 {
        return Err(());
    }
    let seq = u32::from_be_bytes([seg[4], seg[5], seg[6], seg[7]]);
    let ack = u32::from_be_bytes([seg[8], seg[9], seg[10], seg[11]]);
    let data = seg.len().saturating_sub((seg[12] >> 4) as usize * 4) as u32;
    let (r_seq, r_ack, r_flags) = if flags & ACK != 0 {
        (ack, 0, RST)
    } else {
        let len = data + (flags & SYN != 0) as u32 + (flags & FIN != 0) as u32;
        (0, seq.wrapping_add(len), RST | ACK)
    };
    let unicast = match t.saddr {
        IpAddr::V4(a) => !(a.is_multicast() || a.is_broadcast() || a.is_unspecified()),
        IpAddr::V6(a) => !(a.is_multicast() || a.is_unspecified()),
    };
    if !unicast {
        return Err(());
    }
    let rt = routing.route(&t.saddr).ok_or(())?;
    let ip_hdr = match skb.family {
        Family::Ipv4 => 20,
        Family::Ipv6 => 40,
        Family::Arp => return Err(()),
    };
    let net = skb.network;
    if skb.frame.set_len(net + ip_hdr + 20).is_err() {
        return Err(());
    }
    let m = skb.network_bytes_mut();
    {
        let tcp = &mut m[ip_hdr..ip_hdr + 20];
        tcp[0..2].copy_from_slice(&t.dport.to_be_bytes());
        tcp[2..4].copy_from_slice(&t.sport.to_be_bytes());
        tcp[4..8].copy_from_slice(&r_seq.to_be_bytes());
        tcp[8..12].copy_from_slice(&r_ack.to_be_bytes());
        tcp[12] = 5 << 4;
        tcp[13] = r_flags;
        tcp[14..20].copy_from_slice(&[0; 6]); // window, checksum, urgent pointer
    }
    match (t.saddr, t.daddr) {
        (IpAddr::V4(client), IpAddr::V4(vip)) => write_v4(m, vip, client),
        (IpAddr::V6(client), IpAddr::V6(vip)) => write_v6(m, vip, client),
        _ => return Err(()),
    }
    let c = checksum::transport(&t.daddr, &t.saddr, wire::ip::protocol::TCP, &m[ip_hdr..ip_hdr + 20]);
    m[ip_hdr + 16..ip_hdr + 18].copy_from_slice(&c.to_be_bytes());
    skb.drop_reason = Some(DropReason::StrayRst);
    skb.route = Route { kind: RouteKind::Forward, out_if: rt.out_if, next_hop: Some(rt.next_hop), mtu: rt.mtu };
    skb.ipvs_property = true;
    skb.output = Output::LocalOut;
    skb.hash = 0;
    Ok(Verdict::Stolen)
}

fn write_v4(m: &mut [u8], src: Ipv4Addr, dst: Ipv4Addr) {
    m[0] = 0x45;
    m[1] = 0;
    m[2..4].copy_from_slice(&40u16.to_be_bytes());
    m[4..6].copy_from_slice(&[0, 0]);
    m[6..8].copy_from_slice(&0x4000u16.to_be_bytes()); // DF
    m[8] = 64;
    m[9] = wire::ip::protocol::TCP;
    m[10..12].copy_from_slice(&[0, 0]);
    m[12..16].copy_from_slice(&src.octets());
    m[16..20].copy_from_slice(&dst.octets());
    let c = checksum::checksum(&m[..20]);
    m[10..12].copy_from_slice(&c.to_be_bytes());
}

fn write_v6(m: &mut [u8], src: Ipv6Addr, dst: Ipv6Addr) {
    m[..4].copy_from_slice(&[0x60, 0, 0, 0]);
    m[4..6].copy_from_slice(&20u16.to_be_bytes());
    m[6] = wire::ip::protocol::TCP;
    m[7] = 64;
    m[8..24].copy_from_slice(&src.octets());
    m[24..40].copy_from_slice(&dst.octets());
}

#[cfg(test)]
mod tests {
    use super::RstBucket;

    #[test]
    fn the_bucket_holds_one_second_and_refills_with_time() {
        let mut b = RstBucket::default();
        let sent = (0..50).filter(|_| b.take(1_000, 10)).count();
        assert_eq!(sent, 10);
        assert!(!b.take(1_050, 10), "half a token is no token");
        assert!(b.take(1_100, 10));
        assert!(!b.take(1_100, 10));
        // A long pause refills to the capacity, not beyond.
        assert_eq!((0..50).filter(|_| b.take(60_000, 10)).count(), 10);
    }
}
