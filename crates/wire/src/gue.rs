//! GUE header, variant 0 (draft-ietf-intarea-gue), as IPVS writes it for
//! `--tun-type gue` inside UDP (lvs-semantics.md §16): byte 0 = version (2
//! bits) | C (1 bit) | hlen (5 bits, optional fields in 32-bit words); byte 1
//! = protocol of the payload (4 or 41); bytes 2..4 = flags; then hlen words.

use crate::{Error, Result, get_u16, set_u16};

/// Flag bits IPVS uses (bytes 2..4).
pub mod flags {
    /// Private flags word follows (used for remote checksum offload).
    pub const PRIV: u16 = 0x0001;
}

/// Bit 31 of the private flags word: remote checksum offload option follows.
pub const PRIV_REMCSUM: u32 = 0x8000_0000;

mod field {
    pub const VER_C_HLEN: usize = 0;
    pub const PROTO: usize = 1;
    pub const FLAGS: usize = 2;
    pub const OPTIONS: usize = 4;
}

/// Base header length.
pub const HEADER_LEN: usize = 4;

/// A view of a GUE packet (the UDP payload).
#[derive(Debug, Clone)]
pub struct GuePacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> GuePacket<T> {
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        GuePacket { buffer }
    }

    /// Checks variant 0 (`Malformed` otherwise) and that the header with its
    /// optional fields fits (`Truncated`).
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self> {
        let p = Self::new_unchecked(buffer);
        let b = p.buffer.as_ref();
        if b.len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        if p.version() != 0 {
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

    #[inline]
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_C_HLEN] >> 6
    }

    /// C bit: a control message (the proto byte is then a ctype).
    #[inline]
    pub fn is_control(&self) -> bool {
        self.buffer.as_ref()[field::VER_C_HLEN] & 0x20 != 0
    }

    /// Length of the optional fields in 32-bit words.
    #[inline]
    pub fn hlen(&self) -> u8 {
        self.buffer.as_ref()[field::VER_C_HLEN] & 0x1f
    }

    /// Header length in bytes: 4 + hlen · 4.
    #[inline]
    pub fn header_len(&self) -> usize {
        HEADER_LEN + usize::from(self.hlen()) * 4
    }

    /// IP protocol of the payload (4 IPIP, 41 IPv6).
    #[inline]
    pub fn protocol(&self) -> u8 {
        self.buffer.as_ref()[field::PROTO]
    }

    #[inline]
    pub fn flags(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::FLAGS)
    }

    /// The optional fields (4..header_len).
    #[inline]
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[field::OPTIONS..self.header_len()]
    }

    /// The encapsulated packet.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> GuePacket<T> {
    /// Writes variant 0, data message, `hlen` option words, `protocol`,
    /// `flags`; the options themselves are written with [`Self::options_mut`].
    #[inline]
    pub fn fill_header(&mut self, protocol: u8, hlen: u8, flags: u16) {
        let b = self.buffer.as_mut();
        b[field::VER_C_HLEN] = hlen & 0x1f;
        b[field::PROTO] = protocol;
        set_u16(b, field::FLAGS, flags);
    }

    #[inline]
    pub fn options_mut(&mut self) -> &mut [u8] {
        let hl = self.header_len();
        &mut self.buffer.as_mut()[field::OPTIONS..hl]
    }

    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let hl = self.header_len();
        &mut self.buffer.as_mut()[hl..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ip::protocol;
    use crate::testutil::XorShift;

    #[test]
    fn plain_and_remcsum_layouts() {
        let mut b = [0xeeu8; 8];
        GuePacket::new_unchecked(&mut b[..]).fill_header(protocol::IPIP, 0, 0);
        assert_eq!(b[..4], [0, 4, 0, 0]);
        let g = GuePacket::new_checked(&b[..]).unwrap();
        assert_eq!((g.version(), g.is_control(), g.header_len(), g.protocol()), (0, false, 4, 4));
        assert_eq!(g.payload().len(), 4);

        // remcsum: PRIV flag, private word with REMCSUM, {start, offset}: hlen 2.
        let mut b = [0u8; 16];
        let mut g = GuePacket::new_unchecked(&mut b[..]);
        g.fill_header(protocol::IPV6, 2, flags::PRIV);
        g.options_mut()[..4].copy_from_slice(&PRIV_REMCSUM.to_be_bytes());
        g.options_mut()[4..].copy_from_slice(&[0, 40, 0, 6]);
        assert_eq!(b[..12], [0x02, 41, 0, 1, 0x80, 0, 0, 0, 0, 40, 0, 6]);
        let g = GuePacket::new_checked(&b[..]).unwrap();
        assert_eq!((g.header_len(), g.flags(), g.options().len()), (12, 1, 8));
    }

    #[test]
    fn errors_and_garbage() {
        assert_eq!(GuePacket::new_checked(&[0x40, 4, 0, 0][..]).unwrap_err(), Error::Malformed);
        assert_eq!(GuePacket::new_checked(&[0x01, 4, 0, 0][..]).unwrap_err(), Error::Truncated);
        assert_eq!(GuePacket::new_checked(&[0, 4, 0][..]).unwrap_err(), Error::Truncated);
        let mut rng = XorShift::new(41);
        for _ in 0..5000 {
            let g = rng.garbage(40);
            if let Ok(p) = GuePacket::new_checked(&g[..]) {
                let _ = (p.options(), p.payload(), p.flags(), p.is_control());
            }
        }
    }
}
