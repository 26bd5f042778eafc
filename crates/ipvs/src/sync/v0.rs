//! Version 0 sync messages (`struct ip_vs_sync_mesg_v0` + `struct ip_vs_sync_conn_v0`), the
//! legacy IPv4-only format (lvs-semantics.md §18): received always, sent when `sync_version`
//! is 0.
//!
//! Header (4): nr_conns, syncid, size (be16). Record (24): reserved, protocol, cport, vport,
//! dport, caddr, vaddr, daddr, flags (be16), state (be16); when the flags carry SEQ_MASK, 24
//! bytes of sequence data follow **in the sender's host order** (the kernel copies its
//! `struct ip_vs_seq` as is): little-endian here, as every x86 and arm64 kernel writes it.
//! No fwmark, no timeout, no IPv6, no persistence-engine data.

use std::net::{IpAddr, Ipv4Addr};

use super::{Drop, HASHED, Message, SEQ_MASK, SeqData, SyncConn, check_record};

pub const HEADER_LEN: usize = 4;
/// `SIMPLE_CONN_SIZE`.
pub const RECORD_LEN: usize = 24;
/// `FULL_CONN_SIZE`: a record with its sequence data.
pub const FULL_RECORD_LEN: usize = 48;

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}
fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn v4(b: &[u8], at: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(b[at], b[at + 1], b[at + 2], b[at + 3]))
}

/// Decodes a version 0 message whose size and syncid were checked (`super::decode`).
pub fn decode(buf: &[u8]) -> Result<Message, Drop> {
    let nr = usize::from(buf[0]);
    let mut m = Message { version: 0, syncid: buf[1], ..Default::default() };
    let mut at = HEADER_LEN;
    for _ in 0..nr {
        if at + RECORD_LEN > buf.len() {
            return Err(Drop::Truncated);
        }
        let r = &buf[at..];
        let flags = u32::from(be16(r, 20));
        let len = if flags & SEQ_MASK != 0 { FULL_RECORD_LEN } else { RECORD_LEN };
        if at + len > buf.len() {
            return Err(Drop::Truncated);
        }
        let seq = (flags & SEQ_MASK != 0).then(|| {
            let s = |i: usize| SeqData { init_seq: le32(r, i), delta: le32(r, i + 4), previous_delta: le32(r, i + 8) };
            [s(24), s(36)]
        });
        let c = SyncConn {
            protocol: r[1],
            flags,
            state: be16(r, 22),
            cport: be16(r, 2),
            vport: be16(r, 4),
            dport: be16(r, 6),
            fwmark: 0,
            timeout: 0,
            caddr: v4(r, 8),
            vaddr: v4(r, 12),
            daddr: v4(r, 16),
            seq,
            pe_data: Vec::new(),
            pe_name: Vec::new(),
        };
        match check_record(&c) {
            Some(s) => m.skipped.push(s),
            None => m.conns.push(c),
        }
        at += len;
    }
    Ok(m)
}

/// Builds one version 0 message (IPv4 entries only; others are refused by `push`).
pub struct Writer {
    buf: Vec<u8>,
    maxlen: usize,
}

impl Writer {
    pub fn new(syncid: u8, maxlen: usize) -> Writer {
        let mut w = Writer { buf: Vec::with_capacity(maxlen.max(HEADER_LEN + FULL_RECORD_LEN)), maxlen };
        w.buf.extend_from_slice(&[0, syncid, 0, HEADER_LEN as u8]);
        w
    }
    pub fn count(&self) -> usize {
        usize::from(self.buf[0])
    }
    pub fn is_empty(&self) -> bool {
        self.count() == 0
    }
    pub fn clear(&mut self) {
        self.buf.truncate(HEADER_LEN);
        self.buf[0] = 0;
        self.buf[2..4].copy_from_slice(&(HEADER_LEN as u16).to_be_bytes());
    }

    /// Appends `c`; `false` when it does not fit. An IPv6 entry never fits version 0: the
    /// caller drops it (the kernel's v0 sender skips them too).
    pub fn push(&mut self, c: &SyncConn) -> bool {
        let (IpAddr::V4(ca), IpAddr::V4(va), IpAddr::V4(da)) = (c.caddr, c.vaddr, c.daddr) else {
            return false;
        };
        let seq = c.seq.filter(|_| c.flags & SEQ_MASK != 0);
        let len = if seq.is_some() { FULL_RECORD_LEN } else { RECORD_LEN };
        if self.count() >= 255 || (self.buf.len() + len > self.maxlen && !self.is_empty()) {
            return false;
        }
        self.buf.extend_from_slice(&[0, c.protocol]);
        for p in [c.cport, c.vport, c.dport] {
            self.buf.extend_from_slice(&p.to_be_bytes());
        }
        for a in [ca, va, da] {
            self.buf.extend_from_slice(&a.octets());
        }
        let flags = (c.flags & !HASHED) as u16;
        let flags = if seq.is_some() { flags } else { flags & !(SEQ_MASK as u16) };
        self.buf.extend_from_slice(&flags.to_be_bytes());
        self.buf.extend_from_slice(&c.state.to_be_bytes());
        if let Some(seq) = seq {
            for s in seq {
                for v in [s.init_seq, s.delta, s.previous_delta] {
                    self.buf.extend_from_slice(&v.to_le_bytes());
                }
            }
        }
        self.buf[0] += 1;
        let size = self.buf.len() as u16;
        self.buf[2..4].copy_from_slice(&size.to_be_bytes());
        true
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }
}
