//! Where an app's webhook events go: each configured webhook's URL, the
//! event kinds it wants, an optional channel-name filter and extra headers.
//! Delivering them is the `webhooks` module's; the server-wide delivery
//! settings are `config::WebhookSettings`.

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
    SubscriptionCount,
}

impl EventKind {
    pub const ALL: [EventKind; 7] = [
        EventKind::ChannelOccupied,
        EventKind::ChannelVacated,
        EventKind::MemberAdded,
        EventKind::MemberRemoved,
        EventKind::ClientEvent,
        EventKind::CacheMiss,
        EventKind::SubscriptionCount,
    ];

    pub fn name(self) -> &'static str {
        match self {
            EventKind::ChannelOccupied => "channel_occupied",
            EventKind::ChannelVacated => "channel_vacated",
            EventKind::MemberAdded => "member_added",
            EventKind::MemberRemoved => "member_removed",
            EventKind::ClientEvent => "client_event",
            EventKind::CacheMiss => "cache_miss",
            EventKind::SubscriptionCount => "subscription_count",
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

/// One `[[apps.webhooks]]` entry, validated. Its `Debug` prints the URL
/// without credentials and the extra headers' names only (their values
/// are often tokens).
#[derive(Clone, PartialEq)]
pub struct Webhook {
    pub url: String,
    pub kinds: KindSet,
    /// Only channels whose name starts with this.
    pub prefix: Option<String>,
    /// Only channels whose name ends with this.
    pub suffix: Option<String>,
    /// Extra request headers (never `X-Pusher-*`, checked at startup).
    pub headers: Vec<(String, String)>,
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let header_names: Vec<&str> = self.headers.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("Webhook")
            .field("url", &crate::logging::redact::url(&self.url))
            .field("kinds", &self.kinds)
            .field("prefix", &self.prefix)
            .field("suffix", &self.suffix)
            .field("headers", &header_names)
            .finish()
    }
}

impl Webhook {
    /// Whether this webhook wants events of `kind` on `channel`.
    pub fn wants(&self, kind: EventKind, channel: &str) -> bool {
        self.kinds.contains(kind)
            && self
                .prefix
                .as_deref()
                .is_none_or(|p| channel.starts_with(p))
            && self.suffix.as_deref().is_none_or(|s| channel.ends_with(s))
    }

    /// The JSON members every store writes: `"url"`, `"event_types"` (an
    /// array of names) and `"headers"` (an object), without braces.
    pub fn common_json(&self) -> String {
        use crate::json::json_str;
        let kinds: Vec<String> = EventKind::ALL
            .iter()
            .filter(|k| self.kinds.contains(**k))
            .map(|k| json_str(k.name()))
            .collect();
        let headers: Vec<String> = self
            .headers
            .iter()
            .map(|(n, v)| format!("{}:{}", json_str(n), json_str(v)))
            .collect();
        format!(
            "\"url\":{},\"event_types\":[{}],\"headers\":{{{}}}",
            json_str(&self.url),
            kinds.join(","),
            headers.join(",")
        )
    }
}

/// Every kind some webhook of an app wants: shards check it before building
/// an event, so apps without webhooks pay nothing.
pub fn kinds_of(webhooks: &[Webhook]) -> KindSet {
    webhooks
        .iter()
        .fold(KindSet::default(), |all, w| all.union(w.kinds))
}

/// Whether `kinds` needs channel-wide occupancy (the owner's counts).
pub fn wants_occupancy(kinds: KindSet) -> bool {
    kinds.contains(EventKind::ChannelOccupied) || kinds.contains(EventKind::ChannelVacated)
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

    fn hook(kinds: &[EventKind], prefix: Option<&str>, suffix: Option<&str>) -> Webhook {
        let mut set = KindSet::default();
        kinds.iter().for_each(|k| set.insert(*k));
        Webhook {
            url: "http://x/".into(),
            kinds: set,
            prefix: prefix.map(Into::into),
            suffix: suffix.map(Into::into),
            headers: Vec::new(),
        }
    }

    #[test]
    fn filters_by_kind_prefix_and_suffix() {
        let w = hook(&[EventKind::ChannelOccupied], Some("news-"), Some("-eu"));
        let occupied = EventKind::ChannelOccupied;
        assert!(w.wants(occupied, "news-a-eu"));
        assert!(!w.wants(occupied, "news-a-us"));
        assert!(!w.wants(occupied, "sport-a-eu"));
        assert!(!w.wants(EventKind::ChannelVacated, "news-a-eu"));
        assert!(wants_occupancy(kinds_of(&[w])));
        assert!(!wants_occupancy(kinds_of(&[hook(
            &[EventKind::CacheMiss],
            None,
            None
        )])));
    }
}
