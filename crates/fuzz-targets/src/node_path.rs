//! Any frame, on either leg, through the whole node path with IPVS services of every kind
//! (TCP NAT, UDP DR, TCP TUN/GUE, SCTP NAT, IPv6 TCP NAT): nothing may panic, and every frame
//! ends in exactly one outcome. Input: one control byte (bit 0: arrives on the internal leg,
//! bit 1: checksum left partial by the sender, bit 2: `syn_proxy` on), then the Ethernet frame.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::{Arc, OnceLock};

use ipvs::{DestConfig, ForwardMethod, ServiceConfig, ServiceKey, TunnelType};
use netfilter::{CsumState, Family, Skb};
use node::{Interface, NetState, Node, RouteEntry};
use wire::{Frame, MacAddr};

/// The director the frames meet: external leg 198.51.100.1/24 (2001:db8:1::1/64), internal
/// leg 192.168.1.1/24 (2001:db8:2::1/64), VIP 10.0.0.100 and 2001:db8:100::100.
pub fn node() -> Arc<Node> {
    let ifs = vec![
        Interface {
            index: 1,
            name: "ext".into(),
            mac: MacAddr([2, 0, 0, 0, 0, 1]),
            mtu: 1500,
            addrs: vec![("198.51.100.1".parse().unwrap(), 24), ("2001:db8:1::1".parse().unwrap(), 64)],
        },
        Interface {
            index: 2,
            name: "int".into(),
            mac: MacAddr([2, 0, 0, 0, 0, 2]),
            mtu: 1500,
            addrs: vec![("192.168.1.1".parse().unwrap(), 24), ("2001:db8:2::1".parse().unwrap(), 64)],
        },
    ];
    let routes = vec![RouteEntry {
        dst: Ipv4Addr::UNSPECIFIED.into(),
        prefix: 0,
        gateway: Some("198.51.100.254".parse().unwrap()),
        out_if: 1,
        src: None,
        mtu: None,
    }];
    let mut neigh: HashMap<IpAddr, MacAddr> = HashMap::new();
    for n in 1..=4u8 {
        neigh.insert(IpAddr::V4(Ipv4Addr::new(192, 168, 1, 10 + n)), MacAddr([2, 0, 0, 0, 1, n]));
    }
    neigh.insert("198.51.100.254".parse().unwrap(), MacAddr([2, 0, 0, 0, 0, 0xfe]));
    let net = NetState::new(ifs, routes, neigh.into_iter().collect());
    let ipvs = Arc::new(ipvs::Ipvs::new(4096));
    let vip = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 100));
    let vip6 = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0x100, 0, 0, 0, 0, 0x100));
    for (k, m, d) in [
        (ServiceKey::tcp(vip, 80), ForwardMethod::Masq, IpAddr::V4(Ipv4Addr::new(192, 168, 1, 11))),
        (ServiceKey::udp(vip, 53), ForwardMethod::Route, IpAddr::V4(Ipv4Addr::new(192, 168, 1, 12))),
        (ServiceKey::tcp(vip, 443), ForwardMethod::Tunnel, IpAddr::V4(Ipv4Addr::new(192, 168, 1, 13))),
        (
            ServiceKey::Addr { protocol: 132, addr: vip, port: 3868 },
            ForwardMethod::Masq,
            IpAddr::V4(Ipv4Addr::new(192, 168, 1, 14)),
        ),
        (ServiceKey::tcp(vip6, 80), ForwardMethod::Masq, "2001:db8:2::11".parse().unwrap()),
    ] {
        ipvs.add_service(ServiceConfig::new(k, "rr")).unwrap();
        let mut c = DestConfig::new(d, 0).method(m);
        if m == ForwardMethod::Tunnel {
            c.tun_type = TunnelType::Gue;
            c.tun_port = 6080;
        }
        ipvs.add_dest(&k, c).unwrap();
    }
    Node::new(ipvs, net)
}

pub fn run(data: &[u8]) {
    static NODE: OnceLock<Arc<Node>> = OnceLock::new();
    let node = NODE.get_or_init(node);
    let Some((&ctl, frame)) = data.split_first() else { return };
    let mut cx = node.worker(0);
    let tr = node.begin_batch(&mut cx, 1_000);
    let mut buf = vec![0u8; 256 + frame.len()];
    buf[128..128 + frame.len()].copy_from_slice(frame);
    let Ok(f) = Frame::new(&mut buf, 128, frame.len()) else { return };
    let mut skb = Skb::new(f, 14, Family::Ipv4);
    skb.in_if = if ctl & 1 == 0 { 1 } else { 2 };
    skb.csum = if ctl & 2 == 0 { CsumState::None } else { CsumState::Partial };
    // Bit 2: the SYN proxy answers the TCP service on port 80 (cookies, option rewriting).
    node.ipvs.sysctl.syn_proxy.store(((ctl >> 2) & 1) as u32, std::sync::atomic::Ordering::Relaxed);
    let before = node.counters.read();
    let action = node.process(&tr, &mut cx, &mut skb);
    let after = node.counters.read();
    assert_eq!(after.rx, before.rx + 1);
    let (t, l) = (after.tx - before.tx, after.local - before.local);
    let d = after.total_drops() - before.total_drops();
    // Held for an unresolved neighbour: counted when it leaves or is given up, not now; a
    // reply that replaced the packet (stray RST, SYN cookie, ICMP error) has counted the
    // original's drop reason already, as one sent at once does.
    if matches!(action, node::Action::Held) {
        assert!(t + l == 0 && d <= 1, "held, yet tx {t} local {l} drops {d}");
        return;
    }
    // Sent or delivered (an ICMP error also counts the original as dropped), or dropped.
    assert!((t + l == 1 && d <= 1) || (t + l == 0 && d == 1), "tx {t} local {l} drops {d}");
}
