//! Channel-wide subscription counts, kept by each channel's owner shard:
//! this node's count from the deltas every shard reports (for the
//! occupancy webhooks, `channel_occupied` on 0→1 and `channel_vacated` on
//! 1→0, and for telling the other nodes of a cluster), and when the
//! channel-wide total (this node's plus what the other nodes report) is
//! announced, to subscribers as `pusher_internal:subscription_count` and
//! to the `subscription_count` webhook.
//!
//! As Pusher does ("How the Pusher team built subscription counting at
//! scale": channels over 100 subscribers are counted under a 5-second
//! broadcast lock), a channel with more than [`LARGE_CHANNEL`] subscribers
//! is announced at most once per [`LARGE_CHANNEL_INTERVAL`]; the last
//! change held back is announced when the interval is over ([`CountTable::due`]).
//! Smaller channels are announced on every change. A total of 0 is never
//! announced (`channel_vacated` says that), nor the same total twice in a
//! row.

use crate::apps::AppIdx;
use crate::ws::frame::Frame;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Above this many subscribers, counts are rate-limited.
pub const LARGE_CHANNEL: u32 = 100;
/// How often a large channel's count is announced, at most.
pub const LARGE_CHANNEL_INTERVAL: Duration = Duration::from_secs(5);

/// One channel's counts. Invariant: an entry exists while `local > 0` or
/// (for an announced channel) `total > 0`.
#[derive(Default)]
struct Count {
    /// Subscriptions on this node.
    local: u32,
    /// The channel-wide total last given to [`CountTable::announce`].
    total: u32,
    /// The total last announced, and when.
    announced: Option<u32>,
    last_sent: Option<Instant>,
    /// A change not yet announced because of the rate limit.
    dirty: bool,
}

#[derive(Default)]
pub struct CountTable {
    channels: HashMap<(AppIdx, Box<str>), Count>,
}

impl CountTable {
    /// Applies a delta to this node's count; returns (before, after).
    pub fn apply(&mut self, app: AppIdx, channel: &str, delta: i32) -> (u32, u32) {
        let key = (app, Box::from(channel));
        let c = self.channels.entry(key.clone()).or_default();
        let before = c.local;
        c.local = (c.local as i64 + delta as i64).clamp(0, u32::MAX as i64) as u32;
        let after = c.local;
        if after == 0 && c.total == 0 {
            self.channels.remove(&key);
        }
        (before, after)
    }

    /// This node's count of a channel.
    pub fn local(&self, app: AppIdx, channel: &str) -> u32 {
        self.channels
            .get(&(app, Box::from(channel)))
            .map_or(0, |c| c.local)
    }

    /// The channel-wide total is now `total`: the count to announce now,
    /// if any (`counted`: the channel's counts are announced at all).
    pub fn announce(
        &mut self,
        app: AppIdx,
        channel: &str,
        total: u32,
        now: Instant,
        counted: bool,
    ) -> Option<u32> {
        let key = (app, Box::from(channel));
        if !counted || total == 0 {
            if let Some(c) = self.channels.get_mut(&key) {
                c.total = 0;
                c.announced = None;
                c.dirty = false;
                if c.local == 0 {
                    self.channels.remove(&key);
                }
            }
            return None;
        }
        let c = self.channels.entry(key).or_default();
        c.total = total;
        if c.announced == Some(total) {
            c.dirty = false;
            return None;
        }
        let due = total <= LARGE_CHANNEL
            || c.last_sent
                .is_none_or(|t| now.duration_since(t) >= LARGE_CHANNEL_INTERVAL);
        if due {
            c.last_sent = Some(now);
            c.announced = Some(total);
            c.dirty = false;
            Some(total)
        } else {
            c.dirty = true;
            None
        }
    }

    /// Channels with subscribers on this node, and their counts.
    pub fn occupied(&self) -> Vec<(AppIdx, Box<str>, u32)> {
        self.channels
            .iter()
            .filter(|(_, c)| c.local > 0)
            .map(|((app, name), c)| (*app, name.clone(), c.local))
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
                c.announced = Some(c.total);
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
    fn small_channels_announce_every_change_large_ones_every_5s() {
        let mut t = CountTable::default();
        let a = AppIdx(0);
        let t0 = Instant::now();
        let step = |t: &mut CountTable, delta: i32, at: Instant| {
            let (_, after) = t.apply(a, "c", delta);
            t.announce(a, "c", after, at, true)
        };
        assert_eq!(step(&mut t, 1, t0), Some(1));
        assert_eq!(step(&mut t, 1, t0), Some(2));
        // Past 100, the last announcement (just now) holds the next one back.
        assert_eq!(step(&mut t, 99, t0), None);
        assert_eq!(step(&mut t, 1, t0), None);
        assert!(t.due(t0 + Duration::from_secs(4)).is_empty());
        assert_eq!(
            t.due(t0 + Duration::from_secs(5)),
            vec![(a, Box::from("c"), 102)]
        );
        // Within the next interval, held again; the same total is not repeated.
        assert_eq!(step(&mut t, 1, t0 + Duration::from_secs(6)), None);
        assert_eq!(step(&mut t, -1, t0 + Duration::from_secs(7)), None);
        assert!(t.due(t0 + Duration::from_secs(11)).is_empty());
        // Back under the threshold: every change again; the last leave is not announced.
        assert_eq!(step(&mut t, -100, t0 + Duration::from_secs(12)), Some(2));
        assert_eq!(step(&mut t, -1, t0 + Duration::from_secs(12)), Some(1));
        assert_eq!(step(&mut t, -1, t0 + Duration::from_secs(12)), None);
        assert!(t.channels.is_empty());
    }

    #[test]
    fn local_counts_report_before_and_after_for_occupancy() {
        let mut t = CountTable::default();
        let a = AppIdx(0);
        assert_eq!(t.apply(a, "presence-c", 1), (0, 1));
        assert_eq!(t.apply(a, "presence-c", 1), (1, 2));
        t.apply(a, "presence-c", -1);
        assert_eq!(t.apply(a, "presence-c", -1), (1, 0));
        assert!(t.channels.is_empty());
        // Unannounced channels never become due.
        let t0 = Instant::now();
        t.apply(a, "x", 500);
        assert_eq!(t.announce(a, "x", 500, t0, false), None);
        assert!(t.due(t0 + Duration::from_secs(60)).is_empty());
        assert_eq!(t.occupied(), vec![(a, Box::from("x"), 500)]);
    }

    #[test]
    fn a_total_from_other_nodes_is_kept_without_local_subscribers() {
        let mut t = CountTable::default();
        let a = AppIdx(0);
        let t0 = Instant::now();
        assert_eq!(t.announce(a, "c", 3, t0, true), Some(3));
        assert_eq!(t.local(a, "c"), 0);
        assert!(t.occupied().is_empty());
        assert_eq!(t.announce(a, "c", 3, t0, true), None);
        assert_eq!(t.announce(a, "c", 0, t0, true), None);
        assert!(t.channels.is_empty());
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
