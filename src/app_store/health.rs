//! [`StoreHealth`]: whether the app store reaches its database, for
//! `/ready` and the log. Shared between the store thread (writer) and the
//! shards (readers) as atomics: reading it takes no lock.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// The store's reachability; the file store is always reachable.
#[derive(Debug)]
pub struct StoreHealth {
    driver: &'static str,
    /// Unix seconds since the database has been unreachable; 0 when it is reachable.
    down_since: AtomicU64,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(1)
        .max(1)
}

impl StoreHealth {
    pub fn new(driver: &'static str) -> StoreHealth {
        StoreHealth {
            driver,
            down_since: AtomicU64::new(0),
        }
    }

    /// Marks the database unreachable; true when this starts an outage
    /// (so it is logged once).
    pub fn down(&self) -> bool {
        self.down_since
            .compare_exchange(0, unix_now(), Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// Marks the database reachable; the outage's length in seconds when
    /// one ends.
    pub fn up(&self) -> Option<u64> {
        match self.down_since.swap(0, Ordering::AcqRel) {
            0 => None,
            since => Some(unix_now().saturating_sub(since)),
        }
    }

    /// What `/ready` says of the store: `None` while it is reachable.
    pub fn outage(&self) -> Option<String> {
        match self.down_since.load(Ordering::Acquire) {
            0 => None,
            since => Some(format!(
                "app store ({}) unreachable for {} s; serving the apps as last read",
                self.driver,
                unix_now().saturating_sub(since)
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outage_starts_once_and_ends_once() {
        let h = StoreHealth::new("postgres");
        assert!(h.outage().is_none());
        assert!(h.down());
        assert!(!h.down(), "the same outage is not started twice");
        assert!(h.outage().unwrap().contains("postgres"));
        assert!(h.up().is_some());
        assert!(h.up().is_none());
        assert!(h.outage().is_none());
    }
}
