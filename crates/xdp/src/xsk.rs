//! AF_XDP sockets over `libc`: one UMEM (frames of 2 or 4 KiB) shared by every
//! socket of a worker, one socket per (interface, queue), each with its own fill, completion,
//! RX and TX rings. The first socket registers the UMEM; the others bind with
//! `XDP_SHARED_UMEM` alone (DESIGN.md "AF_XDP on this kind of machine": copy or need-wakeup
//! flags beside it fail with EINVAL; they inherit the first socket's), so a frame received on
//! one device can be handed to another device's TX ring without a copy in user space.
//!
//! A frame's chunk is `addr & !(frame size - 1)`; the kernel writes received data after
//! `XDP_PACKET_HEADROOM` (256 bytes), which is the headroom the tunnel transmitter prepends
//! its outer header into.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// How long [`Socket::open`] retries a queue that is still busy (released by a process that
/// just exited: the kernel frees it from a work queue).
pub const BIND_WAIT: Duration = Duration::from_secs(1);
/// Pause between two binds of a busy queue: short, since in a hot restart every
/// millisecond here is a millisecond nobody serves the interface.
const BIND_RETRY: Duration = Duration::from_millis(2);

/// Bytes per UMEM frame: one page, for links with an MTU above 1500 (XDP on veth takes up
/// to about 3500).
pub const FRAME_SIZE: usize = 4096;
/// Bytes per UMEM frame for links with an MTU of at most 1500: 256 bytes of headroom, a
/// 1514-byte frame and room behind it, and twice the frames in the same memory.
pub const FRAME_SIZE_SMALL: usize = 2048;

/// Where a frame built in user space starts in its UMEM frame: the same headroom as a received
/// one (`XDP_PACKET_HEADROOM`).
pub const TX_HEADROOM: usize = 256;

/// The frame size for the largest MTU served.
pub fn frame_size_for_mtu(mtu: u32) -> usize {
    if mtu <= 1500 { FRAME_SIZE_SMALL } else { FRAME_SIZE }
}

/// A memory area registered with the kernel, carved into frames.
pub struct Umem {
    base: NonNull<u8>,
    len: usize,
    frame: usize,
}

// SAFETY: the area is plain memory owned by this value; access is coordinated by the rings.
unsafe impl Send for Umem {}

impl Umem {
    /// An area of `frames` frames of `frame_size` bytes ([`FRAME_SIZE`] or
    /// [`FRAME_SIZE_SMALL`]), anonymous, populated up front.
    pub fn new(frames: u32, frame_size: usize) -> io::Result<Self> {
        if frame_size != FRAME_SIZE && frame_size != FRAME_SIZE_SMALL {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "UMEM frame size must be 2048 or 4096"));
        }
        let len = frames as usize * frame_size;
        // SAFETY: anonymous private mapping, checked for failure.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Umem {
            base: NonNull::new(p.cast()).ok_or_else(|| io::Error::other("mmap gave NULL"))?,
            len,
            frame: frame_size,
        })
    }

    pub fn frames(&self) -> u32 {
        (self.len / self.frame) as u32
    }

    /// Bytes per frame.
    pub fn frame_size(&self) -> usize {
        self.frame
    }

    /// The start of the frame holding `addr`.
    #[inline]
    pub fn chunk_of(&self, addr: u64) -> u64 {
        addr & !(self.frame as u64 - 1)
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The frame holding `addr`, as a mutable slice of the whole chunk.
    ///
    /// # Safety
    /// The caller owns that frame (it came off an RX or completion ring, or the free list,
    /// and is on no ring) and holds no other slice of it.
    #[inline]
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn chunk<'a>(&self, addr: u64) -> Option<&'a mut [u8]> {
        let start = self.chunk_of(addr) as usize;
        if start + self.frame > self.len {
            return None;
        }
        // SAFETY: within the mapping; exclusivity is the caller's promise.
        Some(unsafe { std::slice::from_raw_parts_mut(self.base.as_ptr().add(start), self.frame) })
    }
}

impl Drop for Umem {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`.
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.len) };
    }
}

/// One of the four rings shared with the kernel, mapped from the socket.
struct Ring<T> {
    producer: *const AtomicU32,
    consumer: *const AtomicU32,
    flags: *const AtomicU32,
    descs: *mut T,
    mask: u32,
    size: u32,
    /// Local copies: what we produced/consumed and last saw of the other side.
    prod: u32,
    cons: u32,
    map: *mut libc::c_void,
    map_len: usize,
}

// SAFETY: the ring is used by one thread at a time (the worker that owns the socket).
unsafe impl<T> Send for Ring<T> {}

impl<T: Copy> Ring<T> {
    fn map(fd: RawFd, off: &libc::xdp_ring_offset, size: u32, pgoff: u64, producer_side: bool) -> io::Result<Self> {
        let map_len = off.desc as usize + size as usize * std::mem::size_of::<T>();
        // SAFETY: mapping the ring the kernel created for this socket, checked for failure.
        let map = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                fd,
                pgoff as libc::off_t,
            )
        };
        if map == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let at = |o: u64| unsafe { (map as *mut u8).add(o as usize) };
        let mut r = Ring {
            producer: at(off.producer).cast(),
            consumer: at(off.consumer).cast(),
            flags: at(off.flags).cast(),
            descs: at(off.desc).cast(),
            mask: size - 1,
            size,
            prod: 0,
            cons: 0,
            map,
            map_len,
        };
        // SAFETY: pointers into the live mapping.
        unsafe {
            r.prod = (*r.producer).load(Ordering::Acquire);
            r.cons = (*r.consumer).load(Ordering::Acquire);
        }
        let _ = producer_side;
        Ok(r)
    }

    /// Producer: free slots (refreshing the kernel's consumer index when short of `want`).
    #[inline]
    fn free(&mut self, want: u32) -> u32 {
        let free = self.size - self.prod.wrapping_sub(self.cons);
        if free >= want {
            return free;
        }
        // SAFETY: pointer into the live mapping.
        self.cons = unsafe { (*self.consumer).load(Ordering::Acquire) };
        self.size - self.prod.wrapping_sub(self.cons)
    }

    /// Producer: write slot `prod + i` (i < free).
    #[inline]
    fn put(&mut self, i: u32, v: T) {
        // SAFETY: index masked into the ring.
        unsafe { self.descs.add((self.prod.wrapping_add(i) & self.mask) as usize).write(v) };
    }

    /// Producer: publish `n` written slots.
    #[inline]
    fn submit(&mut self, n: u32) {
        self.prod = self.prod.wrapping_add(n);
        // SAFETY: pointer into the live mapping.
        unsafe { (*self.producer).store(self.prod, Ordering::Release) };
    }

    /// Consumer: entries ready (refreshing the kernel's producer index when empty).
    #[inline]
    fn ready(&mut self) -> u32 {
        let n = self.prod.wrapping_sub(self.cons);
        if n > 0 {
            return n;
        }
        // SAFETY: pointer into the live mapping.
        self.prod = unsafe { (*self.producer).load(Ordering::Acquire) };
        self.prod.wrapping_sub(self.cons)
    }

    /// Consumer: entry `cons + i` (i < ready).
    #[inline]
    fn get(&self, i: u32) -> T {
        // SAFETY: index masked into the ring.
        unsafe { self.descs.add((self.cons.wrapping_add(i) & self.mask) as usize).read() }
    }

    /// Consumer: hand `n` entries back.
    #[inline]
    fn release(&mut self, n: u32) {
        self.cons = self.cons.wrapping_add(n);
        // SAFETY: pointer into the live mapping.
        unsafe { (*self.consumer).store(self.cons, Ordering::Release) };
    }

    #[inline]
    fn needs_wakeup(&self) -> bool {
        // SAFETY: pointer into the live mapping.
        unsafe { (*self.flags).load(Ordering::Relaxed) & libc::XDP_RING_NEED_WAKEUP != 0 }
    }
}

impl<T> Drop for Ring<T> {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `map`.
        unsafe { libc::munmap(self.map, self.map_len) };
    }
}

/// Ring sizes of a socket (powers of two).
#[derive(Clone, Copy, Debug)]
pub struct SocketConfig {
    pub fill: u32,
    pub comp: u32,
    pub rx: u32,
    pub tx: u32,
}

impl Default for SocketConfig {
    fn default() -> Self {
        SocketConfig { fill: 2048, comp: 2048, rx: 2048, tx: 2048 }
    }
}

impl SocketConfig {
    /// Frames a socket needs: what the kernel holds for receiving (the fill ring's worth,
    /// moving to the RX ring as frames arrive) plus what is being sent.
    pub fn frames(&self) -> u32 {
        self.fill.max(self.rx) + self.tx.max(self.comp)
    }
}

/// An AF_XDP socket bound to one (interface, queue).
pub struct Socket {
    fd: OwnedFd,
    pub ifindex: u32,
    pub queue: u32,
    zero_copy: bool,
    fill: Ring<u64>,
    comp: Ring<u64>,
    rx: Ring<libc::xdp_desc>,
    tx: Ring<libc::xdp_desc>,
    /// `sendto` wake-ups made since [`Socket::take_kicks`] last read them.
    kicks: std::cell::Cell<u64>,
}

fn setsockopt<T>(fd: RawFd, name: libc::c_int, v: &T) -> io::Result<()> {
    // SAFETY: `v` points to a value of the size given.
    let rc = unsafe {
        libc::setsockopt(fd, libc::SOL_XDP, name, (v as *const T).cast(), std::mem::size_of::<T>() as libc::socklen_t)
    };
    if rc < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

fn with_context(e: io::Error, what: &str) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

impl Socket {
    /// Opens a socket on (ifindex, queue). `shared`: the socket that registered the UMEM
    /// (`None`: this one registers `umem`). Zero-copy is tried first, then copy mode.
    pub fn open(umem: &Umem, ifindex: u32, queue: u32, cfg: SocketConfig, shared: Option<&Socket>) -> io::Result<Self> {
        let mut s = Self::prepare(umem, cfg, shared.is_none())?;
        s.bind(ifindex, queue, shared, BIND_WAIT)?;
        Ok(s)
    }

    /// A socket with its rings, not bound to any queue yet: everything that does not conflict
    /// with another process holding the queue (hot restart prepares its sockets so while the
    /// old daemon still serves, and binds once it has let go). `registers`: this socket
    /// registers `umem` (the first of a worker's); the others share it at [`Socket::bind`].
    pub fn prepare(umem: &Umem, cfg: SocketConfig, registers: bool) -> io::Result<Self> {
        // SAFETY: plain socket call.
        let raw = unsafe { libc::socket(libc::AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            return Err(with_context(io::Error::last_os_error(), "socket(AF_XDP)"));
        }
        // SAFETY: fresh descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let raw = fd.as_raw_fd();
        if registers {
            let reg = libc::xdp_umem_reg {
                addr: umem.base.as_ptr() as u64,
                len: umem.len as u64,
                chunk_size: umem.frame as u32,
                headroom: 0,
                flags: 0,
                tx_metadata_len: 0,
            };
            setsockopt(raw, libc::XDP_UMEM_REG, &reg).map_err(|e| with_context(e, "XDP_UMEM_REG"))?;
        }
        setsockopt(raw, libc::XDP_UMEM_FILL_RING, &cfg.fill).map_err(|e| with_context(e, "fill ring"))?;
        setsockopt(raw, libc::XDP_UMEM_COMPLETION_RING, &cfg.comp).map_err(|e| with_context(e, "completion ring"))?;
        setsockopt(raw, libc::XDP_RX_RING, &cfg.rx).map_err(|e| with_context(e, "RX ring"))?;
        setsockopt(raw, libc::XDP_TX_RING, &cfg.tx).map_err(|e| with_context(e, "TX ring"))?;
        // SAFETY: xdp_mmap_offsets is plain data, filled by the kernel.
        let mut off: libc::xdp_mmap_offsets = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::xdp_mmap_offsets>() as libc::socklen_t;
        // SAFETY: valid out-pointer and length.
        let rc = unsafe {
            libc::getsockopt(
                raw,
                libc::SOL_XDP,
                libc::XDP_MMAP_OFFSETS,
                (&mut off as *mut libc::xdp_mmap_offsets).cast(),
                &mut len,
            )
        };
        if rc < 0 {
            return Err(with_context(io::Error::last_os_error(), "XDP_MMAP_OFFSETS"));
        }
        let fill = Ring::map(raw, &off.fr, cfg.fill, libc::XDP_UMEM_PGOFF_FILL_RING, true)?;
        let comp = Ring::map(raw, &off.cr, cfg.comp, libc::XDP_UMEM_PGOFF_COMPLETION_RING, false)?;
        let rx = Ring::map(raw, &off.rx, cfg.rx, libc::XDP_PGOFF_RX_RING as u64, false)?;
        let tx = Ring::map(raw, &off.tx, cfg.tx, libc::XDP_PGOFF_TX_RING as u64, true)?;
        Ok(Socket { fd, ifindex: 0, queue: 0, zero_copy: false, fill, comp, rx, tx, kicks: std::cell::Cell::new(0) })
    }

    /// Binds a prepared socket to (ifindex, queue): sharing `shared`'s UMEM, or, for the
    /// socket that registered it, zero-copy first and copy mode if the driver has none (a
    /// failed bind leaves the socket as prepared, so the second try uses the same rings).
    /// A queue still held by a socket being released (a process that just exited, the old
    /// daemon of a hot restart) answers EBUSY: retried for up to `wait`.
    pub fn bind(&mut self, ifindex: u32, queue: u32, shared: Option<&Socket>, wait: Duration) -> io::Result<()> {
        let t0 = Instant::now();
        let r = match shared {
            Some(s) => self.bind_flags(ifindex, queue, libc::XDP_SHARED_UMEM, s.fd.as_raw_fd() as u32, t0, wait),
            None => {
                match self.bind_flags(ifindex, queue, libc::XDP_ZEROCOPY | libc::XDP_USE_NEED_WAKEUP, 0, t0, wait) {
                    Err(e) if e.raw_os_error() != Some(libc::EBUSY) => {
                        self.bind_flags(ifindex, queue, libc::XDP_COPY | libc::XDP_USE_NEED_WAKEUP, 0, t0, wait)
                    }
                    r => r.map(|()| self.zero_copy = true),
                }
            }
        };
        r.map_err(|e| with_context(e, &format!("bind AF_XDP to ifindex {ifindex} queue {queue}")))?;
        if let Some(s) = shared {
            self.zero_copy = s.zero_copy;
        }
        self.ifindex = ifindex;
        self.queue = queue;
        Ok(())
    }

    fn bind_flags(
        &self,
        ifindex: u32,
        queue: u32,
        flags: u16,
        shared_fd: u32,
        t0: Instant,
        wait: Duration,
    ) -> io::Result<()> {
        let sa = libc::sockaddr_xdp {
            sxdp_family: libc::AF_XDP as u16,
            sxdp_flags: flags,
            sxdp_ifindex: ifindex,
            sxdp_queue_id: queue,
            sxdp_shared_umem_fd: shared_fd,
        };
        loop {
            // SAFETY: valid sockaddr of the given size.
            let rc = unsafe {
                libc::bind(
                    self.fd.as_raw_fd(),
                    (&sa as *const libc::sockaddr_xdp).cast(),
                    std::mem::size_of::<libc::sockaddr_xdp>() as libc::socklen_t,
                )
            };
            if rc == 0 {
                return Ok(());
            }
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EBUSY) && t0.elapsed() < wait {
                std::thread::sleep(BIND_RETRY);
                continue;
            }
            return Err(e);
        }
    }

    /// Whether the socket is bound in zero-copy mode (else copy mode).
    pub fn zero_copy(&self) -> bool {
        self.zero_copy
    }

    /// Puts frames (chunk addresses) on the fill ring, as many as fit; returns how many.
    #[inline]
    pub fn fill(&mut self, frames: &mut Vec<u64>) -> u32 {
        let n = self.fill.free(frames.len() as u32).min(frames.len() as u32);
        for i in 0..n {
            let a = frames.pop().unwrap_or(0);
            self.fill.put(i, a);
        }
        if n > 0 {
            self.fill.submit(n);
        }
        n
    }

    /// Free slots on the fill ring.
    pub fn fill_free(&mut self) -> u32 {
        self.fill.free(u32::MAX)
    }

    /// Received descriptors ready, at most `max`.
    #[inline]
    pub fn rx_ready(&mut self, max: u32) -> u32 {
        self.rx.ready().min(max)
    }

    /// Received descriptor `i` (< `rx_ready`): (address, length).
    #[inline]
    pub fn rx_desc(&self, i: u32) -> (u64, u32) {
        let d = self.rx.get(i);
        (d.addr, d.len)
    }

    /// Hands `n` received descriptors back to the kernel (their frames now belong to us).
    #[inline]
    pub fn rx_release(&mut self, n: u32) {
        self.rx.release(n)
    }

    /// Takes completed transmissions: their frames are pushed to `free`.
    #[inline]
    pub fn complete(&mut self, umem: &Umem, free: &mut Vec<u64>) -> u32 {
        let n = self.comp.ready();
        for i in 0..n {
            free.push(umem.chunk_of(self.comp.get(i)));
        }
        if n > 0 {
            self.comp.release(n);
        }
        n
    }

    /// Free TX slots.
    #[inline]
    pub fn tx_free(&mut self) -> u32 {
        self.tx.free(u32::MAX)
    }

    /// Queues a frame for transmission (published by [`Socket::tx_submit`]); false when the
    /// ring is full.
    #[inline]
    pub fn tx_push(&mut self, pending: &mut u32, addr: u64, len: u32) -> bool {
        if self.tx.free(*pending + 1) <= *pending {
            return false;
        }
        self.tx.put(*pending, libc::xdp_desc { addr, len, options: 0 });
        *pending += 1;
        true
    }

    /// Publishes `pending` queued frames and wakes the kernel if it asks (one syscall at
    /// most). Returns the send error other than "try again".
    #[inline]
    pub fn tx_submit(&mut self, pending: u32) -> io::Result<()> {
        if pending > 0 {
            self.tx.submit(pending);
        }
        if pending > 0 || self.tx.needs_wakeup() {
            return self.kick();
        }
        Ok(())
    }

    /// Frames queued on the TX ring and not yet taken by the kernel.
    pub fn tx_outstanding(&mut self) -> u32 {
        self.tx.size - self.tx.free(self.tx.size)
    }

    /// `sendto` with no data: the kernel sends what the TX ring holds.
    pub fn kick(&self) -> io::Result<()> {
        if !self.tx.needs_wakeup() {
            return Ok(());
        }
        self.kicks.set(self.kicks.get() + 1);
        // SAFETY: zero-length send on our socket.
        let rc =
            unsafe { libc::sendto(self.fd.as_raw_fd(), std::ptr::null(), 0, libc::MSG_DONTWAIT, std::ptr::null(), 0) };
        if rc >= 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EAGAIN) | Some(libc::EBUSY) | Some(libc::ENOBUFS) | Some(libc::EINTR) => Ok(()),
            _ => Err(e),
        }
    }

    /// The transmit wake-ups made since the last call (the worker's `tx_kicks` counter).
    pub fn take_kicks(&self) -> u64 {
        self.kicks.replace(0)
    }

    /// Whether the kernel wants a wake-up to take frames from the fill ring (a `poll` or
    /// `recvfrom` does it).
    pub fn fill_needs_wakeup(&self) -> bool {
        self.fill.needs_wakeup()
    }

    /// The kernel's preferred busy polling on this socket (`SO_PREFER_BUSY_POLL`, with
    /// `SO_BUSY_POLL` µs and `SO_BUSY_POLL_BUDGET` frames): a `recvfrom`/`sendto` on it runs
    /// the device's NAPI poll in the caller's context, and the softirq defers to it.
    pub fn prefer_busy_poll(&self, usecs: u32, budget: u32) -> io::Result<()> {
        let fd = self.fd.as_raw_fd();
        for (name, v) in
            [(libc::SO_PREFER_BUSY_POLL, 1u32), (libc::SO_BUSY_POLL, usecs), (libc::SO_BUSY_POLL_BUDGET, budget)]
        {
            let v = v as libc::c_int;
            // SAFETY: a c_int option value of the right size.
            let rc = unsafe {
                libc::setsockopt(
                    fd,
                    libc::SOL_SOCKET,
                    name,
                    (&v as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                )
            };
            if rc < 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(())
    }

    /// `recvfrom` with no buffer: lets the kernel refill from the fill ring (busy polling), and
    /// with preferred busy polling runs the device's NAPI here.
    pub fn wake_rx(&self) {
        // SAFETY: zero-length receive on our socket.
        unsafe {
            libc::recvfrom(
                self.fd.as_raw_fd(),
                std::ptr::null_mut(),
                0,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            )
        };
    }

    /// The kernel's counters for this socket.
    pub fn statistics(&self) -> io::Result<libc::xdp_statistics> {
        // SAFETY: plain data filled by the kernel.
        let mut st: libc::xdp_statistics = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::xdp_statistics>() as libc::socklen_t;
        // SAFETY: valid out-pointer and length.
        let rc = unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_XDP,
                libc::XDP_STATISTICS,
                (&mut st as *mut libc::xdp_statistics).cast(),
                &mut len,
            )
        };
        if rc < 0 { Err(io::Error::last_os_error()) } else { Ok(st) }
    }
}

impl AsRawFd for Socket {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}
