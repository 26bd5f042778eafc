//! ICMPv6 (RFC 4443) and the Neighbor Discovery fields the node needs to
//! answer NS for VIPs (RFC 4861). The view's buffer is the whole ICMPv6
//! message; the checksum covers the IPv6 pseudo header and all of it.

use crate::checksum;
use crate::ethernet::MacAddr;
use crate::ip::protocol;
use crate::{Error, Result, get_array, get_u16, get_u32, set_u16, set_u32};
use std::net::{IpAddr, Ipv6Addr};

/// ICMPv6 message types.
pub mod msg_type {
    pub const DST_UNREACH: u8 = 1;
    pub const PKT_TOO_BIG: u8 = 2;
    pub const TIME_EXCEEDED: u8 = 3;
    pub const PARAM_PROBLEM: u8 = 4;
    pub const ECHO_REQUEST: u8 = 128;
    pub const ECHO_REPLY: u8 = 129;
    pub const ROUTER_SOLICIT: u8 = 133;
    pub const ROUTER_ADVERT: u8 = 134;
    pub const NEIGHBOR_SOLICIT: u8 = 135;
    pub const NEIGHBOR_ADVERT: u8 = 136;
    pub const REDIRECT: u8 = 137;
}

/// ICMPv6 codes (the meaning depends on the type).
pub mod code {
    /// Destination unreachable codes.
    pub const NO_ROUTE: u8 = 0;
    pub const ADMIN_PROHIBITED: u8 = 1;
    pub const ADDR_UNREACH: u8 = 3;
    pub const PORT_UNREACH: u8 = 4;
    /// Time exceeded: hop limit exceeded in transit.
    pub const HOP_LIMIT_EXCEEDED: u8 = 0;
}

/// Neighbor Advertisement flag bits (byte 4).
pub mod na_flags {
    pub const ROUTER: u8 = 0x80;
    pub const SOLICITED: u8 = 0x40;
    pub const OVERRIDE: u8 = 0x20;
}

/// NDP option types carrying a link-layer address.
pub mod ndp_option {
    pub const SOURCE_LLADDR: u8 = 1;
    pub const TARGET_LLADDR: u8 = 2;
}

mod field {
    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: usize = 2;
    pub const REST: usize = 4;
    pub const ECHO_IDENT: usize = 4;
    pub const ECHO_SEQ: usize = 6;
    pub const NA_FLAGS: usize = 4;
    pub const PAYLOAD: usize = 8;
    pub const ND_TARGET: usize = 8;
    pub const ND_OPTIONS: usize = 24;
}

/// Header length (type, code, checksum, 4 type-specific bytes).
pub const HEADER_LEN: usize = 8;
/// Offset of the checksum field.
pub const CHECKSUM_OFFSET: usize = field::CHECKSUM;
/// Length of an NS/NA message without options.
pub const ND_LEN: usize = field::ND_OPTIONS;

/// A view of an ICMPv6 message.
#[derive(Debug, Clone)]
pub struct Icmpv6Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Icmpv6Packet<T> {
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        Icmpv6Packet { buffer }
    }

    /// Checks the buffer holds the 8-byte header. NS/NA fields beyond it are
    /// read through `Option`-returning accessors.
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

    /// Bytes 4..8.
    #[inline]
    pub fn rest(&self) -> u32 {
        get_u32(self.buffer.as_ref(), field::REST)
    }

    /// MTU of a packet-too-big message (bytes 4..8).
    #[inline]
    pub fn mtu(&self) -> u32 {
        self.rest()
    }

    /// Pointer of a parameter-problem message (bytes 4..8).
    #[inline]
    pub fn pointer(&self) -> u32 {
        self.rest()
    }

    #[inline]
    pub fn echo_ident(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::ECHO_IDENT)
    }

    #[inline]
    pub fn echo_seq_no(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::ECHO_SEQ)
    }

    /// 8.. (for errors, the quoted packet: view it with
    /// [`crate::Ipv6Packet::new_checked_header`]).
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PAYLOAD..]
    }

    /// Error messages are types 0..=127 (RFC 4443 §2.1); IPVS handles all of
    /// them (lvs-semantics.md §14).
    #[inline]
    pub fn is_error(&self) -> bool {
        self.msg_type() < 128
    }

    /// NA flags byte (R, S, O in the high bits).
    #[inline]
    pub fn na_flags(&self) -> u8 {
        self.buffer.as_ref()[field::NA_FLAGS]
    }

    /// Target address of an NS/NA (bytes 8..24), if present.
    #[inline]
    pub fn target_addr(&self) -> Option<Ipv6Addr> {
        let b = self.buffer.as_ref();
        (b.len() >= ND_LEN).then(|| Ipv6Addr::from(get_array::<16>(b, field::ND_TARGET)))
    }

    /// NS/NA options (24..), empty if the message is shorter.
    #[inline]
    pub fn ndp_options(&self) -> &[u8] {
        self.buffer.as_ref().get(field::ND_OPTIONS..).unwrap_or(&[])
    }

    /// The source/target link-layer address option of an NS/NA, if any.
    #[inline]
    pub fn ndp_lladdr(&self, kind: u8) -> Option<MacAddr> {
        find_lladdr_option(self.ndp_options(), kind)
    }

    /// Whether the checksum over the pseudo header and the whole buffer is correct.
    #[inline]
    pub fn verify_checksum(&self, src: &IpAddr, dst: &IpAddr) -> bool {
        checksum::transport(src, dst, protocol::ICMPV6, self.buffer.as_ref()) == 0
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Icmpv6Packet<T> {
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

    #[inline]
    pub fn set_mtu(&mut self, mtu: u32) {
        self.set_rest(mtu);
    }

    #[inline]
    pub fn set_echo_ident(&mut self, id: u16) {
        set_u16(self.buffer.as_mut(), field::ECHO_IDENT, id);
    }

    #[inline]
    pub fn set_echo_seq_no(&mut self, seq: u16) {
        set_u16(self.buffer.as_mut(), field::ECHO_SEQ, seq);
    }

    /// Sets the NA flags byte and clears the reserved bytes 5..8.
    #[inline]
    pub fn set_na_flags(&mut self, flags: u8) {
        self.set_rest(u32::from(flags) << 24);
    }

    /// Writes the NS/NA target; `Err(Truncated)` if the buffer is shorter than 24.
    #[inline]
    pub fn set_target_addr(&mut self, a: Ipv6Addr) -> Result<()> {
        let b = self.buffer.as_mut();
        let t = b.get_mut(field::ND_TARGET..ND_LEN).ok_or(Error::Truncated)?;
        t.copy_from_slice(&a.octets());
        Ok(())
    }

    /// NS/NA options, mutable (empty if the message is shorter than 24).
    #[inline]
    pub fn ndp_options_mut(&mut self) -> &mut [u8] {
        self.buffer.as_mut().get_mut(field::ND_OPTIONS..).unwrap_or(&mut [])
    }

    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::PAYLOAD..]
    }

    /// Computes the checksum in full over the pseudo header and the whole buffer.
    #[inline]
    pub fn fill_checksum(&mut self, src: &IpAddr, dst: &IpAddr) {
        self.set_checksum(0);
        let c = checksum::transport(src, dst, protocol::ICMPV6, self.buffer.as_ref());
        self.set_checksum(c);
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for Icmpv6Packet<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// Finds a link-layer address option (`kind` 1 = source, 2 = target) in NDP
/// options. Stops at a zero-length or overrunning option (RFC 4861 §4.6 says
/// to drop such a packet; the caller sees `None`).
pub fn find_lladdr_option(mut opts: &[u8], kind: u8) -> Option<MacAddr> {
    while let [t, l, ..] = *opts {
        let len = usize::from(l) * 8;
        if len == 0 || len > opts.len() {
            return None;
        }
        if t == kind && len >= 8 {
            return Some(MacAddr(get_array(opts, 2)));
        }
        opts = &opts[len..];
    }
    None
}

/// Writes an 8-byte link-layer address option at the start of `buf`.
pub fn put_lladdr_option(buf: &mut [u8], kind: u8, mac: MacAddr) -> Result<()> {
    let o = buf.get_mut(..8).ok_or(Error::Truncated)?;
    o[0] = kind;
    o[1] = 1;
    o[2..].copy_from_slice(&mac.0);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::XorShift;

    fn a(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    #[test]
    fn neighbor_advert_build_and_parse() {
        let (src, dst) = (IpAddr::V6(a("2001:db8::64")), IpAddr::V6(a("2001:db8::1")));
        let mac = MacAddr([2, 0, 0, 0, 0, 0x64]);
        let mut b = [0xeeu8; 32];
        let mut p = Icmpv6Packet::new_checked(&mut b[..]).unwrap();
        p.set_msg_type(msg_type::NEIGHBOR_ADVERT);
        p.set_code(0);
        p.set_na_flags(na_flags::SOLICITED | na_flags::OVERRIDE);
        p.set_target_addr(a("2001:db8::64")).unwrap();
        put_lladdr_option(p.ndp_options_mut(), ndp_option::TARGET_LLADDR, mac).unwrap();
        p.fill_checksum(&src, &dst);
        let p = Icmpv6Packet::new_checked(&b[..]).unwrap();
        assert!(p.verify_checksum(&src, &dst));
        assert!(!p.verify_checksum(&dst, &dst));
        assert_eq!(p.na_flags(), 0x60);
        assert_eq!(p.rest(), 0x6000_0000);
        assert_eq!(p.target_addr(), Some(a("2001:db8::64")));
        assert_eq!(p.ndp_lladdr(ndp_option::TARGET_LLADDR), Some(mac));
        assert_eq!(p.ndp_lladdr(ndp_option::SOURCE_LLADDR), None);
        assert!(!p.is_error());
    }

    #[test]
    fn short_messages_have_no_nd_fields() {
        let mut b = [135u8, 0, 0, 0, 0, 0, 0, 0, 1, 2];
        let mut p = Icmpv6Packet::new_checked(&mut b[..]).unwrap();
        assert_eq!(p.target_addr(), None);
        assert!(p.ndp_options().is_empty());
        assert_eq!(p.set_target_addr(Ipv6Addr::LOCALHOST), Err(Error::Truncated));
        assert!(p.ndp_options_mut().is_empty());
        assert_eq!(put_lladdr_option(&mut [0; 7], 1, MacAddr::ZERO), Err(Error::Truncated));
    }

    #[test]
    fn option_walk_edge_cases() {
        let mac = [1, 2, 3, 4, 5, 6];
        let src_opt = [1, 1, 1, 2, 3, 4, 5, 6];
        let other = [14, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(find_lladdr_option(&[&other[..], &src_opt[..]].concat(), 1), Some(MacAddr(mac)));
        assert_eq!(find_lladdr_option(&[0, 0, 1, 1, 1, 2, 3, 4, 5, 6], 1), None, "zero length");
        assert_eq!(find_lladdr_option(&[1, 2, 1, 2, 3, 4, 5, 6], 1), None, "overrun");
        assert_eq!(find_lladdr_option(&[1], 1), None);
        assert_eq!(find_lladdr_option(&[], 1), None);
    }

    #[test]
    fn packet_too_big_and_errors() {
        let (s, d) = (IpAddr::V6(a("fe80::1")), IpAddr::V6(a("fe80::2")));
        let mut b = [0u8; 8 + 48];
        let mut p = Icmpv6Packet::new_checked(&mut b[..]).unwrap();
        p.set_msg_type(msg_type::PKT_TOO_BIG);
        p.set_mtu(1280);
        p.payload_mut()[0] = 0x60;
        p.fill_checksum(&s, &d);
        assert!(p.verify_checksum(&s, &d));
        assert_eq!((p.mtu(), p.pointer()), (1280, 1280));
        assert!(p.is_error());
        let inner = crate::Ipv6Packet::new_checked_header(p.payload()).unwrap();
        assert_eq!(inner.version(), 6);
        p.set_msg_type(msg_type::ECHO_REQUEST);
        p.set_echo_ident(9);
        p.set_echo_seq_no(10);
        assert_eq!((p.echo_ident(), p.echo_seq_no()), (9, 10));
        assert!(!p.is_error());
        assert!(!p.verify_checksum(&s, &d));
    }

    #[test]
    fn prefixes_and_garbage() {
        let mut rng = XorShift::new(66);
        let s = IpAddr::V6(Ipv6Addr::LOCALHOST);
        for _ in 0..10_000 {
            let mut g = rng.garbage(60);
            if g.len() >= 24 {
                g[24..].iter_mut().step_by(8).for_each(|b| *b %= 4);
            }
            match Icmpv6Packet::new_checked(&mut g[..]) {
                Ok(mut p) => {
                    let _ = (p.msg_type(), p.code(), p.mtu(), p.target_addr(), p.ndp_options());
                    let _ = (p.ndp_lladdr(1), p.ndp_lladdr(2), p.payload(), p.na_flags());
                    p.fill_checksum(&s, &s);
                    assert!(p.verify_checksum(&s, &s));
                }
                Err(e) => assert_eq!(e, Error::Truncated),
            }
        }
    }
}
