//! The sync codec against byte vectors laid out field by field from the kernel's structs
//! (`ip_vs_sync_mesg`, `ip_vs_sync_v4`, `ip_vs_sync_v6`, `ip_vs_sync_mesg_v0`,
//! `ip_vs_sync_conn_v0`), the rules, and both halves in a worker.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use super::rules::{Entry, Params, needed};
use super::*;
use crate::conn::ConnFlags;
use crate::proto::{Dir, tcp};

fn v4(a: [u8; 4]) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(a))
}

fn conn_v4() -> SyncConn {
    SyncConn {
        protocol: 6,
        flags: 0x0183, // DROUTE | NOOUTPUT | INACTIVE
        state: 1,
        cport: 0x1234,
        vport: 80,
        dport: 8080,
        fwmark: 0x0a0b0c0d,
        timeout: 900,
        caddr: v4([10, 0, 0, 1]),
        vaddr: v4([192, 168, 1, 100]),
        daddr: v4([172, 16, 0, 5]),
        seq: None,
        pe_data: vec![],
        pe_name: vec![],
    }
}

/// `ip_vs_sync_v4` of [`conn_v4`], written field by field.
fn record_v4_bytes() -> Vec<u8> {
    let mut b = vec![
        0, // type: IPv4
        6, // protocol
        0, 36, // ver_size: version 0, size 36
        0, 0, 0x01, 0x83, // flags
        0, 1, // state ESTABLISHED
        0x12, 0x34, // cport
        0, 80, // vport
        0x1f, 0x90, // dport 8080
        0x0a, 0x0b, 0x0c, 0x0d, // fwmark
        0, 0, 0x03, 0x84, // timeout 900
    ];
    b.extend_from_slice(&[10, 0, 0, 1, 192, 168, 1, 100, 172, 16, 0, 5]);
    b
}

#[test]
fn v1_ipv4_record_matches_the_kernel_layout() {
    let mut w = v1::Writer::new(7, 1472);
    assert!(w.push(&conn_v4()));
    let mut want = vec![0, 7, 0, 44, 1, 1, 0, 0]; // reserved, syncid, size, nr_conns, version, spare
    want.extend(record_v4_bytes());
    assert_eq!(w.as_bytes(), &want[..]);
    let m = decode(&want, 7).unwrap();
    assert_eq!((m.version, m.syncid), (1, 7));
    assert_eq!(m.conns, vec![conn_v4()]);
}

#[test]
fn v1_hashed_and_internal_flags_never_leave() {
    let mut c = conn_v4();
    c.flags |= HASHED | ConnFlags::SYNC_STATE_CHANGED;
    let mut w = v1::Writer::new(0, 1472);
    w.push(&c);
    assert_eq!(&w.as_bytes()[12..16], &[0, 0, 0x01, 0x83]);
}

fn conn_v6() -> SyncConn {
    let a = |last: u16| IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, last));
    SyncConn {
        protocol: 17,
        flags: ConnFlags::TEMPLATE | 0x0600,
        state: 0,
        cport: 5060,
        vport: 5060,
        dport: 5061,
        fwmark: 0,
        timeout: 360,
        caddr: a(1),
        vaddr: a(2),
        daddr: a(3),
        seq: Some([
            SeqData { init_seq: 0x01020304, delta: 5, previous_delta: 0xfffffffb },
            SeqData { init_seq: 0xa0b0c0d0, delta: 0, previous_delta: 7 },
        ]),
        pe_data: b"call-id-1".to_vec(),
        pe_name: b"sip".to_vec(),
    }
}

#[test]
fn v1_ipv6_record_with_every_option() {
    let c = conn_v6();
    let mut w = v1::Writer::new(1, 1452);
    assert!(w.push(&c));
    let size = 72 + 26 + 11 + 5; // fixed + SEQ_DATA + PE_DATA + PE_NAME
    let mut want = vec![0, 1, 0, (8 + size) as u8, 1, 1, 0, 0];
    want.extend_from_slice(&[1, 17, 0, size as u8]); // type IPv6, protocol, ver_size
    want.extend_from_slice(&[0, 0, 0x16, 0x00]); // flags TEMPLATE|SEQ_MASK
    want.extend_from_slice(&[0, 0, 0x13, 0xc4, 0x13, 0xc4, 0x13, 0xc5]); // state, cport, vport, dport
    want.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0x01, 0x68]); // fwmark, timeout 360
    for last in [1u8, 2, 3] {
        want.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, last]);
    }
    want.extend_from_slice(&[1, 24]); // IPVS_OPT_SEQ_DATA, len
    want.extend_from_slice(&[1, 2, 3, 4, 0, 0, 0, 5, 0xff, 0xff, 0xff, 0xfb]);
    want.extend_from_slice(&[0xa0, 0xb0, 0xc0, 0xd0, 0, 0, 0, 0, 0, 0, 0, 7]);
    want.extend_from_slice(&[2, 9]);
    want.extend_from_slice(b"call-id-1");
    want.extend_from_slice(&[3, 3]);
    want.extend_from_slice(b"sip");
    assert_eq!(w.as_bytes(), &want[..]);
    assert_eq!(decode(&want, 0).unwrap().conns, vec![c]);
}

#[test]
fn v1_records_are_padded_to_four_bytes_and_the_padding_counts_in_the_header_only() {
    let mut a = conn_v4();
    a.pe_data = b"x".to_vec(); // 36 + 3 + 5 ("sip") = 44: aligned
    a.pe_name = b"si".to_vec(); // 36 + 3 + 4 = 43: one byte of padding follows
    let b = conn_v4();
    let mut w = v1::Writer::new(0, 1472);
    assert!(w.push(&a) && w.push(&b));
    let bytes = w.as_bytes();
    assert_eq!(u16::from_be_bytes([bytes[10], bytes[11]]), 43, "record size excludes padding");
    assert_eq!(bytes.len(), 8 + 44 + 36);
    assert_eq!(u16::from_be_bytes([bytes[2], bytes[3]]) as usize, bytes.len());
    assert_eq!(bytes[8 + 43], 0, "padding is zero");
    assert_eq!(decode(bytes, 0).unwrap().conns, vec![a, b]);
}

#[test]
fn a_default_v1_datagram_holds_40_ipv4_entries() {
    let mut w = v1::Writer::new(0, DEFAULT_MAXLEN_V4 as usize);
    let n = (0..100).take_while(|_| w.push(&conn_v4())).count();
    assert_eq!(n, 40);
    assert_eq!(w.as_bytes().len(), 8 + 40 * 36);
    w.clear();
    assert!(w.is_empty() && w.push(&conn_v4()));
    let mut w = v1::Writer::new(0, 65507);
    assert_eq!((0..1000).take_while(|_| w.push(&conn_v4())).count(), 255, "nr_conns is one byte");
}

#[test]
fn v0_records_match_the_kernel_layout_with_and_without_sequence_data() {
    let mut c = conn_v4();
    c.fwmark = 0;
    c.timeout = 0;
    let mut w = v0::Writer::new(3, 1472);
    assert!(w.push(&c));
    let mut s = c.clone();
    s.flags |= 0x0400; // IN_SEQ
    s.seq = Some([SeqData { init_seq: 1, delta: 2, previous_delta: 3 }, SeqData::default()]);
    assert!(w.push(&s));
    let mut want = vec![2, 3, 0, 4 + 24 + 48]; // nr_conns, syncid, size
    let rec = |flags: [u8; 2]| {
        let mut r = vec![0, 6, 0x12, 0x34, 0, 80, 0x1f, 0x90, 10, 0, 0, 1, 192, 168, 1, 100, 172, 16, 0, 5];
        r.extend_from_slice(&flags);
        r.extend_from_slice(&[0, 1]);
        r
    };
    want.extend(rec([0x01, 0x83]));
    want.extend(rec([0x05, 0x83]));
    want.extend_from_slice(&[1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0]); // in_seq, host order
    want.extend_from_slice(&[0; 12]);
    assert_eq!(w.as_bytes(), &want[..]);
    let m = decode(&want, 3).unwrap();
    assert_eq!(m.version, 0);
    assert_eq!(m.conns, vec![c, s]);
}

#[test]
fn v0_takes_no_ipv6() {
    let mut w = v0::Writer::new(0, 1472);
    assert!(!w.push(&conn_v6()));
    assert!(w.is_empty());
}

#[test]
fn syncid_size_and_version_checks() {
    let mut w = v1::Writer::new(5, 1472);
    w.push(&conn_v4());
    let good = w.as_bytes().to_vec();
    assert_eq!(decode(&good, 6), Err(Drop::OtherSyncId));
    assert!(decode(&good, 0).is_ok(), "syncid 0 takes every group");
    assert_eq!(decode(&good[..good.len() - 1], 5), Err(Drop::BadSize));
    assert_eq!(decode(&good[..3], 5), Err(Drop::Truncated));
    // A record of another version: the message is dropped.
    let mut bad = good.clone();
    bad[10] |= 0x10;
    assert_eq!(decode(&bad, 5), Err(Drop::Malformed));
    // A header that is not version 1 is read as version 0, as the kernel does: here the
    // first record then runs past the end.
    let mut v2 = good.clone();
    v2[5] = 2;
    assert!(decode(&v2, 5).map(|m| m.version == 0).unwrap_or(true));
    // An unknown record type.
    let mut ty = good.clone();
    ty[8] = 2;
    assert_eq!(decode(&ty, 5), Err(Drop::Malformed));
}

#[test]
fn options_unknown_mandatory_skips_the_record_optional_is_ignored() {
    let with_opt = |ty: u8| {
        let mut rec = record_v4_bytes();
        rec.extend_from_slice(&[ty, 2, 0xaa, 0xbb]);
        rec[3] = rec.len() as u8;
        let mut m = vec![0, 0, 0, (8 + rec.len()) as u8, 1, 1, 0, 0];
        m.extend(rec);
        m
    };
    let m = decode(&with_opt(7), 0).unwrap();
    assert_eq!((m.conns.len(), m.skipped.as_slice()), (0, &[Skip::UnknownOption][..]));
    let m = decode(&with_opt(7 | v1::OPT_F_PARAM), 0).unwrap();
    assert_eq!(m.conns, vec![conn_v4()]);
    // SEQ_DATA of the wrong length, or an option of length 0: dropped.
    assert_eq!(decode(&with_opt(v1::OPT_SEQ_DATA), 0), Err(Drop::Malformed));
    let mut zero = with_opt(7 | v1::OPT_F_PARAM);
    zero[8 + 37] = 0;
    assert_eq!(decode(&zero, 0), Err(Drop::Malformed));
}

#[test]
fn bad_protocol_and_state_skip_the_record_but_not_templates() {
    let mut w = v1::Writer::new(0, 1472);
    let mut a = conn_v4();
    a.state = tcp::STATES as u16;
    let mut b = conn_v4();
    b.protocol = 50;
    let mut t = conn_v4();
    t.protocol = 0; // a fwmark service's template
    t.flags |= ConnFlags::TEMPLATE;
    let mut u = conn_v4();
    u.protocol = 17;
    u.state = 1; // UDP has one state
    for c in [&a, &b, &t, &u] {
        assert!(w.push(c));
    }
    let m = decode(w.as_bytes(), 0).unwrap();
    assert_eq!(m.conns, vec![t]);
    assert_eq!(m.skipped, vec![Skip::State, Skip::Protocol, Skip::State]);
}

/// xorshift64: a reproducible source for the property tests.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn random_conn(r: &mut Rng) -> SyncConn {
    let v6 = r.below(2) == 0;
    let mut addr = || {
        if v6 {
            IpAddr::V6(Ipv6Addr::from(((r.next() as u128) << 64) | r.next() as u128))
        } else {
            IpAddr::V4(Ipv4Addr::from(r.next() as u32))
        }
    };
    let (caddr, vaddr, daddr) = (addr(), addr(), addr());
    let protocol = [6u8, 17, 132][r.below(3) as usize];
    let states = protocol_states(protocol).unwrap() as u64;
    let mut seq = || SeqData { init_seq: r.next() as u32, delta: r.next() as u32, previous_delta: r.next() as u32 };
    let seq = Some([seq(), seq()]);
    let pe_len = r.below(4) as usize * r.below(80) as usize;
    SyncConn {
        protocol,
        flags: (r.next() as u32) & BACKUP_MASK & !HASHED,
        state: r.below(states) as u16,
        cport: r.next() as u16,
        vport: r.next() as u16,
        dport: r.next() as u16,
        fwmark: r.next() as u32,
        timeout: r.next() as u32,
        caddr,
        vaddr,
        daddr,
        seq: seq.filter(|_| r.below(2) == 0),
        pe_data: (0..pe_len).map(|_| r.next() as u8).collect(),
        pe_name: if pe_len > 0 { (0..1 + r.below(16)).map(|_| b'a' + r.below(26) as u8).collect() } else { vec![] },
    }
}

#[test]
fn property_v1_encode_then_decode_is_the_identity() {
    let mut r = Rng(0x9e3779b97f4a7c15);
    for round in 0..300 {
        let maxlen = 200 + r.below(3000) as usize;
        let syncid = r.next() as u8;
        let mut w = v1::Writer::new(syncid, maxlen);
        let mut sent = Vec::new();
        loop {
            let c = random_conn(&mut r);
            if !w.push(&c) {
                break;
            }
            sent.push(c);
        }
        let m = decode(w.as_bytes(), syncid).unwrap_or_else(|e| panic!("round {round}: {e:?}"));
        assert_eq!(m.conns, sent, "round {round}");
        assert!(w.as_bytes().len() <= maxlen || sent.len() == 1);
    }
}

#[test]
fn property_v0_encode_then_decode_is_the_identity() {
    let mut r = Rng(77);
    for _ in 0..300 {
        let mut w = v0::Writer::new(9, 1472);
        let mut sent = Vec::new();
        for _ in 0..r.below(80) {
            let mut c = random_conn(&mut r);
            if c.is_v6() {
                continue;
            }
            c.flags &= 0xffff;
            c.fwmark = 0;
            c.timeout = 0;
            c.pe_data.clear();
            c.pe_name.clear();
            if c.flags & SEQ_MASK == 0 {
                c.seq = None;
            } else if c.seq.is_none() {
                c.seq = Some([SeqData::default(); 2]);
            }
            if !w.push(&c) {
                break;
            }
            sent.push(c);
        }
        let m = decode(w.as_bytes(), 9).unwrap();
        assert_eq!(m.conns, sent);
    }
}

#[test]
fn garbage_and_truncations_never_panic_and_are_dropped() {
    let mut r = Rng(12345);
    let mut dropped = 0;
    for _ in 0..3000 {
        let mut w = v1::Writer::new(0, 600);
        while w.push(&random_conn(&mut r)) {}
        let mut b = w.as_bytes().to_vec();
        match r.below(3) {
            0 => {
                // Truncate, keeping the header's size consistent with the new length.
                let n = 4 + r.below(b.len() as u64 - 4) as usize;
                b.truncate(n);
                b[2..4].copy_from_slice(&(n as u16).to_be_bytes());
            }
            1 => {
                for _ in 0..1 + r.below(8) {
                    let i = 4 + r.below(b.len() as u64 - 4) as usize;
                    b[i] = r.next() as u8;
                }
            }
            _ => b = (0..r.below(200)).map(|_| r.next() as u8).collect(),
        }
        if decode(&b, 0).is_err() {
            dropped += 1;
        }
    }
    assert!(dropped > 1000, "most mangled datagrams are dropped ({dropped})");
}

// ---- the rules ----

fn est(pkts_state_changed: bool) -> Entry {
    Entry {
        protocol: 6,
        state: tcp::ESTABLISHED,
        template: false,
        in_persistence: false,
        state_changed: pkts_state_changed,
        timeout: 900,
    }
}

#[test]
fn rules_threshold_and_period() {
    let p = Params::default();
    let mut end = 0;
    let sent: Vec<u32> = (1..=160).filter(|&n| needed(&p, &est(false), n, 1000, &mut end)).collect();
    assert_eq!(sent, vec![3, 53, 103, 153]);
    // SYN_RECV is never synced, whatever the count.
    let e = Entry { state: tcp::SYN_RECV, state_changed: true, ..est(false) };
    assert!(!(0..200).any(|n| needed(&p, &e, n, 1000, &mut end)));
    // A change into FIN_WAIT (or CLOSE, TIME_WAIT...) goes at once.
    let e = Entry { state: tcp::FIN_WAIT, state_changed: true, ..est(false) };
    assert!(needed(&p, &e, 17, 1000, &mut end));
    // Into ESTABLISHED it waits for the count.
    assert!(!needed(&p, &est(true), 2, 1000, &mut end));
    assert!(needed(&p, &est(true), 3, 1000, &mut end));
    // UDP: no state filter; templates: every time one of their children goes.
    let u = Entry { protocol: 17, state: 0, ..est(false) };
    assert!(needed(&p, &u, 3, 1000, &mut end) && !needed(&p, &u, 4, 1000, &mut end));
    let t = Entry { protocol: 6, state: 0, template: true, ..est(false) };
    assert!(needed(&p, &t, 4, 1000, &mut end));
    // sync_persist_mode: entries under a template are not sent.
    let pm = Params { persist_mode: true, ..p };
    assert!(!needed(&pm, &Entry { in_persistence: true, ..est(false) }, 3, 1000, &mut end));
}

#[test]
fn rules_period_zero_sends_once_and_refresh_period_limits_resends() {
    let once = Params { period: 0, ..Params::default() };
    let mut end = 0;
    let sent: Vec<u32> = (1..100).filter(|&n| needed(&once, &est(false), n, 1000, &mut end)).collect();
    assert_eq!(sent, vec![3]);
    // Refresh period 60 s, no period: resend only when the expiry moved ≥ 60 s (or half the
    // timeout), with up to sync_retries resends spaced 60/8 s.
    let p = Params { period: 0, refresh_ms: 60_000, retries: 0, ..Params::default() };
    let mut end = 0;
    assert!(needed(&p, &est(false), 1, 1_000, &mut end));
    assert!(!needed(&p, &est(false), 2, 30_000, &mut end), "moved only 29 s");
    assert!(needed(&p, &est(false), 3, 61_001, &mut end), "moved 60 s");
    let r = Params { retries: 2, ..p };
    let mut end = 0;
    assert!(needed(&r, &est(false), 1, 1_000, &mut end));
    assert!(!needed(&r, &est(false), 2, 2_000, &mut end), "a retry waits refresh/8");
    assert!(needed(&r, &est(false), 3, 9_000, &mut end), "first retry");
    assert!(needed(&r, &est(false), 4, 17_000, &mut end), "second retry");
    assert!(!needed(&r, &est(false), 5, 26_000, &mut end), "retries used up");
}

#[test]
fn the_sync_sysctls_are_in_the_registry_with_the_kernels_checks() {
    use crate::sysctl::{set_many, value};
    let i = crate::Ipvs::new(10);
    assert_eq!(value(&i, "sync_threshold").unwrap(), "3\t50");
    set_many(&i, &[("net.ipv4.vs.sync_threshold", "2 10"), ("sync_retries", "3")]).unwrap();
    assert_eq!(
        (i.sync.sysctl.params().threshold, i.sync.sysctl.params().period, i.sync.sysctl.params().retries),
        (2, 10, 3)
    );
    for bad in [("sync_threshold", "10 10"), ("sync_threshold", "5"), ("sync_retries", "4"), ("sync_version", "2")] {
        assert!(set_many(&i, &[bad]).is_err(), "{bad:?}");
    }
    set_many(&i, &[("sync_threshold", "7 0")]).unwrap();
    assert_eq!(value(&i, "sync_threshold").unwrap(), "7\t0", "period 0: sent once, at 7");
    set_many(&i, &[("sync_version", "0"), ("sync_qlen_max", "16")]).unwrap();
    assert_eq!(value(&i, "sync_version").unwrap(), "0");
}

// ---- a worker as master and as backup ----

fn director(method: crate::ForwardMethod) -> (Arc<crate::Ipvs>, crate::ServiceKey) {
    let ipvs = crate::Ipvs::new(1000);
    let key = crate::ServiceKey::tcp(v4([192, 168, 1, 100]), 80);
    ipvs.add_service(crate::ServiceConfig::new(key, "rr")).unwrap();
    ipvs.add_dest(&key, crate::DestConfig::new(v4([172, 16, 0, 5]), 80).method(method)).unwrap();
    (Arc::new(ipvs), key)
}

#[test]
fn a_master_worker_records_established_entries_by_the_kernel_rules() {
    let (ipvs, key) = director(crate::ForwardMethod::Route);
    ipvs.sync.master.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut w = crate::Worker::new(0, ipvs.clone());
    w.set_now(5_000);
    let dest = ipvs.services().get(&key).unwrap().dests[0].clone();
    let nc = crate::worker::NewConn {
        protocol: 6,
        caddr: v4([10, 0, 0, 1]),
        cport: 40000,
        vaddr: v4([192, 168, 1, 100]),
        vport: 80,
        dport: 80,
        fwmark: 0,
    };
    let id = w.create(&nc, &dest, None, 0).unwrap();
    let packet = |w: &mut crate::Worker, flags: u8| {
        w.transition(id, Dir::Input, flags);
        let c = w.conns.get_mut(id).unwrap();
        c.in_pkts += 1;
        let n = c.in_pkts;
        w.sync_conn(id, n);
    };
    packet(&mut w, 0x02); // SYN: SYN_RECV, never synced
    packet(&mut w, 0x10); // ACK: ESTABLISHED, in_pkts 2
    assert!(w.sync.records.is_empty());
    packet(&mut w, 0x18); // in_pkts 3
    assert_eq!(w.sync.records.len(), 1);
    let r = &w.sync.records[0];
    assert_eq!((r.state, r.timeout, r.dport), (u16::from(tcp::ESTABLISHED), 900, 80));
    assert_eq!(r.flags & (ConnFlags::FWD_MASK | ConnFlags::INACTIVE), 3, "DR, active");
    packet(&mut w, 0x11); // FIN: FIN_WAIT, sent at once
    assert_eq!(w.sync.records.len(), 2);
    assert_eq!(w.sync.records[1].state, u16::from(tcp::FIN_WAIT));
    // Nothing recorded while no master runs.
    ipvs.sync.master.store(false, std::sync::atomic::Ordering::Relaxed);
    w.set_now(6_000);
    w.sync.records.clear();
    packet(&mut w, 0x04);
    assert!(w.sync.records.is_empty());
}

#[test]
fn a_backup_worker_binds_synced_entries_to_its_own_dests_and_counts_the_rest() {
    let (ipvs, key) = director(crate::ForwardMethod::Masq);
    let mut w = crate::Worker::new(0, ipvs.clone());
    w.set_now(10_000);
    let mut c = conn_v4();
    c.dport = 80;
    c.fwmark = 0;
    c.flags = 3 | ConnFlags::NOOUTPUT; // DR on the master, active
    c.timeout = 600;
    assert_eq!(w.sync_apply(&c, 3), backup::Applied::Bound);
    let id = w.conns.lookup_in(6, &c.caddr, c.cport, &c.vaddr, c.vport).unwrap();
    let e = w.conns.get(id).unwrap();
    assert_eq!(e.flags & ConnFlags::FWD_MASK, 0, "our dest forwards by NAT");
    assert!(e.flags & ConnFlags::SYNC != 0 && e.flags & ConnFlags::NOOUTPUT == 0);
    assert_eq!((e.state, e.timeout, e.expires, e.in_pkts), (1, 600, 610_000, 3));
    let dest = ipvs.services().get(&key).unwrap().dests[0].clone();
    assert_eq!((dest.activeconns(), dest.inactconns()), (1, 0));
    // An update to INACTIVE moves the counters; the entry stays one entry.
    c.flags |= ConnFlags::INACTIVE;
    c.state = u16::from(tcp::FIN_WAIT);
    assert_eq!(w.sync_apply(&c, 3), backup::Applied::Updated);
    assert_eq!((dest.activeconns(), dest.inactconns(), w.conns.len()), (0, 1, 1));
    // A real server we do not have: kept unbound and reported as such.
    let mut other = conn_v4();
    other.cport = 1;
    other.daddr = v4([172, 16, 0, 99]);
    assert_eq!(w.sync_apply(&other, 3), backup::Applied::Unbound);
    // Once that real server is configured here, the next sync of the entry binds it.
    ipvs.add_dest(&key, crate::DestConfig::new(v4([172, 16, 0, 99]), 8080).method(crate::ForwardMethod::Masq)).unwrap();
    w.set_now(11_000);
    assert_eq!(w.sync_apply(&other, 3), backup::Applied::Updated);
    let id = w.conns.lookup_in(6, &other.caddr, other.cport, &other.vaddr, other.vport).unwrap();
    let bound = w.conns.get(id).unwrap().dest.as_ref().map(|d| d.addr);
    assert_eq!(bound, Some(v4([172, 16, 0, 99])));
    // A template of a persistence engine rvs does not have: skipped.
    let mut pe = conn_v4();
    pe.flags |= ConnFlags::TEMPLATE;
    pe.cport = 0;
    pe.pe_data = b"call".to_vec();
    pe.pe_name = b"xyz".to_vec();
    assert_eq!(w.sync_apply(&pe, 3), backup::Applied::NoEngine);
}

#[test]
fn sip_templates_cross_with_their_call_id() {
    let (ipvs, _) = director(crate::ForwardMethod::Masq);
    let mut w = crate::Worker::new(0, ipvs.clone());
    w.set_now(1000);
    let mut t = conn_v4();
    t.protocol = 17;
    t.state = 0;
    t.cport = 0;
    t.dport = 80;
    t.fwmark = 0;
    t.flags = ConnFlags::TEMPLATE;
    t.vport = 80;
    t.pe_data = b"a84b4c76e66710@pc33.example.com".to_vec();
    t.pe_name = b"sip".to_vec();
    // The director's service is TCP; the template still enters the table (unbound).
    assert_eq!(w.sync_apply(&t, 3), backup::Applied::Unbound);
    let id = w.conns.lookup_template_pe(17, &t.caddr, &t.vaddr, t.vport, &t.pe_data).expect("found by Call-ID");
    assert_eq!(w.conns.pe_data(id), Some(&t.pe_data[..]));
    // Synced again (as the master would send it): the same template, updated.
    assert_eq!(w.sync_apply(&t, 3), backup::Applied::Updated);
    // And it goes out as the kernel sends it: client port 0, PE_DATA and PE_NAME.
    let c = w.conns.get(id).unwrap();
    let r = w.sync_conn_record(id, c).unwrap();
    assert_eq!((r.cport, &r.pe_data, &r.pe_name[..]), (0, &t.pe_data, &b"sip"[..]));
    let mut wr = v1::Writer::new(0, 1472);
    assert!(wr.push(&r));
    assert_eq!(decode(wr.as_bytes(), 0).unwrap().conns[0].pe_data, t.pe_data);
}
