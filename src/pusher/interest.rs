//! Sparse routing between shards: which shards of this node have
//! subscribers of a channel, so a publication is posted only to them.
//!
//! [`InterestTable`] is one per node, shared by every shard (the one piece
//! of shared mutable state between them besides the mesh). Its key is a
//! 64-bit keyed hash of (app, channel name) ([`InterestTable::key`]); its
//! value, a bitset of shards ([`ShardSet`], any number of shards). A shard
//! sets its own bit when a channel gets its first *hold* there and clears
//! it when the last hold goes ([`ShardInterest`] counts the holds); every
//! other shard only reads it, when it publishes ([`InterestTable::add_to`]).
//!
//! # Why it is exact
//! The guarantee: an event published anywhere on the node after a client
//! got `subscription_succeeded` reaches that client.
//! - A channel's holds on a shard are its local channel (one hold while it
//!   has local subscribers: `ChannelTable`) and every join in flight to the
//!   channel's owner (`subscribe`: one hold from posting `Join` until its
//!   `Joined` is handled). So the bit is set, under the stripe's write
//!   lock, before the subscription is confirmed: for a plain channel in the
//!   same step that queues `subscription_succeeded`, before the flusher
//!   writes it; for presence and cache channels before the `Join` even
//!   leaves, which also keeps the owner's own promise (a `member_added`
//!   the owner publishes after the joiner's snapshot reaches the joiner:
//!   the owner reads the bit after it handled the `Join`, so it sees it,
//!   and the ring keeps it behind the `Joined`).
//! - A publisher reads the bit under the stripe's read lock when it
//!   publishes. An event published after the client saw the confirmation
//!   follows, through the kernel (socket writes and reads) and the lock,
//!   the bit's setting: the publisher sees it set. The publication then
//!   goes through the mesh like before: rings are FIFO per (source shard,
//!   destination shard), and the messages a source sends one shard are a
//!   subsequence of what it sent before, so each source keeps its order
//!   ([`super::delivery::Source`]).
//! - The last subscriber leaving clears the bit; a publication already
//!   posted to that shard is still delivered there, to nobody (the
//!   delivery finds no channel). A publisher that read the bit just before
//!   it was cleared sends one message too many: a false positive, as are
//!   two channels whose keys collide. Neither ever loses an event.
//! - A shard's own subscribers are always served by its own
//!   `deliver_local`; the table is read only for the other shards.
//!
//! # Cost
//! Publishing reads one stripe per channel: a keyed hash of the name, one
//! uncontended read lock (stripes are many and on their own cache lines,
//! so shards rarely touch the same one), one map lookup. Subscribing takes
//! a stripe's write lock only on a channel's first hold on a shard and
//! releasing only on its last: no message to any shard, whatever the
//! number of shards. Memory: one entry (key and bitset, about 40 bytes)
//! per channel subscribed anywhere on the node, and per shard one hold
//! count (about 16 bytes) per channel it holds; nothing per connection.
//! Entries go with their last hold, and stripes give back room after mass
//! departures, so the table is bounded by the channels subscribed on the
//! node (at most connections × `max_subscriptions_per_connection`).

use crate::apps::AppIdx;
use rustc_hash::FxHashMap;
use smallvec::SmallVec;
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::RwLock;

/// A set of shards of this node, one bit each (inline up to 64 shards).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShardSet(SmallVec<[u64; 1]>);

impl ShardSet {
    pub fn insert(&mut self, shard: usize) {
        let (word, bit) = (shard / 64, shard % 64);
        if self.0.len() <= word {
            self.0.resize(word + 1, 0);
        }
        self.0[word] |= 1 << bit;
    }

    pub fn remove(&mut self, shard: usize) {
        if let Some(w) = self.0.get_mut(shard / 64) {
            *w &= !(1 << (shard % 64));
        }
    }

    pub fn contains(&self, shard: usize) -> bool {
        self.0
            .get(shard / 64)
            .is_some_and(|w| w & (1 << (shard % 64)) != 0)
    }

    pub fn is_empty(&self) -> bool {
        self.0.iter().all(|&w| w == 0)
    }

    /// Adds every shard of `other`.
    pub fn union(&mut self, other: &ShardSet) {
        if self.0.len() < other.0.len() {
            self.0.resize(other.0.len(), 0);
        }
        for (w, o) in self.0.iter_mut().zip(&other.0) {
            *w |= o;
        }
    }

    /// The shards in the set, in increasing order.
    pub fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        self.0.iter().enumerate().flat_map(|(i, &w)| {
            let mut rest = w;
            std::iter::from_fn(move || {
                if rest == 0 {
                    return None;
                }
                let bit = rest.trailing_zeros() as usize;
                rest &= rest - 1;
                Some(i * 64 + bit)
            })
        })
    }

    pub fn len(&self) -> usize {
        self.0.iter().map(|w| w.count_ones() as usize).sum()
    }
}

/// One lock's share of the table, on its own cache lines.
#[repr(align(128))]
#[derive(Default)]
struct Stripe(RwLock<FxHashMap<u64, ShardSet>>);

/// Which shards hold which channels (see the module doc).
///
/// # Invariants
/// - Shard `s`'s bit is set in the entry of key `k` iff `s`'s
///   [`ShardInterest`] counts at least one hold of `k` (set and cleared
///   only by `s`, under the stripe's write lock).
/// - An entry exists iff its set is not empty.
pub struct InterestTable {
    stripes: Box<[Stripe]>,
    /// `stripes.len() - 1` (a power of two less one).
    mask: u64,
    /// Keys of the channel-name hash, the same for every shard (names are
    /// client-chosen: a keyed hash, so nobody can aim names at one entry).
    hasher: RandomState,
}

impl InterestTable {
    /// A table for `shards` shards: 16 stripes per shard, at least 16.
    pub fn new(shards: usize) -> InterestTable {
        let n = (shards.max(1) * 16).next_power_of_two();
        InterestTable {
            stripes: (0..n).map(|_| Stripe::default()).collect(),
            mask: n as u64 - 1,
            hasher: RandomState::new(),
        }
    }

    /// The key of a channel of an app.
    pub fn key(&self, app: AppIdx, name: &str) -> u64 {
        self.hasher.hash_one((app.0, name))
    }

    fn stripe(&self, key: u64) -> &RwLock<FxHashMap<u64, ShardSet>> {
        // The high bits: the map inside hashes the key again for its buckets.
        &self.stripes[((key >> 48) & self.mask) as usize].0
    }

    /// Adds the shards holding `key` to `into`.
    pub fn add_to(&self, key: u64, into: &mut ShardSet) {
        let map = self.stripe(key).read().unwrap_or_else(|e| e.into_inner());
        if let Some(set) = map.get(&key) {
            into.union(set);
        }
    }

    /// Whether `shard` holds `key` now (tests, metrics).
    pub fn holds(&self, key: u64, shard: usize) -> bool {
        let mut set = ShardSet::default();
        self.add_to(key, &mut set);
        set.contains(shard)
    }

    /// Channel keys with at least one holder.
    pub fn len(&self) -> usize {
        self.stripes
            .iter()
            .map(|s| s.0.read().unwrap_or_else(|e| e.into_inner()).len())
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn set(&self, key: u64, shard: usize) {
        let mut map = self.stripe(key).write().unwrap_or_else(|e| e.into_inner());
        map.entry(key).or_default().insert(shard);
    }

    fn clear(&self, key: u64, shard: usize) {
        let mut map = self.stripe(key).write().unwrap_or_else(|e| e.into_inner());
        if let Some(set) = map.get_mut(&key) {
            set.remove(shard);
            if set.is_empty() {
                map.remove(&key);
                if map.capacity() > 4 * map.len().max(256) {
                    map.shrink_to_fit();
                }
            }
        }
    }
}

impl Default for InterestTable {
    fn default() -> InterestTable {
        InterestTable::new(1)
    }
}

/// One shard's side of the table: how many holds it has on each key.
///
/// # Invariants
/// - `holds[k] > 0` for every key present; the shard's bit for `k` in the
///   table is set iff `k` is present.
pub struct ShardInterest {
    table: std::sync::Arc<InterestTable>,
    shard: usize,
    /// Keys are keyed hashes already: a plain (non-keyed) map is safe.
    holds: FxHashMap<u64, u32>,
}

impl ShardInterest {
    pub fn new(table: std::sync::Arc<InterestTable>, shard: usize) -> ShardInterest {
        ShardInterest {
            table,
            shard,
            holds: FxHashMap::default(),
        }
    }

    /// Shard 0 of a one-shard table of its own (a channel table used
    /// without other shards: tests, benchmarks).
    pub fn alone() -> ShardInterest {
        ShardInterest::new(std::sync::Arc::new(InterestTable::new(1)), 0)
    }

    pub fn table(&self) -> &InterestTable {
        &self.table
    }

    /// One more hold on `key`; the first sets this shard's bit, before
    /// this returns.
    pub fn hold(&mut self, key: u64) {
        let n = self.holds.entry(key).or_insert(0);
        *n += 1;
        if *n == 1 {
            self.table.set(key, self.shard);
        }
    }

    /// One hold less on `key` (one that [`ShardInterest::hold`] took); the
    /// last clears this shard's bit.
    pub fn release(&mut self, key: u64) {
        let Some(n) = self.holds.get_mut(&key) else {
            debug_assert!(false, "interest released without a hold");
            return;
        };
        *n -= 1;
        if *n == 0 {
            self.holds.remove(&key);
            self.table.clear(key, self.shard);
        }
    }

    /// Keys this shard holds.
    pub fn len(&self) -> usize {
        self.holds.len()
    }

    pub fn is_empty(&self) -> bool {
        self.holds.is_empty()
    }

    /// Gives back memory kept from a larger past.
    pub fn shrink(&mut self) {
        if self.holds.capacity() > 4 * self.holds.len().max(1024) {
            self.holds.shrink_to_fit();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn shard_sets_hold_more_than_64_shards() {
        let mut s = ShardSet::default();
        for shard in [0, 5, 63, 64, 130] {
            s.insert(shard);
        }
        assert_eq!(s.iter().collect::<Vec<_>>(), vec![0, 5, 63, 64, 130]);
        assert_eq!(s.len(), 5);
        s.remove(64);
        assert!(!s.contains(64) && s.contains(130));
        let mut t = ShardSet::default();
        t.insert(1);
        t.union(&s);
        assert_eq!(t.iter().collect::<Vec<_>>(), vec![0, 1, 5, 63, 130]);
        t.remove(7); // absent: no change
        t.remove(500); // beyond the words: no change
        assert_eq!(t.len(), 5);
        assert!(ShardSet::default().is_empty());
    }

    #[test]
    fn bit_follows_the_first_hold_and_the_last_release() {
        let table = Arc::new(InterestTable::new(3));
        let mut a = ShardInterest::new(table.clone(), 0);
        let mut c = ShardInterest::new(table.clone(), 2);
        let k = table.key(AppIdx(0), "private-u1");
        assert_ne!(k, table.key(AppIdx(1), "private-u1"), "apps differ");
        a.hold(k);
        a.hold(k);
        c.hold(k);
        let mut set = ShardSet::default();
        table.add_to(k, &mut set);
        assert_eq!(set.iter().collect::<Vec<_>>(), vec![0, 2]);
        a.release(k);
        assert!(table.holds(k, 0), "one hold of shard 0 is left");
        a.release(k);
        assert!(!table.holds(k, 0) && table.holds(k, 2));
        c.release(k);
        assert!(table.is_empty() && a.is_empty() && c.is_empty());
    }

    #[test]
    fn table_is_exact_under_many_shards_at_once() {
        // 8 threads as 8 shards (two beyond a word's worth would need 65;
        // shard ids 60..68 cross the word boundary), each holding and
        // releasing keys shared with the others; at the end nothing is left
        // and, throughout, a shard always sees its own bit while it holds.
        let table = Arc::new(InterestTable::new(68));
        let threads: Vec<_> = (60..68)
            .map(|shard| {
                let table = table.clone();
                std::thread::spawn(move || {
                    let mut mine = ShardInterest::new(table.clone(), shard);
                    for round in 0..2000u32 {
                        let k = table.key(AppIdx(0), &format!("c{}", round % 37));
                        mine.hold(k);
                        assert!(table.holds(k, shard));
                        mine.release(k);
                    }
                    assert!(mine.is_empty());
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert!(table.is_empty());
    }
}
