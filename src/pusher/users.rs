//! Signed-in users as their owner shard sees them: how many connections
//! each has (online while at least one), and which sockets watch them
//! (watchlist). Every user has one owner shard, chosen by hashing its id.

use crate::apps::AppIdx;
use crate::json::push_json_str;
use crate::socket_id::SocketId;
use crate::ws::frame::Frame;
use std::collections::HashMap;

/// Most watchlist entries kept per user (Pusher's limit; more gets 4302).
pub const MAX_WATCHLIST: usize = 100;

#[derive(Default)]
struct UserEntry {
    connections: u32,
    watchers: Vec<SocketId>,
}

#[derive(Default)]
pub struct UserTable {
    users: HashMap<(AppIdx, Box<str>), UserEntry>,
}

impl UserTable {
    /// Counts a connection of `user` in or out. Returns the watchers to tell
    /// when the user just came online (first connection) or went offline (last).
    pub fn set_presence(&mut self, app: AppIdx, user: &str, online: bool) -> Vec<SocketId> {
        let key = (app, Box::from(user));
        let entry = self.users.entry(key.clone()).or_default();
        let changed = if online {
            entry.connections += 1;
            entry.connections == 1
        } else {
            entry.connections = entry.connections.saturating_sub(1);
            entry.connections == 0
        };
        let watchers = if changed {
            entry.watchers.clone()
        } else {
            Vec::new()
        };
        self.forget_if_unused(&key);
        watchers
    }

    /// Adds or removes `watcher` for each user; returns the watched users
    /// that are online now (for a new watch).
    pub fn watch(
        &mut self,
        app: AppIdx,
        watcher: SocketId,
        users: &[Box<str>],
        watch: bool,
    ) -> Vec<Box<str>> {
        let mut online = Vec::new();
        for user in users {
            let key = (app, user.clone());
            let entry = self.users.entry(key.clone()).or_default();
            if watch {
                if !entry.watchers.contains(&watcher) {
                    entry.watchers.push(watcher);
                }
                if entry.connections > 0 {
                    online.push(user.clone());
                }
            } else {
                entry.watchers.retain(|w| *w != watcher);
            }
            self.forget_if_unused(&key);
        }
        online
    }

    fn forget_if_unused(&mut self, key: &(AppIdx, Box<str>)) {
        if self
            .users
            .get(key)
            .is_some_and(|e| e.connections == 0 && e.watchers.is_empty())
        {
            self.users.remove(key);
        }
    }

    pub fn len(&self) -> usize {
        self.users.len()
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }
}

/// `pusher_internal:watchlist_events` with one event, `online` or `offline`.
pub fn watchlist_event(online: bool, user_ids: &[Box<str>]) -> Frame {
    Frame::text_with(|b| {
        b.extend_from_slice(
            b"{\"event\":\"pusher_internal:watchlist_events\",\"data\":{\"events\":[{\"name\":",
        );
        b.extend_from_slice(if online {
            b"\"online\""
        } else {
            b"\"offline\""
        });
        b.extend_from_slice(b",\"user_ids\":[");
        for (i, id) in user_ids.iter().enumerate() {
            if i > 0 {
                b.push(b',');
            }
            push_json_str(b, id);
        }
        b.extend_from_slice(b"]}]}}");
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sock(n: u32) -> SocketId {
        SocketId {
            nonce: 1,
            shard: 0,
            slot: n,
            serial: 0,
        }
    }

    #[test]
    fn online_and_offline_edges_reach_watchers() {
        let mut t = UserTable::default();
        let a = AppIdx(0);
        assert!(t.watch(a, sock(1), &["u".into()], true).is_empty());
        assert_eq!(t.set_presence(a, "u", true), vec![sock(1)]);
        assert!(t.set_presence(a, "u", true).is_empty()); // second connection
        assert_eq!(
            t.watch(a, sock(2), &["u".into()], true),
            vec![Box::from("u")]
        );
        assert!(t.set_presence(a, "u", false).is_empty());
        assert_eq!(t.set_presence(a, "u", false), vec![sock(1), sock(2)]);
        t.watch(a, sock(1), &["u".into()], false);
        t.watch(a, sock(2), &["u".into()], false);
        assert!(t.is_empty());
    }

    #[test]
    fn watchlist_frame_shape() {
        let f = watchlist_event(true, &["7".into(), "8".into()]);
        assert_eq!(
            std::str::from_utf8(f.payload()).unwrap(),
            r#"{"event":"pusher_internal:watchlist_events","data":{"events":[{"name":"online","user_ids":["7","8"]}]}}"#
        );
    }
}
