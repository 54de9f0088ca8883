//! Delivery on one shard: each frame of a publication queued for every
//! local subscriber of its channel, except the excluded socket.
//!
//! Every publication has a [`Source`]: the HTTP connection, client socket,
//! owner shard or cluster link it came from. Publications of one source
//! reach each subscriber in the order they were published; those of
//! different sources were never ordered (they race on their way here).
//!
//! A publication that reaches few subscribers here is delivered at once,
//! which is the common case and the fast path. One that reaches more than
//! [`SLICE`] (a huge channel, or many big channels in one trigger) goes to
//! its source's queue in the shard's [`DeliveryQueue`], which a task of its
//! own works through [`SLICE`] subscribers at a time, taking the sources in
//! turn and letting other tasks run in between; so delivering to 100,000
//! subscribers never holds up the shard, and one busy publisher never holds
//! up another. While a source has publications queued, its later ones join
//! them, small or not, to keep that source's order.
//!
//! A queued frame goes to the subscribers its channel had when delivery of
//! that frame began (a snapshot of their slots), each checked again when its
//! turn comes: one that left meanwhile gets nothing, and if the channel was
//! freed (every subscriber left) the rest of the snapshot is skipped.

use super::shard::Shard;
use super::shard::ShardId;
use crate::pusher::broadcast::Publication;
use crate::pusher::channels::ChannelTable;
use crate::pusher::conns::{ChannelId, ConnKey};
use crate::runtime::yield_now;
use crate::socket_id::SocketId;
use rustc_hash::FxHashMap;
use smallvec::SmallVec;
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

/// Publications of one HTTP connection not yet delivered by every shard,
/// above which it waits before reading its next request.
pub const MAX_IN_FLIGHT: usize = 64;

/// An HTTP connection as a publisher: its [`Source`], and a count of its
/// publications still alive anywhere on the node (each holds a clone of
/// `in_flight` until the last shard has delivered it and dropped it), so
/// the connection cannot run ahead of the slowest shard's delivery.
pub struct Publisher {
    pub source: Source,
    in_flight: Arc<()>,
}

impl Publisher {
    pub fn new(source: Source) -> Publisher {
        Publisher {
            source,
            in_flight: Arc::new(()),
        }
    }

    /// A ticket for one more publication.
    pub fn ticket(&self) -> Arc<()> {
        self.in_flight.clone()
    }

    /// Publications of this connection not yet delivered everywhere.
    pub fn in_flight(&self) -> usize {
        Arc::strong_count(&self.in_flight) - 1
    }
}

/// Where a publication came from; publications of one source keep their
/// order. Two sources that happen to share a value are merely kept in one
/// order together, which is always allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Source(u64);

impl Source {
    /// The `n`th HTTP connection of shard `shard`.
    pub fn http(shard: ShardId, n: u64) -> Source {
        Source((shard as u64) << 48 | (n & 0x7fff_ffff_ffff))
    }

    /// A client's own events.
    pub fn client(socket: SocketId) -> Source {
        Source(
            1 << 63
                | (socket.shard as u64) << 48
                | (socket.slot as u64) << 20 ^ socket.serial as u64,
        )
    }

    /// A shard's owner announcements (presence members, counts).
    pub fn owner(shard: ShardId) -> Source {
        Source(1 << 62 | shard as u64)
    }

    /// Whatever other nodes published (the cluster link keeps their order).
    pub const CLUSTER: Source = Source(u64::MAX);
}

/// Subscribers served before the delivery task lets other tasks run.
pub const SLICE: usize = 4096;
/// Publications queued for one source above which its producer waits (the
/// cluster inbox, or a client, which stops being read).
const HIGH_WATER: usize = 64;
/// Queue length under which it resumes.
const LOW_WATER: usize = 16;

/// Publications waiting for (or in the middle of) delivery on this shard,
/// per source; sources exist only while they have work. Bounded by
/// backpressure: an HTTP connection has at most [`MAX_IN_FLIGHT`]
/// publications anywhere on the node ([`Publisher`]); a client or the
/// cluster link waits while its queue here is above [`HIGH_WATER`]
/// ([`DeliveryQueue::poll_room`]); owner announcements follow from joins
/// and leaves, which come from clients.
#[derive(Default)]
pub struct DeliveryQueue {
    sources: FxHashMap<Source, SourceQueue>,
    /// Sources with work, in turn.
    turns: VecDeque<Source>,
    waker: Option<Waker>,
}

#[derive(Default)]
struct SourceQueue {
    waiting: VecDeque<Arc<Publication>>,
    /// Progress through the front publication.
    cursor: Cursor,
    /// The producer waiting for this queue to shorten.
    producers: Vec<Waker>,
}

/// Where delivery of a source's front publication stands.
#[derive(Default)]
struct Cursor {
    /// Index of the frame being delivered.
    frame: usize,
    /// The channel and the snapshot of its subscribers for that frame;
    /// `None` until the frame's delivery begins.
    snapshot: Option<(ChannelId, Vec<ConnKey>)>,
    /// Next index in the snapshot.
    next: usize,
}

impl DeliveryQueue {
    /// Publications waiting, all sources (metrics).
    pub fn len(&self) -> usize {
        self.sources.values().map(|q| q.waiting.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.sources.is_empty()
    }

    /// Ready while `source` has few publications queued; otherwise
    /// registers `cx`'s waker to be woken once it is under [`LOW_WATER`].
    pub fn poll_room(&mut self, cx: &mut Context<'_>, source: Source) -> Poll<()> {
        let Some(queue) = self.sources.get_mut(&source) else {
            return Poll::Ready(());
        };
        if queue.waiting.len() <= HIGH_WATER {
            return Poll::Ready(());
        }
        if !queue.producers.iter().any(|w| w.will_wake(cx.waker())) {
            queue.producers.push(cx.waker().clone());
        }
        Poll::Pending
    }
}

/// Delivers `publication` on this shard: at once when its source has
/// nothing queued and it is small, else through its source's queue.
pub fn deliver(shard: &Shard, publication: &Arc<Publication>) {
    let source = publication.source;
    if !shard.deliveries.borrow().sources.contains_key(&source) {
        // Each channel is looked up once: its id serves both the size
        // check and the delivery.
        let channels = shard.channels.borrow();
        let ids: SmallVec<[Option<ChannelId>; 4]> = publication
            .frames
            .iter()
            .map(|(name, _)| channels.find(publication.app, name))
            .collect();
        let reach: usize = ids
            .iter()
            .flatten()
            .map(|&id| channels.get(id).map_or(0, |c| c.subscribers.len()))
            .sum();
        if reach <= SLICE {
            deliver_now(shard, publication, &channels, &ids);
            return;
        }
    }
    let mut queue = shard.deliveries.borrow_mut();
    let DeliveryQueue {
        sources,
        turns,
        waker,
    } = &mut *queue;
    sources
        .entry(source)
        .or_insert_with(|| {
            turns.push_back(source);
            SourceQueue::default()
        })
        .waiting
        .push_back(publication.clone());
    if let Some(w) = waker.take() {
        w.wake();
    }
}

/// The excluded connection's slot, if it is a live connection of this shard.
fn excluded_slot(shard: &Shard, publication: &Publication) -> Option<ConnKey> {
    let conns = shard.conns.borrow();
    publication
        .except
        .filter(|id| id.nonce == shard.nonce && id.shard == shard.id)
        .filter(|id| conns.get(id.slot).is_some_and(|c| c.serial == id.serial))
        .map(|id| id.slot)
}

/// The fast path: every frame to every subscriber of its channel (`ids`,
/// in frame order), now.
fn deliver_now(
    shard: &Shard,
    publication: &Publication,
    channels: &ChannelTable,
    ids: &[Option<ChannelId>],
) {
    let excluded = excluded_slot(shard, publication);
    let mut conns = shard.conns.borrow_mut();
    let cap = shard.config.limits.max_write_queue_bytes;
    let now = shard.now();
    for ((_, frame), id) in publication.frames.iter().zip(ids) {
        let Some(channel) = id.and_then(|id| channels.get(id)) else {
            continue;
        };
        for &key in &channel.subscribers {
            if Some(key) != excluded {
                conns.enqueue(key, frame, cap, now);
            }
        }
    }
}

/// Runs the shard's delivery queue for the life of the shard.
pub async fn run(shard: Rc<Shard>) {
    loop {
        let source = futures_lite::future::poll_fn(|cx| {
            let mut queue = shard.deliveries.borrow_mut();
            match queue.turns.pop_front() {
                Some(source) => Poll::Ready(source),
                None => {
                    queue.waker = Some(cx.waker().clone());
                    Poll::Pending
                }
            }
        })
        .await;
        deliver_slice(&shard, source);
        yield_now().await;
    }
}

/// Delivers up to [`SLICE`] frames of `source`'s queued publications, then
/// gives the source a later turn if it has more.
fn deliver_slice(shard: &Shard, source: Source) {
    let mut budget = SLICE;
    while budget > 0 {
        let front = shard
            .deliveries
            .borrow()
            .sources
            .get(&source)
            .and_then(|q| q.waiting.front().cloned());
        let Some(publication) = front else {
            return;
        };
        let excluded = excluded_slot(shard, &publication);
        if !deliver_some(shard, source, &publication, excluded, &mut budget) {
            break;
        }
        let mut queue = shard.deliveries.borrow_mut();
        let Some(q) = queue.sources.get_mut(&source) else {
            return;
        };
        q.waiting.pop_front();
        q.cursor = Cursor::default();
        if q.waiting.len() <= LOW_WATER {
            std::mem::take(&mut q.producers)
                .into_iter()
                .for_each(Waker::wake);
        }
        if q.waiting.is_empty() {
            queue.sources.remove(&source);
            return;
        }
    }
    shard.deliveries.borrow_mut().turns.push_back(source);
}

/// Advances `source`'s cursor through `publication` by up to `budget`
/// deliveries; true when the whole publication is delivered.
fn deliver_some(
    shard: &Shard,
    source: Source,
    publication: &Publication,
    excluded: Option<ConnKey>,
    budget: &mut usize,
) -> bool {
    let channels = shard.channels.borrow();
    let mut conns = shard.conns.borrow_mut();
    let mut queue = shard.deliveries.borrow_mut();
    let Some(q) = queue.sources.get_mut(&source) else {
        return true;
    };
    let cursor = &mut q.cursor;
    let cap = shard.config.limits.max_write_queue_bytes;
    let now = shard.now();
    while let Some((channel, frame)) = publication.frames.get(cursor.frame) {
        if cursor.snapshot.is_none() {
            let id = channels.find(publication.app, channel);
            let keys = id.map_or_else(Vec::new, |id| {
                channels
                    .get(id)
                    .map_or_else(Vec::new, |c| c.subscribers.clone())
            });
            cursor.snapshot = id.map(|id| (id, keys));
            cursor.next = 0;
        }
        if let Some((id, keys)) = &cursor.snapshot {
            // The channel is still the same one (never freed since): every
            // subscriber in the snapshot is checked again before its turn.
            let alive = channels
                .get(*id)
                .is_some_and(|c| c.app == publication.app && *c.name == **channel);
            while alive && cursor.next < keys.len() {
                if *budget == 0 {
                    return false;
                }
                let key = keys[cursor.next];
                cursor.next += 1;
                *budget -= 1;
                if Some(key) != excluded && channels.is_member(*id, key) {
                    conns.enqueue_bulk(key, frame, cap, now);
                }
            }
        }
        cursor.frame += 1;
        cursor.snapshot = None;
    }
    true
}
