//! Engine behaviour through the node path: statistics, the table limit, and administration
//! while packets flow.

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use common::*;
use ipvs::{DestConfig, ForwardMethod, ServiceConfig, ServiceKey};
use netfilter::DropReason;
use node::Action;

fn nat_service(lab: &Lab, servers: u8) -> ServiceKey {
    let key = ServiceKey::tcp(IpAddr::V4(VIP), 80);
    lab.ipvs().add_service(ServiceConfig::new(key, "rr")).unwrap();
    for n in 1..=servers {
        lab.ipvs().add_dest(&key, DestConfig::new(rs(n).into(), 8080).method(ForwardMethod::Masq)).unwrap();
    }
    key
}

/// Conns, packets and bytes in and out, per dest, per service and in total (§17). Bytes are
/// IP lengths.
#[test]
fn statistics_count_both_directions() {
    let mut lab = Lab::new();
    let key = nat_service(&lab, 1);
    let syn = Pkt::tcp(CLIENT, 40000, VIP, 80, SYN);
    let data = Pkt::tcp(CLIENT, 40000, VIP, 80, ACK | PSH).payload(&[7u8; 100]);
    let reply = Pkt::tcp(rs(1), 8080, CLIENT, 40000, ACK).macs(rs_mac(1), INT_MAC);
    assert_eq!(lab.send(EXT, &syn.build()).0, Action::Tx(INT));
    assert_eq!(lab.send(EXT, &data.build()).0, Action::Tx(INT));
    assert_eq!(lab.send(INT, &reply.build()).0, Action::Tx(EXT));
    let svc = lab.ipvs().services().get(&key).unwrap().clone();
    let d = svc.dests[0].stats.read();
    let s = svc.stats.read();
    let t = lab.ipvs().total.read();
    for c in [d, s, t] {
        assert_eq!(c.conns, 1);
        assert_eq!(c.inpkts, 2);
        assert_eq!(c.inbytes, 40 + 140);
        assert_eq!(c.outpkts, 1);
        assert_eq!(c.outbytes, 40);
    }
    // -Z zeroes everything.
    lab.ipvs().zero(None).unwrap();
    assert_eq!(svc.stats.read(), ipvs::Counters::default());
    assert_eq!(lab.ipvs().total.read(), ipvs::Counters::default());
}

/// The configured table limit is enforced: SYNs beyond it are dropped and counted, existing
/// connections keep working, and room comes back when entries expire.
#[test]
fn table_limit_is_enforced() {
    let mut lab = Lab::with_max_conns(8);
    nat_service(&lab, 2);
    for p in 0..8 {
        assert_eq!(lab.send(EXT, &Pkt::tcp(CLIENT, 41000 + p, VIP, 80, SYN).build()).0, Action::Tx(INT));
    }
    let (a, _) = lab.send(EXT, &Pkt::tcp(CLIENT, 41100, VIP, 80, SYN).build());
    assert_eq!(a, Action::Drop(DropReason::ConnTableFull));
    assert_eq!(lab.node.counters.read().drops_of(DropReason::ConnTableFull), 1);
    assert_eq!(lab.send(EXT, &Pkt::tcp(CLIENT, 41003, VIP, 80, ACK).build()).0, Action::Tx(INT));
    lab.advance(61); // SYN_RECV lasts 60 s
    assert_eq!(lab.cx.ipvs.expire_all(), 7, "the 7 idle SYN_RECV entries expire, the ESTABLISHED one stays");
    assert_eq!(lab.send(EXT, &Pkt::tcp(CLIENT, 41100, VIP, 80, SYN).build()).0, Action::Tx(INT));
}

/// Services and dests are added, edited and deleted from another thread while a worker keeps
/// forwarding: established connections keep their real server, nothing panics, and new
/// connections only go to dests that exist at the time.
#[test]
fn administration_while_packets_flow() {
    let mut lab = Lab::new();
    let key = nat_service(&lab, 3);
    // 30 established connections spread over the three servers.
    let mut owner = Vec::new();
    for p in 0..30u16 {
        let (a, out) = lab.send(EXT, &Pkt::tcp(CLIENT, 42000 + p, VIP, 80, SYN).build());
        assert_eq!(a, Action::Tx(INT));
        owner.push(Ipv4Addr::new(out[30], out[31], out[32], out[33]));
        lab.send(EXT, &Pkt::tcp(CLIENT, 42000 + p, VIP, 80, ACK).build());
    }
    let ipvs = lab.node.clone();
    let stop = Arc::new(AtomicBool::new(false));
    let st = stop.clone();
    let admin = std::thread::spawn(move || {
        let ipvs = &ipvs.ipvs;
        let mut rounds = 0;
        while !st.load(Ordering::Relaxed) || rounds < 50 {
            let other = ServiceKey::udp(IpAddr::V4(VIP), 53);
            ipvs.add_service(ServiceConfig::new(other, "wlc")).unwrap();
            ipvs.add_dest(&key, DestConfig::new(rs(4).into(), 8080).method(ForwardMethod::Masq)).unwrap();
            ipvs.edit_dest(&key, DestConfig::new(rs(4).into(), 8080).method(ForwardMethod::Masq).weight(3)).unwrap();
            ipvs.delete_dest(&key, &rs(4).into(), 8080).unwrap();
            ipvs.delete_service(&other).unwrap();
            rounds += 1;
        }
        rounds
    });
    let mut new_to = std::collections::HashSet::new();
    for round in 0..200u16 {
        for (p, rip) in owner.iter().enumerate() {
            let (a, out) = lab.send(EXT, &Pkt::tcp(CLIENT, 42000 + p as u16, VIP, 80, ACK | PSH).payload(b"x").build());
            assert_eq!(a, Action::Tx(INT));
            assert_eq!(Ipv4Addr::new(out[30], out[31], out[32], out[33]), *rip, "an established flow moved");
        }
        let (a, out) = lab.send(EXT, &Pkt::tcp(CLIENT, 50000 + round, VIP, 80, SYN).build());
        assert_eq!(a, Action::Tx(INT));
        new_to.insert(out[33]);
    }
    stop.store(true, Ordering::Relaxed);
    assert!(admin.join().unwrap() >= 50);
    assert!(new_to.iter().all(|last| (11..=14).contains(last)), "{new_to:?}");
}

/// A whole-table replacement (configuration reload) is atomic and keeps what stays: the
/// connections of kept real servers continue, counters survive, a bad table changes nothing.
#[test]
fn replace_table_keeps_what_stays() {
    let mut lab = Lab::new();
    let key = nat_service(&lab, 2);
    let mut owner = Vec::new();
    for p in 0..6u16 {
        let (_, out) = lab.send(EXT, &Pkt::tcp(CLIENT, 43000 + p, VIP, 80, SYN).build());
        owner.push(out[33]);
    }
    let svc = lab.ipvs().services().get(&key).unwrap().clone();
    let conns_before = svc.stats.read().conns;
    // New table: rs(1) kept with another weight, rs(2) dropped, rs(3) added; a UDP service too.
    let udp = ServiceKey::udp(IpAddr::V4(VIP), 53);
    let table = vec![
        (
            ServiceConfig::new(key, "wlc"),
            vec![
                DestConfig::new(rs(1).into(), 8080).method(ForwardMethod::Masq).weight(5),
                DestConfig::new(rs(3).into(), 8080).method(ForwardMethod::Masq),
            ],
        ),
        (ServiceConfig::new(udp, "rr"), vec![DestConfig::new(rs(2).into(), 53).method(ForwardMethod::Masq)]),
    ];
    // A bad table (unknown scheduler) is refused and nothing changes.
    let mut bad = table.clone();
    bad[1].0.scheduler = "nope".into();
    assert!(lab.ipvs().replace_table(bad).is_err());
    assert_eq!(lab.ipvs().services().len(), 1);
    lab.ipvs().replace_table(table).unwrap();
    lab.advance(0);
    let svc = lab.ipvs().services().get(&key).unwrap().clone();
    assert_eq!(svc.config.scheduler, "wlc");
    assert_eq!(svc.stats.read().conns, conns_before, "counters survive the reload");
    assert_eq!(svc.dests.len(), 2);
    assert_eq!(svc.dests[0].addr, IpAddr::V4(rs(3)), "newest first");
    assert_eq!(svc.dests[1].weight(), 5);
    for (p, rip) in owner.iter().enumerate() {
        let (a, out) = lab.send(EXT, &Pkt::tcp(CLIENT, 43000 + p as u16, VIP, 80, ACK).build());
        if *rip == 11 {
            assert_eq!(a, Action::Tx(INT), "a connection through a kept server continues");
            assert_eq!(out[33], 11);
        } else {
            assert_eq!(a, Action::Drop(DropReason::NoDestConn), "the removed server's connections stop");
        }
    }
    assert!(lab.ipvs().services().get(&udp).is_some());
}
