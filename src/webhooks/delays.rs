//! Held-back `channel_vacated` and `member_removed` events, kept by the
//! owner shard of the channel for the configured delay. As Pusher does, a
//! channel or member that comes back within the delay cancels the held
//! event, and then the matching `channel_occupied` / `member_added` is not
//! sent either: to the webhook's receiver nothing happened.

use super::event::WebhookEvent;
use crate::apps::AppIdx;
use std::collections::HashMap;
use std::time::Instant;

/// (app, channel, user id for `member_removed` / none for `channel_vacated`).
type Key = (AppIdx, Box<str>, Option<Box<str>>);

#[derive(Default)]
pub struct DelayTable {
    due: HashMap<Key, Instant>,
}

impl DelayTable {
    /// Holds `channel_vacated` (no user) or `member_removed` until `at`.
    pub fn hold(&mut self, app: AppIdx, channel: Box<str>, user_id: Option<Box<str>>, at: Instant) {
        self.due.insert((app, channel, user_id), at);
    }

    /// Drops a held event for this channel (or member); true if one was held.
    pub fn cancel(&mut self, app: AppIdx, channel: &str, user_id: Option<&str>) -> bool {
        self.due
            .remove(&(app, Box::from(channel), user_id.map(Box::from)))
            .is_some()
    }

    pub fn is_empty(&self) -> bool {
        self.due.is_empty()
    }

    /// Takes the events whose delay is over (all of them with `None`).
    pub fn take_due(&mut self, now: Option<Instant>) -> Vec<(AppIdx, WebhookEvent)> {
        let keys: Vec<Key> = self
            .due
            .iter()
            .filter(|(_, at)| now.is_none_or(|now| **at <= now))
            .map(|(k, _)| k.clone())
            .collect();
        keys.into_iter()
            .map(|key| {
                self.due.remove(&key);
                let (app, channel, user_id) = key;
                let event = match user_id {
                    Some(user_id) => WebhookEvent::MemberRemoved { channel, user_id },
                    None => WebhookEvent::ChannelVacated { channel },
                };
                (app, event)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn held_events_come_out_when_due_unless_cancelled() {
        let mut t = DelayTable::default();
        let a = AppIdx(0);
        let t0 = Instant::now();
        let later = t0 + Duration::from_secs(3);
        t.hold(a, "c".into(), None, later);
        t.hold(a, "presence-c".into(), Some("u".into()), later);
        t.hold(a, "d".into(), None, later);
        assert!(t.cancel(a, "d", None));
        assert!(!t.cancel(a, "d", None));
        assert!(!t.cancel(a, "presence-c", Some("v")));
        assert!(t.take_due(Some(t0)).is_empty());
        let mut due = t.take_due(Some(later));
        due.sort_by_key(|(_, e)| e.channel().to_string());
        assert_eq!(
            due,
            vec![
                (
                    a,
                    WebhookEvent::ChannelVacated {
                        channel: "c".into()
                    }
                ),
                (
                    a,
                    WebhookEvent::MemberRemoved {
                        channel: "presence-c".into(),
                        user_id: "u".into()
                    }
                ),
            ]
        );
        assert!(t.is_empty());
    }
}
