//! TCP header view (RFC 9293). The view's buffer is the whole segment (the
//! IP payload): checksums are computed over all of it.

use crate::checksum;
use crate::ip::protocol;
use crate::{Error, Result, get_u16, get_u32, set_u16, set_u32};
use std::net::IpAddr;

mod field {
    pub const SRC_PORT: usize = 0;
    pub const DST_PORT: usize = 2;
    pub const SEQ: usize = 4;
    pub const ACK: usize = 8;
    pub const DATA_OFF: usize = 12;
    pub const FLAGS: usize = 13;
    pub const WINDOW: usize = 14;
    pub const CHECKSUM: usize = 16;
    pub const URGENT: usize = 18;
}

/// Length of a header without options.
pub const HEADER_LEN: usize = 20;
/// Offset of the checksum field (for offload fix-ups).
pub const CHECKSUM_OFFSET: usize = field::CHECKSUM;

/// Flag bits of byte 13.
pub mod flags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
    pub const URG: u8 = 0x20;
    pub const ECE: u8 = 0x40;
    pub const CWR: u8 = 0x80;
}

/// A view of a TCP segment.
#[derive(Debug, Clone)]
pub struct TcpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> TcpPacket<T> {
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        TcpPacket { buffer }
    }

    /// Checks buffer ≥ 20 and ≥ data offset · 4 (`Truncated`) and data
    /// offset ≥ 5 (`Malformed`).
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self> {
        let p = Self::new_unchecked(buffer);
        let len = p.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error::Truncated);
        }
        let hl = p.header_len();
        if hl < HEADER_LEN {
            return Err(Error::Malformed);
        }
        if hl > len {
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

    #[inline]
    pub fn seq_number(&self) -> u32 {
        get_u32(self.buffer.as_ref(), field::SEQ)
    }

    #[inline]
    pub fn ack_number(&self) -> u32 {
        get_u32(self.buffer.as_ref(), field::ACK)
    }

    /// Header length in bytes (data offset · 4).
    #[inline]
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::DATA_OFF] >> 4) * 4
    }

    /// The eight flag bits (byte 13; the NS bit is not included).
    #[inline]
    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS]
    }

    #[inline]
    pub fn fin(&self) -> bool {
        self.flags() & flags::FIN != 0
    }

    #[inline]
    pub fn syn(&self) -> bool {
        self.flags() & flags::SYN != 0
    }

    #[inline]
    pub fn rst(&self) -> bool {
        self.flags() & flags::RST != 0
    }

    #[inline]
    pub fn psh(&self) -> bool {
        self.flags() & flags::PSH != 0
    }

    #[inline]
    pub fn ack(&self) -> bool {
        self.flags() & flags::ACK != 0
    }

    #[inline]
    pub fn urg(&self) -> bool {
        self.flags() & flags::URG != 0
    }

    #[inline]
    pub fn window_len(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::WINDOW)
    }

    #[inline]
    pub fn checksum(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::CHECKSUM)
    }

    #[inline]
    pub fn urgent_at(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::URGENT)
    }

    /// Option bytes (20..header_len).
    #[inline]
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..self.header_len()]
    }

    /// header_len.. (to the end of the buffer).
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..]
    }

    /// Whether the checksum over the pseudo header and the whole buffer is correct.
    #[inline]
    pub fn verify_checksum(&self, src: &IpAddr, dst: &IpAddr) -> bool {
        checksum::transport(src, dst, protocol::TCP, self.buffer.as_ref()) == 0
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> TcpPacket<T> {
    #[inline]
    pub fn set_src_port(&mut self, p: u16) {
        set_u16(self.buffer.as_mut(), field::SRC_PORT, p);
    }

    #[inline]
    pub fn set_dst_port(&mut self, p: u16) {
        set_u16(self.buffer.as_mut(), field::DST_PORT, p);
    }

    #[inline]
    pub fn set_seq_number(&mut self, v: u32) {
        set_u32(self.buffer.as_mut(), field::SEQ, v);
    }

    #[inline]
    pub fn set_ack_number(&mut self, v: u32) {
        set_u32(self.buffer.as_mut(), field::ACK, v);
    }

    /// Sets the data offset from a length in bytes (multiple of 4, 20..=60);
    /// the low nibble of byte 12 (reserved + NS) is kept.
    #[inline]
    pub fn set_header_len(&mut self, bytes: usize) {
        let b = &mut self.buffer.as_mut()[field::DATA_OFF];
        *b = (*b & 0x0f) | (((bytes / 4) as u8) << 4);
    }

    #[inline]
    pub fn set_flags(&mut self, f: u8) {
        self.buffer.as_mut()[field::FLAGS] = f;
    }

    #[inline]
    pub fn set_window_len(&mut self, w: u16) {
        set_u16(self.buffer.as_mut(), field::WINDOW, w);
    }

    #[inline]
    pub fn set_checksum(&mut self, c: u16) {
        set_u16(self.buffer.as_mut(), field::CHECKSUM, c);
    }

    #[inline]
    pub fn set_urgent_at(&mut self, u: u16) {
        set_u16(self.buffer.as_mut(), field::URGENT, u);
    }

    #[inline]
    pub fn options_mut(&mut self) -> &mut [u8] {
        let hl = self.header_len();
        &mut self.buffer.as_mut()[HEADER_LEN..hl]
    }

    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let hl = self.header_len();
        &mut self.buffer.as_mut()[hl..]
    }

    /// Computes the checksum in full over the pseudo header and the whole buffer.
    #[inline]
    pub fn fill_checksum(&mut self, src: &IpAddr, dst: &IpAddr) {
        self.set_checksum(0);
        let c = checksum::transport(src, dst, protocol::TCP, self.buffer.as_ref());
        self.set_checksum(c);
    }

    /// Replaces the checksum with `f(old)`: the hook for RFC 1624 updates
    /// (`|c| checksum::update16(c, old, new)`).
    #[inline]
    pub fn update_checksum(&mut self, f: impl FnOnce(u16) -> u16) {
        let c = f(self.checksum());
        self.set_checksum(c);
    }

    /// Sets the source port and updates the checksum incrementally (NAT out).
    #[inline]
    pub fn set_src_port_update(&mut self, p: u16) {
        let old = self.src_port();
        self.update_checksum(|c| checksum::update16(c, old, p));
        self.set_src_port(p);
    }

    /// Sets the destination port and updates the checksum incrementally (NAT in).
    #[inline]
    pub fn set_dst_port_update(&mut self, p: u16) {
        let old = self.dst_port();
        self.update_checksum(|c| checksum::update16(c, old, p));
        self.set_dst_port(p);
    }

    /// Updates the checksum for an address change in the pseudo header (the
    /// IP header itself is rewritten by the caller).
    #[inline]
    pub fn update_pseudo_addr(&mut self, old: &IpAddr, new: &IpAddr) {
        self.update_checksum(|c| checksum::update_addr(c, old, new));
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for TcpPacket<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{XorShift, hex};
    use std::net::Ipv4Addr;

    fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(a, b, c, d))
    }

    #[test]
    fn nat_vectors_rows_1_to_4() {
        // test-vectors.md §2.
        let (client, vip, rip) = (v4(198, 51, 100, 7), v4(10, 0, 0, 100), v4(192, 168, 1, 11));
        let mut syn = hex("9e400050 00000001 00000000 5002faf0 e1c10000");
        {
            let p = TcpPacket::new_checked(&syn[..]).unwrap();
            assert_eq!((p.src_port(), p.dst_port(), p.seq_number(), p.ack_number()), (40512, 80, 1, 0));
            assert_eq!((p.header_len(), p.flags(), p.window_len()), (20, flags::SYN, 64240));
            assert!(p.syn() && !p.ack() && !p.fin() && !p.rst() && !p.psh() && !p.urg());
            assert!(p.verify_checksum(&client, &vip));
        }
        // Row 1 -> row 2, incrementally.
        let mut p = TcpPacket::new_checked(&mut syn[..]).unwrap();
        p.update_pseudo_addr(&vip, &rip);
        p.set_dst_port_update(8080);
        assert_eq!(p.checksum(), 0x0b32);
        assert!(p.verify_checksum(&client, &rip));
        p.fill_checksum(&client, &rip);
        assert_eq!(p.checksum(), 0x0b32);

        // Row 3 (full) -> row 4 (incremental = full).
        let mut reply = [0u8; 20];
        let mut r = TcpPacket::new_unchecked(&mut reply[..]);
        r.set_src_port(8080);
        r.set_dst_port(40512);
        r.set_seq_number(1000);
        r.set_ack_number(2);
        r.set_header_len(20);
        r.set_flags(flags::SYN | flags::ACK);
        r.set_window_len(65160);
        r.set_urgent_at(0);
        r.fill_checksum(&rip, &client);
        assert_eq!(r.checksum(), 0x03a1);
        r.update_pseudo_addr(&rip, &vip);
        r.set_src_port_update(80);
        assert_eq!(r.checksum(), 0xda30);
        r.fill_checksum(&vip, &client);
        assert_eq!(r.checksum(), 0xda30);
    }

    #[test]
    fn options_payload_and_setters() {
        let mut b = [0u8; 32];
        b[12] = 0x01; // NS bit
        let mut p = TcpPacket::new_unchecked(&mut b[..]);
        p.set_header_len(24);
        p.options_mut().copy_from_slice(&[2, 4, 5, 0xb4]);
        p.payload_mut().fill(9);
        p.set_flags(flags::URG | flags::PSH);
        p.set_urgent_at(7);
        let p = TcpPacket::new_checked(&b[..]).unwrap();
        assert_eq!(p.header_len(), 24);
        assert_eq!(p.options(), &[2, 4, 5, 0xb4]);
        assert_eq!(p.payload(), &[9; 8]);
        assert_eq!(p.urgent_at(), 7);
        assert!(p.urg() && p.psh());
        assert_eq!(b[12] & 0x0f, 0x01, "NS bit kept by set_header_len");
    }

    #[test]
    fn checks() {
        let b = hex("9e400050 00000001 00000000 6002faf0 e1c10000 020405b4");
        assert!(TcpPacket::new_checked(&b[..]).is_ok());
        for len in 0..b.len() {
            assert_eq!(TcpPacket::new_checked(&b[..len]).unwrap_err(), Error::Truncated);
        }
        let mut bad = b.clone();
        bad[12] = 0x40;
        assert_eq!(TcpPacket::new_checked(&bad[..]).unwrap_err(), Error::Malformed);
        let mut rng = XorShift::new(8);
        for _ in 0..20_000 {
            let mut g = rng.garbage(80);
            if let Ok(mut p) = TcpPacket::new_checked(&mut g[..]) {
                let _ = (p.src_port(), p.dst_port(), p.seq_number(), p.ack_number(), p.flags());
                let _ = (p.window_len(), p.checksum(), p.urgent_at(), p.options(), p.payload());
                let a = v4(1, 2, 3, 4);
                p.fill_checksum(&a, &a);
                assert!(p.verify_checksum(&a, &a));
                let _ = p.options_mut();
            }
        }
    }

    #[test]
    fn random_nat_incremental_matches_full() {
        let mut rng = XorShift::new(0xabc);
        for _ in 0..3000 {
            let len = 20 + rng.below(100);
            let mut seg = rng.bytes(len);
            seg[12] = 0x50;
            let c = v4(rng.next_u32() as u8, 2, 3, 4);
            let v = IpAddr::V4(Ipv4Addr::from(rng.next_u32()));
            let r = IpAddr::V4(Ipv4Addr::from(rng.next_u32()));
            let mut p = TcpPacket::new_checked(&mut seg[..]).unwrap();
            p.fill_checksum(&c, &v);
            p.update_pseudo_addr(&v, &r);
            p.set_dst_port_update(rng.next_u16());
            p.set_src_port_update(rng.next_u16());
            assert!(p.verify_checksum(&c, &r));
            let inc = p.checksum();
            p.fill_checksum(&c, &r);
            assert_eq!(inc, p.checksum());
        }
    }
}
