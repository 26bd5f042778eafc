//! Interface facts by name: index, MAC address, MTU. Answered by the kernel of the calling
//! thread's network namespace (`if_nametoindex`, `SIOCGIFHWADDR`, `SIOCGIFMTU`).

use std::ffi::CString;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::raw::c_char;

/// `IFNAMSIZ` including the terminating NUL.
const IFNAMSIZ: usize = 16;

/// `struct ifreq`: the name, then a 24-byte union (the largest member is `struct ifmap`).
/// Own definition so the layout is fixed here, not borrowed from a libc version.
#[repr(C)]
struct IfReq {
    name: [c_char; IFNAMSIZ],
    data: [u8; 24],
}

fn bad_name(name: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, format!("bad interface name {name:?}"))
}

/// A Linux interface name: 1..=15 bytes, no NUL.
fn check_name(name: &str) -> io::Result<()> {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() >= IFNAMSIZ || bytes.contains(&0) {
        return Err(bad_name(name));
    }
    Ok(())
}

fn ifreq_for(name: &str) -> io::Result<IfReq> {
    check_name(name)?;
    let bytes = name.as_bytes();
    let mut req = IfReq { name: [0; IFNAMSIZ], data: [0; 24] };
    for (dst, &src) in req.name.iter_mut().zip(bytes) {
        *dst = src as c_char;
    }
    Ok(req)
}

/// Runs one `SIOCGIF*` ioctl on a throwaway datagram socket.
fn ioctl_get(name: &str, request: libc::c_ulong) -> io::Result<IfReq> {
    let mut req = ifreq_for(name)?;
    // SAFETY: plain socket(2) call; the result is checked before use.
    let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a fresh descriptor that nothing else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(raw) };
    use std::os::fd::AsRawFd;
    // SAFETY: `req` is a properly sized, NUL-terminated `struct ifreq` that lives across the
    // call; the SIOCGIF* requests used here only write inside it.
    let rc = unsafe { libc::ioctl(sock.as_raw_fd(), request as _, &mut req as *mut IfReq) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(req)
}

/// The interface index of `name` (`if_nametoindex`).
pub fn if_index(name: &str) -> io::Result<u32> {
    check_name(name)?;
    let c = CString::new(name).map_err(|_| bad_name(name))?;
    // SAFETY: `c` is a valid NUL-terminated string for the duration of the call.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if idx == 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(idx)
}

/// The hardware (MAC) address of `name`. Fails for interfaces without an Ethernet address.
pub fn if_mac(name: &str) -> io::Result<[u8; 6]> {
    let req = ioctl_get(name, libc::SIOCGIFHWADDR)?;
    // ifr_hwaddr is a `struct sockaddr`: sa_family (u16), then sa_data.
    let family = u16::from_ne_bytes([req.data[0], req.data[1]]);
    if family != libc::ARPHRD_ETHER {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!("{name} is not an Ethernet interface (ARPHRD {family})"),
        ));
    }
    let mut mac = [0u8; 6];
    mac.copy_from_slice(&req.data[2..8]);
    Ok(mac)
}

/// The MTU of `name` (bytes of IP packet, without the link-layer header).
pub fn if_mtu(name: &str) -> io::Result<u32> {
    let req = ioctl_get(name, libc::SIOCGIFMTU)?;
    let mtu = i32::from_ne_bytes([req.data[0], req.data[1], req.data[2], req.data[3]]);
    u32::try_from(mtu).map_err(|_| io::Error::other(format!("negative MTU on {name}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_bad_names() {
        assert_eq!(if_index("").unwrap_err().kind(), io::ErrorKind::InvalidInput);
        assert_eq!(if_mtu("a-name-far-too-long").unwrap_err().kind(), io::ErrorKind::InvalidInput);
        assert_eq!(if_mac("nul\0name").unwrap_err().kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn loopback_is_there_and_not_ethernet() {
        // Every network namespace has `lo`.
        assert!(if_index("lo").unwrap() >= 1);
        assert!(if_mtu("lo").unwrap() >= 1500);
        assert!(if_mac("lo").is_err());
        assert!(if_index("rvs-no-such-if").is_err());
    }
}
