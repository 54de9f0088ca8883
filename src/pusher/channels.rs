//! `ChannelTable`: a shard's channels, their local subscribers, and the
//! index that makes every subscription change O(1).
//!
//! Channels are interned per app (name → [`ChannelId`]) and exist on a shard
//! only while one of its connections is subscribed; the last unsubscribe
//! frees the entry. Subscribers are a plain vector of connection slots, the
//! shape the delivery loop walks fastest.
//!
//! The subscription relation is kept from both sides: each channel's
//! `subscribers` vector and each connection's own list of channel ids
//! (`Conn::subs`, passed in by the caller). [`Membership`] records, for one
//! (channel, connection) pair, where each side holds the other, so joining,
//! leaving and "is it subscribed?" are hash lookups and `swap_remove`s: no
//! operation scans a list whose length a client controls.
//!
//! The table also keeps this shard's side of the node's interest table
//! ([`ShardInterest`]): a channel holds its key there while it exists, so
//! other shards post its publications here exactly while it has local
//! subscribers (and while joins to it are in flight: [`ChannelTable::hold`]).
//!
//! # Invariants
//! - Every channel in `channels` holds its `key` in `interest` once; the
//!   hold is taken when the channel is created and released when it is
//!   freed.
//! - For every `(id, conn)` in `memberships` with value `m`:
//!   `channels[id].subscribers[m.in_channel] == conn` and
//!   `subs_of(conn)[m.in_conn] == id`; and there is no other pair.
//! - A channel is in `channels` iff its `subscribers` is not empty.

use crate::apps::AppIdx;
use crate::pusher::conns::{ChannelId, ConnKey};
use crate::pusher::interest::{InterestTable, ShardInterest};
use rustc_hash::FxHashMap;
use slab::Slab;
use smallvec::SmallVec;
use std::collections::HashMap;

/// A connection's channels, in no particular order.
pub type SubList = SmallVec<[ChannelId; 4]>;

pub struct Channel {
    pub app: AppIdx,
    pub name: Box<str>,
    /// Its key in the interest table.
    pub key: u64,
    pub subscribers: Vec<ConnKey>,
}

/// Where one subscription sits on each side of the relation.
struct Membership {
    /// Index in the channel's `subscribers`.
    in_channel: u32,
    /// Index in the connection's `SubList`.
    in_conn: u32,
    /// The user id the connection declared, on a presence channel.
    user: Option<Box<str>>,
}

pub struct ChannelTable {
    by_name: Vec<HashMap<Box<str>, ChannelId>>,
    channels: Slab<Channel>,
    /// (channel, connection) → positions; keys are server-assigned slots,
    /// never client strings, so a fast non-keyed hash is safe.
    memberships: FxHashMap<(ChannelId, ConnKey), Membership>,
    /// This shard's holds in the node's interest table.
    interest: ShardInterest,
}

impl ChannelTable {
    pub fn new(apps: usize, interest: ShardInterest) -> ChannelTable {
        ChannelTable {
            by_name: (0..apps).map(|_| HashMap::new()).collect(),
            channels: Slab::new(),
            memberships: FxHashMap::default(),
            interest,
        }
    }

    /// The node's interest table (read when publishing).
    pub fn interest(&self) -> &InterestTable {
        self.interest.table()
    }

    /// Holds the channel's interest on this shard without a subscriber (a
    /// join in flight to its owner), so publications come here before the
    /// join is confirmed; each hold is released once ([`ChannelTable::release`]).
    pub fn hold(&mut self, app: AppIdx, name: &str) {
        let key = self.interest.table().key(app, name);
        self.interest.hold(key);
    }

    /// Releases a hold taken by [`ChannelTable::hold`].
    pub fn release(&mut self, app: AppIdx, name: &str) {
        let key = self.interest.table().key(app, name);
        self.interest.release(key);
    }

    /// Makes room for apps added to the registry (`apps` slots in all).
    pub fn grow(&mut self, apps: usize) {
        if self.by_name.len() < apps {
            self.by_name.resize_with(apps, HashMap::new);
        }
    }

    /// Adds `conn` (whose channel list is `subs`) to the named channel,
    /// creating it if needed, with the presence `user` it declared. Returns
    /// the channel and whether the connection was newly added.
    pub fn subscribe(
        &mut self,
        app: AppIdx,
        name: &str,
        conn: ConnKey,
        subs: &mut SubList,
        user: Option<Box<str>>,
    ) -> (ChannelId, bool) {
        let map = &mut self.by_name[app.0 as usize];
        let id = match map.get(name) {
            Some(&id) => id,
            None => {
                // Interest first: it is set before the caller confirms.
                let key = self.interest.table().key(app, name);
                self.interest.hold(key);
                let id = self.channels.insert(Channel {
                    app,
                    name: name.into(),
                    key,
                    subscribers: Vec::new(),
                }) as ChannelId;
                map.insert(name.into(), id);
                id
            }
        };
        if self.memberships.contains_key(&(id, conn)) {
            return (id, false);
        }
        let subscribers = &mut self.channels[id as usize].subscribers;
        self.memberships.insert(
            (id, conn),
            Membership {
                in_channel: subscribers.len() as u32,
                in_conn: subs.len() as u32,
                user,
            },
        );
        subscribers.push(conn);
        subs.push(id);
        (id, true)
    }

    /// Removes `conn` (whose channel list is `subs`) from channel `id`;
    /// frees the channel when it was the last subscriber. Returns `None`
    /// when the connection was not subscribed, else the presence user id
    /// it had declared there (if any).
    pub fn unsubscribe(
        &mut self,
        id: ChannelId,
        conn: ConnKey,
        subs: &mut SubList,
    ) -> Option<Option<Box<str>>> {
        let m = self.memberships.remove(&(id, conn))?;
        // The channel's side: the last subscriber moves into the hole.
        let channel = &mut self.channels[id as usize];
        channel.subscribers.swap_remove(m.in_channel as usize);
        if let Some(&moved) = channel.subscribers.get(m.in_channel as usize) {
            if let Some(other) = self.memberships.get_mut(&(id, moved)) {
                other.in_channel = m.in_channel;
            }
        }
        if channel.subscribers.is_empty() {
            let channel = self.channels.remove(id as usize);
            self.by_name[channel.app.0 as usize].remove(&channel.name);
            self.interest.release(channel.key);
        }
        // The connection's side: its last channel moves into the hole.
        subs.swap_remove(m.in_conn as usize);
        if let Some(&moved) = subs.get(m.in_conn as usize) {
            if let Some(other) = self.memberships.get_mut(&(moved, conn)) {
                other.in_conn = m.in_conn;
            }
        }
        Some(m.user)
    }

    /// Whether `conn` is subscribed to channel `id`.
    pub fn is_member(&self, id: ChannelId, conn: ConnKey) -> bool {
        self.memberships.contains_key(&(id, conn))
    }

    /// The user id `conn` declared on presence channel `id`.
    pub fn presence_user(&self, id: ChannelId, conn: ConnKey) -> Option<&str> {
        self.memberships.get(&(id, conn))?.user.as_deref()
    }

    pub fn find(&self, app: AppIdx, name: &str) -> Option<ChannelId> {
        self.by_name[app.0 as usize].get(name).copied()
    }

    pub fn get(&self, id: ChannelId) -> Option<&Channel> {
        self.channels.get(id as usize)
    }

    /// Subscribers of the named channel (empty when nobody here listens).
    pub fn subscribers(&self, app: AppIdx, name: &str) -> &[ConnKey] {
        match self.find(app, name) {
            Some(id) => &self.channels[id as usize].subscribers,
            None => &[],
        }
    }

    /// Every channel of `app` on this shard with its subscriber count.
    pub fn iter_app(&self, app: AppIdx) -> impl Iterator<Item = (&str, u32)> + '_ {
        self.by_name[app.0 as usize]
            .iter()
            .map(move |(name, &id)| (&**name, self.channels[id as usize].subscribers.len() as u32))
    }

    pub fn len(&self) -> usize {
        self.channels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.channels.is_empty()
    }

    /// Subscriptions on this shard (all channels, all connections).
    pub fn subscriptions(&self) -> usize {
        self.memberships.len()
    }

    /// Gives back memory kept from a larger past (after mass departures).
    pub fn shrink(&mut self) {
        if self.memberships.capacity() > 4 * self.memberships.len().max(1024) {
            self.memberships.shrink_to_fit();
        }
        if self.channels.capacity() > 4 * self.channels.len().max(1024) {
            // Only vacant slots at the end can go: ids in use must stay.
            self.channels.shrink_to_fit();
        }
        for map in &mut self.by_name {
            if map.capacity() > 4 * map.len().max(1024) {
                map.shrink_to_fit();
            }
        }
        self.interest.shrink();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(apps: usize) -> ChannelTable {
        ChannelTable::new(apps, ShardInterest::alone())
    }

    #[test]
    fn subscribe_is_idempotent_and_last_unsubscribe_frees() {
        let mut t = table(2);
        let (mut s1, mut s2) = (SubList::new(), SubList::new());
        let (a, new) = t.subscribe(AppIdx(0), "c", 1, &mut s1, None);
        assert!(new);
        assert_eq!(t.subscribe(AppIdx(0), "c", 1, &mut s1, None), (a, false));
        assert_eq!(s1.as_slice(), &[a]);
        t.subscribe(AppIdx(0), "c", 2, &mut s2, Some("u".into()));
        assert_eq!(t.subscribers(AppIdx(0), "c"), &[1, 2]);
        assert_eq!(t.presence_user(a, 2), Some("u"));
        // Same name in another app is another channel.
        assert!(t.subscribers(AppIdx(1), "c").is_empty());
        assert_eq!(t.unsubscribe(a, 1, &mut s1), Some(None));
        assert_eq!(t.unsubscribe(a, 1, &mut s1), None);
        assert!(s1.is_empty());
        assert_eq!(t.subscribers(AppIdx(0), "c"), &[2]);
        assert_eq!(t.unsubscribe(a, 2, &mut s2), Some(Some("u".into())));
        assert!(t.is_empty());
        assert_eq!(t.subscriptions(), 0);
        assert_eq!(t.find(AppIdx(0), "c"), None);
        assert!(t.interest().is_empty(), "the last unsubscribe releases");
    }

    #[test]
    fn a_join_hold_keeps_interest_until_released() {
        let mut t = table(1);
        let mut s = SubList::new();
        let key = t.interest().key(AppIdx(0), "presence-p");
        t.hold(AppIdx(0), "presence-p");
        assert!(t.interest().holds(key, 0), "held before any subscriber");
        let (id, _) = t.subscribe(AppIdx(0), "presence-p", 1, &mut s, None);
        t.release(AppIdx(0), "presence-p");
        assert!(t.interest().holds(key, 0), "the channel still holds it");
        t.unsubscribe(id, 1, &mut s);
        assert!(t.interest().is_empty());
    }

    /// Checks the invariant written at the top of this file.
    fn check(t: &ChannelTable, lists: &[(ConnKey, &SubList)]) {
        let mut pairs = 0;
        for &(conn, subs) in lists {
            for (i, &id) in subs.iter().enumerate() {
                let m = &t.memberships[&(id, conn)];
                assert_eq!(m.in_conn as usize, i);
                assert_eq!(
                    t.channels[id as usize].subscribers[m.in_channel as usize],
                    conn
                );
                pairs += 1;
            }
        }
        assert_eq!(pairs, t.memberships.len());
        for (_, ch) in t.channels.iter() {
            assert!(!ch.subscribers.is_empty());
            assert!(t.interest().holds(ch.key, 0), "a channel holds its key");
        }
        // Nothing else is held (12 names: their keys do not collide).
        assert_eq!(t.interest.len(), t.channels.len());
        assert_eq!(t.interest().len(), t.channels.len());
    }

    #[test]
    fn positions_stay_exact_under_mixed_joins_and_leaves() {
        let mut t = table(1);
        let mut lists: Vec<(ConnKey, SubList)> = (0..8).map(|k| (k, SubList::new())).collect();
        // A small deterministic pseudo-random walk over 8 connections × 12 channels.
        let mut x: u32 = 12345;
        for _ in 0..4000 {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            let conn = (x >> 8) as usize % 8;
            let name = format!("c{}", (x >> 16) % 12);
            let (k, subs) = &mut lists[conn];
            if (x >> 4).is_multiple_of(3) {
                if let Some(id) = t.find(AppIdx(0), &name) {
                    t.unsubscribe(id, *k, subs);
                }
            } else {
                t.subscribe(AppIdx(0), &name, *k, subs, None);
            }
            let view: Vec<(ConnKey, &SubList)> = lists.iter().map(|(k, s)| (*k, s)).collect();
            check(&t, &view);
        }
    }

    #[test]
    fn leaving_every_channel_from_the_end_frees_all() {
        // 50,000 channels on one connection, left from the end as a closing
        // connection leaves them.
        let mut t = table(1);
        let mut subs = SubList::new();
        for i in 0..50_000 {
            t.subscribe(AppIdx(0), &format!("c{i}"), 7, &mut subs, None);
        }
        while let Some(&id) = subs.last() {
            assert!(t.unsubscribe(id, 7, &mut subs).is_some());
        }
        assert!(t.is_empty());
        assert_eq!(t.subscriptions(), 0);
    }
}
