//! Version 1 sync messages (`struct ip_vs_sync_mesg` + `struct ip_vs_sync_v4`/`_v6` records
//! with options), lvs-semantics.md §18. Every multi-byte field is big-endian.
//!
//! Header (8): reserved 0, syncid, size (whole datagram), nr_conns, version 1, spare 0.
//! Record: type (bit 0 = IPv6), protocol, ver_size (version in the top 4 bits, length with
//! options in the low 12), flags (32), state (16), cport, vport, dport, fwmark (32), timeout
//! (32, seconds), then caddr, vaddr, daddr (4 or 16 bytes each), then options
//! `type, len, data`. Records start on 4-byte boundaries; the padding counts in the header's
//! size, not in the record's.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::{Drop, HASHED, Message, PE_DATA_MAX, PE_NAME_MAX, SeqData, Skip, SyncConn, check_record};
use crate::conn::ConnFlags;

pub const HEADER_LEN: usize = 8;
/// `sizeof(struct ip_vs_sync_v4)`.
pub const RECORD_V4_LEN: usize = 36;
/// `sizeof(struct ip_vs_sync_v6)`.
pub const RECORD_V6_LEN: usize = 72;
pub const VERSION: u8 = 1;

/// Record type bit: IPv6 addresses (`STYPE_F_INET6`).
pub const TYPE_INET6: u8 = 1;
pub const OPT_SEQ_DATA: u8 = 1;
pub const OPT_PE_DATA: u8 = 2;
pub const OPT_PE_NAME: u8 = 3;
/// Set in an option type: the option may be skipped by a receiver that does not know it.
pub const OPT_F_PARAM: u8 = 0x40;
/// Length of the SEQ_DATA option's data: in_seq and out_seq, three be32 each.
pub const SEQ_DATA_LEN: usize = 24;
/// Most records a message holds: `nr_conns` is one byte.
pub const MAX_CONNS: usize = 255;

/// Does the header say version 1? (Otherwise the kernel parses the message as version 0.)
pub fn is_v1(buf: &[u8]) -> bool {
    buf.len() >= HEADER_LEN && buf[0] == 0 && buf[5] == VERSION && buf[6] == 0 && buf[7] == 0
}

/// Encoded length of one record, options included, padding excluded.
pub fn record_len(c: &SyncConn) -> usize {
    let mut len = if c.is_v6() { RECORD_V6_LEN } else { RECORD_V4_LEN };
    if c.seq.is_some() {
        len += 2 + SEQ_DATA_LEN;
    }
    if !c.pe_data.is_empty() {
        len += 2 + c.pe_data.len().min(PE_DATA_MAX);
        if !c.pe_name.is_empty() {
            len += 2 + c.pe_name.len().min(PE_NAME_MAX);
        }
    }
    len
}

/// Builds one message in a buffer allocated once (the sender reuses it).
pub struct Writer {
    buf: Vec<u8>,
    maxlen: usize,
}

impl Writer {
    /// An empty message for `syncid`, at most `maxlen` bytes (a single record longer than that
    /// still goes, alone, as in the kernel).
    pub fn new(syncid: u8, maxlen: usize) -> Writer {
        let mut w = Writer { buf: Vec::with_capacity(maxlen.max(HEADER_LEN + RECORD_V6_LEN)), maxlen };
        w.buf.extend_from_slice(&[0, syncid, 0, HEADER_LEN as u8, 0, VERSION, 0, 0]);
        w
    }

    pub fn count(&self) -> usize {
        usize::from(self.buf[4])
    }
    pub fn is_empty(&self) -> bool {
        self.count() == 0
    }

    /// Starts the next message (same syncid and maxlen).
    pub fn clear(&mut self) {
        self.buf.truncate(HEADER_LEN);
        self.buf[2..4].copy_from_slice(&(HEADER_LEN as u16).to_be_bytes());
        self.buf[4] = 0;
    }

    /// Appends `c`; `false` when it does not fit (send this message and start another).
    pub fn push(&mut self, c: &SyncConn) -> bool {
        let len = record_len(c);
        let pad = (4 - self.buf.len() % 4) % 4;
        let full = self.count() >= MAX_CONNS || self.buf.len() + pad + len > self.maxlen;
        if full && !self.is_empty() {
            return false;
        }
        self.buf.resize(self.buf.len() + pad, 0);
        let v6 = c.is_v6();
        self.buf.push(if v6 { TYPE_INET6 } else { 0 });
        self.buf.push(c.protocol);
        self.buf.extend_from_slice(&((len & 0x0fff) as u16).to_be_bytes());
        self.buf.extend_from_slice(&(c.flags & !(HASHED | ConnFlags::INTERNAL)).to_be_bytes());
        self.buf.extend_from_slice(&c.state.to_be_bytes());
        for p in [c.cport, c.vport, c.dport] {
            self.buf.extend_from_slice(&p.to_be_bytes());
        }
        self.buf.extend_from_slice(&c.fwmark.to_be_bytes());
        self.buf.extend_from_slice(&c.timeout.to_be_bytes());
        for a in [c.caddr, c.vaddr, c.daddr] {
            put_addr(&mut self.buf, a, v6);
        }
        if let Some(seq) = &c.seq {
            self.buf.extend_from_slice(&[OPT_SEQ_DATA, SEQ_DATA_LEN as u8]);
            for s in seq {
                for v in [s.init_seq, s.delta, s.previous_delta] {
                    self.buf.extend_from_slice(&v.to_be_bytes());
                }
            }
        }
        if !c.pe_data.is_empty() {
            let d = &c.pe_data[..c.pe_data.len().min(PE_DATA_MAX)];
            self.buf.extend_from_slice(&[OPT_PE_DATA, d.len() as u8]);
            self.buf.extend_from_slice(d);
            if !c.pe_name.is_empty() {
                let n = &c.pe_name[..c.pe_name.len().min(PE_NAME_MAX)];
                self.buf.extend_from_slice(&[OPT_PE_NAME, n.len() as u8]);
                self.buf.extend_from_slice(n);
            }
        }
        self.buf[4] += 1;
        let size = self.buf.len() as u16;
        self.buf[2..4].copy_from_slice(&size.to_be_bytes());
        true
    }

    /// The datagram.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }
}

fn put_addr(buf: &mut Vec<u8>, a: IpAddr, v6: bool) {
    match (a, v6) {
        (IpAddr::V4(a), false) => buf.extend_from_slice(&a.octets()),
        (IpAddr::V6(a), false) => buf.extend_from_slice(&a.to_ipv4_mapped().unwrap_or(Ipv4Addr::UNSPECIFIED).octets()),
        (IpAddr::V4(a), true) => buf.extend_from_slice(&a.to_ipv6_mapped().octets()),
        (IpAddr::V6(a), true) => buf.extend_from_slice(&a.octets()),
    }
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}
fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn addr(b: &[u8], at: usize, v6: bool) -> IpAddr {
    if v6 {
        let mut o = [0u8; 16];
        o.copy_from_slice(&b[at..at + 16]);
        IpAddr::V6(Ipv6Addr::from(o))
    } else {
        IpAddr::V4(Ipv4Addr::new(b[at], b[at + 1], b[at + 2], b[at + 3]))
    }
}

/// Decodes a version 1 message whose size and syncid were checked (`super::decode`).
pub fn decode(buf: &[u8]) -> Result<Message, Drop> {
    let nr = usize::from(buf[4]);
    let mut m = Message { version: 1, syncid: buf[1], ..Default::default() };
    let mut at = HEADER_LEN;
    for _ in 0..nr {
        if at + RECORD_V4_LEN > buf.len() {
            return Err(Drop::Truncated);
        }
        let ver_size = be16(buf, at + 2);
        let size = usize::from(ver_size & 0x0fff);
        let end = at + size;
        if end > buf.len() {
            return Err(Drop::Truncated);
        }
        if ver_size >> 12 != 0 {
            return Err(Drop::Malformed);
        }
        match record(&buf[at..end])? {
            Ok(c) => m.conns.push(c),
            Err(s) => m.skipped.push(s),
        }
        at += (size + 3) & !3;
    }
    Ok(m)
}

/// One record (`ip_vs_proc_sync_conn`): `Err` drops the message, `Ok(Err)` skips the record.
fn record(r: &[u8]) -> Result<Result<SyncConn, Skip>, Drop> {
    let v6 = match r.first() {
        Some(&TYPE_INET6) => true,
        Some(0) => false,
        _ => return Err(Drop::Malformed),
    };
    let fixed = if v6 { RECORD_V6_LEN } else { RECORD_V4_LEN };
    if r.len() < fixed {
        return Err(Drop::Truncated);
    }
    let w = if v6 { 16 } else { 4 };
    let mut c = SyncConn {
        protocol: r[1],
        flags: be32(r, 4),
        state: be16(r, 8),
        cport: be16(r, 10),
        vport: be16(r, 12),
        dport: be16(r, 14),
        fwmark: be32(r, 16),
        timeout: be32(r, 20),
        caddr: addr(r, 24, v6),
        vaddr: addr(r, 24 + w, v6),
        daddr: addr(r, 24 + 2 * w, v6),
        seq: None,
        pe_data: Vec::new(),
        pe_name: Vec::new(),
    };
    let (mut has_data, mut has_name) = (false, false);
    let mut p = fixed;
    while p < r.len() {
        if p + 2 > r.len() {
            return Err(Drop::Malformed);
        }
        let (ty, len) = (r[p], usize::from(r[p + 1]));
        p += 2;
        if len == 0 || p + len > r.len() {
            return Err(Drop::Malformed);
        }
        let data = &r[p..p + len];
        match ty & !OPT_F_PARAM {
            OPT_SEQ_DATA => {
                if len != SEQ_DATA_LEN || c.seq.is_some() {
                    return Err(Drop::Malformed);
                }
                let s = |i: usize| SeqData {
                    init_seq: be32(data, i),
                    delta: be32(data, i + 4),
                    previous_delta: be32(data, i + 8),
                };
                c.seq = Some([s(0), s(12)]);
            }
            OPT_PE_DATA => {
                if len > PE_DATA_MAX || has_data {
                    return Err(Drop::Malformed);
                }
                has_data = true;
                c.pe_data = data.to_vec();
            }
            OPT_PE_NAME => {
                if len > PE_NAME_MAX || has_name {
                    return Err(Drop::Malformed);
                }
                has_name = true;
                c.pe_name = data.to_vec();
            }
            // An unknown mandatory option: the kernel gives up on the record right here.
            _ if ty & OPT_F_PARAM == 0 => return Ok(Err(Skip::UnknownOption)),
            _ => {}
        }
        p += len;
    }
    if let Some(s) = check_record(&c) {
        return Ok(Err(s));
    }
    if !c.pe_data.is_empty() && c.pe_name.is_empty() {
        return Ok(Err(Skip::PeParams));
    }
    if c.pe_data.is_empty() {
        // A name without data means nothing (the kernel looks the engine up only for data).
        c.pe_name.clear();
    }
    Ok(Ok(c))
}
