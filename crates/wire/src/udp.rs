//! UDP header view (RFC 768).
//!
//! Zero checksum: on IPv4 a stored 0 means "no checksum"; a computed 0 is
//! therefore sent as `ffff`, on the full and on the incremental path
//! (lvs-semantics.md §12, test-vectors.md §1 row 4 and §2 row 5). On IPv6 a
//! zero checksum is invalid (RFC 8200 §8.1) and fails verification.

use crate::checksum;
use crate::ip::protocol;
use crate::{Error, Result, get_u16, set_u16};
use std::net::IpAddr;

mod field {
    pub const SRC_PORT: usize = 0;
    pub const DST_PORT: usize = 2;
    pub const LENGTH: usize = 4;
    pub const CHECKSUM: usize = 6;
}

/// Header length.
pub const HEADER_LEN: usize = 8;
/// Offset of the checksum field.
pub const CHECKSUM_OFFSET: usize = field::CHECKSUM;

/// A view of a UDP datagram.
#[derive(Debug, Clone)]
pub struct UdpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> UdpPacket<T> {
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        UdpPacket { buffer }
    }

    /// Checks buffer ≥ 8 and ≥ the length field (`Truncated`) and length
    /// field ≥ 8 (`Malformed`).
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self> {
        let p = Self::new_unchecked(buffer);
        let blen = p.buffer.as_ref().len();
        if blen < HEADER_LEN {
            return Err(Error::Truncated);
        }
        let len = usize::from(p.len());
        if len < HEADER_LEN {
            return Err(Error::Malformed);
        }
        if len > blen {
            return Err(Error::Truncated);
        }
        Ok(p)
    }

    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    #[inline]
    pub fn as_bytes(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    #[inline]
    pub fn src_port(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::SRC_PORT)
    }

    #[inline]
    pub fn dst_port(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::DST_PORT)
    }

    /// The length field (header + payload).
    #[inline]
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::LENGTH)
    }

    #[inline]
    pub fn checksum(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// 8..len.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..usize::from(self.len())]
    }

    /// Header and payload (0..len).
    #[inline]
    pub fn datagram(&self) -> &[u8] {
        &self.buffer.as_ref()[..usize::from(self.len())]
    }

    /// Whether the checksum is correct; a zero checksum is accepted on IPv4
    /// ("none") and rejected on IPv6.
    #[inline]
    pub fn verify_checksum(&self, src: &IpAddr, dst: &IpAddr) -> bool {
        if self.checksum() == 0 {
            return src.is_ipv4();
        }
        checksum::transport(src, dst, protocol::UDP, self.datagram()) == 0
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> UdpPacket<T> {
    #[inline]
    pub fn set_src_port(&mut self, p: u16) {
        set_u16(self.buffer.as_mut(), field::SRC_PORT, p);
    }

    #[inline]
    pub fn set_dst_port(&mut self, p: u16) {
        set_u16(self.buffer.as_mut(), field::DST_PORT, p);
    }

    #[inline]
    pub fn set_len(&mut self, len: u16) {
        set_u16(self.buffer.as_mut(), field::LENGTH, len);
    }

    #[inline]
    pub fn set_checksum(&mut self, c: u16) {
        set_u16(self.buffer.as_mut(), field::CHECKSUM, c);
    }

    /// 8..len, mutable.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let len = usize::from(self.len());
        &mut self.buffer.as_mut()[HEADER_LEN..len]
    }

    /// Computes the checksum in full over the pseudo header and 0..len; a
    /// computed 0 is written as `ffff`.
    #[inline]
    pub fn fill_checksum(&mut self, src: &IpAddr, dst: &IpAddr) {
        self.set_checksum(0);
        let c = checksum::transport(src, dst, protocol::UDP, self.datagram());
        self.set_checksum(if c == 0 { 0xffff } else { c });
    }

    /// Replaces a non-zero checksum with `f(old)` (an RFC 1624 update),
    /// writing a result of 0 as `ffff`. Returns `false` and changes nothing
    /// when the stored checksum is 0 ("none" on IPv4): the kernel then
    /// computes a full checksum instead (lvs-semantics.md §12), which the
    /// caller does with [`Self::fill_checksum`] once the rewrite is done.
    #[inline]
    pub fn update_checksum(&mut self, f: impl FnOnce(u16) -> u16) -> bool {
        let old = self.checksum();
        if old == 0 {
            return false;
        }
        let c = f(old);
        self.set_checksum(if c == 0 { 0xffff } else { c });
        true
    }

    /// Sets the source port, updating a non-zero checksum incrementally.
    #[inline]
    pub fn set_src_port_update(&mut self, p: u16) {
        let old = self.src_port();
        self.update_checksum(|c| checksum::update16(c, old, p));
        self.set_src_port(p);
    }

    /// Sets the destination port, updating a non-zero checksum incrementally.
    #[inline]
    pub fn set_dst_port_update(&mut self, p: u16) {
        let old = self.dst_port();
        self.update_checksum(|c| checksum::update16(c, old, p));
        self.set_dst_port(p);
    }

    /// Updates a non-zero checksum for an address change in the pseudo header.
    #[inline]
    pub fn update_pseudo_addr(&mut self, old: &IpAddr, new: &IpAddr) {
        self.update_checksum(|c| checksum::update_addr(c, old, new));
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for UdpPacket<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{XorShift, hex};
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(a, b, c, d))
    }

    #[test]
    fn zero_result_sent_as_ffff_full() {
        // test-vectors.md §2 row 5.
        let (s, d) = (v4(10, 0, 0, 1), v4(10, 0, 0, 2));
        let mut b = hex("04d20035 000a0000 e6d0");
        let mut p = UdpPacket::new_checked(&mut b[..]).unwrap();
        assert_eq!((p.src_port(), p.dst_port(), p.len()), (1234, 53, 10));
        assert_eq!(p.payload(), &[0xe6, 0xd0]);
        p.fill_checksum(&s, &d);
        assert_eq!(p.checksum(), 0xffff);
        assert!(p.verify_checksum(&s, &d));
        assert_eq!(b, hex("04d20035 000affff e6d0"));
    }

    #[test]
    fn zero_result_sent_as_ffff_incremental() {
        let (s, d) = (v4(10, 0, 0, 1), v4(10, 0, 0, 2));
        // No change on a stored ffff: eqn 3 gives 0000 (§1 row 4) -> ffff.
        let mut b = hex("04d20035 000affff e6d0");
        let mut p = UdpPacket::new_checked(&mut b[..]).unwrap();
        p.set_dst_port_update(53);
        assert_eq!(p.checksum(), 0xffff);
        // A real change whose result is 0: NAT 10.0.0.9:5353 -> 10.0.0.2:53.
        let vip = v4(10, 0, 0, 9);
        let mut b = hex("04d214e9 000a0000 e6d0");
        let mut p = UdpPacket::new_checked(&mut b[..]).unwrap();
        p.fill_checksum(&s, &vip);
        assert_ne!(p.checksum(), 0xffff);
        p.update_pseudo_addr(&vip, &d);
        p.set_dst_port_update(53);
        assert_eq!(p.checksum(), 0xffff);
        assert!(p.verify_checksum(&s, &d));
    }

    #[test]
    fn zero_checksum_is_none_on_v4_only() {
        let mut b = hex("04d20035 000a0000 e6d0");
        let mut p = UdpPacket::new_checked(&mut b[..]).unwrap();
        assert!(p.verify_checksum(&v4(1, 1, 1, 1), &v4(2, 2, 2, 2)));
        let a6 = IpAddr::V6(Ipv6Addr::LOCALHOST);
        assert!(!p.verify_checksum(&a6, &a6));
        assert!(!p.update_checksum(|_| 0x1234), "zero checksum is not updated");
        p.set_dst_port_update(99);
        assert_eq!((p.checksum(), p.dst_port()), (0, 99));
        p.fill_checksum(&a6, &a6);
        assert!(p.verify_checksum(&a6, &a6));
    }

    #[test]
    fn length_field_bounds_payload() {
        // Buffer longer than the length field: payload stops at len.
        let b = hex("00010002 000a1234 abcd eeee");
        let p = UdpPacket::new_checked(&b[..]).unwrap();
        assert_eq!(p.payload(), &[0xab, 0xcd]);
        assert_eq!(p.datagram().len(), 10);
        let mut small = b.clone();
        small[5] = 7;
        assert_eq!(UdpPacket::new_checked(&small[..]).unwrap_err(), Error::Malformed);
        small[5] = 13;
        assert_eq!(UdpPacket::new_checked(&small[..]).unwrap_err(), Error::Truncated);
        for len in 0..10 {
            assert_eq!(UdpPacket::new_checked(&b[..len]).unwrap_err(), Error::Truncated);
        }
    }

    #[test]
    fn garbage_and_random_nat() {
        let mut rng = XorShift::new(17);
        for _ in 0..20_000 {
            let mut g = rng.garbage(40);
            if let Ok(mut p) = UdpPacket::new_checked(&mut g[..]) {
                let _ = (p.src_port(), p.dst_port(), p.len(), p.checksum(), p.payload());
                let a = v4(1, 2, 3, 4);
                p.fill_checksum(&a, &a);
                assert!(p.verify_checksum(&a, &a));
                let _ = p.payload_mut();
            }
        }
        for _ in 0..3000 {
            let n = 8 + rng.below(60);
            let mut g = rng.bytes(n);
            g[4..6].copy_from_slice(&(n as u16).to_be_bytes());
            let (c, v, r) = (
                IpAddr::V4(Ipv4Addr::from(rng.next_u32())),
                IpAddr::V4(Ipv4Addr::from(rng.next_u32())),
                IpAddr::V4(Ipv4Addr::from(rng.next_u32())),
            );
            let mut p = UdpPacket::new_checked(&mut g[..]).unwrap();
            p.fill_checksum(&c, &v);
            p.update_pseudo_addr(&v, &r);
            p.set_dst_port_update(rng.next_u16());
            assert!(p.verify_checksum(&c, &r));
            let inc = p.checksum();
            p.fill_checksum(&c, &r);
            assert_eq!(inc, p.checksum());
        }
    }
}
