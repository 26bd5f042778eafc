//! The director's kernel kept away from rvs's frames on the AF_PACKET backend (rvsd's
//! isolate.rs: an nftables `netdev` ingress drop that runs after the tap has its copy). As
//! root, in namespaces (harness: `support/ns.rs`); else a note.
//!
//! ```text
//!  client ns                   director ns (rvsd)                        real-server ns
//!  c0 10.9.1.2/24 fd00:91::2 ── d0 10.9.1.1 fd00:91::1   d1 10.9.2.1 fd00:92::1 ── r0 10.9.2.2 fd00:92::2
//!  VIPs 10.9.100.1:80 and [fd00:100::1]:80 (off every subnet: the director's kernel has no
//!  route for them), NAT to port 8080 of the real server
//! ```
//!
//! (a) IPv6 NAT connections succeed from the first one: the kernel sends no ICMPv6
//! unreachable for the VIP (and, the control, it does once the table is removed);
//! (b) a proxy that held VIP:80 on the director and left TIME_WAIT sockets changes nothing;
//! (c) a TCP service on the director's own address still answers while rvs runs;
//! and the table is gone after a clean exit.

#[path = "support/ns.rs"]
mod ns;

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::FromRawFd;
use std::process::Command;
use std::time::{Duration, Instant};

use ns::{Netns, add_v6, fresh_dir, in_netns, ip, skip_unless_root, spawn_daemon, three_namespaces, wait_exit};

const VIP4: Ipv4Addr = Ipv4Addr::new(10, 9, 100, 1);
const VIP6: &str = "fd00:100::1";
const CONFIG: &str = "[[interfaces]]\nname = \"d0\"\n[[interfaces]]\nname = \"d1\"\n\
    [[services]]\nprotocol = \"tcp\"\naddress = \"10.9.100.1:80\"\nscheduler = \"rr\"\n\
    [[services.real_servers]]\naddress = \"10.9.2.2:8080\"\nmethod = \"nat\"\n\
    [[services]]\nprotocol = \"tcp\"\naddress = \"[fd00:100::1]:80\"\nscheduler = \"rr\"\n\
    [[services.real_servers]]\naddress = \"[fd00:92::2]:8080\"\nmethod = \"nat\"\n";

/// A TCP server in `ns` on `addr` that answers every connection with `word` and closes first
/// (so the TIME_WAIT is on its side), for ever (the namespace goes with the test).
fn serve(ns: &str, addr: &'static str, word: &'static str) {
    let (tx, rx) = std::sync::mpsc::channel();
    in_netns(ns, move || {
        let l = TcpListener::bind(addr).expect("bind");
        tx.send(()).unwrap();
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let _ = s.write_all(format!("{word}\n").as_bytes());
        }
    });
    rx.recv_timeout(Duration::from_secs(5)).expect("server up");
}

/// Connects (from `sport` if non-zero) and reads the answer; the time it took.
fn fetch(dst: SocketAddr, sport: u16) -> (Result<String, String>, Duration) {
    let t0 = Instant::now();
    let r = connect(dst, sport)
        .and_then(|mut s| {
            s.set_read_timeout(Some(Duration::from_secs(3)))?;
            let mut b = String::new();
            s.read_to_string(&mut b)?;
            Ok(b.trim().to_string())
        })
        .map_err(|e| e.to_string());
    (r, t0.elapsed())
}

fn connect(dst: SocketAddr, sport: u16) -> std::io::Result<TcpStream> {
    if sport == 0 {
        return TcpStream::connect_timeout(&dst, Duration::from_secs(3));
    }
    let SocketAddr::V4(d) = dst else { unreachable!("IPv4 only with a chosen port") };
    let sa = |a: Ipv4Addr, port: u16| libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr { s_addr: u32::from(a).to_be() },
        sin_zero: [0; 8],
    };
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: plain socket/setsockopt/bind/connect with valid arguments; the fd is owned by the
    // TcpStream from its creation.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let s = TcpStream::from_raw_fd(fd);
        let one: libc::c_int = 1;
        libc::setsockopt(fd, libc::SOL_SOCKET, libc::SO_REUSEADDR, &one as *const _ as *const libc::c_void, 4);
        let tv = libc::timeval { tv_sec: 3, tv_usec: 0 };
        let tvl = std::mem::size_of::<libc::timeval>() as libc::socklen_t;
        libc::setsockopt(fd, libc::SOL_SOCKET, libc::SO_SNDTIMEO, &tv as *const _ as *const libc::c_void, tvl);
        let local = sa(Ipv4Addr::new(10, 9, 1, 2), sport);
        if libc::bind(fd, &local as *const _ as *const libc::sockaddr, len) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let remote = sa(*d.ip(), d.port());
        if libc::connect(fd, &remote as *const _ as *const libc::sockaddr, len) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(s)
    }
}

/// A counter of `/proc/net/snmp` (`Tcp: OutRsts`, `Icmp: OutDestUnreachs`) or
/// `/proc/net/snmp6` (`Icmp6OutDestUnreachs`) of namespace `ns`.
fn snmp(ns: &str, file: &str, group: &str, name: &str) -> u64 {
    let out = Command::new("ip").args(["netns", "exec", ns, "cat", file]).output().expect("cat");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    if file.ends_with('6') {
        return text
            .lines()
            .find_map(|l| l.strip_prefix(name).map(|v| v.trim().parse().unwrap_or(0)))
            .unwrap_or_else(|| panic!("{name} not in {file}"));
    }
    let mut rows = text.lines().filter(|l| l.starts_with(&format!("{group}:")));
    let (head, vals) = (rows.next().unwrap(), rows.next().unwrap());
    let i = head.split_whitespace().position(|h| h == name).unwrap_or_else(|| panic!("{group} {name}"));
    vals.split_whitespace().nth(i).unwrap().parse().unwrap()
}

struct Kernel {
    rsts: u64,
    unreach4: u64,
    unreach6: u64,
}

fn kernel(d: &str) -> Kernel {
    Kernel {
        rsts: snmp(d, "/proc/net/snmp", "Tcp", "OutRsts"),
        unreach4: snmp(d, "/proc/net/snmp", "Icmp", "OutDestUnreachs"),
        unreach6: snmp(d, "/proc/net/snmp6", "", "Icmp6OutDestUnreachs"),
    }
}

#[test]
fn the_directors_kernel_leaves_rvs_frames_alone() {
    if skip_unless_root("the_directors_kernel_leaves_rvs_frames_alone") {
        return;
    }
    kernel_leaves_rvs_frames_alone("afpacket");
}

/// The same on the XDP backend: its steering program keeps the frames from the kernel while
/// rvsd runs; the nftables table is there too, for when the program's link dies with a killed
/// rvsd (a crashed director's kernel must not reset the clients' connections).
#[test]
fn the_directors_kernel_leaves_rvs_frames_alone_on_xdp() {
    if skip_unless_root("the_directors_kernel_leaves_rvs_frames_alone_on_xdp") {
        return;
    }
    kernel_leaves_rvs_frames_alone("xdp");
}

fn kernel_leaves_rvs_frames_alone(io: &str) {
    let nft = Command::new("nft").arg("--version").output();
    if !nft.is_ok_and(|o| o.status.success()) {
        println!("note: the_directors_kernel_leaves_rvs_frames_alone skipped: no nft (Debian package nftables)");
        return;
    }
    let mut netns = Netns(Vec::new());
    let (c, d, r) = three_namespaces(&mut netns, if io == "xdp" { "ix" } else { "i" }, Some(1500));
    add_v6(&c, &d, &r);
    serve(&r, "[::]:8080", "rs");
    // (c) The director's own TCP service.
    serve(&d, "10.9.1.1:2222", "director");

    // (b) A proxy held VIP:80 on the director's kernel; clients used it from known ports; it
    // closed first, leaving TIME_WAIT sockets; then the VIP went away again.
    ip(&["-n", &d, "addr", "add", "10.9.100.1/32", "dev", "lo"]);
    serve(&d, "10.9.100.1:80", "proxy");
    let ports: Vec<u16> = (41000..41005).collect();
    let p = ports.clone();
    let proxied =
        in_netns(&c, move || p.iter().map(|&sp| fetch((VIP4, 80).into(), sp).0).collect::<Vec<_>>()).join().unwrap();
    assert!(proxied.iter().all(|r| r.as_deref() == Ok("proxy")), "through the proxy: {proxied:?}");
    std::thread::sleep(Duration::from_millis(100));
    let tw = Command::new("ip").args(["netns", "exec", &d, "ss", "-Htan", "state", "time-wait"]).output().unwrap();
    let tw = String::from_utf8_lossy(&tw.stdout).to_string();
    assert!(tw.contains("10.9.100.1:80"), "TIME_WAIT left behind on the director:\n{tw}");
    ip(&["-n", &d, "addr", "del", "10.9.100.1/32", "dev", "lo"]);

    let dir = fresh_dir(&format!("rvsd-isolate-ns-{io}"));
    let file = dir.join("rvs.toml");
    std::fs::write(&file, CONFIG).unwrap();
    let (mut daemon, _sock) = spawn_daemon(&d, dir, |cmd| {
        cmd.arg("--config").arg(&file).args(["--workers", "1", "--log", "debug", "--io", io])
    });
    {
        let listed = Command::new("ip").args(["netns", "exec", &d, "nft", "list", "table", "netdev", "rvsd"]).output();
        let listed = String::from_utf8_lossy(&listed.unwrap().stdout).to_string();
        assert!(listed.contains("10.9.100.1 . tcp . 80"), "the VIP is in the set:\n{listed}");
        assert!(listed.contains("fd00:92::2 . tcp . 8080"), "the NAT real server is in the set:\n{listed}");
    }

    let before = kernel(&d);
    let p = ports.clone();
    let results = in_netns(&c, move || {
        let v6: IpAddr = VIP6.parse().unwrap();
        let mut v = Vec::new();
        // (a) the first IPv6 connections, then (b) IPv4 from the ports with TIME_WAIT on the
        // director, then (c) the director's own service.
        for _ in 0..5 {
            v.push(("v6 first", fetch((v6, 80).into(), 0)));
        }
        for &sp in &p {
            v.push(("v4 from a TIME_WAIT port", fetch((VIP4, 80).into(), sp)));
        }
        v.push(("director service", fetch((Ipv4Addr::new(10, 9, 1, 1), 2222).into(), 0)));
        v
    })
    .join()
    .unwrap();
    let after = kernel(&d);
    for (what, (r, took)) in &results {
        let want = if *what == "director service" { "director" } else { "rs" };
        assert_eq!(r.as_deref(), Ok(want), "{what}: {results:?}\n{}", daemon.log());
        assert!(*took < Duration::from_millis(500), "{what} took {took:?}: {results:?}");
    }
    assert_eq!(after.rsts - before.rsts, 0, "the director's kernel sent TCP resets");
    assert_eq!(after.unreach6 - before.unreach6, 0, "the director's kernel sent ICMPv6 unreachable");
    assert_eq!(after.unreach4 - before.unreach4, 0, "the director's kernel sent ICMP unreachable");

    if io == "afpacket" {
        // The control: with the VIP taken out of the set, the kernel answers the client's SYN.
        ip(&["netns", "exec", &d, "nft", "delete", "element", "netdev", "rvsd", "vip6", "{ fd00:100::1 . tcp . 80 }"]);
        let _ = in_netns(&c, || fetch((VIP6.parse::<IpAddr>().unwrap(), 80).into(), 0)).join();
        assert!(kernel(&d).unreach6 > after.unreach6, "without isolation the kernel answers ICMPv6 unreachable");
    }

    // A clean exit (SIGTERM) removes the table.
    let pid = daemon.child.as_ref().unwrap().id() as i32;
    // SAFETY: kill(2) on our child's pid.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let st = wait_exit(daemon.child.as_mut().unwrap(), Duration::from_secs(10));
    assert!(st.is_some(), "rvsd did not stop on SIGTERM");
    daemon.child = None;
    let left = Command::new("ip").args(["netns", "exec", &d, "nft", "list", "tables"]).output().unwrap();
    let left = String::from_utf8_lossy(&left.stdout).to_string();
    assert!(!left.contains("rvsd"), "the table outlived the daemon:\n{left}");
}
