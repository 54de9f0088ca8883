//! The events a webhook reports, and their JSON as Pusher sends it
//! (`{"name":"channel_occupied","channel":"c"}` and so on).

use crate::apps::webhook::EventKind;
use crate::json::push_json_str;

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
    /// The channel-wide count of subscriptions (any channel but presence).
    SubscriptionCount {
        channel: Box<str>,
        count: u32,
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
            WebhookEvent::SubscriptionCount { .. } => EventKind::SubscriptionCount,
        }
    }

    pub fn channel(&self) -> &str {
        match self {
            WebhookEvent::ChannelOccupied { channel }
            | WebhookEvent::ChannelVacated { channel }
            | WebhookEvent::MemberAdded { channel, .. }
            | WebhookEvent::MemberRemoved { channel, .. }
            | WebhookEvent::ClientEvent { channel, .. }
            | WebhookEvent::CacheMiss { channel }
            | WebhookEvent::SubscriptionCount { channel, .. } => channel,
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
            WebhookEvent::SubscriptionCount { count, .. } => {
                out.extend_from_slice(format!(",\"subscription_count\":{count}").as_bytes());
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
            WebhookEvent::SubscriptionCount {
                channel: "c".into(),
                count: 3,
            },
        ];
        assert_eq!(
            String::from_utf8(body(7, &events)).unwrap(),
            r#"{"time_ms":7,"events":[{"name":"channel_occupied","channel":"c"},{"name":"member_removed","channel":"presence-c","user_id":"u\"1"},{"name":"client_event","channel":"private-c","event":"client-x","data":"{\"a\":1}","socket_id":"1.2"},{"name":"subscription_count","channel":"c","subscription_count":3}]}"#
        );
    }
}
