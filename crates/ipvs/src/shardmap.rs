//! A hash map for published snapshots: cloning it is O(1) (a few reference counts) and a
//! change to a clone copies only the shard list and the one shard it touches, so one service
//! added to or removed from a table of n costs O(√n), not a copy of the table (issue 12).
//!
//! The packet path pays one more pointer hop than a plain map: the key is hashed once, the
//! hash picks the shard (bits the shard's own table does not use much) and is reused there.
//! The shard count doubles when the shards grow past twice its number (entries per shard stay
//! about √(n/2)); that regrow copies everything once, amortised O(1) per insert.

use std::hash::{BuildHasher, Hash};
use std::sync::Arc;

use hashbrown::HashTable;

/// Most shards: 2^16 (bits 40..56 of the hash pick one; hashbrown's tag uses the top 7).
const MAX_BITS: u32 = 16;

/// One shard: a plain hash table of entries, shared between snapshots until changed.
type Shard<K, V> = Arc<HashTable<(K, V)>>;

/// A persistent-enough hash map: see the module doc.
#[derive(Clone)]
pub struct ShardMap<K, V> {
    shards: Arc<[Shard<K, V>]>,
    bits: u32,
    len: usize,
    hasher: foldhash::fast::RandomState,
}

impl<K, V> Default for ShardMap<K, V> {
    fn default() -> Self {
        ShardMap { shards: Arc::from([Arc::new(HashTable::new())]), bits: 0, len: 0, hasher: Default::default() }
    }
}

impl<K, V> std::fmt::Debug for ShardMap<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ShardMap({} entries, {} shards)", self.len, self.shards.len())
    }
}

#[inline]
fn shard_of(h: u64, bits: u32) -> usize {
    ((h >> 40) as usize) & ((1usize << bits) - 1)
}

impl<K: Hash + Eq + Clone, V: Clone> ShardMap<K, V> {
    #[inline]
    pub fn get(&self, k: &K) -> Option<&V> {
        let h = self.hasher.hash_one(k);
        self.shards[shard_of(h, self.bits)].find(h, |(e, _)| e == k).map(|(_, v)| v)
    }

    #[inline]
    pub fn contains_key(&self, k: &K) -> bool {
        self.get(k).is_some()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The shard `i`, made private to this map (copied when a clone shares it).
    fn shard_mut(&mut self, i: usize) -> &mut HashTable<(K, V)> {
        if Arc::get_mut(&mut self.shards).is_none() {
            self.shards = self.shards.iter().cloned().collect();
        }
        let shards = Arc::get_mut(&mut self.shards).unwrap_or_else(|| unreachable!("just copied"));
        Arc::make_mut(&mut shards[i])
    }

    /// Inserts or replaces; returns the old value.
    pub fn insert(&mut self, k: K, v: V) -> Option<V> {
        if self.len + 1 > 2 << (2 * self.bits) && self.bits < MAX_BITS {
            self.regrow(self.bits + 1);
        }
        let h = self.hasher.hash_one(&k);
        let hasher = self.hasher;
        let shard = self.shard_mut(shard_of(h, self.bits));
        if let Some((_, old)) = shard.find_mut(h, |(e, _)| *e == k) {
            return Some(std::mem::replace(old, v));
        }
        shard.insert_unique(h, (k, v), |(e, _)| hasher.hash_one(e));
        self.len += 1;
        None
    }

    pub fn remove(&mut self, k: &K) -> Option<V> {
        let h = self.hasher.hash_one(k);
        let i = shard_of(h, self.bits);
        self.shards[i].find(h, |(e, _)| e == k)?; // nothing copied for a miss
        let shard = self.shard_mut(i);
        let Ok(entry) = shard.find_entry(h, |(e, _)| e == k) else { return None };
        let ((_, v), _) = entry.remove();
        self.len -= 1;
        Some(v)
    }

    /// Every entry, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.shards.iter().flat_map(|s| s.iter().map(|(k, v)| (k, v)))
    }

    pub fn keys(&self) -> impl Iterator<Item = &K> {
        self.iter().map(|(k, _)| k)
    }

    fn regrow(&mut self, bits: u32) {
        let mut shards: Vec<HashTable<(K, V)>> = (0..1usize << bits).map(|_| HashTable::new()).collect();
        for s in self.shards.iter() {
            for (k, v) in s.iter() {
                let h = self.hasher.hash_one(k);
                shards[shard_of(h, bits)].insert_unique(h, (k.clone(), v.clone()), |(e, _)| self.hasher.hash_one(e));
            }
        }
        self.shards = shards.into_iter().map(Arc::new).collect();
        self.bits = bits;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_do_not_see_each_others_changes() {
        let mut a: ShardMap<u32, u32> = ShardMap::default();
        for i in 0..10_000 {
            assert_eq!(a.insert(i, i * 2), None);
        }
        let b = a.clone();
        assert_eq!(a.insert(5, 7), Some(10));
        assert_eq!(a.remove(&6), Some(12));
        assert_eq!(a.remove(&6), None);
        a.insert(20_000, 1);
        assert_eq!((a.len(), b.len()), (10_000, 10_000));
        assert_eq!((a.get(&5), b.get(&5)), (Some(&7), Some(&10)));
        assert_eq!((a.get(&6), b.get(&6)), (None, Some(&12)));
        assert_eq!((a.get(&20_000), b.get(&20_000)), (Some(&1), None));
        assert!(a.shards.len() > 16, "the shard count grows with the map");
        let mut keys: Vec<u32> = b.keys().copied().collect();
        keys.sort_unstable();
        assert_eq!(keys, (0..10_000).collect::<Vec<_>>());
    }
}
