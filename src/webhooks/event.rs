//! The events a webhook reports, and their JSON as Pusher sends it
//! (`{"name":"channel_occupied","channel":"c"}` and so on).

use crate::json::push_json_str;
use std::fmt;

/// The kinds of webhook event an app may ask for in `event_types`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    ChannelOccupied,
    ChannelVacated,
    MemberAdded,
    MemberRemoved,
    ClientEvent,
    CacheMiss,
}

impl EventKind {
    pub const ALL: [EventKind; 6] = [
        EventKind::ChannelOccupied,
        EventKind::ChannelVacated,
        EventKind::MemberAdded,
        EventKind::MemberRemoved,
        EventKind::ClientEvent,
        EventKind::CacheMiss,
    ];

    pub fn name(self) -> &'static str {
        match self {
            EventKind::ChannelOccupied => "channel_occupied",
            EventKind::ChannelVacated => "channel_vacated",
            EventKind::MemberAdded => "member_added",
            EventKind::MemberRemoved => "member_removed",
            EventKind::ClientEvent => "client_event",
            EventKind::CacheMiss => "cache_miss",
        }
    }

    pub fn parse(name: &str) -> Option<EventKind> {
        EventKind::ALL.into_iter().find(|k| k.name() == name)
    }

    /// One bit per kind, for [`KindSet`].
    fn bit(self) -> u8 {
        1 << self as u8
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A set of event kinds, as a bit mask.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KindSet(u8);

impl KindSet {
    pub fn insert(&mut self, kind: EventKind) {
        self.0 |= kind.bit();
    }

    pub fn contains(self, kind: EventKind) -> bool {
        self.0 & kind.bit() != 0
    }

    pub fn union(self, other: KindSet) -> KindSet {
        KindSet(self.0 | other.0)
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

/// One webhook event, built by the shard where it happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookEvent {
    ChannelOccupied {
        channel: Box<str>,
    },
    ChannelVacated {
        channel: Box<str>,
    },
    MemberAdded {
        channel: Box<str>,
        user_id: Box<str>,
    },
    MemberRemoved {
        channel: Box<str>,
        user_id: Box<str>,
    },
    ClientEvent {
        channel: Box<str>,
        event: Box<str>,
        /// The event's `data` as the client sent it, delivered as a string.
        data: Box<str>,
        socket_id: Box<str>,
        /// Presence channels only.
        user_id: Option<Box<str>>,
    },
    CacheMiss {
        channel: Box<str>,
    },
}

impl WebhookEvent {
    pub fn kind(&self) -> EventKind {
        match self {
            WebhookEvent::ChannelOccupied { .. } => EventKind::ChannelOccupied,
            WebhookEvent::ChannelVacated { .. } => EventKind::ChannelVacated,
            WebhookEvent::MemberAdded { .. } => EventKind::MemberAdded,
            WebhookEvent::MemberRemoved { .. } => EventKind::MemberRemoved,
            WebhookEvent::ClientEvent { .. } => EventKind::ClientEvent,
            WebhookEvent::CacheMiss { .. } => EventKind::CacheMiss,
        }
    }

    pub fn channel(&self) -> &str {
        match self {
            WebhookEvent::ChannelOccupied { channel }
            | WebhookEvent::ChannelVacated { channel }
            | WebhookEvent::MemberAdded { channel, .. }
            | WebhookEvent::MemberRemoved { channel, .. }
            | WebhookEvent::ClientEvent { channel, .. }
            | WebhookEvent::CacheMiss { channel } => channel,
        }
    }

    /// Appends the event's JSON object to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"name\":");
        push_json_str(out, self.kind().name());
        out.extend_from_slice(b",\"channel\":");
        push_json_str(out, self.channel());
        let field = |out: &mut Vec<u8>, name: &str, value: &str| {
            out.extend_from_slice(b",\"");
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b"\":");
            push_json_str(out, value);
        };
        match self {
            WebhookEvent::MemberAdded { user_id, .. }
            | WebhookEvent::MemberRemoved { user_id, .. } => field(out, "user_id", user_id),
            WebhookEvent::ClientEvent {
                event,
                data,
                socket_id,
                user_id,
                ..
            } => {
                field(out, "event", event);
                field(out, "data", data);
                field(out, "socket_id", socket_id);
                if let Some(user_id) = user_id {
                    field(out, "user_id", user_id);
                }
            }
            _ => {}
        }
        out.push(b'}');
    }
}

/// The request body for a batch: `{"time_ms":T,"events":[...]}`.
pub fn body(time_ms: u64, events: &[WebhookEvent]) -> Vec<u8> {
    let mut out = format!("{{\"time_ms\":{time_ms},\"events\":[").into_bytes();
    for (i, e) in events.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        e.encode(&mut out);
    }
    out.extend_from_slice(b"]}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_their_names() {
        for k in EventKind::ALL {
            assert_eq!(EventKind::parse(k.name()), Some(k));
        }
        assert_eq!(EventKind::parse("channel_occupied "), None);
        let mut set = KindSet::default();
        set.insert(EventKind::CacheMiss);
        assert!(set.contains(EventKind::CacheMiss));
        assert!(!set.contains(EventKind::ClientEvent));
    }

    #[test]
    fn bodies_look_like_pushers() {
        let events = [
            WebhookEvent::ChannelOccupied {
                channel: "c".into(),
            },
            WebhookEvent::MemberRemoved {
                channel: "presence-c".into(),
                user_id: "u\"1".into(),
            },
            WebhookEvent::ClientEvent {
                channel: "private-c".into(),
                event: "client-x".into(),
                data: "{\"a\":1}".into(),
                socket_id: "1.2".into(),
                user_id: None,
            },
        ];
        assert_eq!(
            String::from_utf8(body(7, &events)).unwrap(),
            r#"{"time_ms":7,"events":[{"name":"channel_occupied","channel":"c"},{"name":"member_removed","channel":"presence-c","user_id":"u\"1"},{"name":"client_event","channel":"private-c","event":"client-x","data":"{\"a\":1}","socket_id":"1.2"}]}"#
        );
    }
}
