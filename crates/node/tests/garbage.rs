//! Bad input never panics or stalls the path: random frames and mutations of valid ones (every
//! byte position, truncations, bad lengths, options, fragments) go through the whole node with
//! IPVS services of every kind, and every frame ends in exactly one counted outcome.

mod common;

use std::net::IpAddr;

use common::*;
use ipvs::{DestConfig, ForwardMethod, ServiceConfig, ServiceKey, TunnelType};
use node::Action;

fn lab() -> Lab {
    let lab = Lab::new();
    let v4 = IpAddr::V4(VIP);
    let v6 = IpAddr::V6(VIP6);
    let svcs = [
        (ServiceKey::tcp(v4, 80), ForwardMethod::Masq, rs(1).into()),
        (ServiceKey::udp(v4, 53), ForwardMethod::Route, rs(2).into()),
        (ServiceKey::tcp(v4, 443), ForwardMethod::Tunnel, rs(3).into()),
        (ServiceKey::Addr { protocol: 132, addr: v4, port: 3868 }, ForwardMethod::Masq, rs(1).into()),
        (ServiceKey::tcp(v6, 80), ForwardMethod::Masq, rs6(1).into()),
        (ServiceKey::udp(v6, 53), ForwardMethod::Tunnel, rs(4).into()),
    ];
    for (k, m, a) in svcs {
        lab.ipvs().add_service(ServiceConfig::new(k, "rr")).unwrap();
        let mut d = DestConfig::new(a, 0).method(m);
        if k == ServiceKey::tcp(v4, 443) {
            d.tun_type = TunnelType::Gre;
        }
        lab.ipvs().add_dest(&k, d).unwrap();
    }
    lab
}

fn seeds() -> Vec<Vec<u8>> {
    let mut v = vec![
        Pkt::tcp(CLIENT, 40000, VIP, 80, SYN).build(),
        Pkt::tcp(CLIENT, 40000, VIP, 80, ACK | PSH).payload(b"data").build(),
        Pkt::udp(CLIENT, 5000, VIP, 53, b"q").build(),
        Pkt::tcp(CLIENT, 40001, VIP, 443, SYN).build(),
        Pkt::tcp(rs(1), 80, CLIENT, 40000, ACK).macs(rs_mac(1), INT_MAC).build(),
    ];
    // An IPv4 packet with options and a fragment.
    let mut opt = Pkt::tcp(CLIENT, 40002, VIP, 80, SYN).build();
    opt[14] = 0x46;
    opt.splice(34..34, [1, 1, 1, 0]);
    v.push(opt);
    let mut frag = Pkt::udp(CLIENT, 5001, VIP, 53, b"frag").build();
    frag[14 + 6] = 0x20;
    v.push(frag);
    v
}

#[test]
fn random_and_mutated_frames_are_survived_and_counted() {
    let mut lab = lab();
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let mut sent = 0u64;
    let mut outcomes = [0u64; 3];
    let mut send = |lab: &mut Lab, f: &[u8], in_if: u32| {
        if f.len() > 1600 {
            return;
        }
        let (a, _) = lab.send(in_if, f);
        sent += 1;
        outcomes[match a {
            Action::Drop(_) | Action::Held => 0,
            Action::Tx(_) => 1,
            Action::Local => 2,
        }] += 1;
    };
    // Every single-byte mutation of every seed, at several values.
    for s in seeds() {
        for i in 0..s.len() {
            for v in [0x00u8, 0xff, 0x45, 0x60, 0x01] {
                let mut f = s.clone();
                f[i] = v;
                send(&mut lab, &f, if i % 2 == 0 { EXT } else { INT });
            }
        }
        // Every truncation.
        for n in 0..s.len() {
            send(&mut lab, &s[..n], EXT);
        }
    }
    // Random frames with a valid Ethernet header and IPv4/IPv6/ARP ethertype, and pure noise.
    for i in 0..20_000 {
        let len = (rng.next() % 200) as usize;
        let mut f: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        if f.len() >= 14 && i % 4 != 0 {
            f[..6].copy_from_slice(&EXT_MAC);
            let et: [u8; 2] = [[0x08, 0x00], [0x86, 0xdd], [0x08, 0x06]][i % 3];
            f[12..14].copy_from_slice(&et);
            if f.len() > 14 {
                f[14] = if et == [0x86, 0xdd] { 0x60 } else { 0x45 };
            }
        }
        send(&mut lab, &f, if i % 2 == 0 { EXT } else { INT });
        if i % 1000 == 0 {
            lab.advance(30);
            lab.cx.ipvs.expire(10_000);
        }
    }
    let c = lab.node.counters.read();
    assert_eq!(c.rx, sent);
    assert_eq!(c.tx, outcomes[1]);
    assert_eq!(c.local, outcomes[2]);
    // Every dropped frame is counted by reason (frames answered with an ICMP error count as a
    // drop of the original and a transmission).
    assert!(c.total_drops() >= outcomes[0], "{c:?}");
    assert!(outcomes[0] > 0 && outcomes[1] > 0);
    for r in [netfilter::DropReason::Truncated, netfilter::DropReason::BadIpChecksum, netfilter::DropReason::NotForUs] {
        assert!(c.drops_of(r) > 0, "{r:?} never counted");
    }
    // And the director still forwards a good packet afterwards.
    let (a, _) = lab.send(EXT, &Pkt::tcp(CLIENT, 41000, VIP, 80, SYN).build());
    assert_eq!(a, Action::Tx(INT));
}
