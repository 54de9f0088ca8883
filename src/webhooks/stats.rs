//! The webhook sender's counters, in every build (the metrics endpoint
//! reads them whether or not this build can send webhooks).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

/// Process-wide delivery counters, read by the metrics endpoint.
#[derive(Debug, Default)]
pub struct DeliveryStats {
    /// Requests answered with a 2xx.
    pub deliveries: AtomicU64,
    /// Attempts that failed and were tried again.
    pub retries: AtomicU64,
    /// Batches given up after `retry_for`.
    pub failures: AtomicU64,
    /// Events dropped because the sender's queue was full.
    pub dropped: AtomicU64,
    /// Events accepted but not yet delivered or given up.
    pub pending: AtomicU64,
    /// Events dropped, oldest first, because their webhook's backlog was
    /// at `max_queued_events`.
    pub dropped_oldest: AtomicU64,
    /// Events waiting in the webhooks' backlogs (all lanes together).
    pub queued: AtomicU64,
    /// Requests sent or given up, for the debug console while it watches.
    pub log: DeliveryLog,
}

/// Notes of webhook requests for the debug console (`http::console`).
/// Unwatched, noting is one relaxed atomic load; watched, at most
/// [`DeliveryLog::MAX_NOTES`] wait for the console, the rest are dropped
/// and counted. The sender thread never waits on it.
#[derive(Debug, Default)]
pub struct DeliveryLog {
    watched: AtomicBool,
    notes: Mutex<VecDeque<DeliveryNote>>,
    dropped: AtomicU64,
}

/// One webhook request's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryNote {
    /// Milliseconds since the Unix epoch.
    pub at_ms: u64,
    pub app_key: String,
    /// The URL without credentials or query.
    pub url: String,
    /// (event kind, channel) of each event in the request.
    pub events: Vec<(&'static str, Box<str>)>,
    /// `None` when accepted; otherwise why it was given up.
    pub failure: Option<String>,
}

impl DeliveryLog {
    pub const MAX_NOTES: usize = 1024;

    pub fn is_watched(&self) -> bool {
        self.watched.load(Ordering::Relaxed)
    }

    /// Starts or stops keeping notes (stopping forgets the kept ones).
    pub fn set_watched(&self, on: bool) {
        self.watched.store(on, Ordering::Relaxed);
        if !on {
            self.take();
        }
    }

    /// Keeps the note `make` builds, only while watched.
    pub fn note(&self, make: impl FnOnce() -> DeliveryNote) {
        if !self.is_watched() {
            return;
        }
        let note = make();
        let mut notes = self.notes.lock().unwrap_or_else(|p| p.into_inner());
        if notes.len() >= Self::MAX_NOTES {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        } else {
            notes.push_back(note);
        }
    }

    /// Takes the kept notes and the count of dropped ones.
    pub fn take(&self) -> (Vec<DeliveryNote>, u64) {
        let notes = std::mem::take(&mut *self.notes.lock().unwrap_or_else(|p| p.into_inner()));
        (notes.into(), self.dropped.swap(0, Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn note() -> DeliveryNote {
        DeliveryNote {
            at_ms: 1,
            app_key: "k".into(),
            url: "http://h/".into(),
            events: vec![("channel_occupied", "c".into())],
            failure: None,
        }
    }

    #[test]
    fn notes_only_while_watched_and_within_the_bound() {
        let log = DeliveryLog::default();
        log.note(|| panic!("built while unwatched"));
        log.set_watched(true);
        for _ in 0..DeliveryLog::MAX_NOTES + 2 {
            log.note(note);
        }
        let (notes, dropped) = log.take();
        assert_eq!((notes.len(), dropped), (DeliveryLog::MAX_NOTES, 2));
        log.note(note);
        log.set_watched(false);
        assert_eq!(log.take(), (Vec::new(), 0));
    }
}
