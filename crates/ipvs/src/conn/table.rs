//! The connection table: entries in a slab, found through one open-addressing index hashed on
//! (protocol, client address, client port), as the kernel hashes each entry once and matches
//! both directions on that key (lvs-semantics.md §8).
//!
//! Why not a general hash map: an index slot is 8 bytes (32 bits of hash + entry id), so a probe
//! touches one cache line of the index and then the entry itself — two memory accesses per
//! lookup in a table far larger than the caches, and a fixed memory cost per connection. The
//! index is sized once from the configured maximum (load ≤ 1/2) and never rehashes on the
//! packet path. The hash is keyed with a random seed: the client chooses the key.

use std::hash::BuildHasher;
use std::net::IpAddr;

use super::entry::{Addrs, Conn, ConnAddrs, ConnFlags};

/// Index of an entry in the slab; stable while the entry lives.
pub type ConnId = u32;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Client → VIP.
    In,
    /// Real server → client (NAT replies).
    Out,
}

/// The table holds its configured maximum of entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TableFull;

pub struct ConnTable {
    /// 0 = empty; otherwise `(hash as u32) << 32 | (id + 1)`.
    index: Box<[u64]>,
    mask: usize,
    entries: Vec<Option<Conn>>,
    free: Vec<ConnId>,
    /// Addresses of the entries that are not all-IPv4 ([`Addrs::Wide`]), with their free slots.
    wide: Vec<[[u8; 16]; 3]>,
    wide_free: Vec<u32>,
    len: usize,
    max: usize,
    seed: foldhash::fast::RandomState,
    /// Next slab position the incremental expiry sweep visits.
    pub(crate) sweep_cursor: usize,
    /// Persistence-engine data of templates (the SIP Call-ID, `pe_sip`), by entry: kept
    /// beside the table so the one-line entry does not grow; empty unless a service uses an
    /// engine.
    pe_data: std::collections::HashMap<ConnId, Box<[u8]>>,
}

impl std::fmt::Debug for ConnTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnTable").field("len", &self.len).field("max", &self.max).finish()
    }
}

impl ConnTable {
    /// A table for at most `max` entries (connections plus templates).
    pub fn new(max: usize) -> Self {
        let max = max.max(1);
        let slots = (max * 2).next_power_of_two().max(16);
        let index = vec![0u64; slots].into_boxed_slice();
        advise_huge(index.as_ptr() as *const u8, slots * 8);
        ConnTable {
            index,
            mask: slots - 1,
            entries: Vec::new(),
            free: Vec::new(),
            wide: Vec::new(),
            wide_free: Vec::new(),
            len: 0,
            max,
            seed: foldhash::fast::RandomState::default(),
            sweep_cursor: 0,
            pe_data: std::collections::HashMap::new(),
        }
    }

    /// Reserve slab space up front (e.g. for the configured maximum), so inserts never
    /// allocate on the packet path.
    pub fn reserve(&mut self, n: usize) {
        self.entries.reserve(n.min(self.max));
        self.wide.reserve(n.min(self.max));
        advise_huge(self.entries.as_ptr() as *const u8, self.entries.capacity() * std::mem::size_of::<Option<Conn>>());
    }

    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    #[inline]
    pub fn max(&self) -> usize {
        self.max
    }
    /// Slab positions in use or free (the bound of [`ConnTable::get`] ids).
    #[inline]
    pub fn capacity_used(&self) -> usize {
        self.entries.len()
    }

    /// Bytes of table memory per IPv4 entry at the configured maximum: index share + slab
    /// entry (one cache line).
    pub fn bytes_per_entry(&self) -> usize {
        self.index.len() * 8 / self.max + std::mem::size_of::<Option<Conn>>()
    }

    /// [`ConnTable::bytes_per_entry`] for an IPv6 (or mixed-family) entry: plus its addresses
    /// in the side slab.
    pub fn bytes_per_entry_v6(&self) -> usize {
        self.bytes_per_entry() + std::mem::size_of::<[[u8; 16]; 3]>()
    }

    /// The addresses of an entry of this table.
    #[inline]
    pub fn addrs(&self, c: &Conn) -> ConnAddrs {
        ConnAddrs { caddr: self.addr(c, 0), vaddr: self.addr(c, 1), daddr: self.addr(c, 2) }
    }
    /// Client address of an entry of this table.
    #[inline]
    pub fn caddr(&self, c: &Conn) -> IpAddr {
        self.addr(c, 0)
    }
    /// Virtual address of an entry of this table.
    #[inline]
    pub fn vaddr(&self, c: &Conn) -> IpAddr {
        self.addr(c, 1)
    }
    /// Destination (real server) address of an entry of this table.
    #[inline]
    pub fn daddr(&self, c: &Conn) -> IpAddr {
        self.addr(c, 2)
    }

    /// Address `i` (0 client, 1 virtual, 2 destination).
    #[inline]
    fn addr(&self, c: &Conn, i: usize) -> IpAddr {
        match c.addrs {
            Addrs::V4 { c, v, d } => IpAddr::V4([c, v, d][i].into()),
            Addrs::Wide { slot, v4 } => {
                let b = self.wide.get(slot as usize).map_or([0; 16], |w| w[i]);
                if v4 & (1 << i) != 0 {
                    IpAddr::V4(std::net::Ipv6Addr::from(b).to_ipv4_mapped().unwrap_or(std::net::Ipv4Addr::UNSPECIFIED))
                } else {
                    IpAddr::V6(b.into())
                }
            }
        }
    }

    /// Is address `i` of `c` equal to `a`? (No conversion for the all-IPv4 case.)
    #[inline(always)]
    fn addr_is(&self, c: &Conn, i: usize, a: &IpAddr) -> bool {
        match (c.addrs, a) {
            (Addrs::V4 { c, v, d }, IpAddr::V4(x)) => [c, v, d][i] == u32::from(*x),
            (Addrs::V4 { .. }, IpAddr::V6(_)) => false,
            _ => self.addr(c, i) == *a,
        }
    }

    /// The key hash of an IPv4 connection (same value as [`ConnTable::hash`]).
    #[inline]
    pub fn hash_v4(&self, protocol: u8, addr: u32, port: u16) -> u32 {
        self.seed.hash_one((protocol as u64) << 48 | (addr as u64) << 16 | port as u64) as u32
    }

    #[inline]
    pub fn hash(&self, protocol: u8, addr: &IpAddr, port: u16) -> u32 {
        // One fixed-size integer per family hashes faster than the tuple of parts.
        let h = match addr {
            IpAddr::V4(a) => return self.hash_v4(protocol, u32::from(*a), port),
            IpAddr::V6(a) => self.seed.hash_one((u128::from(*a), (protocol as u32) << 16 | port as u32)),
        };
        h as u32
    }

    /// Hint the CPU to fetch the index line for a key hash (batch pipelining).
    #[inline]
    pub fn prefetch(&self, hash: u32) {
        #[cfg(target_arch = "x86_64")]
        unsafe {
            // SAFETY: the pointer is in bounds (masked index); prefetch never faults.
            let p = self.index.as_ptr().add(hash as usize & self.mask);
            std::arch::x86_64::_mm_prefetch(p as *const i8, std::arch::x86_64::_MM_HINT_T0);
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = hash;
    }

    /// Second pipeline stage: follow the (now cached) index to the first entry whose hash
    /// matches and prefetch it.
    #[inline]
    pub fn prefetch_entry(&self, hash: u32) {
        let mut i = hash as usize & self.mask;
        loop {
            let s = self.index[i];
            if s == 0 {
                return;
            }
            if (s >> 32) as u32 == hash {
                let id = (s as u32).wrapping_sub(1) as usize;
                if id < self.entries.len() {
                    #[cfg(target_arch = "x86_64")]
                    unsafe {
                        // SAFETY: id is in bounds; prefetch never faults.
                        // An entry is one aligned cache line (`Conn` is 64-byte aligned).
                        let p = self.entries.as_ptr().add(id) as *const i8;
                        std::arch::x86_64::_mm_prefetch(p, std::arch::x86_64::_MM_HINT_T0);
                    }
                }
                return;
            }
            i = (i + 1) & self.mask;
        }
    }

    #[inline]
    pub fn get(&self, id: ConnId) -> Option<&Conn> {
        self.entries.get(id as usize).and_then(|e| e.as_ref())
    }
    #[inline]
    pub fn get_mut(&mut self, id: ConnId) -> Option<&mut Conn> {
        self.entries.get_mut(id as usize).and_then(|e| e.as_mut())
    }

    /// Walk the index from the key's home slot, calling `is_match` on each entry whose hash
    /// matches.
    #[inline]
    fn find(&self, hash: u32, is_match: impl Fn(&Conn) -> bool) -> Option<ConnId> {
        self.find_id(hash, |_, c| is_match(c))
    }

    /// `find` with the entry's id given to the predicate too.
    #[inline]
    fn find_id(&self, hash: u32, is_match: impl Fn(ConnId, &Conn) -> bool) -> Option<ConnId> {
        let mut i = hash as usize & self.mask;
        loop {
            let s = self.index[i];
            if s == 0 {
                return None;
            }
            if (s >> 32) as u32 == hash {
                let id = (s as u32).wrapping_sub(1);
                if let Some(Some(c)) = self.entries.get(id as usize)
                    && is_match(id, c)
                {
                    return Some(id);
                }
            }
            i = (i + 1) & self.mask;
        }
    }

    /// In-lookup (client → VIP): the packet's source is the client.
    #[inline]
    pub fn lookup_in(&self, protocol: u8, saddr: &IpAddr, sport: u16, daddr: &IpAddr, dport: u16) -> Option<ConnId> {
        self.lookup_in_hashed(self.hash(protocol, saddr, sport), protocol, saddr, sport, daddr, dport)
    }

    /// [`ConnTable::lookup_in`] with the key hash already computed (batch pipelining).
    #[inline]
    pub fn lookup_in_hashed(
        &self,
        h: u32,
        protocol: u8,
        saddr: &IpAddr,
        sport: u16,
        daddr: &IpAddr,
        dport: u16,
    ) -> Option<ConnId> {
        self.find(h, |c| {
            c.cport == sport
                && c.vport == dport
                && c.protocol == protocol
                && self.addr_is(c, 0, saddr)
                && self.addr_is(c, 1, daddr)
                && c.flags & ConnFlags::TEMPLATE == 0
        })
    }

    /// [`ConnTable::lookup_in_hashed`] for an IPv4 packet, addresses as numbers (the shortcut).
    #[inline]
    pub fn lookup_in_v4(&self, h: u32, protocol: u8, saddr: u32, sport: u16, daddr: u32, dport: u16) -> Option<ConnId> {
        self.find(h, |c| {
            c.cport == sport
                && c.vport == dport
                && c.protocol == protocol
                && matches!(c.addrs, Addrs::V4 { c, v, .. } if c == saddr && v == daddr)
                && c.flags & ConnFlags::TEMPLATE == 0
        })
    }

    /// Out-lookup (real server → client): the packet's destination is the client; its source
    /// must be the real server for NAT entries, or the VIP for the others (§8).
    #[inline]
    pub fn lookup_out(&self, protocol: u8, saddr: &IpAddr, sport: u16, daddr: &IpAddr, dport: u16) -> Option<ConnId> {
        self.lookup_out_hashed(self.hash(protocol, daddr, dport), protocol, saddr, sport, daddr, dport)
    }

    /// [`ConnTable::lookup_out`] with the key hash already computed.
    #[inline]
    pub fn lookup_out_hashed(
        &self,
        h: u32,
        protocol: u8,
        saddr: &IpAddr,
        sport: u16,
        daddr: &IpAddr,
        dport: u16,
    ) -> Option<ConnId> {
        self.find(h, |c| {
            c.cport == dport
                && c.protocol == protocol
                && self.addr_is(c, 0, daddr)
                && c.flags & ConnFlags::TEMPLATE == 0
                && if c.flags & ConnFlags::FWD_MASK == 0 {
                    c.dport == sport && self.addr_is(c, 2, saddr)
                } else {
                    c.vport == sport && self.addr_is(c, 1, saddr)
                }
        })
    }

    /// Persistence template lookup: ⟨protocol, caddr = snet, cport = 0, vaddr, vport⟩ (§8).
    pub fn lookup_template(
        &self,
        protocol: u8,
        snet: &IpAddr,
        vaddr: &IpAddr,
        vport: u16,
        fwmark: u32,
    ) -> Option<ConnId> {
        let h = self.hash(protocol, snet, 0);
        self.find(h, |c| {
            c.flags & ConnFlags::TEMPLATE != 0
                && c.protocol == protocol
                && c.cport == 0
                && self.addr_is(c, 0, snet)
                && c.vport == vport
                && if protocol == 0 { c.fwmark == fwmark } else { self.addr_is(c, 1, vaddr) }
        })
    }

    /// The client port an engine template is indexed under: a seeded hash of its data, never
    /// 0. The kernel hashes such templates by their data (`ip_vs_sip_hashkey_raw`); here it
    /// spreads the many templates of one client network (one per SIP call) over the index
    /// instead of piling them on one slot. Listings show 0, as the kernel.
    pub fn pe_port(&self, pe_data: &[u8]) -> u16 {
        (self.seed.hash_one(pe_data) as u16).max(1)
    }

    /// A persistence-engine template (`ip_vs_ct_in_get` with the engine's `ct_match`): the
    /// template of `lookup_template`'s key whose engine data equals `pe_data`, indexed under
    /// `pe_port(pe_data)`.
    pub fn lookup_template_pe(
        &self,
        protocol: u8,
        snet: &IpAddr,
        vaddr: &IpAddr,
        vport: u16,
        pe_data: &[u8],
    ) -> Option<ConnId> {
        let cport = self.pe_port(pe_data);
        let h = self.hash(protocol, snet, cport);
        self.find_id(h, |id, c| {
            c.flags & ConnFlags::TEMPLATE != 0
                && c.protocol == protocol
                && c.cport == cport
                && self.addr_is(c, 0, snet)
                && self.addr_is(c, 1, vaddr)
                && c.vport == vport
                && self.pe_data.get(&id).is_some_and(|d| **d == *pe_data)
        })
    }

    /// Attaches persistence-engine data to an entry (a SIP template's Call-ID).
    pub fn set_pe_data(&mut self, id: ConnId, data: &[u8]) {
        self.pe_data.insert(id, data.into());
    }

    /// The persistence-engine data of an entry, if it has some.
    pub fn pe_data(&self, id: ConnId) -> Option<&[u8]> {
        if self.pe_data.is_empty() {
            return None;
        }
        self.pe_data.get(&id).map(|d| &**d)
    }

    /// Insert an entry with its addresses and index it. Fails when the table holds its
    /// maximum.
    pub fn insert(&mut self, a: ConnAddrs, mut conn: Conn) -> Result<ConnId, TableFull> {
        if self.len >= self.max {
            return Err(TableFull);
        }
        let h = self.hash(conn.protocol, &a.caddr, conn.cport);
        conn.addrs = match (a.caddr, a.vaddr, a.daddr) {
            (IpAddr::V4(c), IpAddr::V4(v), IpAddr::V4(d)) => Addrs::V4 { c: c.into(), v: v.into(), d: d.into() },
            _ => {
                let mut w = [[0u8; 16]; 3];
                let mut v4 = 0u8;
                for (i, x) in [a.caddr, a.vaddr, a.daddr].iter().enumerate() {
                    w[i] = match x {
                        IpAddr::V4(x) => {
                            v4 |= 1 << i;
                            x.to_ipv6_mapped().octets()
                        }
                        IpAddr::V6(x) => x.octets(),
                    };
                }
                let slot = match self.wide_free.pop() {
                    Some(s) => {
                        self.wide[s as usize] = w;
                        s
                    }
                    None => {
                        self.wide.push(w);
                        (self.wide.len() - 1) as u32
                    }
                };
                Addrs::Wide { slot, v4 }
            }
        };
        let id = match self.free.pop() {
            Some(id) => {
                self.entries[id as usize] = Some(conn);
                id
            }
            None => {
                self.entries.push(Some(conn));
                (self.entries.len() - 1) as ConnId
            }
        };
        self.index_insert(h, id);
        self.len += 1;
        Ok(id)
    }

    fn index_insert(&mut self, h: u32, id: ConnId) {
        let mut i = h as usize & self.mask;
        while self.index[i] != 0 {
            i = (i + 1) & self.mask;
        }
        self.index[i] = (h as u64) << 32 | (id as u64 + 1);
    }

    fn index_remove(&mut self, h: u32, id: ConnId) {
        let want = (h as u64) << 32 | (id as u64 + 1);
        let mut i = h as usize & self.mask;
        loop {
            let s = self.index[i];
            if s == 0 {
                debug_assert!(false, "indexed entry not found");
                return;
            }
            if s == want {
                break;
            }
            i = (i + 1) & self.mask;
        }
        // Backward-shift deletion keeps every probe sequence unbroken without tombstones.
        let mut j = i;
        loop {
            j = (j + 1) & self.mask;
            let s = self.index[j];
            if s == 0 {
                break;
            }
            let home = (s >> 32) as usize & self.mask;
            let stays = if i <= j { i < home && home <= j } else { i < home || home <= j };
            if !stays {
                self.index[i] = s;
                i = j;
            }
        }
        self.index[i] = 0;
    }

    /// Change the key's ports or protocol of an entry (e.g. an invalid template is re-keyed so
    /// that it never matches again, §10); the addresses stay.
    pub fn rekey(&mut self, id: ConnId, f: impl FnOnce(&mut Conn)) {
        let Some(c) = self.get(id) else { return };
        let caddr = self.caddr(c);
        let old = (c.protocol, c.cport);
        let Some(c) = self.get_mut(id) else { return };
        f(c);
        let new = (c.protocol, c.cport);
        if old != new {
            let oh = self.hash(old.0, &caddr, old.1);
            let nh = self.hash(new.0, &caddr, new.1);
            self.index_remove(oh, id);
            self.index_insert(nh, id);
        }
    }

    /// Unlink and return an entry. Its addresses go with it (read them before).
    pub fn remove(&mut self, id: ConnId) -> Option<Conn> {
        let caddr = self.caddr(self.get(id)?);
        let c = self.entries.get_mut(id as usize)?.take()?;
        if !self.pe_data.is_empty() {
            self.pe_data.remove(&id);
        }
        if let Addrs::Wide { slot, .. } = c.addrs {
            self.wide_free.push(slot);
        }
        let h = self.hash(c.protocol, &caddr, c.cport);
        self.index_remove(h, id);
        self.free.push(id);
        self.len -= 1;
        Some(c)
    }

    /// Every live entry id (control plane listings; not for the packet path).
    pub fn ids(&self) -> impl Iterator<Item = ConnId> + '_ {
        self.entries.iter().enumerate().filter(|(_, e)| e.is_some()).map(|(i, _)| i as ConnId)
    }
}

/// Ask for transparent huge pages on a large table: random lookups over a table of hundreds
/// of megabytes otherwise miss the TLB on almost every packet. Advisory; errors are ignored.
fn advise_huge(ptr: *const u8, len: usize) {
    const HUGE: usize = 2 << 20;
    let start = (ptr as usize).next_multiple_of(HUGE);
    let end = (ptr as usize + len) & !(HUGE - 1);
    if end > start {
        // SAFETY: the range lies inside an allocation we own; madvise does not touch memory
        // contents for MADV_HUGEPAGE.
        unsafe {
            libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn conn(c: u32, cport: u16) -> (ConnAddrs, Conn) {
        let a = ConnAddrs {
            caddr: IpAddr::V4(Ipv4Addr::from(c)),
            vaddr: "10.0.0.100".parse().unwrap(),
            daddr: "192.168.1.11".parse().unwrap(),
        };
        let mut e = Conn::new(6, cport, 80, 8080);
        e.timeout = 60;
        (a, e)
    }

    fn insert(t: &mut ConnTable, (a, c): (ConnAddrs, Conn)) -> Result<ConnId, TableFull> {
        t.insert(a, c)
    }

    #[test]
    fn insert_find_both_directions_remove() {
        let mut t = ConnTable::new(1000);
        let id = insert(&mut t, conn(0xc6336407, 40512)).unwrap();
        let c: IpAddr = "198.51.100.7".parse().unwrap();
        let vip: IpAddr = "10.0.0.100".parse().unwrap();
        let rip: IpAddr = "192.168.1.11".parse().unwrap();
        assert_eq!(t.lookup_in(6, &c, 40512, &vip, 80), Some(id));
        assert_eq!(t.lookup_in(17, &c, 40512, &vip, 80), None);
        assert_eq!(t.lookup_in(6, &c, 40513, &vip, 80), None);
        assert_eq!(t.lookup_in(6, &c, 40512, &vip, 81), None);
        assert_eq!(t.lookup_out(6, &rip, 8080, &c, 40512), Some(id), "NAT reply from the real server");
        assert_eq!(t.lookup_out(6, &vip, 80, &c, 40512), None, "NAT entry: source must be the RIP");
        t.get_mut(id).unwrap().flags = 3; // DR: replies carry the VIP as source
        assert_eq!(t.lookup_out(6, &vip, 80, &c, 40512), Some(id));
        assert!(t.remove(id).is_some());
        assert!(t.remove(id).is_none());
        assert_eq!(t.lookup_in(6, &c, 40512, &vip, 80), None);
        assert!(t.is_empty());
    }

    #[test]
    fn limit_is_enforced() {
        let mut t = ConnTable::new(3);
        for p in 0..3 {
            insert(&mut t, conn(1, p)).unwrap();
        }
        assert_eq!(insert(&mut t, conn(1, 9)), Err(TableFull));
        t.remove(1);
        assert!(insert(&mut t, conn(1, 9)).is_ok());
    }

    /// Random inserts and removals against a model: every live entry stays findable through
    /// the backward-shift deletions, and removed ones are gone.
    #[test]
    fn churn_against_model() {
        let mut t = ConnTable::new(4096);
        let mut live: Vec<(u32, u16, ConnId)> = Vec::new();
        let mut x = 0x9e3779b97f4a7c15u64;
        let vip: IpAddr = "10.0.0.100".parse().unwrap();
        for round in 0..40_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            if live.len() < 3000 && (!x.is_multiple_of(3) || live.is_empty()) {
                let (a, p) = ((x >> 20) as u32 % 64, (x >> 40) as u16);
                if t.lookup_in(6, &IpAddr::V4(a.into()), p, &vip, 80).is_none() {
                    let id = insert(&mut t, conn(a, p)).unwrap();
                    live.push((a, p, id));
                }
            } else {
                let k = (x >> 16) as usize % live.len();
                let (a, p, id) = live.swap_remove(k);
                assert_eq!(t.lookup_in(6, &IpAddr::V4(a.into()), p, &vip, 80), Some(id));
                t.remove(id);
                assert_eq!(t.lookup_in(6, &IpAddr::V4(a.into()), p, &vip, 80), None);
            }
            if round % 5000 == 0 {
                for &(a, p, id) in &live {
                    assert_eq!(t.lookup_in(6, &IpAddr::V4(a.into()), p, &vip, 80), Some(id));
                }
            }
        }
        assert_eq!(t.len(), live.len());
    }

    /// IPv6 and mixed-family entries keep their addresses in the side slab: found from both
    /// directions, addresses read back exactly, slots reused after removal.
    #[test]
    fn wide_entries_live_in_the_side_slab() {
        let mut t = ConnTable::new(64);
        let c6: IpAddr = "2001:db8:1::7".parse().unwrap();
        let v6: IpAddr = "2001:db8:100::100".parse().unwrap();
        let r6: IpAddr = "2001:db8:2::11".parse().unwrap();
        let r4: IpAddr = "192.168.1.11".parse().unwrap();
        let six = ConnAddrs { caddr: c6, vaddr: v6, daddr: r6 };
        let mixed = ConnAddrs { caddr: c6, vaddr: v6, daddr: r4 }; // IPv6 service, IPIP to an IPv4 server
        let a = t.insert(six, Conn::new(6, 5000, 80, 8080)).unwrap();
        let b = t.insert(mixed, Conn::new(6, 5001, 80, 8080)).unwrap();
        assert_eq!(t.addrs(t.get(a).unwrap()), six);
        assert_eq!(t.addrs(t.get(b).unwrap()), mixed);
        assert_eq!(t.lookup_in(6, &c6, 5000, &v6, 80), Some(a));
        assert_eq!(t.lookup_in(6, &c6, 5001, &v6, 80), Some(b));
        assert_eq!(t.lookup_out(6, &r6, 8080, &c6, 5000), Some(a));
        assert_eq!(t.lookup_out(6, &r4, 8080, &c6, 5001), Some(b));
        assert_eq!(t.lookup_out(6, &r6, 8080, &c6, 5001), None);
        assert_eq!(t.wide.len(), 2);
        t.remove(a);
        assert_eq!(t.lookup_in(6, &c6, 5000, &v6, 80), None);
        let c = t.insert(six, Conn::new(17, 53, 53, 53)).unwrap();
        assert_eq!(t.wide.len(), 2, "the freed slot is reused");
        assert_eq!(t.addrs(t.get(c).unwrap()), six);
        assert_eq!(t.addrs(t.get(b).unwrap()), mixed, "a neighbour's addresses are untouched");
        // An all-IPv4 entry takes no side slot.
        insert(&mut t, conn(0x0a000001, 1)).unwrap();
        assert_eq!(t.wide.len(), 2);
    }

    #[test]
    fn an_entry_is_one_cache_line() {
        assert_eq!(std::mem::size_of::<Option<Conn>>(), 64);
        assert_eq!(std::mem::align_of::<Conn>(), 64);
    }

    #[test]
    fn memory_per_entry_is_bounded() {
        let t = ConnTable::new(1 << 20);
        assert!(t.bytes_per_entry() <= 128, "{} bytes", t.bytes_per_entry());
    }
}
