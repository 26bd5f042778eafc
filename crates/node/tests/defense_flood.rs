//! drop_entry under a SYN flood that fills the table (defense.rs): without it a new client is
//! refused while the half-open entries live (60 s); with it, the new connection takes the place
//! of a half-open entry, and established connections are never the ones that go.

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::Ordering::Relaxed;

use common::*;
use ipvs::{DestConfig, ForwardMethod, ServiceConfig, ServiceKey};
use netfilter::DropReason;
use node::Action;

const MAX: usize = 64;

fn lab() -> Lab {
    let lab = Lab::with_max_conns(MAX);
    let key = ServiceKey::tcp(IpAddr::V4(VIP), 80);
    lab.ipvs().add_service(ServiceConfig::new(key, "rr")).unwrap();
    lab.ipvs().add_dest(&key, DestConfig::new(rs(1).into(), 8080).method(ForwardMethod::Masq)).unwrap();
    lab
}

/// A spoofed SYN from 10.66.x.y.
fn spoofed(i: u32) -> Vec<u8> {
    let [_, _, a, b] = i.to_be_bytes();
    let mut p = Pkt::tcp(Ipv4Addr::new(10, 66, a, b), 1024 + (i % 60000) as u16, VIP, 80, SYN);
    p.src_mac = CLIENT_MAC;
    p.build()
}

fn established(lab: &mut Lab, port: u16) {
    assert_eq!(lab.send(EXT, &Pkt::tcp(CLIENT, port, VIP, 80, SYN).build()).0, Action::Tx(INT));
    let mut synack = Pkt::tcp(rs(1), 8080, CLIENT, port, SYN | ACK).macs(rs_mac(1), INT_MAC);
    synack.ttl = 64;
    assert_eq!(lab.send(INT, &synack.build()).0, Action::Tx(EXT));
    assert_eq!(lab.send(EXT, &Pkt::tcp(CLIENT, port, VIP, 80, ACK).build()).0, Action::Tx(INT));
    assert_eq!(lab.state_of(CLIENT, port), Some("ESTABLISHED"));
}

#[test]
fn a_full_table_refuses_new_clients_without_drop_entry() {
    let mut lab = lab();
    for i in 0..MAX as u32 {
        lab.send(EXT, &spoofed(i));
    }
    assert_eq!(lab.cx.ipvs.conns.len(), MAX);
    lab.advance(1);
    let (a, _) = lab.send(EXT, &Pkt::tcp(CLIENT, 50000, VIP, 80, SYN).build());
    assert_eq!(a, Action::Drop(DropReason::ConnTableFull));
}

#[test]
fn with_drop_entry_a_new_client_replaces_a_half_open_entry() {
    let mut lab = lab();
    lab.ipvs().sysctl.drop_entry.store(1, Relaxed);
    for p in 0..8 {
        established(&mut lab, 51000 + p);
    }
    // The flood: ten times the table, and the table stays at its maximum.
    for i in 0..(10 * MAX) as u32 {
        lab.send(EXT, &spoofed(i));
        if i == MAX as u32 {
            lab.advance(1); // the defence tick sees the table short and engages
        }
    }
    assert_eq!(lab.cx.ipvs.conns.len(), MAX);
    assert!(lab.cx.ipvs.defense().drop_entry);
    assert!(lab.cx.ipvs.defense().evicted > 0);
    // A legitimate client gets in and completes its handshake.
    established(&mut lab, 52000);
    // Every established connection survived the flood.
    for p in 0..8 {
        assert_eq!(lab.state_of(CLIENT, 51000 + p), Some("ESTABLISHED"), "port {}", 51000 + p);
    }
    // Switched off: full is full again.
    lab.ipvs().sysctl.drop_entry.store(0, Relaxed);
    lab.advance(1);
    let (a, _) = lab.send(EXT, &spoofed(999_999));
    assert_eq!(a, Action::Drop(DropReason::ConnTableFull));
}

#[test]
fn the_victim_is_the_half_open_entry_idle_longest() {
    let mut lab = lab();
    lab.ipvs().sysctl.drop_entry.store(3, Relaxed);
    for i in 0..MAX as u32 {
        lab.send(EXT, &spoofed(i));
    }
    lab.advance(1);
    // A client's SYN (half-open, fresh) among old flood entries, then half a table of new flood.
    assert_eq!(lab.send(EXT, &Pkt::tcp(CLIENT, 53000, VIP, 80, SYN).build()).0, Action::Tx(INT));
    for i in 0..(MAX / 2) as u32 {
        assert_eq!(lab.send(EXT, &spoofed(100_000 + i)).0, Action::Tx(INT));
    }
    assert_eq!(lab.state_of(CLIENT, 53000), Some("SYN_RECV"), "the freshest entry is kept");
    assert_eq!(lab.cx.ipvs.conns.len(), MAX);
}

/// drop_packet = 1 driven by amemthresh (in free entries): once fewer than amemthresh are
/// free, one new-connection packet in amemthresh / (amemthresh − free) is dropped, evaluated
/// once a second (the kernel's integer rate; its countdown restarts at each evaluation, so a
/// rate that rises under a flood takes effect at once).
#[test]
fn drop_packet_sheds_new_connections_once_amemthresh_is_crossed() {
    let mut lab = lab();
    lab.ipvs().sysctl.drop_packet.store(1, Relaxed);
    lab.ipvs().sysctl.amemthresh.store(32, Relaxed);
    lab.advance(1);
    for i in 0..33u32 {
        assert_eq!(lab.send(EXT, &spoofed(i)).0, Action::Tx(INT), "not short yet: nothing dropped");
    }
    // 31 free < 32: one in 32.
    lab.advance(1);
    for i in 33..41u32 {
        assert_eq!(lab.send(EXT, &spoofed(i)).0, Action::Tx(INT));
    }
    // 23 free: one in 32 / 9 = 3, from the next evaluation on.
    lab.advance(1);
    let dropped = (41..62u32).filter(|i| lab.send(EXT, &spoofed(*i)).0 == Action::Drop(DropReason::Defense)).count();
    assert_eq!(dropped, 7);
    // 9 free (55 entries): 32 / 23 = 1, every new connection is dropped.
    lab.advance(1);
    let dropped = (62..72u32).filter(|i| lab.send(EXT, &spoofed(*i)).0 == Action::Drop(DropReason::Defense)).count();
    assert_eq!(dropped, 10);
    assert_eq!(lab.cx.ipvs.conns.len(), 55, "the table stops short of its maximum ({MAX})");
}
