//! Namespace harness shared by the root tests: namespaces removed on drop, the usual
//! client / director / real-server topology, the daemon started in a namespace and killed on
//! drop (its log printed when a test fails), running code inside a namespace, TCP from a
//! chosen source address.
#![allow(dead_code)]

use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use control::client::Client;
use control::ops::ServiceHealth;

pub fn is_root() -> bool {
    // SAFETY: no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// True (after a note) when the test `test` cannot run here: it needs root.
pub fn skip_unless_root(test: &str) -> bool {
    if !is_root() {
        println!("note: {test} skipped: needs root (network namespaces, AF_PACKET)");
        return true;
    }
    false
}

/// A fresh, empty directory `<tmp>/<name>-<pid>` for one test's files.
pub fn fresh_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(out.status.success(), "ip {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// Namespaces, deleted on drop (veths go with them).
pub struct Netns(pub Vec<String>);

impl Netns {
    pub fn add(&mut self, tag: &str) -> String {
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

/// Gives `dev` in namespace `ns` the address `addr` (no IPv6 link-local: addrgenmode none)
/// and the MTU `mtu` if given, and brings it up.
pub fn link_up(ns: &str, dev: &str, addr: &str, mtu: Option<u32>) {
    ip(&["-n", ns, "link", "set", dev, "addrgenmode", "none"]);
    if let Some(mtu) = mtu {
        ip(&["-n", ns, "link", "set", dev, "mtu", &mtu.to_string()]);
    }
    ip(&["-n", ns, "addr", "add", addr, "dev", dev]);
    ip(&["-n", ns, "link", "set", dev, "up"]);
}

/// The three namespaces (client, director, real server), named with `tag`, links of `mtu`
/// when given:
///
/// ```text
///  client ns                director ns                                real-server ns
///  c0 10.9.1.2/24 ── veth ── d0 10.9.1.1/24   d1 10.9.2.1/24 ── veth ── r0 10.9.2.2/24
///  default via 10.9.1.1                                                 default via 10.9.2.1
/// ```
pub fn three_namespaces(netns: &mut Netns, tag: &str, mtu: Option<u32>) -> (String, String, String) {
    let c = netns.add(&format!("{tag}c"));
    let d = netns.add(&format!("{tag}d"));
    let r = netns.add(&format!("{tag}r"));
    ip(&["-n", &c, "link", "add", "c0", "type", "veth", "peer", "name", "d0", "netns", &d]);
    ip(&["-n", &r, "link", "add", "r0", "type", "veth", "peer", "name", "d1", "netns", &d]);
    for (n, dev, addr) in
        [(&c, "c0", "10.9.1.2/24"), (&d, "d0", "10.9.1.1/24"), (&d, "d1", "10.9.2.1/24"), (&r, "r0", "10.9.2.2/24")]
    {
        link_up(n, dev, addr, mtu);
    }
    for n in [&c, &d, &r] {
        ip(&["-n", n, "link", "set", "lo", "up"]);
    }
    ip(&["-n", &r, "route", "add", "default", "via", "10.9.2.1"]);
    ip(&["-n", &c, "route", "add", "default", "via", "10.9.1.1"]);
    (c, d, r)
}

/// Adds an IPv6 side to `three_namespaces` (fd00:91::/64 client side, fd00:92::/64 real-server
/// side, the director ::1 on both, the client ::2, the real server ::2 and ::3, default routes
/// via the director) and a second real-server address 10.9.2.3.
pub fn add_v6(c: &str, d: &str, r: &str) {
    for (n, dev, a) in [
        (c, "c0", "fd00:91::2/64"),
        (d, "d0", "fd00:91::1/64"),
        (d, "d1", "fd00:92::1/64"),
        (r, "r0", "fd00:92::2/64"),
        (r, "r0", "fd00:92::3/64"),
    ] {
        ip(&["-n", n, "-6", "addr", "add", a, "dev", dev, "nodad"]);
    }
    ip(&["-n", r, "addr", "add", "10.9.2.3/24", "dev", "r0"]);
    ip(&["-n", r, "-6", "route", "add", "default", "via", "fd00:92::1"]);
    ip(&["-n", c, "-6", "route", "add", "default", "via", "fd00:91::1"]);
}

/// Client addresses 10.9.1.3 ..= 10.9.1.(1 + `clients`) on c0, next to 10.9.1.2.
pub fn add_client_addrs(c_ns: &str, clients: u8) {
    for k in 1..clients {
        ip(&["-n", c_ns, "addr", "add", &format!("10.9.1.{}/24", 2 + k), "dev", "c0"]);
    }
}

/// The daemon process; killed on drop if still running.
pub struct Daemon {
    pub child: Option<Child>,
    pub log: PathBuf,
    pub dir: PathBuf,
}

impl Daemon {
    pub fn log(&self) -> String {
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

/// Starts rvsd in namespace `ns` with the arguments `args` adds, then `--socket
/// <dir>/run/rvsd.sock`, its stderr in `<dir>/rvsd.log`; waits (up to 20 s) until the socket
/// answers a snapshot. Returns the daemon guard and the socket path.
pub fn spawn_daemon(ns: &str, dir: PathBuf, args: impl FnOnce(&mut Command) -> &mut Command) -> (Daemon, PathBuf) {
    let sock = dir.join("run/rvsd.sock");
    let log = dir.join("rvsd.log");
    let out = File::create(&log).unwrap();
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns, env!("CARGO_BIN_EXE_rvsd")]);
    let child =
        args(&mut cmd).arg("--socket").arg(&sock).stdout(Stdio::null()).stderr(out).spawn().expect("start rvsd");
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

/// `GET /v1/health`: the checkers' view of every service.
pub fn health(c: &Client) -> Vec<ServiceHealth> {
    let (st, body) = c.request("GET", "/v1/health", None).expect("GET /v1/health");
    assert_eq!(st, 200);
    serde_json::from_slice(&body).expect("ServiceHealth list")
}

/// Runs `f` on a thread inside namespace `ns`.
pub fn in_netns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> std::thread::JoinHandle<T> {
    let ns = ns.to_string();
    std::thread::spawn(move || {
        let file = File::open(format!("/var/run/netns/{ns}")).expect("open netns");
        // SAFETY: setns on a valid namespace fd; affects only this thread.
        let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
        f()
    })
}

/// A TCP connection from `src` (bound before connecting) to `dst`.
pub fn connect_from(src: Ipv4Addr, dst: SocketAddr) -> TcpStream {
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

pub fn wait_exit(child: &mut Child, timeout: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Some(st) = child.try_wait().unwrap() {
            return Some(st);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}
