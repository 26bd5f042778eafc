//! Every health checker type against a real server process, through the daemon, as root in
//! namespaces (harness: `support/ns.rs`). rvsd runs in the director namespace from a
//! keepalived.conf (`--keepalived`) with one real server per checker type; each server is
//! stopped and restarted in turn, and `GET /v1/snapshot` and `GET /v1/health` must show the
//! server out (weight 0 with inhibit_on_failure) and back within the timing bound, while the
//! other servers stay as they are. A second test, from a native file (`--config`): a quorum
//! loss puts the sorry server in and its recovery takes it out again. Without root the tests
//! print a note and pass; without `openssl`, the SSL_GET server is left out (with a note).
//!
//! ```text
//!  director ns (rvsd, -i d1)                  real-server ns
//!  d1 10.9.2.1/24 ───────── veth ─────────── r0 10.9.2.2 (tcp 8081, http 8080, ssl 8443, udp 9053)
//!  MISC_CHECK script (flag file)                 10.9.2.6 (PING_CHECK: address removed / added)
//!  VIP 10.9.1.100:80/tcp, :53/udp
//! ```
//!
//! Servers: `socat` (TCP and UDP echo), `python3 -m http.server` (HTTP_GET, MD5 digest of
//! the file), `openssl s_server -WWW` (SSL_GET, self-signed certificate), a script that
//! tests a flag file (MISC_CHECK), the address itself (PING_CHECK).
//!
//! Timing: delay_loop 1.5 s, retry 1, delay_before_retry 0.5 s, connect_timeout 1 s
//! (misc_timeout 1 s). A failure must be seen within the engine's bound
//! `delay_loop + (retry + 1) × connect_timeout + retry × delay_before_retry` = 4 s, which with
//! these values equals `delay_loop × (retry + 1) + connect_timeout`; a recovery within
//! `delay_loop + connect_timeout` = 2.5 s; both plus `SLACK` (500 ms: thread and process
//! scheduling, the 20 ms polling of the API, a server's first answer). Detection is timed
//! from the moment the server process is gone, recovery from the moment the restarted
//! server answers in its namespace. The measured times are printed.

#[path = "support/ns.rs"]
mod ns;

use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use control::api::{ServiceKey, Snapshot};
use control::client::Client;
use control::ops::ServiceHealth;
use ns::{Daemon, Netns, fresh_dir, health, in_netns, ip, link_up, skip_unless_root, spawn_daemon};
use rvs_config::health::md5;

const RS: Ipv4Addr = Ipv4Addr::new(10, 9, 2, 2);
const RS_MISC: Ipv4Addr = Ipv4Addr::new(10, 9, 2, 3);
const RS_PING: Ipv4Addr = Ipv4Addr::new(10, 9, 2, 6);
const SLACK: Duration = Duration::from_millis(500);
const DELAY_LOOP: Duration = Duration::from_millis(1500);
const RETRY: u32 = 1;
const DELAY_BEFORE_RETRY: Duration = Duration::from_millis(500);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// The keepalived.conf timers of every check (inherited from the virtual server).
const TIMERS: &str = " delay_loop 1.5\n retry 1\n delay_before_retry 0.5\n connect_timeout 1\n warmup 0\n";

fn down_bound() -> Duration {
    DELAY_LOOP + CONNECT_TIMEOUT * (RETRY + 1) + DELAY_BEFORE_RETRY * RETRY + SLACK
}

fn up_bound() -> Duration {
    DELAY_LOOP + CONNECT_TIMEOUT + SLACK
}

/// Director and real-server namespaces joined by one veth.
fn topology(netns: &mut Netns, tag: &str) -> (String, String) {
    let d = netns.add(&format!("{tag}d"));
    let r = netns.add(&format!("{tag}r"));
    ip(&["-n", &r, "link", "add", "r0", "type", "veth", "peer", "name", "d1", "netns", &d]);
    for (n, dev, addr) in [(&d, "d1", "10.9.2.1/24"), (&r, "r0", "10.9.2.2/24")] {
        link_up(n, dev, addr, None);
        ip(&["-n", n, "link", "set", "lo", "up"]);
    }
    for a in ["10.9.2.3/24", "10.9.2.6/24"] {
        ip(&["-n", &r, "addr", "add", a, "dev", "r0"]);
    }
    (d, r)
}

/// A server process in a namespace, in a process group of its own (socat forks a child per
/// client): the group is killed by its id on `stop` and on drop.
struct Proc {
    ns: String,
    argv: Vec<String>,
    cwd: PathBuf,
    child: Option<Child>,
}

impl Proc {
    fn new(ns: &str, argv: &[&str], cwd: &Path) -> Proc {
        let mut p =
            Proc { ns: ns.into(), argv: argv.iter().map(|s| s.to_string()).collect(), cwd: cwd.into(), child: None };
        p.start();
        p
    }
    fn start(&mut self) {
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns])
            .args(&self.argv)
            .current_dir(&self.cwd)
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {:?}: {e}", self.argv));
        self.child = Some(child);
    }
    /// Kills the process group and reaps the process: the server is gone on return.
    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: kill(2) on the process group this test created (pgid = the child's pid).
            unsafe { libc::kill(-(c.id() as i32), libc::SIGKILL) };
            let _ = c.wait();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Waits (in namespace `ns`, up to 10 s) until `ready` holds; panics otherwise.
fn wait_ready(ns: &str, what: &str, ready: impl Fn() -> bool + Send + 'static) {
    let ok = in_netns(ns, move || {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if ready() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    })
    .join()
    .expect("readiness thread");
    assert!(ok, "{what} did not start");
}

fn tcp_ready(addr: SocketAddr) -> impl Fn() -> bool + Send + 'static {
    move || TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
}

fn udp_echo_ready(addr: SocketAddr) -> impl Fn() -> bool + Send + 'static {
    move || {
        let Ok(s) = UdpSocket::bind("0.0.0.0:0") else { return false };
        let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
        let mut buf = [0u8; 64];
        s.connect(addr).is_ok() && s.send(b"ready?").is_ok() && s.recv(&mut buf).is_ok_and(|n| &buf[..n] == b"ready?")
    }
}

fn start_daemon(ns: &str, flag: &str, config: &Path, dir: PathBuf) -> (Daemon, PathBuf) {
    spawn_daemon(ns, dir, |c| c.arg(flag).arg(config).args(["-i", "d1", "--workers", "1", "--log", "debug"]))
}

/// Weight of dest `addr:port` in the service on VIP port `vport`; None when absent.
fn weight_in(snap: &Snapshot, vport: u16, addr: Ipv4Addr, port: u16) -> Option<u32> {
    let svc = snap.services.iter().find(|s| s.spec.key.addr_port().map(|a| a.1) == Some(vport))?;
    svc.dests.iter().find(|d| d.spec.addr == IpAddr::V4(addr) && d.spec.port == port).map(|d| d.spec.weight)
}

/// `/v1/health`'s view of the real server `addr` (configured port `port`): up?
fn health_up(h: &[ServiceHealth], addr: Ipv4Addr, port: u16) -> Option<bool> {
    h.iter().flat_map(|s| &s.reals).find(|r| r.addr == IpAddr::V4(addr) && r.port == Some(port)).map(|r| r.up)
}

/// Polls snapshot and health every 20 ms until `done(snapshot, health)`, at most `limit`
/// (plus a margin, so a late change is reported with its time rather than as a timeout).
fn time_until(
    c: &Client,
    daemon: &Daemon,
    what: &str,
    limit: Duration,
    done: impl Fn(&Snapshot, &[ServiceHealth]) -> bool,
) -> Duration {
    let t0 = Instant::now();
    loop {
        let snap = c.snapshot().expect("GET /v1/snapshot");
        if done(&snap, &health(c)) {
            return t0.elapsed();
        }
        assert!(t0.elapsed() < limit + Duration::from_secs(5), "timed out: {what}\n{snap:?}\n{}", daemon.log());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One real server under test: where it is and what "out" looks like.
struct Case {
    name: &'static str,
    vport: u16,
    addr: Ipv4Addr,
    port: u16,
    weight: u32,
    /// inhibit_on_failure: out = weight 0 instead of absent.
    inhibit: bool,
}

impl Case {
    fn is_in(&self, s: &Snapshot) -> bool {
        weight_in(s, self.vport, self.addr, self.port) == Some(self.weight)
    }
    fn is_out(&self, s: &Snapshot) -> bool {
        weight_in(s, self.vport, self.addr, self.port) == if self.inhibit { Some(0) } else { None }
    }
}

fn keepalived_conf(dir: &Path, digest: &str, ssl: bool) -> String {
    let ssl_rs = if ssl {
        "real_server 10.9.2.2 8443 {\n  SSL_GET {\n   url {\n    path /health.txt\n    digest DIGEST\n   }\n  }\n }\n"
    } else {
        ""
    };
    format!(
        "virtual_server 10.9.1.100 80 {{\n lvs_sched rr\n lvs_method NAT\n protocol TCP\n{TIMERS}\
         real_server 10.9.2.2 8081 {{\n  weight 2\n  inhibit_on_failure\n  TCP_CHECK {{\n  }}\n }}\n\
         real_server 10.9.2.2 8080 {{\n  HTTP_GET {{\n   url {{\n    path /health.txt\n    digest DIGEST\n   }}\n  }}\n }}\n\
         {ssl_rs}\
         real_server 10.9.2.3 8082 {{\n  MISC_CHECK {{\n   misc_path \"{misc}\"\n   misc_timeout 1\n  }}\n }}\n\
         real_server 10.9.2.6 8083 {{\n  PING_CHECK {{\n  }}\n }}\n\
         }}\n\
         virtual_server 10.9.1.100 53 {{\n lvs_sched rr\n lvs_method NAT\n protocol UDP\n{TIMERS}\
         real_server 10.9.2.2 9053 {{\n  UDP_CHECK {{\n   payload 7276732d70696e67\n   require_reply 7276732d\n  }}\n }}\n\
         }}\n",
        misc = dir.join("check.sh").display()
    )
    .replace("DIGEST", digest)
}

fn have_openssl() -> bool {
    Command::new("openssl").arg("version").stdout(Stdio::null()).status().is_ok_and(|s| s.success())
}

#[test]
fn every_checker_type_sees_its_server_stop_and_restart() {
    if skip_unless_root("every_checker_type_sees_its_server_stop_and_restart") {
        return;
    }
    let ssl = have_openssl();
    if !ssl {
        println!("note: `openssl` not installed (Debian package openssl): SSL_GET left out");
    }
    let mut netns = Netns(Vec::new());
    let (d_ns, r_ns) = topology(&mut netns, "k");
    let dir = fresh_dir("rvsd-checkers-ns");
    let doc = dir.join("doc");
    std::fs::create_dir_all(&doc).unwrap();
    std::fs::write(doc.join("health.txt"), "healthy\n").unwrap();
    let digest = md5::hex(&md5::md5(b"healthy\n"));
    let flag = dir.join("flag");
    std::fs::write(&flag, "").unwrap();
    let script = dir.join("check.sh");
    std::fs::write(&script, format!("#!/bin/sh\ntest -f '{}'\n", flag.display())).unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();

    // The servers (all started before the daemon, so every check starts up).
    let rs = |p: u16| SocketAddr::from((RS, p));
    let mut tcp = Proc::new(&r_ns, &["socat", "TCP4-LISTEN:8081,bind=10.9.2.2,reuseaddr,fork", "PIPE"], &dir);
    let doc_s = doc.display().to_string();
    let mut http =
        Proc::new(&r_ns, &["python3", "-m", "http.server", "8080", "--bind", "10.9.2.2", "--directory", &doc_s], &dir);
    let mut tls = if ssl {
        let st = Command::new("openssl")
            .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=test", "-days", "1"])
            .args(["-keyout", "key.pem", "-out", "cert.pem"])
            .current_dir(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("openssl req");
        assert!(st.success(), "openssl req");
        let (cert, key) = (dir.join("cert.pem").display().to_string(), dir.join("key.pem").display().to_string());
        let argv = ["openssl", "s_server", "-quiet", "-WWW", "-accept", "10.9.2.2:8443", "-cert", &cert, "-key", &key];
        Some(Proc::new(&r_ns, &argv, &doc))
    } else {
        None
    };
    let mut udp = Proc::new(&r_ns, &["socat", "UDP4-RECVFROM:9053,bind=10.9.2.2,fork", "PIPE"], &dir);
    wait_ready(&r_ns, "socat tcp", tcp_ready(rs(8081)));
    wait_ready(&r_ns, "http.server", tcp_ready(rs(8080)));
    if ssl {
        wait_ready(&r_ns, "s_server", tcp_ready(rs(8443)));
    }
    wait_ready(&r_ns, "socat udp", udp_echo_ready(rs(9053)));

    let conf = dir.join("keepalived.conf");
    std::fs::write(&conf, keepalived_conf(&dir, &digest, ssl)).unwrap();
    let (daemon, sock) = start_daemon(&d_ns, "--keepalived", &conf, dir.clone());
    let client = Client::new(&sock);

    let mut cases = vec![
        Case { name: "TCP_CHECK", vport: 80, addr: RS, port: 8081, weight: 2, inhibit: true },
        Case { name: "HTTP_GET", vport: 80, addr: RS, port: 8080, weight: 1, inhibit: false },
    ];
    if ssl {
        cases.push(Case { name: "SSL_GET", vport: 80, addr: RS, port: 8443, weight: 1, inhibit: false });
    }
    cases.extend([
        Case { name: "UDP_CHECK", vport: 53, addr: RS, port: 9053, weight: 1, inhibit: false },
        Case { name: "MISC_CHECK", vport: 80, addr: RS_MISC, port: 8082, weight: 1, inhibit: false },
        Case { name: "PING_CHECK", vport: 80, addr: RS_PING, port: 8083, weight: 1, inhibit: false },
    ]);
    // Every check has passed at least once and every server is in.
    time_until(&client, &daemon, "all checks passing", Duration::from_secs(10), |s, h| {
        let reals: Vec<_> = h.iter().flat_map(|s| &s.reals).collect();
        reals.len() == cases.len() && reals.iter().all(|r| r.up && r.checks_ok > 0) && cases.iter().all(|c| c.is_in(s))
    });

    let mut measured = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let others_in = |s: &Snapshot| cases.iter().enumerate().all(|(j, c)| j == i || c.is_in(s));
        // Stop the server; the moment it is gone starts the clock.
        match case.name {
            "TCP_CHECK" => tcp.stop(),
            "HTTP_GET" => http.stop(),
            "SSL_GET" => tls.as_mut().expect("SSL server").stop(),
            "UDP_CHECK" => udp.stop(),
            "MISC_CHECK" => std::fs::remove_file(&flag).unwrap(),
            "PING_CHECK" => ip(&["-n", &r_ns, "addr", "del", "10.9.2.6/24", "dev", "r0"]),
            _ => unreachable!(),
        }
        let down = time_until(&client, &daemon, &format!("{} down", case.name), down_bound(), |s, h| {
            case.is_out(s) && health_up(h, case.addr, case.port) == Some(false)
        });
        let snap = client.snapshot().unwrap();
        assert!(others_in(&snap), "{}: another server changed\n{snap:?}", case.name);

        // Restart it; the clock starts when it answers again.
        match case.name {
            "TCP_CHECK" => {
                tcp.start();
                wait_ready(&r_ns, "socat tcp", tcp_ready(rs(8081)));
            }
            "HTTP_GET" => {
                http.start();
                wait_ready(&r_ns, "http.server", tcp_ready(rs(8080)));
            }
            "SSL_GET" => {
                tls.as_mut().expect("SSL server").start();
                wait_ready(&r_ns, "s_server", tcp_ready(rs(8443)));
            }
            "UDP_CHECK" => {
                udp.start();
                wait_ready(&r_ns, "socat udp", udp_echo_ready(rs(9053)));
            }
            "MISC_CHECK" => std::fs::write(&flag, "").unwrap(),
            "PING_CHECK" => ip(&["-n", &r_ns, "addr", "add", "10.9.2.6/24", "dev", "r0"]),
            _ => unreachable!(),
        }
        let up = time_until(&client, &daemon, &format!("{} up", case.name), up_bound(), |s, h| {
            case.is_in(s) && health_up(h, case.addr, case.port) == Some(true)
        });
        measured.push((case.name, down, up));
        assert!(
            down <= down_bound(),
            "{}: failure seen after {down:?} > {:?}\n{}",
            case.name,
            down_bound(),
            daemon.log()
        );
        assert!(up <= up_bound(), "{}: recovery seen after {up:?} > {:?}\n{}", case.name, up_bound(), daemon.log());
        let snap = client.snapshot().unwrap();
        assert!(others_in(&snap) && case.is_in(&snap), "{}: table after recovery\n{snap:?}", case.name);
    }

    // One transition each way per server, counted by the daemon.
    let h = health(&client);
    for c in &cases {
        let r = h.iter().flat_map(|s| &s.reals).find(|r| r.addr == IpAddr::V4(c.addr) && r.port == Some(c.port));
        let r = r.unwrap_or_else(|| panic!("{} in /v1/health", c.name));
        assert_eq!((r.up, r.transitions_down, r.transitions_up), (true, 1, 1), "{}", c.name);
        assert!(!r.checkers.is_empty() && r.checks_failed > 0, "{}: {r:?}", c.name);
    }
    println!(
        "checker timings (delay_loop 1.5 s, retry 1, delay_before_retry 0.5 s, connect_timeout 1 s; \
         bounds {:?} down, {:?} up, slack {SLACK:?} included):",
        down_bound(),
        up_bound()
    );
    for (name, down, up) in &measured {
        println!(
            "  {name:<10} failure seen after {:>4} ms   recovery seen after {:>4} ms",
            down.as_millis(),
            up.as_millis()
        );
    }
    drop(daemon);
}

/// Native file: one service with quorum 2 over two real servers of weight 1 (TCP checks) and
/// a sorry server.
fn quorum_toml() -> String {
    "[[services]]\nprotocol = \"tcp\"\naddress = \"10.9.1.100:80\"\nscheduler = \"rr\"\n\
     delay_loop = 1.5\nretry = 1\ndelay_before_retry = 0.5\nconnect_timeout = 1\nwarmup = 0\n\
     quorum = 2\nsorry_server = { address = \"10.9.2.9:8080\", method = \"nat\" }\n\
     [[services.checks]]\ntype = \"tcp\"\n\
     [[services.real_servers]]\naddress = \"10.9.2.2:8081\"\nmethod = \"nat\"\n\
     [[services.real_servers]]\naddress = \"10.9.2.2:8082\"\nmethod = \"nat\"\n"
        .to_string()
}

fn dests(s: &Snapshot) -> Vec<(String, u32)> {
    let key = ServiceKey::Tcp { addr: IpAddr::V4(Ipv4Addr::new(10, 9, 1, 100)), port: 80 };
    let mut v: Vec<_> = s
        .services
        .iter()
        .filter(|s| s.spec.key == key)
        .flat_map(|s| &s.dests)
        .map(|d| (SocketAddr::new(d.spec.addr, d.spec.port).to_string(), d.spec.weight))
        .collect();
    v.sort();
    v
}

#[test]
fn quorum_loss_switches_to_the_sorry_server_and_back() {
    if skip_unless_root("quorum_loss_switches_to_the_sorry_server_and_back") {
        return;
    }
    let mut netns = Netns(Vec::new());
    let (d_ns, r_ns) = topology(&mut netns, "q");
    let dir = fresh_dir("rvsd-quorum-ns");
    let a = Proc::new(&r_ns, &["socat", "TCP4-LISTEN:8081,bind=10.9.2.2,reuseaddr,fork", "PIPE"], &dir);
    let mut b = Proc::new(&r_ns, &["socat", "TCP4-LISTEN:8082,bind=10.9.2.2,reuseaddr,fork", "PIPE"], &dir);
    wait_ready(&r_ns, "server a", tcp_ready(SocketAddr::from((RS, 8081))));
    wait_ready(&r_ns, "server b", tcp_ready(SocketAddr::from((RS, 8082))));
    let file = dir.join("rvs.toml");
    std::fs::write(&file, quorum_toml()).unwrap();
    let (daemon, sock) = start_daemon(&d_ns, "--config", &file, dir.clone());
    let client = Client::new(&sock);
    let both = vec![("10.9.2.2:8081".to_string(), 1), ("10.9.2.2:8082".to_string(), 1)];
    let sorry = vec![("10.9.2.9:8080".to_string(), 1)];
    time_until(&client, &daemon, "both checks passing", Duration::from_secs(10), |s, h| {
        dests(s) == both && h[0].quorum_up && h[0].reals.iter().all(|r| r.checks_ok > 0)
    });

    // b stops: live weight 1 < quorum 2, so a leaves too and the sorry server comes in.
    b.stop();
    let lost = time_until(&client, &daemon, "quorum lost", down_bound(), |s, h| {
        dests(s) == sorry && !h[0].quorum_up && h[0].sorry_active && h[0].live_weight == 1
    });
    b.start();
    wait_ready(&r_ns, "server b", tcp_ready(SocketAddr::from((RS, 8082))));
    let gained = time_until(&client, &daemon, "quorum gained", up_bound(), |s, h| {
        dests(s) == both && h[0].quorum_up && !h[0].sorry_active && h[0].live_weight == 2
    });
    println!(
        "quorum: lost (sorry server in) after {} ms, gained (sorry server out) after {} ms",
        lost.as_millis(),
        gained.as_millis()
    );
    assert!(lost <= down_bound(), "quorum loss seen after {lost:?}\n{}", daemon.log());
    assert!(gained <= up_bound(), "quorum gain seen after {gained:?}\n{}", daemon.log());
    // Health events are logged by the daemon's housekeeping tick (every second).
    let deadline = Instant::now() + Duration::from_secs(3);
    while !(daemon.log().contains("quorum lost") && daemon.log().contains("quorum gained")) {
        assert!(Instant::now() < deadline, "the daemon logs both changes:\n{}", daemon.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(a);
    drop(daemon);
}
