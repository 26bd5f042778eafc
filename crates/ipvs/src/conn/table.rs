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

use super::entry::{Conn, ConnFlags};

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
    len: usize,
    max: usize,
    seed: foldhash::fast::RandomState,
    /// Next slab position the incremental expiry sweep visits.
    pub(crate) sweep_cursor: usize,
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
            len: 0,
            max,
            seed: foldhash::fast::RandomState::default(),
            sweep_cursor: 0,
        }
    }

    /// Reserve slab space up front (e.g. for the configured maximum), so inserts never
    /// allocate on the packet path.
    pub fn reserve(&mut self, n: usize) {
        self.entries.reserve(n.min(self.max));
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

    /// Bytes of table memory per entry at the configured maximum: index share + slab entry.
    pub fn bytes_per_entry(&self) -> usize {
        self.index.len() * 8 / self.max + std::mem::size_of::<Option<Conn>>()
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
                        // Every cache line the entry touches (an entry is not line-aligned).
                        let p = self.entries.as_ptr().add(id) as *const i8;
                        let last = p.add(std::mem::size_of::<Option<Conn>>() - 1);
                        let mut line = (p as usize & !63) as *const i8;
                        while line <= last {
                            std::arch::x86_64::_mm_prefetch(line, std::arch::x86_64::_MM_HINT_T0);
                            line = line.add(64);
                        }
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
        let mut i = hash as usize & self.mask;
        loop {
            let s = self.index[i];
            if s == 0 {
                return None;
            }
            if (s >> 32) as u32 == hash {
                let id = (s as u32).wrapping_sub(1);
                if let Some(Some(c)) = self.entries.get(id as usize)
                    && is_match(c)
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
                && c.caddr == *saddr
                && c.vaddr == *daddr
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
                && c.caddr == *daddr
                && c.flags & ConnFlags::TEMPLATE == 0
                && if c.flags & ConnFlags::FWD_MASK == 0 {
                    c.dport == sport && c.daddr == *saddr
                } else {
                    c.vport == sport && c.vaddr == *saddr
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
                && c.caddr == *snet
                && c.vport == vport
                && if protocol == 0 { c.fwmark == fwmark } else { c.vaddr == *vaddr }
        })
    }

    /// Insert an entry and index it. Fails when the table holds its maximum.
    pub fn insert(&mut self, conn: Conn) -> Result<ConnId, TableFull> {
        if self.len >= self.max {
            return Err(TableFull);
        }
        let h = self.hash(conn.protocol, &conn.caddr, conn.cport);
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

    /// Change the key fields of an entry (e.g. an invalid template is re-keyed so that it never
    /// matches again, §10).
    pub fn rekey(&mut self, id: ConnId, f: impl FnOnce(&mut Conn)) {
        let Some(c) = self.get_mut(id) else { return };
        let old = (c.protocol, c.caddr, c.cport);
        f(c);
        let new = (c.protocol, c.caddr, c.cport);
        if old != new {
            let oh = self.hash(old.0, &old.1, old.2);
            let nh = self.hash(new.0, &new.1, new.2);
            self.index_remove(oh, id);
            self.index_insert(nh, id);
        }
    }

    /// Unlink and return an entry.
    pub fn remove(&mut self, id: ConnId) -> Option<Conn> {
        let c = self.entries.get_mut(id as usize)?.take()?;
        let h = self.hash(c.protocol, &c.caddr, c.cport);
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

    fn conn(c: u32, cport: u16) -> Conn {
        Conn {
            caddr: IpAddr::V4(Ipv4Addr::from(c)),
            vaddr: "10.0.0.100".parse().unwrap(),
            daddr: "192.168.1.11".parse().unwrap(),
            cport,
            vport: 80,
            dport: 8080,
            protocol: 6,
            state: 0,
            flags: 0,
            timeout: 60,
            expires: 0,
            dest: None,
            control: u32::MAX,
            n_control: 0,
            in_pkts: 0,
            fwmark: 0,
        }
    }

    #[test]
    fn insert_find_both_directions_remove() {
        let mut t = ConnTable::new(1000);
        let id = t.insert(conn(0xc6336407, 40512)).unwrap();
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
            t.insert(conn(1, p)).unwrap();
        }
        assert_eq!(t.insert(conn(1, 9)), Err(TableFull));
        t.remove(1);
        assert!(t.insert(conn(1, 9)).is_ok());
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
                    let id = t.insert(conn(a, p)).unwrap();
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

    #[test]
    fn memory_per_entry_is_bounded() {
        let t = ConnTable::new(1 << 20);
        assert!(t.bytes_per_entry() <= 128, "{} bytes", t.bytes_per_entry());
    }
}
