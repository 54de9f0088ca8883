//! What one console stream shows: the query of `GET /console/stream`
//! (`app`, `channel` prefix, `event` name, `kind` list), checked, and
//! matched against each collected item.

use super::super::request::parse_query;
use super::hub::Item;
use crate::apps::AppIdx;
use crate::errors::ApiError;
use crate::pusher::shard::Shard;

/// Every kind of event the console shows.
pub const KINDS: &[&str] = &[
    "connection_opened",
    "connection_closed",
    "subscribed",
    "unsubscribed",
    "channel_occupied",
    "channel_vacated",
    "member_added",
    "member_removed",
    "api_message",
    "client_event",
    "webhook_sent",
    "webhook_failed",
];

/// A stream's filter; an empty one shows everything.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Filter {
    pub app: Option<AppIdx>,
    /// Shown when one of the item's channels starts with it.
    pub channel_prefix: Option<String>,
    /// Shown when the item's event name is exactly this.
    pub event: Option<String>,
    /// Shown when the item's kind is one of these.
    pub kinds: Option<Vec<&'static str>>,
}

impl Filter {
    /// Reads a filter from a query string; an unknown app or kind is a 400
    /// naming it. Empty parameters filter nothing.
    pub fn parse(shard: &Shard, query: &str) -> Result<Filter, ApiError> {
        let mut filter = Filter::default();
        for (name, value) in parse_query(query) {
            if value.is_empty() {
                continue;
            }
            match &*name {
                "app" => {
                    let idx = shard.apps.by_id(&value).ok_or_else(|| {
                        ApiError::BadRequest(format!("`app`: unknown app id {value:?}"))
                    })?;
                    filter.app = Some(idx);
                }
                "channel" => filter.channel_prefix = Some(value.into_owned()),
                "event" => filter.event = Some(value.into_owned()),
                "kind" => {
                    let mut kinds = Vec::new();
                    for k in value.split(',').filter(|k| !k.is_empty()) {
                        let known = KINDS.iter().find(|&&known| known == k).ok_or_else(|| {
                            ApiError::BadRequest(format!(
                                "`kind`: unknown kind {k:?} (one of {})",
                                KINDS.join(", ")
                            ))
                        })?;
                        kinds.push(*known);
                    }
                    filter.kinds = Some(kinds);
                }
                other => {
                    return Err(ApiError::BadRequest(format!(
                        "unknown parameter {other:?} (app, channel, event, kind)"
                    )))
                }
            }
        }
        Ok(filter)
    }

    /// Whether the stream shows `item`.
    pub fn shows(&self, item: &Item) -> bool {
        if self.app.is_some() && item.app != self.app {
            return false;
        }
        if let Some(prefix) = &self.channel_prefix {
            if !item.channels.iter().any(|c| c.starts_with(prefix.as_str())) {
                return false;
            }
        }
        if let Some(event) = &self.event {
            if item.event.as_deref() != Some(event.as_str()) {
                return false;
            }
        }
        if let Some(kinds) = &self.kinds {
            if !kinds.contains(&item.kind) {
                return false;
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(kind: &'static str, app: u32, channels: &[&str], event: Option<&str>) -> Item {
        Item {
            kind,
            app: Some(AppIdx(app)),
            event: event.map(Into::into),
            channels: channels.iter().map(|&c| c.into()).collect(),
            line: Box::default(),
        }
    }

    #[test]
    fn each_part_narrows() {
        let all = Filter::default();
        let a = item("api_message", 0, &["private-a", "b"], Some("e1"));
        assert!(all.shows(&a));
        let by_app = Filter {
            app: Some(AppIdx(1)),
            ..Filter::default()
        };
        assert!(!by_app.shows(&a));
        let by_prefix = Filter {
            channel_prefix: Some("b".into()),
            ..Filter::default()
        };
        assert!(by_prefix.shows(&a));
        assert!(!by_prefix.shows(&item("subscribed", 0, &["c"], None)));
        let by_event = Filter {
            event: Some("e1".into()),
            ..Filter::default()
        };
        assert!(by_event.shows(&a));
        assert!(!by_event.shows(&item("subscribed", 0, &["c"], None)));
        let by_kind = Filter {
            kinds: Some(vec!["client_event", "api_message"]),
            ..Filter::default()
        };
        assert!(by_kind.shows(&a));
        assert!(!by_kind.shows(&item("subscribed", 0, &["c"], None)));
    }

    #[test]
    fn kinds_are_the_tap_kinds_and_the_webhook_outcomes() {
        use crate::pusher::tap::What;
        let taps = [
            What::ConnectionOpened,
            What::ConnectionClosed { code: 1000 },
            What::Subscribed,
            What::Unsubscribed,
            What::ChannelOccupied,
            What::ChannelVacated,
            What::MemberAdded {
                user_id: "u".into(),
            },
            What::MemberRemoved {
                user_id: "u".into(),
            },
        ];
        for t in &taps {
            assert!(KINDS.contains(&t.kind()), "{}", t.kind());
        }
        assert!(KINDS.contains(&"api_message") && KINDS.contains(&"client_event"));
    }
}
