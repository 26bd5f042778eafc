//! A stray TCP segment for a service (no entry, cannot open one) is answered with a RST as the
//! kernel's stack would (RFC 793 reset generation), rate-limited by `stray_rst`, counted, and
//! switched off with `stray_rst = 0` (issue 12 item 6). The RST frames are compared byte for
//! byte with frames built independently by etherparse.

mod common;

use std::net::IpAddr;
use std::sync::atomic::Ordering::Relaxed;

use common::*;
use ipvs::{DestConfig, ForwardMethod, ServiceConfig, ServiceKey};
use netfilter::DropReason;
use node::Action;

fn lab() -> Lab {
    let lab = Lab::new();
    let key = ServiceKey::tcp(IpAddr::V4(VIP), 80);
    lab.ipvs().add_service(ServiceConfig::new(key, "rr")).unwrap();
    lab.ipvs().add_dest(&key, DestConfig::new(rs(1).into(), 8080).method(ForwardMethod::Masq)).unwrap();
    lab
}

/// A segment from the client to VIP:80.
fn seg(cport: u16, flags: u8, seq: u32, ack: u32, payload: &[u8]) -> Pkt {
    let mut p = Pkt::tcp(CLIENT, cport, VIP, 80, flags).payload(payload);
    p.l4 = L4::Tcp { flags, seq, ack, win: 501 };
    p
}

/// The RST the director must send to the client: VIP:80 → client, DF, TTL 64, id 0, no options,
/// window 0.
fn rst(cport: u16, flags: u8, seq: u32, ack: u32) -> Vec<u8> {
    let mut p = Pkt::tcp(VIP, 80, CLIENT, cport, flags).macs(EXT_MAC, CLIENT_MAC);
    p.id = 0;
    p.df = true;
    p.ttl = 64;
    p.l4 = L4::Tcp { flags, seq, ack, win: 0 };
    p.build()
}

#[test]
fn an_ack_gets_a_rst_with_its_ack_number_as_sequence() {
    let mut lab = lab();
    let (a, out) = lab.send(EXT, &seg(40000, ACK | PSH, 1000, 5000, b"0123456789").build());
    assert_eq!(a, Action::Tx(EXT));
    assert_eq!(out, rst(40000, RST, 5000, 0));
    verify_checksums(&out);
    assert_eq!(lab.cx.ipvs.conns.len(), 0, "a stray creates no entry");
    assert_eq!(lab.node.counters.read().drops_of(DropReason::StrayRst), 1);
}

#[test]
fn a_segment_without_ack_gets_rst_ack_of_its_length() {
    let mut lab = lab();
    // FIN without ACK, 3 bytes: ACK = SEQ + 3 + 1 (the FIN), sequence 0.
    let (a, out) = lab.send(EXT, &seg(40001, FIN, 7, 0, b"abc").build());
    assert_eq!(a, Action::Tx(EXT));
    assert_eq!(out, rst(40001, RST | ACK, 0, 11));
    verify_checksums(&out);
    // Sequence wraps as TCP arithmetic does.
    let (_, out) = lab.send(EXT, &seg(40002, PSH, u32::MAX - 1, 0, b"abcd").build());
    assert_eq!(out, rst(40002, RST | ACK, 0, 2));
}

#[test]
fn no_rst_for_a_rst_for_an_entry_or_when_switched_off() {
    let mut lab = lab();
    let (a, _) = lab.send(EXT, &seg(40003, RST, 9, 0, b"").build());
    assert_ne!(a, Action::Tx(EXT), "never a RST for a RST");
    // A connection the director knows is forwarded, not reset.
    assert_eq!(lab.send(EXT, &seg(40004, SYN, 1, 0, b"").build()).0, Action::Tx(INT));
    assert_eq!(lab.send(EXT, &seg(40004, ACK, 2, 1, b"").build()).0, Action::Tx(INT));
    // A port that is no service: not ours to answer (left to the stack as before).
    let mut other = seg(40005, ACK, 2, 1, b"");
    other.dport = 81;
    assert_ne!(lab.send(EXT, &other.build()).0, Action::Tx(EXT));
    lab.ipvs().sysctl.stray_rst.store(0, Relaxed);
    assert_ne!(lab.send(EXT, &seg(40006, ACK, 2, 1, b"").build()).0, Action::Tx(EXT));
    assert_eq!(lab.node.counters.read().drops_of(DropReason::StrayRst), 0);
}

#[test]
fn strays_are_answered_at_most_stray_rst_per_second() {
    let mut lab = lab();
    lab.ipvs().sysctl.stray_rst.store(3, Relaxed);
    let sent: Vec<Action> = (0..5).map(|i| lab.send(EXT, &seg(41000 + i, ACK, 2, 1, b"").build()).0).collect();
    assert_eq!(&sent[..3], &[Action::Tx(EXT); 3]);
    assert_eq!(&sent[3..], &[Action::Drop(DropReason::StrayRstLimited); 2]);
    lab.advance(1);
    assert_eq!(lab.send(EXT, &seg(41010, ACK, 2, 1, b"").build()).0, Action::Tx(EXT));
    let c = lab.node.counters.read();
    assert_eq!((c.drops_of(DropReason::StrayRst), c.drops_of(DropReason::StrayRstLimited)), (4, 2));
}
