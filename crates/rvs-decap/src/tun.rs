//! The TUN device the inner packets are written into. Writing a packet into a
//! TUN fd makes the kernel receive it on that device, so a packet for the VIP
//! (on `lo`) is delivered locally and answered by normal routing
//! (DESIGN.md "Traps measured": real-server decapsulation without `ipip`).
//!
//! The device is not persistent: closing the fd (exit, crash) removes it.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

use crate::sys::{cvt, ifreq, owned};

pub struct Tun {
    fd: OwnedFd,
    name: String,
}

impl Tun {
    /// Creates `name` (`IFF_TUN | IFF_NO_PI`: raw IP packets, the version
    /// nibble tells the kernel the protocol). Needs CAP_NET_ADMIN.
    pub fn create(name: &str) -> io::Result<Tun> {
        // SAFETY: plain open(2) of a constant path.
        let fd = owned(unsafe { libc::open(c"/dev/net/tun".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) })?;
        let mut req = ifreq(name)?;
        req.ifr_ifru.ifru_flags = (libc::IFF_TUN | libc::IFF_NO_PI) as libc::c_short;
        // SAFETY: TUNSETIFF reads and writes a `struct ifreq` we own.
        cvt(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETIFF, &mut req) })?;
        // The kernel may have completed a name pattern; read back what it chose.
        let got: Vec<u8> = req.ifr_name.iter().take_while(|&&c| c != 0).map(|&c| c as u8).collect();
        let name = String::from_utf8_lossy(&got).into_owned();
        Ok(Tun { fd, name })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Sets IFF_UP (SIOCGIFFLAGS / SIOCSIFFLAGS on a throwaway socket).
    pub fn set_up(&self) -> io::Result<()> {
        // SAFETY: plain socket(2).
        let sock = owned(unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) })?;
        let mut req = ifreq(&self.name)?;
        // SAFETY: both ioctls read/write the `struct ifreq` we own.
        cvt(unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) })?;
        // SAFETY: SIOCGIFFLAGS filled the flags member of the union.
        let flags = unsafe { req.ifr_ifru.ifru_flags };
        req.ifr_ifru.ifru_flags = flags | libc::IFF_UP as libc::c_short;
        cvt(unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &mut req) })?;
        Ok(())
    }

    /// Hands one IPv4 packet to the kernel as if received on the device.
    pub fn write(&self, pkt: &[u8]) -> io::Result<()> {
        // SAFETY: `pkt` is valid for `pkt.len()` bytes.
        let n = unsafe { libc::write(self.fd.as_raw_fd(), pkt.as_ptr().cast(), pkt.len()) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        if n as usize != pkt.len() {
            return Err(io::Error::new(io::ErrorKind::WriteZero, "short write to TUN device"));
        }
        Ok(())
    }
}
