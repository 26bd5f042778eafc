//! The established-flow shortcut (`node/src/shortcut.rs`, `ipvs/src/fastpath.rs`) is an exact
//! stand-in for the hook chains: two directors fed the same random traffic and the same
//! administrative changes, one with the shortcut and one without, must send the same frames,
//! drop the same packets for the same reasons and end with the same connection table, stats
//! and counters. And the shortcut steps aside as soon as any other hook is registered.

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::*;
use ipvs::{DestConfig, ForwardMethod, ServiceConfig, ServiceKey};
use netfilter::{CsumState, Family, HookOps, HookPoint, Skb, Verdict};
use node::Action;

/// Services: NAT TCP 80 (rr), DR TCP 443 (wlc), NAT UDP 53 (sh), TUN TCP 8443, persistent NAT
/// TCP 8080; real servers .11–.13, plus .60 (no known MAC) on port 80.
fn setup(lab: &Lab) -> Vec<(ServiceKey, ForwardMethod)> {
    let vip = IpAddr::V4(VIP);
    let mut persistent = ServiceConfig::new(ServiceKey::tcp(vip, 8080), "wlc");
    persistent.persistent = Some(120);
    let services = [
        (ServiceConfig::new(ServiceKey::tcp(vip, 80), "rr"), ForwardMethod::Masq),
        (ServiceConfig::new(ServiceKey::tcp(vip, 443), "wlc"), ForwardMethod::Route),
        (ServiceConfig::new(ServiceKey::udp(vip, 53), "sh"), ForwardMethod::Masq),
        (ServiceConfig::new(ServiceKey::tcp(vip, 8443), "rr"), ForwardMethod::Tunnel),
        (persistent, ForwardMethod::Masq),
    ];
    let mut keys = Vec::new();
    for (cfg, m) in services {
        let key = cfg.key;
        lab.ipvs().add_service(cfg).unwrap();
        for n in 1..=3 {
            lab.ipvs().add_dest(&key, DestConfig::new(rs(n).into(), 8000 + n as u16).method(m)).unwrap();
        }
        keys.push((key, m));
    }
    let no_mac = Ipv4Addr::new(192, 168, 1, 60);
    lab.ipvs().add_dest(&keys[0].0, DestConfig::new(no_mac.into(), 8080).method(ForwardMethod::Masq)).unwrap();
    keys
}

/// Rewrite the IPv4 header checksum after a deliberate header change.
fn fix_ip_csum(f: &mut [u8]) {
    f[24] = 0;
    f[25] = 0;
    let c = wire::checksum::checksum(&f[14..34]);
    f[24..26].copy_from_slice(&c.to_be_bytes());
}

/// One random frame: mostly well-formed traffic of a small set of flows in both directions,
/// some of it bent in the ways the shortcut must hand back to the hooks.
fn frame(rng: &mut Rng) -> (u32, Vec<u8>) {
    let client = Ipv4Addr::new(198, 51, 100, 10 + rng.below(2) as u8);
    let cport = 1000 + rng.below(3) as u16;
    const EVENTS: [u8; 16] = [
        SYN,
        SYN,
        ACK,
        ACK,
        ACK,
        ACK,
        ACK,
        ACK,
        ACK | PSH,
        ACK | PSH,
        ACK | PSH,
        ACK | PSH,
        FIN | ACK,
        RST,
        SYN | ACK,
        0,
    ];
    let flags = EVENTS[rng.below(16) as usize];
    // 1473 bytes of payload take a packet one byte over the 1500-byte MTU.
    let payload = vec![0x5a; [0, 10, 100, 100, 100, 1473][rng.below(6) as usize]];
    let (in_if, mut p) = if rng.below(3) < 2 {
        let (port, tcp) = [(80, true), (443, true), (53, false), (8443, true), (8080, true)][rng.below(5) as usize];
        let p = if tcp { Pkt::tcp(client, cport, VIP, port, flags) } else { Pkt::udp(client, cport, VIP, port, b"q") };
        (EXT, p.macs(GW_MAC, EXT_MAC))
    } else {
        let n = 1 + rng.below(3) as u8;
        let (sport, tcp) =
            [(8000 + n as u16, true), (8000 + n as u16, false), (8002, true), (443, true)][rng.below(4) as usize];
        let p = if tcp {
            Pkt::tcp(rs(n), sport, client, cport, flags)
        } else {
            Pkt::udp(rs(n), sport, client, cport, b"r")
        };
        (INT, p.macs(rs_mac(n), INT_MAC))
    };
    p = p.payload(&payload);
    match rng.below(24) {
        0 => p = p.ttl(1),
        1 => p = p.ttl(2),
        2 => p.dst_mac = [2, 0, 0, 0, 0, 0x99],
        _ => {}
    }
    let mut f = p.build();
    match rng.below(24) {
        0 => f[24] ^= 0x40, // bad header checksum
        1 => {
            f[20] |= 0x20; // more fragments
            fix_ip_csum(&mut f);
        }
        2 => f.extend_from_slice(&[0; 6]), // Ethernet padding
        3 if f[23] == 17 => {
            f[40] = 0; // UDP without checksum
            f[41] = 0;
        }
        4 => f.truncate(40), // cut inside the transport header
        5 => {
            f[26] = 224; // multicast source
            fix_ip_csum(&mut f);
        }
        _ => {}
    }
    (in_if, f)
}

/// Everything observable about a director after a step.
fn state(lab: &Lab) -> String {
    let t = &lab.cx.ipvs.conns;
    let mut conns: Vec<String> = t
        .ids()
        .filter_map(|id| t.get(id))
        .map(|c| {
            let a = t.addrs(c);
            format!(
                "{} {}:{} {}:{} {}:{} s{} f{:x} t{} e{} n{} c{}",
                c.protocol,
                a.caddr,
                c.cport,
                a.vaddr,
                c.vport,
                a.daddr,
                c.dport,
                c.state,
                c.flags,
                c.timeout,
                c.expires,
                c.in_pkts,
                c.n_control
            )
        })
        .collect();
    conns.sort();
    let services = lab.ipvs().services();
    let mut stats = Vec::new();
    for s in services.order().iter() {
        stats.push(format!("{:?} {:?}", s.config.key, s.stats.raw()));
        for d in &s.dests {
            stats.push(format!("  {} {:?} a{} i{}", d.addr, d.stats.raw(), d.activeconns(), d.inactconns()));
        }
    }
    let mut counts = lab.node.counters.read();
    counts.shortcut = 0;
    format!("{conns:#?}\n{stats:#?}\n{:?}\n{counts:?}\nwanted {:?}", lab.ipvs().total.raw(), lab.cx.arp_wanted)
}

#[test]
fn shortcut_matches_the_hooks() {
    let mut taken = 0;
    for seed in 1..=8u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        let (mut fast, mut slow) = (Lab::new(), Lab::new());
        slow.node.set_shortcut(false);
        let keys = setup(&fast);
        setup(&slow);
        for step in 0..3000 {
            match rng.below(40) {
                0 => {
                    let secs = rng.below(30);
                    fast.advance(secs);
                    slow.advance(secs);
                    let n = rng.below(64) as usize + 1;
                    fast.cx.ipvs.expire(n);
                    slow.cx.ipvs.expire(n);
                }
                1 => {
                    // Quiesce, restore or remove a real server on both.
                    let (k, m) = keys[rng.below(keys.len() as u64) as usize];
                    let n = 1 + rng.below(3) as u8;
                    let cfg = DestConfig::new(rs(n).into(), 8000 + n as u16).method(m);
                    let w = rng.below(3) as i32;
                    for lab in [&fast, &slow] {
                        match w {
                            0 => drop(lab.ipvs().delete_dest(&k, &rs(n).into(), 8000 + n as u16)),
                            1 => drop(lab.ipvs().add_dest(&k, cfg)),
                            _ => drop(lab.ipvs().edit_dest(&k, cfg.weight(0))),
                        }
                    }
                    fast.advance(0);
                    slow.advance(0);
                }
                _ => {
                    let (in_if, f) = frame(&mut rng);
                    // Some frames as a peer with checksum offload hands them over.
                    let csum = if rng.below(4) == 0 { CsumState::Partial } else { CsumState::None };
                    let before = fast.node.counters.read().shortcut;
                    let (a, out_a) = fast.send_csum(in_if, &f, csum);
                    let (b, out_b) = slow.send_csum(in_if, &f, csum);
                    assert_eq!(a, b, "seed {seed} step {step}: verdicts differ for {f:02x?}");
                    if matches!(a, Action::Tx(_)) {
                        assert_eq!(out_a, out_b, "seed {seed} step {step}: frames differ");
                    }
                    taken += (fast.node.counters.read().shortcut - before) as usize;
                }
            }
            if step % 50 == 0 {
                assert_eq!(state(&fast), state(&slow), "seed {seed} step {step}");
            }
        }
        assert_eq!(state(&fast), state(&slow), "seed {seed} at the end");
        assert_eq!(slow.node.counters.read().shortcut, 0, "shortcut off means off");
    }
    assert!(taken > 2000, "the shortcut carried only {taken} packets: the test would prove nothing");
}

/// A hook that counts the packets it sees.
fn counting_hook(seen: Arc<AtomicUsize>) -> HookOps<node::WorkerCtx> {
    let hook = move |_: &mut node::WorkerCtx, _: &mut Skb<'_>, _: HookPoint| {
        seen.fetch_add(1, Ordering::Relaxed);
        Verdict::Accept
    };
    HookOps {
        family: Family::Ipv4,
        point: HookPoint::PreRouting,
        priority: netfilter::priority::FILTER,
        name: "count".into(),
        hook: Arc::new(hook),
    }
}

#[test]
fn another_hook_on_the_path_turns_the_shortcut_off() {
    let mut lab = Lab::new();
    let key = ServiceKey::tcp(IpAddr::V4(VIP), 80);
    lab.ipvs().add_service(ServiceConfig::new(key, "rr")).unwrap();
    lab.ipvs().add_dest(&key, DestConfig::new(rs(1).into(), 8080)).unwrap();
    let syn = Pkt::tcp(CLIENT, 4000, VIP, 80, SYN).macs(GW_MAC, EXT_MAC).build();
    let ack = Pkt::tcp(CLIENT, 4000, VIP, 80, ACK).macs(GW_MAC, EXT_MAC).build();
    assert_eq!(lab.send(EXT, &syn).0, Action::Tx(INT));
    assert_eq!(lab.send(EXT, &ack).0, Action::Tx(INT));
    assert_eq!(lab.node.counters.read().shortcut, 1, "an established packet takes the shortcut");

    let seen = Arc::new(AtomicUsize::new(0));
    let h = lab.node.hooks.register(counting_hook(seen.clone()));
    for _ in 0..5 {
        assert_eq!(lab.send(EXT, &ack).0, Action::Tx(INT));
    }
    assert_eq!(seen.load(Ordering::Relaxed), 5, "the PRE_ROUTING hook saw every packet");
    assert_eq!(lab.node.counters.read().shortcut, 1, "no shortcut while another hook is registered");

    lab.node.hooks.unregister(h);
    assert_eq!(lab.send(EXT, &ack).0, Action::Tx(INT));
    assert_eq!(seen.load(Ordering::Relaxed), 5);
    assert_eq!(lab.node.counters.read().shortcut, 2, "back on the shortcut once it is gone");
}

/// Established packets of every forwarding method the shortcut takes — NAT, DR, IPIP and GUE
/// tunnels — leave exactly as through the hooks, and really went by the shortcut.
#[test]
fn every_method_takes_the_shortcut_with_the_same_frames() {
    let (mut fast, mut slow) = (Lab::new(), Lab::new());
    slow.node.set_shortcut(false);
    let vip = IpAddr::V4(VIP);
    let gue = {
        let mut d = DestConfig::new(rs(4).into(), 0).method(ForwardMethod::Tunnel);
        d.tun_type = ipvs::TunnelType::Gue;
        d.tun_port = 6080;
        d.tun_csum = ipvs::TunnelCsum::Csum;
        d
    };
    let services = [
        (80, DestConfig::new(rs(1).into(), 8080).method(ForwardMethod::Masq)),
        (443, DestConfig::new(rs(2).into(), 443).method(ForwardMethod::Route)),
        (8443, DestConfig::new(rs(3).into(), 8443).method(ForwardMethod::Tunnel)),
        (9443, gue),
    ];
    for lab in [&fast, &slow] {
        for (port, d) in services {
            let key = ServiceKey::tcp(vip, port);
            lab.ipvs().add_service(ServiceConfig::new(key, "rr")).unwrap();
            lab.ipvs().add_dest(&key, d).unwrap();
        }
    }
    for (port, _) in services {
        let syn = Pkt::tcp(CLIENT, 5000 + port, VIP, port, SYN).macs(GW_MAC, EXT_MAC).build();
        assert_eq!(fast.send(EXT, &syn), slow.send(EXT, &syn), "port {port}: SYN");
        let before = fast.node.counters.read().shortcut;
        for n in 0..5u8 {
            let ack =
                Pkt::tcp(CLIENT, 5000 + port, VIP, port, ACK | PSH).macs(GW_MAC, EXT_MAC).payload(&[n; 40]).build();
            let (a, fa) = fast.send(EXT, &ack);
            let (b, fb) = slow.send(EXT, &ack);
            assert_eq!(a, Action::Tx(INT), "port {port}");
            assert_eq!((a, &fa), (b, &fb), "port {port}: packet {n}");
            verify_checksums(&fa);
        }
        assert_eq!(fast.node.counters.read().shortcut - before, 5, "port {port}: all five by the shortcut");
    }
    assert_eq!(state(&fast), state(&slow));
}

/// Frames as `Node::process_batch_ahead` takes them (xdp::worker): batches of random sizes, each
/// processed with the next in hand (its first pipeline stage run meanwhile), against the same
/// frames sent one at a time. The client address 198.51.100.10 becomes a VIP and stops being
/// one between batches, so a staged batch's hashes (taken as replies to a client) go stale
/// and must be taken again: verdicts, frames and the whole director state must not differ.
#[test]
fn batches_with_the_next_in_hand_match_frames_one_at_a_time() {
    let client_vip = ServiceKey::tcp(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 10)), 1000);
    for seed in 1..=6u64 {
        let mut rng = Rng(seed.wrapping_mul(0xd134_2543_de82_ef95) | 1);
        let (mut batched, mut single) = (Lab::new(), Lab::new());
        setup(&batched);
        setup(&single);
        // The batches to come: (in_if, frame) each.
        let mut batches: Vec<Vec<(u32, Vec<u8>)>> =
            (0..300).map(|_| (0..1 + rng.below(40)).map(|_| frame(&mut rng)).collect()).collect();
        let mut staged: Vec<u32> = Vec::new();
        let mut restaged = 0;
        for b in 0..batches.len() {
            if rng.below(8) == 0 {
                for lab in [&batched, &single] {
                    if lab.ipvs().services().get(&client_vip).is_some() {
                        lab.ipvs().delete_service(&client_vip).unwrap();
                    } else {
                        lab.ipvs().add_service(ServiceConfig::new(client_vip, "rr")).unwrap();
                        lab.ipvs().add_dest(&client_vip, DestConfig::new(rs(1).into(), 9000)).unwrap();
                    }
                }
                restaged += usize::from(!staged.is_empty());
            }
            // One at a time.
            let mut want = Vec::new();
            for (in_if, f) in &batches[b] {
                want.push(single.send(*in_if, f));
            }
            // The batch, with the next one's first stage run while it is processed.
            let (cur, rest) = batches.split_at_mut(b + 1);
            let cur = &mut cur[b];
            let next = rest.first_mut().map_or(&mut [][..], |v| &mut v[..]);
            let mut bufs: Vec<Vec<u8>> = cur
                .iter()
                .chain(next.iter())
                .map(|(_, f)| {
                    let mut v = vec![0u8; HEADROOM + f.len()];
                    v[HEADROOM..].copy_from_slice(f);
                    v
                })
                .collect();
            let (cur_bufs, next_bufs) = bufs.split_at_mut(cur.len());
            let mut cur_skbs: Vec<Skb<'_>> = cur.iter().zip(cur_bufs.iter_mut()).map(|(x, b)| skb(x, b)).collect();
            for (s, h) in cur_skbs.iter_mut().zip(staged.iter()) {
                s.hash = *h; // as the previous call left them
            }
            let mut next_skbs: Vec<Skb<'_>> = next.iter().zip(next_bufs.iter_mut()).map(|(x, b)| skb(x, b)).collect();
            let mut actions = vec![Action::Local; cur_skbs.len()];
            let tr = batched.node.begin_batch(&mut batched.cx, batched.now);
            batched.node.process_batch_ahead(&tr, &mut batched.cx, &mut cur_skbs, &mut actions, &mut next_skbs);
            staged = next_skbs.iter().map(|s| s.hash).collect();
            for (i, (a, out)) in want.iter().enumerate() {
                assert_eq!(actions[i], *a, "seed {seed} batch {b} frame {i}: verdicts differ");
                if matches!(a, Action::Tx(_)) {
                    assert_eq!(cur_skbs[i].frame.data(), &out[..], "seed {seed} batch {b} frame {i}: frames differ");
                }
            }
            assert_eq!(state(&batched), state(&single), "seed {seed} after batch {b}");
        }
        assert!(restaged > 10, "the service table changed under a staged batch only {restaged} times");
    }
}

/// A received frame in `buf` (headroom in front) as the batch entry point takes it.
fn skb<'a>((in_if, _): &(u32, Vec<u8>), buf: &'a mut [u8]) -> Skb<'a> {
    let len = buf.len() - HEADROOM;
    let mut s = Skb::new(wire::Frame::new(buf, HEADROOM, len).unwrap(), 14, Family::Ipv4);
    s.in_if = *in_if;
    s
}
