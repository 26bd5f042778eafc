//! Property tests (own generator, fixed seeds, many cases): for any sequence of packets from a
//! set of clients in both directions, with clock jumps and administrative changes, the
//! connection counts never go negative, ActiveConn + InActConn equals the table's content,
//! PersistConn equals the templates, and every connection expires.

mod common;

use std::net::{IpAddr, Ipv4Addr};

use common::*;
use ipvs::{DestConfig, ForwardMethod, ServiceConfig, ServiceKey};

fn setup(lab: &Lab) -> Vec<ServiceKey> {
    let vip = IpAddr::V4(VIP);
    let nat = ServiceKey::tcp(vip, 80);
    let dr = ServiceKey::tcp(vip, 443);
    let udp = ServiceKey::udp(vip, 53);
    let mut p = ServiceConfig::new(ServiceKey::tcp(vip, 8080), "wlc");
    p.persistent = Some(120);
    lab.ipvs().add_service(ServiceConfig::new(nat, "rr")).unwrap();
    lab.ipvs().add_service(ServiceConfig::new(dr, "wlc")).unwrap();
    lab.ipvs().add_service(ServiceConfig::new(udp, "sh")).unwrap();
    lab.ipvs().add_service(p).unwrap();
    let keys = vec![nat, dr, udp, ServiceKey::tcp(vip, 8080)];
    for (i, k) in keys.iter().enumerate() {
        let m = if i == 1 { ForwardMethod::Route } else { ForwardMethod::Masq };
        for n in 1..=3 {
            let port = match k {
                ServiceKey::Addr { port, .. } => *port,
                _ => 0,
            };
            lab.ipvs().add_dest(k, DestConfig::new(rs(n).into(), port).method(m)).unwrap();
        }
    }
    keys
}

/// Check the invariants against the table and every dest (live or removed).
fn check(lab: &Lab, dests: &[std::sync::Arc<ipvs::Dest>], step: usize) {
    let t = &lab.cx.ipvs.conns;
    let entries: Vec<_> = t.ids().filter_map(|i| t.get(i)).collect();
    let conns = entries.iter().filter(|c| !c.is_template()).count() as u64;
    let templates = entries.iter().filter(|c| c.is_template()).count() as u64;
    let mut counted = 0u64;
    let mut persist = 0u64;
    for d in dests {
        for v in [d.activeconns(), d.inactconns(), d.persistconns()] {
            assert!(v < 1 << 30, "step {step}: a counter went negative ({v})");
        }
        counted += (d.activeconns() + d.inactconns()) as u64;
        persist += d.persistconns() as u64;
    }
    assert_eq!(counted, conns, "step {step}: ActiveConn + InActConn ≠ connections in the table");
    assert_eq!(persist, templates, "step {step}: PersistConn ≠ templates in the table");
    let active = entries.iter().filter(|c| !c.is_template() && c.is_active()).count() as u64;
    let dest_active: u64 = dests.iter().map(|d| d.activeconns() as u64).sum();
    assert_eq!(active, dest_active, "step {step}: ActiveConn ≠ active entries");
}

#[test]
fn counts_stay_consistent_and_everything_expires() {
    for seed in 1..=12u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        let mut lab = Lab::new();
        let keys = setup(&lab);
        let mut dests: Vec<std::sync::Arc<ipvs::Dest>> = Vec::new();
        let collect = |lab: &Lab, dests: &mut Vec<std::sync::Arc<ipvs::Dest>>| {
            for s in lab.ipvs().services().order().iter() {
                for d in &s.dests {
                    if !dests.iter().any(|x| std::sync::Arc::ptr_eq(x, d)) {
                        dests.push(d.clone());
                    }
                }
            }
        };
        collect(&lab, &mut dests);
        for step in 0..1500 {
            let client = Ipv4Addr::new(198, 51, 100, 10 + rng.below(6) as u8);
            let cport = 1000 + rng.below(8) as u16;
            let flags = [SYN, ACK, ACK | PSH, FIN | ACK, RST, SYN | ACK, 0][rng.below(7) as usize];
            match rng.below(10) {
                0..=4 => {
                    let (port, tcp) = [(80, true), (443, true), (53, false), (8080, true)][rng.below(4) as usize];
                    let p = if tcp {
                        Pkt::tcp(client, cport, VIP, port, flags)
                    } else {
                        Pkt::udp(client, cport, VIP, port, b"x")
                    };
                    lab.send(EXT, &p.build());
                }
                5..=6 => {
                    // A reply from a real server (NAT), matching or not.
                    let n = 1 + rng.below(3) as u8;
                    let (sport, tcp) = [(80, true), (53, false), (8080, true)][rng.below(3) as usize];
                    let p = if tcp {
                        Pkt::tcp(rs(n), sport, client, cport, flags)
                    } else {
                        Pkt::udp(rs(n), sport, client, cport, b"y")
                    };
                    lab.send(INT, &p.macs(rs_mac(n), INT_MAC).build());
                }
                7 => {
                    lab.advance(rng.below(200));
                    lab.cx.ipvs.expire(rng.below(64) as usize + 1);
                }
                8 => {
                    // Administrative churn: remove or re-add a real server, or quiesce one.
                    let k = keys[rng.below(keys.len() as u64) as usize];
                    let n = 1 + rng.below(3) as u8;
                    let port = match k {
                        ServiceKey::Addr { port, .. } => port,
                        _ => 0,
                    };
                    let m = if k == keys[1] { ForwardMethod::Route } else { ForwardMethod::Masq };
                    let cfg = DestConfig::new(rs(n).into(), port).method(m);
                    match rng.below(3) {
                        0 => drop(lab.ipvs().delete_dest(&k, &rs(n).into(), port)),
                        1 => drop(lab.ipvs().add_dest(&k, cfg)),
                        _ => drop(lab.ipvs().edit_dest(&k, cfg.weight(rng.below(3) as i32))),
                    }
                    lab.advance(0);
                    collect(&lab, &mut dests);
                }
                _ => {
                    lab.cx.ipvs.expire(rng.below(256) as usize + 1);
                }
            }
            check(&lab, &dests, step);
        }
        // Every connection and template expires (the longest timeout is 900 s; deferred
        // templates go 60 s after their last connection).
        for _ in 0..20 {
            lab.advance(120);
            lab.cx.ipvs.expire_all();
        }
        assert!(lab.cx.ipvs.conns.is_empty(), "seed {seed}: {} entries left", lab.cx.ipvs.conns.len());
        check(&lab, &dests, usize::MAX);
    }
}
