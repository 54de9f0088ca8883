//! Channel-wide subscription counts, kept by each channel's owner shard from
//! the deltas every shard reports, for `pusher_internal:subscription_count`
//! and for the occupancy webhooks (`channel_occupied` on 0→1,
//! `channel_vacated` on 1→0). As Pusher does, a channel with more than 100
//! subscribers is told its count at most once per 30 seconds; smaller
//! channels on every change.

use crate::apps::AppIdx;
use crate::ws::frame::Frame;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Above this many subscribers, counts are rate-limited.
pub const LARGE_CHANNEL: u32 = 100;
pub const LARGE_CHANNEL_INTERVAL: Duration = Duration::from_secs(30);

struct Count {
    total: u32,
    last_sent: Option<Instant>,
    /// A change not yet announced because of the rate limit.
    dirty: bool,
}

#[derive(Default)]
pub struct CountTable {
    channels: HashMap<(AppIdx, Box<str>), Count>,
}

/// What one delta did to a channel's server-wide count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CountChange {
    pub before: u32,
    pub after: u32,
    /// The count to announce to subscribers now, if any.
    pub announce: Option<u32>,
}

impl CountTable {
    /// Applies a delta. `announced` says whether the channel's subscribers
    /// are told counts (otherwise the total is only kept, for occupancy).
    pub fn apply(
        &mut self,
        app: AppIdx,
        channel: &str,
        delta: i32,
        now: Instant,
        announced: bool,
    ) -> CountChange {
        let key = (app, Box::from(channel));
        let c = self.channels.entry(key.clone()).or_insert(Count {
            total: 0,
            last_sent: None,
            dirty: false,
        });
        let before = c.total;
        c.total = (c.total as i64 + delta as i64).max(0) as u32;
        let mut change = CountChange {
            before,
            after: c.total,
            announce: None,
        };
        if c.total == 0 {
            self.channels.remove(&key);
            return change; // nobody left to tell
        }
        if !announced {
            return change;
        }
        let due = c.total <= LARGE_CHANNEL
            || c.last_sent
                .is_none_or(|t| now.duration_since(t) >= LARGE_CHANNEL_INTERVAL);
        if due {
            c.last_sent = Some(now);
            c.dirty = false;
            change.announce = Some(c.total);
        } else {
            c.dirty = true;
        }
        change
    }

    /// A channel's current count.
    pub fn total(&self, app: AppIdx, channel: &str) -> u32 {
        self.channels
            .get(&(app, Box::from(channel)))
            .map_or(0, |c| c.total)
    }

    /// Every channel with subscribers.
    pub fn occupied(&self) -> Vec<(AppIdx, Box<str>)> {
        self.channels
            .iter()
            .filter(|(_, c)| c.total > 0)
            .map(|((app, name), _)| (*app, name.clone()))
            .collect()
    }

    /// Counts held back by the rate limit whose interval has passed.
    pub fn due(&mut self, now: Instant) -> Vec<(AppIdx, Box<str>, u32)> {
        let mut out = Vec::new();
        for ((app, name), c) in self.channels.iter_mut() {
            if c.dirty
                && c.last_sent
                    .is_none_or(|t| now.duration_since(t) >= LARGE_CHANNEL_INTERVAL)
            {
                c.dirty = false;
                c.last_sent = Some(now);
                out.push((*app, name.clone(), c.total));
            }
        }
        out
    }
}

/// `{"event":"pusher_internal:subscription_count","channel":C,"data":{"subscription_count":N}}`
pub fn subscription_count_event(channel: &str, count: u32) -> Frame {
    Frame::text_with(|b| {
        b.extend_from_slice(b"{\"event\":\"pusher_internal:subscription_count\",\"channel\":");
        crate::json::push_json_str(b, channel);
        b.extend_from_slice(format!(",\"data\":{{\"subscription_count\":{count}}}}}").as_bytes());
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_channels_announce_every_change_large_ones_every_30s() {
        let mut t = CountTable::default();
        let a = AppIdx(0);
        let t0 = Instant::now();
        assert_eq!(t.apply(a, "c", 1, t0, true).announce, Some(1));
        assert_eq!(t.apply(a, "c", 1, t0, true).announce, Some(2));
        // Past 100, the last announcement (just now) holds the next one back.
        assert_eq!(t.apply(a, "c", 99, t0, true).announce, None);
        assert_eq!(t.apply(a, "c", 1, t0, true).announce, None);
        assert!(t.due(t0 + Duration::from_secs(5)).is_empty());
        assert_eq!(
            t.due(t0 + Duration::from_secs(31)),
            vec![(a, Box::from("c"), 102)]
        );
        assert_eq!(t.apply(a, "c", -102, t0, true).announce, None);
    }

    #[test]
    fn changes_report_before_and_after_for_occupancy() {
        let mut t = CountTable::default();
        let a = AppIdx(0);
        let t0 = Instant::now();
        let c = t.apply(a, "presence-c", 1, t0, false);
        assert_eq!((c.before, c.after, c.announce), (0, 1, None));
        let c = t.apply(a, "presence-c", 1, t0, false);
        assert_eq!((c.before, c.after), (1, 2));
        t.apply(a, "presence-c", -1, t0, false);
        let c = t.apply(a, "presence-c", -1, t0, false);
        assert_eq!((c.before, c.after), (1, 0));
        // Unannounced channels never become due.
        t.apply(a, "x", 500, t0, false);
        assert!(t.due(t0 + Duration::from_secs(60)).is_empty());
    }

    #[test]
    fn frame_shape() {
        let f = subscription_count_event("c", 3);
        assert_eq!(
            std::str::from_utf8(f.payload()).unwrap(),
            r#"{"event":"pusher_internal:subscription_count","channel":"c","data":{"subscription_count":3}}"#
        );
    }
}
