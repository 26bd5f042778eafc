//! IPv6 fixed header view (RFC 8200). Extension headers are not walked:
//! `next_header()` is whatever follows the fixed header. Jumbograms
//! (payload length 0 with a hop-by-hop jumbo option) are not supported:
//! their payload reads as empty.

use crate::{Error, Result, get_array, get_u16, get_u32, set_u16, set_u32};
use std::net::Ipv6Addr;

mod field {
    pub const VER_TC_FLOW: usize = 0;
    pub const LENGTH: usize = 4;
    pub const NXT_HDR: usize = 6;
    pub const HOP_LIMIT: usize = 7;
    pub const SRC: usize = 8;
    pub const DST: usize = 24;
}

/// Length of the fixed header.
pub const HEADER_LEN: usize = 40;

/// A view of an IPv6 packet.
#[derive(Debug, Clone)]
pub struct Ipv6Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv6Packet<T> {
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        Ipv6Packet { buffer }
    }

    /// Checks buffer ≥ 40 and ≥ 40 + payload length (`Truncated`) and
    /// version 6 (`Malformed`). Bytes after the payload (padding) are allowed.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self> {
        let p = Self::new_checked_header(buffer)?;
        if HEADER_LEN + usize::from(p.payload_len()) > p.buffer.as_ref().len() {
            return Err(Error::Truncated);
        }
        Ok(p)
    }

    /// Checks only the fixed header: for the packet quoted in an ICMPv6
    /// error, which may be cut short. [`Self::payload`] returns the bytes present.
    #[inline]
    pub fn new_checked_header(buffer: T) -> Result<Self> {
        let p = Self::new_unchecked(buffer);
        if p.buffer.as_ref().len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        if p.version() != 6 {
            return Err(Error::Malformed);
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
    fn word0(&self) -> u32 {
        get_u32(self.buffer.as_ref(), field::VER_TC_FLOW)
    }

    #[inline]
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[0] >> 4
    }

    /// Traffic class (DSCP << 2 | ECN).
    #[inline]
    pub fn traffic_class(&self) -> u8 {
        (self.word0() >> 20) as u8
    }

    #[inline]
    pub fn flow_label(&self) -> u32 {
        self.word0() & 0x000f_ffff
    }

    #[inline]
    pub fn payload_len(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::LENGTH)
    }

    #[inline]
    pub fn next_header(&self) -> u8 {
        self.buffer.as_ref()[field::NXT_HDR]
    }

    #[inline]
    pub fn hop_limit(&self) -> u8 {
        self.buffer.as_ref()[field::HOP_LIMIT]
    }

    #[inline]
    pub fn src_addr(&self) -> Ipv6Addr {
        Ipv6Addr::from(get_array::<16>(self.buffer.as_ref(), field::SRC))
    }

    #[inline]
    pub fn dst_addr(&self) -> Ipv6Addr {
        Ipv6Addr::from(get_array::<16>(self.buffer.as_ref(), field::DST))
    }

    /// The fixed header.
    #[inline]
    pub fn header(&self) -> &[u8] {
        &self.buffer.as_ref()[..HEADER_LEN]
    }

    /// Header + payload (no padding), clipped to the buffer.
    #[inline]
    pub fn packet(&self) -> &[u8] {
        &self.buffer.as_ref()[..self.end()]
    }

    /// 40..40 + payload_len (clipped to the buffer for header-only views).
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..self.end()]
    }

    #[inline]
    fn end(&self) -> usize {
        (HEADER_LEN + usize::from(self.payload_len())).min(self.buffer.as_ref().len())
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv6Packet<T> {
    #[inline]
    fn set_word0(&mut self, w: u32) {
        set_u32(self.buffer.as_mut(), field::VER_TC_FLOW, w);
    }

    #[inline]
    pub fn set_version(&mut self, v: u8) {
        let w = (self.word0() & 0x0fff_ffff) | (u32::from(v & 0x0f) << 28);
        self.set_word0(w);
    }

    #[inline]
    pub fn set_traffic_class(&mut self, tc: u8) {
        let w = (self.word0() & 0xf00f_ffff) | (u32::from(tc) << 20);
        self.set_word0(w);
    }

    /// Sets the 20-bit flow label (higher bits ignored).
    #[inline]
    pub fn set_flow_label(&mut self, fl: u32) {
        let w = (self.word0() & 0xfff0_0000) | (fl & 0x000f_ffff);
        self.set_word0(w);
    }

    #[inline]
    pub fn set_payload_len(&mut self, len: u16) {
        set_u16(self.buffer.as_mut(), field::LENGTH, len);
    }

    #[inline]
    pub fn set_next_header(&mut self, nh: u8) {
        self.buffer.as_mut()[field::NXT_HDR] = nh;
    }

    #[inline]
    pub fn set_hop_limit(&mut self, h: u8) {
        self.buffer.as_mut()[field::HOP_LIMIT] = h;
    }

    /// Decrements the hop limit (no header checksum in IPv6); 0 stays 0.
    #[inline]
    pub fn dec_hop_limit(&mut self) {
        let h = self.hop_limit();
        self.set_hop_limit(h.saturating_sub(1));
    }

    #[inline]
    pub fn set_src_addr(&mut self, a: Ipv6Addr) {
        self.buffer.as_mut()[field::SRC..field::SRC + 16].copy_from_slice(&a.octets());
    }

    #[inline]
    pub fn set_dst_addr(&mut self, a: Ipv6Addr) {
        self.buffer.as_mut()[field::DST..field::DST + 16].copy_from_slice(&a.octets());
    }

    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = self.end();
        &mut self.buffer.as_mut()[HEADER_LEN..end]
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for Ipv6Packet<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::XorShift;

    #[test]
    fn build_and_read() {
        let mut b = [0u8; 48];
        let mut p = Ipv6Packet::new_unchecked(&mut b[..]);
        p.set_version(6);
        p.set_traffic_class(0xb9);
        p.set_flow_label(0x1_2345);
        p.set_flow_label(0xff_2345); // extra bits ignored
        p.set_payload_len(6);
        p.set_next_header(17);
        p.set_hop_limit(1);
        p.dec_hop_limit();
        p.dec_hop_limit();
        let s: Ipv6Addr = "2001:db8::1".parse().unwrap();
        let d: Ipv6Addr = "2001:db8::2".parse().unwrap();
        p.set_src_addr(s);
        p.set_dst_addr(d);
        p.payload_mut().copy_from_slice(&[1, 2, 3, 4, 5, 6]);
        assert_eq!(&b[..4], &[0x6b, 0x9f, 0x23, 0x45]);
        let p = Ipv6Packet::new_checked(&b[..]).unwrap();
        assert_eq!((p.version(), p.traffic_class(), p.flow_label()), (6, 0xb9, 0xf_2345));
        assert_eq!((p.payload_len(), p.next_header(), p.hop_limit()), (6, 17, 0));
        assert_eq!((p.src_addr(), p.dst_addr()), (s, d));
        assert_eq!(p.payload(), &[1, 2, 3, 4, 5, 6]);
        assert_eq!(p.packet().len(), 46);
        assert_eq!(p.header().len(), 40);
    }

    #[test]
    fn errors_and_prefixes() {
        let mut b = [0u8; 50];
        b[0] = 0x60;
        b[5] = 10;
        assert!(Ipv6Packet::new_checked(&b[..]).is_ok());
        for len in 0..50 {
            let e = Ipv6Packet::new_checked(&b[..len]).unwrap_err();
            assert_eq!(e, Error::Truncated, "len {len}");
            if let Ok(p) = Ipv6Packet::new_checked_header(&b[..len]) {
                assert!(len >= 40);
                assert_eq!(p.payload().len(), len - 40);
            }
        }
        b[0] = 0x40;
        assert_eq!(Ipv6Packet::new_checked(&b[..]).unwrap_err(), Error::Malformed);
        let mut rng = XorShift::new(6);
        for _ in 0..10_000 {
            let mut g = rng.garbage(100);
            if let Some(f) = g.first_mut() {
                *f = 0x60 | (*f & 0x0f);
            }
            if let Ok(p) = Ipv6Packet::new_checked(&g[..]) {
                let _ = (p.traffic_class(), p.flow_label(), p.src_addr(), p.dst_addr(), p.payload());
            }
            if let Ok(mut p) = Ipv6Packet::new_checked_header(&mut g[..]) {
                let _ = (p.payload(), p.packet());
                let _ = p.payload_mut();
            }
        }
    }
}
