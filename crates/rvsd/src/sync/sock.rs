//! The sync daemons' multicast sockets, set up as the kernel sets up its own
//! (`make_send_sock`, `make_receive_sock` in ip_vs_sync.c): the sender bound to the interface's
//! address, multicast out of that interface, loopback off, the TTL given, fragmentation
//! allowed (no DF), connected to group:port; the receiver bound to group:port on the
//! interface, address reuse on, group joined there. IPv6 groups likewise.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

fn setsockopt<T>(fd: &impl AsRawFd, level: i32, name: i32, v: &T) -> io::Result<()> {
    // SAFETY: `v` points to a live value of the size given.
    let rc = unsafe {
        libc::setsockopt(fd.as_raw_fd(), level, name, v as *const T as *const libc::c_void, size_of::<T>() as u32)
    };
    if rc == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

/// Index of interface `name`.
pub fn ifindex(name: &str) -> io::Result<u32> {
    let c = std::ffi::CString::new(name).map_err(|_| io::Error::from_raw_os_error(libc::ENODEV))?;
    // SAFETY: a valid NUL-terminated string.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if i == 0 { Err(io::Error::from_raw_os_error(libc::ENODEV)) } else { Ok(i) }
}

/// MTU of interface `name` (the backup's default message size follows it).
pub fn mtu(name: &str) -> Option<u32> {
    std::fs::read_to_string(format!("/sys/class/net/{name}/mtu")).ok()?.trim().parse().ok()
}

/// Every address configured on this host, with the interface that holds it.
pub fn host_addrs() -> Vec<(String, IpAddr)> {
    let mut out = Vec::new();
    let mut ifa: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills a list we walk read-only and free once.
    unsafe {
        if libc::getifaddrs(&mut ifa) != 0 {
            return out;
        }
        let mut p = ifa;
        while !p.is_null() {
            let a = &*p;
            if !a.ifa_addr.is_null() {
                let name = std::ffi::CStr::from_ptr(a.ifa_name).to_string_lossy().into_owned();
                match i32::from((*a.ifa_addr).sa_family) {
                    libc::AF_INET => {
                        let sin = &*(a.ifa_addr as *const libc::sockaddr_in);
                        out.push((name, IpAddr::V4(Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)))));
                    }
                    libc::AF_INET6 => {
                        let sin6 = &*(a.ifa_addr as *const libc::sockaddr_in6);
                        out.push((name, IpAddr::V6(sin6.sin6_addr.s6_addr.into())));
                    }
                    _ => {}
                }
            }
            p = a.ifa_next;
        }
        libc::freeifaddrs(ifa);
    }
    out
}

/// The master's socket: sends to `group:port` out of `ifname`.
pub fn sender(ifname: &str, group: IpAddr, port: u16, ttl: u8, sock_size: u32) -> io::Result<UdpSocket> {
    let index = ifindex(ifname)?;
    let s = match group {
        IpAddr::V4(g) => {
            // The kernel binds to the interface's first address (inet_select_addr).
            let src = host_addrs()
                .into_iter()
                .find_map(|(n, a)| match a {
                    IpAddr::V4(a) if n == ifname => Some(a),
                    _ => None,
                })
                .ok_or_else(|| {
                    io::Error::new(io::ErrorKind::AddrNotAvailable, format!("{ifname} has no IPv4 address"))
                })?;
            let s = UdpSocket::bind((src, 0))?;
            let mreq = libc::ip_mreqn {
                imr_multiaddr: libc::in_addr { s_addr: 0 },
                imr_address: libc::in_addr { s_addr: 0 },
                imr_ifindex: index as i32,
            };
            setsockopt(&s, libc::IPPROTO_IP, libc::IP_MULTICAST_IF, &mreq)?;
            s.set_multicast_loop_v4(false)?;
            s.set_multicast_ttl_v4(u32::from(ttl))?;
            setsockopt(&s, libc::IPPROTO_IP, libc::IP_MTU_DISCOVER, &libc::IP_PMTUDISC_DONT)?;
            s.connect(SocketAddr::from((g, port)))?;
            s
        }
        IpAddr::V6(g) => {
            let s = UdpSocket::bind(SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 0)))?;
            setsockopt(&s, libc::IPPROTO_IPV6, libc::IPV6_MULTICAST_IF, &(index as i32))?;
            s.set_multicast_loop_v6(false)?;
            setsockopt(&s, libc::IPPROTO_IPV6, libc::IPV6_MULTICAST_HOPS, &i32::from(ttl))?;
            setsockopt(&s, libc::IPPROTO_IPV6, libc::IPV6_MTU_DISCOVER, &libc::IPV6_PMTUDISC_DONT)?;
            s.connect(std::net::SocketAddrV6::new(g, port, 0, index))?;
            s
        }
    };
    if sock_size > 0 {
        setsockopt(&s, libc::SOL_SOCKET, libc::SO_SNDBUF, &(sock_size as i32))?;
    }
    s.set_nonblocking(true)?;
    Ok(s)
}

/// The backup's socket: receives `group:port` on `ifname`; reads time out after `tick`.
pub fn receiver(ifname: &str, group: IpAddr, port: u16, sock_size: u32, tick: Duration) -> io::Result<UdpSocket> {
    let index = ifindex(ifname)?;
    let fam = if group.is_ipv4() { libc::AF_INET } else { libc::AF_INET6 };
    // SAFETY: plain socket(2); the descriptor is owned at once.
    let fd = unsafe { libc::socket(fam, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, libc::IPPROTO_UDP) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor nobody else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    setsockopt(&fd, libc::SOL_SOCKET, libc::SO_REUSEADDR, &1i32)?;
    if sock_size > 0 {
        setsockopt(&fd, libc::SOL_SOCKET, libc::SO_RCVBUF, &(sock_size as i32))?;
    }
    let name = std::ffi::CString::new(ifname).map_err(|_| io::Error::from_raw_os_error(libc::ENODEV))?;
    // SAFETY: the name buffer is valid for its length.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_BINDTODEVICE,
            name.as_ptr() as *const libc::c_void,
            name.as_bytes_with_nul().len() as u32,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    let s = UdpSocket::from(fd);
    let bind_to = match group {
        IpAddr::V4(g) => SocketAddr::from((g, port)),
        IpAddr::V6(g) => SocketAddr::V6(std::net::SocketAddrV6::new(g, port, 0, index)),
    };
    // Bind through std: it converts the address (the socket is ours already).
    bind(&s, bind_to)?;
    match group {
        IpAddr::V4(g) => {
            let mreq = libc::ip_mreqn {
                imr_multiaddr: libc::in_addr { s_addr: u32::from(g).to_be() },
                imr_address: libc::in_addr { s_addr: 0 },
                imr_ifindex: index as i32,
            };
            setsockopt(&s, libc::IPPROTO_IP, libc::IP_ADD_MEMBERSHIP, &mreq)?;
        }
        IpAddr::V6(g) => s.join_multicast_v6(&g, index)?,
    }
    s.set_read_timeout(Some(tick))?;
    Ok(s)
}

fn bind(s: &UdpSocket, a: SocketAddr) -> io::Result<()> {
    let rc = match a {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as u16,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr { s_addr: u32::from(*a.ip()).to_be() },
                sin_zero: [0; 8],
            };
            // SAFETY: a valid sockaddr_in of the size given.
            unsafe { libc::bind(s.as_raw_fd(), &sin as *const _ as *const libc::sockaddr, size_of_val(&sin) as u32) }
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as u16,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: 0,
                sin6_addr: libc::in6_addr { s6_addr: a.ip().octets() },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: a valid sockaddr_in6 of the size given.
            unsafe { libc::bind(s.as_raw_fd(), &sin6 as *const _ as *const libc::sockaddr, size_of_val(&sin6) as u32) }
        }
    };
    if rc == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}
