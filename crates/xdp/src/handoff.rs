//! Hand-off between AF_XDP workers: a bounded single-producer single-consumer ring of
//! fixed-size frame slots, and a doorbell that wakes a sleeping worker.
//!
//! With several workers, worker i owns the queues i (mod N) of every interface, and the
//! NIC's RSS picks the queue, but each connection lives in the table of the worker its
//! **client address** hashes to (`node::io::fanout::owner_of`, the rule of the AF_PACKET
//! fanout): the two directions of a NAT connection arrive on different devices and queues.
//! A worker that receives a frame it does not own copies it into a slot of the ring to the
//! owner (one ring per ordered pair of workers) and gives its UMEM frame back at once; the
//! owner drains its rings every turn and runs those frames as received on their ingress
//! interface. No lock, no allocation; the producer publishes once per batch and rings the
//! owner's doorbell (one `write` to an eventfd) only when the owner sleeps in `poll()`. A
//! full ring drops the frame (`handoff_full`).

use std::cell::UnsafeCell;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering, fence};

/// Slots per ring: a turn's worth of frames of one peer (8 batches of 64 per socket, a few
/// sockets) with room to spare.
pub const SLOTS: u32 = 2048;

#[repr(align(64))]
struct Padded(AtomicU32);

/// Per slot: ingress interface and length.
#[derive(Clone, Copy, Default)]
struct Meta {
    in_if: u32,
    len: u32,
}

struct Shared {
    /// Next slot the consumer reads (written by the consumer only).
    head: Padded,
    /// Next slot the producer writes (written by the producer only).
    tail: Padded,
    meta: Box<[UnsafeCell<Meta>]>,
    data: Box<[UnsafeCell<u8>]>,
    slot_bytes: usize,
    mask: u32,
}

// SAFETY: a slot between `head` and `tail` belongs to the consumer, every other slot to the
// producer; each index is published with Release and read with Acquire, so the two sides
// never touch the same slot at the same time.
unsafe impl Sync for Shared {}
unsafe impl Send for Shared {}

impl Shared {
    fn slot(&self, i: u32) -> (*mut Meta, *mut u8) {
        let k = (i & self.mask) as usize;
        // SAFETY: `k * slot_bytes` is inside `data`; the pointer comes from the whole slice,
        // and UnsafeCell makes writing through it allowed.
        (self.meta[k].get(), unsafe { UnsafeCell::raw_get(self.data.as_ptr()).add(k * self.slot_bytes) })
    }
}

/// A new ring of [`SLOTS`] slots of `slot_bytes` each: its two ends.
pub fn ring(slot_bytes: usize) -> (Producer, Consumer) {
    let n = SLOTS as usize;
    let sh = Arc::new(Shared {
        head: Padded(AtomicU32::new(0)),
        tail: Padded(AtomicU32::new(0)),
        meta: (0..n).map(|_| UnsafeCell::new(Meta::default())).collect(),
        data: (0..n * slot_bytes).map(|_| UnsafeCell::new(0)).collect(),
        slot_bytes,
        mask: SLOTS - 1,
    });
    (Producer { sh: sh.clone(), tail: 0, head: 0, published: 0 }, Consumer { sh, head: 0, tail: 0 })
}

/// The sending end (one worker).
pub struct Producer {
    sh: Arc<Shared>,
    /// Written up to here (not all published).
    tail: u32,
    /// Last seen consumer index.
    head: u32,
    /// Published up to here.
    published: u32,
}

impl Producer {
    /// Copies a frame into the next slot (published by [`Producer::publish`]). False when
    /// the ring is full or the frame larger than a slot.
    #[inline]
    pub fn push(&mut self, in_if: u32, frame: &[u8]) -> bool {
        if frame.len() > self.sh.slot_bytes {
            return false;
        }
        if self.tail.wrapping_sub(self.head) >= SLOTS {
            self.head = self.sh.head.0.load(Ordering::Acquire);
            if self.tail.wrapping_sub(self.head) >= SLOTS {
                return false;
            }
        }
        let (m, d) = self.sh.slot(self.tail);
        // SAFETY: the slot is not between head and tail: it is the producer's (see `Shared`).
        unsafe {
            *m = Meta { in_if, len: frame.len() as u32 };
            std::ptr::copy_nonoverlapping(frame.as_ptr(), d, frame.len());
        }
        self.tail = self.tail.wrapping_add(1);
        true
    }

    /// Makes the frames pushed so far visible to the consumer; returns how many.
    #[inline]
    pub fn publish(&mut self) -> u32 {
        let n = self.tail.wrapping_sub(self.published);
        if n > 0 {
            self.sh.tail.0.store(self.tail, Ordering::Release);
            self.published = self.tail;
        }
        n
    }
}

/// The receiving end (the owner).
pub struct Consumer {
    sh: Arc<Shared>,
    head: u32,
    /// Last seen producer index.
    tail: u32,
}

impl Consumer {
    /// Frames ready, at most `max`.
    #[inline]
    pub fn ready(&mut self, max: u32) -> u32 {
        if self.tail == self.head {
            self.tail = self.sh.tail.0.load(Ordering::Acquire);
        }
        self.tail.wrapping_sub(self.head).min(max)
    }

    /// Frame `i` (< `ready`): ingress interface and bytes.
    #[inline]
    pub fn get(&self, i: u32) -> (u32, &[u8]) {
        let (m, d) = self.sh.slot(self.head.wrapping_add(i));
        // SAFETY: published by the producer (Acquire in `ready`), the consumer's until released.
        unsafe {
            let m = *m;
            (m.in_if, std::slice::from_raw_parts(d, (m.len as usize).min(self.sh.slot_bytes)))
        }
    }

    /// Gives `n` slots back to the producer.
    #[inline]
    pub fn release(&mut self, n: u32) {
        self.head = self.head.wrapping_add(n);
        self.sh.head.0.store(self.head, Ordering::Release);
    }
}

/// Wakes a worker sleeping in `poll()` when another hands it frames.
pub struct Doorbell {
    sleeping: AtomicBool,
    efd: OwnedFd,
}

impl Doorbell {
    pub fn new() -> io::Result<Self> {
        // SAFETY: plain syscall, result checked.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a fresh descriptor we own.
        Ok(Doorbell { sleeping: AtomicBool::new(false), efd: unsafe { OwnedFd::from_raw_fd(fd) } })
    }

    /// Producer, after publishing: wake the owner if it sleeps (at most one syscall per batch).
    #[inline]
    pub fn ring(&self) {
        fence(Ordering::SeqCst);
        if self.sleeping.load(Ordering::Relaxed) {
            let one: u64 = 1;
            // SAFETY: 8-byte write to our eventfd.
            unsafe { libc::write(self.efd.as_raw_fd(), (&one as *const u64).cast(), 8) };
        }
    }

    /// Owner, before `poll()`: from now on producers ring. The caller then checks its rings
    /// once more and sleeps only if they are empty.
    #[inline]
    pub fn going_to_sleep(&self) {
        self.sleeping.store(true, Ordering::Relaxed);
        fence(Ordering::SeqCst);
    }

    /// Owner, after `poll()`: producers stop ringing; a pending ring is consumed.
    #[inline]
    pub fn awake(&self, rang: bool) {
        self.sleeping.store(false, Ordering::Relaxed);
        if rang {
            let mut v: u64 = 0;
            // SAFETY: 8-byte read from our eventfd (non-blocking).
            unsafe { libc::read(self.efd.as_raw_fd(), (&mut v as *mut u64).cast(), 8) };
        }
    }
}

impl AsRawFd for Doorbell {
    fn as_raw_fd(&self) -> RawFd {
        self.efd.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_cross_in_order_and_a_full_ring_refuses() {
        let (mut p, mut c) = ring(64);
        assert_eq!(c.ready(64), 0);
        for i in 0..SLOTS {
            assert!(p.push(i, &i.to_be_bytes()));
        }
        assert!(!p.push(0, b"x"), "full");
        assert_eq!(c.ready(64), 0, "nothing published yet");
        assert_eq!(p.publish(), SLOTS);
        let mut seen = 0;
        loop {
            let n = c.ready(100);
            if n == 0 {
                break;
            }
            for i in 0..n {
                let (in_if, d) = c.get(i);
                assert_eq!(in_if, seen);
                assert_eq!(d, seen.to_be_bytes());
                seen += 1;
            }
            c.release(n);
        }
        assert_eq!(seen, SLOTS);
        assert!(p.push(7, b"again"));
        assert!(!p.push(7, &[0u8; 65]), "larger than a slot");
        p.publish();
        assert_eq!(c.get(0), (7, &b"again"[..]));
    }

    #[test]
    fn two_threads() {
        let (mut p, mut c) = ring(16);
        let total = 200_000u32;
        let t = std::thread::spawn(move || {
            let mut i = 0;
            while i < total {
                if p.push(i, &i.to_le_bytes()) {
                    i += 1;
                    if i % 32 == 0 {
                        p.publish();
                    }
                } else {
                    p.publish();
                    std::hint::spin_loop();
                }
            }
            p.publish();
        });
        let mut next = 0;
        while next < total {
            let n = c.ready(64);
            for i in 0..n {
                let (a, d) = c.get(i);
                assert_eq!(a, next);
                assert_eq!(d, next.to_le_bytes());
                next += 1;
            }
            c.release(n);
        }
        t.join().unwrap();
    }

    #[test]
    fn doorbell_wakes_poll() {
        let b = Doorbell::new().unwrap();
        b.ring(); // not sleeping: no write
        let mut pfd = libc::pollfd { fd: b.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        assert_eq!(unsafe { libc::poll(&mut pfd, 1, 0) }, 0);
        b.going_to_sleep();
        b.ring();
        assert_eq!(unsafe { libc::poll(&mut pfd, 1, 0) }, 1);
        b.awake(true);
        assert_eq!(unsafe { libc::poll(&mut pfd, 1, 0) }, 0);
    }
}
