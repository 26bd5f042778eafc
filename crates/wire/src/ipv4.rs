//! IPv4 header view (RFC 791).
//!
//! `frag_offset()` and the offset of `set_flags_frag()` are in **bytes**
//! (the wire field counts 8-byte units; bytes are what reassembly compares).

use crate::checksum;
use crate::{Error, Result, get_array, get_u16, set_u16};
use std::net::Ipv4Addr;

mod field {
    pub const VER_IHL: usize = 0;
    pub const TOS: usize = 1;
    pub const LENGTH: usize = 2;
    pub const IDENT: usize = 4;
    pub const FLG_OFF: usize = 6;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: usize = 10;
    pub const SRC: usize = 12;
    pub const DST: usize = 16;
}

/// Length of a header without options.
pub const HEADER_LEN: usize = 20;
/// Offset of the header checksum.
pub const CHECKSUM_OFFSET: usize = field::CHECKSUM;

const FLAG_DF: u16 = 0x4000;
const FLAG_MF: u16 = 0x2000;
const OFFSET_MASK: u16 = 0x1fff;

/// A view of an IPv4 packet.
#[derive(Debug, Clone)]
pub struct Ipv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        Ipv4Packet { buffer }
    }

    /// Checks buffer ≥ 20 and ≥ total length (`Truncated`), version 4,
    /// IHL ≥ 5 and IHL·4 ≤ total length (`Malformed`). The buffer may be
    /// longer than the total length (Ethernet padding); [`Self::payload`]
    /// stops at the total length.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self> {
        let p = Self::new_unchecked(buffer);
        p.check_header()?;
        if usize::from(p.total_len()) > p.buffer.as_ref().len() {
            return Err(Error::Truncated);
        }
        Ok(p)
    }

    /// Like [`Self::new_checked`] but lets the total length exceed the buffer:
    /// for the packet quoted inside an ICMP error, which carries the header and
    /// only the first 8 payload bytes. [`Self::payload`] then returns the bytes
    /// present.
    #[inline]
    pub fn new_checked_header(buffer: T) -> Result<Self> {
        let p = Self::new_unchecked(buffer);
        p.check_header()?;
        Ok(p)
    }

    #[inline]
    fn check_header(&self) -> Result<()> {
        let b = self.buffer.as_ref();
        if b.len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        if self.version() != 4 {
            return Err(Error::Malformed);
        }
        let hl = self.header_len();
        if hl < HEADER_LEN || hl > usize::from(self.total_len()) {
            return Err(Error::Malformed);
        }
        if hl > b.len() {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The whole buffer (may extend past the total length).
    #[inline]
    pub fn as_bytes(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    #[inline]
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_IHL] >> 4
    }

    /// Header length in bytes (IHL · 4).
    #[inline]
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::VER_IHL] & 0x0f) * 4
    }

    /// The DSCP+ECN byte.
    #[inline]
    pub fn tos(&self) -> u8 {
        self.buffer.as_ref()[field::TOS]
    }

    #[inline]
    pub fn dscp(&self) -> u8 {
        self.tos() >> 2
    }

    #[inline]
    pub fn ecn(&self) -> u8 {
        self.tos() & 0x03
    }

    #[inline]
    pub fn total_len(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::LENGTH)
    }

    #[inline]
    pub fn ident(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::IDENT)
    }

    #[inline]
    pub fn dont_frag(&self) -> bool {
        get_u16(self.buffer.as_ref(), field::FLG_OFF) & FLAG_DF != 0
    }

    #[inline]
    pub fn more_frags(&self) -> bool {
        get_u16(self.buffer.as_ref(), field::FLG_OFF) & FLAG_MF != 0
    }

    /// Fragment offset in bytes (the field · 8).
    #[inline]
    pub fn frag_offset(&self) -> u16 {
        (get_u16(self.buffer.as_ref(), field::FLG_OFF) & OFFSET_MASK) << 3
    }

    /// MF set or offset non-zero: part of a fragmented datagram.
    #[inline]
    pub fn is_fragment(&self) -> bool {
        get_u16(self.buffer.as_ref(), field::FLG_OFF) & (FLAG_MF | OFFSET_MASK) != 0
    }

    #[inline]
    pub fn ttl(&self) -> u8 {
        self.buffer.as_ref()[field::TTL]
    }

    #[inline]
    pub fn protocol(&self) -> u8 {
        self.buffer.as_ref()[field::PROTOCOL]
    }

    #[inline]
    pub fn checksum(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::CHECKSUM)
    }

    #[inline]
    pub fn src_addr(&self) -> Ipv4Addr {
        Ipv4Addr::from(get_array::<4>(self.buffer.as_ref(), field::SRC))
    }

    #[inline]
    pub fn dst_addr(&self) -> Ipv4Addr {
        Ipv4Addr::from(get_array::<4>(self.buffer.as_ref(), field::DST))
    }

    /// Option bytes (20..header_len).
    #[inline]
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..self.header_len()]
    }

    /// The header with its options (0..header_len).
    #[inline]
    pub fn header(&self) -> &[u8] {
        &self.buffer.as_ref()[..self.header_len()]
    }

    /// The packet up to the total length (header + payload, no padding);
    /// clipped to the buffer for views from [`Self::new_checked_header`].
    #[inline]
    pub fn packet(&self) -> &[u8] {
        &self.buffer.as_ref()[..self.end()]
    }

    /// header_len..total_len (clipped to the buffer, see [`Self::new_checked_header`]).
    #[inline]
    pub fn payload(&self) -> &[u8] {
        let end = self.end();
        &self.buffer.as_ref()[self.header_len()..end]
    }

    #[inline]
    fn end(&self) -> usize {
        usize::from(self.total_len()).min(self.buffer.as_ref().len())
    }

    /// Whether the header checksum is correct.
    #[inline]
    pub fn verify_checksum(&self) -> bool {
        checksum::fold(checksum::sum(self.header())) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv4Packet<T> {
    #[inline]
    pub fn set_version(&mut self, v: u8) {
        let b = &mut self.buffer.as_mut()[field::VER_IHL];
        *b = (*b & 0x0f) | (v << 4);
    }

    /// Sets IHL from a length in bytes (a multiple of 4, 20..=60).
    #[inline]
    pub fn set_header_len(&mut self, bytes: usize) {
        let b = &mut self.buffer.as_mut()[field::VER_IHL];
        *b = (*b & 0xf0) | ((bytes / 4) as u8 & 0x0f);
    }

    #[inline]
    pub fn set_tos(&mut self, tos: u8) {
        self.buffer.as_mut()[field::TOS] = tos;
    }

    #[inline]
    pub fn set_total_len(&mut self, len: u16) {
        set_u16(self.buffer.as_mut(), field::LENGTH, len);
    }

    #[inline]
    pub fn set_ident(&mut self, id: u16) {
        set_u16(self.buffer.as_mut(), field::IDENT, id);
    }

    /// Sets DF, MF and the fragment offset, given in bytes (rounded down to a
    /// multiple of 8).
    #[inline]
    pub fn set_flags_frag(&mut self, df: bool, mf: bool, offset: u16) {
        let mut v = (offset >> 3) & OFFSET_MASK;
        if df {
            v |= FLAG_DF;
        }
        if mf {
            v |= FLAG_MF;
        }
        set_u16(self.buffer.as_mut(), field::FLG_OFF, v);
    }

    #[inline]
    pub fn set_ttl(&mut self, ttl: u8) {
        self.buffer.as_mut()[field::TTL] = ttl;
    }

    #[inline]
    pub fn set_protocol(&mut self, p: u8) {
        self.buffer.as_mut()[field::PROTOCOL] = p;
    }

    #[inline]
    pub fn set_checksum(&mut self, c: u16) {
        set_u16(self.buffer.as_mut(), field::CHECKSUM, c);
    }

    #[inline]
    pub fn set_src_addr(&mut self, a: Ipv4Addr) {
        self.buffer.as_mut()[field::SRC..field::SRC + 4].copy_from_slice(&a.octets());
    }

    #[inline]
    pub fn set_dst_addr(&mut self, a: Ipv4Addr) {
        self.buffer.as_mut()[field::DST..field::DST + 4].copy_from_slice(&a.octets());
    }

    /// Option bytes, mutable.
    #[inline]
    pub fn options_mut(&mut self) -> &mut [u8] {
        let hl = self.header_len();
        &mut self.buffer.as_mut()[HEADER_LEN..hl]
    }

    /// header_len..total_len, mutable (clipped like [`Ipv4Packet::payload`]).
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let (hl, end) = (self.header_len(), self.end());
        &mut self.buffer.as_mut()[hl..end]
    }

    /// Recomputes the header checksum in full.
    #[inline]
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let c = checksum::checksum(self.header());
        self.set_checksum(c);
    }

    /// Decrements the TTL and updates the header checksum incrementally
    /// (RFC 1624 eqn 3; test-vectors.md §1 row 7). The forwarder checks
    /// TTL ≤ 1 first (lvs-semantics.md §16); a TTL of 0 is left alone
    /// rather than wrapped to 255.
    #[inline]
    pub fn dec_ttl(&mut self) {
        let ttl = self.ttl();
        if ttl == 0 {
            return;
        }
        let proto = u16::from(self.protocol());
        let old = u16::from(ttl) << 8 | proto;
        let new = u16::from(ttl - 1) << 8 | proto;
        let c = checksum::update16(self.checksum(), old, new);
        self.set_ttl(ttl - 1);
        self.set_checksum(c);
    }

    /// Sets the source address and updates the header checksum
    /// incrementally (NAT out-path).
    #[inline]
    pub fn set_src_addr_update(&mut self, a: Ipv4Addr) {
        let c = checksum::update32(self.checksum(), u32::from(self.src_addr()), u32::from(a));
        self.set_src_addr(a);
        self.set_checksum(c);
    }

    /// Sets the destination address and updates the header checksum
    /// incrementally (NAT in-path).
    #[inline]
    pub fn set_dst_addr_update(&mut self, a: Ipv4Addr) {
        let c = checksum::update32(self.checksum(), u32::from(self.dst_addr()), u32::from(a));
        self.set_dst_addr(a);
        self.set_checksum(c);
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for Ipv4Packet<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ip::protocol;
    use crate::testutil::{XorShift, hex};

    #[test]
    fn vector_header_fields() {
        // test-vectors.md §1 row 6.
        let b = hex("4500 0030 4422 4000 8006 442e 8c7c 19ac ae24 1e2b");
        let mut b = [b, vec![0; 28]].concat();
        let p = Ipv4Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.version(), 4);
        assert_eq!(p.header_len(), 20);
        assert_eq!(p.total_len(), 0x30);
        assert_eq!(p.ident(), 0x4422);
        assert!(p.dont_frag() && !p.more_frags() && !p.is_fragment());
        assert_eq!(p.frag_offset(), 0);
        assert_eq!(p.ttl(), 0x80);
        assert_eq!(p.protocol(), protocol::TCP);
        assert_eq!(p.checksum(), 0x442e);
        assert_eq!(p.src_addr(), Ipv4Addr::new(0x8c, 0x7c, 0x19, 0xac));
        assert_eq!(p.dst_addr(), Ipv4Addr::new(0xae, 0x24, 0x1e, 0x2b));
        assert!(p.verify_checksum());
        assert_eq!(p.payload().len(), 28);
        assert!(p.options().is_empty());
        // §1 row 7: TTL 80 -> 7f, incremental = full = 452e.
        let mut p = Ipv4Packet::new_checked(&mut b[..]).unwrap();
        p.dec_ttl();
        assert_eq!((p.ttl(), p.checksum()), (0x7f, 0x452e));
        p.fill_checksum();
        assert_eq!(p.checksum(), 0x452e);
    }

    #[test]
    fn nat_vector_rows_1_2() {
        // test-vectors.md §2: row 1 header -> row 2 header via the helpers.
        let mut b = hex("45000028 12344000 4006f3fd c6336407 0a000064");
        b.extend_from_slice(&[0; 20]);
        let mut p = Ipv4Packet::new_checked(&mut b[..]).unwrap();
        assert!(p.verify_checksum());
        p.dec_ttl();
        p.set_dst_addr_update(Ipv4Addr::new(192, 168, 1, 11));
        assert_eq!(&b[..20], &hex("45000028 12344000 3f063dae c6336407 c0a8010b")[..]);
        let mut p = Ipv4Packet::new_checked(&mut b[..]).unwrap();
        p.set_src_addr_update(Ipv4Addr::new(10, 9, 8, 7));
        assert!(p.verify_checksum());
    }

    #[test]
    fn dec_ttl_zero_and_one() {
        let mut b = hex("45000014 00000000 01110000 0a000001 0a000002");
        let mut p = Ipv4Packet::new_checked(&mut b[..]).unwrap();
        p.fill_checksum();
        p.dec_ttl();
        assert_eq!(p.ttl(), 0);
        assert!(p.verify_checksum());
        let c = p.checksum();
        p.dec_ttl();
        assert_eq!((p.ttl(), p.checksum()), (0, c));
    }

    #[test]
    fn dec_ttl_random_matches_full() {
        let mut rng = XorShift::new(11);
        for _ in 0..5000 {
            let mut b = rng.bytes(20);
            b[0] = 0x45;
            b[2..4].copy_from_slice(&20u16.to_be_bytes());
            b[8] = 1 + rng.below(255) as u8;
            let mut p = Ipv4Packet::new_checked(&mut b[..]).unwrap();
            p.fill_checksum();
            p.dec_ttl();
            p.set_dst_addr_update(Ipv4Addr::from(rng.next_u32()));
            assert!(p.verify_checksum());
            let inc = p.checksum();
            p.fill_checksum();
            assert_eq!(inc, p.checksum());
        }
    }

    #[test]
    fn setters_and_fragments() {
        let mut b = [0u8; 64];
        let mut p = Ipv4Packet::new_unchecked(&mut b[..]);
        p.set_version(4);
        p.set_header_len(24);
        p.set_tos(0xb9);
        p.set_total_len(64);
        p.set_ident(0xbeef);
        p.set_flags_frag(false, true, 1480);
        p.set_ttl(9);
        p.set_protocol(protocol::UDP);
        p.set_src_addr(Ipv4Addr::new(1, 2, 3, 4));
        p.set_dst_addr(Ipv4Addr::new(5, 6, 7, 8));
        p.options_mut().copy_from_slice(&[1, 1, 1, 0]);
        p.payload_mut()[0] = 0x77;
        p.fill_checksum();
        let p = Ipv4Packet::new_checked(&b[..]).unwrap();
        assert_eq!((p.version(), p.header_len(), p.tos(), p.dscp(), p.ecn()), (4, 24, 0xb9, 0x2e, 1));
        assert_eq!((p.total_len(), p.ident(), p.ttl(), p.protocol()), (64, 0xbeef, 9, 17));
        assert!(p.more_frags() && !p.dont_frag() && p.is_fragment());
        assert_eq!(p.frag_offset(), 1480);
        assert_eq!(p.options(), &[1, 1, 1, 0]);
        assert_eq!(p.header().len(), 24);
        assert_eq!(p.payload().len(), 40);
        assert_eq!(p.payload()[0], 0x77);
        assert!(p.verify_checksum());
        let mut b2 = b;
        let mut q = Ipv4Packet::new_unchecked(&mut b2[..]);
        q.set_flags_frag(true, false, 8);
        assert!(q.dont_frag() && q.is_fragment() && q.frag_offset() == 8);
        q.set_flags_frag(true, false, 0);
        assert!(!q.is_fragment());
        q.set_flags_frag(false, false, 0xffff);
        assert_eq!(q.frag_offset(), 0xfff8);
    }

    #[test]
    fn check_errors() {
        let good = hex("45000018 00000000 40010000 0a000001 0a000002 01020304");
        assert!(Ipv4Packet::new_checked(&good[..]).is_ok());
        // (byte, value, expected): one corrupted byte each.
        let cases = [
            (0, 0x65, Error::Malformed), // version 6
            (0, 0x44, Error::Malformed), // ihl 4
            (0, 0x47, Error::Malformed), // ihl 28 > total 24
            (3, 0x10, Error::Malformed), // total 16 < ihl
            (3, 0x19, Error::Truncated), // total 25 > buffer
        ];
        for (at, v, e) in cases {
            let mut b = good.clone();
            b[at] = v;
            assert_eq!(Ipv4Packet::new_checked(&b[..]).unwrap_err(), e, "byte {at} = {v:#x}");
        }
        assert_eq!(Ipv4Packet::new_checked(&good[..19]).unwrap_err(), Error::Truncated);
        // Padding after total_len is allowed and excluded from the payload.
        let mut padded = good.clone();
        padded.extend_from_slice(&[0; 22]);
        assert_eq!(Ipv4Packet::new_checked(&padded[..]).unwrap().payload(), &[1, 2, 3, 4]);
    }

    #[test]
    fn header_only_view_for_icmp_quotes() {
        // total_len says 40, only 28 bytes quoted.
        let b = hex("45000028 12344000 4006f3fd c6336407 0a000064 9e400050 00000001");
        assert_eq!(Ipv4Packet::new_checked(&b[..]).unwrap_err(), Error::Truncated);
        let p = Ipv4Packet::new_checked_header(&b[..]).unwrap();
        assert_eq!(p.payload().len(), 8);
        assert_eq!(crate::ip::ports(p.payload()), Some((40512, 80)));
        assert!(Ipv4Packet::new_checked_header(&b[..19]).is_err());
        let mut opt = b.clone();
        opt[0] = 0x48; // 32-byte header does not fit 28 bytes
        assert_eq!(Ipv4Packet::new_checked_header(&opt[..]).unwrap_err(), Error::Truncated);
    }

    fn touch<T: AsRef<[u8]>>(p: &Ipv4Packet<T>) {
        let _ = (p.version(), p.header_len(), p.tos(), p.total_len(), p.ident(), p.dont_frag());
        let _ = (p.more_frags(), p.frag_offset(), p.is_fragment(), p.ttl(), p.protocol(), p.checksum());
        let _ = (p.src_addr(), p.dst_addr(), p.options(), p.header(), p.payload(), p.packet());
        let _ = p.verify_checksum();
    }

    #[test]
    fn every_prefix_and_garbage() {
        let mut b = hex("46000030 12344000 4006f3fd c6336407 0a000064 01010100");
        b.extend_from_slice(&[0xab; 24]);
        for len in 0..=b.len() {
            let ok = Ipv4Packet::new_checked(&b[..len]).map(|p| touch(&p)).is_ok();
            assert_eq!(ok, len == b.len(), "len {len}");
            if let Ok(p) = Ipv4Packet::new_checked_header(&b[..len]) {
                touch(&p);
                assert!(len >= 24);
            }
        }
        let mut rng = XorShift::new(5);
        for _ in 0..20_000 {
            let mut g = rng.garbage(80);
            if let Some(f) = g.first_mut() {
                *f = 0x40 | (*f & 0x0f); // make version 4 likely to pass
            }
            if let Ok(p) = Ipv4Packet::new_checked(&g[..]) {
                touch(&p);
            }
            if let Ok(mut p) = Ipv4Packet::new_checked_header(&mut g[..]) {
                touch(&p);
                p.dec_ttl();
                p.fill_checksum();
                let _ = p.payload_mut();
                let _ = p.options_mut();
            }
        }
    }
}
