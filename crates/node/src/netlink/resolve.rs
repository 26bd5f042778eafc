//! Asks the director's kernel to resolve a neighbour: `RTM_NEWNEIGH` with `NTF_USE`, what
//! `neigh_event_send` does for a packet the kernel itself wants to send. The kernel creates
//! the entry if needed, sends ARP or a neighbour solicitation from its own address, retries
//! as configured, and reports the answer as a neighbour event, which the daemon's netlink
//! monitor already turns into a new network snapshot. This works whichever backend carries
//! the frames: with XDP steering, ARP replies and neighbour advertisements go to the kernel,
//! not to rvs.

use std::io;
use std::net::IpAddr;
use std::os::fd::AsRawFd;

use super::NlSocket;
use super::parse::{NDMSG_LEN, NLMSG_HDRLEN, RTM_NEWNEIGH};

const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_CREATE: u16 = 0x400;
const NTF_USE: u8 = 0x01;
const NDA_DST: u16 = 1;
const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;

/// A netlink socket that sends resolution requests and never waits for an answer.
pub struct Resolver {
    sock: NlSocket,
    buf: [u8; 256],
}

/// The request for `ip` on `ifindex` (sequence number `seq`).
pub(crate) fn request(ifindex: u32, ip: IpAddr, seq: u32) -> Vec<u8> {
    let (family, addr): (u8, Vec<u8>) = match ip {
        IpAddr::V4(a) => (AF_INET, a.octets().to_vec()),
        IpAddr::V6(a) => (AF_INET6, a.octets().to_vec()),
    };
    let attr_len = 4 + addr.len();
    let len = NLMSG_HDRLEN + NDMSG_LEN + attr_len.next_multiple_of(4);
    let mut m = Vec::with_capacity(len);
    m.extend_from_slice(&(len as u32).to_ne_bytes());
    m.extend_from_slice(&RTM_NEWNEIGH.to_ne_bytes());
    m.extend_from_slice(&(NLM_F_REQUEST | NLM_F_CREATE).to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    // ndmsg: family, pad, pad, ifindex, state (NUD_NONE), flags, type.
    m.extend_from_slice(&[family, 0, 0, 0]);
    m.extend_from_slice(&(ifindex as i32).to_ne_bytes());
    m.extend_from_slice(&0u16.to_ne_bytes());
    m.extend_from_slice(&[NTF_USE, 0]);
    m.extend_from_slice(&(attr_len as u16).to_ne_bytes());
    m.extend_from_slice(&NDA_DST.to_ne_bytes());
    m.extend_from_slice(&addr);
    m.resize(len, 0);
    m
}

impl Resolver {
    /// A non-blocking socket in the calling thread's network namespace.
    pub fn open() -> io::Result<Resolver> {
        Ok(Resolver { sock: NlSocket::open(0, true)?, buf: [0; 256] })
    }

    /// Asks the kernel to resolve `ip` on `ifindex`. Answers (errors only: no ACK is asked
    /// for) are drained and the last error returned, so a caller can log it.
    pub fn ask(&mut self, ifindex: u32, ip: IpAddr) -> io::Result<()> {
        self.sock.seq = self.sock.seq.wrapping_add(1);
        let msg = request(ifindex, ip, self.sock.seq);
        // SAFETY: `msg` is valid for reads of its length.
        let n = unsafe {
            libc::send(self.sock.fd.as_raw_fd(), msg.as_ptr() as *const libc::c_void, msg.len(), libc::MSG_DONTWAIT)
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        self.drain()
    }

    /// Reads pending answers; the last kernel error among them, if any.
    pub fn drain(&mut self) -> io::Result<()> {
        let mut res = Ok(());
        while let Ok(n) = self.sock.recv(&mut self.buf, libc::MSG_DONTWAIT) {
            for m in super::parse::messages(&self.buf[..n.min(self.buf.len())]) {
                if m.ty == super::parse::NLMSG_ERROR
                    && let Some(e) = super::parse::error_code(m.payload)
                    && e != 0
                {
                    res = Err(io::Error::from_raw_os_error(-e));
                }
            }
        }
        res
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_layout() {
        let m = request(7, "10.1.2.3".parse().unwrap(), 5);
        assert_eq!(m.len(), 16 + 12 + 8);
        assert_eq!(u32::from_ne_bytes(m[0..4].try_into().unwrap()), 36);
        assert_eq!(u16::from_ne_bytes(m[4..6].try_into().unwrap()), 28);
        assert_eq!(u16::from_ne_bytes(m[6..8].try_into().unwrap()), 0x401);
        assert_eq!(m[16], 2);
        assert_eq!(i32::from_ne_bytes(m[20..24].try_into().unwrap()), 7);
        assert_eq!(m[26], NTF_USE);
        assert_eq!(u16::from_ne_bytes(m[28..30].try_into().unwrap()), 8);
        assert_eq!(&m[32..36], &[10, 1, 2, 3]);
        let m = request(7, "2001:db8::1".parse().unwrap(), 5);
        assert_eq!(m.len(), 16 + 12 + 20);
        assert_eq!(m[16], 10);
    }
}
