//! What the link thread and the shards share, in every build: what the
//! link hands a shard ([`Inbound`]) the link's counters ([`LinkStats`]) and how it finds a channel's owner
//! shard ([`OwnerOf`]).

use super::peers::Refusal;
use super::wire::{RemoteAsk, RemotePart};
use crate::apps::AppIdx;
use crate::socket_id::SocketId;
use crate::ws::frame::Frame;
use std::sync::atomic::{AtomicU64, Ordering};

/// What the link hands a shard.
pub enum Inbound {
    /// Frames another node published: deliver to local subscribers, except
    /// the `except` socket (if it is this node's).
    Publish {
        app: AppIdx,
        except: Option<SocketId>,
        /// (channel name, encoded frame), in publishing order.
        frames: Vec<(Box<str>, Frame)>,
    },
    /// Close this user's connections (4009).
    TerminateUser { app: AppIdx, user_id: Box<str> },
    /// Another node has (`Some(user_info)`) or no longer has (`None`)
    /// sockets of a presence member; for the channel's owner shard.
    Member {
        node: u64,
        app: AppIdx,
        channel: Box<str>,
        user_id: Box<str>,
        joined: Option<Box<str>>,
        sync: bool,
    },
    /// Another node's subscriptions of a channel (0: empty there now);
    /// for the channel's owner shard.
    Occupancy {
        node: u64,
        app: AppIdx,
        channel: Box<str>,
        count: u32,
        sync: bool,
    },
    /// Another node has (`online`) or no longer has a connection signed in
    /// as this user; for the user's owner shard.
    UserOnline {
        node: u64,
        app: AppIdx,
        user_id: Box<str>,
        online: bool,
        sync: bool,
    },
    /// The other live nodes, after a node came or went.
    Nodes(Vec<u64>),
    /// Tell the other nodes again what this shard holds, as part of this
    /// node's full sync `gen` (then mark the shard's part done:
    /// [`ClusterHandle::shard_synced`](super::ClusterHandle)).
    Resend { gen: u64 },
    /// Node `node` starts telling all it holds (full sync `gen`): what it
    /// held and does not tell again by the matching `SyncEnd` is gone.
    /// `quiet`: this node never had a full sync from it before, so what it
    /// learns is history, not news (no webhooks for it).
    SyncStart { node: u64, gen: u64, quiet: bool },
    /// Node `node`'s full sync `gen` arrived whole.
    SyncEnd { node: u64, gen: u64 },
    /// Another node asks for this node's part of a channel query.
    Query {
        from: u64,
        id: u32,
        shard: u16,
        app: AppIdx,
        ask: RemoteAsk,
    },
    /// Another node's part of this shard's query `id`.
    Answer { id: u32, part: RemotePart },
    /// A node stopped sending heartbeats.
    NodeGone(u64),
}

/// Counters the link keeps (process-wide atomics).
#[derive(Default)]
pub struct LinkStats {
    /// Node messages published (after batching: `publishes` engine messages).
    pub sent: AtomicU64,
    pub publishes: AtomicU64,
    /// Node messages from other nodes handed to the shards.
    pub received: AtomicU64,
    /// Messages refused, by [`Refusal`] (its `index`).
    pub refused: [AtomicU64; Refusal::ALL.len()],
    /// Envelopes of other nodes that never arrived (gaps in their numbers).
    pub lost: AtomicU64,
    /// Shard messages dropped because the link's queue was full.
    pub dropped: AtomicU64,
    /// Event buckets the link subscribes to now (a gauge).
    pub event_subjects: AtomicU64,
}

impl LinkStats {
    pub fn refuse(&self, reason: Refusal) {
        self.refused[reason.index()].fetch_add(1, Ordering::Relaxed);
    }
}

/// The shard (of `shards`) that owns a channel of an app.
pub type OwnerOf = fn(AppIdx, &str, u16) -> usize;
