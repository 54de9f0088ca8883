//! The console's hub, on the shard that serves the metrics port: while at
//! least one stream is attached, a collector task asks every shard for its
//! tap events about four times a second (which keeps them watched; see
//! [`crate::pusher::tap`]), takes the webhook sender's notes, and appends
//! each event, rendered once, to a ring that every stream reads at its own
//! pace. When the last stream detaches the collector stops, the shards'
//! leases run out and the ring is freed.
//!
//! # Bounds and policy
//! - The ring holds the newest [`RING_ITEMS`] items; a stream that has
//!   not read an item before it leaves the ring skips it, and counts it
//!   (the page shows the count). The collector never waits for a stream.
//! - The shards' own buffers drop beyond their bound and count; the hub
//!   adds those counts up ([`Hub::dropped`]).

use super::render;
use crate::apps::AppIdx;
use crate::pusher::shard::Shard;
use crate::pusher::shard_msg::{Reply, Request};
use crate::pusher::tap::{self, TapPart};
use futures_util::future::join_all;
use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;
use std::time::{Duration, Instant};

/// Items the ring keeps.
pub const RING_ITEMS: usize = 8192;
/// How often the collector asks the shards.
pub const COLLECT_EVERY: Duration = Duration::from_millis(250);
/// Asks between two stats lines (one a second).
const STATS_EVERY: u32 = 4;
/// Asks between two lists of busiest channels (every two seconds).
const BUSIEST_EVERY: u32 = 8;

/// One collected event, rendered once for every stream.
#[derive(Debug)]
pub struct Item {
    pub kind: &'static str,
    /// `None` for a webhook note whose app is no longer known.
    pub app: Option<AppIdx>,
    pub event: Option<Box<str>>,
    pub channels: Vec<Box<str>>,
    /// The JSON object a stream sends, without the newline.
    pub line: Box<[u8]>,
}

/// The collected events and the latest stats.
///
/// # Invariants
/// - `ring[i]` has sequence number `first_seq + i`; `ring.len() <= RING_ITEMS`.
/// - `collecting` is true iff a collector task runs; one runs while
///   `viewers > 0` (it stops in the same step it sees none).
#[derive(Default)]
pub struct Hub {
    viewers: Cell<usize>,
    collecting: Cell<bool>,
    /// Set once every shard has answered an ask of the collector: from
    /// then on every shard is watched.
    watching: Cell<bool>,
    ring: RefCell<VecDeque<Rc<Item>>>,
    first_seq: Cell<u64>,
    /// Events dropped at the shards' and the webhook log's buffers since
    /// the collector started.
    dropped: Cell<u64>,
    /// The latest stats line and its number (0: none yet).
    stats: RefCell<(u64, Rc<[u8]>)>,
}

thread_local! {
    /// The hub of the shard serving the metrics port (one per thread; only
    /// that shard's thread ever uses it).
    static HUB: Rc<Hub> = Rc::new(Hub::default());
}

/// This thread's hub.
pub fn hub() -> Rc<Hub> {
    HUB.with(Rc::clone)
}

/// A stream's attachment; dropping it detaches.
pub struct Attached {
    hub: Rc<Hub>,
}

impl Drop for Attached {
    fn drop(&mut self) {
        self.hub.viewers.set(self.hub.viewers.get() - 1);
    }
}

impl Hub {
    /// Attaches a stream, starting the collector when none runs.
    pub fn attach(self: &Rc<Self>, shard: &Rc<Shard>) -> Attached {
        self.viewers.set(self.viewers.get() + 1);
        if !self.collecting.replace(true) {
            crate::runtime::spawn(collect(self.clone(), shard.clone()));
        }
        Attached { hub: self.clone() }
    }

    /// Streams attached now.
    pub fn viewers(&self) -> usize {
        self.viewers.get()
    }

    /// Whether the shards are watched (the collector's first ask is done).
    pub fn is_watching(&self) -> bool {
        self.watching.get()
    }

    /// The sequence number the next item will get.
    pub fn next_seq(&self) -> u64 {
        self.first_seq.get() + self.ring.borrow().len() as u64
    }

    /// Events dropped at the buffers so far.
    pub fn dropped(&self) -> u64 {
        self.dropped.get()
    }

    /// The items from sequence number `from` on, and how many before them
    /// left the ring unread.
    pub fn since(&self, from: u64) -> (Vec<Rc<Item>>, u64) {
        let first = self.first_seq.get();
        let lost = first.saturating_sub(from);
        let skip = from.saturating_sub(first) as usize;
        let items = self.ring.borrow().iter().skip(skip).cloned().collect();
        (items, lost)
    }

    /// The latest stats line, when newer than `seen`.
    pub fn stats_after(&self, seen: u64) -> Option<(u64, Rc<[u8]>)> {
        let stats = self.stats.borrow();
        (stats.0 > seen).then(|| stats.clone())
    }

    fn push(&self, item: Item) {
        let mut ring = self.ring.borrow_mut();
        if ring.len() >= RING_ITEMS {
            ring.pop_front();
            self.first_seq.set(self.first_seq.get() + 1);
        }
        ring.push_back(Rc::new(item));
    }
}

/// What the collector remembers between stats lines, per shard: when it
/// last looked and the counters then (for rates).
#[derive(Default)]
pub struct Rates {
    pub previous: Vec<Option<(Instant, [u64; 3])>>,
}

/// The collector: runs while streams are attached.
async fn collect(hub: Rc<Hub>, shard: Rc<Shard>) {
    let log = shard.webhook_stats.clone();
    if let Some(stats) = &log {
        stats.log.set_watched(true);
    }
    let mut round: u32 = 0;
    let mut rates = Rates::default();
    let mut busiest = Vec::new();
    while hub.viewers.get() > 0 && !shard.is_draining() {
        let want_busiest = round.is_multiple_of(BUSIEST_EVERY);
        let mut parts = gather(&shard, want_busiest).await;
        if parts.iter().all(Option::is_some) {
            hub.watching.set(true);
        }
        let mut events = Vec::new();
        let mut dropped = 0;
        for part in parts.iter_mut().flatten() {
            events.append(&mut part.events);
            dropped += part.dropped;
        }
        events.sort_by_key(|e| e.at_us); // stable: a shard's order is kept
        for e in &events {
            hub.push(render::tap_item(&shard, e));
        }
        if let Some(stats) = &log {
            let (notes, lost) = stats.log.take();
            for n in &notes {
                hub.push(render::note_item(&shard, n));
            }
            dropped += lost;
        }
        hub.dropped.set(hub.dropped.get() + dropped);
        if want_busiest {
            busiest = merge_busiest(&parts);
        }
        if round.is_multiple_of(STATS_EVERY) {
            let line = render::stats(&shard, &parts, &mut rates, &busiest, hub.dropped());
            let mut stats = hub.stats.borrow_mut();
            *stats = (stats.0 + 1, line.into());
        }
        round = round.wrapping_add(1);
        crate::runtime::sleep(COLLECT_EVERY).await;
    }
    // Nobody looks: stop in this same step, so an attach after it starts anew.
    if let Some(stats) = &log {
        stats.log.set_watched(false);
    }
    hub.collecting.set(false);
    hub.watching.set(false);
    *hub.ring.borrow_mut() = VecDeque::new();
    hub.first_seq.set(0);
    hub.dropped.set(0);
    *hub.stats.borrow_mut() = (0, Rc::from(&b""[..]));
}

/// Every shard's part, in shard order (`None` for one that did not answer
/// in time; its late answer is kept for the next ask by `Shard::late_reply`).
async fn gather(shard: &Rc<Shard>, busiest: bool) -> Vec<Option<TapPart>> {
    let asks = shard
        .peers()
        .map(|peer| async move { (peer, shard.request(peer, Request::Tap { busiest }).await) });
    let replies = join_all(asks).await;
    let mut parts: Vec<Option<TapPart>> = (0..shard.count).map(|_| None).collect();
    parts[shard.id as usize] = Some(tap::part(shard, busiest));
    for (peer, reply) in replies {
        if let Some(Reply::Tap(part)) = reply {
            parts[peer] = Some(*part);
        }
    }
    parts
}

/// The node's busiest channels: each shard's counts added up, most first.
fn merge_busiest(parts: &[Option<TapPart>]) -> Vec<(AppIdx, Box<str>, u32)> {
    let mut sum: HashMap<(AppIdx, &str), u32> = HashMap::new();
    for part in parts.iter().flatten() {
        for (app, name, n) in &part.busiest {
            *sum.entry((*app, name)).or_default() += n;
        }
    }
    let mut all: Vec<_> = sum
        .into_iter()
        .map(|((app, name), n)| (app, Box::<str>::from(name), n))
        .collect();
    all.sort_by(|a, b| b.2.cmp(&a.2).then_with(|| a.1.cmp(&b.1)));
    all.truncate(tap::BUSIEST);
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busiest_channels_add_up_across_shards() {
        let part = |list: &[(u32, &str, u32)]| {
            Some(TapPart {
                busiest: list
                    .iter()
                    .map(|&(app, name, n)| (AppIdx(app), name.into(), n))
                    .collect(),
                ..TapPart::default()
            })
        };
        let parts = [
            part(&[(0, "a", 5), (0, "b", 4)]),
            None,
            part(&[(0, "b", 3), (1, "a", 1)]),
        ];
        let merged = merge_busiest(&parts);
        let expected: Vec<(AppIdx, Box<str>, u32)> = vec![
            (AppIdx(0), "b".into(), 7),
            (AppIdx(0), "a".into(), 5),
            (AppIdx(1), "a".into(), 1),
        ];
        assert_eq!(merged, expected);
    }

    #[test]
    fn a_stream_that_falls_behind_the_ring_counts_what_it_missed() {
        let hub = Hub::default();
        let item = || Item {
            kind: "subscribed",
            app: None,
            event: None,
            channels: Vec::new(),
            line: Box::default(),
        };
        for _ in 0..RING_ITEMS + 10 {
            hub.push(item());
        }
        let (items, lost) = hub.since(0);
        assert_eq!((items.len(), lost), (RING_ITEMS, 10));
        let (items, lost) = hub.since(hub.next_seq() - 2);
        assert_eq!((items.len(), lost), (2, 0));
    }
}
