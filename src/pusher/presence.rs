//! Presence channels: members as the channel's owner shard holds them.
//!
//! Membership is per user, not per socket: a user with three sockets on three
//! shards is one member. The owner counts sockets per user, and reports when
//! a user's first socket joined (`member_added`) or last one left
//! (`member_removed`). [`parse_channel_data`] checks what a client sends.

use crate::pusher::messages::{internal_event, push_json_str};
use crate::ws::frame::Frame;
use std::collections::HashMap;

/// Longest `user_id` accepted, in bytes.
pub const MAX_USER_ID_LEN: usize = 128;
/// Largest `user_info`, as JSON text.
pub const MAX_USER_INFO_BYTES: usize = 1024;

/// A presence member as a subscriber declares it in `channel_data`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub user_id: Box<str>,
    /// `user_info` as JSON text; `{}` when the client sent none.
    pub user_info: Box<str>,
}

/// Parses `channel_data`: `{"user_id": string or number, "user_info": any}`.
pub fn parse_channel_data(channel_data: &str) -> Result<Member, String> {
    let mut bytes = channel_data.as_bytes().to_vec();
    let value = crate::json::parse(&mut bytes)
        .map_err(|e| format!("channel_data is not valid JSON: {e}"))?;
    use simd_json::prelude::*;
    if value.as_object().is_none() {
        return Err("channel_data must be a JSON object".into());
    }
    let user_id = match value.get("user_id") {
        Some(v) if v.is_str() => v.as_str().unwrap_or_default().to_string(),
        Some(v) if v.is_i64() || v.is_u64() => v.encode(),
        Some(v) if v.is_f64() => v.encode(),
        Some(_) => return Err("channel_data.user_id must be a string or a number".into()),
        None => return Err("channel_data.user_id is required".into()),
    };
    if user_id.is_empty() {
        return Err("channel_data.user_id is empty".into());
    }
    if user_id.len() > MAX_USER_ID_LEN {
        return Err(format!(
            "channel_data.user_id is longer than {MAX_USER_ID_LEN} characters"
        ));
    }
    let user_info = match value.get("user_info") {
        None => "{}".to_string(),
        Some(v) => v.encode(),
    };
    if user_info.len() > MAX_USER_INFO_BYTES {
        return Err(format!(
            "channel_data.user_info is larger than {MAX_USER_INFO_BYTES} bytes"
        ));
    }
    Ok(Member {
        user_id: user_id.into(),
        user_info: user_info.into(),
    })
}

struct Entry {
    info: Box<str>,
    sockets: u32,
    /// Join order, so `ids` lists members oldest first.
    since: u64,
}

/// One presence channel's members.
#[derive(Default)]
pub struct PresenceChannel {
    members: HashMap<Box<str>, Entry>,
    joins: u64,
}

/// What a join did.
#[derive(Debug, PartialEq, Eq)]
pub enum Joined {
    /// The user's first socket: tell the others.
    NewMember,
    /// Another socket of a user already present.
    SameMember,
    /// The channel already has `max` distinct users.
    Full,
}

impl PresenceChannel {
    pub fn join(&mut self, member: &Member, max: usize) -> Joined {
        if let Some(e) = self.members.get_mut(&member.user_id) {
            e.sockets += 1;
            return Joined::SameMember;
        }
        if self.members.len() >= max {
            return Joined::Full;
        }
        self.joins += 1;
        self.members.insert(
            member.user_id.clone(),
            Entry {
                info: member.user_info.clone(),
                sockets: 1,
                since: self.joins,
            },
        );
        Joined::NewMember
    }

    /// Removes one socket of `user_id`; true when it was the user's last.
    pub fn leave(&mut self, user_id: &str) -> bool {
        let Some(e) = self.members.get_mut(user_id) else {
            return false;
        };
        e.sockets -= 1;
        if e.sockets == 0 {
            self.members.remove(user_id);
            true
        } else {
            false
        }
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
    fn channel_data_is_checked() {
        assert_eq!(
            parse_channel_data(r#"{"user_id":"1","user_info":{"name":"A"}}"#),
            Ok(m("1", r#"{"name":"A"}"#))
        );
        assert_eq!(parse_channel_data(r#"{"user_id":10}"#), Ok(m("10", "{}")));
        assert!(parse_channel_data("x").unwrap_err().contains("JSON"));
        assert!(parse_channel_data("[]").unwrap_err().contains("object"));
        assert!(parse_channel_data("{}").unwrap_err().contains("required"));
        assert!(parse_channel_data(r#"{"user_id":true}"#)
            .unwrap_err()
            .contains("string or a number"));
        assert!(parse_channel_data(r#"{"user_id":""}"#)
            .unwrap_err()
            .contains("empty"));
        let long = format!(r#"{{"user_id":"{}"}}"#, "u".repeat(129));
        assert!(parse_channel_data(&long).unwrap_err().contains("128"));
        let big = format!(r#"{{"user_id":"1","user_info":"{}"}}"#, "i".repeat(1100));
        assert!(parse_channel_data(&big).unwrap_err().contains("1024"));
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
        assert!(!c.leave("1"));
        assert!(c.leave("1"));
        assert!(!c.leave("1"));
        assert_eq!(c.user_count(), 1);
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
