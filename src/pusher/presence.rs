//! Presence channels: members as the channel's owner shard holds them.
//!
//! Membership is per user, not per socket: a user with three sockets on three
//! shards is one member. The owner counts sockets per user, and reports when
//! a user's first socket joined (`member_added`) or last one left
//! (`member_removed`). What a member is, and what a client may declare, is
//! [`crate::member`].
//!
//! In a cluster, the owner on each node also knows which other nodes have
//! sockets of each user (they say so when the user's first socket on them
//! joins and its last leaves). A user is a member while any node has a
//! socket of it: `member_added` and `member_removed` go out when the whole
//! cluster gains or loses the user, so each client sees them once.

use crate::json::push_json_str;
pub use crate::member::Member;
use crate::pusher::messages::internal_event;
use crate::ws::frame::Frame;
use smallvec::SmallVec;
use std::collections::HashMap;

struct Entry {
    info: Box<str>,
    /// Sockets of this user on this node.
    sockets: u32,
    /// Other nodes with sockets of this user.
    nodes: SmallVec<[u64; 2]>,
    /// Join order, so `ids` lists members oldest first.
    since: u64,
}

impl Entry {
    fn is_gone(&self) -> bool {
        self.sockets == 0 && self.nodes.is_empty()
    }
}

/// One presence channel's members.
#[derive(Default)]
pub struct PresenceChannel {
    members: HashMap<Box<str>, Entry>,
    joins: u64,
}

/// What a join of a local socket did.
#[derive(Debug, PartialEq, Eq)]
pub enum Joined {
    /// The user's first socket anywhere: tell the others (and other nodes).
    NewMember,
    /// The user's first socket on this node, already present on another
    /// node: tell the other nodes only.
    FirstHere,
    /// Another socket of a user already present here.
    SameMember,
    /// The channel already has `max` distinct users.
    Full,
}

/// What a leave of a local socket did.
#[derive(Debug, PartialEq, Eq)]
pub struct Left {
    /// The user's last socket on this node (tell other nodes).
    pub last_here: bool,
    /// The user's last socket anywhere (`member_removed`).
    pub gone: bool,
}

impl PresenceChannel {
    pub fn join(&mut self, member: &Member, max: usize) -> Joined {
        if let Some(e) = self.members.get_mut(&member.user_id) {
            e.sockets += 1;
            return if e.sockets == 1 {
                Joined::FirstHere
            } else {
                Joined::SameMember
            };
        }
        if self.members.len() >= max {
            return Joined::Full;
        }
        self.insert(member, 1, SmallVec::new());
        Joined::NewMember
    }

    fn insert(&mut self, member: &Member, sockets: u32, nodes: SmallVec<[u64; 2]>) {
        self.joins += 1;
        let entry = Entry {
            info: member.user_info.clone(),
            sockets,
            nodes,
            since: self.joins,
        };
        self.members.insert(member.user_id.clone(), entry);
    }

    /// Removes one socket of `user_id`.
    pub fn leave(&mut self, user_id: &str) -> Left {
        let Some(e) = self.members.get_mut(user_id) else {
            return Left {
                last_here: false,
                gone: false,
            };
        };
        e.sockets = e.sockets.saturating_sub(1);
        let last_here = e.sockets == 0;
        let gone = e.is_gone();
        if gone {
            self.members.remove(user_id);
        }
        Left { last_here, gone }
    }

    /// Node `node` has sockets of `member` now; true when the user is new
    /// to the cluster (`member_added`).
    pub fn remote_join(&mut self, node: u64, member: &Member) -> bool {
        if let Some(e) = self.members.get_mut(&member.user_id) {
            if !e.nodes.contains(&node) {
                e.nodes.push(node);
            }
            return false;
        }
        self.insert(member, 0, SmallVec::from_slice(&[node]));
        true
    }

    /// Node `node` has no socket of `user_id` any more; true when the user
    /// left the cluster with it (`member_removed`).
    pub fn remote_leave(&mut self, node: u64, user_id: &str) -> bool {
        let Some(e) = self.members.get_mut(user_id) else {
            return false;
        };
        e.nodes.retain(|n| *n != node);
        let gone = e.is_gone();
        if gone {
            self.members.remove(user_id);
        }
        gone
    }

    /// Node `node` is gone: the users only it had, now removed.
    pub fn node_gone(&mut self, node: u64) -> Vec<Box<str>> {
        let mut gone = Vec::new();
        self.members.retain(|user_id, e| {
            e.nodes.retain(|n| *n != node);
            if e.is_gone() {
                gone.push(user_id.clone());
                false
            } else {
                true
            }
        });
        gone
    }

    /// The users node `node` has sockets of, as this node was told.
    pub fn users_of_node(&self, node: u64) -> Vec<Box<str>> {
        self.members
            .iter()
            .filter(|(_, e)| e.nodes.contains(&node))
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Members with sockets on this node (what this node tells the others).
    pub fn local_members(&self) -> Vec<Member> {
        self.members
            .iter()
            .filter(|(_, e)| e.sockets > 0)
            .map(|(id, e)| Member {
                user_id: id.clone(),
                user_info: e.info.clone(),
            })
            .collect()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    pub fn user_count(&self) -> usize {
        self.members.len()
    }

    /// User ids, oldest member first.
    pub fn user_ids(&self) -> Vec<&str> {
        let mut ids: Vec<(&str, u64)> = self.members.iter().map(|(k, e)| (&**k, e.since)).collect();
        ids.sort_by_key(|&(_, since)| since);
        ids.into_iter().map(|(k, _)| k).collect()
    }

    /// The `data` of `subscription_succeeded`: `{"presence":{ids,hash,count}}`.
    pub fn snapshot(&self) -> String {
        let ids = self.user_ids();
        let mut out = Vec::with_capacity(64 + ids.len() * 32);
        out.extend_from_slice(b"{\"presence\":{\"ids\":[");
        for (i, id) in ids.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            push_json_str(&mut out, id);
        }
        out.extend_from_slice(b"],\"hash\":{");
        for (i, id) in ids.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            push_json_str(&mut out, id);
            out.push(b':');
            out.extend_from_slice(self.members[*id].info.as_bytes());
        }
        out.extend_from_slice(format!("}},\"count\":{}}}}}", ids.len()).as_bytes());
        String::from_utf8(out).expect("JSON built from UTF-8 parts")
    }
}

pub fn member_added(channel: &str, member: &Member) -> Frame {
    let mut data = b"{\"user_id\":".to_vec();
    push_json_str(&mut data, &member.user_id);
    data.extend_from_slice(b",\"user_info\":");
    data.extend_from_slice(member.user_info.as_bytes());
    data.push(b'}');
    internal_event(
        "pusher_internal:member_added",
        Some(channel),
        std::str::from_utf8(&data).expect("UTF-8"),
    )
}

pub fn member_removed(channel: &str, user_id: &str) -> Frame {
    let mut data = b"{\"user_id\":".to_vec();
    push_json_str(&mut data, user_id);
    data.push(b'}');
    internal_event(
        "pusher_internal:member_removed",
        Some(channel),
        std::str::from_utf8(&data).expect("UTF-8"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(id: &str, info: &str) -> Member {
        Member {
            user_id: id.into(),
            user_info: info.into(),
        }
    }

    #[test]
    fn membership_is_per_user() {
        let mut c = PresenceChannel::default();
        assert_eq!(c.join(&m("1", "{}"), 2), Joined::NewMember);
        assert_eq!(c.join(&m("1", "{}"), 2), Joined::SameMember);
        assert_eq!(c.join(&m("2", r#"{"n":2}"#), 2), Joined::NewMember);
        assert_eq!(c.join(&m("3", "{}"), 2), Joined::Full);
        // A present user may add sockets even when full.
        assert_eq!(c.join(&m("2", "{}"), 2), Joined::SameMember);
        assert_eq!(
            c.snapshot(),
            r#"{"presence":{"ids":["1","2"],"hash":{"1":{},"2":{"n":2}},"count":2}}"#
        );
        let left = |last_here, gone| Left { last_here, gone };
        assert_eq!(c.leave("1"), left(false, false));
        assert_eq!(c.leave("1"), left(true, true));
        assert_eq!(c.leave("1"), left(false, false));
        assert_eq!(c.user_count(), 1);
    }

    #[test]
    fn cluster_membership_counts_users_on_any_node() {
        let mut c = PresenceChannel::default();
        let left = |last_here, gone| Left { last_here, gone };
        // User 1 on node 7 first, then here: added once, by the remote join.
        assert!(c.remote_join(7, &m("1", r#"{"a":1}"#)));
        assert!(!c.remote_join(7, &m("1", r#"{"a":1}"#)));
        assert_eq!(c.join(&m("1", r#"{"a":1}"#), 10), Joined::FirstHere);
        assert_eq!(c.join(&m("1", r#"{"a":1}"#), 10), Joined::SameMember);
        // Here first, then on node 8 too.
        assert_eq!(c.join(&m("2", "{}"), 10), Joined::NewMember);
        assert!(!c.remote_join(8, &m("2", "{}")));
        assert_eq!(c.user_count(), 2);
        assert_eq!(c.local_members().len(), 2);
        // User 1 leaves here but stays on node 7; then node 7 lets go.
        assert_eq!(c.leave("1"), left(false, false));
        assert_eq!(c.leave("1"), left(true, false));
        assert_eq!(c.local_members(), vec![m("2", "{}")]);
        assert!(c.remote_leave(7, "1"));
        assert!(!c.remote_leave(7, "1"));
        // Node 8 dies: user 2 is still here, so nobody is removed.
        assert!(c.node_gone(8).is_empty());
        assert!(c.remote_join(9, &m("3", "{}")));
        assert_eq!(c.node_gone(9), vec![Box::<str>::from("3")]);
        assert_eq!(c.leave("2"), left(true, true));
        assert!(c.is_empty());
    }

    #[test]
    fn member_frames() {
        let f = member_added("presence-a", &m("7", r#"{"x":1}"#));
        assert_eq!(
            std::str::from_utf8(f.payload()).unwrap(),
            r#"{"event":"pusher_internal:member_added","channel":"presence-a","data":"{\"user_id\":\"7\",\"user_info\":{\"x\":1}}"}"#
        );
        let f = member_removed("presence-a", "7");
        assert_eq!(
            std::str::from_utf8(f.payload()).unwrap(),
            r#"{"event":"pusher_internal:member_removed","channel":"presence-a","data":"{\"user_id\":\"7\"}"}"#
        );
    }
}
