//! Interfaces, addresses, routes and neighbours read from the kernel over rtnetlink.
//!
//! The node is what the kernel's IP layer is to IPVS (DESIGN.md "How a packet travels"): it
//! takes the director's interface table, routes and neighbour cache from the kernel rather
//! than from configuration. [`dump`] reads them all at once into a [`Snapshot`]; a
//! [`Monitor`] says when any of them changed so the daemon can dump again and publish a new
//! snapshot (re-dumping is simpler and safer than applying every event incrementally).
//!
//! A small client over `libc` (`NETLINK_ROUTE` sockets); the parsing is in `netlink/parse.rs`
//! and checks every length.

use std::io;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

mod parse;
pub mod resolve;

use parse::*;

/// A network interface (`RTM_NEWLINK`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    /// Ethernet address; `None` for links without a 6-byte hardware address.
    pub mac: Option<[u8; 6]>,
    pub mtu: u32,
    /// Administratively up (`IFF_UP`).
    pub up: bool,
    /// Carrier present (`IFF_LOWER_UP`).
    pub lower_up: bool,
    /// `ARPHRD_*` type (1 = Ethernet, 772 = loopback).
    pub arphrd: u16,
    /// `IFLA_INFO_KIND` ("veth", "bridge", ...), when the kernel reports one.
    pub kind: Option<String>,
}

/// An address of an interface (`RTM_NEWADDR`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Addr {
    pub ifindex: u32,
    pub addr: IpAddr,
    pub prefix_len: u8,
    /// `RT_SCOPE_*`: 0 universe, 253 link, 254 host.
    pub scope: u8,
}

/// One next hop of a multipath route.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NextHop {
    pub gateway: Option<IpAddr>,
    pub oif: u32,
    pub weight: u16,
}

/// A unicast route of the main table (`RTM_NEWROUTE`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    /// Destination prefix; `0.0.0.0`/`::` with `prefix_len` 0 for a default route.
    pub dst: IpAddr,
    pub prefix_len: u8,
    /// `None` for a directly connected prefix. May be IPv6 for an IPv4 route (`RTA_VIA`).
    pub gateway: Option<IpAddr>,
    pub oif: Option<u32>,
    /// Preferred source address.
    pub prefsrc: Option<IpAddr>,
    /// Path MTU lock from the route's metrics (`ip route ... mtu N`).
    pub mtu: Option<u32>,
    /// Route priority (`metric`).
    pub metric: Option<u32>,
    /// Next hops of an ECMP route; empty for single-path routes (then `gateway`/`oif`).
    pub nexthops: Vec<NextHop>,
    /// `RTPROT_*` (2 kernel, 3 boot, 4 static).
    pub protocol: u8,
    pub scope: u8,
}

/// Neighbour state bits (`NUD_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NeighState(pub u16);

impl NeighState {
    pub const INCOMPLETE: NeighState = NeighState(0x01);
    pub const REACHABLE: NeighState = NeighState(0x02);
    pub const STALE: NeighState = NeighState(0x04);
    pub const DELAY: NeighState = NeighState(0x08);
    pub const PROBE: NeighState = NeighState(0x10);
    pub const FAILED: NeighState = NeighState(0x20);
    pub const NOARP: NeighState = NeighState(0x40);
    pub const PERMANENT: NeighState = NeighState(0x80);

    /// States in which the link-layer address may be used to send.
    pub fn is_valid(self) -> bool {
        self.0 & 0xde != 0 // REACHABLE|STALE|DELAY|PROBE|NOARP|PERMANENT
    }
}

/// A neighbour cache entry (`RTM_NEWNEIGH`): ARP for IPv4, ND for IPv6.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Neigh {
    pub ifindex: u32,
    pub ip: IpAddr,
    pub mac: Option<[u8; 6]>,
    pub state: NeighState,
}

impl Neigh {
    /// The entry has a MAC address in a state where it may be used.
    pub fn usable(&self) -> bool {
        self.mac.is_some() && self.state.is_valid()
    }
}

/// Everything [`dump`] reads, IPv4 and IPv6 together.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub links: Vec<Link>,
    pub addrs: Vec<Addr>,
    pub routes: Vec<Route>,
    pub neighs: Vec<Neigh>,
}

/// Reads links, addresses, main-table unicast routes and neighbours from the kernel of the
/// calling thread's network namespace.
pub fn dump() -> io::Result<Snapshot> {
    let mut s = NlSocket::open(0, false)?;
    Ok(Snapshot {
        links: s.dump(RTM_GETLINK, RTM_NEWLINK, IFINFOMSG_LEN, parse_link)?,
        addrs: s.dump(RTM_GETADDR, RTM_NEWADDR, IFADDRMSG_LEN, parse_addr)?,
        routes: s.dump(RTM_GETROUTE, RTM_NEWROUTE, RTMSG_LEN, parse_route)?,
        neighs: s.dump(RTM_GETNEIGH, RTM_NEWNEIGH, NDMSG_LEN, parse_neigh)?,
    })
}

/// `RTMGRP_*` multicast groups the [`Monitor`] joins: links, neighbours, IPv4 and IPv6
/// addresses and routes.
const MONITOR_GROUPS: u32 = 0x1 | 0x4 | 0x10 | 0x40 | 0x100 | 0x400;

/// Watches for changes of links, addresses, routes and neighbours. Put [`Monitor::as_raw_fd`]
/// in a poll set (or call [`Monitor::wait`]); when it is readable, [`Monitor::changed`] says
/// whether a new [`dump`] is due.
pub struct Monitor {
    sock: NlSocket,
    buf: Vec<u8>,
}

impl Monitor {
    /// Subscribes in the calling thread's network namespace. Events from before this call
    /// are not reported: dump after creating the monitor, not before.
    pub fn new() -> io::Result<Monitor> {
        let sock = NlSocket::open(MONITOR_GROUPS, true)?;
        // A large buffer makes overruns (lost events) rarer; failure is harmless.
        let _ = sock.set_rcvbuf(1 << 20);
        Ok(Monitor { sock, buf: vec![0; RECV_BUF] })
    }

    /// Drains every pending message without blocking. True if a link, address, route or
    /// neighbour that [`dump`] would report was added, changed or removed, or if events were
    /// lost (overrun): either way the caller should dump again. Events about what a dump
    /// skips (local-table routes, multicast neighbour entries) do not count.
    pub fn changed(&mut self) -> bool {
        let mut changed = false;
        loop {
            match self.sock.recv(&mut self.buf, libc::MSG_DONTWAIT) {
                Ok(n) => {
                    let n = n.min(self.buf.len());
                    changed |= messages(&self.buf[..n]).any(|m| is_relevant(m.ty, m.payload));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return changed,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // ENOBUFS: the socket overran and events were dropped. Anything else: we
                // cannot tell, so say "changed" and let the caller re-dump.
                Err(_) => return true,
            }
        }
    }

    /// Waits up to `timeout_ms` (-1: forever) for the socket to become readable.
    pub fn wait(&self, timeout_ms: i32) -> io::Result<bool> {
        let mut pfd = libc::pollfd { fd: self.sock.fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd.
        let rc = unsafe { libc::poll(&mut pfd, 1, timeout_ms) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::Interrupted { Ok(false) } else { Err(e) };
        }
        Ok(rc > 0)
    }
}

impl AsRawFd for Monitor {
    fn as_raw_fd(&self) -> RawFd {
        self.sock.fd.as_raw_fd()
    }
}

/// Dump replies are at most ~32 KiB per datagram (the kernel caps its dump skb size).
const RECV_BUF: usize = 64 * 1024;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_DUMP: u16 = 0x300;
/// A dump interrupted by a concurrent change is retried this many times.
const DUMP_TRIES: usize = 5;

struct NlSocket {
    fd: OwnedFd,
    seq: u32,
}

impl NlSocket {
    fn open(groups: u32, nonblock: bool) -> io::Result<NlSocket> {
        let mut ty = libc::SOCK_RAW | libc::SOCK_CLOEXEC;
        if nonblock {
            ty |= libc::SOCK_NONBLOCK;
        }
        // SAFETY: plain socket(2); the result is checked.
        let raw = unsafe { libc::socket(libc::AF_NETLINK, ty, libc::NETLINK_ROUTE) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh descriptor owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: all-zero is a valid sockaddr_nl; pid 0 lets the kernel pick the port id.
        let mut sa: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        sa.nl_family = libc::AF_NETLINK as u16;
        sa.nl_groups = groups;
        // SAFETY: `sa` is a valid sockaddr_nl of the length passed.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                &sa as *const libc::sockaddr_nl as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        if !nonblock {
            // A dump must not hang the caller forever if the kernel never finishes it.
            let tv = libc::timeval { tv_sec: 5, tv_usec: 0 };
            sockopt(fd.as_raw_fd(), libc::SO_RCVTIMEO, &tv)?;
        }
        Ok(NlSocket { fd, seq: 0 })
    }

    fn set_rcvbuf(&self, bytes: libc::c_int) -> io::Result<()> {
        sockopt(self.fd.as_raw_fd(), libc::SO_RCVBUF, &bytes)
    }

    /// recv(2) with `MSG_TRUNC`, so a datagram larger than `buf` is an error, not silently
    /// cut short.
    fn recv(&self, buf: &mut [u8], flags: libc::c_int) -> io::Result<usize> {
        // SAFETY: `buf` is valid for writes of its length.
        let n = unsafe {
            libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr() as *mut libc::c_void, buf.len(), flags | libc::MSG_TRUNC)
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = n as usize;
        if n > buf.len() {
            return Err(io::Error::other(format!("netlink datagram of {n} bytes truncated to {}", buf.len())));
        }
        Ok(n)
    }

    fn send_dump_request(&mut self, req: u16, hdr_len: usize) -> io::Result<u32> {
        self.seq = self.seq.wrapping_add(1);
        let len = NLMSG_HDRLEN + hdr_len;
        let mut msg = vec![0u8; len];
        msg[0..4].copy_from_slice(&(len as u32).to_ne_bytes());
        msg[4..6].copy_from_slice(&req.to_ne_bytes());
        msg[6..8].copy_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
        msg[8..12].copy_from_slice(&self.seq.to_ne_bytes());
        // The family header stays zero: AF_UNSPEC, i.e. IPv4 and IPv6 (and others, which the
        // parsers skip).
        // SAFETY: `msg` is valid for reads of its length; the kernel is the default
        // destination of an unconnected netlink socket.
        let n = unsafe { libc::send(self.fd.as_raw_fd(), msg.as_ptr() as *const libc::c_void, msg.len(), 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(self.seq)
    }

    /// Runs one dump and parses each `reply` message with `parse`; messages it rejects are
    /// skipped. Retried when the kernel flags the dump as interrupted by a change.
    fn dump<T>(
        &mut self,
        req: u16,
        reply: u16,
        hdr_len: usize,
        parse: impl Fn(&[u8]) -> Option<T>,
    ) -> io::Result<Vec<T>> {
        let mut buf = vec![0u8; RECV_BUF];
        for _ in 0..DUMP_TRIES {
            let seq = self.send_dump_request(req, hdr_len)?;
            let mut out = Vec::new();
            let mut interrupted = false;
            'recv: loop {
                let n = match self.recv(&mut buf, 0) {
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                };
                if n == 0 {
                    return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "netlink socket closed during dump"));
                }
                for m in messages(&buf[..n]) {
                    if m.seq != seq {
                        continue; // a late reply to an earlier request
                    }
                    interrupted |= m.flags & NLM_F_DUMP_INTR != 0;
                    match m.ty {
                        NLMSG_DONE => break 'recv,
                        NLMSG_ERROR => match error_code(m.payload) {
                            Some(0) => {}
                            Some(e) => return Err(io::Error::from_raw_os_error(-e)),
                            None => return Err(io::Error::other("short netlink error message")),
                        },
                        t if t == reply => out.extend(parse(m.payload)),
                        _ => {}
                    }
                }
            }
            if !interrupted {
                return Ok(out);
            }
        }
        Err(io::Error::other("netlink dump kept being interrupted by changes"))
    }
}

fn sockopt<T>(fd: RawFd, name: libc::c_int, value: &T) -> io::Result<()> {
    // SAFETY: `value` points to a live `T` of exactly the length passed.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            name,
            value as *const T as *const libc::c_void,
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn neigh_states() {
        assert!(NeighState::PERMANENT.is_valid());
        assert!(NeighState::STALE.is_valid());
        assert!(NeighState::NOARP.is_valid());
        assert!(!NeighState::INCOMPLETE.is_valid());
        assert!(!NeighState::FAILED.is_valid());
        assert!(!NeighState(0).is_valid());
    }

    /// Unprivileged: every namespace has `lo`, so a dump must at least return it.
    #[test]
    fn dump_sees_loopback() {
        let s = dump().expect("dump");
        let lo = s.links.iter().find(|l| l.name == "lo").expect("lo");
        assert_eq!(lo.arphrd, 772);
        assert!(lo.index >= 1);
    }

    #[test]
    fn monitor_starts_quiet_and_is_pollable() {
        let mut m = Monitor::new().expect("monitor");
        assert!(m.as_raw_fd() >= 0);
        // Nothing readable yet means changed() must not invent a change.
        if !m.wait(0).expect("wait") {
            assert!(!m.changed());
        }
    }
}
