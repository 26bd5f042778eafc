//! The XDP steering program and an AF_XDP socket against a real kernel: a veth pair between
//! two fresh namespaces, the program on the director's side. Needs root; without it every
//! test prints a note and passes.
//!
//!   ns D (director): d0 10.79.0.1/24  <── veth ──>  ns C (client): c0 10.79.0.2/24
//!
//! Asserted: a frame for a VIP reaches the socket and the director kernel's IP input counter
//! (`Ip InReceives` in D's /proc/net/snmp) does not move for it; a ping to the director's own
//! address still works; map updates change steering without re-attaching (VIP removed: the
//! kernel sees it again); a frame rvs owns on a queue without a socket is dropped and counted.

#[path = "../../node/tests/nsutil/mod.rs"]
mod nsutil;

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, UdpSocket};
use std::process::Command;
use std::time::{Duration, Instant};

use nsutil::{Netns, in_netns, ip, skip_unless_root};
use xdp::maps::{SteerMaps, SvcKey, addr16};
use xdp::xsk::{FRAME_SIZE, Socket, SocketConfig, Umem};
use xdp::{AttachMode, Steering};

const NEEDS: &str = "network namespaces, XDP, AF_XDP";
const VIP: Ipv4Addr = Ipv4Addr::new(10, 79, 0, 100);
const D_IP: Ipv4Addr = Ipv4Addr::new(10, 79, 0, 1);

struct Topo {
    _ns: Netns,
    d: String,
    c: String,
}

fn topo() -> Topo {
    let mut ns = Netns(vec![]);
    let d = ns.add("xd");
    let c = ns.add("xc");
    ip(&["-n", &d, "link", "add", "d0", "type", "veth", "peer", "name", "c0", "netns", &c]);
    for (n, dev, addr) in [(&d, "d0", "10.79.0.1/24"), (&c, "c0", "10.79.0.2/24")] {
        ip(&["-n", n, "link", "set", dev, "addrgenmode", "none"]);
        ip(&["-n", n, "addr", "add", addr, "dev", dev]);
        ip(&["-n", n, "link", "set", dev, "up"]);
    }
    let out = Command::new("ip").args(["-n", &d, "-o", "link", "show", "d0"]).output().expect("ip link");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let mac = text.split_whitespace().skip_while(|w| *w != "link/ether").nth(1).expect("d0 mac").to_string();
    // The client knows where the VIP and the director are (rvs would answer its ARP requests
    // for both; no rvs here).
    ip(&["-n", &c, "neigh", "add", &VIP.to_string(), "lladdr", mac.trim(), "dev", "c0"]);
    ip(&["-n", &c, "neigh", "add", &D_IP.to_string(), "lladdr", mac.trim(), "dev", "c0"]);
    Topo { _ns: ns, d, c }
}

/// `Ip InReceives` of namespace `ns`.
fn in_receives(ns: &str) -> u64 {
    let out = Command::new("ip").args(["netns", "exec", ns, "cat", "/proc/net/snmp"]).output().expect("snmp");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines().filter(|l| l.starts_with("Ip:"));
    let (names, values) = (lines.next().expect("Ip names"), lines.next().expect("Ip values"));
    let i = names.split_whitespace().position(|n| n == "InReceives").expect("InReceives");
    values.split_whitespace().nth(i).and_then(|v| v.parse().ok()).expect("value")
}

fn send_udp(ns: &str, to: Ipv4Addr, port: u16, n: usize) {
    in_netns(ns, || {
        let s = UdpSocket::bind("0.0.0.0:0").expect("bind");
        for i in 0..n {
            s.send_to(format!("rvs-xdp {i}").as_bytes(), (to, port)).expect("send");
        }
    });
}

/// The director side: program attached to d0, one socket on queue 0 registered.
struct Director {
    steering: Steering,
    sock: Socket,
    umem: Umem,
    free: Vec<u64>,
    ifindex: u32,
}

fn director(ns: &str) -> Director {
    in_netns(ns, || {
        let mut steering = Steering::load().expect("load program");
        let mode = steering.attach("d0", false).expect("attach");
        assert_eq!(mode, AttachMode::Native, "veth has native XDP on this kernel");
        let ifindex = xdp::sys::if_index("d0").expect("ifindex");
        let cfg = SocketConfig { fill: 256, comp: 256, rx: 256, tx: 256 };
        let umem = Umem::new(512, FRAME_SIZE).expect("umem");
        let sock = Socket::open(&umem, ifindex, 0, cfg, None).expect("AF_XDP socket");
        assert!(!sock.zero_copy(), "veth binds in copy mode");
        steering.set_socket(ifindex, 0, &sock).expect("register socket");
        let mut free: Vec<u64> = (0..512u64).map(|f| f * FRAME_SIZE as u64).collect();
        let mut sock = sock;
        sock.fill(&mut free);
        Director { steering, sock, umem, free, ifindex }
    })
}

fn vip_maps(port: u16) -> SteerMaps {
    let mut m = SteerMaps::default();
    m.services.insert(SvcKey::new(&IpAddr::V4(VIP), 17, port));
    m.vip_addrs.insert(addr16(&IpAddr::V4(VIP)));
    m.locals.insert(addr16(&IpAddr::V4(D_IP)));
    m
}

impl Director {
    /// The first IPv4 frame the socket receives within `wait`, copied out.
    fn first_frame(&mut self, wait: Duration) -> Option<Vec<u8>> {
        let t0 = Instant::now();
        while t0.elapsed() < wait {
            let mut pfd =
                libc::pollfd { fd: std::os::fd::AsRawFd::as_raw_fd(&self.sock), events: libc::POLLIN, revents: 0 };
            // SAFETY: one valid pollfd.
            unsafe { libc::poll(&mut pfd, 1, 20) };
            let n = self.sock.rx_ready(64);
            let mut got = None;
            for i in 0..n {
                let (addr, len) = self.sock.rx_desc(i);
                // SAFETY: the frame is ours until it goes back on the fill ring below.
                let chunk = unsafe { self.umem.chunk(addr) }.expect("chunk");
                let off = (addr as usize) & (FRAME_SIZE - 1);
                if got.is_none() && chunk[off + 12..off + 14] == [8, 0] {
                    got = Some(chunk[off..off + len as usize].to_vec());
                }
                self.free.push(addr & !(FRAME_SIZE as u64 - 1));
            }
            self.sock.rx_release(n);
            self.sock.fill(&mut self.free);
            if got.is_some() {
                return got;
            }
        }
        None
    }

    /// Destination addresses of the IPv4 frames the socket received within `wait` (ARP
    /// requests: their target address).
    fn receive(&mut self, want: usize, wait: Duration) -> Vec<Ipv4Addr> {
        let mut got = Vec::new();
        let t0 = Instant::now();
        while got.len() < want && t0.elapsed() < wait {
            let mut pfd =
                libc::pollfd { fd: std::os::fd::AsRawFd::as_raw_fd(&self.sock), events: libc::POLLIN, revents: 0 };
            // SAFETY: one valid pollfd.
            unsafe { libc::poll(&mut pfd, 1, 20) };
            let n = self.sock.rx_ready(64);
            for i in 0..n {
                let (addr, len) = self.sock.rx_desc(i);
                // SAFETY: the frame is ours until it goes back on the fill ring below.
                let chunk = unsafe { self.umem.chunk(addr) }.expect("chunk");
                let off = (addr as usize) & (FRAME_SIZE - 1);
                let f = &chunk[off..off + len as usize];
                assert!(off >= 256, "headroom in front of the frame ({off})");
                if f.len() >= 34 && f[12..14] == [8, 0] {
                    got.push(Ipv4Addr::new(f[30], f[31], f[32], f[33]));
                } else if f.len() >= 42 && f[12..14] == [8, 6] && f[20..22] == [0, 1] {
                    got.push(Ipv4Addr::new(f[38], f[39], f[40], f[41]));
                }
                self.free.push(addr & !(FRAME_SIZE as u64 - 1));
            }
            self.sock.rx_release(n);
            self.sock.fill(&mut self.free);
        }
        got
    }
}

fn ping(ns: &str, to: Ipv4Addr) -> bool {
    Command::new("ip")
        .args(["netns", "exec", ns, "ping", "-c", "1", "-W", "2", &to.to_string()])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

#[test]
fn vip_frames_reach_the_socket_and_not_the_kernel_other_traffic_passes() {
    if skip_unless_root("vip_frames_reach_the_socket_and_not_the_kernel_other_traffic_passes", NEEDS) {
        return;
    }
    let t = topo();
    let mut d = director(&t.d);
    d.steering.sync(&vip_maps(5000)).expect("maps");

    let before = in_receives(&t.d);
    send_udp(&t.c, VIP, 5000, 20);
    let got = d.receive(20, Duration::from_secs(3));
    let after = in_receives(&t.d);
    assert_eq!(got.iter().filter(|a| **a == VIP).count(), 20, "every VIP frame reaches the socket: {got:?}");
    assert_eq!(after, before, "the director kernel saw none of them (Ip InReceives)");
    assert!(d.steering.stats().steered >= 20, "{:?}", d.steering.stats());

    // The director's own traffic still goes to its kernel (ARP for its address, ICMP echo).
    assert!(ping(&t.c, D_IP), "ping to the director's own address");
    assert!(in_receives(&t.d) > after, "the kernel received the ping");
    assert!(d.steering.stats().passed > 0);

    // ARP requests for the director's own address go to rvs (it answers them and learns
    // the requester at once); here nobody answers, so the client's ping fails.
    ip(&["-n", &t.c, "neigh", "del", &D_IP.to_string(), "dev", "c0"]);
    assert!(!ping(&t.c, D_IP), "no answer without rvs");
    assert!(d.receive(1, Duration::from_secs(2)).contains(&D_IP), "the ARP request reached the socket");
}

#[test]
fn map_updates_change_steering_without_reattaching() {
    if skip_unless_root("map_updates_change_steering_without_reattaching", NEEDS) {
        return;
    }
    let t = topo();
    let mut d = director(&t.d);
    // Only port 6000 is a service: frames to VIP:5000 are still the VIP's (the kernel does
    // not own the address), so they are steered too.
    d.steering.sync(&vip_maps(6000)).expect("maps");
    send_udp(&t.c, VIP, 5000, 5);
    assert_eq!(d.receive(5, Duration::from_secs(3)).len(), 5, "any frame to a VIP address is rvs's");

    // The VIP goes: its frames go to the kernel again (map update, same attachment).
    d.steering.sync(&SteerMaps::default()).expect("maps");
    let before = in_receives(&t.d);
    send_udp(&t.c, VIP, 6000, 5);
    let got = d.receive(1, Duration::from_millis(500));
    assert!(got.is_empty(), "nothing steered after the VIP left: {got:?}");
    assert!(in_receives(&t.d) >= before + 5, "the kernel received them");

    // A service on one of the director's own addresses takes only its port.
    let mut m = SteerMaps::default();
    m.services.insert(SvcKey::new(&IpAddr::V4(D_IP), 17, 7000));
    m.vip_addrs.insert(addr16(&IpAddr::V4(D_IP)));
    m.locals.insert(addr16(&IpAddr::V4(D_IP)));
    d.steering.sync(&m).expect("maps");
    send_udp(&t.c, D_IP, 7000, 3);
    send_udp(&t.c, D_IP, 7001, 3);
    let got: HashSet<_> = d.receive(6, Duration::from_secs(1)).into_iter().collect();
    assert_eq!(got.len(), 1, "only the service port reached rvs");
    assert!(ping(&t.c, D_IP), "the director's address still answers");
}

#[test]
fn a_prepared_program_and_socket_take_over_once_the_old_ones_go() {
    if skip_unless_root("a_prepared_program_and_socket_take_over_once_the_old_ones_go", NEEDS) {
        return;
    }
    // Hot restart (rvsd handover.rs): the new daemon's program and socket are made while the
    // old ones hold the interface, and attach / bind once those are gone.
    let t = topo();
    let old = director(&t.d);
    let cfg = SocketConfig { fill: 256, comp: 256, rx: 256, tx: 256 };
    let (mut steering, umem, mut sock) = in_netns(&t.d, || {
        let steering = Steering::load().expect("load program");
        let umem = Umem::new(512, FRAME_SIZE).expect("umem");
        let sock = Socket::prepare(&umem, cfg, true).expect("prepared socket");
        (steering, umem, sock)
    });
    let ifindex = old.ifindex;
    in_netns(&t.d, || {
        let e = steering.attach("d0", false).expect_err("the old program's link holds d0");
        assert!(e.to_string().contains("another XDP program"), "{e}");
        let e = sock.bind(ifindex, 0, None, Duration::ZERO).expect_err("the old socket holds queue 0");
        assert!(e.to_string().contains(&format!("os error {}", libc::EBUSY)), "{e}");
    });
    drop(old);
    in_netns(&t.d, || {
        steering.attach_waiting("d0", false, Duration::from_secs(2)).expect("attach once the old link went");
        sock.bind(ifindex, 0, None, Duration::from_secs(2)).expect("bind once the old socket went");
        steering.set_socket(ifindex, 0, &sock).expect("register socket");
    });
    let mut free: Vec<u64> = (0..512u64).map(|f| f * FRAME_SIZE as u64).collect();
    sock.fill(&mut free);
    let mut new = Director { steering, sock, umem, free, ifindex };
    new.steering.sync(&vip_maps(5000)).expect("maps");
    send_udp(&t.c, VIP, 5000, 5);
    assert_eq!(new.receive(5, Duration::from_secs(3)).len(), 5, "the new socket receives the VIP's frames");
}

#[test]
fn owned_frames_without_a_socket_are_dropped_and_counted_not_passed() {
    if skip_unless_root("owned_frames_without_a_socket_are_dropped_and_counted_not_passed", NEEDS) {
        return;
    }
    let t = topo();
    let mut d = director(&t.d);
    d.steering.sync(&vip_maps(5000)).expect("maps");
    d.steering.clear_socket(d.ifindex, 0).expect("unregister");
    let before = in_receives(&t.d);
    send_udp(&t.c, VIP, 5000, 10);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(in_receives(&t.d), before, "not passed to the kernel");
    assert_eq!(d.steering.stats().no_socket, 10, "{:?}", d.steering.stats());
}

#[test]
fn the_kernel_resolves_a_next_hop_when_asked() {
    if skip_unless_root("the_kernel_resolves_a_next_hop_when_asked", NEEDS) {
        return;
    }
    let t = topo();
    in_netns(&t.d, || {
        let ifindex = xdp::sys::if_index("d0").expect("ifindex");
        let mut r = xdp::neigh::KernelResolver::new().expect("netlink");
        r.resolve(ifindex, IpAddr::V4(Ipv4Addr::new(10, 79, 0, 2))).expect("request");
    });
    let t0 = Instant::now();
    loop {
        let out = Command::new("ip").args(["-n", &t.d, "neigh", "show", "10.79.0.2"]).output().expect("ip neigh");
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        if text.contains("lladdr") {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(3), "not resolved: {text:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn an_mtu_too_large_for_xdp_is_refused_at_attach_with_a_clear_message() {
    if skip_unless_root("an_mtu_too_large_for_xdp_is_refused_at_attach_with_a_clear_message", NEEDS) {
        return;
    }
    let t = topo();
    ip(&["-n", &t.d, "link", "set", "d0", "mtu", "9000"]);
    ip(&["-n", &t.c, "link", "set", "c0", "mtu", "9000"]);
    let e = in_netns(&t.d, || {
        let mut s = Steering::load().expect("load");
        s.attach("d0", false).err().map(|e| e.to_string())
    });
    let e = e.expect("veth refuses native XDP at MTU 9000");
    assert!(e.contains("d0") && e.contains("MTU"), "{e}");
}

#[test]
fn udp_from_a_veth_peer_arrives_with_a_partial_checksum_that_is_recognised() {
    if skip_unless_root("udp_from_a_veth_peer_arrives_with_a_partial_checksum_that_is_recognised", NEEDS) {
        return;
    }
    let t = topo();
    let mut d = director(&t.d);
    d.steering.sync(&vip_maps(5000)).expect("maps");
    send_udp(&t.c, VIP, 5000, 1);
    let f = d.first_frame(Duration::from_secs(3)).expect("the datagram reached the socket");
    // Offloads are on by default on the client's veth: the descriptor does not say the
    // checksum is partial, the frame does.
    assert!(xdp::csum::partial_l4(&f), "a CHECKSUM_PARTIAL datagram: {f:02x?}");
    // With offload off on the client, the checksum arrives finished and is left alone.
    let out =
        Command::new("ip").args(["netns", "exec", &t.c, "ethtool", "-K", "c0", "tx", "off"]).output().expect("ethtool");
    assert!(out.status.success(), "ethtool: {}", String::from_utf8_lossy(&out.stderr));
    send_udp(&t.c, VIP, 5000, 1);
    let f = d.first_frame(Duration::from_secs(3)).expect("the datagram reached the socket");
    assert!(!xdp::csum::partial_l4(&f), "a finished checksum is not partial");
}

/// An ICMP destination-unreachable message (type 3 code 3) quoting a UDP datagram
/// `q_src:q_sport -> q_dst:q_dport`, as a raw ICMP payload.
fn icmp_unreachable(q_src: Ipv4Addr, q_sport: u16, q_dst: Ipv4Addr, q_dport: u16) -> Vec<u8> {
    let mut m = vec![3u8, 3, 0, 0, 0, 0, 0, 0];
    let mut ip = [0u8; 20];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&28u16.to_be_bytes());
    ip[8] = 64;
    ip[9] = 17;
    ip[12..16].copy_from_slice(&q_src.octets());
    ip[16..20].copy_from_slice(&q_dst.octets());
    let c = wire::checksum::checksum(&ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    m.extend_from_slice(&ip);
    m.extend_from_slice(&q_sport.to_be_bytes());
    m.extend_from_slice(&q_dport.to_be_bytes());
    m.extend_from_slice(&[0, 8, 0, 0]);
    let c = wire::checksum::checksum(&m);
    m[2..4].copy_from_slice(&c.to_be_bytes());
    m
}

fn send_icmp(ns: &str, to: Ipv4Addr, msg: &[u8]) {
    in_netns(ns, || {
        // SAFETY: plain socket calls on a raw ICMP socket with a valid sockaddr_in.
        unsafe {
            let fd = libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_ICMP);
            assert!(fd >= 0, "raw socket: {}", std::io::Error::last_os_error());
            let mut sa: libc::sockaddr_in = std::mem::zeroed();
            sa.sin_family = libc::AF_INET as u16;
            sa.sin_addr.s_addr = u32::from(to).to_be();
            let rc = libc::sendto(
                fd,
                msg.as_ptr().cast(),
                msg.len(),
                0,
                (&sa as *const libc::sockaddr_in).cast(),
                std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
            );
            assert_eq!(rc, msg.len() as isize, "sendto: {}", std::io::Error::last_os_error());
            libc::close(fd);
        }
    });
}

#[test]
fn nat_replies_and_icmp_errors_quoting_a_real_server_are_steered_others_pass() {
    if skip_unless_root("nat_replies_and_icmp_errors_quoting_a_real_server_are_steered_others_pass", NEEDS) {
        return;
    }
    let t = topo();
    let mut d = director(&t.d);
    // Frames to a far client go through the director (its MAC), as NAT replies do.
    let far = Ipv4Addr::new(10, 80, 0, 5);
    ip(&["-n", &t.c, "route", "add", "10.80.0.0/24", "via", &D_IP.to_string()]);
    let rs = Ipv4Addr::new(10, 79, 0, 2); // the client's own address plays the real server
    let mut m = vip_maps(5000);
    m.reals.insert(SvcKey::new(&IpAddr::V4(rs), 17, 9999));
    m.reals.insert(SvcKey::new(&IpAddr::V4(Ipv4Addr::new(10, 81, 0, 9)), 17, 7777));
    d.steering.sync(&m).expect("maps");

    // A reply from the real server's service port is rvs's; from another port it is not.
    in_netns(&t.c, || {
        let s = UdpSocket::bind((rs, 9999)).expect("bind 9999");
        s.send_to(b"reply", (far, 40000)).expect("send");
        let s = UdpSocket::bind((rs, 9998)).expect("bind 9998");
        s.send_to(b"other", (far, 40000)).expect("send");
    });
    let got = d.receive(2, Duration::from_secs(1));
    assert_eq!(got, vec![far], "only the NAT reply (source port 9999) was steered");

    // An ICMP error quoting a packet to a NAT real server is rvs's; quoting another port not.
    send_icmp(&t.c, far, &icmp_unreachable(far, 1234, Ipv4Addr::new(10, 81, 0, 9), 7777));
    send_icmp(&t.c, far, &icmp_unreachable(far, 1234, Ipv4Addr::new(10, 81, 0, 9), 7778));
    let got = d.receive(2, Duration::from_secs(1));
    assert_eq!(got, vec![far], "only the error quoting the real server's service was steered");
}

/// EtherType and (for IPv6) next header and destination of the frames received within `wait`.
fn receive_v6(d: &mut Director, want: usize, wait: Duration) -> Vec<(u8, std::net::Ipv6Addr)> {
    let mut got = Vec::new();
    let t0 = Instant::now();
    while got.len() < want && t0.elapsed() < wait {
        let mut pfd = libc::pollfd { fd: std::os::fd::AsRawFd::as_raw_fd(&d.sock), events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd.
        unsafe { libc::poll(&mut pfd, 1, 20) };
        let n = d.sock.rx_ready(64);
        for i in 0..n {
            let (addr, len) = d.sock.rx_desc(i);
            // SAFETY: the frame is ours until it goes back on the fill ring below.
            let chunk = unsafe { d.umem.chunk(addr) }.expect("chunk");
            let off = (addr as usize) & (FRAME_SIZE - 1);
            let f = &chunk[off..off + len as usize];
            if f.len() >= 54 && f[12..14] == [0x86, 0xdd] {
                let mut a = [0u8; 16];
                a.copy_from_slice(&f[38..54]);
                got.push((f[20], std::net::Ipv6Addr::from(a)));
            }
            d.free.push(addr & !(FRAME_SIZE as u64 - 1));
        }
        d.sock.rx_release(n);
        d.sock.fill(&mut d.free);
    }
    got
}

#[test]
fn ipv6_vip_frames_and_neighbour_solicitations_for_a_vip_are_steered() {
    if skip_unless_root("ipv6_vip_frames_and_neighbour_solicitations_for_a_vip_are_steered", NEEDS) {
        return;
    }
    let t = topo();
    for (n, dev, a) in [(&t.d, "d0", "fd79::1/64"), (&t.c, "c0", "fd79::2/64")] {
        ip(&["-n", n, "addr", "add", a, "dev", dev, "nodad"]);
    }
    let mut d = director(&t.d);
    let vip: std::net::Ipv6Addr = "fd79::100".parse().unwrap();
    let mut m = SteerMaps::default();
    m.services.insert(SvcKey::new(&IpAddr::V6(vip), 17, 5000));
    m.vip_addrs.insert(addr16(&IpAddr::V6(vip)));
    m.locals.insert(addr16(&"fd79::1".parse().unwrap()));
    d.steering.sync(&m).expect("maps");

    // No neighbour entry for the VIP on the client: it solicits first (ICMPv6 135 to the
    // solicited-node group), and that solicitation is rvs's; nobody answers here.
    in_netns(&t.c, || {
        let s = UdpSocket::bind("[::]:0").expect("bind");
        let _ = s.send_to(b"v6", (vip, 5000));
    });
    let got = receive_v6(&mut d, 1, Duration::from_secs(2));
    assert!(got.iter().any(|(nh, dst)| *nh == 58 && dst.segments()[0] == 0xff02), "the NS reached rvs: {got:?}");

    // With the VIP's neighbour known, the datagram itself is steered, not passed.
    let out = Command::new("ip").args(["-n", &t.d, "-o", "link", "show", "d0"]).output().expect("ip link");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let mac = text.split_whitespace().skip_while(|w| *w != "link/ether").nth(1).expect("mac").to_string();
    ip(&["-n", &t.c, "neigh", "replace", "fd79::100", "lladdr", &mac, "dev", "c0"]);
    let before = d.steering.stats().steered;
    in_netns(&t.c, || {
        let s = UdpSocket::bind("[::]:0").expect("bind");
        s.send_to(b"v6", (vip, 5000)).expect("send");
    });
    let got = receive_v6(&mut d, 1, Duration::from_secs(2));
    assert!(got.contains(&(17, vip)), "the datagram to the IPv6 VIP reached rvs: {got:?}");
    assert!(d.steering.stats().steered > before);
}
