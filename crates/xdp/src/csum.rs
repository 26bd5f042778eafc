//! Partial transport checksums on frames from AF_XDP.
//!
//! A veth peer with TX checksum offload sends TCP/UDP whose checksum field holds only the
//! folded pseudo-header sum (CHECKSUM_PARTIAL). AF_PACKET flags such frames
//! (`TP_STATUS_CSUMNOTREADY`); an AF_XDP descriptor does not (DESIGN.md "AF_XDP on this kind
//! of machine"). So the frame itself is asked: a field equal to the pseudo-header sum whose
//! segment does not verify is partial, and the node completes it (`CsumState::Partial`) as
//! it does for the AF_PACKET flag. Only frames whose field matches the pseudo-header sum pay
//! for the full sum, and those need it anyway to be completed.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use wire::checksum;

const TCP: u8 = 6;
const UDP: u8 = 17;

/// Whether `frame` (from its Ethernet header) is IPv4/IPv6 TCP or UDP with a partial checksum.
#[inline]
pub fn partial_l4(frame: &[u8]) -> bool {
    let Some(et) = frame.get(12..14) else { return false };
    let (src, dst, proto, seg) = match et {
        [0x08, 0x00] => {
            let Some(ip) = frame.get(14..34) else { return false };
            if ip[0] != 0x45 || u16::from_be_bytes([ip[6], ip[7]]) & 0x3fff != 0 {
                return false; // options or fragment: not what offload leaves
            }
            let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
            let Some(seg) = frame.get(34..14 + total.max(20)) else { return false };
            let a = |o: usize| IpAddr::V4(Ipv4Addr::new(ip[o], ip[o + 1], ip[o + 2], ip[o + 3]));
            (a(12), a(16), ip[9], seg)
        }
        [0x86, 0xdd] => {
            let Some(ip) = frame.get(14..54) else { return false };
            let plen = usize::from(u16::from_be_bytes([ip[4], ip[5]]));
            let Some(seg) = frame.get(54..54 + plen) else { return false };
            let a = |o: usize| {
                let mut b = [0u8; 16];
                b.copy_from_slice(&ip[o..o + 16]);
                IpAddr::V6(Ipv6Addr::from(b))
            };
            (a(8), a(24), ip[6], seg)
        }
        _ => return false,
    };
    let off = match proto {
        TCP => 16,
        UDP => 6,
        _ => return false,
    };
    let Some(field) = seg.get(off..off + 2) else { return false };
    let field = u16::from_be_bytes([field[0], field[1]]);
    let pseudo = checksum::fold(checksum::pseudo_header(&src, &dst, proto, seg.len() as u32));
    field == pseudo && checksum::transport(&src, &dst, proto, seg) != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn udp4(payload: &[u8]) -> Vec<u8> {
        let b =
            etherparse::PacketBuilder::ethernet2([1; 6], [2; 6]).ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64).udp(1000, 53);
        let mut v = Vec::new();
        b.write(&mut v, payload).unwrap();
        v
    }

    fn tcp6(payload: &[u8]) -> Vec<u8> {
        let b = etherparse::PacketBuilder::ethernet2([1; 6], [2; 6])
            .ipv6([0xfd; 16], [0xfe; 16], 64)
            .tcp(40000, 80, 1, 1000);
        let mut v = Vec::new();
        b.write(&mut v, payload).unwrap();
        v
    }

    /// Makes a finished frame look as a veth peer with offload hands it over.
    fn make_partial(f: &mut [u8], seg_start: usize, off: usize, src: IpAddr, dst: IpAddr, proto: u8) {
        let len = (f.len() - seg_start) as u32;
        let p = checksum::fold(checksum::pseudo_header(&src, &dst, proto, len));
        f[seg_start + off..seg_start + off + 2].copy_from_slice(&p.to_be_bytes());
    }

    #[test]
    fn finished_checksums_are_not_partial() {
        assert!(!partial_l4(&udp4(b"hello")));
        assert!(!partial_l4(&tcp6(b"GET / HTTP/1.1\r\n\r\n")));
    }

    #[test]
    fn a_pseudo_header_sum_in_the_field_is_partial_ipv4_udp_and_ipv6_tcp() {
        let mut f = udp4(b"hello");
        make_partial(&mut f, 34, 6, "10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap(), UDP);
        assert!(partial_l4(&f));
        let mut f = tcp6(b"GET / HTTP/1.1\r\n\r\n");
        let a = IpAddr::V6(Ipv6Addr::from([0xfd; 16]));
        let b = IpAddr::V6(Ipv6Addr::from([0xfe; 16]));
        make_partial(&mut f, 54, 16, a, b, TCP);
        assert!(partial_l4(&f));
    }

    #[test]
    fn a_wrong_checksum_that_is_not_the_pseudo_sum_is_not_partial_and_short_frames_are_safe() {
        let mut f = udp4(b"hello");
        f[34 + 6] ^= 0x55;
        assert!(!partial_l4(&f));
        for n in 0..f.len() {
            let _ = partial_l4(&f[..n]);
        }
        assert!(!partial_l4(&[]));
    }
}
