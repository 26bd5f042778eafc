//! A frame in a mutable buffer with headroom and tailroom, so a transmitter can
//! prepend or insert an outer header (IPIP, GUE, GRE: lvs-semantics.md §16) in
//! place instead of copying the packet into a new buffer.
//!
//! Layout: `buf[..start]` is headroom, `buf[start..end]` the frame data,
//! `buf[end..]` tailroom. Every operation checks its bounds and returns
//! `Err(Error::Truncated)` instead of panicking; on error nothing changes.

use crate::{Error, Result};

/// A window `[start, end)` over a borrowed buffer.
#[derive(Debug)]
pub struct Frame<'a> {
    buf: &'a mut [u8],
    start: usize,
    end: usize,
}

impl<'a> Frame<'a> {
    /// The frame is `buf[start..start + len]`; `Err(Truncated)` if that does
    /// not fit in `buf`.
    #[inline]
    pub fn new(buf: &'a mut [u8], start: usize, len: usize) -> Result<Self> {
        match start.checked_add(len) {
            Some(end) if end <= buf.len() => Ok(Frame { buf, start, end }),
            _ => Err(Error::Truncated),
        }
    }

    /// The frame bytes.
    #[inline(always)]
    pub fn data(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    /// The frame bytes, mutable.
    #[inline(always)]
    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.buf[self.start..self.end]
    }

    /// Frame length in bytes.
    #[inline]
    pub fn len(&self) -> usize {
        self.end - self.start
    }

    /// Whether the frame holds no bytes.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }

    /// Free bytes in front of the frame.
    #[inline]
    pub fn headroom(&self) -> usize {
        self.start
    }

    /// Free bytes behind the frame.
    #[inline]
    pub fn tailroom(&self) -> usize {
        self.buf.len() - self.end
    }

    /// Offset of the frame in the underlying buffer (what an io backend needs
    /// to hand the frame to the ring without copying).
    #[inline]
    pub fn start(&self) -> usize {
        self.start
    }

    /// The whole underlying buffer, headroom and tailroom included.
    #[inline]
    pub fn buffer(&self) -> &[u8] {
        self.buf
    }

    /// Grows the frame at the front by `n` bytes taken from the headroom. The
    /// new bytes hold whatever the headroom held; the caller writes them.
    #[inline]
    pub fn push_front(&mut self, n: usize) -> Result<()> {
        if n > self.start {
            return Err(Error::Truncated);
        }
        self.start -= n;
        Ok(())
    }

    /// Drops `n` bytes from the front (they become headroom).
    #[inline]
    pub fn pull_front(&mut self, n: usize) -> Result<()> {
        if n > self.len() {
            return Err(Error::Truncated);
        }
        self.start += n;
        Ok(())
    }

    /// Opens an `n`-byte gap at `data[at..at + n]` by moving `data[..at]` back
    /// by `n` bytes into the headroom; `data[at + n..]` is the old `data[at..]`
    /// and did not move. Used to put an outer IP header between the Ethernet
    /// header (`at` = 14) and the packet. The gap holds stale bytes.
    #[inline]
    pub fn insert_gap(&mut self, at: usize, n: usize) -> Result<()> {
        if at > self.len() || n > self.start {
            return Err(Error::Truncated);
        }
        let new_start = self.start - n;
        self.buf.copy_within(self.start..self.start + at, new_start);
        self.start = new_start;
        Ok(())
    }

    /// Inverse of [`Frame::insert_gap`]: removes `data[at..at + n]` by moving
    /// `data[..at]` forward by `n` bytes (decapsulation).
    #[inline]
    pub fn remove_range(&mut self, at: usize, n: usize) -> Result<()> {
        match at.checked_add(n) {
            Some(e) if e <= self.len() => {}
            _ => return Err(Error::Truncated),
        }
        self.buf.copy_within(self.start..self.start + at, self.start + n);
        self.start += n;
        Ok(())
    }

    /// Sets the frame length: shrinks, or grows into the tailroom (the new
    /// bytes hold whatever the tailroom held).
    #[inline]
    pub fn set_len(&mut self, len: usize) -> Result<()> {
        match self.start.checked_add(len) {
            Some(end) if end <= self.buf.len() => {
                self.end = end;
                Ok(())
            }
            _ => Err(Error::Truncated),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn buf() -> Vec<u8> {
        (0u8..32).collect()
    }

    #[test]
    fn new_bounds() {
        let mut b = buf();
        assert!(Frame::new(&mut b, 0, 32).is_ok());
        assert!(Frame::new(&mut b, 32, 0).is_ok());
        assert_eq!(Frame::new(&mut b, 30, 3).unwrap_err(), Error::Truncated);
        assert_eq!(Frame::new(&mut b, usize::MAX, 2).unwrap_err(), Error::Truncated);
        let f = Frame::new(&mut b, 8, 16).unwrap();
        assert_eq!((f.len(), f.headroom(), f.tailroom(), f.start()), (16, 8, 8, 8));
        assert_eq!(f.data(), &(8u8..24).collect::<Vec<_>>()[..]);
        assert!(!f.is_empty());
        assert_eq!(f.buffer().len(), 32);
    }

    #[test]
    fn push_pull() {
        let mut b = buf();
        let mut f = Frame::new(&mut b, 4, 8).unwrap();
        assert_eq!(f.push_front(5), Err(Error::Truncated));
        assert_eq!(f.len(), 8, "unchanged after error");
        f.push_front(4).unwrap();
        assert_eq!(f.headroom(), 0);
        assert_eq!(f.data()[0], 0);
        assert_eq!(f.push_front(1), Err(Error::Truncated));
        assert_eq!(f.pull_front(13), Err(Error::Truncated));
        f.pull_front(12).unwrap();
        assert!(f.is_empty());
        assert_eq!(f.pull_front(1), Err(Error::Truncated));
        f.pull_front(0).unwrap();
    }

    #[test]
    fn no_headroom_is_err() {
        let mut b = buf();
        let mut f = Frame::new(&mut b, 0, 10).unwrap();
        assert_eq!(f.push_front(1), Err(Error::Truncated));
        assert_eq!(f.insert_gap(0, 1), Err(Error::Truncated));
        assert_eq!(f.insert_gap(5, 1), Err(Error::Truncated));
        f.insert_gap(5, 0).unwrap();
        assert_eq!(f.data(), &(0u8..10).collect::<Vec<_>>()[..]);
    }

    #[test]
    fn insert_gap_moves_prefix() {
        let mut b = buf();
        let mut f = Frame::new(&mut b, 20, 10).unwrap(); // data 20..30
        f.insert_gap(3, 5).unwrap();
        assert_eq!(f.len(), 15);
        assert_eq!(f.headroom(), 15);
        let d = f.data();
        assert_eq!(&d[..3], &[20, 21, 22]);
        assert_eq!(&d[8..], &[23, 24, 25, 26, 27, 28, 29]);
        f.data_mut()[3..8].copy_from_slice(&[0xaa; 5]);
        // Inverse restores the original.
        f.remove_range(3, 5).unwrap();
        assert_eq!(f.data(), &(20u8..30).collect::<Vec<_>>()[..]);
        assert_eq!(f.headroom(), 20);
    }

    #[test]
    fn insert_gap_edges() {
        let mut b = buf();
        let mut f = Frame::new(&mut b, 10, 10).unwrap();
        assert_eq!(f.insert_gap(11, 1), Err(Error::Truncated), "at beyond len");
        assert_eq!(f.insert_gap(0, 11), Err(Error::Truncated), "gap beyond headroom");
        // at == 0 is push_front; at == len appends before nothing (moves all).
        f.insert_gap(0, 2).unwrap();
        assert_eq!(&f.data()[2..], &(10u8..20).collect::<Vec<_>>()[..]);
        f.remove_range(0, 2).unwrap();
        f.insert_gap(10, 8).unwrap(); // whole data moves back: gap at the end
        assert_eq!(f.headroom(), 2);
        assert_eq!(&f.data()[..10], &(10u8..20).collect::<Vec<_>>()[..]);
        f.remove_range(10, 8).unwrap();
        assert_eq!(f.data(), &(10u8..20).collect::<Vec<_>>()[..]);
    }

    #[test]
    fn remove_range_edges() {
        let mut b = buf();
        let mut f = Frame::new(&mut b, 0, 10).unwrap();
        assert_eq!(f.remove_range(5, 6), Err(Error::Truncated));
        assert_eq!(f.remove_range(usize::MAX, 2), Err(Error::Truncated));
        assert_eq!(f.remove_range(11, 0), Err(Error::Truncated));
        f.remove_range(2, 3).unwrap();
        assert_eq!(f.data(), &[0, 1, 5, 6, 7, 8, 9]);
        assert_eq!(f.headroom(), 3);
        f.remove_range(7, 0).unwrap();
        f.remove_range(0, 7).unwrap();
        assert!(f.is_empty());
    }

    #[test]
    fn set_len_bounds() {
        let mut b = buf();
        let mut f = Frame::new(&mut b, 8, 8).unwrap();
        f.set_len(24).unwrap();
        assert_eq!(f.tailroom(), 0);
        assert_eq!(f.set_len(25), Err(Error::Truncated));
        assert_eq!(f.set_len(usize::MAX), Err(Error::Truncated));
        f.set_len(0).unwrap();
        assert!(f.is_empty());
        assert_eq!(f.tailroom(), 24);
    }
}
