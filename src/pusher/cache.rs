//! Cache channels: the last event published over HTTP on each cache channel,
//! kept by the channel's owner shard for a time-to-live.

use crate::apps::AppIdx;
use crate::ws::frame::Frame;
use std::collections::HashMap;
use std::time::{Duration, Instant};

pub struct CachedEvent {
    pub frame: Frame,
    /// The event's `data`, for the `cache` attribute of channel queries.
    pub data: Box<str>,
    stored: Instant,
}

#[derive(Default)]
pub struct CacheTable {
    entries: HashMap<(AppIdx, Box<str>), CachedEvent>,
}

impl CacheTable {
    pub fn store(&mut self, app: AppIdx, channel: Box<str>, frame: Frame, data: Box<str>) {
        self.entries.insert(
            (app, channel),
            CachedEvent {
                frame,
                data,
                stored: Instant::now(),
            },
        );
    }

    /// The cached event and its remaining time, if one is still fresh.
    pub fn get(
        &self,
        app: AppIdx,
        channel: &str,
        ttl: Duration,
    ) -> Option<(&CachedEvent, Duration)> {
        let entry = self.entries.get(&(app, Box::from(channel)))?;
        let age = entry.stored.elapsed();
        (age < ttl).then(|| (entry, ttl - age))
    }

    /// Drops entries older than their app's TTL.
    pub fn sweep(&mut self, ttl_of: impl Fn(AppIdx) -> Duration) {
        self.entries
            .retain(|(app, _), e| e.stored.elapsed() < ttl_of(*app));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_event_until_its_ttl() {
        let mut t = CacheTable::default();
        t.store(AppIdx(0), "cache-a".into(), Frame::text(b"1"), "1".into());
        t.store(AppIdx(0), "cache-a".into(), Frame::text(b"2"), "2".into());
        let (e, left) = t
            .get(AppIdx(0), "cache-a", Duration::from_secs(60))
            .unwrap();
        assert_eq!(&*e.data, "2");
        assert!(left <= Duration::from_secs(60));
        assert!(t
            .get(AppIdx(1), "cache-a", Duration::from_secs(60))
            .is_none());
        assert!(t.get(AppIdx(0), "cache-a", Duration::ZERO).is_none());
        t.sweep(|_| Duration::ZERO);
        assert!(t
            .get(AppIdx(0), "cache-a", Duration::from_secs(60))
            .is_none());
    }
}
