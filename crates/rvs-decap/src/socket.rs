//! Receive sockets: raw IPv4 sockets for IPIP (protocol 4) and GRE (47), and a
//! UDP socket for GUE. A raw socket gets a copy of every locally addressed
//! packet of its protocol, with the outer header, after reassembly and
//! whether or not the kernel has a handler for the protocol; with a raw
//! socket open the kernel also no longer answers "protocol unreachable".
//! All are bound to the interface (SO_BINDTODEVICE) and non-blocking.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use crate::decap::Encap;
use crate::sys::{cvt, owned, setsockopt_bytes, setsockopt_int};

/// Receive buffer asked for; SO_RCVBUFFORCE (root) passes rmem_max.
const RCVBUF: libc::c_int = 4 << 20;

/// A socket and what its datagrams carry.
pub struct Source {
    pub encap: Encap,
    pub fd: OwnedFd,
}

impl Source {
    /// Opens the socket for `encap` on `iface`; `gue_port` is used for GUE only.
    pub fn open(encap: Encap, iface: &str, gue_port: u16) -> io::Result<Source> {
        let flags = libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC;
        let fd = match encap {
            // SAFETY: plain socket(2) calls.
            Encap::Ipip => owned(unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW | flags, libc::IPPROTO_IPIP) })?,
            Encap::Gre => owned(unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW | flags, libc::IPPROTO_GRE) })?,
            Encap::Gue => owned(unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | flags, 0) })?,
        };
        let raw = fd.as_raw_fd();
        setsockopt_bytes(raw, libc::SOL_SOCKET, libc::SO_BINDTODEVICE, iface.as_bytes())?;
        if setsockopt_int(raw, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, RCVBUF).is_err() {
            let _ = setsockopt_int(raw, libc::SOL_SOCKET, libc::SO_RCVBUF, RCVBUF);
        }
        if encap == Encap::Gue {
            // SAFETY: sockaddr_in is plain old data.
            let mut sa: libc::sockaddr_in = unsafe { std::mem::zeroed() };
            sa.sin_family = libc::AF_INET as libc::sa_family_t;
            sa.sin_port = gue_port.to_be();
            let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            // SAFETY: `sa` is a valid sockaddr_in of `len` bytes.
            cvt(unsafe { libc::bind(raw, (&sa as *const libc::sockaddr_in).cast(), len) })?;
        }
        Ok(Source { encap, fd })
    }
}

/// Buffers for one `recvmmsg` call: several datagrams per wakeup.
pub struct Batch {
    bufs: Vec<Box<[u8]>>,
    iov: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
}

impl Batch {
    /// `count` buffers of `size` bytes (65536 holds any IPv4 datagram).
    pub fn new(count: usize, size: usize) -> Batch {
        let bufs: Vec<Box<[u8]>> = (0..count.max(1)).map(|_| vec![0u8; size].into_boxed_slice()).collect();
        let iov = bufs.iter().map(|_| libc::iovec { iov_base: std::ptr::null_mut(), iov_len: 0 }).collect();
        // SAFETY: mmsghdr is plain old data; null pointers are set before use.
        let hdrs = bufs.iter().map(|_| unsafe { std::mem::zeroed::<libc::mmsghdr>() }).collect();
        Batch { bufs, iov, hdrs }
    }

    pub fn capacity(&self) -> usize {
        self.bufs.len()
    }

    /// Reads up to [`Self::capacity`] datagrams without blocking; `Ok(0)` when
    /// none are queued.
    pub fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        for ((buf, iov), hdr) in self.bufs.iter_mut().zip(self.iov.iter_mut()).zip(self.hdrs.iter_mut()) {
            iov.iov_base = buf.as_mut_ptr().cast();
            iov.iov_len = buf.len();
            // SAFETY: resetting plain old data.
            *hdr = unsafe { std::mem::zeroed() };
            hdr.msg_hdr.msg_iov = iov;
            hdr.msg_hdr.msg_iovlen = 1;
        }
        let n = self.hdrs.len() as libc::c_uint;
        // SAFETY: every header points at one live iovec, which points at a live
        // buffer of iov_len bytes; the kernel writes at most that much.
        let rc = unsafe { libc::recvmmsg(fd, self.hdrs.as_mut_ptr(), n, libc::MSG_DONTWAIT, std::ptr::null_mut()) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(libc::EAGAIN) | Some(libc::EINTR) => Ok(0),
                _ => Err(e),
            };
        }
        Ok(rc as usize)
    }

    /// Datagram `i` of the last [`Self::recv`] and whether it was cut to fit.
    pub fn get_mut(&mut self, i: usize) -> (&mut [u8], bool) {
        let hdr = &self.hdrs[i];
        let truncated = hdr.msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
        let buf = &mut self.bufs[i];
        let len = (hdr.msg_len as usize).min(buf.len());
        (&mut buf[..len], truncated)
    }
}
