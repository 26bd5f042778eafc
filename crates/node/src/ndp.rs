//! IPv6 neighbour discovery (RFC 4861), the node's ARP for IPv6: answer solicitations for VIPs
//! and node addresses, learn neighbours from solicitations and advertisements, and build
//! solicitations for next hops the node does not know yet.

use std::net::{IpAddr, Ipv6Addr};

use netfilter::Skb;
use wire::{MacAddr, checksum};

use crate::path::{Action, Node};
use crate::worker::WorkerCtx;

const NS: u8 = 135;
const NA: u8 = 136;
const OPT_SLLA: u8 = 1;
const OPT_TLLA: u8 = 2;
/// IPv6 header + NS/NA (24) + one link-layer address option (8).
const NDP_LEN: usize = 40 + 24 + 8;

fn addr(b: &[u8]) -> Ipv6Addr {
    let mut a = [0u8; 16];
    a.copy_from_slice(&b[..16]);
    a.into()
}

/// The link-layer address option of a given type among NDP options.
fn lladdr(mut opts: &[u8], kind: u8) -> Option<MacAddr> {
    while opts.len() >= 8 {
        let len = opts[1] as usize * 8;
        if len == 0 || len > opts.len() {
            return None;
        }
        if opts[0] == kind && len >= 8 {
            let mut m = [0u8; 6];
            m.copy_from_slice(&opts[2..8]);
            return Some(MacAddr(m));
        }
        opts = &opts[len..];
    }
    None
}

impl Node {
    pub(crate) fn ndp(&self, cx: &mut WorkerCtx, skb: &mut Skb<'_>, our_mac: MacAddr) -> Action {
        let n = skb.network_bytes();
        let total = n.len();
        if total < 40 + 24 || n[7] != 255 {
            return Action::Drop(netfilter::DropReason::BadL4Header);
        }
        let (src, dst) = (addr(&n[8..]), addr(&n[24..]));
        if checksum::transport(&IpAddr::V6(src), &IpAddr::V6(dst), 58, &n[40..]) != 0 {
            return Action::Drop(netfilter::DropReason::BadChecksum);
        }
        let typ = n[40];
        let target = addr(&n[48..]);
        let opts = &n[64..];
        if typ == NA {
            // A solicited advertisement (an answer to us) may add an entry; any may refresh one.
            let solicited = n[44] & 0x40 != 0 && !dst.is_multicast();
            if let Some(mac) = lladdr(opts, OPT_TLLA) {
                self.learn(IpAddr::V6(target), mac, solicited);
            }
            return Action::Local;
        }
        debug_assert_eq!(typ, NS);
        let requester = lladdr(opts, OPT_SLLA);
        let t = IpAddr::V6(target);
        let ours = cx.ipvs.services().is_vip(&t)
            || cx.ipvs.fwmark_rules().iter().any(|r| r.covers(&t))
            || cx.net.interface(skb.in_if).is_some_and(|i| i.addrs.iter().any(|(a, _)| *a == t));
        if let Some(mac) = requester
            && !src.is_unspecified()
        {
            // New entries only from solicitations for our addresses.
            self.learn(IpAddr::V6(src), mac, ours);
        }
        if !ours {
            return Action::Local;
        }
        let eth_src = wire::EthernetFrame::new_unchecked(skb.frame.data()).src_addr();
        let to_mac = requester.unwrap_or(eth_src);
        let solicited = !src.is_unspecified();
        let to_ip = if solicited { src } else { Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1) };
        if skb.frame.set_len(skb.network + NDP_LEN).is_err() {
            return Action::Drop(netfilter::DropReason::HeadroomExhausted);
        }
        let m = skb.network_bytes_mut();
        m[..4].copy_from_slice(&[0x60, 0, 0, 0]);
        m[4..6].copy_from_slice(&32u16.to_be_bytes());
        m[6] = 58;
        m[7] = 255;
        m[8..24].copy_from_slice(&target.octets());
        m[24..40].copy_from_slice(&to_ip.octets());
        let icmp = &mut m[40..NDP_LEN];
        icmp[0] = NA;
        icmp[1] = 0;
        icmp[2..4].copy_from_slice(&[0, 0]);
        // Solicited (if asked by a unicast source) and Override.
        icmp[4..8].copy_from_slice(&[if solicited { 0x60 } else { 0x20 }, 0, 0, 0]);
        icmp[8..24].copy_from_slice(&target.octets());
        icmp[24] = OPT_TLLA;
        icmp[25] = 1;
        icmp[26..32].copy_from_slice(&our_mac.0);
        let c = checksum::transport(&IpAddr::V6(target), &IpAddr::V6(to_ip), 58, icmp);
        icmp[2..4].copy_from_slice(&c.to_be_bytes());
        let mut eth = wire::EthernetFrame::new_unchecked(skb.frame.data_mut());
        eth.set_dst_addr(to_mac);
        eth.set_src_addr(our_mac);
        self.counters.arp_reply(cx.id);
        Action::Tx(skb.in_if)
    }
}

/// A neighbour solicitation for `target` from `src` (an address of the sending interface),
/// to the solicited-node multicast group.
pub fn solicitation(src_mac: MacAddr, src: Ipv6Addr, target: Ipv6Addr) -> Vec<u8> {
    let t = target.octets();
    let group = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 1, 0xff00 | t[13] as u16, u16::from_be_bytes([t[14], t[15]]));
    let mut f = Vec::with_capacity(14 + NDP_LEN);
    f.extend_from_slice(&[0x33, 0x33, 0xff, t[13], t[14], t[15]]);
    f.extend_from_slice(&src_mac.0);
    f.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0]);
    f.extend_from_slice(&32u16.to_be_bytes());
    f.extend_from_slice(&[58, 255]);
    f.extend_from_slice(&src.octets());
    f.extend_from_slice(&group.octets());
    let mut icmp = vec![NS, 0, 0, 0, 0, 0, 0, 0];
    icmp.extend_from_slice(&t);
    icmp.extend_from_slice(&[OPT_SLLA, 1]);
    icmp.extend_from_slice(&src_mac.0);
    let c = checksum::transport(&IpAddr::V6(src), &IpAddr::V6(group), 58, &icmp);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&icmp);
    f
}

/// An ARP request for `target` from `src` (an address of the sending interface).
pub fn arp_request(src_mac: MacAddr, src: std::net::Ipv4Addr, target: std::net::Ipv4Addr) -> Vec<u8> {
    let mut f = vec![0u8; 42];
    {
        let mut eth = wire::EthernetFrame::new_unchecked(&mut f[..]);
        eth.set_dst_addr(MacAddr::BROADCAST);
        eth.set_src_addr(src_mac);
        eth.set_ethertype(wire::ethernet::ethertype::ARP);
    }
    wire::ArpPacket::new_unchecked(&mut f[14..]).fill_request(src_mac, src, target);
    f
}

/// The interface address to ask from: one in the target's subnet, else the first of the
/// target's family.
fn source_for(ifc: &crate::Interface, target: &IpAddr) -> Option<IpAddr> {
    let same_family = || ifc.addrs.iter().filter(|(a, _)| a.is_ipv4() == target.is_ipv4());
    same_family()
        .find(|(a, p)| crate::net::prefix_match(target, a, *p))
        .or_else(|| same_family().next())
        .map(|(a, _)| *a)
}

/// The frame that resolves `next_hop` on interface `out_if` (ARP or a neighbour
/// solicitation). `None` if the interface has no address of that family.
pub fn resolution_frame(net: &crate::NetState, out_if: u32, next_hop: IpAddr) -> Option<Vec<u8>> {
    let ifc = net.interface(out_if)?;
    match (next_hop, source_for(ifc, &next_hop)?) {
        (IpAddr::V4(t), IpAddr::V4(src)) => Some(arp_request(ifc.mac, src, t)),
        (IpAddr::V6(t), IpAddr::V6(src)) => Some(solicitation(ifc.mac, src, t)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Interface, NetState};
    use std::net::Ipv4Addr;

    fn net() -> NetState {
        let ifc = Interface {
            index: 2,
            name: "int".into(),
            mac: MacAddr([2, 0, 0, 0, 0, 2]),
            mtu: 1500,
            addrs: vec![
                ("10.1.0.1".parse().unwrap(), 16),
                ("192.168.1.1".parse().unwrap(), 24),
                ("2001:db8:2::1".parse().unwrap(), 64),
            ],
        };
        NetState::new(vec![ifc], vec![], Default::default())
    }

    #[test]
    fn arp_request_from_the_targets_subnet() {
        let f = resolution_frame(&net(), 2, "192.168.1.11".parse().unwrap()).unwrap();
        assert_eq!(&f[..6], &[0xff; 6]);
        assert_eq!(&f[12..14], &[0x08, 0x06]);
        let a = wire::ArpPacket::new_checked(&f[14..]).unwrap();
        assert_eq!(a.operation(), wire::arp::operation::REQUEST);
        assert_eq!(a.sender_ip(), Ipv4Addr::new(192, 168, 1, 1));
        assert_eq!(a.target_ip(), Ipv4Addr::new(192, 168, 1, 11));
        // Off-subnet target: the first IPv4 address.
        let f = resolution_frame(&net(), 2, "172.16.0.1".parse().unwrap()).unwrap();
        assert_eq!(wire::ArpPacket::new_checked(&f[14..]).unwrap().sender_ip(), Ipv4Addr::new(10, 1, 0, 1));
        assert!(resolution_frame(&net(), 9, "172.16.0.1".parse().unwrap()).is_none());
    }

    #[test]
    fn solicitation_to_the_solicited_node_group() {
        let t: Ipv6Addr = "2001:db8:2::11".parse().unwrap();
        let f = resolution_frame(&net(), 2, IpAddr::V6(t)).unwrap();
        assert_eq!(&f[..6], &[0x33, 0x33, 0xff, 0, 0, 0x11]);
        let ip = wire::Ipv6Packet::new_checked(&f[14..]).unwrap();
        assert_eq!(ip.dst_addr(), "ff02::1:ff00:11".parse::<Ipv6Addr>().unwrap());
        assert_eq!(ip.hop_limit(), 255);
        let icmp = &f[54..];
        assert_eq!(icmp[0], NS);
        assert_eq!(checksum::transport(&IpAddr::V6(ip.src_addr()), &IpAddr::V6(ip.dst_addr()), 58, icmp), 0);
        assert_eq!(&icmp[8..24], &t.octets());
        assert_eq!(lladdr(&icmp[24..], OPT_SLLA), Some(MacAddr([2, 0, 0, 0, 0, 2])));
    }
}
