//! The kernel's hash functions as the hashing schedulers use them (lvs-semantics.md §15,
//! test-vectors.md §3–§4): `hash_32`, the IPv6 address fold and 64-bit `hsiphash`.

use std::net::IpAddr;

/// `GOLDEN_RATIO_32` of `<linux/hash.h>`.
pub const GOLDEN_RATIO_32: u32 = 0x61C8_8647;

/// `hash_32(v, bits)`: multiply by the golden ratio and keep the high `bits` bits.
#[inline]
pub fn hash_32(v: u32, bits: u32) -> u32 {
    debug_assert!((1..=32).contains(&bits));
    v.wrapping_mul(GOLDEN_RATIO_32) >> (32 - bits)
}

/// `ntohl(addr_fold)`: an IPv4 address as a host-order u32, an IPv6 address as the XOR of its
/// four 32-bit words (XOR commutes with the byte swap, so folding host-order words is the same).
#[inline]
pub fn addr_fold(addr: &IpAddr) -> u32 {
    match addr {
        IpAddr::V4(a) => u32::from(*a),
        IpAddr::V6(a) => {
            let b = a.octets();
            let w = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
            w(0) ^ w(4) ^ w(8) ^ w(12)
        }
    }
}

/// A 128-bit `hsiphash_key_t` as two 64-bit machine words.
pub type HsipKey = [u64; 2];

const C0: u64 = 0x736f_6d65_7073_6575;
const C1: u64 = 0x646f_7261_6e64_6f6d;
const C2: u64 = 0x6c79_6765_6e65_7261;
const C3: u64 = 0x7465_6462_7974_6573;

#[inline(always)]
fn sipround(v: &mut [u64; 4]) {
    v[0] = v[0].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(13);
    v[1] ^= v[0];
    v[0] = v[0].rotate_left(32);
    v[2] = v[2].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(16);
    v[3] ^= v[2];
    v[0] = v[0].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(21);
    v[3] ^= v[0];
    v[2] = v[2].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(17);
    v[1] ^= v[2];
    v[2] = v[2].rotate_left(32);
}

/// `hsiphash()` of a 64-bit kernel: SipHash-1-3 with a 32-bit result `(v0^v1)^(v2^v3)`
/// truncated (lib/siphash.c; test-vectors.md §4). 32-bit kernels differ (HalfSipHash).
pub fn hsiphash(data: &[u8], key: &HsipKey) -> u32 {
    let mut v = [C0 ^ key[0], C1 ^ key[1], C2 ^ key[0], C3 ^ key[1]];
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        let m = u64::from_le_bytes(w);
        v[3] ^= m;
        sipround(&mut v);
        v[0] ^= m;
    }
    let mut b = (data.len() as u64) << 56;
    for (i, byte) in chunks.remainder().iter().enumerate() {
        b |= (*byte as u64) << (8 * i);
    }
    v[3] ^= b;
    sipround(&mut v);
    v[0] ^= b;
    v[2] ^= 0xff;
    sipround(&mut v);
    sipround(&mut v);
    sipround(&mut v);
    ((v[0] ^ v[1]) ^ (v[2] ^ v[3])) as u32
}

/// `hsiphash(&v, sizeof(u32), key)`: the u32 is hashed as its bytes in host order, which is
/// little-endian on the kernels the vectors come from (lvs-semantics.md §15 mh).
#[inline]
pub fn hsiphash_u32(v: u32, key: &HsipKey) -> u32 {
    hsiphash(&v.to_le_bytes(), key)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn hash_32_table() {
        // test-vectors.md §3: (addr, hash_32(v,8), with port 80, hash_32(v,10)).
        let rows = [
            ("10.0.0.1", 39, 182, 159),
            ("10.0.0.2", 137, 24, 550),
            ("192.168.1.1", 136, 23, 547),
            ("203.0.113.7", 124, 11, 499),
        ];
        for (a, h8, h8p, h10) in rows {
            let v = addr_fold(&v4(a));
            assert_eq!(hash_32(v, 8), h8, "{a}");
            assert_eq!(hash_32(v.wrapping_add(80), 8), h8p, "{a}:80");
            assert_eq!(hash_32(v, 10), h10, "{a} lblc");
        }
        assert_eq!(GOLDEN_RATIO_32, 0u32.wrapping_sub(2654435769));
    }

    #[test]
    fn ipv6_fold_is_xor_of_words() {
        let a: IpAddr = "2001:db8::1:2".parse().unwrap();
        assert_eq!(addr_fold(&a), 0x2001_0db8 ^ 0x0001_0002);
        let b: IpAddr = "::".parse().unwrap();
        assert_eq!(addr_fold(&b), 0);
    }

    const KERNEL_VECTORS: [u32; 64] = [
        0x050fc4dc, 0x7d57ca93, 0x4dc7d44d, 0xe7ddf7fb, 0x88d38328, 0x49533b67, 0xc59f22a7, 0x9bb11140, 0x8d299a8e,
        0x6c063de4, 0x92ff097f, 0xf94dc352, 0x57b4d9a2, 0x1229ffa7, 0xc0f95d34, 0x2a519956, 0x7d908b66, 0x63dbd80c,
        0xb473e63e, 0x8d297d1c, 0xa6cce040, 0x2b45f844, 0xa320872e, 0xdae6c123, 0x67349c8c, 0x705b0979, 0xca9913a5,
        0x4ade3b35, 0xef6cd00d, 0x4ab1e1f4, 0x43c5e663, 0x8c21d1bc, 0x16a7b60d, 0x7a8ff9bf, 0x1f2a753e, 0xbf186b91,
        0xada26206, 0xa3c33057, 0xae3a36a1, 0x7b108392, 0x99e41531, 0x3f1ad944, 0xc8138825, 0xc28949a6, 0xfaf8876b,
        0x9f042196, 0x68b1d623, 0x8b5114fd, 0xdf074c46, 0x12cc86b3, 0x0a52098f, 0x9d292f9a, 0xa2f41f12, 0x43a71ed0,
        0x73f0bce6, 0x70a7e980, 0x243c6d75, 0xfdb71513, 0xa67d8a08, 0xb7e8f148, 0xf7a644ee, 0x0f1837f2, 0x4b6694e0,
        0xb7bbb3a8,
    ];

    #[test]
    fn hsiphash_all_64_kernel_vectors() {
        let key: HsipKey = [0x0706050403020100, 0x0f0e0d0c0b0a0908];
        let input: Vec<u8> = (0u8..64).collect();
        for (i, want) in KERNEL_VECTORS.iter().enumerate() {
            assert_eq!(hsiphash(&input[..i], &key), *want, "length {i}");
        }
        assert_eq!(hsiphash_u32(0x03020100, &key), 0x88d38328);
    }
}
