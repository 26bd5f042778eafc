//! SYN proxy (`syn_proxy`, rvs's own setting; DPVS has the same idea): for an IPv4 NAT service
//! the director answers a client's SYN itself with a SYN cookie and keeps no state; only the
//! client's ACK carrying a valid cookie proves its address, and only then is the connection
//! created and opened to the real server. A spoofed SYN flood therefore costs one answer per
//! SYN and no table entry.
//!
//! 1. Client SYN (no entry): answered SYN-ACK with ISN = cookie, MSS option only. The cookie is
//!    a keyed SipHash of the 4-tuple, the client's ISN and a 64-second epoch (so the secret
//!    changes every epoch; ACKs are accepted for the current and previous epoch), with the
//!    client's MSS as a 3-bit index in the low bits.
//! 2. Client ACK (no entry) whose ACK number is a valid cookie + 1: the ACK is rewritten in
//!    place into the client's SYN (its ISN, the MSS the cookie kept) and scheduled as any SYN;
//!    the NAT transmitter sends it to the real server. The entry is marked `SYNPROXY` and
//!    `SYNPROXY_PENDING`. The client's first data segment (sent right after its ACK, before
//!    the real server can have answered) is held in a fixed per-worker slot (no allocation);
//!    later ones are dropped until the real server answers (the client sends them again).
//! 3. Real server's SYN-ACK: the sequence delta (its ISN − the cookie) is kept, and the
//!    SYN-ACK becomes the ACK that completes the real server's handshake (sent from the
//!    client's address, as NAT does) — the held data segment, if there is one, which carries
//!    that ACK; the client never sees the SYN-ACK.
//! 4. For the life of the connection: client → real server ACK numbers + delta, real server →
//!    client sequence numbers − delta, incremental checksums (RFC 1624); the established-flow
//!    shortcut leaves these connections to the hooks.
//!
//! Where it differs from a direct connection (documented in docs/semantics.md): the cookie
//! keeps only the MSS (8 values), so window scaling, SACK and timestamps are not negotiated on
//! either side (a 64 KiB window at most); data carried on the client's handshake ACK is
//! dropped (the client sends it again); services that are persistent, firewall-mark, IPv6 or
//! have a non-NAT real server are not proxied.

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
    Validated(u32),
}

/// The keyed hash of a cookie (the low 3 bits are the MSS index).
fn cookie_hash(ipvs: &crate::Ipvs, t: &Tuple, isn: u32, epoch: u64) -> u32 {
    let (IpAddr::V4(s), IpAddr::V4(d)) = (t.saddr, t.daddr) else { return 0 };
    let h = ipvs.synproxy_key.hash_one((u32::from(s), u32::from(d), t.sport, t.dport, isn, epoch));
    (h as u32) & !7
}

/// The client's MSS option in a SYN (536 when absent, RFC 1122).
fn mss_option(seg: &[u8]) -> u16 {
    let doff = (seg[12] >> 4) as usize * 4;
    let mut opts = seg.get(20..doff).unwrap_or(&[]);
    while let [kind, rest @ ..] = opts {
        match kind {
            0 => break,
            1 => opts = rest,
            _ => {
                let Some(&len) = rest.first() else { break };
                let len = len as usize;
                if len < 2 || len > opts.len() {
                    break;
                }
                if *kind == 2 && len == 4 {
                    return u16::from_be_bytes([opts[2], opts[3]]);
                }
                opts = &opts[len..];
            }
        }
    }
    536
}

/// Write a 24-byte TCP header (MSS option) and a 20-byte IPv4 header at the start of `m`.
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
    mss: Option<u16>,
) -> usize {
    let tcp_len = if mss.is_some() { 24 } else { 20 };
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
    if let Some(mss) = mss {
        tcp[20] = 2;
        tcp[21] = 4;
        tcp[22..24].copy_from_slice(&mss.to_be_bytes());
    }
    let c = checksum::transport(&IpAddr::V4(src), &IpAddr::V4(dst), wire::ip::protocol::TCP, tcp);
    tcp[16..18].copy_from_slice(&c.to_be_bytes());
    total
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
        let epoch = self.now() / EPOCH_MS;
        if flags & SYN != 0 {
            let mss = mss_option(seg);
            let idx = MSS.iter().rposition(|m| *m <= mss).unwrap_or(0) as u32;
            let cookie = cookie_hash(&self.ipvs, t, seq, epoch) | idx;
            let Some(rt) = routing.route(&t.saddr) else {
                return Proxied::Answered(skb.drop_with(DropReason::NoRoute));
            };
            let our_mss = rt.mtu.saturating_sub(40).max(536);
            if !fit(skb, 44) {
                return Proxied::Pass;
            }
            let m = skb.network_bytes_mut();
            write_segment(
                m,
                vip,
                client,
                t.dport,
                t.sport,
                cookie,
                seq.wrapping_add(1),
                SYN | ACK,
                65535,
                Some(our_mss),
            );
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
        if !fit(skb, 44) {
            return Proxied::Pass;
        }
        let m = skb.network_bytes_mut();
        let len = write_segment(m, client, vip, t.sport, t.dport, isn, 0, SYN, win, Some(mss));
        t.tcp_flags = SYN;
        t.ip_len = len;
        Proxied::Validated(cookie)
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
    pub(crate) fn synproxy_bind(&mut self, id: ConnId, cookie: u32) {
        if let Some(c) = self.conns.get_mut(id) {
            c.flags |= ConnFlags::SYNPROXY | ConnFlags::SYNPROXY_PENDING;
            if let Some(slot) = self.synproxy_seq.get_mut(id as usize) {
                *slot = cookie;
            }
        }
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
        let delta = self.synproxy_seq.get(id as usize).copied().unwrap_or(0);
        let l4 = t.l4;
        let m = skb.network_bytes_mut();
        let Some(tcp) = m.get_mut(l4..l4 + 20) else { return false };
        if tcp[13] & ACK != 0 {
            let old = u32_at(tcp, 8);
            let new = old.wrapping_add(delta);
            tcp[8..12].copy_from_slice(&new.to_be_bytes());
            let c = checksum::update32(u16::from_be_bytes([tcp[16], tcp[17]]), old, new);
            tcp[16..18].copy_from_slice(&c.to_be_bytes());
        }
        true
    }

    /// Hold a data segment of a pending entry in a free slot (one per entry).
    fn synproxy_park(&mut self, id: ConnId, skb: &Skb<'_>, t: &Tuple) {
        let ip = skb.network_bytes();
        let Some(seg) = ip.get(t.l4..t.ip_len) else { return };
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
    /// `Some(verdict)` is returned. Anything else gets its sequence number shifted back into
    /// the client's space (`None`: continue as usual).
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
            let slot = self.synproxy_seq.get_mut(id as usize)?;
            if pending {
                // The cookie becomes the shift: real server ISN − cookie ISN.
                *slot = seq.wrapping_sub(*slot);
            }
            let (IpAddr::V4(client), IpAddr::V4(rs)) = (caddr, t.saddr) else { return None };
            let held = self.synproxy_parked.iter().position(|p| p.len != 0 && p.id == id && p.seq == ack);
            if let Some(slot) = held {
                // The held segment completes the handshake: its ACK number in the real
                // server's space, NAT to the real server, as the transmitter would.
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
                let tcp = &mut m[20..40];
                let old = u32_at(tcp, 8);
                let new = seq.wrapping_add(1);
                tcp[8..12].copy_from_slice(&new.to_be_bytes());
                let c = checksum::update32(u16::from_be_bytes([tcp[16], tcp[17]]), old, new);
                tcp[16..18].copy_from_slice(&c.to_be_bytes());
                crate::xmit::rewrite_v4(m, false, false, true, (vaddr.into(), vport), (rs.into(), t.sport));
            } else {
                if !fit(skb, 40) {
                    return None;
                }
                let m = skb.network_bytes_mut();
                write_segment(m, client, rs, t.dport, t.sport, ack, seq.wrapping_add(1), ACK, 65535, None);
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
        let delta = self.synproxy_seq.get(id as usize).copied().unwrap_or(0);
        let m = skb.network_bytes_mut();
        let tcp = m.get_mut(l4..l4 + 20)?;
        let new = seq.wrapping_sub(delta);
        tcp[4..8].copy_from_slice(&new.to_be_bytes());
        let c = checksum::update32(u16::from_be_bytes([tcp[16], tcp[17]]), seq, new);
        tcp[16..18].copy_from_slice(&c.to_be_bytes());
        None
    }
}
