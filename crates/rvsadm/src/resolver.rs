//! System name lookups for listings without `-n`: service names from
//! /etc/services, host names from /etc/hosts, then reverse DNS through the C
//! library (ipvsadm uses gethostbyaddr; getnameinfo is its modern equivalent).

use control::ipvsadm::resolve::{Resolver, TableResolver};
use std::net::{IpAddr, Ipv4Addr};

pub struct SystemResolver {
    table: TableResolver,
}

impl SystemResolver {
    pub fn new() -> Self {
        SystemResolver { table: TableResolver::system() }
    }
}

/// Reverse lookup with `NI_NAMEREQD`: `None` when the address has no name.
fn reverse_dns(addr: IpAddr) -> Option<String> {
    let mut host = [0 as libc::c_char; 1025];
    // SAFETY: the sockaddr structs are zero-initialised plain C data, fully set
    // up below; getnameinfo only reads `salen` bytes of them and writes at most
    // `host.len()` bytes (NUL-terminated) into `host`.
    let rc = unsafe {
        match addr {
            IpAddr::V4(a) => {
                let mut sa: libc::sockaddr_in = std::mem::zeroed();
                sa.sin_family = libc::AF_INET as libc::sa_family_t;
                sa.sin_addr.s_addr = u32::from_ne_bytes(a.octets());
                libc::getnameinfo(
                    (&raw const sa).cast(),
                    std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
                    host.as_mut_ptr(),
                    host.len() as libc::socklen_t,
                    std::ptr::null_mut(),
                    0,
                    libc::NI_NAMEREQD,
                )
            }
            IpAddr::V6(a) => {
                let mut sa: libc::sockaddr_in6 = std::mem::zeroed();
                sa.sin6_family = libc::AF_INET6 as libc::sa_family_t;
                sa.sin6_addr.s6_addr = a.octets();
                libc::getnameinfo(
                    (&raw const sa).cast(),
                    std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t,
                    host.as_mut_ptr(),
                    host.len() as libc::socklen_t,
                    std::ptr::null_mut(),
                    0,
                    libc::NI_NAMEREQD,
                )
            }
        }
    };
    if rc != 0 {
        return None;
    }
    // SAFETY: on success getnameinfo wrote a NUL-terminated string into `host`.
    let name = unsafe { std::ffi::CStr::from_ptr(host.as_ptr()) };
    Some(name.to_string_lossy().into_owned())
}

impl Resolver for SystemResolver {
    fn host_addr(&self, name: &str) -> Option<Ipv4Addr> {
        self.table.host_addr(name)
    }
    fn service_port(&self, name: &str, proto: u8) -> Option<u16> {
        self.table.service_port(name, proto)
    }
    fn host_name(&self, addr: IpAddr) -> Option<String> {
        self.table.host_name(addr).or_else(|| reverse_dns(addr))
    }
    fn service_name(&self, port: u16, proto: u8) -> Option<String> {
        self.table.service_name(port, proto)
    }
}
