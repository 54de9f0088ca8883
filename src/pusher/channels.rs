//! `ChannelTable`: a shard's channels and their local subscribers.
//!
//! Channels are interned per app (name → [`ChannelId`]) and exist on a shard
//! only while one of its connections is subscribed; the last unsubscribe
//! frees the entry. Subscribers are a plain vector of connection slots, the
//! shape the delivery loop walks fastest.

use crate::apps::AppIdx;
use crate::pusher::conns::{ChannelId, ConnKey};
use slab::Slab;
use std::collections::HashMap;

pub struct Channel {
    pub app: AppIdx,
    pub name: Box<str>,
    pub subscribers: Vec<ConnKey>,
}

pub struct ChannelTable {
    by_name: Vec<HashMap<Box<str>, ChannelId>>,
    channels: Slab<Channel>,
}

impl ChannelTable {
    pub fn new(apps: usize) -> ChannelTable {
        ChannelTable {
            by_name: (0..apps).map(|_| HashMap::new()).collect(),
            channels: Slab::new(),
        }
    }

    /// Adds `conn` to the channel, creating it if needed. Returns the channel
    /// and whether the connection was newly added. `is_member` answers from
    /// the connection's own (short) channel list, so joining a channel with
    /// many subscribers does not scan them.
    pub fn subscribe(
        &mut self,
        app: AppIdx,
        name: &str,
        conn: ConnKey,
        is_member: impl FnOnce(ChannelId) -> bool,
    ) -> (ChannelId, bool) {
        let map = &mut self.by_name[app.0 as usize];
        let id = match map.get(name) {
            Some(&id) => id,
            None => {
                let id = self.channels.insert(Channel {
                    app,
                    name: name.into(),
                    subscribers: Vec::new(),
                }) as ChannelId;
                map.insert(name.into(), id);
                id
            }
        };
        if is_member(id) {
            (id, false)
        } else {
            self.channels[id as usize].subscribers.push(conn);
            (id, true)
        }
    }

    /// Removes `conn`; frees the channel when it was the last subscriber.
    /// Returns true when the connection was subscribed.
    pub fn unsubscribe(&mut self, id: ChannelId, conn: ConnKey) -> bool {
        let Some(channel) = self.channels.get_mut(id as usize) else {
            return false;
        };
        let Some(pos) = channel.subscribers.iter().position(|&c| c == conn) else {
            return false;
        };
        channel.subscribers.swap_remove(pos);
        if channel.subscribers.is_empty() {
            let channel = self.channels.remove(id as usize);
            self.by_name[channel.app.0 as usize].remove(&channel.name);
        }
        true
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscribe_is_idempotent_and_last_unsubscribe_frees() {
        let mut t = ChannelTable::new(2);
        let (a, new) = t.subscribe(AppIdx(0), "c", 1, |_| false);
        assert!(new);
        assert_eq!(t.subscribe(AppIdx(0), "c", 1, |id| id == a), (a, false));
        t.subscribe(AppIdx(0), "c", 2, |_| false);
        assert_eq!(t.subscribers(AppIdx(0), "c"), &[1, 2]);
        // Same name in another app is another channel.
        assert!(t.subscribers(AppIdx(1), "c").is_empty());
        assert!(t.unsubscribe(a, 1));
        assert!(!t.unsubscribe(a, 1));
        assert_eq!(t.subscribers(AppIdx(0), "c"), &[2]);
        assert!(t.unsubscribe(a, 2));
        assert!(t.is_empty());
        assert_eq!(t.find(AppIdx(0), "c"), None);
    }
}
