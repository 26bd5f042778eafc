//! LVS semantics beyond plain forwarding (lvs-semantics.md §6, §9, §10, §21): persistence
//! templates, port-0 and firewall-mark services, one-packet scheduling, per-service timeouts,
//! port reuse and removed real servers.

mod common;

use std::net::{IpAddr, Ipv4Addr};

use common::*;
use ipvs::fwmark::FwmarkRule;
use ipvs::proto::Timeouts;
use ipvs::{DestConfig, ForwardMethod, ServiceConfig, ServiceKey};
use node::Action;

fn vip() -> IpAddr {
    IpAddr::V4(VIP)
}

/// The real server a forwarded (NAT or DR) frame goes to, by its last address byte.
fn to_rs(out: &[u8]) -> u8 {
    out[14 + 19]
}

/// The frame NAT must emit for `p` towards real server `n` (last byte 10 + n) on `port`,
/// built independently (etherparse), compared byte for byte; checksums re-verified.
fn assert_nat_frame(out: &[u8], p: &Pkt, port: u16) {
    let n = to_rs(out) - 10;
    let mut q = p.clone().macs(INT_MAC, rs_mac(n)).ttl(p.ttl - 1);
    q.daddr = rs(n);
    q.dport = port;
    assert_eq!(out, &q.build()[..], "NAT frame to rs{n}");
    verify_checksums(out);
}

fn service(lab: &Lab, cfg: ServiceConfig, method: ForwardMethod, port: u16, n: u8) {
    let key = cfg.key;
    lab.ipvs().add_service(cfg).unwrap();
    for i in 1..=n {
        lab.ipvs().add_dest(&key, DestConfig::new(rs(i).into(), port).method(method)).unwrap();
    }
}

fn templates(lab: &Lab) -> usize {
    let t = &lab.cx.ipvs.conns;
    t.ids().filter_map(|i| t.get(i)).filter(|c| c.is_template()).count()
}

#[test]
fn persistence_keeps_a_client_network_on_one_server() {
    let mut lab = Lab::new();
    let mut cfg = ServiceConfig::new(ServiceKey::tcp(vip(), 80), "rr");
    cfg.persistent = Some(300);
    cfg.netmask = u32::from(Ipv4Addr::new(255, 255, 255, 0));
    service(&lab, cfg, ForwardMethod::Masq, 8080, 3);
    let key = ServiceKey::tcp(vip(), 80);
    // Ten connections from one /24 all land on the first server rr picked.
    let mut seen = Vec::new();
    for i in 0..10u16 {
        let c = Ipv4Addr::new(198, 51, 100, 10 + (i % 3) as u8);
        let p = Pkt::tcp(c, 30000 + i, VIP, 80, SYN);
        let (a, out) = lab.send(EXT, &p.build());
        assert_eq!(a, Action::Tx(INT));
        assert_nat_frame(&out, &p, 8080);
        seen.push(to_rs(&out));
    }
    assert!(seen.iter().all(|s| *s == seen[0]), "{seen:?}");
    assert_eq!(templates(&lab), 1);
    let svc = lab.ipvs().services().get(&key).unwrap().clone();
    let d = svc.dests.iter().find(|d| d.addr == IpAddr::V4(Ipv4Addr::new(192, 168, 1, seen[0]))).unwrap();
    assert_eq!(d.persistconns(), 1);
    // Another network gets the next server.
    let (_, out) = lab.send(EXT, &Pkt::tcp(Ipv4Addr::new(198, 51, 101, 5), 30100, VIP, 80, SYN).build());
    assert_ne!(to_rs(&out), seen[0]);
    assert_eq!(templates(&lab), 2);
    // The template outlives its connections by the persistence timeout, deferred while it
    // still controls live entries (§9).
    lab.advance(61); // the SYN_RECV entries expire (60 s)
    lab.cx.ipvs.expire_all();
    assert_eq!(templates(&lab), 2);
    lab.advance(300);
    lab.cx.ipvs.expire_all();
    assert_eq!(templates(&lab), 0);
    assert_eq!(d.persistconns(), 0);
    assert!(lab.cx.ipvs.conns.is_empty());
}

#[test]
fn quiescent_template_expires_with_the_sysctl() {
    let mut lab = Lab::new();
    let mut cfg = ServiceConfig::new(ServiceKey::tcp(vip(), 80), "rr");
    cfg.persistent = Some(300);
    service(&lab, cfg, ForwardMethod::Masq, 8080, 2);
    let key = ServiceKey::tcp(vip(), 80);
    let (_, out) = lab.send(EXT, &Pkt::tcp(CLIENT, 31000, VIP, 80, SYN).build());
    let first = to_rs(&out);
    // Quiesce that server: by default the template keeps sending the client there (§6).
    let mut dc = DestConfig::new(IpAddr::V4(Ipv4Addr::new(192, 168, 1, first)), 8080).method(ForwardMethod::Masq);
    dc.weight = 0;
    lab.ipvs().edit_dest(&key, dc).unwrap();
    lab.advance(0);
    let (_, out) = lab.send(EXT, &Pkt::tcp(CLIENT, 31001, VIP, 80, SYN).build());
    assert_eq!(to_rs(&out), first);
    // With expire_quiescent_template the client moves.
    lab.ipvs().sysctl.expire_quiescent_template.store(1, std::sync::atomic::Ordering::Relaxed);
    let (_, out) = lab.send(EXT, &Pkt::tcp(CLIENT, 31002, VIP, 80, SYN).build());
    assert_ne!(to_rs(&out), first);
}

#[test]
fn port_zero_persistent_service_takes_every_port() {
    let mut lab = Lab::new();
    let mut cfg = ServiceConfig::new(ServiceKey::tcp(vip(), 0), "rr");
    cfg.persistent = Some(60);
    service(&lab, cfg, ForwardMethod::Route, 0, 2);
    let (a1, o1) = lab.send(EXT, &Pkt::tcp(CLIENT, 32000, VIP, 22, SYN).build());
    let (a2, o2) = lab.send(EXT, &Pkt::tcp(CLIENT, 32001, VIP, 443, SYN).build());
    assert_eq!((a1, a2), (Action::Tx(INT), Action::Tx(INT)));
    assert_eq!(to_rs(&o1), to_rs(&o2), "same client, same server, any port");
    // DR keeps the destination port.
    assert_eq!(u16::from_be_bytes([o2[36], o2[37]]), 443);
    // A non-persistent port-0 service is refused.
    assert!(lab.ipvs().add_service(ServiceConfig::new(ServiceKey::udp(vip(), 0), "rr")).is_err());
}

#[test]
fn fwmark_service_with_classifier() {
    let mut lab = Lab::new();
    let key = ServiceKey::Fwmark { mark: 7, ipv6: false };
    service(&lab, ServiceConfig::new(key, "rr"), ForwardMethod::Route, 0, 2);
    // 10.0.1.0/24 ports 8000-8999 (TCP) carry mark 7; the addresses are not VIPs otherwise.
    lab.node.set_fwmark_rules(vec![FwmarkRule {
        daddr: "10.0.1.0".parse().unwrap(),
        dprefix: 24,
        saddr: None,
        protocol: 6,
        dports: (8000, 8999),
        mark: 7,
    }]);
    lab.advance(0);
    let target = Ipv4Addr::new(10, 0, 1, 9);
    let p = Pkt::tcp(CLIENT, 33000, target, 8080, SYN);
    let (a, out) = lab.send(EXT, &p.build());
    assert_eq!(a, Action::Tx(INT));
    let n = out[5] - 0x10; // the chosen real server, by its MAC
    assert_eq!(out, p.clone().macs(INT_MAC, rs_mac(n)).ttl(63).build(), "DR: only MACs and TTL change");
    // Later packets of that flow find its connection (through the batch path's flow hash).
    let (a, _) = lab.send(EXT, &Pkt::tcp(CLIENT, 33000, target, 8080, ACK).build());
    assert_eq!(a, Action::Tx(INT));
    assert_eq!(lab.state_of(CLIENT, 33000), Some("ESTABLISHED"));
    let (a, _) = lab.send(EXT, &Pkt::tcp(CLIENT, 33001, target, 9000, SYN).build());
    assert_ne!(a, Action::Tx(INT), "outside the port range: not marked, not balanced");
    // The node answers ARP for addresses the classifier covers.
    let arp = arp_request(target);
    let (a, reply) = lab.send(EXT, &arp);
    assert_eq!(a, Action::Tx(EXT));
    assert_eq!(&reply[6..12], &EXT_MAC);
}

fn arp_request(target: Ipv4Addr) -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&CLIENT_MAC);
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 1]);
    f.extend_from_slice(&CLIENT_MAC);
    f.extend_from_slice(&CLIENT.octets());
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&target.octets());
    f
}

#[test]
fn arp_for_a_vip_is_answered() {
    let mut lab = Lab::new();
    service(&lab, ServiceConfig::new(ServiceKey::tcp(vip(), 80), "rr"), ForwardMethod::Masq, 80, 1);
    lab.advance(0);
    let (a, r) = lab.send(EXT, &arp_request(VIP));
    assert_eq!(a, Action::Tx(EXT));
    assert_eq!(&r[..6], &CLIENT_MAC);
    assert_eq!(&r[6..12], &EXT_MAC);
    assert_eq!(u16::from_be_bytes([r[20], r[21]]), 2, "ARP reply");
    assert_eq!(&r[22..28], &EXT_MAC, "sender MAC is ours");
    assert_eq!(&r[28..32], &VIP.octets());
    // Not ours: no answer.
    let (a, _) = lab.send(EXT, &arp_request(Ipv4Addr::new(10, 9, 9, 9)));
    assert_eq!(a, Action::Local);
}

#[test]
fn one_packet_scheduling_for_udp() {
    let mut lab = Lab::new();
    let mut cfg = ServiceConfig::new(ServiceKey::udp(vip(), 53), "rr");
    cfg.ops = true;
    service(&lab, cfg, ForwardMethod::Masq, 53, 3);
    let mut to = Vec::new();
    for _ in 0..6 {
        // The same client port every time: each datagram is scheduled on its own.
        let p = Pkt::udp(CLIENT, 5353, VIP, 53, b"q");
        let (a, out) = lab.send(EXT, &p.build());
        assert_eq!(a, Action::Tx(INT));
        assert_nat_frame(&out, &p, 53);
        to.push(to_rs(&out));
    }
    assert_eq!(to, [13, 12, 11, 13, 12, 11]);
    assert!(lab.cx.ipvs.conns.is_empty(), "one-packet entries do not stay");
    let svc = lab.ipvs().services().get(&ServiceKey::udp(vip(), 53)).unwrap().clone();
    assert_eq!(svc.stats.read().conns, 6);
    // -o is only for UDP (and fwmark) services.
    let mut bad = ServiceConfig::new(ServiceKey::tcp(vip(), 99), "rr");
    bad.ops = true;
    assert!(lab.ipvs().add_service(bad).is_err());
}

#[test]
fn per_service_timeouts_override_the_global_ones() {
    let mut lab = Lab::new();
    let mut t = Timeouts::default();
    t.set(30, 5, 7);
    let mut cfg = ServiceConfig::new(ServiceKey::tcp(vip(), 80), "rr");
    cfg.timeouts = Some(t);
    service(&lab, cfg, ForwardMethod::Route, 80, 1);
    service(&lab, ServiceConfig::new(ServiceKey::tcp(vip(), 81), "rr"), ForwardMethod::Route, 81, 1);
    let timeout_of = |lab: &Lab, port: u16| {
        let t = &lab.cx.ipvs.conns;
        t.ids().filter_map(|i| t.get(i)).find(|c| c.cport == port).map(|c| c.timeout)
    };
    for (vport, cport) in [(80, 34000), (81, 34001)] {
        lab.send(EXT, &Pkt::tcp(CLIENT, cport, VIP, vport, SYN).build());
        lab.send(EXT, &Pkt::tcp(CLIENT, cport, VIP, vport, ACK).build());
    }
    assert_eq!(timeout_of(&lab, 34000), Some(30));
    assert_eq!(timeout_of(&lab, 34001), Some(900));
    lab.send(EXT, &Pkt::tcp(CLIENT, 34000, VIP, 80, FIN | ACK).build());
    assert_eq!(timeout_of(&lab, 34000), Some(5));
    lab.advance(6);
    lab.cx.ipvs.expire_all();
    assert_eq!(timeout_of(&lab, 34000), None);
    assert_eq!(timeout_of(&lab, 34001), Some(900));
}

/// A SYN reusing the port of a TIME_WAIT entry is rescheduled at once (no 1 s drop, §21.1),
/// and a SYN matching an entry of a removed server goes to a live one.
#[test]
fn port_reuse_and_removed_servers() {
    let mut lab = Lab::new();
    service(&lab, ServiceConfig::new(ServiceKey::tcp(vip(), 80), "rr"), ForwardMethod::Masq, 8080, 2);
    let key = ServiceKey::tcp(vip(), 80);
    let (_, out) = lab.send(EXT, &Pkt::tcp(CLIENT, 35000, VIP, 80, SYN).build());
    let first = to_rs(&out);
    let reply = |n: u8, f: u8| Pkt::tcp(rs(n - 10), 8080, CLIENT, 35000, f).macs(rs_mac(n - 10), INT_MAC).build();
    lab.send(INT, &reply(first, SYN | ACK));
    lab.send(EXT, &Pkt::tcp(CLIENT, 35000, VIP, 80, ACK).build());
    lab.send(EXT, &Pkt::tcp(CLIENT, 35000, VIP, 80, FIN | ACK).build());
    lab.send(INT, &reply(first, FIN | ACK));
    assert_eq!(lab.state_of(CLIENT, 35000), Some("TIME_WAIT"));
    let (a, out) = lab.send(EXT, &Pkt::tcp(CLIENT, 35000, VIP, 80, SYN).build());
    assert_eq!(a, Action::Tx(INT), "the reused port is scheduled at once");
    assert_eq!(lab.state_of(CLIENT, 35000), Some("SYN_RECV"));
    let second = to_rs(&out);
    assert_ne!(second, first, "rescheduled (rr moved on)");
    // Remove that server: its data packets are dropped (expire_nodest_conn=0), but a new SYN
    // on the same client port goes to the remaining server.
    lab.ipvs().delete_dest(&key, &IpAddr::V4(Ipv4Addr::new(192, 168, 1, second)), 8080).unwrap();
    lab.advance(0);
    let (a, _) = lab.send(EXT, &Pkt::tcp(CLIENT, 35000, VIP, 80, ACK).build());
    assert_eq!(a, Action::Drop(netfilter::DropReason::NoDestConn));
    let (a, out) = lab.send(EXT, &Pkt::tcp(CLIENT, 35000, VIP, 80, SYN).build());
    assert_eq!(a, Action::Tx(INT));
    assert_eq!(to_rs(&out), first);
}

/// Graceful drain (rvs, §21.2): the server gets no new connection, its established ones keep
/// flowing until they end or the deadline passes.
#[test]
fn drain_keeps_established_connections() {
    let mut lab = Lab::new();
    service(&lab, ServiceConfig::new(ServiceKey::tcp(vip(), 80), "rr"), ForwardMethod::Masq, 8080, 2);
    let key = ServiceKey::tcp(vip(), 80);
    let (_, out) = lab.send(EXT, &Pkt::tcp(CLIENT, 36000, VIP, 80, SYN).build());
    let drained = to_rs(&out);
    lab.send(EXT, &Pkt::tcp(CLIENT, 36000, VIP, 80, ACK).build());
    let start = std::time::Instant::now();
    let addr = IpAddr::V4(Ipv4Addr::new(192, 168, 1, drained));
    lab.ipvs().drain_dest(&key, &addr, 8080, start + std::time::Duration::from_secs(30)).unwrap();
    lab.advance(0);
    // Established traffic still reaches it.
    let (a, out) = lab.send(EXT, &Pkt::tcp(CLIENT, 36000, VIP, 80, ACK | PSH).payload(b"more").build());
    assert_eq!(a, Action::Tx(INT));
    assert_eq!(to_rs(&out), drained);
    // New connections (also a reused port) go elsewhere.
    for p in 0..5 {
        let (_, out) = lab.send(EXT, &Pkt::tcp(CLIENT, 36100 + p, VIP, 80, SYN).build());
        assert_ne!(to_rs(&out), drained);
    }
    // Reported while draining; not finished while it has connections.
    assert_eq!(lab.ipvs().draining().len(), 1);
    assert!(lab.ipvs().drain_tick(start).is_empty());
    // At the deadline the rest is cut: the sweep drops its entries.
    let done = lab.ipvs().drain_tick(start + std::time::Duration::from_secs(31));
    assert_eq!(done.len(), 1);
    let d = done[0].dest.clone();
    assert!(d.activeconns() + d.inactconns() > 0);
    lab.cx.ipvs.expire_all();
    assert_eq!(d.activeconns() + d.inactconns(), 0);
    let (a, _) = lab.send(EXT, &Pkt::tcp(CLIENT, 36000, VIP, 80, ACK).build());
    assert_ne!(a, Action::Tx(INT));
    // A drain with no connections left finishes at the next tick.
    let other = IpAddr::V4(Ipv4Addr::new(192, 168, 1, if drained == 11 { 12 } else { 11 }));
    lab.ipvs().add_dest(&key, DestConfig::new(addr, 8080).method(ForwardMethod::Masq)).unwrap();
    let _ = other;
    let idle = IpAddr::V4(rs(3));
    lab.ipvs().add_dest(&key, DestConfig::new(idle, 8080).method(ForwardMethod::Masq)).unwrap();
    lab.ipvs().drain_dest(&key, &idle, 8080, start + std::time::Duration::from_secs(3600)).unwrap();
    assert_eq!(lab.ipvs().drain_tick(start).len(), 1);
}

/// Defences (§19), engaged by a nearly full table.
#[test]
fn defense_drop_packet_and_secure_tcp() {
    use std::sync::atomic::Ordering::Relaxed;
    let mut lab = Lab::with_max_conns(64);
    service(&lab, ServiceConfig::new(ServiceKey::tcp(vip(), 80), "rr"), ForwardMethod::Masq, 8080, 1);
    let s = &lab.ipvs().sysctl;
    s.drop_packet.store(3, Relaxed); // always on: drop 1 in am_droprate (10)
    s.amemthresh.store(8, Relaxed);
    lab.advance(1);
    let mut dropped = 0;
    for p in 0..40 {
        let (a, _) = lab.send(EXT, &Pkt::tcp(CLIENT, 37000 + p, VIP, 80, SYN).build());
        if a == Action::Drop(netfilter::DropReason::Defense) {
            dropped += 1;
        }
    }
    assert_eq!(dropped, 4, "1 in 10 new connections");
    // Established traffic is never dropped by it.
    let (a, _) = lab.send(EXT, &Pkt::tcp(CLIENT, 37001, VIP, 80, ACK).build());
    assert_eq!(a, Action::Tx(INT));
    // secure_tcp in automatic mode engages when fewer than amemthresh entries are free.
    let s = &lab.ipvs().sysctl;
    s.drop_packet.store(0, Relaxed);
    s.secure_tcp.store(1, Relaxed);
    lab.advance(1);
    assert!(!lab.cx.ipvs.defense().secure_tcp, "36 of 64 used: not short");
    for p in 0..24 {
        lab.send(EXT, &Pkt::tcp(CLIENT, 38000 + p, VIP, 80, SYN).build());
    }
    lab.advance(1);
    assert!(lab.cx.ipvs.defense().secure_tcp, "60 of 64 used: short");
    // Under the secure table a client ACK does not complete a handshake the server never
    // answered: SYN_RECV stays (INPUT ack@SR = SR).
    assert_eq!(lab.send(EXT, &Pkt::tcp(CLIENT, 38000, VIP, 80, ACK).build()).0, Action::Tx(INT));
    assert_eq!(lab.state_of(CLIENT, 38000), Some("SYN_RECV"));
}

#[test]
fn defense_drop_entry_clears_half_open_connections() {
    use std::sync::atomic::Ordering::Relaxed;
    let mut lab = Lab::with_max_conns(64);
    service(&lab, ServiceConfig::new(ServiceKey::tcp(vip(), 80), "rr"), ForwardMethod::Masq, 8080, 1);
    for p in 0..62 {
        lab.send(EXT, &Pkt::tcp(CLIENT, 39000 + p, VIP, 80, SYN).build());
    }
    assert_eq!(lab.cx.ipvs.conns.len(), 62);
    // Automatic mode: engaged while fewer than amemthresh (64/16 = 4) entries are free, and
    // only until that much room is back.
    lab.ipvs().sysctl.drop_entry.store(1, Relaxed);
    for _ in 0..40 {
        lab.advance(1);
    }
    assert_eq!(lab.cx.ipvs.conns.len(), 60);
    // Always on: each second 1/32 of the table is visited; within ~32 s every half-open
    // entry is gone (long before their 60 s SYN_RECV timeout).
    lab.ipvs().sysctl.drop_entry.store(3, Relaxed);
    for _ in 0..34 {
        lab.advance(1);
    }
    assert_eq!(lab.cx.ipvs.conns.len(), 0);
}

/// Only ARP aimed at the node creates neighbour entries (as the kernel), so a flood of made-up
/// senders asking for other hosts does not grow the table.
#[test]
fn arp_learning_is_bounded_to_what_concerns_us() {
    let mut lab = Lab::new();
    service(&lab, ServiceConfig::new(ServiceKey::tcp(vip(), 80), "rr"), ForwardMethod::Masq, 80, 1);
    lab.advance(0);
    for i in 0..500u32 {
        let mut f = arp_request(Ipv4Addr::new(10, 9, 9, 9));
        f[6 + 5] = i as u8; // sender MAC
        f[22 + 5] = i as u8;
        f[28..32].copy_from_slice(&Ipv4Addr::from(0xc633_6400 + i).octets()); // sender IP
        assert_eq!(lab.send(EXT, &f).0, Action::Local);
    }
    assert_eq!(lab.node.learnt_neighbours(), 0);
    // A request for the VIP teaches us its sender.
    assert_eq!(lab.send(EXT, &arp_request(VIP)).0, Action::Tx(EXT));
    assert_eq!(lab.node.learnt_neighbours(), 1);
}

/// Upper and lower thresholds (§15): a dest at its upper threshold is OVERLOADed and skipped;
/// it takes new connections again once below the lower threshold.
#[test]
fn thresholds_overload_and_recover() {
    let mut lab = Lab::new();
    let key = ServiceKey::tcp(vip(), 80);
    lab.ipvs().add_service(ServiceConfig::new(key, "wlc")).unwrap();
    // rs1 weight 100 (preferred by wlc) but at most 2 connections; rs2 weight 1.
    lab.ipvs()
        .add_dest(&key, DestConfig::new(rs(1).into(), 80).method(ForwardMethod::Masq).weight(100).thresholds(2, 1))
        .unwrap();
    lab.ipvs().add_dest(&key, DestConfig::new(rs(2).into(), 80).method(ForwardMethod::Masq).weight(1)).unwrap();
    lab.advance(0);
    let mut to = Vec::new();
    for p in 0..4 {
        let (_, out) = lab.send(EXT, &Pkt::tcp(CLIENT, 44000 + p, VIP, 80, SYN).build());
        to.push(to_rs(&out));
    }
    // wlc: the tie at zero load keeps the list head (rs2, newest); then rs1's weight wins until
    // it holds 2 connections and is OVERLOADed.
    assert_eq!(to, [12, 11, 11, 12], "rs1 overloaded after 2");
    let rs1 =
        lab.ipvs().services().get(&key).unwrap().dests.iter().find(|d| d.addr == IpAddr::V4(rs(1))).unwrap().clone();
    assert!(rs1.is_overloaded());
    // Both of rs1's connections end (SYN_RECV expires after 60 s): below the lower threshold.
    lab.advance(61);
    lab.cx.ipvs.expire_all();
    assert!(!rs1.is_overloaded());
    // Idle again: the tie goes to the list head, then rs1 takes connections again.
    let mut to = Vec::new();
    for p in 0..2 {
        let (_, out) = lab.send(EXT, &Pkt::tcp(CLIENT, 44010 + p, VIP, 80, SYN).build());
        to.push(to_rs(&out));
    }
    assert_eq!(to, [12, 11]);
}

/// `expire_nodest_conn=1`: a packet of a connection whose real server was removed expires it and
/// is scheduled afresh when it may open a connection (UDP), instead of being dropped (§2, §6).
#[test]
fn expire_nodest_conn_reschedules() {
    use std::sync::atomic::Ordering::Relaxed;
    let mut lab = Lab::new();
    service(&lab, ServiceConfig::new(ServiceKey::udp(vip(), 53), "rr"), ForwardMethod::Masq, 53, 2);
    let key = ServiceKey::udp(vip(), 53);
    let (_, out) = lab.send(EXT, &Pkt::udp(CLIENT, 45000, VIP, 53, b"a").build());
    let first = to_rs(&out);
    lab.ipvs().delete_dest(&key, &IpAddr::V4(Ipv4Addr::new(192, 168, 1, first)), 53).unwrap();
    lab.advance(0);
    let (a, _) = lab.send(EXT, &Pkt::udp(CLIENT, 45000, VIP, 53, b"b").build());
    assert_eq!(a, Action::Drop(netfilter::DropReason::NoDestConn), "default: dropped");
    lab.ipvs().sysctl.expire_nodest_conn.store(1, Relaxed);
    let p = Pkt::udp(CLIENT, 45000, VIP, 53, b"c");
    let (a, out) = lab.send(EXT, &p.build());
    assert_eq!(a, Action::Tx(INT));
    assert_ne!(to_rs(&out), first);
    assert_nat_frame(&out, &p, 53);
}
