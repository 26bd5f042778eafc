//! `--pe sip` through the node's packet path: persistence templates keyed by the Call-ID of
//! a flow's first datagram (the kernel's ip_vs_pe_sip), with real SIP-shaped datagrams.

mod common;

use std::net::{IpAddr, Ipv4Addr};

use common::*;
use ipvs::{DestConfig, ForwardMethod, PersistenceEngine, ServiceConfig, ServiceKey};
use netfilter::DropReason;
use node::Action;

const SIP: u16 = 5060;

/// An RFC 3261 INVITE (§24.2) with the given Call-ID.
fn invite(call_id: &str) -> Vec<u8> {
    format!(
        "INVITE sip:bob@biloxi.example.com SIP/2.0\r\n\
         Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bKnashds8\r\n\
         Max-Forwards: 70\r\n\
         To: Bob <sip:bob@biloxi.example.com>\r\n\
         From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: 314159 INVITE\r\n\
         Contact: <sip:alice@pc33.atlanta.example.com>\r\n\
         Content-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

/// A compact-form BYE of the same call (`i:` is Call-ID).
fn bye(call_id: &str) -> Vec<u8> {
    format!(
        "BYE sip:alice@pc33.atlanta.example.com SIP/2.0\r\nv: SIP/2.0/UDP 192.0.2.4\r\ni: {call_id}\r\nl: 0\r\n\r\n"
    )
    .into_bytes()
}

/// A persistent UDP SIP service with `--pe sip` over three real servers (NAT), rr.
fn lab(netmask: Ipv4Addr) -> Lab {
    let lab = Lab::new();
    let key = ServiceKey::udp(IpAddr::V4(VIP), SIP);
    let mut cfg = ServiceConfig::new(key, "rr");
    cfg.persistent = Some(300);
    cfg.netmask = u32::from(netmask);
    cfg.pe = Some(PersistenceEngine::Sip);
    lab.ipvs().add_service(cfg).unwrap();
    for i in 1..=3 {
        lab.ipvs().add_dest(&key, DestConfig::new(rs(i).into(), SIP).method(ForwardMethod::Masq)).unwrap();
    }
    lab
}

/// Sends one datagram; returns the real server it went to (last address byte), or the drop.
fn send(lab: &mut Lab, client: Ipv4Addr, port: u16, payload: &[u8]) -> Result<u8, DropReason> {
    let (a, out) = lab.send(EXT, &Pkt::udp(client, port, VIP, SIP, payload).build());
    match a {
        Action::Tx(_) => {
            verify_checksums(&out);
            Ok(out[14 + 19])
        }
        Action::Drop(r) => Err(r),
        Action::Local => panic!("a SIP datagram to the VIP went to the local stack"),
        Action::Held => panic!("a SIP datagram waited for a neighbour the topology knows"),
    }
}

/// The templates and their Call-IDs.
fn templates(lab: &Lab) -> Vec<String> {
    let t = &lab.cx.ipvs.conns;
    let mut v: Vec<String> = t
        .ids()
        .filter(|&id| t.get(id).is_some_and(|c| c.is_template()))
        .map(|id| String::from_utf8_lossy(t.pe_data(id).unwrap_or(b"-")).into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn flows_of_one_call_reach_one_real_server() {
    let mut lab = lab(Ipv4Addr::BROADCAST);
    let call = "a84b4c76e66710@pc33.atlanta.example.com";
    let first = send(&mut lab, CLIENT, 5060, &invite(call)).unwrap();
    // Another flow of the same call from another port of the client: the same server,
    // although rr would pick the next one.
    assert_eq!(send(&mut lab, CLIENT, 5062, &bye(call)).unwrap(), first);
    assert_eq!(send(&mut lab, CLIENT, 5064, &invite(call)).unwrap(), first);
    // Another call from the same client: rr moves on.
    let second = send(&mut lab, CLIENT, 5066, &invite("f81d4fae-7dec-11d0-a765@host.example")).unwrap();
    assert_ne!(second, first);
    assert_eq!(templates(&lab), ["a84b4c76e66710@pc33.atlanta.example.com", "f81d4fae-7dec-11d0-a765@host.example"]);
    // Later datagrams of a flow find its connection: no Call-ID needed any more.
    assert_eq!(send(&mut lab, CLIENT, 5060, b"RTP-ish bytes without headers").unwrap(), first);
}

#[test]
fn the_template_is_per_client_network_as_the_kernels_ct_match() {
    // /32 (the default): the same Call-ID from another client is another template.
    let mut lab = lab(Ipv4Addr::BROADCAST);
    let a = send(&mut lab, CLIENT, 5060, &invite("same-call")).unwrap();
    let b = send(&mut lab, Ipv4Addr::new(198, 51, 100, 77), 5060, &invite("same-call")).unwrap();
    assert_ne!(a, b, "rr picked anew for the second client");
    assert_eq!(templates(&lab).len(), 2);
    // -M 0.0.0.0: the Call-ID alone decides, whichever client sends it.
    let mut lab = lab_any();
    let a = send(&mut lab, CLIENT, 5060, &invite("same-call")).unwrap();
    for (i, c) in [Ipv4Addr::new(198, 51, 100, 77), Ipv4Addr::new(203, 0, 113, 9)].into_iter().enumerate() {
        assert_eq!(send(&mut lab, c, 6000 + i as u16, &invite("same-call")).unwrap(), a);
    }
    assert_eq!(templates(&lab), ["same-call"]);
}

fn lab_any() -> Lab {
    lab(Ipv4Addr::UNSPECIFIED)
}

#[test]
fn a_first_datagram_without_a_call_id_is_dropped() {
    let mut lab = lab(Ipv4Addr::BROADCAST);
    for payload in [
        &b"not sip at all"[..],
        b"OPTIONS sip:x SIP/2.0\r\nTo: x\r\n\r\n",
        b"OPTIONS sip:x SIP/2.0\r\nCall-ID: unterminated",
        b"",
    ] {
        assert_eq!(send(&mut lab, CLIENT, 7000, payload), Err(DropReason::PeNoData), "{payload:?}");
    }
    assert!(lab.cx.ipvs.conns.is_empty(), "no template, no connection");
    let drops = lab.node.counters.read().drops;
    assert_eq!(drops.iter().find(|(r, _)| *r == DropReason::PeNoData).map(|d| d.1), Some(4));
    // The same flow with a Call-ID is then scheduled.
    assert!(send(&mut lab, CLIENT, 7000, &invite("late")).is_ok());
}

#[test]
fn the_call_id_goes_with_its_template() {
    let mut lab = lab(Ipv4Addr::BROADCAST);
    let first = send(&mut lab, CLIENT, 5060, &invite("call-1")).unwrap();
    assert_eq!(templates(&lab), ["call-1"]);
    // The UDP entry expires (300 s), then the template, deferred while it controlled it.
    lab.advance(301);
    lab.cx.ipvs.expire_all();
    lab.advance(301);
    lab.cx.ipvs.expire_all();
    assert!(lab.cx.ipvs.conns.is_empty(), "template and connection gone");
    assert!((0..16).all(|id| lab.cx.ipvs.conns.pe_data(id).is_none()), "the Call-ID went with it");
    // A new template of the same Call-ID starts anew (rr's next pick).
    let again = send(&mut lab, CLIENT, 5060, &invite("call-1")).unwrap();
    assert_ne!(again, first);
    assert_eq!(templates(&lab), ["call-1"]);
}

#[test]
fn the_engine_needs_udp() {
    // A TCP service with --pe sip: the kernel's fill_param refuses non-UDP, the SYN is dropped.
    let mut lab = Lab::new();
    let key = ServiceKey::tcp(IpAddr::V4(VIP), SIP);
    let mut cfg = ServiceConfig::new(key, "rr");
    (cfg.persistent, cfg.pe) = (Some(60), Some(PersistenceEngine::Sip));
    lab.ipvs().add_service(cfg).unwrap();
    lab.ipvs().add_dest(&key, DestConfig::new(rs(1).into(), SIP).method(ForwardMethod::Masq)).unwrap();
    let (a, _) = lab.send(EXT, &Pkt::tcp(CLIENT, 40000, VIP, SIP, SYN).build());
    assert_eq!(a, Action::Drop(DropReason::PeNoData));
}

#[test]
fn the_calls_of_one_client_spread_over_the_index() {
    // One template per call, all from one client network: indexed under a port made from
    // the Call-ID (the kernel hashes them by Call-ID), not all under port 0.
    let mut lab = lab(Ipv4Addr::BROADCAST);
    for i in 0..300u16 {
        send(&mut lab, CLIENT, 10000 + i, &invite(&format!("call-{i}@host"))).unwrap();
    }
    let t = &lab.cx.ipvs.conns;
    let ports: std::collections::BTreeSet<u16> =
        t.ids().filter_map(|id| t.get(id)).filter(|c| c.is_template()).map(|c| c.cport).collect();
    assert!(ports.len() > 250 && !ports.contains(&0), "{} distinct index ports", ports.len());
    // Each call still finds its own template.
    for i in [0u16, 150, 299] {
        let before = templates(&lab).len();
        send(&mut lab, CLIENT, 20000 + i, &bye(&format!("call-{i}@host"))).unwrap();
        assert_eq!(templates(&lab).len(), before, "call-{i} reused its template");
    }
}
