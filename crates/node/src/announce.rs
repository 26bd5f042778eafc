//! Announcements of a VIP this director has just taken over (VRRP follow-up): a gratuitous ARP
//! reply for IPv4 and an unsolicited neighbour advertisement for IPv6, so that the segment's
//! neighbour caches point the VIP at this director's MAC at once instead of after their entry
//! times out. Built once per takeover by the control plane, never on the packet path.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use wire::{MacAddr, checksum};

/// A gratuitous ARP reply: "`vip` is at `mac`", sender and target address both `vip`,
/// broadcast. Linux updates an existing neighbour entry from it (`arp_accept` only governs
/// creating new ones), which is all a takeover needs.
pub fn gratuitous_arp(mac: MacAddr, vip: Ipv4Addr) -> Vec<u8> {
    let mut f = vec![0u8; 42];
    {
        let mut eth = wire::EthernetFrame::new_unchecked(&mut f[..]);
        eth.set_dst_addr(MacAddr::BROADCAST);
        eth.set_src_addr(mac);
        eth.set_ethertype(wire::ethernet::ethertype::ARP);
    }
    let mut a = wire::ArpPacket::new_unchecked(&mut f[14..]);
    a.fill_fixed();
    a.set_operation(wire::arp::operation::REPLY);
    a.set_sender_hw(mac);
    a.set_sender_ip(vip);
    a.set_target_hw(MacAddr::BROADCAST);
    a.set_target_ip(vip);
    f
}

/// An unsolicited neighbour advertisement (RFC 4861 §7.2.6) for `vip` to all nodes
/// (ff02::1): Override set, Solicited clear, with the target link-layer address option.
pub fn unsolicited_na(mac: MacAddr, vip: Ipv6Addr) -> Vec<u8> {
    let all_nodes = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
    let mut f = Vec::with_capacity(14 + 40 + 32);
    f.extend_from_slice(&[0x33, 0x33, 0, 0, 0, 1]);
    f.extend_from_slice(&mac.0);
    f.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0]);
    f.extend_from_slice(&32u16.to_be_bytes());
    f.extend_from_slice(&[58, 255]);
    f.extend_from_slice(&vip.octets());
    f.extend_from_slice(&all_nodes.octets());
    // type 136, code 0, checksum, flags R=0 S=0 O=1, target, option 2 (target lladdr).
    let mut icmp = vec![136, 0, 0, 0, 0x20, 0, 0, 0];
    icmp.extend_from_slice(&vip.octets());
    icmp.extend_from_slice(&[2, 1]);
    icmp.extend_from_slice(&mac.0);
    let c = checksum::transport(&IpAddr::V6(vip), &IpAddr::V6(all_nodes), 58, &icmp);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&icmp);
    f
}

/// The announcement of `vip` from `mac`.
pub fn frame(mac: MacAddr, vip: IpAddr) -> Vec<u8> {
    match vip {
        IpAddr::V4(v) => gratuitous_arp(mac, v),
        IpAddr::V6(v) => unsolicited_na(mac, v),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{NetSlice, SlicedPacket};

    const MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 7]);

    #[test]
    fn gratuitous_arp_says_vip_is_at_mac() {
        let f = gratuitous_arp(MAC, Ipv4Addr::new(10, 0, 0, 100));
        assert_eq!(&f[..14], &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 2, 0, 0, 0, 0, 7, 0x08, 0x06]);
        // htype 1, ptype IPv4, 6/4, op 2, sha, spa, tha, tpa: byte for byte (RFC 826).
        let arp =
            [[0, 1, 8, 0, 6, 4, 0, 2].as_slice(), &MAC.0, &[10, 0, 0, 100], &[0xff; 6], &[10, 0, 0, 100]].concat();
        assert_eq!(&f[14..], &arp[..]);
        assert!(wire::ArpPacket::new_checked(&f[14..]).unwrap().is_gratuitous());
    }

    #[test]
    fn unsolicited_na_to_all_nodes_with_override() {
        let vip: Ipv6Addr = "2001:db8::100".parse().unwrap();
        let f = unsolicited_na(MAC, vip);
        let p = SlicedPacket::from_ethernet(&f).unwrap();
        let Some(NetSlice::Ipv6(ip)) = &p.net else { panic!("not IPv6") };
        let h = ip.header();
        assert_eq!((h.source_addr(), h.destination_addr(), h.hop_limit()), (vip, "ff02::1".parse().unwrap(), 255));
        let icmp = &f[54..];
        assert_eq!((icmp[0], icmp[4] & 0xe0), (136, 0x20), "NA, Override only");
        assert_eq!(&icmp[8..24], &vip.octets());
        assert_eq!(&icmp[24..32], &[2, 1, 2, 0, 0, 0, 0, 7]);
        assert_eq!(checksum::transport(&IpAddr::V6(vip), &h.destination_addr().into(), 58, icmp), 0);
    }
}
