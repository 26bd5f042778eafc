//! The SYN proxy through the node path (ipvs/src/synproxy.rs): a SYN gets a cookie SYN-ACK
//! and creates nothing; the ACK with the cookie opens the connection to the real server with
//! the client's ISN; the real server's SYN-ACK is answered by the director; then sequence
//! numbers are shifted both ways. Every frame is checked field by field (etherparse) with its
//! checksums.

mod common;

use std::net::IpAddr;
use std::sync::atomic::Ordering::Relaxed;

use common::*;
use etherparse::{SlicedPacket, TransportSlice};
use ipvs::{DestConfig, ForwardMethod, ServiceConfig, ServiceKey};
use netfilter::DropReason;
use node::Action;

fn lab() -> Lab {
    let lab = Lab::new();
    let key = ServiceKey::tcp(IpAddr::V4(VIP), 80);
    lab.ipvs().add_service(ServiceConfig::new(key, "rr")).unwrap();
    lab.ipvs().add_dest(&key, DestConfig::new(rs(1).into(), 8080).method(ForwardMethod::Masq)).unwrap();
    lab.ipvs().sysctl.syn_proxy.store(1, Relaxed);
    lab
}

fn seg(cport: u16, flags: u8, seq: u32, ack: u32, payload: &[u8]) -> Vec<u8> {
    let mut p = Pkt::tcp(CLIENT, cport, VIP, 80, flags).payload(payload);
    p.l4 = L4::Tcp { flags, seq, ack, win: 501 };
    p.build()
}

fn from_rs(cport: u16, flags: u8, seq: u32, ack: u32, payload: &[u8]) -> Vec<u8> {
    let mut p = Pkt::tcp(rs(1), 8080, CLIENT, cport, flags).macs(rs_mac(1), INT_MAC).payload(payload);
    p.l4 = L4::Tcp { flags, seq, ack, win: 600 };
    p.build()
}

/// (src, dst, sport, dport, flags byte, seq, ack, mss option, payload) of a TCP frame.
#[derive(Debug, PartialEq, Eq)]
struct Seen {
    src: [u8; 4],
    dst: [u8; 4],
    sport: u16,
    dport: u16,
    flags: u8,
    seq: u32,
    ack: u32,
    mss: Option<u16>,
    payload: Vec<u8>,
}

fn seen(frame: &[u8]) -> Seen {
    verify_checksums(frame);
    let p = SlicedPacket::from_ethernet(frame).unwrap();
    let Some(etherparse::NetSlice::Ipv4(ip)) = &p.net else { panic!("not IPv4") };
    let Some(TransportSlice::Tcp(t)) = &p.transport else { panic!("not TCP") };
    let h = t.to_header();
    let flags = (h.fin as u8) | (h.syn as u8) << 1 | (h.rst as u8) << 2 | (h.psh as u8) << 3 | (h.ack as u8) << 4;
    let mss = h.options.elements_iter().find_map(|o| match o {
        Ok(etherparse::TcpOptionElement::MaximumSegmentSize(m)) => Some(m),
        _ => None,
    });
    Seen {
        src: ip.header().source(),
        dst: ip.header().destination(),
        sport: h.source_port,
        dport: h.destination_port,
        flags,
        seq: h.sequence_number,
        ack: h.acknowledgment_number,
        mss,
        payload: t.payload().to_vec(),
    }
}

#[test]
fn cookie_handshake_then_shifted_sequence_numbers() {
    let mut lab = lab();
    let isn = 1_000_000u32;
    // 1. SYN → cookie SYN-ACK to the client, no entry.
    let (a, out) = lab.send(EXT, &seg(40000, SYN, isn, 0, b""));
    assert_eq!(a, Action::Tx(EXT));
    let s = seen(&out);
    let cookie = s.seq;
    assert_eq!(
        s,
        Seen {
            src: VIP.octets(),
            dst: CLIENT.octets(),
            sport: 80,
            dport: 40000,
            flags: SYN | ACK,
            seq: cookie,
            ack: isn + 1,
            mss: Some(1460),
            payload: vec![]
        }
    );
    assert_eq!(lab.cx.ipvs.conns.len(), 0, "a SYN creates nothing");
    assert_eq!(lab.node.counters.read().drops_of(DropReason::SynCookie), 1);
    // A wrong cookie is a stray: RST, nothing created.
    let (a, out) = lab.send(EXT, &seg(40000, ACK, isn + 1, cookie.wrapping_add(9), b""));
    assert_eq!(a, Action::Tx(EXT));
    assert_eq!(seen(&out).flags, RST);
    assert_eq!(lab.cx.ipvs.conns.len(), 0);
    // 2. The ACK with the cookie → the client's SYN to the real server (NAT), MSS kept
    //    (no option in the client's SYN: 536).
    let (a, out) = lab.send(EXT, &seg(40000, ACK, isn + 1, cookie.wrapping_add(1), b""));
    assert_eq!(a, Action::Tx(INT));
    let s = seen(&out);
    assert_eq!(
        s,
        Seen {
            src: CLIENT.octets(),
            dst: rs(1).octets(),
            sport: 40000,
            dport: 8080,
            flags: SYN,
            seq: isn,
            ack: 0,
            mss: Some(536),
            payload: vec![]
        }
    );
    assert_eq!(lab.cx.ipvs.conns.len(), 1);
    // 3. The real server's SYN-ACK → the director's ACK to it, from the client's address.
    let rs_isn = 7_000_000u32;
    let (a, out) = lab.send(INT, &from_rs(40000, SYN | ACK, rs_isn, isn + 1, b""));
    assert_eq!(a, Action::Tx(INT));
    let s = seen(&out);
    assert_eq!(
        (s.src, s.dst, s.sport, s.dport, s.flags, s.seq, s.ack, s.mss),
        (CLIENT.octets(), rs(1).octets(), 40000, 8080, ACK, isn + 1, rs_isn + 1, None)
    );
    assert_eq!(lab.state_of(CLIENT, 40000), Some("ESTABLISHED"));
    // 4. Client data: ACK number shifted into the real server's space.
    let (a, out) = lab.send(EXT, &seg(40000, ACK | PSH, isn + 1, cookie.wrapping_add(1), b"hello"));
    assert_eq!(a, Action::Tx(INT));
    let s = seen(&out);
    assert_eq!((s.dst, s.seq, s.ack, s.payload.as_slice()), (rs(1).octets(), isn + 1, rs_isn + 1, &b"hello"[..]));
    // 5. The real server's data: sequence number shifted into the cookie's space, from the VIP.
    let (a, out) = lab.send(INT, &from_rs(40000, ACK | PSH, rs_isn + 1, isn + 6, b"world"));
    assert_eq!(a, Action::Tx(EXT));
    let s = seen(&out);
    assert_eq!(
        (s.src, s.sport, s.dst, s.seq, s.ack, s.payload.as_slice()),
        (VIP.octets(), 80, CLIENT.octets(), cookie.wrapping_add(1), isn + 6, &b"world"[..])
    );
}

#[test]
fn a_spoofed_syn_flood_creates_no_entry() {
    let mut lab = lab();
    for i in 0..5000u32 {
        let mut p = Pkt::tcp(std::net::Ipv4Addr::new(198, 51, 100, 7), 1024 + (i % 60000) as u16, VIP, 80, SYN);
        p.l4 = L4::Tcp { flags: SYN, seq: i.wrapping_mul(2654435761), ack: 0, win: 1024 };
        assert_eq!(lab.send(EXT, &p.build()).0, Action::Tx(EXT));
    }
    assert_eq!(lab.cx.ipvs.conns.len(), 0);
    // Off: SYNs are scheduled as before.
    lab.ipvs().sysctl.syn_proxy.store(0, Relaxed);
    assert_eq!(lab.send(EXT, &seg(40001, SYN, 5, 0, b"")).0, Action::Tx(INT));
    assert_eq!(lab.cx.ipvs.conns.len(), 1);
}

#[test]
fn data_sent_before_the_real_server_answered_completes_its_handshake() {
    let mut lab = lab();
    let isn = 50u32;
    let (_, out) = lab.send(EXT, &seg(40002, SYN, isn, 0, b""));
    let cookie = seen(&out).seq;
    assert_eq!(lab.send(EXT, &seg(40002, ACK, isn + 1, cookie.wrapping_add(1), b"")).0, Action::Tx(INT));
    // The request right behind the ACK is held, a second segment is not.
    let (a, _) = lab.send(EXT, &seg(40002, ACK | PSH, isn + 1, cookie.wrapping_add(1), b"GET /"));
    assert_eq!(a, Action::Drop(DropReason::Defense));
    let (a, _) = lab.send(EXT, &seg(40002, ACK | PSH, isn + 6, cookie.wrapping_add(1), b" HTTP"));
    assert_eq!(a, Action::Drop(DropReason::Defense));
    // The real server's SYN-ACK: the held segment goes to it, carrying the handshake's ACK.
    let rs_isn = u32::MAX - 2; // the shift wraps
    let (a, out) = lab.send(INT, &from_rs(40002, SYN | ACK, rs_isn, isn + 1, b""));
    assert_eq!(a, Action::Tx(INT));
    let s = seen(&out);
    assert_eq!(
        s,
        Seen {
            src: CLIENT.octets(),
            dst: rs(1).octets(),
            sport: 40002,
            dport: 8080,
            flags: ACK | PSH,
            seq: isn + 1,
            ack: rs_isn.wrapping_add(1),
            mss: None,
            payload: b"GET /".to_vec()
        }
    );
    // The answer comes back in the cookie's sequence space.
    let (a, out) = lab.send(INT, &from_rs(40002, ACK | PSH, rs_isn.wrapping_add(1), isn + 6, b"200"));
    assert_eq!(a, Action::Tx(EXT));
    assert_eq!(seen(&out).seq, cookie.wrapping_add(1));
}
