//! Packets for a next hop whose MAC is not known yet wait in the worker's neighbour queue
//! (`node/src/neighq.rs`), as the kernel queues them on an unresolved neighbour: sent in
//! order once the neighbour answers, dropped and counted when it never does.

mod common;

use std::net::{IpAddr, Ipv4Addr};

use common::*;
use ipvs::{DestConfig, ForwardMethod, ServiceConfig, ServiceKey};
use netfilter::DropReason;
use node::Action;

/// A real server on the internal leg that nobody has resolved yet.
const NEW_RS: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 50);
const NEW_MAC: [u8; 6] = [2, 0, 0, 0, 2, 0x50];

fn service_to(lab: &Lab, rs: Ipv4Addr, method: ForwardMethod) {
    let key = ServiceKey::tcp(IpAddr::V4(VIP), 80);
    lab.ipvs().add_service(ServiceConfig::new(key, "rr")).unwrap();
    let port = if method == ForwardMethod::Masq { 8080 } else { 80 };
    lab.ipvs().add_dest(&key, DestConfig::new(rs.into(), port).method(method)).unwrap();
}

/// The ARP reply of `ip` (`mac`) to the director's internal address.
fn arp_reply(ip: Ipv4Addr, mac: [u8; 6]) -> Vec<u8> {
    let mut f = Vec::with_capacity(42);
    f.extend_from_slice(&INT_MAC);
    f.extend_from_slice(&mac);
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 2]);
    f.extend_from_slice(&mac);
    f.extend_from_slice(&ip.octets());
    f.extend_from_slice(&INT_MAC);
    f.extend_from_slice(&INT_ADDR.octets());
    f
}

fn turn(lab: &mut Lab) -> Vec<(u32, Vec<u8>)> {
    let mut out = Vec::new();
    lab.node.begin_batch(&mut lab.cx, lab.now);
    lab.node.neighbour_turn(&mut lab.cx, lab.now, |i, f| out.push((i, f.to_vec())));
    out
}

#[test]
fn held_packets_leave_in_order_when_the_neighbour_answers() {
    for method in [ForwardMethod::Masq, ForwardMethod::Route] {
        let mut lab = Lab::new();
        service_to(&lab, NEW_RS, method);
        let syn = Pkt::tcp(CLIENT, 40000, VIP, 80, SYN).build();
        let data = Pkt::tcp(CLIENT, 40000, VIP, 80, ACK | PSH).payload(b"first").build();
        assert_eq!(lab.send(EXT, &syn).0, Action::Held, "{method:?}");
        assert_eq!(lab.send(EXT, &data).0, Action::Held, "{method:?}");
        // The io loop is asked to resolve it (its own ARP, when the kernel does not).
        assert!(lab.cx.arp_wanted.iter().any(|(i, a)| *i == INT && *a == IpAddr::V4(NEW_RS)));
        assert!(turn(&mut lab).is_empty(), "nothing leaves before the answer");
        // The answer comes; the next turn sends both, SYN first, to the new MAC.
        assert_eq!(lab.send(INT, &arp_reply(NEW_RS, NEW_MAC)).0, Action::Local);
        let out = turn(&mut lab);
        assert_eq!(out.len(), 2, "{method:?}");
        for (i, f) in &out {
            assert_eq!(*i, INT);
            assert_eq!(&f[0..6], &NEW_MAC);
            assert_eq!(&f[6..12], &INT_MAC);
            assert_eq!(&f[12..14], &[0x08, 0x00]);
            verify_checksums(f);
        }
        let tcp_flags = |f: &[u8]| f[14 + 20 + 13];
        assert_eq!(tcp_flags(&out[0].1), SYN);
        assert_eq!(tcp_flags(&out[1].1), ACK | PSH);
        assert_eq!(&out[1].1[14 + 40..14 + 45], b"first");
        let c = lab.node.counters.read();
        assert_eq!((c.neigh_held, c.tx), (2, 2));
        assert_eq!(c.total_drops(), 0, "{c:?}");
        // Later packets go straight out.
        let more = Pkt::tcp(CLIENT, 40000, VIP, 80, ACK).build();
        assert_eq!(lab.send(EXT, &more).0, Action::Tx(INT));
    }
}

/// A neighbour that never answers: its packets are dropped as `no_neighbour` after the
/// kernel's three probes (3 s), not held for ever.
#[test]
fn packets_of_a_neighbour_that_never_answers_are_dropped_after_3_s() {
    let mut lab = Lab::new();
    service_to(&lab, NEW_RS, ForwardMethod::Masq);
    for p in 0..3 {
        assert_eq!(lab.send(EXT, &Pkt::tcp(CLIENT, 40100 + p, VIP, 80, SYN).build()).0, Action::Held);
    }
    lab.now += 2999;
    assert!(turn(&mut lab).is_empty());
    assert_eq!(lab.node.counters.read().drops_of(DropReason::NoNeighbour), 0);
    lab.now += 1;
    assert!(turn(&mut lab).is_empty());
    assert_eq!(lab.node.counters.read().drops_of(DropReason::NoNeighbour), 3);
    assert!(lab.cx.neighq.is_empty());
}

/// The queue of one neighbour is bounded (the kernel's `unres_qlen`, 101): the oldest goes.
#[test]
fn a_neighbour_holds_at_most_unres_qlen_packets() {
    let mut lab = Lab::new();
    service_to(&lab, NEW_RS, ForwardMethod::Route);
    let n = node::neighq::PER_NEIGH as u16 + 20;
    for p in 0..n {
        assert_eq!(lab.send(EXT, &Pkt::tcp(CLIENT, 41000 + p, VIP, 80, SYN).build()).0, Action::Held);
    }
    assert_eq!(lab.node.counters.read().drops_of(DropReason::NeighQueueFull), 20);
    lab.send(INT, &arp_reply(NEW_RS, NEW_MAC));
    let out = turn(&mut lab);
    assert_eq!(out.len(), node::neighq::PER_NEIGH);
    // The survivors are the newest, in order.
    let sport = |f: &[u8]| u16::from_be_bytes([f[34], f[35]]);
    let ports: Vec<u16> = out.iter().map(|(_, f)| sport(f)).collect();
    assert_eq!(ports, (41020..41000 + n).collect::<Vec<_>>());
}
