//! End to end against a real kernel: a sender namespace (the director's role)
//! tunnels UDP to a real server namespace that has no `ipip` module, only
//! `rvs-decap`; the echo server bound to the VIP answers straight to the
//! sender. Needs root; without it the test prints a note and passes.
//!
//! Topology (names unique per process, removed on every exit path):
//!   rvsdc-<pid>-a: va 10.99.0.1/24  <── veth ──>  rvsdc-<pid>-b: vb 10.99.0.2/24,
//!                                                  lo 10.99.100.1/32 (VIP),
//!                                                  rvs-decap -i vb --gre --gue-port 6080
//! Checksum offloads are left on.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rvs_decap::craft;

const BIN: &str = env!("CARGO_BIN_EXE_rvs-decap");
const A_ADDR: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 1);
const B_ADDR: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 2);
const VIP: Ipv4Addr = Ipv4Addr::new(10, 99, 100, 1);
const ECHO_PORT: u16 = 7777;
const CLIENT_PORT: u16 = 5555;
const GUE_PORT: u16 = 6080;

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(out.status.success(), "ip {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
}

fn sysctl(ns: &str, setting: &str) {
    let out = Command::new("ip").args(["netns", "exec", ns, "sysctl", "-qw", setting]).output().expect("run sysctl");
    assert!(out.status.success(), "sysctl {setting} in {ns}: {}", String::from_utf8_lossy(&out.stderr));
}

/// Owns the namespaces; deleting them (in Drop, also on panic) removes the veth.
struct Netns(Vec<String>);

impl Netns {
    fn add(&mut self, name: String) -> String {
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

/// The decapsulator process; killed in Drop if the test did not stop it.
struct Decap {
    child: Child,
    lines: mpsc::Receiver<String>,
    log: Vec<String>,
}

impl Decap {
    fn start(ns: &str) -> Decap {
        let port = GUE_PORT.to_string();
        let mut child = Command::new("ip")
            .args(["netns", "exec", ns, BIN, "-i", "vb", "--gre", "--gue-port", &port])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn rvs-decap");
        let stderr = child.stderr.take().expect("stderr pipe");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Decap { child, lines, log: Vec::new() }
    }

    /// Collects stderr lines until one contains `needle`, or the timeout.
    fn wait_for(&mut self, needle: &str, timeout: Duration) -> bool {
        let end = Instant::now() + timeout;
        while let Some(left) = end.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    let hit = l.contains(needle);
                    self.log.push(l);
                    if hit {
                        return true;
                    }
                }
                Err(_) => return false,
            }
        }
        false
    }

    /// SIGTERM, then waits for the exit status.
    fn stop(&mut self) -> std::process::ExitStatus {
        let pid = libc::pid_t::try_from(self.child.id()).expect("pid");
        // SAFETY: signalling our own child by pid.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let end = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(st) = self.child.try_wait().expect("wait") {
                // Drain the rest of the log.
                while let Ok(l) = self.lines.recv_timeout(Duration::from_millis(500)) {
                    self.log.push(l);
                }
                return st;
            }
            assert!(Instant::now() < end, "rvs-decap did not stop on SIGTERM; log: {:#?}", self.log);
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Decap {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// UDP echo on VIP:ECHO_PORT inside a namespace, stopped and joined in Drop.
struct Echo {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Echo {
    fn start(ns: &str) -> Echo {
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel();
        let path = format!("/var/run/netns/{ns}");
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let sock = enter(&path).and_then(|()| {
                let s = UdpSocket::bind(SocketAddrV4::new(VIP, ECHO_PORT)).map_err(|e| format!("bind VIP: {e}"))?;
                s.set_read_timeout(Some(Duration::from_millis(100))).map_err(|e| e.to_string())?;
                Ok(s)
            });
            let sock = match sock {
                Ok(s) => {
                    let _ = tx.send(Ok(()));
                    s
                }
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            };
            let mut buf = [0u8; 2048];
            while !flag.load(Ordering::Relaxed) {
                if let Ok((n, from)) = sock.recv_from(&mut buf) {
                    let _ = sock.send_to(&buf[..n], from);
                }
            }
        });
        let ready = rx.recv_timeout(Duration::from_secs(5)).expect("echo thread did not report");
        if let Err(e) = ready {
            panic!("echo server: {e}");
        }
        Echo { stop, thread: Some(thread) }
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Moves the calling thread into the namespace at `path`.
fn enter(path: &str) -> Result<(), String> {
    let f = File::open(path).map_err(|e| format!("open {path}: {e}"))?;
    // SAFETY: setns on a valid namespace fd; affects only this thread.
    let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc != 0 {
        return Err(format!("setns {path}: {}", std::io::Error::last_os_error()));
    }
    Ok(())
}

/// Sockets of the sender, created in its namespace (they stay there).
struct Sender {
    raw: OwnedFd,
    reply: UdpSocket,
    gue: UdpSocket,
}

impl Sender {
    fn new(ns: &str) -> Sender {
        let path = format!("/var/run/netns/{ns}");
        std::thread::scope(|s| {
            s.spawn(|| {
                enter(&path).expect("enter sender namespace");
                // SAFETY: plain socket(2); IPPROTO_RAW implies IP_HDRINCL.
                let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, libc::IPPROTO_RAW) };
                assert!(fd >= 0, "raw socket: {}", std::io::Error::last_os_error());
                // SAFETY: fd was just returned and is owned by nobody else.
                let raw = unsafe { OwnedFd::from_raw_fd(fd) };
                let reply = UdpSocket::bind(SocketAddrV4::new(A_ADDR, CLIENT_PORT)).expect("bind reply socket");
                reply.set_read_timeout(Some(Duration::from_secs(3))).expect("timeout");
                let gue = UdpSocket::bind(SocketAddrV4::new(A_ADDR, 0)).expect("bind gue socket");
                Sender { raw, reply, gue }
            })
            .join()
            .expect("sender thread")
        })
    }

    /// Sends a complete IPv4 packet (header included) to `dst`.
    fn send_raw(&self, dst: Ipv4Addr, pkt: &[u8]) {
        // SAFETY: sockaddr_in is plain old data.
        let mut sa: libc::sockaddr_in = unsafe { std::mem::zeroed() };
        sa.sin_family = libc::AF_INET as libc::sa_family_t;
        sa.sin_addr.s_addr = u32::from_ne_bytes(dst.octets());
        let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        // SAFETY: `pkt` and `sa` are valid for the lengths passed.
        let n = unsafe {
            libc::sendto(
                self.raw.as_raw_fd(),
                pkt.as_ptr().cast(),
                pkt.len(),
                0,
                (&sa as *const libc::sockaddr_in).cast(),
                len,
            )
        };
        assert_eq!(n, pkt.len() as isize, "raw sendto: {}", std::io::Error::last_os_error());
    }

    /// Waits for the echo of `payload`, from the VIP.
    fn expect_echo(&self, payload: &[u8], what: &str, decap: &Decap) {
        let mut buf = [0u8; 2048];
        match self.reply.recv_from(&mut buf) {
            Ok((n, from)) => {
                assert_eq!(from, SocketAddr::V4(SocketAddrV4::new(VIP, ECHO_PORT)), "{what}: reply source");
                assert_eq!(&buf[..n], payload, "{what}: echoed payload");
            }
            Err(e) => panic!("{what}: no echo from the VIP ({e}); rvs-decap log so far: {:#?}", decap.log),
        }
    }
}

fn inner(payload: &[u8]) -> Vec<u8> {
    craft::ipv4_udp(A_ADDR, CLIENT_PORT, VIP, ECHO_PORT, payload)
}

#[test]
fn tunnelled_udp_reaches_the_vip_and_the_reply_goes_direct() {
    if !is_root() {
        println!(
            "note: tunnelled_udp_reaches_the_vip_and_the_reply_goes_direct skipped: needs root (namespaces, raw sockets, TUN)"
        );
        return;
    }
    let pid = std::process::id();
    let mut netns = Netns(Vec::new());
    let a = netns.add(format!("rvsdc-{pid}-a"));
    let b = netns.add(format!("rvsdc-{pid}-b"));
    ip(&["-n", &a, "link", "add", "va", "type", "veth", "peer", "name", "vb", "netns", &b]);
    ip(&["-n", &a, "addr", "add", "10.99.0.1/24", "dev", "va"]);
    ip(&["-n", &b, "addr", "add", "10.99.0.2/24", "dev", "vb"]);
    ip(&["-n", &b, "addr", "add", "10.99.100.1/32", "dev", "lo"]);
    for (ns, dev) in [(&a, "va"), (&b, "vb")] {
        ip(&["-n", ns, "link", "set", "lo", "up"]);
        ip(&["-n", ns, "link", "set", dev, "up"]);
    }
    // Real server: VIP on lo must not be announced; reverse-path filtering
    // relaxed (the kernel takes max(all, dev) on the TUN device).
    for s in [
        "net.ipv4.conf.all.arp_ignore=1",
        "net.ipv4.conf.all.arp_announce=2",
        "net.ipv4.conf.vb.arp_ignore=1",
        "net.ipv4.conf.vb.arp_announce=2",
        "net.ipv4.conf.all.rp_filter=0",
    ] {
        sysctl(&b, s);
    }
    // Sender: the reply comes from the VIP, which it has no route to.
    sysctl(&a, "net.ipv4.conf.all.rp_filter=0");
    sysctl(&a, "net.ipv4.conf.va.rp_filter=0");

    let _echo = Echo::start(&b);
    let mut decap = Decap::start(&b);
    assert!(decap.wait_for("ready:", Duration::from_secs(10)), "rvs-decap not ready; log: {:#?}", decap.log);
    let rp = Command::new("ip")
        .args(["netns", "exec", &b, "cat", "/proc/sys/net/ipv4/conf/rvsdecap0/rp_filter"])
        .output()
        .expect("read rp_filter");
    assert_eq!(String::from_utf8_lossy(&rp.stdout).trim(), "0", "rp_filter on the TUN device");

    let tx = Sender::new(&a);
    // Garbage first: processed before the good IPIP packet behind it.
    let good = inner(b"x");
    tx.send_raw(B_ADDR, &craft::ipip(A_ADDR, B_ADDR, &good[..10]));
    let mut v6 = good.clone();
    v6[0] = 0x60;
    tx.send_raw(B_ADDR, &craft::ipip(A_ADDR, B_ADDR, &v6));

    tx.send_raw(B_ADDR, &craft::ipip(A_ADDR, B_ADDR, &inner(b"ipip-hello")));
    tx.expect_echo(b"ipip-hello", "IPIP", &decap);
    tx.send_raw(B_ADDR, &craft::gre(A_ADDR, B_ADDR, &inner(b"gre-hello"), true));
    tx.expect_echo(b"gre-hello", "GRE", &decap);
    tx.gue.send_to(&craft::gue(&inner(b"gue-hello"), 0), SocketAddrV4::new(B_ADDR, GUE_PORT)).expect("send GUE");
    tx.expect_echo(b"gue-hello", "GUE", &decap);

    let status = decap.stop();
    assert!(status.success(), "exit status {status:?}; log: {:#?}", decap.log);
    let last = decap.log.iter().rev().find(|l| l.contains("received=")).cloned().unwrap_or_default();
    assert!(
        last.contains("received=5 (ipip=3 gre=1 gue=1) delivered=3 dropped=2 (truncated=1 "),
        "final counters: {last}\nlog: {:#?}",
        decap.log
    );
    assert!(last.contains(" inner_not_ipv4=1 ") && last.contains("write_errors=0"), "final counters: {last}");
    assert!(decap.log.iter().any(|l| l.contains("SIGTERM, stopping")), "log: {:#?}", decap.log);
    // The TUN device went away with the process.
    let gone = Command::new("ip").args(["-n", &b, "link", "show", "rvsdecap0"]).output().expect("ip link show");
    assert!(!gone.status.success(), "rvsdecap0 still exists after exit");
}
