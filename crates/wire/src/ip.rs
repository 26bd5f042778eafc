//! Things shared by IPv4 and IPv6: protocol numbers and the L4 port peek used
//! for ICMP-embedded headers (lvs-semantics.md §14), where only the first 8
//! bytes of the transport header are quoted and a full TCP/UDP view would not
//! pass its length checks.

/// IP protocol / IPv6 next-header numbers used by rvs.
pub mod protocol {
    pub const HOPOPT: u8 = 0;
    pub const ICMP: u8 = 1;
    pub const IPIP: u8 = 4;
    pub const TCP: u8 = 6;
    pub const UDP: u8 = 17;
    pub const IPV6: u8 = 41;
    pub const IPV6_ROUTE: u8 = 43;
    pub const IPV6_FRAG: u8 = 44;
    pub const GRE: u8 = 47;
    pub const ESP: u8 = 50;
    pub const AH: u8 = 51;
    pub const ICMPV6: u8 = 58;
    pub const IPV6_NONXT: u8 = 59;
    pub const IPV6_OPTS: u8 = 60;
    pub const SCTP: u8 = 132;
}

/// The IP version nibble of a packet, if there is a first byte.
#[inline]
pub fn version(packet: &[u8]) -> Option<u8> {
    packet.first().map(|b| b >> 4)
}

/// Source and destination ports of a TCP, UDP or SCTP header (all three keep
/// them in bytes 0..4); `None` if fewer than 4 bytes are present.
#[inline]
pub fn ports(l4: &[u8]) -> Option<(u16, u16)> {
    match l4 {
        [a, b, c, d, ..] => Some((u16::from_be_bytes([*a, *b]), u16::from_be_bytes([*c, *d]))),
        _ => None,
    }
}

/// Writes ports into bytes 0..4 of a TCP/UDP/SCTP header (ICMP-embedded
/// rewrite, where the embedded L4 checksum is deliberately left alone:
/// lvs-semantics.md §14). `false` if the slice is shorter than 4 bytes.
#[inline]
pub fn set_ports(l4: &mut [u8], src: u16, dst: u16) -> bool {
    match l4.get_mut(..4) {
        Some(p) => {
            p[..2].copy_from_slice(&src.to_be_bytes());
            p[2..].copy_from_slice(&dst.to_be_bytes());
            true
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_peek() {
        assert_eq!(ports(&[0x9e, 0x40, 0x00, 0x50, 1, 2]), Some((40512, 80)));
        assert_eq!(ports(&[0x9e, 0x40, 0x00]), None);
        let mut b = [0u8; 4];
        assert!(set_ports(&mut b, 1, 0x1f90));
        assert_eq!(b, [0, 1, 0x1f, 0x90]);
        assert!(!set_ports(&mut b[..3], 1, 2));
        assert_eq!(version(&[0x45]), Some(4));
        assert_eq!(version(&[]), None);
    }
}
