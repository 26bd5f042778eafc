//! SYN proxy (`syn_proxy`, rvs's own setting; DPVS has the same idea): for an IPv4 NAT service
//! the director answers a client's SYN itself with a SYN cookie and keeps no state; only the
//! client's ACK carrying a valid cookie proves its address, and only then is the connection
//! created and opened to the real server. A spoofed SYN flood therefore costs one answer per
//! SYN and no table entry.
//!
//! 1. Client SYN (no entry): answered SYN-ACK with ISN = cookie. The cookie is a keyed SipHash
//!    of the 4-tuple, the client's ISN and a 64-second epoch (so the secret changes every
//!    epoch; ACKs are accepted for the current and previous epoch), with the client's MSS as a
//!    3-bit index in the low bits. When the client sent timestamps, the SYN-ACK also carries
//!    timestamps, SACK-permitted and window scale [`WSCALE`] as the client offered them, and the
//!    director's TSval keeps the client's window scale and SACK in its low 6 bits (Linux's
//!    `cookie_init_timestamp`); without timestamps only the MSS is kept, as Linux.
//! 2. Client ACK (no entry) whose ACK number is a valid cookie + 1: the ACK is rewritten in
//!    place into the client's SYN (its ISN, the MSS the cookie kept, and the scale, SACK and
//!    TSval its TSecr kept) and scheduled as any SYN; the NAT transmitter sends it to the real
//!    server. The entry is marked `SYNPROXY` and `SYNPROXY_PENDING`. The client's first data
//!    segment (sent right after its ACK, before the real server can have answered) is held in
//!    a fixed per-worker slot (no allocation); later ones are dropped until the real server
//!    answers (the client sends them again).
//! 3. Real server's SYN-ACK: the sequence shift (its ISN − the cookie), the timestamp shift
//!    (its TSval − the director's) and its window scale are kept, and the SYN-ACK becomes the
//!    ACK that completes the real server's handshake (sent from the client's address, as NAT
//!    does) — the held data segment, if there is one, which carries that ACK; the client never
//!    sees the SYN-ACK.
//! 4. For the life of the connection: client → real server ACK numbers and SACK blocks + the
//!    shift, TSecr + the timestamp shift; real server → client sequence numbers − the shift,
//!    TSval − the timestamp shift, windows from the real server's scale into [`WSCALE`]
//!    (clamped to 65535 units when the real server's scale is larger; into bytes when it
//!    declined scaling). The client's sequence space is not shifted (its ISN is passed on), so
//!    the real server's SACK blocks pass as they are. Incremental checksums (RFC 1624); the
//!    established-flow shortcut leaves these connections to the hooks.
//!
//! Where it differs from a direct connection (documented in docs/semantics.md): without
//! timestamps only the MSS is negotiated (8 values; a 64 KiB window at most); with a real
//! server whose window scale exceeds [`WSCALE`] its windows are clamped to 65535 << 7 bytes
//! (8 MiB); data carried on the client's handshake ACK is dropped (the client sends it again);
//! services that are persistent, firewall-mark, IPv6 or have a non-NAT real server are not
//! proxied.

use std::hash::BuildHasher;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::Ordering::Relaxed;

use netfilter::{DropReason, Family, Output, Route, RouteKind, Skb, Verdict};
use wire::checksum;

use crate::conn::{ConnFlags, ConnId};
use crate::ctx::Routing;
use crate::dest::ForwardMethod;
use crate::packet::Tuple;
use crate::service::ServiceKey;
use crate::worker::Worker;

const FIN: u8 = 0x01;
const SYN: u8 = 0x02;
const RST: u8 = 0x04;
const ACK: u8 = 0x10;

/// Client segments held while their connection waits for the real server's SYN-ACK, per
/// worker, and the longest IP packet a slot holds.
pub(crate) const PARK_SLOTS: usize = 64;
pub(crate) const PARK_BYTES: usize = 2048;

/// One held segment: its entry, its sequence number (the client's ISN + 1, to recognise it)
/// and its length; `len == 0` is a free slot.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Parked {
    id: ConnId,
    seq: u32,
    len: u16,
}

/// MSS values a cookie can carry (Linux's `msstab` plus jumbo sizes).
const MSS: [u16; 8] = [536, 1300, 1440, 1460, 4312, 8960, 8960, 8960];
/// Cookie epoch, milliseconds.
const EPOCH_MS: u64 = 64_000;

/// What the SYN proxy did with a client packet that matched no entry.
pub(crate) enum Proxied {
    /// Not the proxy's (off, not eligible, not a handshake packet): the normal path.
    Pass,
    /// A SYN answered with a cookie (or dropped): this verdict.
    Answered(Verdict),
    /// A valid cookie ACK, rewritten into the client's SYN (`t` updated): schedule it, then
    /// [`Worker::synproxy_bind`] the entry with this cookie.
    Validated(Bind),
}

/// The keyed hash of a cookie (the low 3 bits are the MSS index).
fn cookie_hash(ipvs: &crate::Ipvs, t: &Tuple, isn: u32, epoch: u64) -> u32 {
    let (IpAddr::V4(s), IpAddr::V4(d)) = (t.saddr, t.daddr) else { return 0 };
    let h = ipvs.synproxy_key.hash_one((u32::from(s), u32::from(d), t.sport, t.dport, isn, epoch));
    (h as u32) & !7
}

/// The window scale the director announces to a client that offered one: Linux's own with
/// its default buffers, so that a Linux real server's usually matches and windows pass
/// unchanged (otherwise they are converted, [`win_to_client`]).
pub const WSCALE: u8 = 7;
/// Low bits of the director's TSval that carry the client's options (Linux's
/// `cookie_init_timestamp`): bits 0–3 the client's window scale (15: none), bit 4 SACK.
const TS_OPT_MASK: u32 = 0x3f;
const TS_OPT_WS_NONE: u32 = 0xf;
const TS_OPT_SACK: u32 = 0x10;

/// The TCP options rvs reads and writes in handshakes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Opts {
    mss: Option<u16>,
    ws: Option<u8>,
    sack: bool,
    /// (TSval, TSecr)
    ts: Option<(u32, u32)>,
}

/// Visit each option of a TCP header as (offset of its kind byte, kind, length).
fn each_option(tcp: &[u8], mut f: impl FnMut(usize, u8, usize)) {
    let doff = ((tcp[12] >> 4) as usize * 4).min(tcp.len());
    let mut at = 20;
    while at < doff {
        match tcp[at] {
            0 => break,
            1 => at += 1,
            kind => {
                let Some(&len) = tcp.get(at + 1) else { break };
                let len = len as usize;
                if len < 2 || at + len > doff {
                    break;
                }
                f(at, kind, len);
                at += len;
            }
        }
    }
}

fn parse_options(tcp: &[u8]) -> Opts {
    let mut o = Opts::default();
    each_option(tcp, |at, kind, len| match (kind, len) {
        (2, 4) => o.mss = Some(u16::from_be_bytes([tcp[at + 2], tcp[at + 3]])),
        (3, 3) => o.ws = Some(tcp[at + 2].min(14)),
        (4, 2) => o.sack = true,
        (8, 10) => o.ts = Some((u32_at(tcp, at + 2), u32_at(tcp, at + 6))),
        _ => {}
    });
    o
}

/// Per entry, what the handshake negotiated (`Worker::synproxy_opt`): bits 0–15 the window
/// of the client's cookie ACK, 16–19 the client's window scale, 20–23 the real server's
/// (15: none), bit 28 timestamps with the client, bit 29 timestamps with the real server too.
#[derive(Clone, Copy, Debug)]
struct Negotiated(u32);

impl Negotiated {
    const NONE: u32 = 0xf;
    fn new(win: u16, client_ws: Option<u8>, ts: bool) -> Negotiated {
        Negotiated(
            win as u32 | (client_ws.map_or(Self::NONE, u32::from) << 16) | (Self::NONE << 20) | (ts as u32) << 28,
        )
    }
    fn win(self) -> u16 {
        self.0 as u16
    }
    fn client_ws(self) -> Option<u8> {
        let w = (self.0 >> 16) & 0xf;
        (w != Self::NONE).then_some(w as u8)
    }
    /// The real server's scale, when scaling is on between it and the director.
    fn rs_ws(self) -> Option<u8> {
        let w = (self.0 >> 20) & 0xf;
        (w != Self::NONE && self.client_ws().is_some()).then_some(w as u8)
    }
    fn with_rs(self, ws: Option<u8>, ts: bool) -> Negotiated {
        let n = self.0 & !(0xf << 20) & !(1 << 29);
        Negotiated(n | (ws.map_or(Self::NONE, u32::from) << 20) | ((ts && self.ts_client()) as u32) << 29)
    }
    fn ts_client(self) -> bool {
        self.0 & (1 << 28) != 0
    }
    fn ts_both(self) -> bool {
        self.0 & (1 << 29) != 0
    }
}

/// A client's window (its scale) as the real server reads it: unchanged when both scale, in
/// bytes (at most 65535) when the real server declined scaling.
fn win_to_rs(win: u16, n: Negotiated) -> u16 {
    match (n.client_ws(), n.rs_ws()) {
        (Some(c), None) => ((win as u32) << c).min(65535) as u16,
        _ => win,
    }
}

/// A real server's window (its scale) in the scale the client was told ([`WSCALE`] when it
/// offered scaling): unchanged when they match; otherwise converted, clamped to 65535 units,
/// and never rounded down to a zero window.
fn win_to_client(win: u16, n: Negotiated) -> u16 {
    let from = n.rs_ws().unwrap_or(0);
    let to = if n.client_ws().is_some() { WSCALE } else { 0 };
    if from == to || win == 0 {
        return win;
    }
    let bytes = (win as u64) << from;
    ((bytes >> to).clamp(1, 65535)) as u16
}

/// Write a TCP header with `o`'s options (Linux's layout) and a 20-byte IPv4 header at the
/// start of `m` (at least 64 bytes); the length written.
#[allow(clippy::too_many_arguments)]
fn write_segment(
    m: &mut [u8],
    src: Ipv4Addr,
    dst: Ipv4Addr,
    sport: u16,
    dport: u16,
    seq: u32,
    ack: u32,
    flags: u8,
    win: u16,
    o: &Opts,
) -> usize {
    let mut opt = [0u8; 24];
    let mut n = 0;
    if let Some(mss) = o.mss {
        opt[..4].copy_from_slice(&[2, 4, (mss >> 8) as u8, mss as u8]);
        n = 4;
    }
    if let Some((val, ecr)) = o.ts {
        opt[n..n + 4].copy_from_slice(&if o.sack { [4, 2, 8, 10] } else { [1, 1, 8, 10] });
        opt[n + 4..n + 8].copy_from_slice(&val.to_be_bytes());
        opt[n + 8..n + 12].copy_from_slice(&ecr.to_be_bytes());
        n += 12;
    } else if o.sack {
        opt[n..n + 4].copy_from_slice(&[1, 1, 4, 2]);
        n += 4;
    }
    if let Some(ws) = o.ws {
        opt[n..n + 4].copy_from_slice(&[1, 3, 3, ws]);
        n += 4;
    }
    let tcp_len = 20 + n;
    let total = 20 + tcp_len;
    m[0] = 0x45;
    m[1] = 0;
    m[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    m[4..6].copy_from_slice(&[0, 0]);
    m[6..8].copy_from_slice(&0x4000u16.to_be_bytes());
    m[8] = 64;
    m[9] = wire::ip::protocol::TCP;
    m[10..12].copy_from_slice(&[0, 0]);
    m[12..16].copy_from_slice(&src.octets());
    m[16..20].copy_from_slice(&dst.octets());
    let c = checksum::checksum(&m[..20]);
    m[10..12].copy_from_slice(&c.to_be_bytes());
    let tcp = &mut m[20..total];
    tcp[0..2].copy_from_slice(&sport.to_be_bytes());
    tcp[2..4].copy_from_slice(&dport.to_be_bytes());
    tcp[4..8].copy_from_slice(&seq.to_be_bytes());
    tcp[8..12].copy_from_slice(&ack.to_be_bytes());
    tcp[12] = ((tcp_len / 4) as u8) << 4;
    tcp[13] = flags;
    tcp[14..16].copy_from_slice(&win.to_be_bytes());
    tcp[16..20].copy_from_slice(&[0; 4]);
    tcp[20..].copy_from_slice(&opt[..n]);
    let c = checksum::transport(&IpAddr::V4(src), &IpAddr::V4(dst), wire::ip::protocol::TCP, tcp);
    tcp[16..18].copy_from_slice(&c.to_be_bytes());
    total
}

/// Set the 32-bit field at `at` of a TCP header, keeping its checksum (RFC 1624).
fn set32(tcp: &mut [u8], at: usize, new: u32) {
    let old = u32_at(tcp, at);
    if old != new {
        tcp[at..at + 4].copy_from_slice(&new.to_be_bytes());
        let c = checksum::update32(u16::from_be_bytes([tcp[16], tcp[17]]), old, new);
        tcp[16..18].copy_from_slice(&c.to_be_bytes());
    }
}

fn set_win(tcp: &mut [u8], new: u16) {
    let old = u16::from_be_bytes([tcp[14], tcp[15]]);
    if old != new {
        tcp[14..16].copy_from_slice(&new.to_be_bytes());
        let c = checksum::update16(u16::from_be_bytes([tcp[16], tcp[17]]), old, new);
        tcp[16..18].copy_from_slice(&c.to_be_bytes());
    }
}

/// Client → real server, a whole TCP header: ACK number and SACK blocks + the sequence
/// shift (they name the real server's bytes), TSecr + the timestamp shift, the window in
/// the real server's scale. The client's own sequence space is not shifted (its ISN is
/// passed on), so nothing else changes.
fn to_rs(tcp: &mut [u8], delta: u32, ts_delta: u32, n: Negotiated) {
    if tcp[13] & ACK != 0 {
        set32(tcp, 8, u32_at(tcp, 8).wrapping_add(delta));
    }
    set_win(tcp, win_to_rs(u16::from_be_bytes([tcp[14], tcp[15]]), n));
    if (tcp[12] >> 4) <= 5 {
        return;
    }
    let mut fields = [(0usize, 0u32); 9];
    let mut k = 0;
    each_option(tcp, |at, kind, len| match kind {
        5 => {
            let mut b = at + 2;
            while b + 4 <= at + len && k < fields.len() {
                fields[k] = (b, delta);
                k += 1;
                b += 4;
            }
        }
        8 if len == 10 && n.ts_both() && k < fields.len() => {
            fields[k] = (at + 6, ts_delta);
            k += 1;
        }
        _ => {}
    });
    for &(at, d) in &fields[..k] {
        set32(tcp, at, u32_at(tcp, at).wrapping_add(d));
    }
}

/// Real server → client, a whole TCP header: sequence number − the shift, TSval − the
/// timestamp shift, the window in the client's scale. Its SACK blocks name the client's
/// bytes, whose space is not shifted: unchanged.
fn to_client(tcp: &mut [u8], delta: u32, ts_delta: u32, n: Negotiated) {
    set32(tcp, 4, u32_at(tcp, 4).wrapping_sub(delta));
    set_win(tcp, win_to_client(u16::from_be_bytes([tcp[14], tcp[15]]), n));
    if (tcp[12] >> 4) <= 5 || !n.ts_both() {
        return;
    }
    let mut tsval = None;
    each_option(tcp, |at, kind, len| {
        if kind == 8 && len == 10 {
            tsval = Some(at + 2);
        }
    });
    if let Some(at) = tsval {
        set32(tcp, at, u32_at(tcp, at).wrapping_sub(ts_delta));
    }
}

/// Make the packet in `skb` `len` bytes long: shorter in place, longer into the tailroom or,
/// when a ring frame has none, into the headroom (the Ethernet header moves back).
fn fit(skb: &mut Skb<'_>, len: usize) -> bool {
    let net = skb.network;
    let cur = skb.frame.len().saturating_sub(net);
    if len <= cur || skb.frame.set_len(net + len).is_ok() {
        return skb.frame.set_len(net + len).is_ok();
    }
    skb.frame.insert_gap(net, len - cur).is_ok()
}

/// Send what `skb` now holds towards `to` through LOCAL_OUT.
fn steal_to(skb: &mut Skb<'_>, routing: &dyn Routing, to: IpAddr) -> Verdict {
    let Some(rt) = routing.route(&to) else { return skb.drop_with(DropReason::NoRoute) };
    skb.route = Route { kind: RouteKind::Forward, out_if: rt.out_if, next_hop: Some(rt.next_hop), mtu: rt.mtu };
    skb.ipvs_property = true;
    skb.output = Output::LocalOut;
    skb.hash = 0;
    Verdict::Stolen
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// What a valid cookie ACK carried, for [`Worker::synproxy_bind`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct Bind {
    cookie: u32,
    /// The director's TSval the client echoed (0 without timestamps).
    ts: u32,
    neg: Negotiated,
}

impl Worker {
    /// Steps 1 and 2 for a TCP packet to a VIP that matched no entry.
    pub(crate) fn synproxy_in(&mut self, skb: &mut Skb<'_>, t: &mut Tuple, routing: &dyn Routing) -> Proxied {
        if t.protocol != wire::ip::protocol::TCP
            || skb.family != Family::Ipv4
            || self.ipvs.sysctl.syn_proxy.load(Relaxed) == 0
            || t.l4 != 20
        {
            return Proxied::Pass;
        }
        let flags = t.tcp_flags;
        let handshake = flags & (SYN | ACK | RST | FIN) == SYN || flags & (SYN | RST | FIN) == 0 && flags & ACK != 0;
        if !handshake || !self.synproxy_eligible(t) {
            return Proxied::Pass;
        }
        let (IpAddr::V4(client), IpAddr::V4(vip)) = (t.saddr, t.daddr) else { return Proxied::Pass };
        let Some(seg) = skb.network_bytes().get(20..t.ip_len) else { return Proxied::Pass };
        if seg.len() < 20 {
            return Proxied::Pass;
        }
        let (seq, ack) = (u32_at(seg, 4), u32_at(seg, 8));
        let o = parse_options(seg);
        let epoch = self.now() / EPOCH_MS;
        if flags & SYN != 0 {
            let mss = o.mss.unwrap_or(536);
            let idx = MSS.iter().rposition(|m| *m <= mss).unwrap_or(0) as u32;
            let cookie = cookie_hash(&self.ipvs, t, seq, epoch) | idx;
            let Some(rt) = routing.route(&t.saddr) else {
                return Proxied::Answered(skb.drop_with(DropReason::NoRoute));
            };
            let our_mss = rt.mtu.saturating_sub(40).max(536);
            // As Linux: window scaling and SACK only with timestamps, whose low bits keep them.
            let reply = match o.ts {
                Some((tsval, _)) => {
                    let bits = o.ws.map_or(TS_OPT_WS_NONE, u32::from) | if o.sack { TS_OPT_SACK } else { 0 };
                    let ours = (self.now() as u32 & !TS_OPT_MASK) | bits;
                    Opts { mss: Some(our_mss), ws: o.ws.map(|_| WSCALE), sack: o.sack, ts: Some((ours, tsval)) }
                }
                None => Opts { mss: Some(our_mss), ..Opts::default() },
            };
            if !fit(skb, 64) {
                return Proxied::Pass;
            }
            let m = skb.network_bytes_mut();
            let len =
                write_segment(m, vip, client, t.dport, t.sport, cookie, seq.wrapping_add(1), SYN | ACK, 65535, &reply);
            if !fit(skb, len) {
                return Proxied::Pass;
            }
            skb.drop_reason = Some(DropReason::SynCookie);
            return Proxied::Answered(steal_to(skb, routing, t.saddr));
        }
        // The ACK of a cookie: ack − 1 must be the cookie of (tuple, seq − 1).
        let (isn, cookie) = (seq.wrapping_sub(1), ack.wrapping_sub(1));
        let valid = [epoch, epoch.wrapping_sub(1)].iter().any(|e| cookie_hash(&self.ipvs, t, isn, *e) == cookie & !7);
        if !valid {
            return Proxied::Pass; // a stray: the RST path
        }
        let mss = MSS[(cookie & 7) as usize];
        let win = u16::from_be_bytes([seg[14], seg[15]]);
        // The options the director's TSval kept (none without timestamps, as Linux).
        let (ws, sack, ts) = match o.ts {
            Some((tsval, tsecr)) => {
                let ws = tsecr & TS_OPT_WS_NONE;
                ((ws <= 14).then_some(ws as u8), tsecr & TS_OPT_SACK != 0, Some((tsval, tsecr)))
            }
            None => (None, false, None),
        };
        let neg = Negotiated::new(win, ws, ts.is_some());
        let syn = Opts { mss: Some(mss), ws, sack, ts: ts.map(|(v, _)| (v, 0)) };
        // A SYN's window is never scaled.
        let syn_win = ((win as u32) << ws.unwrap_or(0)).min(65535) as u16;
        if !fit(skb, 64) {
            return Proxied::Pass;
        }
        let m = skb.network_bytes_mut();
        let len = write_segment(m, client, vip, t.sport, t.dport, isn, 0, SYN, syn_win, &syn);
        if !fit(skb, len) {
            return Proxied::Pass;
        }
        t.tcp_flags = SYN;
        t.ip_len = len;
        Proxied::Validated(Bind { cookie, ts: ts.map_or(0, |(_, e)| e), neg })
    }

    /// Only plain IPv4 NAT services (not persistent, not firewall-mark) with every real
    /// server NAT are proxied: the sequence shift needs both directions through the director.
    fn synproxy_eligible(&self, t: &Tuple) -> bool {
        let Some(svc) = self.services().lookup(0, t.protocol, &t.daddr, t.dport) else { return false };
        matches!(svc.config.key, ServiceKey::Addr { port, .. } if port == t.dport)
            && svc.config.persistent.is_none()
            && !svc.dests.is_empty()
            && svc.dests.iter().all(|d| d.method() == ForwardMethod::Masq)
    }

    /// Step 2, after scheduling: the entry waits for the real server's SYN-ACK.
    pub(crate) fn synproxy_bind(&mut self, id: ConnId, b: Bind) {
        if let Some(c) = self.conns.get_mut(id) {
            c.flags |= ConnFlags::SYNPROXY | ConnFlags::SYNPROXY_PENDING;
            let i = id as usize;
            if let (Some(s), Some(ts), Some(o)) =
                (self.synproxy_seq.get_mut(i), self.synproxy_ts.get_mut(i), self.synproxy_opt.get_mut(i))
            {
                (*s, *ts, *o) = (b.cookie, b.ts, b.neg.0);
            }
        }
    }

    /// (sequence shift, timestamp shift, what was negotiated) of an answered entry.
    fn synproxy_state(&self, id: ConnId) -> (u32, u32, Negotiated) {
        let i = id as usize;
        let g = |v: &Vec<u32>| v.get(i).copied().unwrap_or(0);
        (g(&self.synproxy_seq), g(&self.synproxy_ts), Negotiated(g(&self.synproxy_opt)))
    }

    /// Client → real server, before the NAT transmitter: ACK number (real server's space)
    /// = client's + delta. `false`: not to be sent now (the real server has not answered yet;
    /// a first data segment is held for then).
    pub(crate) fn synproxy_client_packet(&mut self, id: ConnId, skb: &mut Skb<'_>, t: &Tuple) -> bool {
        let Some(c) = self.conns.get(id) else { return true };
        if c.flags & ConnFlags::SYNPROXY_PENDING != 0 {
            self.synproxy_park(id, skb, t);
            return false;
        }
        let (delta, ts_delta, neg) = self.synproxy_state(id);
        let l4 = t.l4;
        let m = skb.network_bytes_mut();
        let Some(&off) = m.get(l4 + 12) else { return false };
        let Some(tcp) = m.get_mut(l4..l4 + ((off >> 4) as usize * 4).max(20)) else { return false };
        to_rs(tcp, delta, ts_delta, neg);
        true
    }

    /// Hold a data segment of a pending entry in a free slot (one per entry).
    fn synproxy_park(&mut self, id: ConnId, skb: &Skb<'_>, t: &Tuple) {
        let ip = skb.network_bytes();
        let Some(seg) = ip.get(t.l4..t.ip_len) else { return };
        if t.l4 != 20 || seg.len() < 20 {
            return;
        }
        let data = seg.len() > (seg[12] >> 4) as usize * 4;
        if !data
            || t.ip_len > PARK_BYTES
            || self.synproxy_parked.iter().any(|p| p.len != 0 && p.id == id && p.seq == u32_at(seg, 4))
        {
            return;
        }
        // A slot is free when empty or when its entry no longer waits (answered or gone).
        let conns = &self.conns;
        let free =
            |p: &Parked| p.len == 0 || conns.get(p.id).is_none_or(|c| c.flags & ConnFlags::SYNPROXY_PENDING == 0);
        let Some(slot) = self.synproxy_parked.iter().position(free) else { return };
        self.synproxy_park[slot * PARK_BYTES..slot * PARK_BYTES + t.ip_len].copy_from_slice(&ip[..t.ip_len]);
        self.synproxy_parked[slot] = Parked { id, seq: u32_at(seg, 4), len: t.ip_len as u16 };
    }

    /// Real server → client on a proxied entry (out-hook, before the NAT rewrite). A SYN-ACK
    /// completes the real server's handshake: it becomes the ACK to the real server and
    /// `Some(verdict)` is returned. Anything else gets its sequence number, TSval and window
    /// put into the client's terms (`None`: continue as usual).
    pub(crate) fn synproxy_server_packet(
        &mut self,
        id: ConnId,
        skb: &mut Skb<'_>,
        t: &Tuple,
        routing: &dyn Routing,
    ) -> Option<Verdict> {
        let (pending, caddr) = {
            let c = self.conns.get(id)?;
            (c.flags & ConnFlags::SYNPROXY_PENDING != 0, self.conns.caddr(c))
        };
        let l4 = t.l4;
        let seg = skb.network_bytes().get(l4..t.ip_len)?;
        if seg.len() < 20 {
            return None;
        }
        let (flags, seq, ack) = (seg[13], u32_at(seg, 4), u32_at(seg, 8));
        if flags & (SYN | ACK | RST) == SYN | ACK {
            let i = id as usize;
            let o = parse_options(seg);
            if pending {
                // The cookie becomes the shift (real server ISN − cookie ISN), the director's
                // TSval the timestamp shift; the real server's window scale is kept.
                let neg = Negotiated(*self.synproxy_opt.get(i)?).with_rs(o.ws, o.ts.is_some());
                let ours = *self.synproxy_ts.get(i)?;
                *self.synproxy_ts.get_mut(i)? = o.ts.map_or(0, |(v, _)| v.wrapping_sub(ours));
                *self.synproxy_opt.get_mut(i)? = neg.0;
                let slot = self.synproxy_seq.get_mut(i)?;
                *slot = seq.wrapping_sub(*slot);
            }
            let (delta, ts_delta, neg) = self.synproxy_state(id);
            let (IpAddr::V4(client), IpAddr::V4(rs)) = (caddr, t.saddr) else { return None };
            let held = self.synproxy_parked.iter().position(|p| p.len != 0 && p.id == id && p.seq == ack);
            if let Some(slot) = held {
                // The held segment completes the handshake: in the real server's terms, NAT
                // to the real server, as the transmitter would.
                let p = std::mem::take(&mut self.synproxy_parked[slot]);
                let len = p.len as usize;
                let c = self.conns.get(id)?;
                let (vaddr, vport) = (self.conns.vaddr(c), c.vport);
                let IpAddr::V4(vaddr) = vaddr else { return None };
                if !fit(skb, len) {
                    return None;
                }
                let m = skb.network_bytes_mut();
                m[..len].copy_from_slice(&self.synproxy_park[slot * PARK_BYTES..slot * PARK_BYTES + len]);
                let doff = ((m[32] >> 4) as usize * 4).clamp(20, len - 20);
                to_rs(&mut m[20..20 + doff], delta, ts_delta, neg);
                crate::xmit::rewrite_v4(m, false, false, true, (vaddr.into(), vport), (rs.into(), t.sport));
            } else {
                let ts = match o.ts {
                    Some((val, ecr)) if neg.ts_both() => Some((ecr, val)),
                    _ => None,
                };
                if !fit(skb, 64) {
                    return None;
                }
                let m = skb.network_bytes_mut();
                let opts = Opts { ts, ..Opts::default() };
                let win = win_to_rs(neg.win(), neg);
                let len = write_segment(m, client, rs, t.dport, t.sport, ack, seq.wrapping_add(1), ACK, win, &opts);
                if !fit(skb, len) {
                    return None;
                }
            }
            if let Some(c) = self.conns.get_mut(id) {
                c.flags &= !ConnFlags::SYNPROXY_PENDING;
            }
            self.transition(id, crate::proto::Dir::Output, SYN | ACK);
            self.transition(id, crate::proto::Dir::Input, ACK);
            return Some(steal_to(skb, routing, t.saddr));
        }
        if pending {
            return None;
        }
        let (delta, ts_delta, neg) = self.synproxy_state(id);
        let m = skb.network_bytes_mut();
        let off = *m.get(l4 + 12)?;
        let tcp = m.get_mut(l4..l4 + ((off >> 4) as usize * 4).max(20))?;
        to_client(tcp, delta, ts_delta, neg);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_between_scales() {
        let scaled = |rs: Option<u8>| Negotiated::new(100, Some(6), true).with_rs(rs, true);
        // Same scale as told to the client: unchanged.
        assert_eq!(win_to_client(1000, scaled(Some(WSCALE))), 1000);
        // Larger: converted, clamped to 65535 units.
        assert_eq!(win_to_client(1000, scaled(Some(10))), 8000);
        assert_eq!(win_to_client(u16::MAX, scaled(Some(14))), u16::MAX);
        // Smaller: rounded down, but never to a zero window (a zero window stays zero).
        assert_eq!(win_to_client(100, scaled(Some(0))), 1);
        assert_eq!(win_to_client(0, scaled(Some(0))), 0);
        // Declined by the real server: bytes both ways.
        assert_eq!(win_to_client(40000, scaled(None)), 312);
        assert_eq!(win_to_rs(100, scaled(None)), 6400);
        assert_eq!(win_to_rs(100, scaled(Some(3))), 100);
        // No scaling with the client: nothing changes.
        let plain = Negotiated::new(100, None, false).with_rs(None, false);
        assert_eq!((win_to_client(40000, plain), win_to_rs(40000, plain)), (40000, 40000));
    }

    #[test]
    fn options_parse_stops_at_malformed_lengths() {
        let mut tcp = [0u8; 40];
        tcp[12] = 10 << 4;
        tcp[20..24].copy_from_slice(&[2, 4, 5, 0xb4]);
        tcp[24..27].copy_from_slice(&[3, 3, 15]);
        tcp[27..29].copy_from_slice(&[8, 30]); // runs past the header: ignored, and stops
        let o = parse_options(&tcp);
        assert_eq!(o, Opts { mss: Some(1460), ws: Some(14), sack: false, ts: None });
    }
}
