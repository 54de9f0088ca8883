//! Where an app's webhook events go: each configured webhook's URL, the
//! event kinds it wants, an optional channel-name filter and extra headers,
//! and the server-wide delivery settings.

use super::event::{EventKind, KindSet, WebhookEvent};
use std::time::Duration;

/// One `[[apps.webhooks]]` entry, validated. Its `Debug` prints the URL
/// without credentials and the extra headers' names only (their values
/// are often tokens).
#[derive(Clone)]
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
    /// Whether this webhook wants `event`.
    pub fn wants(&self, event: &WebhookEvent) -> bool {
        let channel = event.channel();
        self.kinds.contains(event.kind())
            && self
                .prefix
                .as_deref()
                .is_none_or(|p| channel.starts_with(p))
            && self.suffix.as_deref().is_none_or(|s| channel.ends_with(s))
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

/// `[server.webhooks]`: how every webhook is delivered. Its `Default` (the
/// table in `config::settings`) is in `config::defaults`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookSettings {
    /// Events closer together than this go in one request.
    pub batch_window: Duration,
    /// At most this many events per request.
    pub batch_max: usize,
    /// `channel_vacated` and `member_removed` wait this long, and are
    /// dropped if the channel or member comes back meanwhile.
    pub delay: Duration,
    /// A failing request is retried (with backoff) for this long.
    pub retry_for: Duration,
    /// Time limit of one request.
    pub timeout: Duration,
    /// Events waiting per webhook while its batches are posted or retried;
    /// beyond it the oldest waiting events are dropped (and counted).
    pub max_queued_events: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let ev = |c: &str| WebhookEvent::ChannelOccupied { channel: c.into() };
        assert!(w.wants(&ev("news-a-eu")));
        assert!(!w.wants(&ev("news-a-us")));
        assert!(!w.wants(&ev("sport-a-eu")));
        assert!(!w.wants(&WebhookEvent::ChannelVacated {
            channel: "news-a-eu".into()
        }));
        assert!(wants_occupancy(kinds_of(&[w])));
        assert!(!wants_occupancy(kinds_of(&[hook(
            &[EventKind::CacheMiss],
            None,
            None
        )])));
    }
}
