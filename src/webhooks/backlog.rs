//! A webhook's backlog: the batches waiting for its lane, bounded in events.
//!
//! A webhook whose receiver is down holds its lane (each batch is retried
//! for `retry_for`) while new events keep coming. Without a bound they
//! would pile up in memory for as long as the outage lasts and then arrive
//! hours late. So each backlog holds at most `max_queued_events` events;
//! when a batch would pass that, the **oldest** waiting events are dropped
//! (they are the stalest, and the receiver most likely needs the newest
//! state), and the backlog remembers the overflow so the sender can log
//! one line when dropping starts and one summary when it is over.

use super::event::WebhookEvent;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Batches in the order they were closed; `events` counts their events.
#[derive(Default)]
pub struct Backlog {
    batches: VecDeque<Vec<WebhookEvent>>,
    events: usize,
    cap: usize,
    overflow: Option<Overflow>,
    /// No more batches will come: the lane exits once the backlog is empty.
    pub closed: bool,
}

/// Dropping began at `since` and has dropped `dropped` events so far.
#[derive(Debug, Clone, Copy)]
struct Overflow {
    since: Instant,
    dropped: u64,
}

/// What [`Backlog::push`] did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Pushed {
    /// Oldest events dropped to stay within the bound.
    pub dropped: usize,
    /// This push began an overflow (the first drop since the last summary).
    pub began_dropping: bool,
}

/// An overflow that is over: how many events it dropped, over how long.
#[derive(Debug, PartialEq, Eq)]
pub struct OverflowSummary {
    pub dropped: u64,
    pub lasted: Duration,
}

impl Backlog {
    /// An empty backlog holding at most `cap` events (at least 1).
    pub fn new(cap: usize) -> Backlog {
        Backlog {
            cap: cap.max(1),
            ..Backlog::default()
        }
    }

    /// Events waiting.
    pub fn len(&self) -> usize {
        self.events
    }

    pub fn is_empty(&self) -> bool {
        self.events == 0
    }

    /// Appends a batch, then drops the oldest waiting events beyond the bound.
    pub fn push(&mut self, batch: Vec<WebhookEvent>) -> Pushed {
        if batch.is_empty() {
            return Pushed::default();
        }
        self.events += batch.len();
        self.batches.push_back(batch);
        let mut dropped = 0;
        while self.events > self.cap {
            let Some(front) = self.batches.front_mut() else {
                break;
            };
            let n = (self.events - self.cap).min(front.len());
            front.drain(..n);
            if front.is_empty() {
                self.batches.pop_front();
            }
            self.events -= n;
            dropped += n;
        }
        let began_dropping = dropped > 0 && self.overflow.is_none();
        if dropped > 0 {
            let overflow = self.overflow.get_or_insert(Overflow {
                since: Instant::now(),
                dropped: 0,
            });
            overflow.dropped += dropped as u64;
        }
        Pushed {
            dropped,
            began_dropping,
        }
    }

    /// Takes the oldest batch.
    pub fn pop(&mut self) -> Option<Vec<WebhookEvent>> {
        let batch = self.batches.pop_front()?;
        self.events -= batch.len();
        Some(batch)
    }

    /// Ends the overflow once there is room again (called after a batch was
    /// delivered), or unconditionally with `force` (at shutdown).
    pub fn settle(&mut self, force: bool) -> Option<OverflowSummary> {
        if !force && self.events >= self.cap {
            return None;
        }
        self.overflow.take().map(|o| OverflowSummary {
            dropped: o.dropped,
            lasted: o.since.elapsed(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(range: std::ops::Range<usize>) -> Vec<WebhookEvent> {
        range
            .map(|i| WebhookEvent::ChannelOccupied {
                channel: format!("c{i}").into(),
            })
            .collect()
    }

    fn channels(batch: &[WebhookEvent]) -> Vec<String> {
        batch.iter().map(|e| e.channel().to_string()).collect()
    }

    #[test]
    fn keeps_the_newest_events_within_the_bound() {
        let mut b = Backlog::new(5);
        assert_eq!(b.push(batch(0..3)), Pushed::default());
        let pushed = b.push(batch(3..7));
        assert_eq!(
            pushed,
            Pushed {
                dropped: 2,
                began_dropping: true
            }
        );
        assert_eq!(b.len(), 5);
        // The first batch lost its two oldest events; order is kept.
        assert_eq!(channels(&b.pop().unwrap()), ["c2"]);
        assert_eq!(channels(&b.pop().unwrap()), ["c3", "c4", "c5", "c6"]);
        assert!(b.pop().is_none() && b.is_empty());
    }

    #[test]
    fn a_batch_larger_than_the_bound_keeps_its_newest_events() {
        let mut b = Backlog::new(2);
        b.push(batch(0..1));
        assert_eq!(b.push(batch(1..5)).dropped, 3);
        assert_eq!(channels(&b.pop().unwrap()), ["c3", "c4"]);
    }

    #[test]
    fn an_overflow_is_reported_once_and_summed_until_there_is_room() {
        let mut b = Backlog::new(2);
        b.push(batch(0..2));
        assert!(b.push(batch(2..3)).began_dropping);
        let again = b.push(batch(3..4));
        assert_eq!(again.dropped, 1);
        assert!(!again.began_dropping, "one line per overflow, not per drop");
        // Still full: the overflow goes on.
        assert_eq!(b.settle(false), None);
        b.pop();
        let summary = b.settle(false).expect("room again: the overflow is over");
        assert_eq!(summary.dropped, 2);
        assert_eq!(b.settle(false), None);
        // A new overflow starts a new count.
        while b.pop().is_some() {}
        assert_eq!(b.push(batch(4..6)).dropped, 0);
        assert!(b.push(batch(6..7)).began_dropping);
        assert_eq!(b.settle(true).map(|s| s.dropped), Some(1));
    }
}
