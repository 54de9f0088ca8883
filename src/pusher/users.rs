//! Signed-in users as their owner shard sees them: how many connections
//! each has on this node, which other nodes of a cluster have one (online
//! while at least one connection anywhere), and which sockets of this node
//! watch them (watchlist). Every user has one owner shard per node, chosen
//! by hashing its id.

use crate::apps::AppIdx;
use crate::json::push_json_str;
use crate::socket_id::SocketId;
use crate::ws::frame::Frame;
use smallvec::SmallVec;
use std::collections::HashMap;

/// Most watchlist entries kept per user (Pusher's limit; more gets 4302).
pub const MAX_WATCHLIST: usize = 100;

/// Invariant: an entry exists while it has connections, other nodes or
/// watchers.
#[derive(Default)]
struct UserEntry {
    /// Connections on this node.
    connections: u32,
    /// Other nodes with a connection of the user.
    nodes: SmallVec<[u64; 2]>,
    watchers: Vec<SocketId>,
}

impl UserEntry {
    fn online(&self) -> bool {
        self.connections > 0 || !self.nodes.is_empty()
    }
}

/// What counting a connection in or out did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct PresenceChange {
    /// The watchers to tell: the user came online or went offline in the
    /// whole cluster.
    pub watchers: Vec<SocketId>,
    /// The user's first connection on this node came, or its last left
    /// (the other nodes are told).
    pub edge_here: bool,
}

#[derive(Default)]
pub struct UserTable {
    users: HashMap<(AppIdx, Box<str>), UserEntry>,
}

impl UserTable {
    /// Counts a connection of `user` on this node in or out.
    pub fn set_presence(&mut self, app: AppIdx, user: &str, online: bool) -> PresenceChange {
        let key = (app, Box::from(user));
        let entry = self.users.entry(key.clone()).or_default();
        let was = entry.online();
        let edge_here = if online {
            entry.connections += 1;
            entry.connections == 1
        } else if entry.connections == 0 {
            false
        } else {
            entry.connections -= 1;
            entry.connections == 0
        };
        let watchers = if was != entry.online() {
            entry.watchers.clone()
        } else {
            Vec::new()
        };
        self.forget_if_unused(&key);
        PresenceChange {
            watchers,
            edge_here,
        }
    }

    /// Another node has (`online`) or no longer has a connection of
    /// `user`. Returns the watchers to tell when the user came online or
    /// went offline in the whole cluster.
    pub fn set_remote(
        &mut self,
        app: AppIdx,
        user: &str,
        node: u64,
        online: bool,
    ) -> Vec<SocketId> {
        let key = (app, Box::from(user));
        let entry = self.users.entry(key.clone()).or_default();
        let was = entry.online();
        entry.nodes.retain(|n| *n != node);
        if online {
            entry.nodes.push(node);
        }
        let watchers = if was != entry.online() {
            entry.watchers.clone()
        } else {
            Vec::new()
        };
        self.forget_if_unused(&key);
        watchers
    }

    /// The users `node` has a connection of.
    pub fn of_node(&self, node: u64) -> Vec<(AppIdx, Box<str>)> {
        self.users
            .iter()
            .filter(|(_, e)| e.nodes.contains(&node))
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// The users with a connection on this node.
    pub fn local(&self) -> Vec<(AppIdx, Box<str>)> {
        self.users
            .iter()
            .filter(|(_, e)| e.connections > 0)
            .map(|(k, _)| k.clone())
            .collect()
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
                if entry.online() {
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
            .is_some_and(|e| !e.online() && e.watchers.is_empty())
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
        assert_eq!(t.set_presence(a, "u", true).watchers, vec![sock(1)]);
        assert!(t.set_presence(a, "u", true).watchers.is_empty()); // second connection
        assert_eq!(
            t.watch(a, sock(2), &["u".into()], true),
            vec![Box::from("u")]
        );
        assert!(t.set_presence(a, "u", false).watchers.is_empty());
        assert_eq!(
            t.set_presence(a, "u", false).watchers,
            vec![sock(1), sock(2)]
        );
        t.watch(a, sock(1), &["u".into()], false);
        t.watch(a, sock(2), &["u".into()], false);
        assert!(t.is_empty());
    }

    #[test]
    fn a_user_is_online_while_any_node_has_a_connection() {
        let mut t = UserTable::default();
        let a = AppIdx(0);
        t.watch(a, sock(1), &["u".into()], true);
        let c = t.set_presence(a, "u", true);
        assert_eq!((c.watchers, c.edge_here), (vec![sock(1)], true));
        // Node 9 has one too: no news.
        assert!(t.set_remote(a, "u", 9, true).is_empty());
        // Gone here, still on node 9: no offline, but the edge is told.
        let c = t.set_presence(a, "u", false);
        assert_eq!((c.watchers, c.edge_here), (vec![], true));
        assert_eq!(t.of_node(9), vec![(a, Box::from("u"))]);
        // Node 9's last one goes: offline.
        assert_eq!(t.set_remote(a, "u", 9, false), vec![sock(1)]);
        // A user only elsewhere is online for a new watcher.
        t.set_remote(a, "v", 7, true);
        assert_eq!(
            t.watch(a, sock(2), &["v".into()], true),
            vec![Box::from("v")]
        );
        assert!(t.local().is_empty());
        // A stray offline for a connection never counted changes nothing.
        assert_eq!(t.set_presence(a, "w", false), PresenceChange::default());
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
