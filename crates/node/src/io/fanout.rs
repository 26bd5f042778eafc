//! Flow steering for AF_PACKET fanout groups: which worker gets a frame (a classic BPF
//! program; the XDP backend steers with `crates/xdp` instead).
//!
//! Each worker owns its connection table without locks (DESIGN.md "Concurrency"), so both
//! directions of a NAT connection must reach the same worker. The kernel's symmetric fanout
//! hash does not give that: the request is client→VIP, the NAT reply is real server→client,
//! two different address pairs. What the two directions share is the **client address**, so
//! every served interface gets one `PACKET_FANOUT_CBPF` group (one socket per worker, joined
//! in worker order so member i is worker i) with a classic BPF program that picks the member:
//!
//! - IPv4 frame whose destination is a VIP (client → VIP): hash the **source** address;
//!   but an ICMP error to a VIP (a router answering a packet the director sent to the
//!   client, e.g. "fragmentation needed") hashes the **quoted packet's destination**, the
//!   client, so path MTU discovery reaches the worker that owns the connection;
//! - the same for an IPv4 frame whose destination falls in a firewall-mark rule's destination
//!   prefix (`[[fwmark]]`: its `-f` service handles it like a VIP);
//! - any other IPv4 frame (NAT reply real server → client, director traffic): hash the
//!   **destination** address;
//! - everything else (ARP, IPv6, ...): worker 0. ARP replies teach neighbours to the shared
//!   node cache, so which worker reads them does not matter.
//!
//! The result is `mix(addr & client_mask) % N`. Until a VIP exists, no frame can belong to a
//! service and hashing the destination is as good as anything.
//!
//! **Where the VIP list lives.** The classifier needs one answer per frame: is the destination
//! a VIP? By default the groups are `PACKET_FANOUT_EBPF` groups and the VIPs are keys of a
//! BPF hash map that the program looks up (`node::io::fanout_ebpf`): adding or removing a VIP
//! is one map update, O(1) whatever the number of services, nothing is re-attached, and there
//! is no limit on VIPs (100 000 services measured, BENCHMARKS.md). Only the persistence mask
//! and the firewall-mark prefixes (few, rarely changed) are compiled into that program, so a
//! change of those loads a new one. Steering without a VIP list was considered and refused:
//! the two directions of a NAT connection share only the client address, and telling which
//! end of a frame is the client needs to know the VIPs (or every NAT real server, a list as
//! long), or a guess from ports that services on high ports break. Where the kernel refuses
//! BPF maps or programs, the groups fall back to a classic program with one `jeq` per VIP,
//! regenerated and re-attached whenever the [`SteerSet`] changes ([`Steering::update`]),
//! which holds at most [`MAX_VIPS`] VIPs (the rest is logged as mis-steered).
//!
//! The program runs at the fanout hook, where the packet starts at its network header, so it
//! reads the EtherType through the `SKF_AD_PROTOCOL` ancillary load and the addresses
//! relative to `SKF_NET_OFF` (independent of where the kernel's data pointer sits).
//!
//! **Persistence.** Persistence templates live in the worker's own table and are keyed by
//! the client *network* (`-M`, lvs-semantics.md on persistence granularity), not the client
//! address: two clients of one /24 under a `-M 255.255.255.0` service must share a template,
//! so they must reach the same worker. The program therefore masks the client address with
//! the widest persistence netmask of the IPv4 persistent services before hashing (in every
//! path: to-VIP source, NAT-reply destination, ICMP quoted destination). Without persistent
//! services the mask is /32 and the same client address lands on the same worker, across
//! connections too. Changing the widest netmask re-steers clients: connections of clients
//! that move to another worker are not found there (like a reload of the kernel module's
//! hash); it is logged. A flood from one client network stays on one worker.

use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use crate::io::fanout_ebpf::VipMap;
use ipvs::fwmark::FwmarkRule;
use ipvs::{ServiceConfig, ServiceKey, ServiceTable};
use libc::sock_filter;

/// Classic BPF opcodes (linux/bpf_common.h, linux/filter.h).
pub mod op {
    pub const LD_W_ABS: u16 = 0x20;
    pub const LD_H_ABS: u16 = 0x28;
    pub const LD_B_ABS: u16 = 0x30;
    pub const JEQ_K: u16 = 0x15;
    pub const JA: u16 = 0x05;
    pub const RET_K: u16 = 0x06;
    pub const RET_A: u16 = 0x16;
    pub const TAX: u16 = 0x07;
    pub const ALU_RSH_K: u16 = 0x74;
    pub const ALU_XOR_X: u16 = 0xac;
    pub const ALU_MUL_K: u16 = 0x24;
    pub const ALU_MOD_K: u16 = 0x94;
    pub const ALU_AND_K: u16 = 0x54;
    /// Base of the ancillary loads; `SKF_AD_PROTOCOL` (offset 0) is the EtherType.
    pub const SKF_AD_OFF: i32 = -0x1000;
    pub const SKF_AD_PROTOCOL: i32 = 0;
    /// Loads relative to the network header.
    pub const SKF_NET_OFF: i32 = -0x100000;
}

/// The most VIPs one program holds (two instructions each; `BPF_MAXINSNS` is 4096).
pub const MAX_VIPS: usize = 2000;
/// The most firewall-mark rule prefixes one program holds (four instructions each); VIPs
/// share the same budget: `2 × VIPs + 4 × prefixes ≤ 4000`.
pub const MAX_PREFIXES: usize = 256;
const LIST_BUDGET: usize = 4000;

/// How many of the set's prefixes and VIPs a program holds.
fn fitting(set: &SteerSet) -> (usize, usize) {
    let p = set.prefixes.len().min(MAX_PREFIXES);
    let v = set.vips.len().min(MAX_VIPS).min((LIST_BUDGET - 4 * p) / 2);
    (p, v)
}

/// Offset of the quoted packet's destination address in an ICMP error, from the network
/// header: outer IPv4 header (20, no options), ICMP header (8), then the quoted IPv4 header's
/// destination (16).
const ICMP_QUOTED_DST: i32 = 20 + 8 + 16;

/// Multiplier of the address mix (a 32-bit avalanche step).
const MIX_MUL: u32 = 0x045d_9f3b;

/// The hash the program computes, for tests and documentation: xor-shift, multiply,
/// xor-shift. Consecutive client addresses spread over the workers. (The sync backup uses it
/// too: a synced entry goes to the worker that the client's packets will reach.)
pub fn mix(addr: u32) -> u32 {
    let h = (addr ^ (addr >> 16)).wrapping_mul(MIX_MUL);
    h ^ (h >> 16)
}

/// The worker the program picks for an IPv4 address that is hashed (no persistence mask).
pub fn worker_for(addr: Ipv4Addr, workers: usize) -> usize {
    worker_for_masked(addr, u32::MAX, workers)
}

/// The worker the program picks for an IPv4 client address under `client_mask`.
pub fn worker_for_masked(addr: Ipv4Addr, client_mask: u32, workers: usize) -> usize {
    (mix(u32::from(addr) & client_mask) % workers.max(1) as u32) as usize
}

/// The worker that owns a frame (starting at its Ethernet header), by the same rule as the
/// steering [`program`]: the AF_XDP workers (crates/xdp, `worker.rs`) receive by the NIC's
/// queue, not by this rule, and pass a frame they do not own to its owner; computing it the
/// program's way keeps hot restart and the sync backup (which place entries with
/// [`worker_for_masked`]) in agreement with both backends. `steered_dst(dst)`: is the IPv4
/// destination a VIP or in a firewall-mark rule's prefix. Anything the program would stop on
/// (not IPv4, a load past the end) is worker 0, as there.
#[inline]
pub fn owner_of(frame: &[u8], steered_dst: impl Fn(u32) -> bool, client_mask: u32, workers: usize) -> usize {
    if workers <= 1 || frame.get(12..14) != Some(&[0x08, 0x00][..]) {
        return 0;
    }
    let word = |off: usize| frame.get(14 + off..18 + off).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
    let Some(dst) = word(16) else { return 0 };
    let client = if steered_dst(dst) {
        let Some(&proto) = frame.get(14 + 9) else { return 0 };
        if proto == 1 {
            match frame.get(14 + 20) {
                None => return 0,
                Some(3 | 4 | 11) => word(ICMP_QUOTED_DST as usize),
                Some(_) => word(12),
            }
        } else {
            word(12)
        }
    } else {
        Some(dst)
    };
    match client {
        Some(a) => (mix(a & client_mask) % workers as u32) as usize,
        None => 0,
    }
}

/// What a steering program is compiled from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SteerSet {
    /// IPv4 VIPs, sorted, without duplicates.
    pub vips: Vec<Ipv4Addr>,
    /// Hashed addresses are masked with this first: the widest (shortest) persistence netmask
    /// of the IPv4 persistent services, so one client network stays on one worker
    /// (`u32::MAX` without persistent services).
    pub client_mask: u32,
    /// Destination prefixes of the IPv4 firewall-mark rules (network, length), sorted: a
    /// frame to one of them is treated like a frame to a VIP (its `-f` service NATs it).
    pub prefixes: Vec<(Ipv4Addr, u8)>,
}

impl Default for SteerSet {
    fn default() -> Self {
        SteerSet { vips: Vec::new(), client_mask: u32::MAX, prefixes: Vec::new() }
    }
}

impl SteerSet {
    /// The set these services need.
    pub fn of_services<'a>(services: impl IntoIterator<Item = &'a ServiceConfig>) -> Self {
        let mut set = SteerSet::default();
        for c in services {
            if let ServiceKey::Addr { addr: IpAddr::V4(a), .. } = c.key {
                set.vips.push(a);
            }
            if c.persistent.is_some() && !c.key.is_ipv6() {
                // Masks are prefixes: AND keeps the shortest.
                set.client_mask &= c.netmask;
            }
        }
        set.normalise();
        set
    }

    /// The set of a published service table and the classifier's rules.
    pub fn of(table: &ServiceTable, rules: &[FwmarkRule]) -> Self {
        Self::of_services(table.iter().map(|s| &s.config)).with_rules(rules)
    }

    /// Adds the destination prefixes of the IPv4 rules.
    pub fn with_rules(mut self, rules: &[FwmarkRule]) -> Self {
        for r in rules {
            if let IpAddr::V4(a) = r.daddr {
                let len = r.dprefix.min(32);
                let mask = if len == 0 { 0 } else { u32::MAX << (32 - u32::from(len)) };
                self.prefixes.push((Ipv4Addr::from(u32::from(a) & mask), len));
            }
        }
        self.normalise();
        self
    }

    /// A set covering both: every VIP of either, the wider mask. Attached while a change is
    /// being published, so that both the old and the new table are steered right.
    pub fn union(&self, other: &SteerSet) -> SteerSet {
        // Both VIP lists are sorted: merge them (O(n), no sort of 100 000 VIPs per command).
        let (a, b) = (&self.vips, &other.vips);
        let mut vips = Vec::with_capacity(a.len() + b.len());
        let (mut i, mut j) = (0, 0);
        while i < a.len() || j < b.len() {
            let next = if j == b.len() || (i < a.len() && a[i] <= b[j]) {
                i += 1;
                a[i - 1]
            } else {
                j += 1;
                b[j - 1]
            };
            if vips.last() != Some(&next) {
                vips.push(next);
            }
        }
        let mut u = SteerSet {
            vips,
            client_mask: self.client_mask & other.client_mask,
            prefixes: self.prefixes.iter().chain(&other.prefixes).copied().collect(),
        };
        u.prefixes.sort_unstable();
        u.prefixes.dedup();
        u
    }

    fn normalise(&mut self) {
        self.vips.sort_unstable();
        self.vips.dedup();
        self.prefixes.sort_unstable();
        self.prefixes.dedup();
    }
}

fn ins(code: u16, jt: u8, jf: u8, k: u32) -> sock_filter {
    sock_filter { code, jt, jf, k }
}

/// The steering program for `workers` members and this set (at most [`MAX_PREFIXES`]
/// prefixes and the VIPs that fit with them are used, the rest is ignored and reported by the
/// caller).
pub fn program(set: &SteerSet, workers: usize) -> Vec<sock_filter> {
    let (np, nv) = fitting(set);
    let vips = &set.vips[..nv];
    let prefixes = &set.prefixes[..np];
    let n = workers.clamp(1, u32::MAX as usize) as u32;
    let mut p = Vec::with_capacity(16 + 2 * vips.len());
    // 0: A = EtherType; not IPv4 → member 0.
    p.push(ins(op::LD_H_ABS, 0, 0, (op::SKF_AD_OFF + op::SKF_AD_PROTOCOL) as u32));
    p.push(ins(op::JEQ_K, 1, 0, 0x0800));
    p.push(ins(op::RET_K, 0, 0, 0));
    // A = destination address.
    p.push(ins(op::LD_W_ABS, 0, 0, (op::SKF_NET_OFF + 16) as u32));
    // Per VIP: `jeq vip ? next : skip the ja` then `ja src`. `src` sits right after the
    // list plus one `ja hash`; jump distances are filled in below.
    let first = p.len();
    for v in vips {
        p.push(ins(op::JEQ_K, 0, 1, u32::from(*v)));
        p.push(ins(op::JA, 0, 0, 0));
    }
    // Per firewall-mark rule prefix: `A = dst & mask; jeq net ? next : skip the ja; ja src`.
    let first_prefix = p.len();
    for (net, len) in prefixes {
        let mask = if *len == 0 { 0 } else { u32::MAX << (32 - u32::from(*len)) };
        p.push(ins(op::LD_W_ABS, 0, 0, (op::SKF_NET_OFF + 16) as u32));
        p.push(ins(op::ALU_AND_K, 0, 0, mask));
        p.push(ins(op::JEQ_K, 0, 1, u32::from(*net)));
        p.push(ins(op::JA, 0, 0, 0));
    }
    // Not a VIP: hash the destination.
    p.push(ins(op::LD_W_ABS, 0, 0, (op::SKF_NET_OFF + 16) as u32));
    let to_hash = p.len();
    p.push(ins(op::JA, 0, 0, 0));
    // To a VIP. An ICMP error (type 3, 4 or 11) comes from a router on the way to the
    // client and quotes a packet the director sent, VIP → client: hash the quoted packet's
    // destination, the client (path MTU discovery needs the worker that owns the
    // connection). Anything else to a VIP comes from the client: hash the source. The outer
    // header has no options (the node drops such packets), so the offsets are fixed.
    let src = p.len();
    p.push(ins(op::LD_B_ABS, 0, 0, (op::SKF_NET_OFF + 9) as u32));
    p.push(ins(op::JEQ_K, 0, 4, 1)); // ICMP? else → load source
    p.push(ins(op::LD_B_ABS, 0, 0, (op::SKF_NET_OFF + 20) as u32));
    p.push(ins(op::JEQ_K, 4, 0, 3)); // → quoted
    p.push(ins(op::JEQ_K, 3, 0, 4));
    p.push(ins(op::JEQ_K, 2, 0, 11));
    p.push(ins(op::LD_W_ABS, 0, 0, (op::SKF_NET_OFF + 12) as u32));
    p.push(ins(op::JA, 0, 0, 1));
    p.push(ins(op::LD_W_ABS, 0, 0, (op::SKF_NET_OFF + ICMP_QUOTED_DST) as u32));
    let hash = p.len();
    p[to_hash].k = (hash - to_hash - 1) as u32;
    for i in 0..vips.len() {
        let at = first + 2 * i + 1;
        p[at].k = (src - at - 1) as u32;
    }
    for i in 0..prefixes.len() {
        let at = first_prefix + 4 * i + 3;
        p[at].k = (src - at - 1) as u32;
    }
    // hash: A = mix(A & client_mask) % n.
    p.push(ins(op::ALU_AND_K, 0, 0, set.client_mask));
    p.push(ins(op::TAX, 0, 0, 0));
    p.push(ins(op::ALU_RSH_K, 0, 0, 16));
    p.push(ins(op::ALU_XOR_X, 0, 0, 0));
    p.push(ins(op::ALU_MUL_K, 0, 0, MIX_MUL));
    p.push(ins(op::TAX, 0, 0, 0));
    p.push(ins(op::ALU_RSH_K, 0, 0, 16));
    p.push(ins(op::ALU_XOR_X, 0, 0, 0));
    p.push(ins(op::ALU_MOD_K, 0, 0, n));
    p.push(ins(op::RET_A, 0, 0, 0));
    p
}

/// `setsockopt(PACKET_FANOUT_DATA)` on a socket of the group (any member sets it for all).
fn attach(fd: BorrowedFd<'_>, prog: &[sock_filter]) -> io::Result<()> {
    const SOL_PACKET: libc::c_int = 263;
    const PACKET_FANOUT_DATA: libc::c_int = 22;
    let len = u16::try_from(prog.len()).map_err(|_| io::Error::other("BPF program too long"))?;
    let fprog = libc::sock_fprog { len, filter: prog.as_ptr() as *mut sock_filter };
    // SAFETY: `fprog` points at `len` valid instructions for the duration of the call; the
    // kernel copies the program and never writes through the pointer.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            SOL_PACKET,
            PACKET_FANOUT_DATA,
            &fprog as *const libc::sock_fprog as *const libc::c_void,
            std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    };
    if rc < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

/// Where a steering program goes: a fanout group (tests record instead).
pub trait Target: Send {
    fn attach(&self, set: &SteerSet, prog: &[sock_filter]) -> io::Result<()>;
    /// Sets the eBPF program of an eBPF fanout group.
    fn attach_ebpf(&self, _prog: BorrowedFd<'_>) -> io::Result<()> {
        Err(io::Error::from(io::ErrorKind::Unsupported))
    }
}

/// A fanout group, through a duplicate of one of its member sockets (the workers own the
/// originals); any member sets the program for the whole group.
pub struct Group {
    pub name: String,
    pub fd: OwnedFd,
}

impl Target for Group {
    fn attach(&self, _set: &SteerSet, prog: &[sock_filter]) -> io::Result<()> {
        attach(self.fd.as_fd(), prog).map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", self.name)))
    }

    fn attach_ebpf(&self, prog: BorrowedFd<'_>) -> io::Result<()> {
        crate::io::fanout_ebpf::attach(self.fd.as_fd(), prog)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", self.name)))
    }
}

/// The eBPF side of [`Steering`]: the VIP map and the program now attached.
struct Ebpf {
    map: VipMap,
    prog: Option<OwnedFd>,
    /// The VIPs in the map: a lone change looks one up instead of diffing sorted lists.
    in_map: std::collections::HashSet<Ipv4Addr>,
}

/// Can this process steer with an eBPF program and a VIP map? The map to use, or why not.
pub fn ebpf_available(workers: usize) -> io::Result<VipMap> {
    let map = VipMap::new()?;
    map.load(u32::MAX, &[], workers as u32)?;
    Ok(map)
}

/// Keeps the steering programs of every fanout group in step with the [`SteerSet`].
pub struct Steering {
    groups: Vec<Box<dyn Target>>,
    workers: usize,
    current: Option<SteerSet>,
    ebpf: Option<Ebpf>,
}

impl Steering {
    /// Classic BPF groups (`FanoutMode::Cbpf`).
    pub fn new(groups: Vec<Box<dyn Target>>, workers: usize) -> Self {
        Steering { groups, workers, current: None, ebpf: None }
    }

    /// eBPF groups (`FanoutMode::Ebpf`) steered with `map` ([`ebpf_available`]).
    pub fn with_map(groups: Vec<Box<dyn Target>>, workers: usize, map: VipMap) -> Self {
        Steering { groups, workers, current: None, ebpf: Some(Ebpf { map, prog: None, in_map: Default::default() }) }
    }

    /// The eBPF update: VIPs that came or went change the map (O(changes) system calls,
    /// O(n) to find them); a new mask, new prefixes or the first call load and attach a
    /// program. Returns whether anything changed.
    fn update_ebpf(&mut self, set: &SteerSet) -> io::Result<bool> {
        let Some(e) = &mut self.ebpf else { return Ok(false) };
        // New VIPs go in before the program that may need them; the map is shared by every
        // program.
        let (mut added, mut removed) = (0usize, 0usize);
        for v in &set.vips {
            if !e.in_map.contains(v) {
                e.map.insert(u32::from(*v))?;
                e.in_map.insert(*v);
                added += 1;
            }
        }
        let gone: Vec<Ipv4Addr> = e.in_map.iter().filter(|v| set.vips.binary_search(v).is_err()).copied().collect();
        for v in gone {
            e.map.remove(u32::from(v))?;
            e.in_map.remove(&v);
            removed += 1;
        }
        if added + removed > 0 {
            tracing::debug!("steering map: {added} VIPs added, {removed} removed, {} now", set.vips.len());
        }
        Ok(self.attach_ebpf(set.client_mask, &set.prefixes)? || added + removed > 0)
    }

    /// Loads and attaches a program when the mask or the prefixes changed (or none runs yet).
    fn attach_ebpf(&mut self, client_mask: u32, prefixes: &[(Ipv4Addr, u8)]) -> io::Result<bool> {
        let Some(e) = &mut self.ebpf else { return Ok(false) };
        let same = self.current.as_ref().is_some_and(|c| c.client_mask == client_mask && c.prefixes == prefixes);
        if e.prog.is_some() && same {
            return Ok(false);
        }
        if let Some(old) = &self.current
            && old.client_mask != client_mask
        {
            tracing::warn!(
                "steering: client mask {} → {} (widest persistence netmask changed): connections of clients moved to another worker are not found there",
                Ipv4Addr::from(old.client_mask),
                Ipv4Addr::from(client_mask)
            );
        }
        let masked: Vec<(u32, u32)> = prefixes
            .iter()
            .take(MAX_PREFIXES)
            .map(|(net, len)| {
                let mask = if *len == 0 { 0 } else { u32::MAX << (32 - u32::from(*len)) };
                (u32::from(*net), mask)
            })
            .collect();
        let prog = e.map.load(client_mask, &masked, self.workers as u32)?;
        for g in &self.groups {
            g.attach_ebpf(prog.as_fd())?;
        }
        e.prog = Some(prog);
        tracing::info!(
            "steering: eBPF program attached ({} fwmark prefixes, client mask {}, {} workers; VIPs in a map, now {})",
            masked.len(),
            Ipv4Addr::from(client_mask),
            self.workers,
            e.in_map.len()
        );
        // In eBPF mode `current` holds the mask and prefixes; the VIPs are `in_map`.
        self.current = Some(SteerSet { vips: Vec::new(), client_mask, prefixes: prefixes.to_vec() });
        Ok(true)
    }

    /// One VIP came (`present`) or may have gone, and the mask and prefixes now: O(1) map
    /// updates, for a lone command at any table size. `None` when steering is classic BPF
    /// (the caller recomputes the whole set and calls [`Steering::update`]).
    pub fn set_vip(
        &mut self,
        vip: Option<Ipv4Addr>,
        present: bool,
        client_mask: u32,
        prefixes: &[(Ipv4Addr, u8)],
    ) -> Option<io::Result<bool>> {
        let e = self.ebpf.as_mut()?;
        let mut changed = false;
        let r = (|| {
            if let Some(v) = vip {
                if present && !e.in_map.contains(&v) {
                    e.map.insert(u32::from(v))?;
                    e.in_map.insert(v);
                    changed = true;
                } else if !present && e.in_map.contains(&v) {
                    e.map.remove(u32::from(v))?;
                    e.in_map.remove(&v);
                    changed = true;
                }
            }
            Ok::<_, io::Error>(())
        })();
        Some(r.and_then(|()| Ok(self.attach_ebpf(client_mask, prefixes)? || changed)))
    }

    /// Re-attaches the program if `set` differs from the last one attached. Returns whether
    /// it did.
    pub fn update(&mut self, set: &SteerSet) -> io::Result<bool> {
        if self.ebpf.is_some() {
            return self.update_ebpf(set);
        }
        if self.current.as_ref() == Some(set) {
            return Ok(false);
        }
        let (np, nv) = fitting(set);
        if nv < set.vips.len() || np < set.prefixes.len() {
            tracing::error!(
                "{} IPv4 VIPs and {} fwmark prefixes, steering covers {nv} and {np}: NAT replies for the others may reach the wrong worker",
                set.vips.len(),
                set.prefixes.len()
            );
        }
        if let Some(old) = &self.current
            && old.client_mask != set.client_mask
        {
            tracing::warn!(
                "steering: client mask {} → {} (widest persistence netmask changed): connections of clients moved to another worker are not found there",
                Ipv4Addr::from(old.client_mask),
                Ipv4Addr::from(set.client_mask)
            );
        }
        let prog = program(set, self.workers);
        for g in &self.groups {
            g.attach(set, &prog)?;
        }
        tracing::info!(
            "steering program attached ({} VIPs, {} fwmark prefixes, client mask {}, {} workers)",
            set.vips.len(),
            set.prefixes.len(),
            Ipv4Addr::from(set.client_mask),
            self.workers
        );
        self.current = Some(set.clone());
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A classic BPF interpreter for the instructions the generator emits, over a frame that
    /// starts at its Ethernet header (as the fanout hook sees it: protocol from the frame,
    /// network header at offset 14). Out-of-range loads end the program with 0, like the
    /// kernel.
    fn run(prog: &[sock_filter], frame: &[u8]) -> u32 {
        let net = 14usize;
        let proto = u16::from_be_bytes([frame[12], frame[13]]) as u32;
        let load = |k: u32, size: usize| -> Option<u32> {
            let k = k as i32;
            let off = if (op::SKF_NET_OFF..op::SKF_AD_OFF).contains(&k) {
                net.checked_add((k - op::SKF_NET_OFF) as usize)?
            } else if k >= 0 {
                k as usize
            } else {
                panic!("unexpected negative load offset {k:#x}");
            };
            let b = frame.get(off..off + size)?;
            Some(b.iter().fold(0u32, |a, x| a << 8 | *x as u32))
        };
        let (mut a, mut x, mut pc) = (0u32, 0u32, 0usize);
        for _ in 0..10_000 {
            let i = prog[pc];
            pc += 1;
            match i.code {
                op::LD_H_ABS if i.k as i32 == op::SKF_AD_OFF + op::SKF_AD_PROTOCOL => a = proto,
                op::LD_H_ABS => match load(i.k, 2) {
                    Some(v) => a = v,
                    None => return 0,
                },
                op::LD_B_ABS => match load(i.k, 1) {
                    Some(v) => a = v,
                    None => return 0,
                },
                op::LD_W_ABS => match load(i.k, 4) {
                    Some(v) => a = v,
                    None => return 0,
                },
                op::JEQ_K => pc += if a == i.k { i.jt } else { i.jf } as usize,
                op::JA => pc += i.k as usize,
                op::RET_K => return i.k,
                op::RET_A => return a,
                op::TAX => x = a,
                op::ALU_RSH_K => a >>= i.k,
                op::ALU_XOR_X => a ^= x,
                op::ALU_MUL_K => a = a.wrapping_mul(i.k),
                op::ALU_MOD_K => a %= i.k,
                op::ALU_AND_K => a &= i.k,
                c => panic!("unexpected opcode {c:#x}"),
            }
        }
        panic!("program does not terminate");
    }

    /// The program for these VIPs, without persistence mask.
    fn vip_prog(vips: &[Ipv4Addr], workers: usize) -> Vec<sock_filter> {
        program(&SteerSet { vips: vips.to_vec(), client_mask: u32::MAX, prefixes: vec![] }, workers)
    }

    fn ipv4(src: Ipv4Addr, dst: Ipv4Addr) -> Vec<u8> {
        let mut f = vec![0u8; 14 + 20 + 20];
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        f[14] = 0x45;
        f[14 + 9] = 6;
        f[14 + 12..14 + 16].copy_from_slice(&src.octets());
        f[14 + 16..14 + 20].copy_from_slice(&dst.octets());
        f
    }

    /// An ICMP error of `icmp_type` from `router` to `to`, quoting a packet `q_src` → `q_dst`
    /// (its IPv4 header and 8 bytes).
    fn icmp_error(router: Ipv4Addr, to: Ipv4Addr, icmp_type: u8, q_src: Ipv4Addr, q_dst: Ipv4Addr) -> Vec<u8> {
        let mut f = ipv4(router, to);
        f[14 + 9] = 1;
        f.truncate(14 + 20);
        f.extend_from_slice(&[icmp_type, 4, 0, 0, 0, 0, 0x05, 0x78]);
        let mut quoted = ipv4(q_src, q_dst)[14..].to_vec();
        quoted.truncate(28);
        f.extend_from_slice(&quoted);
        f
    }

    fn arp() -> Vec<u8> {
        let mut f = vec![0u8; 14 + 28];
        f[..6].copy_from_slice(&[0xff; 6]);
        f[12..14].copy_from_slice(&[0x08, 0x06]);
        f
    }

    const VIP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 100);
    const VIP2: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 101);
    const RS: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 11);

    #[test]
    fn both_directions_of_a_nat_connection_reach_the_same_worker() {
        for workers in [1, 2, 3, 4, 7, 32] {
            let prog = vip_prog(&[VIP, VIP2], workers);
            for c in 0..200u32 {
                let client = Ipv4Addr::from(0xc633_6400 + c); // 198.51.100.x
                let want = worker_for(client, workers) as u32;
                let to_vip = run(&prog, &ipv4(client, VIP));
                let to_vip2 = run(&prog, &ipv4(client, VIP2));
                let reply = run(&prog, &ipv4(RS, client));
                assert_eq!(to_vip, want, "client {client} → VIP, {workers} workers");
                assert_eq!(to_vip2, want, "client {client} → VIP2");
                assert_eq!(reply, want, "RS → client {client}");
                assert!(want < workers as u32);
            }
        }
    }

    #[test]
    fn icmp_errors_to_a_vip_reach_the_worker_of_the_quoted_client() {
        let router = Ipv4Addr::new(203, 0, 113, 1);
        for workers in [2, 3, 4, 8] {
            let prog = vip_prog(&[VIP, VIP2], workers);
            for c in 0..100u32 {
                let client = Ipv4Addr::from(0xc633_6400 + c);
                let want = worker_for(client, workers) as u32;
                // Fragmentation needed, time exceeded, source quench about VIP → client.
                for t in [3, 11, 4] {
                    let e = icmp_error(router, VIP, t, VIP, client);
                    assert_eq!(run(&prog, &e), want, "type {t}, client {client}, {workers} workers");
                }
                // An echo request from the client to the VIP: its source decides.
                let mut echo = icmp_error(client, VIP2, 8, VIP, router);
                echo[14 + 20 + 1] = 0;
                assert_eq!(run(&prog, &echo), want, "echo from {client}");
                // A NAT-side ICMP error (real server side → client) hashes the destination.
                let nat = icmp_error(RS, client, 3, client, VIP);
                assert_eq!(run(&prog, &nat), want, "NAT-side error to {client}");
            }
        }
        // An ICMP error too short to hold the quoted header goes to worker 0.
        let mut short = icmp_error(router, VIP, 3, VIP, Ipv4Addr::new(198, 51, 100, 9));
        short.truncate(14 + 20 + 8 + 10);
        assert_eq!(run(&vip_prog(&[VIP], 4), &short), 0);
    }

    #[test]
    fn a_persistence_netmask_keeps_a_client_network_on_one_worker() {
        let router = Ipv4Addr::new(203, 0, 113, 1);
        let mask = 0xffff_ff00; // -M 255.255.255.0
        let net = |n: u32, host: u32| Ipv4Addr::from(0xc633_0000 + (n << 8) + host); // 198.51.n.host
        for workers in [2, 4, 7] {
            let masked = program(&SteerSet { vips: vec![VIP], client_mask: mask, prefixes: vec![] }, workers);
            let plain = vip_prog(&[VIP], workers);
            let mut split_without_mask = false;
            for n in 0..50 {
                let want = worker_for_masked(net(n, 1), mask, workers) as u32;
                for host in [1, 2, 77, 254] {
                    let c = net(n, host);
                    assert_eq!(run(&masked, &ipv4(c, VIP)), want, "{c} → VIP, {workers} workers");
                    assert_eq!(run(&masked, &ipv4(RS, c)), want, "RS → {c}");
                    assert_eq!(run(&masked, &icmp_error(router, VIP, 3, VIP, c)), want, "ICMP about {c}");
                }
                split_without_mask |= run(&plain, &ipv4(net(n, 1), VIP)) != run(&plain, &ipv4(net(n, 2), VIP));
            }
            assert!(split_without_mask, "without a mask two clients of a /24 may land apart ({workers} workers)");
        }
    }

    fn service(key: ServiceKey, persistent: Option<u32>, netmask: u32) -> ServiceConfig {
        let mut c = ServiceConfig::new(key, "rr");
        c.persistent = persistent;
        c.netmask = netmask;
        c
    }

    #[test]
    fn the_set_takes_the_widest_ipv4_persistence_netmask() {
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        let ipvs = ipvs::Ipvs::new(10);
        ipvs.add_service(service(ServiceKey::tcp(VIP.into(), 80), None, 0xffff_0000)).unwrap();
        ipvs.add_service(service(ServiceKey::tcp(v6, 80), Some(300), 64)).unwrap();
        let set = SteerSet::of(&ipvs.services_full(), &[]);
        assert_eq!(
            set,
            SteerSet { vips: vec![VIP], client_mask: u32::MAX, prefixes: vec![] },
            "no IPv4 persistent service"
        );
        ipvs.add_service(service(ServiceKey::tcp(VIP2.into(), 443), Some(300), 0xffff_ff00)).unwrap();
        ipvs.add_service(service(ServiceKey::udp(VIP.into(), 53), Some(300), u32::MAX)).unwrap();
        ipvs.add_service(service(ServiceKey::Fwmark { mark: 3, ipv6: false }, Some(60), 0xffff_f000)).unwrap();
        let set = SteerSet::of(&ipvs.services_full(), &[]);
        assert_eq!(set, SteerSet { vips: vec![VIP, VIP2], client_mask: 0xffff_f000, prefixes: vec![] });
        let other =
            SteerSet { vips: vec![Ipv4Addr::new(10, 0, 0, 1), VIP], client_mask: 0xff00_0000, prefixes: vec![] };
        let u = set.union(&other);
        assert_eq!(u.vips, [Ipv4Addr::new(10, 0, 0, 1), VIP, VIP2]);
        assert_eq!(u.client_mask, 0xff00_0000);
    }

    fn rule(daddr: &str, dprefix: u8) -> FwmarkRule {
        FwmarkRule { daddr: daddr.parse().unwrap(), dprefix, saddr: None, protocol: 6, dports: (80, 90), mark: 1 }
    }

    #[test]
    fn frames_to_a_fwmark_rule_prefix_are_steered_like_vip_frames() {
        let rules = [rule("10.1.2.77", 24), rule("2001:db8::", 64), rule("172.16.9.9", 32)];
        let set = SteerSet::default().with_rules(&rules);
        assert_eq!(set.prefixes, [(Ipv4Addr::new(10, 1, 2, 0), 24), (Ipv4Addr::new(172, 16, 9, 9), 32)]);
        let router = Ipv4Addr::new(203, 0, 113, 1);
        for workers in [2, 3, 8] {
            let prog = program(&SteerSet { vips: vec![VIP], ..set.clone() }, workers);
            let plain = vip_prog(&[VIP], workers);
            let mut differs = false;
            for c in 0..100u32 {
                let client = Ipv4Addr::from(0xc633_6400 + c);
                let want = worker_for(client, workers) as u32;
                for dst in [Ipv4Addr::new(10, 1, 2, 1), Ipv4Addr::new(10, 1, 2, 254), Ipv4Addr::new(172, 16, 9, 9), VIP]
                {
                    assert_eq!(run(&prog, &ipv4(client, dst)), want, "{client} → {dst}, {workers} workers");
                    differs |= run(&plain, &ipv4(client, dst)) != want;
                }
                assert_eq!(run(&prog, &ipv4(RS, client)), want, "NAT reply to {client}");
                assert_eq!(
                    run(&prog, &icmp_error(router, Ipv4Addr::new(10, 1, 2, 5), 3, Ipv4Addr::new(10, 1, 2, 5), client)),
                    want
                );
                // Outside the prefixes: the destination decides.
                let other = Ipv4Addr::new(10, 1, 3, 1);
                assert_eq!(run(&prog, &ipv4(client, other)), worker_for(other, workers) as u32);
            }
            assert!(differs, "without the prefixes these frames would be hashed by destination");
        }
        // Prefixes and VIPs share the instruction budget.
        let many = SteerSet {
            vips: (0..MAX_VIPS as u32).map(|i| Ipv4Addr::from(0x0a00_0000 + i)).collect(),
            prefixes: (0..MAX_PREFIXES as u32).map(|i| (Ipv4Addr::from(0xac10_0000 + (i << 8)), 24)).collect(),
            client_mask: u32::MAX,
        };
        let prog = program(&many, 4);
        assert!(prog.len() <= 4096, "{} instructions", prog.len());
        let client = Ipv4Addr::new(198, 51, 100, 200);
        let last_prefix = Ipv4Addr::from(0xac10_0000 + ((MAX_PREFIXES as u32 - 1) << 8) + 3);
        assert_eq!(run(&prog, &ipv4(client, last_prefix)), worker_for(client, 4) as u32);
    }

    #[test]
    fn clients_spread_over_workers() {
        let prog = vip_prog(&[VIP], 4);
        let mut seen = [0usize; 4];
        for c in 0..400u32 {
            seen[run(&prog, &ipv4(Ipv4Addr::from(0x0a01_0000 + c), VIP)) as usize] += 1;
        }
        assert!(seen.iter().all(|&n| n > 50), "uneven spread {seen:?}");
    }

    #[test]
    fn non_vip_frames_hash_the_destination_and_non_ipv4_goes_to_worker_0() {
        let prog = vip_prog(&[VIP], 8);
        let a = Ipv4Addr::new(203, 0, 113, 9);
        let b = Ipv4Addr::new(203, 0, 113, 77);
        // Not to a VIP: the destination decides, whatever the source.
        assert_eq!(run(&prog, &ipv4(a, b)), worker_for(b, 8) as u32);
        assert_eq!(run(&prog, &ipv4(RS, b)), worker_for(b, 8) as u32);
        assert_eq!(run(&prog, &arp()), 0);
        let mut v6 = ipv4(a, b);
        v6[12..14].copy_from_slice(&[0x86, 0xdd]);
        assert_eq!(run(&prog, &v6), 0);
    }

    #[test]
    fn a_vip_removed_from_the_program_is_hashed_by_destination() {
        let client = Ipv4Addr::new(198, 51, 100, 7);
        let with = vip_prog(&[VIP], 16);
        let without = vip_prog(&[], 16);
        assert_eq!(run(&with, &ipv4(client, VIP)), worker_for(client, 16) as u32);
        assert_eq!(run(&without, &ipv4(client, VIP)), worker_for(VIP, 16) as u32);
    }

    #[test]
    fn many_vips_fit_and_the_last_one_still_matches() {
        let vips: Vec<Ipv4Addr> = (0..MAX_VIPS as u32).map(|i| Ipv4Addr::from(0x0a00_0000 + i)).collect();
        let prog = vip_prog(&vips, 5);
        assert!(prog.len() <= 4096, "{} instructions", prog.len());
        let client = Ipv4Addr::new(198, 51, 100, 200);
        let last = *vips.last().unwrap();
        assert_eq!(run(&prog, &ipv4(client, last)), worker_for(client, 5) as u32);
        assert_eq!(run(&prog, &ipv4(client, vips[0])), worker_for(client, 5) as u32);
    }

    #[test]
    fn truncated_ipv4_goes_to_worker_0() {
        let prog = vip_prog(&[VIP], 4);
        let mut f = ipv4(Ipv4Addr::new(1, 2, 3, 4), VIP);
        f.truncate(14 + 10);
        assert_eq!(run(&prog, &f), 0);
    }

    /// A lone command's VIP change (`Steering::set_vip`, O(1)) leaves the kernel steering
    /// frames exactly as a full update from the same set does. Needs root (BPF maps).
    #[test]
    fn lone_vip_changes_steer_as_a_full_update_does() {
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: BPF maps need root");
            return;
        }
        let (Ok(m1), Ok(m2)) = (ebpf_available(4), ebpf_available(4)) else {
            eprintln!("skipped: eBPF steering unavailable here");
            return;
        };
        let mut lone = Steering::with_map(Vec::new(), 4, m1);
        let mut model = std::collections::BTreeSet::new();
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut mask = u32::MAX;
        for _ in 0..400 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let v = Ipv4Addr::new(10, 0, 0, (x % 40) as u8);
            let present = (x >> 8).is_multiple_of(2);
            mask = if (x >> 16).is_multiple_of(50) { 0xffff_ff00 } else { mask };
            lone.set_vip(Some(v), present, mask, &[]).expect("eBPF steering").expect("map update");
            if present {
                model.insert(v);
            } else {
                model.remove(&v);
            }
            let in_map: std::collections::BTreeSet<_> = lone.ebpf.as_ref().unwrap().in_map.iter().copied().collect();
            assert_eq!(in_map, model);
        }
        let vips: Vec<Ipv4Addr> = model.iter().copied().collect();
        assert!(!vips.is_empty() && vips.len() < 40, "both kinds of destination are tried");
        let mut full = Steering::with_map(Vec::new(), 4, m2);
        full.update(&SteerSet { vips, client_mask: mask, prefixes: vec![] }).unwrap();
        let (a, b) = (lone.ebpf.as_ref().unwrap(), full.ebpf.as_ref().unwrap());
        let (pa, pb) = (a.prog.as_ref().unwrap(), b.prog.as_ref().unwrap());
        let mut by_vip = [false, false];
        for d in 0..40u8 {
            let dst = Ipv4Addr::new(10, 0, 0, d);
            for c in 0..16u32 {
                let f = ipv4(Ipv4Addr::from(0xc633_6400 + c * 7), dst);
                let got = crate::io::fanout_ebpf::test_run(pa.as_fd(), &f).unwrap();
                assert_eq!(got, crate::io::fanout_ebpf::test_run(pb.as_fd(), &f).unwrap(), "{dst}");
                by_vip[usize::from(model.contains(&dst))] |= got != worker_for_masked(dst, mask, 4) as u32;
            }
        }
        assert_eq!(by_vip, [false, true], "frames to a VIP hashed by client, others by destination");
    }

    /// The Rust rule the AF_XDP workers use picks the member the program picks, for every
    /// kind of frame the program tells apart (and for frames cut short).
    #[test]
    fn owner_of_agrees_with_the_program() {
        let vips: Vec<Ipv4Addr> = vec!["10.0.0.100".parse().unwrap(), "10.0.0.101".parse().unwrap()];
        let prefixes = vec![("10.9.0.0".parse().unwrap(), 16u8)];
        for mask in [u32::MAX, 0xffff_ff00] {
            let set = SteerSet { vips: vips.clone(), client_mask: mask, prefixes: prefixes.clone() };
            let steered = |d: u32| {
                set.vips.contains(&Ipv4Addr::from(d)) || (d & 0xffff_0000) == u32::from(Ipv4Addr::new(10, 9, 0, 0))
            };
            for workers in [2usize, 3, 4] {
                let prog = program(&set, workers);
                let mut frames = Vec::new();
                for i in 0..64u8 {
                    let c = Ipv4Addr::new(192, 0, 2, i);
                    let r = Ipv4Addr::new(172, 16, i, 1);
                    frames.push(ipv4(c, vips[usize::from(i) % 2]));
                    frames.push(ipv4(r, c));
                    frames.push(ipv4(c, Ipv4Addr::new(10, 9, i, 3)));
                    frames.push(icmp_error(r, vips[0], 3, vips[0], c));
                    frames.push(icmp_error(r, vips[0], 8, vips[0], c));
                    frames.push(icmp_error(r, c, 11, c, vips[1]));
                }
                frames.push(arp());
                let short: Vec<Vec<u8>> = frames.iter().take(12).map(|f| f[..f.len().min(14 + 18)].to_vec()).collect();
                frames.extend(short);
                let mut cut = icmp_error(Ipv4Addr::new(1, 2, 3, 4), vips[0], 3, vips[0], Ipv4Addr::new(5, 6, 7, 8));
                cut.truncate(14 + 20 + 8 + 18);
                frames.push(cut);
                for f in &frames {
                    assert_eq!(owner_of(f, steered, mask, workers), run(&prog, f) as usize, "{workers} workers, {f:?}");
                }
            }
        }
    }
}
