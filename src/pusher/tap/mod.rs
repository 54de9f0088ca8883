//! Taps: the points in a shard where the live debug console (`http::console`)
//! learns what happens (connections, subscriptions, occupancy, presence
//! members, API messages, client events), and the shard's bounded buffer of
//! what they reported.
//!
//! Free when nobody looks: a tap point is [`Tap::note`] with a closure that
//! builds the event; unwatched, `note` is one `Cell<bool>` load and a branch,
//! and the closure (formatting, allocation) never runs. A shard is watched
//! while the console's collector keeps asking it for its events
//! ([`part`]): each ask renews a lease of [`WATCH_LEASE`]; the housekeeping
//! tick ends an expired lease ([`Tap::expire`]) and frees the buffer, so a
//! console that went away costs nothing after a few seconds.
//!
//! # Bounds
//! - At most [`BUFFER_EVENTS`] events wait per shard between two asks; an
//!   event beyond that is dropped and counted (`dropped`), never waited
//!   for. The collector asks about four times a second, so a shard shows
//!   up to ~16 000 events a second and summarises the rest as a count.
//! - An event's data is kept as an excerpt of at most
//!   [`event::DATA_EXCERPT_BYTES`].

pub mod event;

pub use event::{excerpt, TapEvent, What};

use super::shard::Shard;
use crate::apps::AppIdx;
use crate::metrics::Snapshot;
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Events a shard keeps between two asks of the console's collector.
pub const BUFFER_EVENTS: usize = 4096;
/// How long one ask keeps a shard watched.
pub const WATCH_LEASE: Duration = Duration::from_secs(3);
/// Channels in a shard's list of its busiest ones.
pub const BUSIEST: usize = 20;

/// One shard's tap buffer.
///
/// # Invariants
/// - `watched` is true iff `until` is set; while false, `events` is empty
///   and no event is built.
/// - `events.len() <= BUFFER_EVENTS`.
pub struct Tap {
    shard: u16,
    watched: Cell<bool>,
    until: Cell<Option<Instant>>,
    events: RefCell<VecDeque<TapEvent>>,
    /// Events dropped since the last ask.
    dropped: Cell<u64>,
}

/// What one shard tells the console's collector per ask.
#[derive(Debug, Default)]
pub struct TapPart {
    pub events: Vec<TapEvent>,
    /// Events dropped because the buffer was full, since the last ask.
    pub dropped: u64,
    /// The shard's counters (for the charts).
    pub snapshot: Snapshot,
    /// The shard's busiest channels (app, name, local subscribers), most
    /// first; filled only when asked for.
    pub busiest: Vec<(AppIdx, Box<str>, u32)>,
}

impl Tap {
    pub fn new(shard: u16) -> Tap {
        Tap {
            shard,
            watched: Cell::new(false),
            until: Cell::new(None),
            events: RefCell::new(VecDeque::new()),
            dropped: Cell::new(0),
        }
    }

    /// Whether a console is watching this shard.
    #[inline(always)]
    pub fn watched(&self) -> bool {
        self.watched.get()
    }

    /// A tap point: records the event `make` builds, only when watched.
    #[inline(always)]
    pub fn note(&self, make: impl FnOnce() -> TapEvent) {
        if self.watched.get() {
            self.push(make());
        }
    }

    #[cold]
    fn push(&self, mut event: TapEvent) {
        let mut events = self.events.borrow_mut();
        if events.len() >= BUFFER_EVENTS {
            self.dropped.set(self.dropped.get() + 1);
            return;
        }
        event.at_us = now_us();
        event.shard = self.shard;
        events.push_back(event);
    }

    /// Keeps the shard watched until `now + WATCH_LEASE`.
    pub fn watch(&self, now: Instant) {
        self.until.set(Some(now + WATCH_LEASE));
        self.watched.set(true);
    }

    /// Ends an expired lease and frees the buffer (housekeeping tick).
    pub fn expire(&self, now: Instant) {
        if self.until.get().is_some_and(|until| now >= until) {
            self.until.set(None);
            self.watched.set(false);
            *self.events.borrow_mut() = VecDeque::new();
            self.dropped.set(0);
        }
    }

    /// Keeps another shard's answer that came after the collector stopped
    /// waiting, for the next ask (within the same bound; stamps kept).
    pub fn absorb(&self, part: TapPart) {
        if !self.watched() {
            return;
        }
        let mut events = self.events.borrow_mut();
        let room = BUFFER_EVENTS - events.len();
        let lost = part.events.len().saturating_sub(room) as u64;
        events.extend(part.events.into_iter().take(room));
        self.dropped.set(self.dropped.get() + part.dropped + lost);
    }

    /// Takes the buffered events and the count of dropped ones.
    fn take(&self) -> (Vec<TapEvent>, u64) {
        let events = std::mem::take(&mut *self.events.borrow_mut());
        (events.into(), self.dropped.replace(0))
    }
}

/// Microseconds since the Unix epoch.
pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// Answers the collector's ask (on this shard): renews the watch lease and
/// hands over the buffered events, the counters and, when `busiest`, the
/// busiest local channels.
pub fn part(shard: &Shard, busiest: bool) -> TapPart {
    shard.tap.watch(Instant::now());
    let (events, dropped) = shard.tap.take();
    TapPart {
        events,
        dropped,
        snapshot: shard.snapshot(),
        busiest: if busiest {
            busiest_channels(shard)
        } else {
            Vec::new()
        },
    }
}

/// The [`BUSIEST`] channels of this shard with the most local subscribers:
/// one pass over the channel table keeping the best [`BUSIEST`] in a small
/// heap, so a shard with a million channels allocates nothing more.
fn busiest_channels(shard: &Shard) -> Vec<(AppIdx, Box<str>, u32)> {
    let channels = shard.channels.borrow();
    let all = (0..shard.apps.len() as u32).flat_map(|app| {
        channels
            .iter_app(AppIdx(app))
            .map(move |(name, n)| (app, name, n))
    });
    top(all, BUSIEST)
}

/// The `k` entries (app, name, count) with the highest counts, highest
/// first, from one pass that keeps only `k` in a heap.
fn top<'a>(
    all: impl Iterator<Item = (u32, &'a str, u32)>,
    k: usize,
) -> Vec<(AppIdx, Box<str>, u32)> {
    use std::cmp::Reverse;
    use std::collections::BinaryHeap;
    let mut best: BinaryHeap<Reverse<(u32, u32, &str)>> = BinaryHeap::with_capacity(k + 1);
    for (app, name, n) in all {
        if best.len() == k && best.peek().is_some_and(|Reverse(low)| low.0 >= n) {
            continue;
        }
        best.push(Reverse((n, app, name)));
        if best.len() > k {
            best.pop();
        }
    }
    // Ascending by `Reverse`: the most subscribers first.
    best.into_sorted_vec()
        .into_iter()
        .map(|Reverse((n, app, name))| (AppIdx(app), name.into(), n))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unwatched_builds_nothing() {
        let tap = Tap::new(3);
        tap.note(|| panic!("built while unwatched"));
        assert!(tap.take().0.is_empty());
    }

    #[test]
    fn watched_keeps_a_bounded_buffer_and_counts_the_rest() {
        let tap = Tap::new(3);
        let now = Instant::now();
        tap.watch(now);
        for _ in 0..BUFFER_EVENTS + 5 {
            tap.note(|| TapEvent::new(AppIdx(0), What::Subscribed).on("c"));
        }
        let (events, dropped) = tap.take();
        assert_eq!(events.len(), BUFFER_EVENTS);
        assert_eq!(dropped, 5);
        assert_eq!(events[0].shard, 3);
        assert!(events[0].at_us > 0);
        assert_eq!(tap.take(), (Vec::new(), 0));
    }

    #[test]
    fn a_late_answer_is_kept_within_the_bound() {
        let tap = Tap::new(0);
        let late = |n: usize, dropped: u64| TapPart {
            events: vec![TapEvent::new(AppIdx(0), What::Subscribed); n],
            dropped,
            ..TapPart::default()
        };
        tap.absorb(late(3, 1)); // unwatched: nobody asks for it any more
        assert_eq!(tap.take(), (Vec::new(), 0));
        tap.watch(Instant::now());
        tap.absorb(late(BUFFER_EVENTS - 1, 2));
        tap.absorb(late(3, 0));
        let (events, dropped) = tap.take();
        assert_eq!(events.len(), BUFFER_EVENTS);
        assert_eq!(dropped, 2 + 2);
    }

    #[test]
    fn top_keeps_the_highest_counts_highest_first() {
        let all = [
            (0, "a", 3),
            (0, "b", 9),
            (1, "c", 1),
            (0, "d", 7),
            (1, "e", 9),
        ];
        let got = top(all.into_iter(), 3);
        let counts: Vec<u32> = got.iter().map(|(_, _, n)| *n).collect();
        assert_eq!(counts, [9, 9, 7]);
        assert_eq!(&*got[2].1, "d");
        assert_eq!(top(all.into_iter(), 10).len(), 5);
        assert!(top(std::iter::empty(), 3).is_empty());
    }

    #[test]
    fn the_lease_expires() {
        let tap = Tap::new(0);
        let now = Instant::now();
        tap.watch(now);
        tap.note(|| TapEvent::new(AppIdx(0), What::ConnectionOpened));
        tap.expire(now + WATCH_LEASE / 2);
        assert!(tap.watched());
        tap.expire(now + WATCH_LEASE);
        assert!(!tap.watched());
        assert!(tap.events.borrow().is_empty());
    }
}
