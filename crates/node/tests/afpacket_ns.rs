//! AF_PACKET backend against a real kernel: two fresh network namespaces joined by a veth
//! pair, real UDP/TCP sockets on the peer side (offloads left on). Needs root; without it
//! every test prints a note and passes.
//!
//! Topology (names unique per process and test, removed on every exit path):
//!   ns A: a0 10.77.0.1/24  <── veth ──>  ns B: b0 10.77.0.2/24
//! The AfPacket socket sits on a0; the "client" sockets live in B.
//!
//! Observed on this machine (kernel 6.18, veth, default offloads): TCP segments *and* UDP
//! datagrams sent by a socket in B arrive on a0 with `TP_STATUS_CSUMNOTREADY` set and only
//! the pseudo-header sum in the checksum field (CHECKSUM_PARTIAL crosses the veth pair). The
//! tests assert this for TCP, and assert for every flagged frame that its checksum field is
//! indeed not the finished one.

mod nsutil;

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use node::io::{AfPacket, FanoutMode, PktType, RingConfig};
use nsutil::{Netns, in_netns, ip, skip_unless_root};

/// What these tests need root for (the note printed when skipping).
const NEEDS: &str = "network namespaces, AF_PACKET";

struct Topo {
    _ns: Netns,
    a: String,
    b: String,
    a_mac: [u8; 6],
    b_mac: [u8; 6],
}

const A_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
const B_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);

fn topo() -> Topo {
    let mut ns = Netns(vec![]);
    let a = ns.add("a");
    let b = ns.add("b");
    ip(&["-n", &a, "link", "add", "a0", "type", "veth", "peer", "name", "b0", "netns", &b]);
    for (n, dev, addr) in [(&a, "a0", "10.77.0.1/24"), (&b, "b0", "10.77.0.2/24")] {
        // No IPv6 link-local address: keeps router/neighbour solicitations off the wire.
        ip(&["-n", n, "link", "set", dev, "addrgenmode", "none"]);
        ip(&["-n", n, "addr", "add", addr, "dev", dev]);
        ip(&["-n", n, "link", "set", dev, "up"]);
    }
    let a_mac = in_netns(&a, || node::io::if_mac("a0")).expect("a0 mac");
    let b_mac = in_netns(&b, || node::io::if_mac("b0")).expect("b0 mac");
    Topo { _ns: ns, a, b, a_mac, b_mac }
}

// ---------------------------------------------------------------- frame helpers

/// A received frame, copied out of the ring.
#[derive(Clone, Debug)]
struct Got {
    data: Vec<u8>,
    csum_not_ready: bool,
    pkt_type: PktType,
    ifindex: u32,
    truncated: bool,
    headroom: usize,
}

/// Drains `sock` until `done` says so or `timeout` passes.
fn collect(sock: &mut AfPacket, timeout: Duration, mut done: impl FnMut(&[Got]) -> bool) -> Vec<Got> {
    let mut got = Vec::new();
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline && !done(&got) {
        sock.poll_rx(10).expect("poll");
        sock.rx_batch(|f| {
            got.push(Got {
                data: f.data().to_vec(),
                csum_not_ready: f.csum_not_ready,
                pkt_type: f.pkt_type,
                ifindex: f.ifindex,
                truncated: f.truncated(),
                headroom: f.start,
            })
        });
    }
    got
}

/// (protocol, src, dst, L4 offset) of an IPv4 frame.
fn ipv4(d: &[u8]) -> Option<(u8, Ipv4Addr, Ipv4Addr, usize)> {
    if d.len() < 34 || d[12..14] != [0x08, 0x00] || d[14] >> 4 != 4 {
        return None;
    }
    let l4 = 14 + usize::from(d[14] & 0x0f) * 4;
    let src = Ipv4Addr::new(d[26], d[27], d[28], d[29]);
    let dst = Ipv4Addr::new(d[30], d[31], d[32], d[33]);
    (d.len() >= l4).then_some((d[23], src, dst, l4))
}

fn be16(d: &[u8], off: usize) -> u16 {
    u16::from_be_bytes([d[off], d[off + 1]])
}

/// RFC 1071 sum, not yet complemented.
fn sum16(mut acc: u32, data: &[u8]) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        acc += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        acc += u32::from(*last) << 8;
    }
    acc
}

fn fold(mut acc: u32) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// The finished L4 checksum of an IPv4 frame's TCP/UDP segment (field taken as zero).
fn l4_checksum(d: &[u8]) -> u16 {
    let (proto, src, dst, l4) = ipv4(d).expect("ipv4");
    let total = usize::from(be16(d, 16));
    let seg = &d[l4..14 + total];
    let csum_off = if proto == 6 { 16 } else { 6 };
    let mut acc = sum16(0, &src.octets());
    acc = sum16(acc, &dst.octets());
    acc += u32::from(proto) + seg.len() as u32;
    acc = sum16(acc, &seg[..csum_off]);
    acc = sum16(acc, &seg[csum_off + 2..]);
    let c = !fold(acc);
    if proto == 17 && c == 0 { 0xffff } else { c }
}

/// A complete Ethernet/IPv4/UDP frame with correct checksums.
fn udp_frame(src_mac: [u8; 6], dst_mac: [u8; 6], src: SocketAddr, dst: SocketAddr, payload: &[u8]) -> Vec<u8> {
    let (SocketAddr::V4(src), SocketAddr::V4(dst)) = (src, dst) else {
        panic!("IPv4 only");
    };
    let mut f = Vec::new();
    f.extend_from_slice(&dst_mac);
    f.extend_from_slice(&src_mac);
    f.extend_from_slice(&[0x08, 0x00]);
    let total = (20 + 8 + payload.len()) as u16;
    let mut iph = [0u8; 20];
    iph[0] = 0x45;
    iph[2..4].copy_from_slice(&total.to_be_bytes());
    iph[4..6].copy_from_slice(&0x1234u16.to_be_bytes());
    iph[6] = 0x40; // DF
    iph[8] = 64;
    iph[9] = 17;
    iph[12..16].copy_from_slice(&src.ip().octets());
    iph[16..20].copy_from_slice(&dst.ip().octets());
    let c = !fold(sum16(0, &iph));
    iph[10..12].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&iph);
    f.extend_from_slice(&src.port().to_be_bytes());
    f.extend_from_slice(&dst.port().to_be_bytes());
    f.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(payload);
    let c = l4_checksum(&f);
    f[40..42].copy_from_slice(&c.to_be_bytes());
    f
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn cfg() -> RingConfig {
    RingConfig { rx_block_count: 8, tx_block_count: 4, ..RingConfig::default() }
}

// ---------------------------------------------------------------- tests

#[test]
fn rx_real_udp_and_tcp_from_veth_peer() {
    if skip_unless_root("rx_real_udp_and_tcp_from_veth_peer", NEEDS) {
        return;
    }
    let t = topo();
    let mut sock = in_netns(&t.a, || AfPacket::open("a0", &cfg())).expect("open a0");
    let a0_index = in_netns(&t.a, || node::io::if_index("a0")).expect("a0 index");
    assert_eq!(sock.ifindex(), a0_index);

    // UDP from a real socket in B.
    let udp = in_netns(&t.b, || UdpSocket::bind((B_IP, 0))).expect("udp bind");
    let udp_port = udp.local_addr().expect("addr").port();
    let udp_payload = b"rvs-udp-payload-0123456789";
    udp.send_to(udp_payload, (A_IP, 9999)).expect("udp send");

    let is_our_udp = |g: &Got| ipv4(&g.data).is_some_and(|(p, _, _, l4)| p == 17 && be16(&g.data, l4 + 2) == 9999);
    let got_udp = collect(&mut sock, Duration::from_secs(3), |g| g.iter().any(is_our_udp));
    let f = got_udp.iter().find(|g| is_our_udp(g)).expect("UDP datagram seen on a0");
    let (_, src, dst, l4) = ipv4(&f.data).expect("ipv4");
    assert_eq!(&f.data[0..6], &t.a_mac, "eth dst");
    assert_eq!(&f.data[6..12], &t.b_mac, "eth src");
    assert_eq!((src, dst), (B_IP, A_IP));
    assert_eq!(be16(&f.data, l4), udp_port);
    assert_eq!(&f.data[l4 + 8..], udp_payload);
    assert_eq!(f.pkt_type, PktType::Host);
    assert_eq!(f.ifindex, a0_index);
    assert!(!f.truncated);
    assert!(f.headroom >= cfg().headroom as usize, "headroom {}", f.headroom);
    if f.csum_not_ready {
        assert_ne!(be16(&f.data, l4 + 6), l4_checksum(&f.data), "flagged but finished");
    } else {
        assert_eq!(be16(&f.data, l4 + 6), l4_checksum(&f.data), "unflagged but partial");
    }

    // TCP: a real handshake with a listener in A, then data.
    let listener = in_netns(&t.a, || TcpListener::bind((A_IP, 8080))).expect("listen");
    let tcp_payload = b"rvs-tcp-payload-abcdefghijklmnop";
    let mut client =
        in_netns(&t.b, || TcpStream::connect_timeout(&SocketAddr::from((A_IP, 8080)), Duration::from_secs(3)))
            .expect("connect");
    client.write_all(tcp_payload).expect("tcp write");
    let (_server, _) = listener.accept().expect("accept");

    let is_tcp_to = |g: &Got| ipv4(&g.data).is_some_and(|(p, _, _, l4)| p == 6 && be16(&g.data, l4 + 2) == 8080);
    let got = collect(&mut sock, Duration::from_secs(3), |g| {
        g.iter().any(|g| is_tcp_to(g) && contains(&g.data, tcp_payload))
    });
    let syn = got
        .iter()
        .find(|g| is_tcp_to(g) && ipv4(&g.data).is_some_and(|(_, _, _, l4)| g.data[l4 + 13] & 0x12 == 0x02))
        .expect("SYN seen");
    let data = got.iter().find(|g| is_tcp_to(g) && contains(&g.data, tcp_payload)).expect("data segment seen");
    let (_, _, _, l4) = ipv4(&data.data).expect("ipv4");
    let hlen = usize::from(data.data[l4 + 12] >> 4) * 4;
    assert_eq!(&data.data[l4 + hlen..], tcp_payload);
    assert_eq!(&data.data[6..12], &t.b_mac);

    // The veth peer leaves TCP checksums to "offload": the ring says so, and the checksum
    // field really is unfinished (what the node must complete before forwarding).
    for seg in [syn, data] {
        let (_, _, _, l4) = ipv4(&seg.data).expect("ipv4");
        assert!(seg.csum_not_ready, "TCP from a veth peer should be CSUMNOTREADY");
        assert_ne!(be16(&seg.data, l4 + 16), l4_checksum(&seg.data));
    }

    // A's kernel answered (ARP reply, SYN-ACK, ICMP port unreachable): none of it came back.
    for g in got_udp.iter().chain(&got) {
        assert_ne!(g.pkt_type, PktType::Outgoing);
        assert_ne!(&g.data[6..12], &t.a_mac, "own kernel's frame seen: {g:?}");
    }
}

#[test]
fn tx_ring_reaches_real_socket_and_is_not_looped_back() {
    if skip_unless_root("tx_ring_reaches_real_socket_and_is_not_looped_back", NEEDS) {
        return;
    }
    let t = topo();
    let mut sock = in_netns(&t.a, || AfPacket::open("a0", &cfg())).expect("open a0");
    // The kernel never loops a socket's own frames back to *itself*; a second socket on the
    // same interface (another worker) would see them, unless PACKET_IGNORE_OUTGOING is set.
    let mut observer = in_netns(&t.a, || AfPacket::open("a0", &cfg())).expect("open a0 again");
    let rx = in_netns(&t.b, || UdpSocket::bind((B_IP, 7777))).expect("bind");
    rx.set_read_timeout(Some(Duration::from_secs(3))).expect("timeout");

    let marker = format!("rvs-tx-{}", std::process::id());
    let src = SocketAddr::from((A_IP, 5555));
    let dst = SocketAddr::from((B_IP, 7777));
    let batch = 20;
    for i in 0..batch {
        let payload = format!("{marker}-{i}");
        let frame = udp_frame(t.a_mac, t.b_mac, src, dst, payload.as_bytes());
        assert!(sock.tx_push(&frame), "slot {i} free");
    }
    assert_eq!(sock.tx_pending(), batch);
    sock.tx_flush().expect("flush");
    assert_eq!(sock.tx_pending(), 0);

    let mut seen = HashSet::new();
    let mut buf = [0u8; 2048];
    for _ in 0..batch {
        let (n, from) = rx.recv_from(&mut buf).expect("datagram from the TX ring");
        assert_eq!(from, src);
        let s = String::from_utf8_lossy(&buf[..n]).into_owned();
        assert!(s.starts_with(&marker), "{s}");
        seen.insert(s);
    }
    assert_eq!(seen.len(), batch, "each frame delivered once");

    // PACKET_IGNORE_OUTGOING: none of the transmitted frames shows up on an RX ring.
    for s in [&mut sock, &mut observer] {
        let got = collect(s, Duration::from_millis(300), |_| false);
        assert!(got.iter().all(|g| !contains(&g.data, marker.as_bytes())));
        assert!(got.iter().all(|g| g.pkt_type != PktType::Outgoing));
    }

    // Oversized frames are refused without using a slot.
    assert!(!sock.tx_push(&vec![0u8; sock.tx_max_frame() + 1]));
    assert!(!sock.tx_push(&[]));
}

#[test]
fn tx_push_reports_a_full_ring() {
    if skip_unless_root("tx_push_reports_a_full_ring", NEEDS) {
        return;
    }
    let t = topo();
    // One 4 KiB block of 2 KiB slots: two slots.
    let small = RingConfig { tx_block_size: 4096, tx_block_count: 1, tx_frame_size: 2048, ..cfg() };
    let mut sock = in_netns(&t.a, || AfPacket::open("a0", &small)).expect("open a0");
    let rx = in_netns(&t.b, || UdpSocket::bind((B_IP, 7778))).expect("bind");
    rx.set_read_timeout(Some(Duration::from_secs(3))).expect("timeout");
    let frame =
        udp_frame(t.a_mac, t.b_mac, SocketAddr::from((A_IP, 5556)), SocketAddr::from((B_IP, 7778)), b"full-ring");
    assert!(sock.tx_push(&frame));
    assert!(sock.tx_push(&frame));
    assert!(!sock.tx_push(&frame), "third push must find the ring full");
    sock.tx_flush().expect("flush");
    let mut buf = [0u8; 64];
    for _ in 0..2 {
        let n = rx.recv(&mut buf).expect("recv");
        assert_eq!(&buf[..n], b"full-ring");
    }
    // The slots come back once the device has taken the frames.
    let deadline = Instant::now() + Duration::from_secs(2);
    while !sock.tx_push(&frame) {
        assert!(Instant::now() < deadline, "TX slot never released");
        std::thread::sleep(Duration::from_millis(1));
    }
    sock.tx_flush().expect("flush");
    let n = rx.recv(&mut buf).expect("recv after reuse");
    assert_eq!(&buf[..n], b"full-ring");
}

#[test]
fn fanout_hash_spreads_flows_and_keeps_each_on_one_socket() {
    if skip_unless_root("fanout_hash_spreads_flows_and_keeps_each_on_one_socket", NEEDS) {
        return;
    }
    let t = topo();
    let group = (std::process::id() & 0xffff) as u16;
    let fcfg = RingConfig { fanout: Some((group, FanoutMode::Hash)), ..cfg() };
    let mut socks = in_netns(&t.a, || [AfPacket::open("a0", &fcfg), AfPacket::open("a0", &fcfg)])
        .map(|s| s.expect("open fanout member"));

    let flows = 32;
    let per_flow = 4;
    let clients: Vec<UdpSocket> =
        in_netns(&t.b, || (0..flows).map(|_| UdpSocket::bind((B_IP, 0))).collect::<std::io::Result<_>>())
            .expect("bind clients");
    for (i, c) in clients.iter().enumerate() {
        for j in 0..per_flow {
            c.send_to(format!("fan-{i}-{j}").as_bytes(), (A_IP, 9999)).expect("send");
        }
    }

    // flow -> (socket index -> packets)
    let mut seen: HashMap<usize, HashMap<usize, usize>> = HashMap::new();
    let mut total = 0;
    let deadline = Instant::now() + Duration::from_secs(5);
    while total < flows * per_flow && Instant::now() < deadline {
        for (k, s) in socks.iter_mut().enumerate() {
            s.poll_rx(5).expect("poll");
            s.rx_batch(|f| {
                assert_ne!(f.pkt_type, PktType::Outgoing, "outgoing frame in a fanout group");
                let d = f.data();
                let Some((17, _, _, l4)) = ipv4(d) else {
                    return;
                };
                let p = String::from_utf8_lossy(&d[l4 + 8..]).into_owned();
                let Some(flow) = p.strip_prefix("fan-").and_then(|r| r.split('-').next()) else {
                    return;
                };
                let Ok(flow) = flow.parse::<usize>() else {
                    return;
                };
                *seen.entry(flow).or_default().entry(k).or_default() += 1;
                total += 1;
            });
        }
    }
    assert_eq!(total, flows * per_flow, "every datagram delivered to exactly one member");
    assert_eq!(seen.len(), flows);
    for (flow, by_sock) in &seen {
        assert_eq!(by_sock.len(), 1, "flow {flow} split over sockets: {by_sock:?}");
    }
    let share: Vec<usize> = (0..2).map(|k| seen.values().filter(|m| m.contains_key(&k)).count()).collect();
    assert!(share.iter().all(|&n| n > 0), "one member got no flow: {share:?}");
}

#[test]
fn fanout_cbpf_program_chooses_the_member() {
    if skip_unless_root("fanout_cbpf_program_chooses_the_member", NEEDS) {
        return;
    }
    let t = topo();
    let group = ((std::process::id() + 1) & 0xffff) as u16;
    let fcfg = RingConfig { fanout: Some((group, FanoutMode::Cbpf)), ..cfg() };
    let mut socks = in_netns(&t.a, || [AfPacket::open("a0", &fcfg), AfPacket::open("a0", &fcfg)])
        .map(|s| s.expect("open fanout member"));
    let client = in_netns(&t.b, || UdpSocket::bind((B_IP, 0))).expect("bind");

    // `ret #k`: every packet goes to member k (members are numbered in join order).
    for target in [1usize, 0] {
        let prog = [libc::sock_filter {
            code: 0x06, // BPF_RET | BPF_K
            jt: 0,
            jf: 0,
            k: target as u32,
        }];
        socks[0].attach_fanout_cbpf(&prog).expect("attach");
        let tag = format!("cbpf-{target}-");
        for i in 0..16 {
            client.send_to(format!("{tag}{i}").as_bytes(), (A_IP, 9999)).expect("send");
        }
        let mut counts = [0usize; 2];
        let deadline = Instant::now() + Duration::from_secs(3);
        while counts.iter().sum::<usize>() < 16 && Instant::now() < deadline {
            for (k, s) in socks.iter_mut().enumerate() {
                s.poll_rx(5).expect("poll");
                s.rx_batch(|f| {
                    if contains(f.data(), tag.as_bytes()) {
                        counts[k] += 1;
                    }
                });
            }
        }
        let mut want = [0usize; 2];
        want[target] = 16;
        assert_eq!(counts, want, "program `ret #{target}`");
    }
    assert!(socks[0].attach_fanout_cbpf(&[]).is_err(), "empty program refused");
}
