//! SCTP common header (RFC 9260 §3.1) and its CRC32c checksum. IPVS reads the
//! ports and the first chunk type for its state machine, and recomputes the
//! CRC in full after NAT (lvs-semantics.md §13, §16): there is no incremental
//! update for a CRC.
//!
//! The CRC32c value is stored least-significant byte first (RFC 9260
//! Appendix A; Linux `sctp_compute_cksum` returns `cpu_to_le32`).
//! [`SctpPacket::checksum`] returns the CRC value, not the raw big-endian word.

use crate::{Error, Result, get_u16, get_u32, set_u16, set_u32};

mod field {
    pub const SRC_PORT: usize = 0;
    pub const DST_PORT: usize = 2;
    pub const VTAG: usize = 4;
    pub const CHECKSUM: usize = 8;
    pub const CHUNKS: usize = 12;
}

/// Common header length.
pub const HEADER_LEN: usize = 12;
/// Offset of the CRC32c field.
pub const CHECKSUM_OFFSET: usize = field::CHECKSUM;
/// Length of a chunk header (type, flags, length).
pub const CHUNK_HEADER_LEN: usize = 4;

/// Chunk types IPVS's state machine distinguishes.
pub mod chunk_type {
    pub const DATA: u8 = 0;
    pub const INIT: u8 = 1;
    pub const INIT_ACK: u8 = 2;
    pub const SACK: u8 = 3;
    pub const HEARTBEAT: u8 = 4;
    pub const HEARTBEAT_ACK: u8 = 5;
    pub const ABORT: u8 = 6;
    pub const SHUTDOWN: u8 = 7;
    pub const SHUTDOWN_ACK: u8 = 8;
    pub const ERROR: u8 = 9;
    pub const COOKIE_ECHO: u8 = 10;
    pub const COOKIE_ACK: u8 = 11;
    pub const SHUTDOWN_COMPLETE: u8 = 14;
}

/// A chunk header: type, flags and the length field (header + value,
/// without padding).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkHeader {
    pub chunk_type: u8,
    pub flags: u8,
    pub len: u16,
}

/// A view of an SCTP packet (the whole IP payload).
#[derive(Debug, Clone)]
pub struct SctpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> SctpPacket<T> {
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        SctpPacket { buffer }
    }

    /// Checks the common header fits. Chunks are read through
    /// `Option`-returning accessors.
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
    pub fn src_port(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::SRC_PORT)
    }

    #[inline]
    pub fn dst_port(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::DST_PORT)
    }

    #[inline]
    pub fn verification_tag(&self) -> u32 {
        get_u32(self.buffer.as_ref(), field::VTAG)
    }

    /// The stored CRC32c value (decoded from its little-endian bytes).
    #[inline]
    pub fn checksum(&self) -> u32 {
        let b = self.buffer.as_ref();
        u32::from_le_bytes([b[8], b[9], b[10], b[11]])
    }

    /// The chunks (12..).
    #[inline]
    pub fn chunks(&self) -> &[u8] {
        &self.buffer.as_ref()[field::CHUNKS..]
    }

    /// The first chunk's header, if its 4 bytes are present.
    #[inline]
    pub fn first_chunk(&self) -> Option<ChunkHeader> {
        match *self.chunks() {
            [t, f, l0, l1, ..] => Some(ChunkHeader { chunk_type: t, flags: f, len: u16::from_be_bytes([l0, l1]) }),
            _ => None,
        }
    }

    /// Iterates over chunk headers, stopping at a length below 4 or beyond
    /// the buffer.
    #[inline]
    pub fn chunk_headers(&self) -> ChunkIter<'_> {
        ChunkIter { rest: self.chunks() }
    }

    /// CRC32c over the packet with the checksum field taken as zero.
    #[inline]
    pub fn compute_checksum(&self) -> u32 {
        let b = self.buffer.as_ref();
        let c = crc32c_update(!0, &b[..field::CHECKSUM]);
        let c = crc32c_update(c, &[0; 4]);
        !crc32c_update(c, &b[field::CHUNKS..])
    }

    #[inline]
    pub fn verify_checksum(&self) -> bool {
        self.compute_checksum() == self.checksum()
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> SctpPacket<T> {
    #[inline]
    pub fn set_src_port(&mut self, p: u16) {
        set_u16(self.buffer.as_mut(), field::SRC_PORT, p);
    }

    #[inline]
    pub fn set_dst_port(&mut self, p: u16) {
        set_u16(self.buffer.as_mut(), field::DST_PORT, p);
    }

    #[inline]
    pub fn set_verification_tag(&mut self, v: u32) {
        set_u32(self.buffer.as_mut(), field::VTAG, v);
    }

    /// Stores a CRC32c value (little-endian bytes).
    #[inline]
    pub fn set_checksum(&mut self, crc: u32) {
        self.buffer.as_mut()[field::CHECKSUM..field::CHUNKS].copy_from_slice(&crc.to_le_bytes());
    }

    #[inline]
    pub fn chunks_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::CHUNKS..]
    }

    /// Recomputes the CRC32c in full.
    #[inline]
    pub fn fill_checksum(&mut self) {
        let c = self.compute_checksum();
        self.set_checksum(c);
    }
}

/// Iterator over SCTP chunk headers (see [`SctpPacket::chunk_headers`]).
#[derive(Debug, Clone)]
pub struct ChunkIter<'a> {
    rest: &'a [u8],
}

impl Iterator for ChunkIter<'_> {
    type Item = ChunkHeader;
    fn next(&mut self) -> Option<ChunkHeader> {
        let [t, f, l0, l1, ..] = *self.rest else {
            return None;
        };
        let len = u16::from_be_bytes([l0, l1]);
        let l = usize::from(len);
        if l < CHUNK_HEADER_LEN || l > self.rest.len() {
            self.rest = &[];
            return None;
        }
        // Chunks are padded to 4 bytes; the last one may omit its padding.
        let padded = (l + 3) & !3;
        self.rest = self.rest.get(padded..).unwrap_or(&[]);
        Some(ChunkHeader { chunk_type: t, flags: f, len })
    }
}

/// CRC32c (Castagnoli, reflected polynomial 0x82F63B78) lookup tables for
/// slicing-by-8, built at compile time.
static CRC_TABLES: [[u32; 256]; 8] = crc_tables();

const fn crc_tables() -> [[u32; 256]; 8] {
    let mut t = [[0u32; 256]; 8];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 { (c >> 1) ^ 0x82F6_3B78 } else { c >> 1 };
            k += 1;
        }
        t[0][i] = c;
        i += 1;
    }
    let mut i = 0;
    while i < 256 {
        let mut s = 1;
        while s < 8 {
            let prev = t[s - 1][i];
            t[s][i] = (prev >> 8) ^ t[0][(prev & 0xff) as usize];
            s += 1;
        }
        i += 1;
    }
    t
}

/// Feeds `data` into a running CRC32c register (start with `!0`, finish
/// with `!`).
#[inline]
pub fn crc32c_update(mut crc: u32, data: &[u8]) -> u32 {
    let t = &CRC_TABLES;
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        let lo = crc ^ u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        crc = t[7][(lo & 0xff) as usize]
            ^ t[6][((lo >> 8) & 0xff) as usize]
            ^ t[5][((lo >> 16) & 0xff) as usize]
            ^ t[4][(lo >> 24) as usize]
            ^ t[3][c[4] as usize]
            ^ t[2][c[5] as usize]
            ^ t[1][c[6] as usize]
            ^ t[0][c[7] as usize];
    }
    for &b in chunks.remainder() {
        crc = (crc >> 8) ^ t[0][((crc ^ u32::from(b)) & 0xff) as usize];
    }
    crc
}

/// CRC32c of `data`.
#[inline]
pub fn crc32c(data: &[u8]) -> u32 {
    !crc32c_update(!0, data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::XorShift;

    /// Bit-at-a-time reference.
    fn crc_ref(data: &[u8]) -> u32 {
        let mut c = !0u32;
        for &b in data {
            c ^= u32::from(b);
            for _ in 0..8 {
                c = if c & 1 != 0 { (c >> 1) ^ 0x82F6_3B78 } else { c >> 1 };
            }
        }
        !c
    }

    #[test]
    fn crc32c_published_vectors() {
        // The CRC catalogue check value and RFC 3720 §B.4 vectors.
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(crc32c(&[0u8; 32]), 0x8A91_36AA);
        assert_eq!(crc32c(&[0xffu8; 32]), 0x62A8_AB43);
        let inc: Vec<u8> = (0u8..32).collect();
        assert_eq!(crc32c(&inc), 0x46DD_794E);
        let dec: Vec<u8> = (0u8..32).rev().collect();
        assert_eq!(crc32c(&dec), 0x113F_DB5C);
        assert_eq!(crc32c(&[]), 0);
    }

    #[test]
    fn slicing_matches_bitwise() {
        let mut rng = XorShift::new(21);
        let d = rng.bytes(300);
        for start in 0..8 {
            for len in 0..=(300 - start).min(120) {
                let s = &d[start..start + len];
                assert_eq!(crc32c(s), crc_ref(s), "start {start} len {len}");
            }
        }
    }

    #[test]
    fn fill_verify_and_byte_order() {
        // INIT chunk, ports 5000 -> 80, vtag 0.
        let mut b = [0u8; 32];
        let mut p = SctpPacket::new_checked(&mut b[..]).unwrap();
        p.set_src_port(5000);
        p.set_dst_port(80);
        p.set_verification_tag(0);
        p.chunks_mut()[..4].copy_from_slice(&[chunk_type::INIT, 0, 0, 20]);
        p.fill_checksum();
        assert!(p.verify_checksum());
        let crc = p.checksum();
        // Stored little-endian: the same as crc32c over the zeroed packet.
        let mut z = b;
        z[8..12].fill(0);
        assert_eq!(crc32c(&z), crc);
        assert_eq!(b[8..12], crc.to_le_bytes());
        let p = SctpPacket::new_checked(&b[..]).unwrap();
        assert_eq!((p.src_port(), p.dst_port(), p.verification_tag()), (5000, 80, 0));
        assert_eq!(p.first_chunk(), Some(ChunkHeader { chunk_type: chunk_type::INIT, flags: 0, len: 20 }));
        // NAT: change a port, the CRC no longer matches until refilled.
        let mut p = SctpPacket::new_checked(&mut b[..]).unwrap();
        p.set_dst_port(8080);
        assert!(!p.verify_checksum());
        p.fill_checksum();
        assert!(p.verify_checksum());
    }

    #[test]
    fn chunk_walk() {
        let mut b = vec![0u8; 12];
        b.extend_from_slice(&[chunk_type::COOKIE_ECHO, 0, 0, 5, 0xaa, 0, 0, 0]); // padded
        b.extend_from_slice(&[chunk_type::DATA, 3, 0, 4]);
        b.extend_from_slice(&[chunk_type::ABORT, 0, 0, 99]); // overruns: stop
        let p = SctpPacket::new_checked(&b[..]).unwrap();
        let types: Vec<u8> = p.chunk_headers().map(|c| c.chunk_type).collect();
        assert_eq!(types, [chunk_type::COOKIE_ECHO, chunk_type::DATA]);
        let mut z = vec![0u8; 12];
        z.extend_from_slice(&[1, 0, 0, 0]); // zero length: stop
        assert_eq!(SctpPacket::new_checked(&z[..]).unwrap().chunk_headers().count(), 0);
    }

    #[test]
    fn prefixes_and_garbage() {
        for len in 0..12 {
            assert_eq!(SctpPacket::new_checked(&[0u8; 12][..len]).unwrap_err(), Error::Truncated);
        }
        let mut rng = XorShift::new(22);
        for _ in 0..5000 {
            let mut g = rng.garbage(60);
            if let Ok(mut p) = SctpPacket::new_checked(&mut g[..]) {
                let _ = (p.first_chunk(), p.chunk_headers().count(), p.verification_tag());
                p.fill_checksum();
                assert!(p.verify_checksum());
            }
        }
    }
}
