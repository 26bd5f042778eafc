//! The transport tuple IPVS needs from a packet, read once per hook.

use std::net::{IpAddr, Ipv4Addr};

use netfilter::{DropReason, Family, Skb};
use wire::ip::protocol;

/// Addresses, ports and offsets of a TCP/UDP packet.
#[derive(Clone, Copy, Debug)]
pub struct Tuple {
    pub protocol: u8,
    pub saddr: IpAddr,
    pub daddr: IpAddr,
    pub sport: u16,
    pub dport: u16,
    /// The state machine's event: TCP flag byte, SCTP event (`proto::event_of`), 0 for UDP.
    pub tcp_flags: u8,
    /// Offset of the L4 header from the network header.
    pub l4: usize,
    /// IP packet length (what the byte counters count, §17).
    pub ip_len: usize,
}

pub enum Parsed {
    Tuple(Tuple),
    /// ICMP (v4 or v6): the ICMP handler decides.
    Icmp,
    /// A protocol IPVS does not balance: left to the stack.
    Other,
    Bad(DropReason),
}

/// Read the tuple of an IPv4 or IPv6 packet whose IP header the node has already validated
/// (IPv6: no extension headers reach the hooks).
#[inline]
pub fn parse(skb: &Skb<'_>) -> Parsed {
    let net = skb.network_bytes();
    let (proto, l4, ip_len, saddr, daddr) = match skb.family {
        Family::Ipv4 => {
            // The node validated the header (as `ip_rcv` does); only what is read is checked.
            let Some(h) = net.get(..20) else { return Parsed::Bad(DropReason::BadIpHeader) };
            let proto = h[9];
            if proto == protocol::ICMP {
                return Parsed::Icmp;
            }
            if u16::from_be_bytes([h[6], h[7]]) & 0x3fff != 0 {
                return Parsed::Bad(DropReason::Fragment);
            }
            (
                proto,
                (h[0] & 0xf) as usize * 4,
                u16::from_be_bytes([h[2], h[3]]) as usize,
                IpAddr::V4(Ipv4Addr::new(h[12], h[13], h[14], h[15])),
                IpAddr::V4(Ipv4Addr::new(h[16], h[17], h[18], h[19])),
            )
        }
        Family::Ipv6 => {
            let Ok(ip) = wire::Ipv6Packet::new_checked(net) else {
                return Parsed::Bad(DropReason::BadIpHeader);
            };
            if ip.next_header() == protocol::ICMPV6 {
                return Parsed::Icmp;
            }
            let len = wire::ipv6::HEADER_LEN + ip.payload_len() as usize;
            (ip.next_header(), wire::ipv6::HEADER_LEN, len, IpAddr::V6(ip.src_addr()), IpAddr::V6(ip.dst_addr()))
        }
        Family::Arp => return Parsed::Other,
    };
    match proto {
        protocol::TCP | protocol::UDP | protocol::SCTP => {}
        _ => return Parsed::Other,
    }
    let Some(seg) = net.get(l4..ip_len) else { return Parsed::Bad(DropReason::BadL4Header) };
    let (sport, dport, flags) = if proto == protocol::TCP {
        if seg.len() < wire::tcp::HEADER_LEN || ((seg[12] >> 4) as usize) < 5 || (seg[12] >> 4) as usize * 4 > seg.len()
        {
            return Parsed::Bad(DropReason::BadL4Header);
        }
        (u16::from_be_bytes([seg[0], seg[1]]), u16::from_be_bytes([seg[2], seg[3]]), seg[13])
    } else if proto == protocol::SCTP {
        // Common header (12 bytes); the first chunk decides the event.
        if seg.len() < 12 {
            return Parsed::Bad(DropReason::BadL4Header);
        }
        (u16::from_be_bytes([seg[0], seg[1]]), u16::from_be_bytes([seg[2], seg[3]]), crate::proto::event_of(proto, seg))
    } else {
        if seg.len() < wire::udp::HEADER_LEN {
            return Parsed::Bad(DropReason::BadL4Header);
        }
        let ulen = u16::from_be_bytes([seg[4], seg[5]]) as usize;
        if ulen < 8 || ulen > seg.len() {
            return Parsed::Bad(DropReason::BadL4Header);
        }
        (u16::from_be_bytes([seg[0], seg[1]]), u16::from_be_bytes([seg[2], seg[3]]), 0)
    };
    Parsed::Tuple(Tuple { protocol: proto, saddr, daddr, sport, dport, tcp_flags: flags, l4, ip_len })
}
