//! Held-back `channel_vacated` and `member_removed` events, kept by the
//! owner shard of the channel for the configured delay. As Pusher does, a
//! channel or member that comes back within the delay cancels the held
//! event, and then the matching `channel_occupied` / `member_added` is not
//! sent either: to the webhook's receiver nothing happened.
//!
//! Every event is held for the same delay, so deadlines come in the order
//! events are held: the table is a FIFO queue, and a tick looks only at the
//! events that are due (never the whole table). Held events come out in the
//! order they were held, which is what lets a later event serve as a
//! barrier for an earlier one.

use super::event::WebhookEvent;
use crate::apps::AppIdx;
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;
use std::time::Instant;

/// (app, channel, user id for `member_removed` / none for `channel_vacated`).
type Key = Rc<(AppIdx, Box<str>, Option<Box<str>>)>;

/// Invariant: `live[k] == n` exactly when the entry `(_, k, n)` of `queue`
/// is the one held for `k`; any other queue entry for `k` is stale (it was
/// cancelled or held again) and is dropped when it reaches the front.
/// Deadlines in `queue` never decrease.
#[derive(Default)]
pub struct DelayTable {
    queue: VecDeque<(Instant, Key, u64)>,
    live: HashMap<Key, u64>,
    next: u64,
}

impl DelayTable {
    /// Holds `channel_vacated` (no user) or `member_removed` until `at`
    /// (or until the last held event's deadline, if that is later: the
    /// queue stays in deadline order).
    pub fn hold(&mut self, app: AppIdx, channel: Box<str>, user_id: Option<Box<str>>, at: Instant) {
        let at = self.queue.back().map_or(at, |(last, _, _)| at.max(*last));
        let key: Key = Rc::new((app, channel, user_id));
        self.next += 1;
        self.live.insert(key.clone(), self.next);
        self.queue.push_back((at, key, self.next));
    }

    /// Drops a held event for this channel (or member); true if one was held.
    pub fn cancel(&mut self, app: AppIdx, channel: &str, user_id: Option<&str>) -> bool {
        let key = (app, Box::from(channel), user_id.map(Box::from));
        self.live.remove(&key).is_some()
    }

    /// True when nothing is queued (held or stale).
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Takes the events whose delay is over (all of them with `None`), in
    /// the order they were held.
    pub fn take_due(&mut self, now: Option<Instant>) -> Vec<(AppIdx, WebhookEvent)> {
        let mut due = Vec::new();
        while let Some((at, _, _)) = self.queue.front() {
            if now.is_some_and(|now| *at > now) {
                break;
            }
            let (_, key, n) = self.queue.pop_front().expect("front exists");
            if self.live.get(&key) != Some(&n) {
                continue;
            }
            self.live.remove(&key);
            let (app, channel, user_id) = Rc::unwrap_or_clone(key);
            let event = match user_id {
                Some(user_id) => WebhookEvent::MemberRemoved { channel, user_id },
                None => WebhookEvent::ChannelVacated { channel },
            };
            due.push((app, event));
        }
        due
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

    #[test]
    fn held_events_come_out_in_the_order_held() {
        let mut t = DelayTable::default();
        let a = AppIdx(0);
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        t.hold(a, "x".into(), None, at(10));
        t.hold(a, "y".into(), None, at(20));
        // Cancelled and held again: it now comes after `z`.
        assert!(t.cancel(a, "x", None));
        t.hold(a, "z".into(), None, at(30));
        t.hold(a, "x".into(), None, at(40));
        // An earlier deadline than the last one waits for it.
        t.hold(a, "w".into(), None, at(35));
        let names = |due: Vec<(AppIdx, WebhookEvent)>| {
            due.iter()
                .map(|(_, e)| e.channel().to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(names(t.take_due(Some(at(20)))), ["y"]);
        assert_eq!(names(t.take_due(Some(at(39)))), ["z"]);
        assert_eq!(names(t.take_due(Some(at(40)))), ["x", "w"]);
        assert!(t.is_empty());
    }
}
