//! ARP for Ethernet/IPv4 (RFC 826), the only kind the node answers (for VIPs
//! and its own addresses, DESIGN.md "How a packet travels").

use crate::ethernet::MacAddr;
use crate::{Error, Result, get_array, get_u16, set_u16};
use std::net::Ipv4Addr;

/// ARP operation codes.
pub mod operation {
    pub const REQUEST: u16 = 1;
    pub const REPLY: u16 = 2;
}

/// Hardware type for Ethernet.
pub const HTYPE_ETHERNET: u16 = 1;
/// Protocol type for IPv4 (the IPv4 ethertype).
pub const PTYPE_IPV4: u16 = 0x0800;

mod field {
    pub const HTYPE: usize = 0;
    pub const PTYPE: usize = 2;
    pub const HLEN: usize = 4;
    pub const PLEN: usize = 5;
    pub const OPER: usize = 6;
    pub const SHA: usize = 8;
    pub const SPA: usize = 14;
    pub const THA: usize = 18;
    pub const TPA: usize = 24;
}

/// Length of an Ethernet/IPv4 ARP packet.
pub const HEADER_LEN: usize = 28;

/// A view of an Ethernet/IPv4 ARP packet.
#[derive(Debug, Clone)]
pub struct ArpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> ArpPacket<T> {
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        ArpPacket { buffer }
    }

    /// Checks the length (`Truncated`) and that this is Ethernet/IPv4 ARP:
    /// htype 1, ptype 0x0800, hlen 6, plen 4 (`Malformed` otherwise).
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self> {
        let p = Self::new_unchecked(buffer);
        p.check()?;
        Ok(p)
    }

    #[inline]
    pub fn check(&self) -> Result<()> {
        let b = self.buffer.as_ref();
        if b.len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        if get_u16(b, field::HTYPE) != HTYPE_ETHERNET
            || get_u16(b, field::PTYPE) != PTYPE_IPV4
            || b[field::HLEN] != 6
            || b[field::PLEN] != 4
        {
            return Err(Error::Malformed);
        }
        Ok(())
    }

    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    #[inline]
    pub fn hardware_type(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::HTYPE)
    }

    #[inline]
    pub fn protocol_type(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::PTYPE)
    }

    #[inline]
    pub fn hardware_len(&self) -> u8 {
        self.buffer.as_ref()[field::HLEN]
    }

    #[inline]
    pub fn protocol_len(&self) -> u8 {
        self.buffer.as_ref()[field::PLEN]
    }

    #[inline]
    pub fn operation(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::OPER)
    }

    #[inline]
    pub fn sender_hw(&self) -> MacAddr {
        MacAddr(get_array(self.buffer.as_ref(), field::SHA))
    }

    #[inline]
    pub fn sender_ip(&self) -> Ipv4Addr {
        Ipv4Addr::from(get_array::<4>(self.buffer.as_ref(), field::SPA))
    }

    #[inline]
    pub fn target_hw(&self) -> MacAddr {
        MacAddr(get_array(self.buffer.as_ref(), field::THA))
    }

    #[inline]
    pub fn target_ip(&self) -> Ipv4Addr {
        Ipv4Addr::from(get_array::<4>(self.buffer.as_ref(), field::TPA))
    }

    /// A gratuitous ARP announces the sender's own address (sender ip ==
    /// target ip); it updates caches but asks nothing.
    #[inline]
    pub fn is_gratuitous(&self) -> bool {
        self.sender_ip() == self.target_ip()
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> ArpPacket<T> {
    /// Writes htype/ptype/hlen/plen for Ethernet/IPv4.
    #[inline]
    pub fn fill_fixed(&mut self) {
        let b = self.buffer.as_mut();
        set_u16(b, field::HTYPE, HTYPE_ETHERNET);
        set_u16(b, field::PTYPE, PTYPE_IPV4);
        b[field::HLEN] = 6;
        b[field::PLEN] = 4;
    }

    #[inline]
    pub fn set_operation(&mut self, op: u16) {
        set_u16(self.buffer.as_mut(), field::OPER, op);
    }

    #[inline]
    pub fn set_sender_hw(&mut self, a: MacAddr) {
        self.buffer.as_mut()[field::SHA..field::SHA + 6].copy_from_slice(&a.0);
    }

    #[inline]
    pub fn set_sender_ip(&mut self, a: Ipv4Addr) {
        self.buffer.as_mut()[field::SPA..field::SPA + 4].copy_from_slice(&a.octets());
    }

    #[inline]
    pub fn set_target_hw(&mut self, a: MacAddr) {
        self.buffer.as_mut()[field::THA..field::THA + 6].copy_from_slice(&a.0);
    }

    #[inline]
    pub fn set_target_ip(&mut self, a: Ipv4Addr) {
        self.buffer.as_mut()[field::TPA..field::TPA + 4].copy_from_slice(&a.octets());
    }

    /// Turns a request in place into the reply from `our_mac`: the requester
    /// becomes the target and the asked-for address becomes the sender. The
    /// caller also swaps the Ethernet addresses (dst = old src, src = ours).
    #[inline]
    pub fn fill_reply(&mut self, our_mac: MacAddr) {
        let (req_hw, req_ip, asked_ip) = (self.sender_hw(), self.sender_ip(), self.target_ip());
        self.set_operation(operation::REPLY);
        self.set_target_hw(req_hw);
        self.set_target_ip(req_ip);
        self.set_sender_hw(our_mac);
        self.set_sender_ip(asked_ip);
    }

    /// Writes a complete request for `target_ip` (target hw zero).
    #[inline]
    pub fn fill_request(&mut self, sender_hw: MacAddr, sender_ip: Ipv4Addr, target_ip: Ipv4Addr) {
        self.fill_fixed();
        self.set_operation(operation::REQUEST);
        self.set_sender_hw(sender_hw);
        self.set_sender_ip(sender_ip);
        self.set_target_hw(MacAddr::ZERO);
        self.set_target_ip(target_ip);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{XorShift, hex};

    fn request() -> Vec<u8> {
        // who-has 10.0.0.100 tell 10.0.0.1 (02:00:00:00:00:01)
        hex("0001 0800 06 04 0001 020000000001 0a000001 000000000000 0a000064")
    }

    #[test]
    fn parse_request() {
        let b = request();
        let p = ArpPacket::new_checked(&b[..]).unwrap();
        assert_eq!(p.operation(), operation::REQUEST);
        assert_eq!(p.sender_hw(), MacAddr([2, 0, 0, 0, 0, 1]));
        assert_eq!(p.sender_ip(), Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(p.target_hw(), MacAddr::ZERO);
        assert_eq!(p.target_ip(), Ipv4Addr::new(10, 0, 0, 100));
        assert_eq!((p.hardware_type(), p.protocol_type(), p.hardware_len(), p.protocol_len()), (1, 0x800, 6, 4));
        assert!(!p.is_gratuitous());
    }

    #[test]
    fn reply_in_place() {
        let mut b = request();
        let ours = MacAddr([2, 0, 0, 0, 0, 0x64]);
        ArpPacket::new_checked(&mut b[..]).unwrap().fill_reply(ours);
        assert_eq!(b, hex("0001 0800 06 04 0002 020000000064 0a000064 020000000001 0a000001"));
    }

    #[test]
    fn build_request_matches_parse() {
        let mut b = [0xeeu8; HEADER_LEN];
        let mut p = ArpPacket::new_unchecked(&mut b[..]);
        p.fill_request(MacAddr([2, 0, 0, 0, 0, 1]), Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 100));
        assert_eq!(b.to_vec(), request());
    }

    #[test]
    fn rejects_other_kinds() {
        for (at, v) in [(1, 6u8), (2, 0x86), (4, 8), (5, 16)] {
            let mut b = request();
            b[at] = v;
            assert_eq!(ArpPacket::new_checked(&b[..]).unwrap_err(), Error::Malformed, "byte {at}");
        }
    }

    #[test]
    fn every_prefix_and_garbage() {
        let b = request();
        for len in 0..b.len() {
            assert_eq!(ArpPacket::new_checked(&b[..len]).unwrap_err(), Error::Truncated);
        }
        let mut rng = XorShift::new(3);
        for _ in 0..1000 {
            let mut g = rng.garbage(40);
            if g.len() >= 6 && rng.below(2) == 0 {
                g[..6].copy_from_slice(&b[..6]);
            }
            if let Ok(p) = ArpPacket::new_checked(&g[..]) {
                let _ = (p.operation(), p.sender_hw(), p.sender_ip(), p.target_hw(), p.target_ip());
            }
        }
    }
}
