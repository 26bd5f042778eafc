//! `cargo bench --bench engine`: ns per packet through the whole node path (L2, IP checks,
//! hooks, IPVS, transmitter, neighbour stage) on one core, against a baseline measured in the
//! same run (copy the frame and recompute its checksums). See BENCHMARKS.md.
//!
//! Flows are drawn at random across the whole table, so the table's memory behaviour is
//! measured, not one hot flow. Environment: `RVS_BENCH_CONNS` (default 1 000 000),
//! `RVS_BENCH_RUNS` (default 5; the median is printed).

#[path = "../tests/common/mod.rs"]
mod common;

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Instant;

use common::*;
use ipvs::{DestConfig, ForwardMethod, ServiceConfig, ServiceKey};
use netfilter::{Family, Skb};
use node::{Action, Node, WorkerCtx};
use wire::Frame;

const BATCH: usize = 32;
const FRAME: usize = 64;

/// Frames of equal length packed in one buffer, in random flow order.
struct Pool {
    data: Vec<u8>,
    len: usize,
}

impl Pool {
    fn new(frames: impl Iterator<Item = Vec<u8>>, n: usize, seed: u64) -> Pool {
        let mut data = vec![0u8; n * FRAME];
        let mut len = 0;
        let mut order: Vec<usize> = (0..n).collect();
        let mut x = seed | 1;
        for i in (1..n).rev() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            order.swap(i, (x % (i as u64 + 1)) as usize);
        }
        for (i, f) in frames.enumerate().take(n) {
            len = f.len();
            assert!(len <= FRAME);
            let at = order[i] * FRAME;
            data[at..at + len].copy_from_slice(&f);
        }
        Pool { data, len }
    }
    fn count(&self) -> usize {
        self.data.len() / FRAME
    }
    fn frame(&self, i: usize) -> &[u8] {
        &self.data[i * FRAME..i * FRAME + self.len]
    }
}

fn client(i: usize) -> (Ipv4Addr, u16) {
    // 16 ports per address, addresses spread over 10.128.0.0/9 behind the gateway.
    (Ipv4Addr::from(0x0a80_0000u32 + (i / 16) as u32), 10_000 + (i % 16) as u16)
}

fn director(conns: usize) -> (Arc<Node>, WorkerCtx) {
    let ipvs = Arc::new(ipvs::Ipvs::new(conns * 2 + 1024));
    let mut net = topology();
    for n in 0..100u32 {
        let a = Ipv4Addr::from(u32::from(rs(1)) + n);
        net.neighbours.insert(IpAddr::V4(a), wire::MacAddr([2, 0, 0, 0, 2, n as u8]));
    }
    let node = Node::new(ipvs, net);
    // RVS_BENCH_SHORTCUT=0: every packet through the hook chains (the path without the
    // established-flow shortcut), for comparison.
    node.set_shortcut(std::env::var("RVS_BENCH_SHORTCUT").map_or(true, |v| v != "0"));
    let cx = node.worker(0);
    (node, cx)
}

/// Run every frame of the pool through the node; returns ns per packet. Batches go as an
/// AF_XDP worker gives them (`xdp::worker`): the frames of the batch to come are in hand while
/// one is processed, and `Node::process_batch_ahead` runs their first pipeline stage then.
/// `RVS_BENCH_AHEAD=0`: every batch on its own (`Node::process_batch`), for comparison.
fn run(node: &Node, cx: &mut WorkerCtx, pool: &Pool, in_if: u32, expect: Action) -> f64 {
    let ahead = std::env::var("RVS_BENCH_AHEAD").map_or(true, |v| v != "0");
    // Two batches' buffers, as a receive ring holds them: the current batch and the next.
    let mut bufs = vec![[0u8; 256]; 2 * BATCH];
    let bufs_ptr = bufs.as_mut_ptr();
    let mut actions = [Action::Local; BATCH];
    let n = pool.count() / BATCH * BATCH;
    let batches = n / BATCH;
    // The frames of batch `b` in buffer half `b % 2`, described as a ring gives them.
    let load = |b: usize| -> [Skb<'_>; BATCH] {
        std::array::from_fn(|k| {
            // SAFETY: half `b % 2` is used by batch `b` alone; the batch that used it before
            // (b - 2) was processed and dropped before this one is loaded.
            let buf = unsafe { &mut *bufs_ptr.add((b % 2) * BATCH + k) };
            let f = pool.frame(b * BATCH + k);
            buf[HEADROOM..HEADROOM + f.len()].copy_from_slice(f);
            let mut skb = Skb::new(Frame::new(buf, HEADROOM, f.len()).unwrap(), 14, Family::Ipv4);
            skb.in_if = in_if;
            skb
        })
    };
    let mut wrong = 0usize;
    let start = Instant::now();
    let mut cur = load(0);
    for b in 0..batches {
        let tr = node.begin_batch(cx, 1_000_000);
        if ahead && b + 1 < batches {
            let mut next = load(b + 1);
            node.process_batch_ahead(&tr, cx, &mut cur, &mut actions, &mut next);
            cur = next;
        } else {
            node.process_batch(&tr, cx, &mut cur, &mut actions);
            if b + 1 < batches {
                cur = load(b + 1);
            }
        }
        wrong += actions.iter().filter(|a| **a != expect).count();
        black_box(&actions);
    }
    let ns = start.elapsed().as_nanos() as f64 / n as f64;
    drop(bufs);
    assert_eq!(wrong, 0, "every packet must be forwarded as {expect:?}");
    ns
}

/// Transparent huge pages for a large table, as the connection table asks (ipvs conn/table.rs).
fn advise_huge(ptr: *const u8, len: usize) {
    const HUGE: usize = 2 << 20;
    let start = (ptr as usize).next_multiple_of(HUGE);
    let end = (ptr as usize + len) & !(HUGE - 1);
    if end > start {
        // SAFETY: the range lies inside an allocation we own; MADV_HUGEPAGE does not touch
        // its contents.
        unsafe {
            libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE);
        }
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn syn_frames(port: u16, n: usize) -> impl Iterator<Item = Vec<u8>> {
    (0..n).map(move |i| {
        let (a, p) = client(i);
        Pkt::tcp(a, p, VIP, port, SYN).macs(GW_MAC, EXT_MAC).build()
    })
}

fn ack_frames(port: u16, n: usize) -> impl Iterator<Item = Vec<u8>> {
    (0..n).map(move |i| {
        let (a, p) = client(i);
        Pkt::tcp(a, p, VIP, port, ACK | PSH).macs(GW_MAC, EXT_MAC).payload(b"0123456789").build()
    })
}

/// A director with one service of `method` over `dests` real servers, and `conns` flows
/// opened through it.
fn established(method: ForwardMethod, sched: &str, port: u16, dests: u8, conns: usize) -> (Arc<Node>, WorkerCtx) {
    let (node, mut cx) = director(conns);
    let key = ServiceKey::tcp(IpAddr::V4(VIP), port);
    node.ipvs.add_service(ServiceConfig::new(key, sched)).unwrap();
    for n in 1..=dests {
        node.ipvs.add_dest(&key, DestConfig::new(rs(n).into(), 8080).method(method)).unwrap();
    }
    let syns = Pool::new(syn_frames(port, conns), conns, 7);
    run(&node, &mut cx, &syns, EXT, Action::Tx(INT));
    assert_eq!(cx.ipvs.conns.len(), conns);
    (node, cx)
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing useful either.
    let conns: usize =
        std::env::var("RVS_BENCH_CONNS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000) / BATCH * BATCH;
    let runs: usize = std::env::var("RVS_BENCH_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(5);
    // RVS_BENCH_ONLY=<scenario> runs just that one (for profiling).
    // A comma-separated list: RVS_BENCH_ONLY=lookup-baseline,nat-established.
    let only = std::env::var("RVS_BENCH_ONLY").ok();
    let want = |name: &str| only.as_deref().is_none_or(|o| o.split(',').any(|x| x == name));
    let data = Pool::new(ack_frames(80, conns), conns, 11);
    let mut entry = 0;
    let mut results: Vec<(&str, f64)> = Vec::new();

    // copy-baseline: copy the frame and recompute its IP and TCP checksums.
    if want("copy-baseline") {
        let mut buf = vec![0u8; 256];
        let samples = (0..runs)
            .map(|_| {
                let start = Instant::now();
                for i in 0..data.count() {
                    let f = data.frame(i);
                    let b = &mut buf[HEADROOM..HEADROOM + f.len()];
                    b.copy_from_slice(f);
                    let ip = &mut b[14..];
                    ip[10] = 0;
                    ip[11] = 0;
                    let c = wire::checksum::checksum(&ip[..20]);
                    ip[10..12].copy_from_slice(&c.to_be_bytes());
                    let (s, d) = (
                        IpAddr::V4(Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15])),
                        IpAddr::V4(Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19])),
                    );
                    let seg = &mut ip[20..];
                    seg[16] = 0;
                    seg[17] = 0;
                    let c = wire::checksum::transport(&s, &d, 6, seg);
                    seg[16..18].copy_from_slice(&c.to_be_bytes());
                    black_box(&buf);
                }
                start.elapsed().as_nanos() as f64 / data.count() as f64
            })
            .collect();
        results.push(("copy-baseline", median(samples)));
    }

    // lookup-baseline: the copy-baseline plus one random read from a table of the connection
    // table's size (same bytes per entry, same huge-page advice), indexed by a hash of the
    // flow as the connection lookup is. Its ratio to nat-established says how much of a
    // packet's time is the table's memory miss, whatever the processor's caches.
    if want("lookup-baseline") {
        let max = conns * 2 + 1024;
        let per_entry = ipvs::Worker::new(0, Arc::new(ipvs::Ipvs::new(max))).conns.bytes_per_entry();
        let lines = (max * per_entry / 64).max(1);
        let table = vec![[0u64; 8]; lines];
        advise_huge(table.as_ptr() as *const u8, lines * 64);
        // Touch it all once, as a filled table would be.
        let mut table = table;
        for (i, l) in table.iter_mut().enumerate() {
            l[0] = i as u64;
        }
        let mut buf = vec![0u8; 256];
        let samples = (0..runs)
            .map(|_| {
                let mut acc = 0u64;
                let start = Instant::now();
                for i in 0..data.count() {
                    let f = data.frame(i);
                    let b = &mut buf[HEADROOM..HEADROOM + f.len()];
                    b.copy_from_slice(f);
                    let ip = &mut b[14..];
                    let key = u64::from(u32::from_be_bytes([ip[12], ip[13], ip[14], ip[15]])) << 16
                        | u64::from(u16::from_be_bytes([ip[20], ip[21]]));
                    let h = key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 17;
                    acc = acc.wrapping_add(table[(h as usize) % lines][0]);
                    ip[10] = 0;
                    ip[11] = 0;
                    let c = wire::checksum::checksum(&ip[..20]);
                    ip[10..12].copy_from_slice(&c.to_be_bytes());
                    let (s, d) = (
                        IpAddr::V4(Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15])),
                        IpAddr::V4(Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19])),
                    );
                    let seg = &mut ip[20..];
                    seg[16] = 0;
                    seg[17] = 0;
                    let c = wire::checksum::transport(&s, &d, 6, seg);
                    seg[16..18].copy_from_slice(&c.to_be_bytes());
                    black_box(&buf);
                }
                black_box(acc);
                start.elapsed().as_nanos() as f64 / data.count() as f64
            })
            .collect();
        results.push(("lookup-baseline", median(samples)));
    }

    if want("nat-established") || want("nat-reply") {
        let (node, mut cx) = established(ForwardMethod::Masq, "wlc", 80, 10, conns);
        if want("nat-established") {
            let before = node.counters.read();
            let s = (0..runs).map(|_| run(&node, &mut cx, &data, EXT, Action::Tx(INT))).collect();
            results.push(("nat-established", median(s)));
            let after = node.counters.read();
            println!(
                "(nat-established: {} of {} packets by the established-flow shortcut)",
                after.shortcut - before.shortcut,
                after.tx - before.tx
            );
        }
        if want("nat-reply") {
            let replies = Pool::new(
                (0..conns).map(|i| {
                    let (a, p) = client(i);
                    // The reply comes from whichever real server the flow was scheduled to.
                    let c = cx
                        .ipvs
                        .conns
                        .lookup_in(6, &IpAddr::V4(a), p, &IpAddr::V4(VIP), 80)
                        .and_then(|id| cx.ipvs.conns.get(id))
                        .map(|c| cx.ipvs.conns.daddr(c))
                        .unwrap();
                    let IpAddr::V4(rip) = c else { unreachable!() };
                    let idx = rip.octets()[3] - 10;
                    Pkt::tcp(rip, 8080, a, p, ACK | PSH).macs(rs_mac(idx), INT_MAC).payload(b"0123456789").build()
                }),
                conns,
                13,
            );
            let s = (0..runs).map(|_| run(&node, &mut cx, &replies, INT, Action::Tx(EXT))).collect();
            results.push(("nat-reply", median(s)));
        }
    }

    if want("dr-established") {
        let (node, mut cx) = established(ForwardMethod::Route, "wlc", 80, 10, conns);
        let s = (0..runs).map(|_| run(&node, &mut cx, &data, EXT, Action::Tx(INT))).collect();
        results.push(("dr-established", median(s)));
    }

    if want("tun-established") {
        let (node, mut cx) = established(ForwardMethod::Tunnel, "wlc", 80, 10, conns);
        let s = (0..runs).map(|_| run(&node, &mut cx, &data, EXT, Action::Tx(INT))).collect();
        results.push(("tun-established", median(s)));
        entry = cx.ipvs.conns.bytes_per_entry();
    }

    // new-connection: SYNs that miss, wlc over 100 dests, insert. A fresh director per run.
    if want("new-connection") {
        let syns = Pool::new(syn_frames(80, conns), conns, 17);
        let s = (0..runs)
            .map(|_| {
                let (node, mut cx) = director(conns);
                let key = ServiceKey::tcp(IpAddr::V4(VIP), 80);
                node.ipvs.add_service(ServiceConfig::new(key, "wlc")).unwrap();
                for n in 0..100u32 {
                    let a = Ipv4Addr::from(u32::from(rs(1)) + n);
                    node.ipvs.add_dest(&key, DestConfig::new(a.into(), 8080).method(ForwardMethod::Route)).unwrap();
                }
                let ns = run(&node, &mut cx, &syns, EXT, Action::Tx(INT));
                assert_eq!(cx.ipvs.conns.len(), conns);
                ns
            })
            .collect();
        results.push(("new-connection", median(s)));
    }

    for (name, ns) in &results {
        println!("{name}: {ns:.1} ns/packet");
    }
    let get = |n: &str| results.iter().find(|r| r.0 == n).map(|r| r.1);
    if let (Some(base), Some(nat)) = (get("copy-baseline"), get("nat-established")) {
        println!("nat-established / copy-baseline: {:.2}", nat / base);
    }
    if let (Some(base), Some(nat)) = (get("lookup-baseline"), get("nat-established")) {
        println!("nat-established / lookup-baseline: {:.2}", nat / base);
    }
    println!("conn-entry: {entry} bytes of table memory per connection (at the configured maximum)");
    println!("conns: {conns}, runs: {runs} (median), batch: {BATCH}");
}
