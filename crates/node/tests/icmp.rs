//! ICMP errors about connections (lvs-semantics.md §14), through the node path, compared byte
//! for byte with frames built by etherparse.

mod common;

use common::*;
use etherparse::{Icmpv4Header, Icmpv4Type, IpNumber, Ipv4Header};
use ipvs::{DestConfig, ForwardMethod, ServiceConfig, ServiceKey};
use netfilter::DropReason;
use node::Action;
use std::net::{IpAddr, Ipv4Addr};

fn lab_with_nat_and_dr() -> Lab {
    let mut lab = Lab::new();
    let nat = ServiceKey::tcp(IpAddr::V4(VIP), 80);
    lab.ipvs().add_service(ServiceConfig::new(nat, "rr")).unwrap();
    lab.ipvs().add_dest(&nat, DestConfig::new(rs(1).into(), 8080).method(ForwardMethod::Masq)).unwrap();
    let dr = ServiceKey::tcp(IpAddr::V4(VIP), 443);
    lab.ipvs().add_service(ServiceConfig::new(dr, "rr")).unwrap();
    lab.ipvs().add_dest(&dr, DestConfig::new(rs(2).into(), 443).method(ForwardMethod::Route)).unwrap();
    // Open one connection through each.
    assert_eq!(lab.send(EXT, &Pkt::tcp(CLIENT, 40512, VIP, 80, SYN).build()).0, Action::Tx(INT));
    assert_eq!(lab.send(EXT, &Pkt::tcp(CLIENT, 40513, VIP, 443, SYN).build()).0, Action::Tx(INT));
    lab
}

/// An ICMP error frame from `src` to `dst` quoting the first 28 bytes of `quoted`.
fn icmp_frame(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src: Ipv4Addr,
    dst: Ipv4Addr,
    ttl: u8,
    t: Icmpv4Type,
    quoted: &[u8],
) -> Vec<u8> {
    let q = &quoted[..28.min(quoted.len())];
    let icmp = Icmpv4Header::with_checksum(t, q);
    let mut ip = Ipv4Header::new((8 + q.len()) as u16, ttl, IpNumber::ICMP, src.octets(), dst.octets()).unwrap();
    ip.dont_fragment = false;
    ip.header_checksum = ip.calc_header_checksum();
    let mut out = ip.to_bytes().to_vec();
    out.extend_from_slice(&icmp.to_bytes());
    out.extend_from_slice(q);
    eth(src_mac, dst_mac, &out)
}

fn port_unreach() -> Icmpv4Type {
    Icmpv4Type::DestinationUnreachable(etherparse::icmpv4::DestUnreachableHeader::Port)
}

/// Our NAT reply (VIP:80 → client) as the client quotes it.
fn quoted_reply(sport: u16, cport: u16) -> Vec<u8> {
    let mut p = Pkt::tcp(VIP, sport, CLIENT, cport, ACK);
    p.id = 0;
    p.ip_bytes()
}

#[test]
fn client_error_about_nat_reply_is_relayed_to_the_real_server() {
    let mut lab = lab_with_nat_and_dr();
    let input = icmp_frame(CLIENT_MAC, EXT_MAC, CLIENT, VIP, 64, port_unreach(), &quoted_reply(80, 40512));
    // Expected: outer to the RIP (TTL − 1), quoted source VIP:80 → RIP:8080 with its IP
    // checksum recomputed, quoted TCP checksum untouched, ICMP checksum recomputed.
    let mut q = quoted_reply(80, 40512)[..28].to_vec();
    q[12..16].copy_from_slice(&rs(1).octets());
    q[10] = 0;
    q[11] = 0;
    let c = etherparse::Ipv4Header::from_slice(&q[..20]).unwrap().0.calc_header_checksum();
    q[10..12].copy_from_slice(&c.to_be_bytes());
    q[20..22].copy_from_slice(&8080u16.to_be_bytes());
    let want = icmp_frame(INT_MAC, rs_mac(1), CLIENT, rs(1), 63, port_unreach(), &q);
    let (a, out) = lab.send(EXT, &input);
    assert_eq!(a, Action::Tx(INT));
    assert_eq!(out, want);
    verify_checksums(&out);
    assert_eq!(lab.state_of(CLIENT, 40512), Some("SYN_RECV"), "an ICMP error never changes the connection");
}

#[test]
fn client_error_about_dr_reply_is_forwarded_unchanged() {
    let mut lab = lab_with_nat_and_dr();
    let input = icmp_frame(CLIENT_MAC, EXT_MAC, CLIENT, VIP, 64, port_unreach(), &quoted_reply(443, 40513));
    let mut want = input.clone();
    want[..6].copy_from_slice(&rs_mac(2));
    want[6..12].copy_from_slice(&INT_MAC);
    want[14 + 8] = 63;
    let ip = etherparse::Ipv4Header::from_slice(&want[14..34]).unwrap().0;
    want[14 + 10..14 + 12].copy_from_slice(&ip.calc_header_checksum().to_be_bytes());
    let (a, out) = lab.send(EXT, &input);
    assert_eq!(a, Action::Tx(INT));
    assert_eq!(out, want);
}

#[test]
fn real_server_side_error_is_rewritten_to_the_vip() {
    let mut lab = lab_with_nat_and_dr();
    // A router on the real-server side reports time exceeded for the client's packet to RIP.
    let mut client_pkt = Pkt::tcp(CLIENT, 40512, rs(1), 8080, SYN);
    client_pkt.ttl = 1;
    let quoted = client_pkt.ip_bytes();
    let te = Icmpv4Type::TimeExceeded(etherparse::icmpv4::TimeExceededCode::TtlExceededInTransit);
    let input = icmp_frame(rs_mac(1), INT_MAC, Ipv4Addr::new(192, 168, 1, 250), CLIENT, 64, te.clone(), &quoted);
    let mut q = quoted[..28].to_vec();
    q[16..20].copy_from_slice(&VIP.octets());
    q[10] = 0;
    q[11] = 0;
    let c = etherparse::Ipv4Header::from_slice(&q[..20]).unwrap().0.calc_header_checksum();
    q[10..12].copy_from_slice(&c.to_be_bytes());
    q[22..24].copy_from_slice(&80u16.to_be_bytes());
    let want = icmp_frame(EXT_MAC, CLIENT_MAC, VIP, CLIENT, 63, te, &q);
    let (a, out) = lab.send(INT, &input);
    assert_eq!(a, Action::Tx(EXT));
    assert_eq!(out, want);
    verify_checksums(&out);
}

#[test]
fn bad_or_unrelated_errors_are_dropped_and_counted() {
    let mut lab = lab_with_nat_and_dr();
    let mut bad = icmp_frame(CLIENT_MAC, EXT_MAC, CLIENT, VIP, 64, port_unreach(), &quoted_reply(80, 40512));
    bad[14 + 20 + 2] ^= 0x55; // ICMP checksum
    assert_eq!(lab.send(EXT, &bad).0, Action::Drop(DropReason::BadChecksum));
    let none = icmp_frame(CLIENT_MAC, EXT_MAC, CLIENT, VIP, 64, port_unreach(), &quoted_reply(80, 999));
    assert_eq!(lab.send(EXT, &none).0, Action::Drop(DropReason::IcmpNoConn));
    let c = lab.node.counters.read();
    assert_eq!(c.drops_of(DropReason::BadChecksum), 1);
    assert_eq!(c.drops_of(DropReason::IcmpNoConn), 1);
    // An echo request to the VIP is not IPVS's: left to the local stack.
    let mut echo = icmp_frame(
        CLIENT_MAC,
        EXT_MAC,
        CLIENT,
        VIP,
        64,
        Icmpv4Type::EchoRequest(etherparse::IcmpEchoHeader { id: 1, seq: 1 }),
        &[0u8; 8],
    );
    echo.truncate(14 + 20 + 8 + 8);
    assert_eq!(lab.send(EXT, &echo).0, Action::Local);
    // And the connection is still there.
    assert_eq!(lab.state_of(CLIENT, 40512), Some("SYN_RECV"));
}
