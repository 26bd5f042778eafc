//! Sockets the probes need beyond std: a TCP connect from a chosen source address
//! with a timeout (`bindto`/`bind_port`), and ICMP echo sockets (unprivileged
//! `SOCK_DGRAM`/`IPPROTO_ICMP` where `ping_group_range` allows it, else raw).

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, UdpSocket};
use std::os::fd::{FromRawFd, OwnedFd};
use std::time::Duration;

/// The unspecified address of `addr`'s family with `port`.
pub fn any_of(addr: &IpAddr, port: u16) -> SocketAddr {
    match addr {
        IpAddr::V4(_) => SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port),
        IpAddr::V6(_) => SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port),
    }
}

fn sockaddr(a: &SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: all-zero is a valid sockaddr_storage; the family-specific views are
    // written within its size.
    unsafe {
        let mut ss: libc::sockaddr_storage = zeroed();
        match a {
            SocketAddr::V4(v4) => {
                let sin = &mut *(&mut ss as *mut _ as *mut libc::sockaddr_in);
                sin.sin_family = libc::AF_INET as libc::sa_family_t;
                sin.sin_port = v4.port().to_be();
                sin.sin_addr.s_addr = u32::from_ne_bytes(v4.ip().octets());
                (ss, size_of::<libc::sockaddr_in>() as libc::socklen_t)
            }
            SocketAddr::V6(v6) => {
                let sin6 = &mut *(&mut ss as *mut _ as *mut libc::sockaddr_in6);
                sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
                sin6.sin6_port = v6.port().to_be();
                sin6.sin6_addr.s6_addr = v6.ip().octets();
                sin6.sin6_scope_id = v6.scope_id();
                (ss, size_of::<libc::sockaddr_in6>() as libc::socklen_t)
            }
        }
    }
}

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 { Err(io::Error::last_os_error()) } else { Ok(r) }
}

fn family(a: &IpAddr) -> libc::c_int {
    if a.is_ipv4() { libc::AF_INET } else { libc::AF_INET6 }
}

/// TCP connect to `target` within `timeout`, optionally from `bind`.
pub fn tcp_connect(target: SocketAddr, bind: Option<SocketAddr>, timeout: Duration) -> io::Result<TcpStream> {
    let timeout = timeout.max(Duration::from_millis(1));
    let Some(bind) = bind else {
        return TcpStream::connect_timeout(&target, timeout);
    };
    // SAFETY: plain socket calls on a descriptor we own (OwnedFd closes it on error).
    unsafe {
        let fd =
            cvt(libc::socket(family(&target.ip()), libc::SOCK_STREAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK, 0))?;
        let owned = OwnedFd::from_raw_fd(fd);
        let one: libc::c_int = 1;
        cvt(libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_REUSEADDR,
            &one as *const _ as *const libc::c_void,
            size_of::<libc::c_int>() as libc::socklen_t,
        ))?;
        let (ba, bl) = sockaddr(&bind);
        cvt(libc::bind(fd, &ba as *const _ as *const libc::sockaddr, bl))?;
        let (ta, tl) = sockaddr(&target);
        if libc::connect(fd, &ta as *const _ as *const libc::sockaddr, tl) < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EINPROGRESS) {
                return Err(e);
            }
            let mut pfd = libc::pollfd { fd, events: libc::POLLOUT, revents: 0 };
            let ms = timeout.as_millis().min(i32::MAX as u128) as libc::c_int;
            if cvt(libc::poll(&mut pfd, 1, ms))? == 0 {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "connect timed out"));
            }
            let mut err: libc::c_int = 0;
            let mut len = size_of::<libc::c_int>() as libc::socklen_t;
            cvt(libc::getsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_ERROR,
                &mut err as *mut _ as *mut libc::c_void,
                &mut len,
            ))?;
            if err != 0 {
                return Err(io::Error::from_raw_os_error(err));
            }
        }
        let stream = TcpStream::from(owned);
        stream.set_nonblocking(false)?;
        Ok(stream)
    }
}

/// A UDP socket connected to `target` (so ICMP errors surface as `ECONNREFUSED`).
pub fn udp_connect(target: SocketAddr, bind: Option<SocketAddr>, timeout: Duration) -> io::Result<UdpSocket> {
    let s = UdpSocket::bind(bind.unwrap_or_else(|| any_of(&target.ip(), 0)))?;
    s.connect(target)?;
    s.set_read_timeout(Some(timeout.max(Duration::from_millis(1))))?;
    s.set_write_timeout(Some(timeout.max(Duration::from_millis(1))))?;
    Ok(s)
}

/// An ICMP echo socket for `target`'s family: `(socket, is_raw)`.
pub fn icmp_socket(target: &IpAddr) -> io::Result<(UdpSocket, bool)> {
    let (fam, proto) = match target {
        IpAddr::V4(_) => (libc::AF_INET, libc::IPPROTO_ICMP),
        IpAddr::V6(_) => (libc::AF_INET6, libc::IPPROTO_ICMPV6),
    };
    // SAFETY: socket(2); the descriptor is owned by the returned UdpSocket.
    unsafe {
        let fd = libc::socket(fam, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, proto);
        if fd >= 0 {
            return Ok((UdpSocket::from_raw_fd(fd), false));
        }
        let fd = cvt(libc::socket(fam, libc::SOCK_RAW | libc::SOCK_CLOEXEC, proto))?;
        Ok((UdpSocket::from_raw_fd(fd), true))
    }
}
