//! The daemon end to end, as root: three network namespaces, real TCP through a NAT service.
//! Without root the test prints a note and passes.
//!
//! ```text
//!  client ns            director ns (rvsd -i d0 -i d1)            real-server ns
//!  c0 10.9.1.2/24 ── veth ── d0 10.9.1.1/24   d1 10.9.2.1/24 ── veth ── r0 10.9.2.2/24
//!                           VIP 10.9.1.100 (not on the kernel)          default via 10.9.2.1
//! ```
//!
//! The client connects to VIP:80 (rvs answers its ARP), rvs NATs to 10.9.2.2:8080, the real
//! server echoes, replies come back through rvs with the VIP as source. Peers keep their
//! default offloads (partial checksums reach the director). Namespaces and the daemon are
//! removed by guards (harness: `support/ns.rs`), also when an assertion fails.

#[path = "support/ns.rs"]
mod ns;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use control::api::{self, Command as Cmd, ErrorKind};
use control::client::{Client, ClientError};
use ns::{
    Daemon, Netns, add_client_addrs, connect_from, fresh_dir, in_netns, skip_unless_root, spawn_daemon,
    three_namespaces, wait_exit,
};

const VIP: Ipv4Addr = Ipv4Addr::new(10, 9, 1, 100);
const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 9, 1, 2);
/// Client addresses used: 10.9.1.2 ..= 10.9.1.(1 + CLIENTS), so connections spread over the
/// workers and a steering mistake (reply on another worker than the request) shows.
const CLIENTS: u8 = 8;
const WORKERS: &str = "4";
const DIR_EXT: Ipv4Addr = Ipv4Addr::new(10, 9, 1, 1);
const RS: Ipv4Addr = Ipv4Addr::new(10, 9, 2, 2);

/// The namespaces of the diagram, with `CLIENTS` client addresses.
fn topology(netns: &mut Netns) -> (String, String, String) {
    let (c, d, r) = three_namespaces(netns, "", None);
    add_client_addrs(&c, CLIENTS);
    (c, d, r)
}

fn start_daemon(ns: &str) -> (Daemon, PathBuf) {
    spawn_daemon(ns, fresh_dir("rvsd-t"), |c| {
        c.args(["-i", "d0", "-i", "d1", "--workers", WORKERS]).args(["--log", "debug"])
    })
}

fn spec(addr: Ipv4Addr, port: u16) -> api::ServiceSpec {
    api::ServiceSpec {
        key: api::ServiceKey::Tcp { addr: addr.into(), port },
        scheduler: "rr".into(),
        sched_flags: Default::default(),
        persistent: None,
        netmask: u32::MAX,
        ops: false,
        pe: None,
    }
}

#[test]
fn nat_tcp_echo_through_the_daemon() {
    if skip_unless_root("nat_tcp_echo_through_the_daemon") {
        return;
    }
    let mut ns = Netns(Vec::new());
    let (c_ns, d_ns, r_ns) = topology(&mut ns);
    let (mut daemon, sock) = start_daemon(&d_ns);
    let client = Client::new(&sock);

    // A VIP that is one of the director kernel's addresses is refused.
    match client.command(&Cmd::AddService(spec(DIR_EXT, 80))) {
        Err(ClientError::Api(e)) => {
            assert_eq!(e.kind, ErrorKind::Invalid);
            assert!(e.message.contains("VIP 10.9.1.1 is configured on the director's kernel"), "{}", e.message);
        }
        other => panic!("expected a refusal, got {other:?}"),
    }

    client.command(&Cmd::AddService(spec(VIP, 80))).expect("add service");
    let dest = api::DestSpec {
        addr: RS.into(),
        port: 8080,
        method: api::ForwardMethod::Masq,
        weight: 1,
        u_threshold: 0,
        l_threshold: 0,
        tun_type: Default::default(),
        tun_port: 0,
        tun_csum: Default::default(),
    };
    client.command(&Cmd::AddDest(spec(VIP, 80).key, dest)).expect("add dest");

    // Real server: echo on 10.9.2.2:8080, one thread per connection; report who connected.
    let (ready_tx, ready_rx) = mpsc::channel();
    let server = in_netns(&r_ns, move || {
        let l = TcpListener::bind((RS, 8080)).expect("bind RS");
        ready_tx.send(()).unwrap();
        l.set_nonblocking(true).unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut peers = Vec::new();
        let mut echoes = Vec::new();
        while peers.len() < CLIENTS as usize {
            match l.accept() {
                Ok((mut s, peer)) => {
                    peers.push(peer.ip());
                    echoes.push(std::thread::spawn(move || {
                        s.set_nonblocking(false).unwrap();
                        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
                        let mut buf = [0u8; 4096];
                        loop {
                            match s.read(&mut buf) {
                                Ok(0) => break,
                                Ok(n) => s.write_all(&buf[..n]).expect("echo"),
                                Err(e) => panic!("RS read: {e}"),
                            }
                        }
                    }));
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                Err(e) => panic!("accept ({} so far): {e}", peers.len()),
            }
        }
        for e in echoes {
            e.join().expect("echo thread");
        }
        peers.sort();
        peers
    });
    ready_rx.recv_timeout(Duration::from_secs(5)).expect("RS listening");

    // Clients: from each address, connect to the VIP and make several round trips (each below
    // one segment).
    let mut conversations = Vec::new();
    for k in 0..CLIENTS {
        let src = Ipv4Addr::new(10, 9, 1, 2 + k);
        conversations.push(in_netns(&c_ns, move || {
            let mut s = connect_from(src, SocketAddr::from((VIP, 80)));
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let peer = s.peer_addr().unwrap();
            let mut all = Vec::new();
            for i in 0..5u8 {
                let msg: Vec<u8> = (0..1000u32).map(|j| (j as u8).wrapping_mul(7).wrapping_add(i ^ k)).collect();
                s.write_all(&msg).unwrap();
                let mut back = vec![0u8; msg.len()];
                s.read_exact(&mut back).unwrap_or_else(|e| panic!("{src}: echo back in round {i}: {e}"));
                all.push((msg, back));
            }
            (peer, all)
        }));
    }
    for (k, c) in conversations.into_iter().enumerate() {
        let (peer, rounds) = c.join().unwrap_or_else(|_| panic!("client {k} failed"));
        assert_eq!(peer, SocketAddr::from((VIP, 80)), "the client talks to the VIP");
        for (i, (sent, got)) in rounds.iter().enumerate() {
            assert!(sent == got, "client {k} round {i}: bytes changed on the way");
        }
    }
    let seen_by_rs = server.join().expect("RS thread");
    let want: Vec<std::net::IpAddr> = (0..CLIENTS).map(|k| Ipv4Addr::new(10, 9, 1, 2 + k).into()).collect();
    assert_eq!(seen_by_rs, want, "NAT keeps the client addresses");

    // Counters moved.
    let snap = client.snapshot().expect("snapshot");
    let svc = &snap.services[0];
    let n = u64::from(CLIENTS);
    assert_eq!(svc.stats.conns, n, "{:?}", svc.stats);
    assert!(svc.stats.inpkts >= 6 * n && svc.stats.outpkts >= 6 * n, "{:?}", svc.stats);
    assert!(svc.stats.inbytes >= 5000 * n && svc.stats.outbytes >= 5000 * n, "{:?}", svc.stats);
    assert_eq!(svc.dests[0].stats.conns, svc.stats.conns);
    let conns = client.connections().expect("connections");
    assert!(
        conns.iter().any(|c| c.caddr == std::net::IpAddr::V4(CLIENT) && c.vport == 80 && c.dport == 8080),
        "{conns:?}"
    );
    let (st, body) = client.request("GET", "/v1/stats", None).expect("stats");
    assert_eq!(st, 200);
    let stats: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert!(stats["tx"].as_u64().unwrap() >= 12 * n, "{stats}");
    let busy = stats["conns"].as_array().unwrap().iter().filter(|c| c.as_u64() > Some(0)).count();
    if stats["io"][0]["backend"] == "xdp" {
        // AF_XDP runs at most one worker per receive queue, and these veths have one
        // (docs/design.md "AF_XDP: workers by queue, connections by client").
        assert_eq!(stats["workers"], 1, "{stats}");
    } else {
        assert!(busy >= 2, "connections spread over several workers: {stats}");
    }
    assert!(stats["arp_replies"].as_u64().unwrap() >= 1, "rvs answered ARP for the VIP: {stats}");
    assert!(stats["shortcut"].as_u64().unwrap() >= 1, "established packets took the shortcut: {stats}");

    // SIGTERM: exit 0, socket gone.
    let mut child = daemon.child.take().unwrap();
    // SAFETY: plain kill(2) on our child's pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let st = wait_exit(&mut child, Duration::from_secs(10));
    if st.is_none() {
        let _ = child.kill();
    }
    let st = st.unwrap_or_else(|| panic!("rvsd did not stop on SIGTERM:\n{}", daemon.log()));
    assert!(st.success(), "exit status {st}:\n{}", daemon.log());
    assert!(!Path::new(&sock).exists(), "socket removed");
    assert!(daemon.log().contains("signal 15: stopping"));
}
