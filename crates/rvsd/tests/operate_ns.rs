//! Operating the daemon, as root, in namespaces (harness: `support/ns.rs`): rvsd started from
//! a native configuration file (interfaces from the file), long-lived NAT TCP streams while
//! the configuration is reloaded 20 times (SIGHUP and `POST /v1/reload`, two valid files that
//! keep the streams' real server, an invalid one refused in between): no reset, no byte
//! lost or changed. Then filtered connection listings, a Prometheus scrape validated by the
//! exposition checker, and a drain. A second test: health state across a reload (a real
//! server whose check failed stays out of the table after a reload that changes something
//! else, and no connection reaches it). Without root the tests print a note and pass.
//!
//! ```text
//!  client ns                 director ns (rvsd --config)                 real-server ns
//!  c0 10.9.1.2-5/24 ── veth ── d0 10.9.1.1/24   d1 10.9.2.1/24 ── veth ── r0 10.9.2.2, .3 /24
//!                            VIP 10.9.1.100:80, metrics 127.0.0.1:9100
//! ```

#[path = "support/exposition.rs"]
mod exposition;
#[path = "support/ns.rs"]
mod ns;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use control::api::{ErrorKind, ServiceKey};
use control::client::{Client, ClientError};
use control::ops::ConnFilter;
use ns::{
    Daemon, Netns, add_client_addrs, connect_from, fresh_dir, health, in_netns, ip, skip_unless_root, spawn_daemon,
    three_namespaces, wait_exit,
};

const VIP: Ipv4Addr = Ipv4Addr::new(10, 9, 1, 100);
const RS1: Ipv4Addr = Ipv4Addr::new(10, 9, 2, 2);
const RS2: Ipv4Addr = Ipv4Addr::new(10, 9, 2, 3);
const STREAMS: u8 = 4;
const RELOADS: usize = 20;

/// Config A: the one real server of the streams, wrr.
fn config_a() -> String {
    "[[interfaces]]\nname = \"d0\"\n[[interfaces]]\nname = \"d1\"\n\
     [timeouts]\ntcp = 900\n\
     [[services]]\nprotocol = \"tcp\"\naddress = \"10.9.1.100:80\"\nscheduler = \"wrr\"\n\
     [[services.real_servers]]\naddress = \"10.9.2.2:8080\"\nmethod = \"nat\"\nweight = 1\n"
        .to_string()
}

/// Config B: another scheduler and weight, a second real server, a second service.
fn config_b() -> String {
    "[[interfaces]]\nname = \"d0\"\n[[interfaces]]\nname = \"d1\"\n\
     [[services]]\nprotocol = \"tcp\"\naddress = \"10.9.1.100:80\"\nscheduler = \"rr\"\n\
     [[services.real_servers]]\naddress = \"10.9.2.2:8080\"\nmethod = \"nat\"\nweight = 3\n\
     [[services.real_servers]]\naddress = \"10.9.2.3:8080\"\nmethod = \"nat\"\nweight = 2\n\
     [[services]]\nprotocol = \"tcp\"\naddress = \"10.9.1.100:81\"\nscheduler = \"lc\"\n\
     [[services.real_servers]]\naddress = \"10.9.2.3:8080\"\nmethod = \"nat\"\n"
        .to_string()
}

/// Invalid: an unknown scheduler on line 6.
fn config_bad() -> String {
    config_a().replace("scheduler = \"wrr\"", "scheduler = \"fastest\"")
}

/// The namespaces of the diagram, named with `tag` (one set per test).
fn topology(netns: &mut Netns, tag: &str) -> (String, String, String) {
    let (c, d, r) = three_namespaces(netns, tag, None);
    ip(&["-n", &r, "addr", "add", "10.9.2.3/24", "dev", "r0"]);
    add_client_addrs(&c, STREAMS);
    (c, d, r)
}

fn start_daemon(ns: &str, config: &Path, dir: PathBuf) -> (Daemon, PathBuf) {
    spawn_daemon(ns, dir, |c| {
        c.arg("--config").arg(config).args(["--workers", "2", "--log", "debug", "--metrics", "127.0.0.1:9100"])
    })
}

/// Echo server on real-server addresses `addrs` (port 8080), one thread per connection,
/// until `stop` (the listeners close then: connections are refused).
fn echo_servers(r_ns: &str, addrs: &[Ipv4Addr], stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    let (tx, rx) = std::sync::mpsc::channel();
    let addrs = addrs.to_vec();
    let h = in_netns(r_ns, move || {
        let ls: Vec<TcpListener> = addrs.iter().map(|a| TcpListener::bind((*a, 8080)).expect("bind RS")).collect();
        tx.send(()).unwrap();
        for l in &ls {
            l.set_nonblocking(true).unwrap();
        }
        while !stop.load(Ordering::Relaxed) {
            let mut idle = true;
            for l in &ls {
                if let Ok((mut s, _)) = l.accept() {
                    idle = false;
                    std::thread::spawn(move || {
                        s.set_nonblocking(false).unwrap();
                        let mut buf = [0u8; 16384];
                        while let Ok(n) = s.read(&mut buf) {
                            if n == 0 || s.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                    });
                }
            }
            if idle {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(5)).expect("RS listening");
    h
}

/// One long-lived stream: writes deterministic chunks and checks every echoed byte, until
/// `stop`. Returns (bytes sent, bytes echoed identical, the still-open stream).
fn stream(c_ns: &str, k: u8, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<(u64, u64, TcpStream)> {
    in_netns(c_ns, move || {
        let src = Ipv4Addr::new(10, 9, 1, 2 + k);
        let mut s = connect_from(src, SocketAddr::from((VIP, 80)));
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let (mut sent, mut same) = (0u64, 0u64);
        let mut round = 0u32;
        while !stop.load(Ordering::Relaxed) {
            let len = 1000 + (round as usize * 613) % 7000;
            let msg: Vec<u8> = (0..len)
                .map(|j| (j as u32).wrapping_mul(2654435761).wrapping_add(round ^ u32::from(k)) as u8)
                .collect();
            s.write_all(&msg).unwrap_or_else(|e| panic!("stream {k} round {round}: write: {e}"));
            sent += len as u64;
            let mut back = vec![0u8; len];
            s.read_exact(&mut back).unwrap_or_else(|e| panic!("stream {k} round {round}: read: {e}"));
            assert!(back == msg, "stream {k} round {round}: bytes changed");
            same += len as u64;
            round += 1;
            std::thread::sleep(Duration::from_millis(2));
        }
        (sent, same, s)
    })
}

fn wait_for(what: &str, daemon: &Daemon, f: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < deadline, "timed out: {what}\n{}", daemon.log());
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn scrape(d_ns: &str) -> String {
    in_netns(d_ns, || {
        let mut s = TcpStream::connect(("127.0.0.1", 9100)).expect("metrics listener");
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
        let r = control::http::read_response(&mut std::io::BufReader::new(&s)).expect("response");
        assert_eq!(r.status, 200);
        let ct = r.headers.iter().find(|(k, _)| k == "content-type").map(|(_, v)| v.clone()).unwrap_or_default();
        assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
        String::from_utf8(r.body).unwrap()
    })
    .join()
    .expect("scrape")
}

fn dests_of(c: &Client, port: u16) -> Vec<(String, u32)> {
    let snap = c.snapshot().unwrap();
    let mut v: Vec<(String, u32)> = snap
        .services
        .iter()
        .filter(|s| s.spec.key.addr_port().map(|a| a.1) == Some(port))
        .flat_map(|s| s.dests.iter().map(|d| (d.spec.addr.to_string(), d.spec.weight)))
        .collect();
    v.sort();
    v
}

#[test]
fn reloads_under_live_streams_metrics_filters_and_drain() {
    if skip_unless_root("reloads_under_live_streams_metrics_filters_and_drain") {
        return;
    }
    let mut netns = Netns(Vec::new());
    let (c_ns, d_ns, r_ns) = topology(&mut netns, "o");
    let dir = fresh_dir("rvsd-op-ns");
    let file = dir.join("rvs.toml");
    std::fs::write(&file, config_a()).unwrap();
    let (mut daemon, sock) = start_daemon(&d_ns, &file, dir.clone());
    let client = Client::new(&sock);
    assert_eq!(dests_of(&client, 80), [("10.9.2.2".to_string(), 1)]);
    assert_eq!(client.snapshot().unwrap().timeouts.tcp, 900);

    let stop_rs = Arc::new(AtomicBool::new(false));
    let rs = echo_servers(&r_ns, &[RS1, RS2], stop_rs.clone());
    let stop = Arc::new(AtomicBool::new(false));
    let streams: Vec<_> = (0..STREAMS).map(|k| stream(&c_ns, k, stop.clone())).collect();
    wait_for("all streams established", &daemon, || {
        client
            .connections_filtered(&ConnFilter { state: Some("ESTABLISHED".into()), ..Default::default() })
            .map(|c| c.len() >= STREAMS as usize)
            .unwrap_or(false)
    });

    let pid = daemon.child.as_ref().unwrap().id() as i32;
    let mut refused = 0;
    for i in 0..RELOADS {
        let (text, want) = if i % 2 == 0 {
            (config_b(), vec![("10.9.2.2".to_string(), 3), ("10.9.2.3".to_string(), 2)])
        } else {
            (config_a(), vec![("10.9.2.2".to_string(), 1)])
        };
        std::fs::write(&file, &text).unwrap();
        let before = client_status(&client);
        if i % 4 < 2 {
            let r = client.reload(None).unwrap_or_else(|e| panic!("reload {i}: {e}\n{}", daemon.log()));
            assert_eq!(r.file, file.display().to_string());
        } else {
            // SAFETY: kill(2) on our child's pid.
            unsafe { libc::kill(pid, libc::SIGHUP) };
            wait_for("SIGHUP reload", &daemon, || client_status(&client).loads == before.loads + 1);
        }
        assert_eq!(dests_of(&client, 80), want, "after reload {i}");
        assert_eq!(dests_of(&client, 81).len(), if i % 2 == 0 { 1 } else { 0 });
        std::thread::sleep(Duration::from_millis(100));
        if i % 3 == 1 {
            // An invalid file in between: refused, table unchanged.
            std::fs::write(&file, config_bad()).unwrap();
            if i % 2 == 1 {
                match client.reload(None) {
                    Err(ClientError::Api(e)) => {
                        assert_eq!(e.kind, ErrorKind::Invalid);
                        assert!(e.message.contains("rvs.toml:") && e.message.contains("scheduler"), "{}", e.message);
                    }
                    other => panic!("invalid config accepted: {other:?}"),
                }
            } else {
                let f = client_status(&client).failures;
                // SAFETY: as above.
                unsafe { libc::kill(pid, libc::SIGHUP) };
                wait_for("refused SIGHUP reload", &daemon, || client_status(&client).failures == f + 1);
            }
            refused += 1;
            assert_eq!(dests_of(&client, 80), want, "a refused reload changes nothing");
        }
    }
    assert!(refused >= 6);
    let st = client_status(&client);
    assert_eq!(st.loads, 1 + RELOADS as u64);
    assert_eq!(st.failures, refused);
    assert!(daemon.log().contains("refused, configuration unchanged"));
    std::thread::sleep(Duration::from_millis(300));

    // Streams: kept going through every reload, every byte echoed intact.
    stop.store(true, Ordering::Relaxed);
    let mut open = Vec::new();
    let mut total = 0;
    for (k, h) in streams.into_iter().enumerate() {
        let (sent, same, s) = h.join().unwrap_or_else(|_| panic!("stream {k} failed\n{}", daemon.log()));
        assert!(sent > 100_000, "stream {k} moved only {sent} bytes");
        assert_eq!(sent, same, "stream {k}: lost bytes");
        total += sent;
        open.push(s);
    }

    // Filters: all streams on RS1, none moved to RS2.
    let svc = ServiceKey::Tcp { addr: VIP.into(), port: 80 };
    let on_rs1 = ConnFilter { service: Some(svc), server: Some((RS1.into(), 8080)), state: Some("established".into()) };
    let listed = client.connections_filtered(&on_rs1).unwrap();
    assert_eq!(listed.len(), STREAMS as usize, "{listed:?}");
    assert!(listed.iter().all(|c| c.daddr == std::net::IpAddr::V4(RS1) && c.state == "ESTABLISHED"));
    let on_rs2 = ConnFilter { server: Some((RS2.into(), 8080)), ..Default::default() };
    assert!(client.connections_filtered(&on_rs2).unwrap().is_empty());

    // Metrics after real traffic (rates need two estimator ticks).
    std::thread::sleep(Duration::from_millis(2500));
    let text = scrape(&d_ns);
    let (types, samples) = exposition::parse_exposition(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(types.get("node_ipvs_incoming_bytes_total").map(String::as_str), Some("counter"));
    let v =
        |n: &str, l: &[(&str, &str)]| exposition::find(&samples, n, l).unwrap_or_else(|| panic!("{n} {l:?}\n{text}")).2;
    assert!(v("node_ipvs_incoming_bytes_total", &[]) >= total as f64, "{text}");
    assert!(v("node_ipvs_outgoing_bytes_total", &[]) >= total as f64);
    assert!(v("node_ipvs_connections_total", &[]) >= f64::from(STREAMS));
    let rs1 = [("remote_address", "10.9.2.2"), ("remote_port", "8080"), ("local_port", "80"), ("proto", "TCP")];
    assert_eq!(v("node_ipvs_backend_connections_active", &rs1), f64::from(STREAMS));
    assert_eq!(v("node_ipvs_backend_weight", &rs1), 1.0);
    assert!(v("rvs_conn_table_entries", &[]) >= f64::from(STREAMS));
    assert!(v("rvs_conn_table_limit", &[]) > 0.0);
    assert!(exposition::find(&samples, "rvs_drops_total", &[("reason", "truncated")]).is_some());
    assert!(v("rvs_service_rate_inbps", &[("local_port", "80")]) > 0.0, "{text}");
    assert!(exposition::find(&samples, "rvs_health_check_up", &[("server", "10.9.2.2:8080")]).is_some(), "{text}");

    // Drain RS1 with a short deadline: listed with its connections, then finished.
    client
        .drain(&control::ops::DrainRequest { service: svc, addr: RS1.into(), port: 8080, timeout_secs: Some(2) })
        .unwrap();
    let d = client.draining().unwrap();
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].active, u32::from(STREAMS));
    assert!(dests_of(&client, 80).is_empty(), "a draining server leaves the scheduling list");
    let text = scrape(&d_ns);
    let (_, samples) = exposition::parse_exposition(&text).unwrap();
    let dr = [("remote_address", "10.9.2.2"), ("state", "active")];
    assert_eq!(exposition::find(&samples, "rvs_draining_connections", &dr).map(|s| s.2), Some(f64::from(STREAMS)));
    wait_for("the drain deadline", &daemon, || client.draining().map(|d| d.is_empty()).unwrap_or(false));
    assert!(daemon.log().contains("drain of 10.9.2.2:8080 finished"));
    drop(open);

    stop_rs.store(true, Ordering::Relaxed);
    rs.join().unwrap();
    let mut child = daemon.child.take().unwrap();
    // SAFETY: kill(2) on our child's pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let st = wait_exit(&mut child, Duration::from_secs(10)).expect("rvsd stops on SIGTERM");
    assert!(st.success(), "{}", daemon.log());
}

fn client_status(c: &Client) -> control::ops::ConfigStatus {
    let (st, body) = c.request("GET", "/v1/config", None).expect("config status");
    assert_eq!(st, 200);
    serde_json::from_slice(&body).expect("ConfigStatus")
}

/// Health configuration: RS1 and RS2 behind rr, each with a TCP check whose retries make a
/// fresh checker slow (about 1.5 s) to see a refused port: the window in which a reload
/// without carried state would have a dead server in the table.
fn config_health(sched: &str, rs1_weight: u32) -> String {
    let check = "[[services.real_servers.checks]]\ntype = \"tcp\"\ndelay_loop = 0.2\nconnect_timeout = 0.5\n\
                 retry = 3\ndelay_before_retry = 0.5\nwarmup = 0\n";
    format!(
        "[[interfaces]]\nname = \"d0\"\n[[interfaces]]\nname = \"d1\"\n\
         [[services]]\nprotocol = \"tcp\"\naddress = \"10.9.1.100:80\"\nscheduler = \"{sched}\"\n\
         [[services.real_servers]]\naddress = \"10.9.2.2:8080\"\nmethod = \"nat\"\nweight = {rs1_weight}\n{check}\
         [[services.real_servers]]\naddress = \"10.9.2.3:8080\"\nmethod = \"nat\"\n{check}"
    )
}

/// `n` short connections to the VIP from the client namespace, each echoing one message;
/// returns the failures (a connection scheduled to a dead server is refused).
fn short_connections(c_ns: &str, n: usize) -> Vec<String> {
    in_netns(c_ns, move || {
        let mut errors = Vec::new();
        for i in 0..n {
            let r = (|| -> std::io::Result<()> {
                let mut s = TcpStream::connect_timeout(&SocketAddr::from((VIP, 80)), Duration::from_secs(3))?;
                s.set_read_timeout(Some(Duration::from_secs(3)))?;
                let msg = format!("hello {i}");
                s.write_all(msg.as_bytes())?;
                let mut back = vec![0u8; msg.len()];
                s.read_exact(&mut back)?;
                if back != msg.as_bytes() {
                    return Err(std::io::Error::other("echo changed"));
                }
                Ok(())
            })();
            if let Err(e) = r {
                errors.push(format!("connection {i}: {e}"));
            }
        }
        errors
    })
    .join()
    .expect("client thread")
}

#[test]
fn a_reload_keeps_a_failed_real_server_out() {
    if skip_unless_root("a_reload_keeps_a_failed_real_server_out") {
        return;
    }
    let mut netns = Netns(Vec::new());
    let (c_ns, d_ns, r_ns) = topology(&mut netns, "h");
    let dir = fresh_dir("rvsd-health-ns");
    let file = dir.join("rvs.toml");
    std::fs::write(&file, config_health("rr", 1)).unwrap();
    let stop1 = Arc::new(AtomicBool::new(false));
    let rs1 = echo_servers(&r_ns, &[RS1], stop1.clone());
    let stop2 = Arc::new(AtomicBool::new(false));
    let rs2 = echo_servers(&r_ns, &[RS2], stop2.clone());
    let (daemon, sock) = start_daemon(&d_ns, &file, dir.clone());
    let client = Client::new(&sock);
    let both = vec![("10.9.2.2".to_string(), 1), ("10.9.2.3".to_string(), 1)];
    assert_eq!(dests_of(&client, 80), both);
    wait_for("both checks to pass", &daemon, || health(&client)[0].reals.iter().all(|r| r.checks_ok > 0));

    // RS2's listener stops: its check fails and the checker removes it.
    stop2.store(true, Ordering::Relaxed);
    rs2.join().unwrap();
    wait_for("the checker to remove RS2", &daemon, || dests_of(&client, 80) == [("10.9.2.2".to_string(), 1)]);

    // A reload that changes something else (scheduler, RS1's weight).
    std::fs::write(&file, config_health("wrr", 2)).unwrap();
    client.reload(None).unwrap_or_else(|e| panic!("reload: {e}\n{}", daemon.log()));
    let only_rs1 = vec![("10.9.2.2".to_string(), 2)];
    assert_eq!(dests_of(&client, 80), only_rs1, "right after the reload\n{}", daemon.log());
    let snap = client.snapshot().unwrap();
    assert_eq!(snap.services[0].spec.scheduler, "wrr", "the reload took effect");
    // Connections at once: none may be scheduled to the dead server (it would refuse them).
    let errors = short_connections(&c_ns, 12);
    assert!(errors.is_empty(), "{errors:?}\n{}", daemon.log());
    let to_rs2 = ConnFilter { server: Some((RS2.into(), 8080)), ..Default::default() };
    assert!(client.connections_filtered(&to_rs2).unwrap().is_empty(), "a connection was sent to RS2");
    let on_rs1 = ConnFilter { server: Some((RS1.into(), 8080)), ..Default::default() };
    assert!(client.connections_filtered(&on_rs1).unwrap().len() >= 12);
    // Longer than a fresh checker needs to notice: still out, and counted down once.
    std::thread::sleep(Duration::from_millis(2000));
    assert_eq!(dests_of(&client, 80), only_rs1);
    let h = health(&client);
    let r2 = h[0].reals.iter().find(|r| r.addr == std::net::IpAddr::V4(RS2)).expect("RS2 in /v1/health");
    assert_eq!((r2.up, r2.transitions_down, r2.transitions_up), (false, 1, 0));
    assert!(daemon.log().contains("health state carried over"), "{}", daemon.log());

    // The carried checker sees RS2 come back.
    stop2.store(false, Ordering::Relaxed);
    let rs2 = echo_servers(&r_ns, &[RS2], stop2.clone());
    wait_for("RS2 back", &daemon, || dests_of(&client, 80).len() == 2);
    assert_eq!(dests_of(&client, 80), [("10.9.2.2".to_string(), 2), ("10.9.2.3".to_string(), 1)]);

    stop1.store(true, Ordering::Relaxed);
    stop2.store(true, Ordering::Relaxed);
    rs1.join().unwrap();
    rs2.join().unwrap();
    drop(daemon);
}
