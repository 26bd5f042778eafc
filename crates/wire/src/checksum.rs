//! Internet checksum math: RFC 1071 (full computation) and RFC 1624 (incremental
//! update). Vectors: test-vectors.md §1 and §2.
//!
//! Representation: [`sum`] returns the *unfolded* sum of big-endian 16-bit words,
//! so partial sums (pseudo header + segment) can be added before one [`fold`].
//! Incremental updates use RFC 1624 equation 3, `~(~HC + ~m + m')`, which is what
//! the kernel does (lvs-semantics.md §16); note it can turn a stored `ffff` into
//! `0000` (test-vectors.md §1 row 4), which matters for UDP (see [`crate::udp`]).

use std::net::IpAddr;

/// Bytes summed per inner block before the lane accumulator is drained.
/// Each 16-byte step adds at most 4 * 0xffff to a 32-bit lane, so a lane
/// holds 16384 steps; 4096 steps (64 KiB) leaves a wide margin.
const BLOCK: usize = 64 * 1024;

/// Sum of the big-endian 16-bit words of `data` (an odd trailing byte is padded
/// with a zero byte), not folded and not complemented.
///
/// For inputs up to 128 KiB (every packet) this is exactly the naive word sum.
/// Longer inputs whose sum exceeds `u32` are reduced with end-around carry, so the
/// result stays congruent modulo `0xffff` and folds to the same checksum.
/// Adding a few results (pseudo header + segment) in `u32` cannot overflow for
/// packet-sized inputs.
///
/// Speed: 16 bytes per step. Each big-endian `u64` is split into two lanes of
/// 16-bit words at bit 0 and bit 32 (`x & M` and `(x >> 16) & M`), so no carry
/// is lost and the lanes are added at the end.
#[inline]
pub fn sum(data: &[u8]) -> u32 {
    const M: u64 = 0x0000_ffff_0000_ffff;
    let mut total: u64 = 0;
    for block in data.chunks(BLOCK) {
        let mut acc_a: u64 = 0;
        let mut acc_b: u64 = 0;
        let mut chunks = block.chunks_exact(16);
        for c in &mut chunks {
            let x = u64::from_be_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
            let y = u64::from_be_bytes([c[8], c[9], c[10], c[11], c[12], c[13], c[14], c[15]]);
            acc_a += (x & M) + ((x >> 16) & M);
            acc_b += (y & M) + ((y >> 16) & M);
        }
        let mut acc = (acc_a & 0xffff_ffff) + (acc_a >> 32) + (acc_b & 0xffff_ffff) + (acc_b >> 32);
        let mut words = chunks.remainder().chunks_exact(2);
        for w in &mut words {
            acc += u64::from(u16::from_be_bytes([w[0], w[1]]));
        }
        if let [last] = words.remainder() {
            acc += u64::from(*last) << 8;
        }
        total += acc;
    }
    reduce64(total)
}

/// End-around carry from 64 to 32 bits (2^32 ≡ 1 mod 0xffff).
#[inline(always)]
fn reduce64(mut s: u64) -> u32 {
    while s >> 32 != 0 {
        s = (s & 0xffff_ffff) + (s >> 32);
    }
    s as u32
}

/// One's-complement addition of two unfolded sums (end-around carry), for
/// combining [`pseudo_header`] with [`sum`] without any chance of overflow.
#[inline]
pub fn combine(a: u32, b: u32) -> u32 {
    let (s, carry) = a.overflowing_add(b);
    s + u32::from(carry)
}

/// Checksum of a transport segment over its pseudo header: the value to store
/// with the checksum field zeroed, or, over a segment with its checksum in
/// place, 0 when the checksum is correct.
#[inline]
pub fn transport(src: &IpAddr, dst: &IpAddr, proto: u8, segment: &[u8]) -> u16 {
    let len = u32::try_from(segment.len()).unwrap_or(u32::MAX);
    !fold(combine(pseudo_header(src, dst, proto, len), sum(segment)))
}

/// Folds a sum to 16 bits with end-around carry (RFC 1071 §4.1). A non-zero
/// sum never folds to 0.
#[inline]
pub fn fold(sum: u32) -> u16 {
    let s = (sum & 0xffff) + (sum >> 16);
    let s = (s & 0xffff) + (s >> 16);
    s as u16
}

/// Does a 20-byte IPv4 header (no options) carry a correct checksum? [`sum`] for the one size
/// every packet has: five 32-bit words, no loop.
#[inline]
pub fn ipv4_header_ok(h: &[u8; 20]) -> bool {
    fold(ipv4_header_sum(h)) == 0xffff
}

/// The checksum to write into a 20-byte IPv4 header whose checksum field is zero:
/// [`checksum`] without a loop.
#[inline]
pub fn ipv4_header_checksum(h: &[u8; 20]) -> u16 {
    !fold(ipv4_header_sum(h))
}

#[inline(always)]
fn ipv4_header_sum(h: &[u8; 20]) -> u32 {
    let w = |i: usize| u64::from(u32::from_be_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]));
    reduce64(w(0) + w(4) + w(8) + w(12) + w(16))
}

/// The Internet checksum of `data`: `!fold(sum(data))`.
#[inline]
pub fn checksum(data: &[u8]) -> u16 {
    !fold(sum(data))
}

/// Unfolded sum of the TCP/UDP/ICMPv6 pseudo header: both addresses, the
/// protocol (next header) and the upper-layer length.
///
/// IPv4 (RFC 793/768) carries a 16-bit length, IPv6 (RFC 8200 §8.1) a 32-bit
/// one; both are the same words in the sum, so one formula covers both. Mixed
/// families are not meaningful; they are summed anyway rather than panicking.
#[inline]
pub fn pseudo_header(src: &IpAddr, dst: &IpAddr, proto: u8, len: u32) -> u32 {
    addr_sum(src) + addr_sum(dst) + u32::from(proto) + (len >> 16) + (len & 0xffff)
}

#[inline(always)]
fn addr_sum(a: &IpAddr) -> u32 {
    match a {
        IpAddr::V4(a) => {
            let o = a.octets();
            u32::from(u16::from_be_bytes([o[0], o[1]])) + u32::from(u16::from_be_bytes([o[2], o[3]]))
        }
        IpAddr::V6(a) => a.segments().iter().map(|&w| u32::from(w)).sum(),
    }
}

/// RFC 1624 eqn 3: the checksum `hc` after one 16-bit word changes from `old`
/// to `new`: `~(~HC + ~m + m')`.
#[inline]
pub fn update16(hc: u16, old: u16, new: u16) -> u16 {
    !fold(u32::from(!hc) + u32::from(!old) + u32::from(new))
}

/// [`update16`] for a 32-bit field (two words at once, e.g. a sequence number
/// or an IPv4 address as a `u32`).
#[inline]
pub fn update32(hc: u16, old: u32, new: u32) -> u16 {
    let s = u32::from(!hc) + u32::from(!(old >> 16) as u16) + u32::from(!(old as u16)) + (new >> 16) + (new & 0xffff);
    !fold(s)
}

/// Eqn 3 over a multi-word field, e.g. a 4- or 16-byte address, applied word
/// by word: `~(~HC + Σ~m_i + Σm'_i)`.
///
/// The fields should have equal, even lengths. Anything else does not panic: an
/// odd trailing byte is padded with zero (as in [`sum`]) and the shorter field
/// is treated as zero-padded to the longer one.
#[inline]
pub fn update_bytes(hc: u16, old: &[u8], new: &[u8]) -> u16 {
    let mut s: u64 = u64::from(!hc);
    let words = old.len().max(new.len()).div_ceil(2);
    for i in 0..words {
        let o = word_at(old, i);
        let n = word_at(new, i);
        s += u64::from(!o) + u64::from(n);
    }
    !fold(reduce64(s))
}

#[inline(always)]
fn word_at(b: &[u8], i: usize) -> u16 {
    let hi = b.get(2 * i).copied().unwrap_or(0);
    let lo = b.get(2 * i + 1).copied().unwrap_or(0);
    u16::from_be_bytes([hi, lo])
}

/// [`update_bytes`] for an address in a pseudo header or IP header (NAT).
/// Both addresses should be of the same family; a v4/v6 mix is handled as
/// octets of different lengths (see [`update_bytes`]) instead of panicking.
#[inline]
pub fn update_addr(hc: u16, old: &IpAddr, new: &IpAddr) -> u16 {
    match (old, new) {
        (IpAddr::V4(o), IpAddr::V4(n)) => update32(hc, u32::from(*o), u32::from(*n)),
        (IpAddr::V6(o), IpAddr::V6(n)) => update_bytes(hc, &o.octets(), &n.octets()),
        (IpAddr::V4(o), IpAddr::V6(n)) => update_bytes(hc, &o.octets(), &n.octets()),
        (IpAddr::V6(o), IpAddr::V4(n)) => update_bytes(hc, &o.octets(), &n.octets()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{XorShift, hex};
    use std::net::{Ipv4Addr, Ipv6Addr};

    /// The obvious byte-pair reference implementation.
    fn naive_sum(data: &[u8]) -> u64 {
        let mut s = 0u64;
        for pair in data.chunks(2) {
            let hi = u64::from(pair[0]) << 8;
            let lo = pair.get(1).copied().map_or(0, u64::from);
            s += hi | lo;
        }
        s
    }

    fn naive_fold(mut s: u64) -> u16 {
        while s >> 16 != 0 {
            s = (s & 0xffff) + (s >> 16);
        }
        s as u16
    }

    #[test]
    fn rfc1071_example() {
        // test-vectors.md §1 row 1.
        let d = hex("0001 f203 f4f5 f6f7");
        assert_eq!(sum(&d), 0x2ddf0);
        assert_eq!(fold(sum(&d)), 0xddf2);
        assert_eq!(checksum(&d), 0x220d);
    }

    #[test]
    fn rfc1624_example() {
        // §1 row 2: other-header sum cd7a, field 5555 -> 3285.
        let old_hc = !fold(0xcd7a + 0x5555);
        assert_eq!(old_hc, 0xdd2f);
        assert_eq!(!fold(0xcd7a + 0x3285), 0x0000, "full recompute");
        // Eqn 2 (HC - ~m - m') in one's complement gives the other zero: ffff.
        let eqn2 = {
            let mut s = u32::from(old_hc) + u32::from(0x5555u16) + u32::from(!0x3285u16);
            s = u32::from(fold(s));
            s as u16
        };
        assert_eq!(eqn2, 0xffff);
        assert_eq!(update16(old_hc, 0x5555, 0x3285), 0x0000, "eqn 3");
    }

    #[test]
    fn eqn3_no_change_rows() {
        // §1 rows 3-5.
        assert_eq!(update16(0x0000, 0xabcd, 0xabcd), 0x0000);
        assert_eq!(update16(0xffff, 0xabcd, 0xabcd), 0x0000);
        assert_eq!(update16(0x1234, 0xabcd, 0xabcd), 0x1234);
        assert_eq!(update32(0x1234, 0xdead_beef, 0xdead_beef), 0x1234);
        assert_eq!(update_bytes(0x1234, &[1, 2, 3, 4], &[1, 2, 3, 4]), 0x1234);
    }

    #[test]
    fn ipv4_header_and_ttl() {
        // §1 rows 6-7.
        let mut h = hex("4500 0030 4422 4000 8006 0000 8c7c 19ac ae24 1e2b");
        assert_eq!(checksum(&h), 0x442e);
        assert_eq!(update16(0x442e, 0x8006, 0x7f06), 0x452e);
        h[8] = 0x7f;
        assert_eq!(checksum(&h), 0x452e);
    }

    #[test]
    fn nat_rewrite_tcp_vectors() {
        // §2 rows 1-2: the word list from the table, and the address/port helpers.
        let (c, v, r) = (
            IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7)),
            IpAddr::V4(Ipv4Addr::new(10, 0, 0, 100)),
            IpAddr::V4(Ipv4Addr::new(192, 168, 1, 11)),
        );
        let words = update_bytes(0xe1c1, &hex("0a00 0064 0050"), &hex("c0a8 010b 1f90"));
        assert_eq!(words, 0x0b32);
        let a = update16(update_addr(0xe1c1, &v, &r), 80, 8080);
        assert_eq!(a, 0x0b32);
        // Full computation of row 1 through the pseudo header.
        let tcp = hex("9e400050 00000001 00000000 5002faf0 00000000");
        assert_eq!(!fold(pseudo_header(&c, &v, 6, 20) + sum(&tcp)), 0xe1c1);
        // Row 3 -> row 4 (SNAT of the reply): incremental and full agree.
        let reply = hex("1f909e40 000003e8 00000002 5012fe88 00000000");
        let full3 = !fold(pseudo_header(&r, &c, 6, 20) + sum(&reply));
        assert_eq!(full3, 0x03a1);
        let inc4 = update16(update_addr(full3, &r, &v), 8080, 80);
        assert_eq!(inc4, 0xda30);
        let mut reply4 = reply.clone();
        reply4[..2].copy_from_slice(&80u16.to_be_bytes());
        assert_eq!(!fold(pseudo_header(&v, &c, 6, 20) + sum(&reply4)), 0xda30);
    }

    #[test]
    fn ipv4_nat_header_vectors() {
        // §2 rows 1-2 IP headers: checksum by full computation and by increments.
        let h1 = hex("45000028 12344000 4006f3fd c6336407 0a000064");
        let h2 = hex("45000028 12344000 3f063dae c6336407 c0a8010b");
        assert_eq!(checksum(&h1), 0);
        assert_eq!(checksum(&h2), 0);
        let c = update16(0xf3fd, 0x4006, 0x3f06);
        let c = update32(c, 0x0a00_0064, 0xc0a8_010b);
        assert_eq!(c, 0x3dae);
    }

    #[test]
    fn sum_matches_naive_all_lengths_and_alignments() {
        let mut rng = XorShift::new(0x5eed);
        let buf = rng.bytes(256 + 16);
        for start in 0..16 {
            for len in 0..=200 {
                let d = &buf[start..start + len];
                assert_eq!(u64::from(sum(d)), naive_sum(d), "start {start} len {len}");
            }
        }
        // All-0xff data maximises carries.
        let ff = vec![0xffu8; 300];
        for len in 0..=ff.len() {
            assert_eq!(u64::from(sum(&ff[..len])), naive_sum(&ff[..len]));
        }
    }

    #[test]
    fn sum_large_inputs_stay_congruent() {
        let mut rng = XorShift::new(7);
        for len in [65535, 65536, 65537, 131072, 131073, 300_001] {
            let d = rng.bytes(len);
            let n = naive_sum(&d);
            assert_eq!(fold(sum(&d)), naive_fold(n), "len {len}");
            if n <= u64::from(u32::MAX) {
                assert_eq!(u64::from(sum(&d)), n);
            }
            let ff = vec![0xffu8; len];
            assert_eq!(fold(sum(&ff)), naive_fold(naive_sum(&ff)));
        }
        assert_eq!(sum(&[]), 0);
        assert_eq!(checksum(&[]), 0xffff);
        assert_eq!(fold(0), 0);
        assert_eq!(fold(0xffff_ffff), 0xffff);
        assert_eq!(fold(0x1_fffe), 0xffff);
    }

    /// Sets the checksum field at `at` of `data` by full computation.
    fn full(data: &mut [u8], at: usize) -> u16 {
        data[at..at + 2].copy_from_slice(&[0, 0]);
        let c = checksum(data);
        data[at..at + 2].copy_from_slice(&c.to_be_bytes());
        c
    }

    /// Eqn 3 equals the full recomputation exactly whenever the data (without
    /// the checksum) is non-zero before and after: both results then lie in
    /// 0000..=fffe and are congruent modulo ffff.
    #[test]
    fn incremental_matches_full_random() {
        let mut rng = XorShift::new(0xfeed_beef);
        for round in 0..20_000 {
            let len = 6 + 2 * rng.below(40);
            let mut d = rng.bytes(len);
            d[2] |= 1; // word 1 is never modified: the data stays non-zero
            let hc = full(&mut d, 0);
            let field_len = [2usize, 4, 16][round % 3].min(len - 4);
            let off = 4 + 2 * rng.below((len - 4 - field_len) / 2 + 1);
            let old = d[off..off + field_len].to_vec();
            let new = rng.bytes(field_len);
            d[off..off + field_len].copy_from_slice(&new);
            let want = full(&mut d, 0);
            let got = match field_len {
                2 => update16(hc, u16::from_be_bytes([old[0], old[1]]), u16::from_be_bytes([new[0], new[1]])),
                4 => update32(
                    hc,
                    u32::from_be_bytes([old[0], old[1], old[2], old[3]]),
                    u32::from_be_bytes([new[0], new[1], new[2], new[3]]),
                ),
                _ => update_bytes(hc, &old, &new),
            };
            assert_eq!(got, want, "round {round} len {len} off {off}");
            assert_eq!(update_bytes(hc, &old, &new), want, "round {round}");
        }
    }

    #[test]
    fn update_addr_v6_matches_full() {
        let mut rng = XorShift::new(99);
        for _ in 0..2000 {
            let mut seg = rng.bytes(40);
            seg[0] |= 0x80;
            let src = IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(rng.bytes(16)).unwrap()));
            let dst = IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(rng.bytes(16)).unwrap()));
            let dst2 = IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(rng.bytes(16)).unwrap()));
            seg[16] = 0;
            seg[17] = 0;
            let before = !fold(pseudo_header(&src, &dst, 6, 40) + sum(&seg));
            let after = !fold(pseudo_header(&src, &dst2, 6, 40) + sum(&seg));
            assert_eq!(update_addr(before, &dst, &dst2), after);
        }
    }

    #[test]
    fn update_bytes_odd_and_unequal_do_not_panic() {
        // Zero-padding semantics: [1,2,3] -> [1,2,3,0] is no change.
        assert_eq!(update_bytes(0x1234, &[1, 2, 3], &[1, 2, 3, 0]), 0x1234);
        assert_eq!(update_bytes(0x1234, &[], &[]), !fold(u32::from(!0x1234u16)));
        let v4 = IpAddr::V4(Ipv4Addr::new(1, 2, 3, 4));
        let v6 = IpAddr::V6(Ipv6Addr::LOCALHOST);
        let _ = update_addr(0x1234, &v4, &v6);
    }

    #[test]
    fn combine_wraps() {
        assert_eq!(combine(0xffff_ffff, 1), 1);
        assert_eq!(combine(0xffff_ffff, 0xffff_ffff), 0xffff_ffff);
        assert_eq!(combine(2, 3), 5);
        assert_eq!(fold(combine(0xffff_0000, 0x0002_0000)), 2);
    }

    #[test]
    fn pseudo_header_v6_len_uses_both_words() {
        let a = IpAddr::V6(Ipv6Addr::UNSPECIFIED);
        assert_eq!(pseudo_header(&a, &a, 58, 0x0001_0002), 58 + 1 + 2);
    }

    #[test]
    fn ipv4_header_ok_agrees_with_sum() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..2000 {
            let mut h = [0u8; 20];
            for b in h.iter_mut() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *b = x as u8;
            }
            assert_eq!(ipv4_header_ok(&h), fold(sum(&h)) == 0xffff);
            h[10] = 0;
            h[11] = 0;
            let c = checksum(&h);
            assert_eq!(ipv4_header_checksum(&h), c);
            h[10..12].copy_from_slice(&c.to_be_bytes());
            assert!(ipv4_header_ok(&h));
        }
    }
}
