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
//! removed by guards, also when an assertion fails.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use control::api::{self, Command as Cmd, ErrorKind};
use control::client::{Client, ClientError};

const VIP: Ipv4Addr = Ipv4Addr::new(10, 9, 1, 100);
const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 9, 1, 2);
/// Client addresses used: 10.9.1.2 ..= 10.9.1.(1 + CLIENTS), so connections spread over the
/// workers and a steering mistake (reply on another worker than the request) shows.
const CLIENTS: u8 = 8;
const WORKERS: &str = "4";
const DIR_EXT: Ipv4Addr = Ipv4Addr::new(10, 9, 1, 1);
const RS: Ipv4Addr = Ipv4Addr::new(10, 9, 2, 2);

fn is_root() -> bool {
    // SAFETY: no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(out.status.success(), "ip {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// Namespaces, deleted on drop (veths go with them).
struct Netns(Vec<String>);

impl Netns {
    fn add(&mut self, tag: &str) -> String {
        let name = format!("rvsd-t-{}-{tag}", std::process::id());
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        ip(&["netns", "add", &name]);
        self.0.push(name.clone());
        name
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for n in &self.0 {
            let _ = Command::new("ip").args(["netns", "del", n]).status();
        }
    }
}

/// The daemon process; killed on drop if still running.
struct Daemon {
    child: Option<Child>,
    log: PathBuf,
    dir: PathBuf,
}

impl Daemon {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(c) = &mut self.child {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() {
            eprintln!("---- rvsd log ----\n{}", self.log());
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs `f` on a thread inside namespace `ns`.
fn in_netns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> std::thread::JoinHandle<T> {
    let ns = ns.to_string();
    std::thread::spawn(move || {
        let file = File::open(format!("/var/run/netns/{ns}")).expect("open netns");
        // SAFETY: setns on a valid namespace fd; affects only this thread.
        let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
        f()
    })
}

fn topology(ns: &mut Netns) -> (String, String, String) {
    let c = ns.add("c");
    let d = ns.add("d");
    let r = ns.add("r");
    ip(&["-n", &c, "link", "add", "c0", "type", "veth", "peer", "name", "d0", "netns", &d]);
    ip(&["-n", &r, "link", "add", "r0", "type", "veth", "peer", "name", "d1", "netns", &d]);
    for (n, dev, addr) in
        [(&c, "c0", "10.9.1.2/24"), (&d, "d0", "10.9.1.1/24"), (&d, "d1", "10.9.2.1/24"), (&r, "r0", "10.9.2.2/24")]
    {
        ip(&["-n", n, "link", "set", dev, "addrgenmode", "none"]);
        ip(&["-n", n, "addr", "add", addr, "dev", dev]);
        ip(&["-n", n, "link", "set", dev, "up"]);
    }
    for n in [&c, &d, &r] {
        ip(&["-n", n, "link", "set", "lo", "up"]);
    }
    for k in 1..CLIENTS {
        ip(&["-n", &c, "addr", "add", &format!("10.9.1.{}/24", 2 + k), "dev", "c0"]);
    }
    ip(&["-n", &r, "route", "add", "default", "via", "10.9.2.1"]);
    ip(&["-n", &c, "route", "add", "default", "via", "10.9.1.1"]);
    (c, d, r)
}

fn start_daemon(ns: &str) -> (Daemon, PathBuf) {
    let dir = std::env::temp_dir().join(format!("rvsd-t-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let sock = dir.join("run/rvsd.sock");
    let log = dir.join("rvsd.log");
    let out = File::create(&log).unwrap();
    let child = Command::new("ip")
        .args(["netns", "exec", ns, env!("CARGO_BIN_EXE_rvsd"), "-i", "d0", "-i", "d1", "--workers", WORKERS])
        .args(["--log", "debug", "--socket"])
        .arg(&sock)
        .stdout(Stdio::null())
        .stderr(out)
        .spawn()
        .expect("start rvsd");
    let mut d = Daemon { child: Some(child), log, dir };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if sock.exists() && Client::new(&sock).snapshot().is_ok() {
            break;
        }
        if let Some(st) = d.child.as_mut().unwrap().try_wait().unwrap() {
            panic!("rvsd exited early ({st}):\n{}", d.log());
        }
        assert!(Instant::now() < deadline, "rvsd did not come up:\n{}", d.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    (d, sock)
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

/// A TCP connection from `src` (bound before connecting) to `dst`.
fn connect_from(src: Ipv4Addr, dst: SocketAddr) -> TcpStream {
    use std::os::fd::FromRawFd;
    let sa = |a: Ipv4Addr, port: u16| libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr { s_addr: u32::from(a).to_be() },
        sin_zero: [0; 8],
    };
    let SocketAddr::V4(dst) = dst else { panic!("IPv4 only") };
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: plain socket/bind/connect with valid sockaddr_in values; the fd is owned by the
    // TcpStream afterwards.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0);
        let s = TcpStream::from_raw_fd(fd);
        let tv = libc::timeval { tv_sec: 15, tv_usec: 0 };
        let tvp = &tv as *const libc::timeval as *const libc::c_void;
        let tvl = std::mem::size_of::<libc::timeval>() as libc::socklen_t;
        libc::setsockopt(fd, libc::SOL_SOCKET, libc::SO_SNDTIMEO, tvp, tvl);
        let local = sa(src, 0);
        assert_eq!(libc::bind(fd, &local as *const _ as *const libc::sockaddr, len), 0, "bind {src}");
        let remote = sa(*dst.ip(), dst.port());
        let rc = libc::connect(fd, &remote as *const _ as *const libc::sockaddr, len);
        assert_eq!(rc, 0, "connect from {src} to {dst}: {}", std::io::Error::last_os_error());
        s
    }
}

fn wait_exit(child: &mut Child, timeout: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Some(st) = child.try_wait().unwrap() {
            return Some(st);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

#[test]
fn nat_tcp_echo_through_the_daemon() {
    if !is_root() {
        println!("note: nat_tcp_echo_through_the_daemon skipped: needs root (network namespaces, AF_PACKET)");
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
    assert!(busy >= 2, "connections spread over several workers: {stats}");
    assert!(stats["arp_replies"].as_u64().unwrap() >= 1, "rvs answered ARP for the VIP: {stats}");

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
