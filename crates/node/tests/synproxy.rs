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

use etherparse::TcpOptionElement as O;

/// A TCP frame with options, built by etherparse (full checksums).
#[allow(clippy::too_many_arguments)]
fn with_opts(
    from_rs: bool,
    cport: u16,
    flags: u8,
    seq: u32,
    ack: u32,
    win: u16,
    opts: &[O],
    payload: &[u8],
) -> Vec<u8> {
    let (src, sport, dst, dport, macs) = if from_rs {
        (rs(1), 8080, CLIENT, cport, (rs_mac(1), INT_MAC))
    } else {
        (CLIENT, cport, VIP, 80, (CLIENT_MAC, EXT_MAC))
    };
    let mut t = etherparse::TcpHeader::new(sport, dport, seq, win);
    t.syn = flags & SYN != 0;
    t.ack = flags & ACK != 0;
    t.psh = flags & PSH != 0;
    t.acknowledgment_number = ack;
    t.set_options(opts).unwrap();
    let mut ip = etherparse::Ipv4Header::new(
        (t.header_len() + payload.len()) as u16,
        64,
        etherparse::IpNumber::TCP,
        src.octets(),
        dst.octets(),
    )
    .unwrap();
    ip.header_checksum = ip.calc_header_checksum();
    t.checksum = t.calc_checksum_ipv4(&ip, payload).unwrap();
    let mut b = ip.to_bytes().to_vec();
    b.extend_from_slice(&t.to_bytes());
    b.extend_from_slice(payload);
    eth(macs.0, macs.1, &b)
}

/// (seq, ack, window, options without padding) of a TCP frame, checksums verified.
fn fields(frame: &[u8]) -> (u32, u32, u16, Vec<O>) {
    verify_checksums(frame);
    let p = SlicedPacket::from_ethernet(frame).unwrap();
    let Some(TransportSlice::Tcp(t)) = &p.transport else { panic!("not TCP") };
    let h = t.to_header();
    let opts = h.options.elements_iter().map(|o| o.unwrap()).filter(|o| *o != O::Noop).collect();
    (h.sequence_number, h.acknowledgment_number, h.window_size, opts)
}

#[test]
fn window_scaling_sack_and_timestamps_pass_end_to_end() {
    let mut lab = lab();
    let (isn, rs_isn) = (3_000u32, 4_000_000_000u32);
    // 1. A SYN with timestamps, SACK and window scale 6: the cookie SYN-ACK offers all three,
    //    scale 7 (WSCALE), and its TSval keeps the client's (6 | SACK) in the low 6 bits.
    let syn =
        [O::MaximumSegmentSize(1460), O::SelectiveAcknowledgementPermitted, O::Timestamp(1000, 0), O::WindowScale(6)];
    let (a, out) = lab.send(EXT, &with_opts(false, 41000, SYN, isn, 0, 64240, &syn, b""));
    assert_eq!(a, Action::Tx(EXT));
    let (cookie, ack, win, opts) = fields(&out);
    assert_eq!((ack, win), (isn + 1, 65535));
    let O::Timestamp(ours, 1000) = opts[2] else { panic!("{opts:?}") };
    assert_eq!(ours & 0x3f, 6 | 0x10);
    assert_eq!(
        opts,
        [
            O::MaximumSegmentSize(1460),
            O::SelectiveAcknowledgementPermitted,
            O::Timestamp(ours, 1000),
            O::WindowScale(7)
        ]
    );
    assert_eq!(lab.cx.ipvs.conns.len(), 0);
    // 2. The cookie ACK (window 300 in scale 6) → the client's SYN to the real server with
    //    the options the TSval kept and the client's TSval; the SYN's window unscaled.
    let (a, out) =
        lab.send(EXT, &with_opts(false, 41000, ACK, isn + 1, cookie + 1, 300, &[O::Timestamp(1001, ours)], b""));
    assert_eq!(a, Action::Tx(INT));
    assert_eq!(
        fields(&out),
        (
            isn,
            0,
            300 << 6,
            vec![
                O::MaximumSegmentSize(1460),
                O::SelectiveAcknowledgementPermitted,
                O::Timestamp(1001, 0),
                O::WindowScale(6)
            ]
        )
    );
    // 3. The real server answers with scale 5 and its own clock: the director's ACK to it
    //    echoes it, with the client's TSval and window.
    let rs_syn = [
        O::MaximumSegmentSize(1460),
        O::SelectiveAcknowledgementPermitted,
        O::Timestamp(900_000, 1001),
        O::WindowScale(5),
    ];
    let (a, out) = lab.send(INT, &with_opts(true, 41000, SYN | ACK, rs_isn, isn + 1, 65535, &rs_syn, b""));
    assert_eq!(a, Action::Tx(INT));
    assert_eq!(fields(&out), (isn + 1, rs_isn + 1, 300, vec![O::Timestamp(1001, 900_000)]));
    // 4. Client → real server: ACK number and SACK blocks shifted into the real server's
    //    sequence space, TSecr into its clock; the window as it is (both sides scale by 6).
    let c1 = cookie.wrapping_add(1);
    let sack = O::SelectiveAcknowledgement((c1 + 100, c1 + 200), [Some((c1 + 300, c1 + 400)), None, None]);
    let (a, out) =
        lab.send(EXT, &with_opts(false, 41000, ACK, isn + 1, c1, 300, &[O::Timestamp(1002, ours + 5), sack], b"GET /"));
    assert_eq!(a, Action::Tx(INT));
    let r1 = rs_isn.wrapping_add(1);
    let rs_sack = O::SelectiveAcknowledgement(
        (r1.wrapping_add(100), r1.wrapping_add(200)),
        [Some((r1.wrapping_add(300), r1.wrapping_add(400))), None, None],
    );
    assert_eq!(fields(&out), (isn + 1, r1, 300, vec![O::Timestamp(1002, 900_005), rs_sack]));
    // 5. Real server → client: sequence number and TSval back into the director's terms,
    //    the window from scale 5 to scale 7 (1000 << 5 >> 7 = 250); its SACK blocks name the
    //    client's bytes, unshifted.
    let own = O::SelectiveAcknowledgement((isn + 10, isn + 20), [None, None, None]);
    let (a, out) = lab.send(
        INT,
        &with_opts(true, 41000, ACK, r1, isn + 6, 1000, &[O::Timestamp(900_010, 1002), own.clone()], b"200"),
    );
    assert_eq!(a, Action::Tx(EXT));
    assert_eq!(fields(&out), (c1, isn + 6, 250, vec![O::Timestamp(ours + 10, 1002), own]));
}

#[test]
fn without_timestamps_only_the_mss_is_negotiated() {
    let mut lab = lab();
    let syn = [O::MaximumSegmentSize(1400), O::SelectiveAcknowledgementPermitted, O::WindowScale(7)];
    let (_, out) = lab.send(EXT, &with_opts(false, 41001, SYN, 10, 0, 64240, &syn, b""));
    let (cookie, _, _, opts) = fields(&out);
    assert_eq!(opts, [O::MaximumSegmentSize(1460)], "as Linux: no timestamps, no scaling or SACK");
    let (a, out) = lab.send(EXT, &with_opts(false, 41001, ACK, 11, cookie + 1, 5000, &[], b""));
    assert_eq!(a, Action::Tx(INT));
    assert_eq!(fields(&out), (10, 0, 5000, vec![O::MaximumSegmentSize(1300)]));
    let (_, out) =
        lab.send(INT, &with_opts(true, 41001, SYN | ACK, 77, 11, 65535, &[O::MaximumSegmentSize(1460)], b""));
    assert_eq!(fields(&out), (11, 78, 5000, vec![]));
    // Windows pass unchanged, sequence numbers are shifted.
    let (_, out) = lab.send(INT, &with_opts(true, 41001, ACK, 78, 11, 29200, &[], b"x"));
    assert_eq!(fields(&out), (cookie + 1, 11, 29200, vec![]));
}

#[test]
fn a_real_server_that_declines_window_scaling_gets_windows_in_bytes() {
    let mut lab = lab();
    let syn = [O::MaximumSegmentSize(1460), O::Timestamp(1, 0), O::WindowScale(6)];
    let (_, out) = lab.send(EXT, &with_opts(false, 41002, SYN, 10, 0, 64240, &syn, b""));
    let (cookie, _, _, opts) = fields(&out);
    let O::Timestamp(ours, 1) = opts[1] else { panic!("{opts:?}") };
    assert_eq!(opts[2], O::WindowScale(7));
    lab.send(EXT, &with_opts(false, 41002, ACK, 11, cookie + 1, 300, &[O::Timestamp(2, ours)], b""));
    // No scale and no timestamps from the real server.
    let (_, out) =
        lab.send(INT, &with_opts(true, 41002, SYN | ACK, 500, 11, 65535, &[O::MaximumSegmentSize(1460)], b""));
    assert_eq!(fields(&out), (11, 501, 300 << 6, vec![]), "the client's window in bytes");
    // Client → real server: its scaled window in bytes (clamped); TSecr left alone.
    let (_, out) =
        lab.send(EXT, &with_opts(false, 41002, ACK, 11, cookie + 1, 100, &[O::Timestamp(3, ours + 1)], b"a"));
    assert_eq!(fields(&out), (11, 501, 6400, vec![O::Timestamp(3, ours + 1)]));
    // Real server → client: bytes into the client's scale 7 (40000 >> 7 = 312).
    let (_, out) = lab.send(INT, &with_opts(true, 41002, ACK, 501, 12, 40000, &[], b"b"));
    assert_eq!(fields(&out), (cookie + 1, 12, 312, vec![]));
}
