//! Neighbour resolution on the XDP path: the director's kernel resolves for rvs.
//!
//! ARP replies and neighbour advertisements addressed to the director's own addresses stay
//! with the kernel (the steering program passes them), so an ARP request sent by rvs would
//! be answered to a kernel that never asked and ignores the answer. Instead rvs asks the
//! kernel to resolve the next hop (`RTM_NEWNEIGH` with `NTF_USE`: create the entry if needed
//! and start resolution, as a packet of its own would); the result reaches rvs over the
//! netlink monitor like any kernel neighbour.

use std::io;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const RTM_NEWNEIGH: u16 = 28;
const NTF_USE: u8 = 0x01;
const NDA_DST: u16 = 1;

/// A netlink socket for resolution requests (no answers are read: `NLM_F_ACK` is not set).
pub struct KernelResolver {
    fd: OwnedFd,
    seq: u32,
}

impl KernelResolver {
    pub fn new() -> io::Result<Self> {
        // SAFETY: plain socket call.
        let fd = unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, libc::NETLINK_ROUTE) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fresh descriptor we own.
        Ok(KernelResolver { fd: unsafe { OwnedFd::from_raw_fd(fd) }, seq: 0 })
    }

    /// Asks the kernel to resolve `ip` on `ifindex` (non-blocking; errors are the caller's to log).
    pub fn resolve(&mut self, ifindex: u32, ip: IpAddr) -> io::Result<()> {
        let (family, addr): (u8, Vec<u8>) = match ip {
            IpAddr::V4(a) => (libc::AF_INET as u8, a.octets().to_vec()),
            IpAddr::V6(a) => (libc::AF_INET6 as u8, a.octets().to_vec()),
        };
        let mut m = [0u8; 16 + 12 + 4 + 16];
        let len = 16 + 12 + 4 + addr.len();
        self.seq = self.seq.wrapping_add(1);
        m[0..4].copy_from_slice(&(len as u32).to_ne_bytes());
        m[4..6].copy_from_slice(&RTM_NEWNEIGH.to_ne_bytes());
        let flags = (libc::NLM_F_REQUEST | libc::NLM_F_CREATE) as u16;
        m[6..8].copy_from_slice(&flags.to_ne_bytes());
        m[8..12].copy_from_slice(&self.seq.to_ne_bytes());
        // ndmsg: family, pad, pad, ifindex, state, flags, type
        m[16] = family;
        m[20..24].copy_from_slice(&(ifindex as i32).to_ne_bytes());
        m[24..26].copy_from_slice(&0u16.to_ne_bytes()); // NUD_NONE: the kernel starts from nothing
        m[26] = NTF_USE;
        m[28..30].copy_from_slice(&((4 + addr.len()) as u16).to_ne_bytes());
        m[30..32].copy_from_slice(&NDA_DST.to_ne_bytes());
        m[32..32 + addr.len()].copy_from_slice(&addr);
        // SAFETY: zeroed sockaddr_nl addressed to the kernel (pid 0).
        let mut sa: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        sa.nl_family = libc::AF_NETLINK as u16;
        // SAFETY: valid buffer and address.
        let rc = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                m.as_ptr().cast(),
                len,
                libc::MSG_DONTWAIT,
                (&sa as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if rc < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
    }
}
