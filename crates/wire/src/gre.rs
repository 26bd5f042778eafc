//! GRE header (RFC 2784, key/sequence of RFC 2890) as IPVS writes it for
//! `--tun-type gre` (lvs-semantics.md §16): 4 bytes, or 8 with the checksum;
//! no key, no sequence number. Parsing accepts K and S too, so a quoted GRE
//! packet in an ICMP error can be walked.

use crate::checksum;
use crate::{Error, Result, get_u16, get_u32, set_u16};

/// Flag bits of the first 16-bit word.
pub mod flags {
    pub const CHECKSUM: u16 = 0x8000;
    pub const ROUTING: u16 = 0x4000;
    pub const KEY: u16 = 0x2000;
    pub const SEQ: u16 = 0x1000;
    pub const VERSION_MASK: u16 = 0x0007;
}

mod field {
    pub const FLAGS: usize = 0;
    pub const PROTOCOL: usize = 2;
    pub const CHECKSUM: usize = 4;
    pub const RESERVED1: usize = 6;
}

/// Base header length (flags/version and protocol type).
pub const HEADER_LEN: usize = 4;
/// Header length with the checksum field.
pub const HEADER_LEN_CSUM: usize = 8;

/// A view of a GRE packet (header + encapsulated packet).
#[derive(Debug, Clone)]
pub struct GrePacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> GrePacket<T> {
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        GrePacket { buffer }
    }

    /// Checks version 0 and no routing bit (`Malformed`, RFC 2784 §2.1
    /// deprecates routing) and that the header with its optional fields
    /// fits (`Truncated`).
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self> {
        let p = Self::new_unchecked(buffer);
        let b = p.buffer.as_ref();
        if b.len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        if p.flags() & (flags::VERSION_MASK | flags::ROUTING) != 0 {
            return Err(Error::Malformed);
        }
        if p.header_len() > b.len() {
            return Err(Error::Truncated);
        }
        Ok(p)
    }

    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The first 16-bit word: C R K S bits and version.
    #[inline]
    pub fn flags(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::FLAGS)
    }

    #[inline]
    pub fn checksum_present(&self) -> bool {
        self.flags() & flags::CHECKSUM != 0
    }

    /// The EtherType of the payload (0x0800 or 0x86DD for IPVS).
    #[inline]
    pub fn protocol_type(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::PROTOCOL)
    }

    /// Header length including the checksum, key and sequence fields present.
    #[inline]
    pub fn header_len(&self) -> usize {
        let f = self.flags();
        let mut n = HEADER_LEN;
        if f & flags::CHECKSUM != 0 {
            n += 4;
        }
        if f & flags::KEY != 0 {
            n += 4;
        }
        if f & flags::SEQ != 0 {
            n += 4;
        }
        n
    }

    #[inline]
    pub fn checksum(&self) -> Option<u16> {
        self.checksum_present().then(|| get_u16(self.buffer.as_ref(), field::CHECKSUM))
    }

    /// The key, if the K bit is set.
    #[inline]
    pub fn key(&self) -> Option<u32> {
        let f = self.flags();
        (f & flags::KEY != 0).then(|| {
            let at = if f & flags::CHECKSUM != 0 { 8 } else { 4 };
            get_u32(self.buffer.as_ref(), at)
        })
    }

    /// The encapsulated packet.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..]
    }

    /// Whether the checksum (over header and payload) is correct; `true`
    /// when there is none.
    #[inline]
    pub fn verify_checksum(&self) -> bool {
        !self.checksum_present() || checksum::checksum(self.buffer.as_ref()) == 0
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> GrePacket<T> {
    /// Writes the header IPVS uses: flags 0 (4 bytes) or C (8 bytes, checksum
    /// and reserved1 zeroed; call [`Self::fill_checksum`] after the payload
    /// is in place). The buffer must hold [`HEADER_LEN`] or
    /// [`HEADER_LEN_CSUM`] bytes.
    #[inline]
    pub fn fill_header(&mut self, protocol_type: u16, with_checksum: bool) {
        let b = self.buffer.as_mut();
        set_u16(b, field::FLAGS, if with_checksum { flags::CHECKSUM } else { 0 });
        set_u16(b, field::PROTOCOL, protocol_type);
        if with_checksum {
            set_u16(b, field::CHECKSUM, 0);
            set_u16(b, field::RESERVED1, 0);
        }
    }

    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let hl = self.header_len();
        &mut self.buffer.as_mut()[hl..]
    }

    /// Computes the checksum over the whole buffer; no-op without the C bit.
    #[inline]
    pub fn fill_checksum(&mut self) {
        if !self.checksum_present() {
            return;
        }
        set_u16(self.buffer.as_mut(), field::CHECKSUM, 0);
        let c = checksum::checksum(self.buffer.as_ref());
        set_u16(self.buffer.as_mut(), field::CHECKSUM, c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ethernet::ethertype;
    use crate::testutil::XorShift;

    #[test]
    fn plain_and_checksummed() {
        let mut b = [0xeeu8; 12];
        let mut g = GrePacket::new_unchecked(&mut b[..]);
        g.fill_header(ethertype::IPV4, false);
        assert_eq!(b[..4], [0, 0, 0x08, 0x00]);
        let g = GrePacket::new_checked(&b[..]).unwrap();
        assert_eq!((g.header_len(), g.protocol_type(), g.checksum(), g.key()), (4, 0x0800, None, None));
        assert_eq!(g.payload().len(), 8);
        assert!(g.verify_checksum());

        let mut b = [0u8; 16];
        let mut g = GrePacket::new_unchecked(&mut b[..]);
        g.fill_header(ethertype::IPV6, true);
        g.payload_mut().copy_from_slice(&[0x60, 1, 2, 3, 4, 5, 6, 7]);
        g.fill_checksum();
        assert_eq!(b[..4], [0x80, 0, 0x86, 0xdd]);
        assert_eq!(crate::checksum::checksum(&b), 0);
        let g = GrePacket::new_checked(&b[..]).unwrap();
        assert_eq!(g.header_len(), 8);
        assert!(g.verify_checksum());
        assert_eq!(g.payload()[0], 0x60);
    }

    #[test]
    fn key_and_seq_and_errors() {
        let b = [0xb0, 0, 0x08, 0, 0x12, 0x34, 0, 0, 0, 0, 0, 7, 0, 0, 0, 1, 0x45];
        let g = GrePacket::new_checked(&b[..]).unwrap();
        assert_eq!((g.header_len(), g.key()), (16, Some(7)));
        assert_eq!(g.payload(), &[0x45]);
        for len in 0..16 {
            assert_eq!(GrePacket::new_checked(&b[..len]).unwrap_err(), Error::Truncated);
        }
        assert_eq!(GrePacket::new_checked(&[0, 1, 8, 0][..]).unwrap_err(), Error::Malformed);
        assert_eq!(GrePacket::new_checked(&[0x40, 0, 8, 0][..]).unwrap_err(), Error::Malformed);
        let mut rng = XorShift::new(31);
        for _ in 0..5000 {
            let g = rng.garbage(24);
            if let Ok(p) = GrePacket::new_checked(&g[..]) {
                let _ = (p.checksum(), p.key(), p.payload(), p.verify_checksum());
            }
        }
    }
}
