//! ICMP for IPv4 (RFC 792). The view's buffer is the whole ICMP message (the
//! IP payload); the checksum covers all of it. For error messages
//! `payload()` is the quoted datagram: view it with
//! [`crate::Ipv4Packet::new_checked_header`], since it is usually cut short.

use crate::checksum;
use crate::{Error, Result, get_u16, get_u32, set_u16, set_u32};

/// ICMP message types.
pub mod msg_type {
    pub const ECHO_REPLY: u8 = 0;
    pub const DEST_UNREACH: u8 = 3;
    pub const SOURCE_QUENCH: u8 = 4;
    pub const REDIRECT: u8 = 5;
    pub const ECHO_REQUEST: u8 = 8;
    pub const TIME_EXCEEDED: u8 = 11;
    pub const PARAM_PROBLEM: u8 = 12;
}

/// ICMP codes (the meaning depends on the type).
pub mod code {
    /// Destination unreachable codes.
    pub const NET_UNREACH: u8 = 0;
    pub const HOST_UNREACH: u8 = 1;
    pub const PROTO_UNREACH: u8 = 2;
    pub const PORT_UNREACH: u8 = 3;
    pub const FRAG_NEEDED: u8 = 4;
    /// Time exceeded: TTL exceeded in transit.
    pub const TTL_EXCEEDED: u8 = 0;
    /// Time exceeded: fragment reassembly time exceeded.
    pub const FRAG_TIME_EXCEEDED: u8 = 1;
}

mod field {
    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: usize = 2;
    pub const REST: usize = 4;
    pub const ECHO_IDENT: usize = 4;
    pub const ECHO_SEQ: usize = 6;
    pub const MTU: usize = 6;
    pub const PAYLOAD: usize = 8;
}

/// Header length (type, code, checksum, rest-of-header).
pub const HEADER_LEN: usize = 8;
/// Offset of the checksum field.
pub const CHECKSUM_OFFSET: usize = field::CHECKSUM;

/// A view of an ICMPv4 message.
#[derive(Debug, Clone)]
pub struct Icmpv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Icmpv4Packet<T> {
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        Icmpv4Packet { buffer }
    }

    /// Checks the buffer holds the 8-byte header.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self> {
        let p = Self::new_unchecked(buffer);
        if p.buffer.as_ref().len() < HEADER_LEN {
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
    pub fn msg_type(&self) -> u8 {
        self.buffer.as_ref()[field::TYPE]
    }

    #[inline]
    pub fn code(&self) -> u8 {
        self.buffer.as_ref()[field::CODE]
    }

    #[inline]
    pub fn checksum(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// Bytes 4..8, the type-specific rest of the header.
    #[inline]
    pub fn rest(&self) -> u32 {
        get_u32(self.buffer.as_ref(), field::REST)
    }

    /// Next-hop MTU of a fragmentation-needed message (bytes 6..8, RFC 1191).
    #[inline]
    pub fn next_hop_mtu(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::MTU)
    }

    /// Echo identifier (bytes 4..6).
    #[inline]
    pub fn echo_ident(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::ECHO_IDENT)
    }

    /// Echo sequence number (bytes 6..8).
    #[inline]
    pub fn echo_seq_no(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::ECHO_SEQ)
    }

    /// 8.. (for errors, the quoted datagram).
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PAYLOAD..]
    }

    /// An error message, with the kernel's `icmp_is_err()` set: types 3, 4,
    /// 5, 11 and 12. Note IPVS relates only 3, 4 and 11 to connections
    /// (lvs-semantics.md §14): see [`Self::is_ipvs_error`].
    #[inline]
    pub fn is_error(&self) -> bool {
        matches!(
            self.msg_type(),
            msg_type::DEST_UNREACH
                | msg_type::SOURCE_QUENCH
                | msg_type::REDIRECT
                | msg_type::TIME_EXCEEDED
                | msg_type::PARAM_PROBLEM
        )
    }

    /// The types IPVS looks up connections for: 3, 4 and 11
    /// (lvs-semantics.md §14).
    #[inline]
    pub fn is_ipvs_error(&self) -> bool {
        matches!(self.msg_type(), msg_type::DEST_UNREACH | msg_type::SOURCE_QUENCH | msg_type::TIME_EXCEEDED)
    }

    /// Whether the checksum over the whole buffer is correct.
    #[inline]
    pub fn verify_checksum(&self) -> bool {
        checksum::checksum(self.buffer.as_ref()) == 0
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Icmpv4Packet<T> {
    #[inline]
    pub fn set_msg_type(&mut self, t: u8) {
        self.buffer.as_mut()[field::TYPE] = t;
    }

    #[inline]
    pub fn set_code(&mut self, c: u8) {
        self.buffer.as_mut()[field::CODE] = c;
    }

    #[inline]
    pub fn set_checksum(&mut self, c: u16) {
        set_u16(self.buffer.as_mut(), field::CHECKSUM, c);
    }

    #[inline]
    pub fn set_rest(&mut self, r: u32) {
        set_u32(self.buffer.as_mut(), field::REST, r);
    }

    /// Writes bytes 6..8 (bytes 4..6 are "unused" for frag-needed; set them
    /// with [`Self::set_rest`] first).
    #[inline]
    pub fn set_next_hop_mtu(&mut self, mtu: u16) {
        set_u16(self.buffer.as_mut(), field::MTU, mtu);
    }

    #[inline]
    pub fn set_echo_ident(&mut self, id: u16) {
        set_u16(self.buffer.as_mut(), field::ECHO_IDENT, id);
    }

    #[inline]
    pub fn set_echo_seq_no(&mut self, seq: u16) {
        set_u16(self.buffer.as_mut(), field::ECHO_SEQ, seq);
    }

    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::PAYLOAD..]
    }

    /// Computes the checksum in full over the whole buffer.
    #[inline]
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let c = checksum::checksum(self.buffer.as_ref());
        self.set_checksum(c);
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for Icmpv4Packet<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipv4::Ipv4Packet;
    use crate::testutil::{XorShift, hex};

    #[test]
    fn frag_needed_with_quote() {
        // 3/4, MTU 1480, quoting the §2 row 1 SYN header + 8 bytes.
        let quote = hex("45000028 12344000 4006f3fd c6336407 0a000064 9e400050 00000001");
        let mut b = vec![0u8; 8 + quote.len()];
        let mut p = Icmpv4Packet::new_checked(&mut b[..]).unwrap();
        p.set_msg_type(msg_type::DEST_UNREACH);
        p.set_code(code::FRAG_NEEDED);
        p.set_rest(0);
        p.set_next_hop_mtu(1480);
        p.payload_mut().copy_from_slice(&quote);
        p.fill_checksum();
        let p = Icmpv4Packet::new_checked(&b[..]).unwrap();
        assert!(p.verify_checksum());
        assert!(p.is_error() && p.is_ipvs_error());
        assert_eq!((p.msg_type(), p.code(), p.next_hop_mtu(), p.rest()), (3, 4, 1480, 1480));
        let inner = Ipv4Packet::new_checked_header(p.payload()).unwrap();
        assert_eq!(crate::ip::ports(inner.payload()), Some((40512, 80)));
        // Independent check of the checksum.
        assert_eq!(crate::checksum::checksum(&b), 0);
    }

    #[test]
    fn echo_and_error_classes() {
        let mut b = hex("0800 0000 1234 0001 6162");
        let mut p = Icmpv4Packet::new_checked(&mut b[..]).unwrap();
        assert!(!p.is_error());
        assert_eq!((p.echo_ident(), p.echo_seq_no()), (0x1234, 1));
        p.fill_checksum();
        assert!(p.verify_checksum());
        p.set_echo_seq_no(2);
        assert!(!p.verify_checksum());
        p.set_echo_ident(7);
        p.set_msg_type(msg_type::ECHO_REPLY);
        p.fill_checksum();
        assert!(p.verify_checksum());
        for t in 0..=255u8 {
            let mut h = [t, 0, 0, 0, 0, 0, 0, 0];
            let q = Icmpv4Packet::new_checked(&mut h[..]).unwrap();
            assert_eq!(q.is_error(), [3, 4, 5, 11, 12].contains(&t), "type {t}");
            assert_eq!(q.is_ipvs_error(), [3, 4, 11].contains(&t), "type {t}");
        }
    }

    #[test]
    fn prefixes_and_garbage() {
        let b = hex("0b00 0000 0000 0000 4500");
        for len in 0..8 {
            assert_eq!(Icmpv4Packet::new_checked(&b[..len]).unwrap_err(), Error::Truncated);
        }
        let mut rng = XorShift::new(4);
        for _ in 0..5000 {
            let mut g = rng.garbage(30);
            if let Ok(mut p) = Icmpv4Packet::new_checked(&mut g[..]) {
                let _ = (p.msg_type(), p.code(), p.checksum(), p.rest(), p.next_hop_mtu(), p.payload());
                p.fill_checksum();
                assert!(p.verify_checksum());
            }
        }
    }
}
