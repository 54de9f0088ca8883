//! Cache channels: the last event published over HTTP on each cache channel,
//! kept by the channel's owner shard for a time-to-live.
//!
//! The table is bounded, in entries and in bytes (each entry keeps the
//! frame and the event's `data`, up to twice the payload limit), because
//! any API client can create cache channels at will. When a new event
//! would pass a bound, the entries closest to expiry are evicted first
//! (with one TTL per app, that is the oldest); their channels answer
//! `pusher:cache_miss` again, as after their TTL.

use crate::apps::AppIdx;
use crate::ws::frame::Frame;
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

pub struct CachedEvent {
    pub frame: Frame,
    /// The event's `data`, for the `cache` attribute of channel queries.
    pub data: Box<str>,
    expires: Instant,
    /// Tells entries with the same expiry apart in the eviction order.
    serial: u64,
}

impl CachedEvent {
    /// Bytes the entry holds, counted against the byte bound.
    fn size(&self, channel: &str) -> usize {
        self.frame.len() + self.data.len() + channel.len()
    }
}

/// How much one shard's table may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheLimits {
    pub max_channels: usize,
    pub max_bytes: usize,
}

type Key = (AppIdx, Box<str>);

#[derive(Default)]
pub struct CacheTable {
    entries: HashMap<Key, CachedEvent>,
    /// The same entries by expiry, soonest first: the eviction order.
    by_expiry: BTreeMap<(Instant, u64), Key>,
    /// Sum of the entries' sizes.
    bytes: usize,
    next_serial: u64,
}

impl CacheTable {
    /// Keeps `frame` as the channel's last event for `ttl`, then evicts the
    /// entries closest to expiry while the table is over `limits`. Returns
    /// how many unexpired entries were evicted (an event larger than the
    /// whole byte bound is not kept, and evicts the channel's previous one).
    pub fn store(
        &mut self,
        app: AppIdx,
        channel: Box<str>,
        frame: Frame,
        data: Box<str>,
        ttl: Duration,
        limits: CacheLimits,
    ) -> usize {
        let now = Instant::now();
        let key = (app, channel);
        let previous = self.remove(&key);
        if frame.len() + data.len() + key.1.len() > limits.max_bytes {
            // Kept, it would evict everything else and then itself.
            return previous.is_some_and(|p| p.expires > now) as usize;
        }
        let entry = CachedEvent {
            frame,
            data,
            expires: now + ttl,
            serial: self.next_serial,
        };
        self.next_serial += 1;
        self.bytes += entry.size(&key.1);
        self.by_expiry
            .insert((entry.expires, entry.serial), key.clone());
        self.entries.insert(key, entry);
        let mut evicted = 0;
        while self.entries.len() > limits.max_channels || self.bytes > limits.max_bytes {
            let Some((&(expires, _), _)) = self.by_expiry.first_key_value() else {
                break;
            };
            if let Some((_, key)) = self.by_expiry.pop_first() {
                self.remove(&key);
            }
            if expires > now {
                evicted += 1;
            }
        }
        evicted
    }

    fn remove(&mut self, key: &Key) -> Option<CachedEvent> {
        let old = self.entries.remove(key)?;
        self.bytes -= old.size(&key.1);
        self.by_expiry.remove(&(old.expires, old.serial));
        Some(old)
    }

    /// The cached event and its remaining time, if one is still fresh.
    pub fn get(&self, app: AppIdx, channel: &str) -> Option<(&CachedEvent, Duration)> {
        let entry = self.entries.get(&(app, Box::from(channel)))?;
        let left = entry.expires.saturating_duration_since(Instant::now());
        (!left.is_zero()).then_some((entry, left))
    }

    /// Drops the entries that expired by `now`.
    pub fn sweep(&mut self, now: Instant) {
        while let Some(entry) = self.by_expiry.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let key = entry.remove();
            self.remove(&key);
        }
    }

    /// Channels with a cached event (expired ones until the next sweep).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Bytes held, as counted against the byte bound.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: Duration = Duration::from_secs(60);
    const ROOMY: CacheLimits = CacheLimits {
        max_channels: 100,
        max_bytes: 1 << 20,
    };

    fn store(
        t: &mut CacheTable,
        channel: &str,
        data: &str,
        ttl: Duration,
        l: CacheLimits,
    ) -> usize {
        t.store(
            AppIdx(0),
            channel.into(),
            Frame::text(data.as_bytes()),
            data.into(),
            ttl,
            l,
        )
    }

    fn data(t: &CacheTable, channel: &str) -> Option<String> {
        t.get(AppIdx(0), channel).map(|(e, _)| e.data.to_string())
    }

    #[test]
    fn keeps_the_last_event_until_its_ttl() {
        let mut t = CacheTable::default();
        store(&mut t, "cache-a", "1", MINUTE, ROOMY);
        store(&mut t, "cache-a", "2", MINUTE, ROOMY);
        let (e, left) = t.get(AppIdx(0), "cache-a").unwrap();
        assert_eq!(&*e.data, "2");
        assert!(left <= MINUTE);
        assert_eq!(t.len(), 1, "a new event replaces the old one");
        assert!(t.get(AppIdx(1), "cache-a").is_none());
        store(&mut t, "cache-b", "x", Duration::ZERO, ROOMY);
        assert!(t.get(AppIdx(0), "cache-b").is_none(), "expired");
        t.sweep(Instant::now() + MINUTE);
        assert!(t.is_empty());
        assert_eq!(t.bytes(), 0);
    }

    #[test]
    fn a_full_table_evicts_the_entry_closest_to_expiry() {
        let two = CacheLimits {
            max_channels: 2,
            ..ROOMY
        };
        let mut t = CacheTable::default();
        assert_eq!(store(&mut t, "cache-long", "l", MINUTE * 10, two), 0);
        assert_eq!(store(&mut t, "cache-old", "o", MINUTE, two), 0);
        assert_eq!(store(&mut t, "cache-new", "n", MINUTE, two), 1);
        assert_eq!(data(&t, "cache-old"), None, "closest to expiry goes");
        assert_eq!(data(&t, "cache-new").as_deref(), Some("n"));
        assert_eq!(data(&t, "cache-long").as_deref(), Some("l"));
        // Replacing a channel's event takes no room of another.
        assert_eq!(store(&mut t, "cache-new", "n2", MINUTE, two), 0);
        assert_eq!(t.len(), 2);
        // An expired entry makes room without counting as an eviction.
        let mut t = CacheTable::default();
        store(&mut t, "cache-dead", "d", Duration::ZERO, two);
        store(&mut t, "cache-a", "a", MINUTE, two);
        assert_eq!(store(&mut t, "cache-b", "b", MINUTE, two), 0);
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn the_byte_bound_evicts_too_and_refuses_an_event_larger_than_it() {
        let mut t = CacheTable::default();
        let size = |channel: &str, data: &str| {
            Frame::text(data.as_bytes()).len() + data.len() + channel.len()
        };
        let small = CacheLimits {
            max_channels: 100,
            max_bytes: size("cache-a", "aaaa") + size("cache-b", "bbbb"),
        };
        store(&mut t, "cache-a", "aaaa", MINUTE, small);
        store(&mut t, "cache-b", "bbbb", MINUTE, small);
        assert_eq!(t.bytes(), small.max_bytes);
        assert_eq!(store(&mut t, "cache-c", "cccc", MINUTE, small), 1);
        assert_eq!(data(&t, "cache-a"), None);
        assert!(t.bytes() <= small.max_bytes);
        // Too large for the whole budget: not kept, nor is the stale event.
        let huge = "h".repeat(small.max_bytes);
        assert_eq!(store(&mut t, "cache-c", &huge, MINUTE, small), 1);
        assert_eq!(data(&t, "cache-c"), None);
        assert_eq!(data(&t, "cache-b").as_deref(), Some("bbbb"));
    }
}
