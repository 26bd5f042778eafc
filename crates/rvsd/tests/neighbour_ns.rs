//! The first connection to each real server, IPv4 and IPv6, on a fresh topology with no ping
//! first: the SYN waits in the neighbour queue while the director's kernel resolves the real
//! server (node/src/neighq.rs, netlink/resolve.rs) instead of being dropped, so the client
//! does not wait for its 1 s SYN retransmission. As root, in namespaces; else a note.
//!
//! ```text
//!  client ns                        director ns (rvsd)                       real-server ns
//!  c0 10.9.1.2/24   ── veth ── d0 10.9.1.1/24     d1 10.9.2.1/24 ── veth ── r0 10.9.2.2/24, .3
//!     fd00:91::2/64               fd00:91::1/64      fd00:92::1/64             fd00:92::2/64, ::3
//!  VIPs 10.9.1.100:80 and [fd00:91::100]:80, NAT (rr) to both real-server addresses, port 8080
//! ```

#[path = "support/ns.rs"]
mod ns;

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use ns::{Netns, add_v6, fresh_dir, in_netns, skip_unless_root, spawn_daemon, three_namespaces};

const CONFIG: &str = "[[interfaces]]\nname = \"d0\"\n[[interfaces]]\nname = \"d1\"\n\
    [[services]]\nprotocol = \"tcp\"\naddress = \"10.9.1.100:80\"\nscheduler = \"rr\"\n\
    [[services.real_servers]]\naddress = \"10.9.2.2:8080\"\nmethod = \"nat\"\n\
    [[services.real_servers]]\naddress = \"10.9.2.3:8080\"\nmethod = \"nat\"\n\
    [[services]]\nprotocol = \"tcp\"\naddress = \"[fd00:91::100]:80\"\nscheduler = \"rr\"\n\
    [[services.real_servers]]\naddress = \"[fd00:92::2]:8080\"\nmethod = \"nat\"\n\
    [[services.real_servers]]\naddress = \"[fd00:92::3]:8080\"\nmethod = \"nat\"\n";

/// A TCP server on [::]:8080 (both families) answering each connection with the address it
/// was reached at, until `n` connections were served.
fn serve(r_ns: &str, n: usize) -> std::thread::JoinHandle<()> {
    let (tx, rx) = std::sync::mpsc::channel();
    let h = in_netns(r_ns, move || {
        let l = TcpListener::bind("[::]:8080").expect("bind 8080");
        tx.send(()).unwrap();
        for _ in 0..n {
            let Ok((mut s, _)) = l.accept() else { return };
            let local = s.local_addr().map(|a| a.ip().to_canonical().to_string()).unwrap_or_default();
            let _ = s.write_all(format!("{local}\n").as_bytes());
        }
    });
    rx.recv_timeout(Duration::from_secs(5)).expect("server up");
    h
}

/// Connects to `vip`:80, reads the real server's answer; the time the connection took.
fn first_connection(vip: IpAddr) -> (Result<String, String>, Duration) {
    let t0 = Instant::now();
    let r = TcpStream::connect_timeout(&SocketAddr::new(vip, 80), Duration::from_secs(5))
        .and_then(|mut s| {
            s.set_read_timeout(Some(Duration::from_secs(5)))?;
            let mut b = String::new();
            s.read_to_string(&mut b)?;
            Ok(b.trim().to_string())
        })
        .map_err(|e| e.to_string());
    (r, t0.elapsed())
}

#[test]
fn first_connections_to_each_real_server_do_not_wait_for_a_retransmission() {
    if skip_unless_root("first_connections_to_each_real_server_do_not_wait_for_a_retransmission") {
        return;
    }
    let mut netns = Netns(Vec::new());
    let (c_ns, d_ns, r_ns) = three_namespaces(&mut netns, "n", Some(1500));
    add_v6(&c_ns, &d_ns, &r_ns);
    let dir = fresh_dir("rvsd-neigh-ns");
    let file = dir.join("rvs.toml");
    std::fs::write(&file, CONFIG).unwrap();
    let server = serve(&r_ns, 4);
    let (daemon, sock) =
        spawn_daemon(&d_ns, dir, |c| c.arg("--config").arg(&file).args(["--workers", "1", "--log", "debug"]));
    // Nobody has resolved anybody: the director's kernel knows no real server.
    let neigh = std::process::Command::new("ip").args(["-n", &d_ns, "neigh", "show", "dev", "d1"]).output().unwrap();
    let known = String::from_utf8_lossy(&neigh.stdout).to_string();
    assert!(!known.contains("lladdr"), "a real server is already resolved:\n{known}");

    let results = in_netns(&c_ns, || {
        let mut v = Vec::new();
        for vip in ["10.9.1.100", "10.9.1.100", "fd00:91::100", "fd00:91::100"] {
            let vip: IpAddr = vip.parse().unwrap();
            v.push((vip, first_connection(vip)));
        }
        v
    })
    .join()
    .unwrap();
    let stats = || {
        let (_, body) = control::client::Client::new(&sock).request("GET", "/v1/stats", None).expect("stats");
        String::from_utf8_lossy(&body).to_string()
    };
    let mut reached = Vec::new();
    for (vip, (r, took)) in &results {
        let who = r
            .clone()
            .unwrap_or_else(|e| panic!("{vip}: {e} after {took:?}; all: {results:?}\n{}\n{}", stats(), daemon.log()));
        assert!(
            *took < Duration::from_millis(500),
            "{vip} → {who} took {took:?} (a SYN retransmission?); all: {results:?}\n{}\n{}",
            stats(),
            daemon.log()
        );
        reached.push(who);
    }
    // A frame steered before the worker had filled its fill ring was dropped here (the
    // client's first SYN, 1 s late): xdp/src/worker.rs `Setup::new`.
    let st = stats();
    assert!(st.contains("\"rx_ring_full\":0"), "frames lost at the AF_XDP ring:\n{st}");
    reached.sort();
    assert_eq!(reached, ["10.9.2.2", "10.9.2.3", "fd00:92::2", "fd00:92::3"], "rr reaches each real server once");
    server.join().unwrap();
}
