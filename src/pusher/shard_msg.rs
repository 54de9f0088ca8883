//! The messages shards send one another over the mesh ([`crate::runtime::Mesh`]):
//! [`ShardMsg`] is the only type that crosses cores. Each variant names who
//! sends it and what the receiver does; questions ([`Request`]) expect one
//! [`Reply`] with the same id, handled by `runtime::Requests`.

use super::admission::Quota;
use super::broadcast::Publication;
use super::owned::{JoinOutcome, Member};
use super::query::{QueryAnswer, QueryAsk};
use super::tap::TapPart;
use crate::apps::AppIdx;
use crate::metrics::Snapshot;
use crate::socket_id::SocketId;
use crate::ws::frame::Frame;
use std::net::IpAddr;
use std::sync::Arc;

/// Everything one shard can tell another.
pub enum ShardMsg {
    /// Deliver these frames to local subscribers, skipping `except`.
    Publish(Arc<Publication>),
    /// Deliver one frame to one connection (watchlist events).
    ToSocket {
        socket: SocketId,
        frame: Frame,
    },
    /// To a channel's owner: `socket` subscribes to a channel whose state
    /// (presence members, cached event) the owner holds.
    Join {
        app: AppIdx,
        channel: Box<str>,
        socket: SocketId,
        member: Option<Member>,
        want_cache: bool,
    },
    /// From the owner back to the socket's shard: finish the subscription.
    Joined {
        app: AppIdx,
        channel: Box<str>,
        socket: SocketId,
        outcome: JoinOutcome,
    },
    /// To a presence channel's owner: one socket of `user_id` left.
    Leave {
        app: AppIdx,
        channel: Box<str>,
        user_id: Box<str>,
    },
    /// To a cache channel's owner: the last event published on it.
    CacheStore {
        app: AppIdx,
        channel: Box<str>,
        frame: Frame,
        data: Box<str>,
    },
    /// To a channel's owner: its subscription count changed by `delta`.
    CountDelta {
        app: AppIdx,
        channel: Box<str>,
        delta: i32,
    },
    /// To a user's owner: a connection signed in (`online`) or went away.
    UserPresence {
        app: AppIdx,
        user_id: Box<str>,
        online: bool,
    },
    /// To a user's owner: `watcher` watches (or stops watching) these users.
    Watch {
        app: AppIdx,
        watcher: SocketId,
        users: Vec<Box<str>>,
        watch: bool,
    },
    /// Close every connection signed in as `user_id` with 4009.
    TerminateUser {
        app: AppIdx,
        user_id: Box<str>,
    },
    /// A question that expects a [`ShardMsg::Reply`] with the same `id`.
    Request {
        from: u16,
        id: u32,
        body: Request,
    },
    Reply {
        id: u32,
        body: Reply,
    },
    /// To a quota's home: the sender gives back `n` slots of its lease.
    Return {
        quota: Quota,
        n: u32,
    },
    /// To an address's owner: a connection from it closed (see `pusher::admission::ip_quota`).
    IpRelease(IpAddr),
}

pub enum Request {
    /// To a quota's home: lend the sender up to `want` more slots.
    Lease { quota: Quota, want: u32 },
    /// From a quota's home: give back every slot you do not use.
    Reclaim(Quota),
    /// May `app` make one more HTTP API request this second?
    ApiRequest { app: AppIdx },
    /// What does this shard know about some channels (HTTP queries)?
    Query(QueryAsk),
    /// This shard's counters (metrics endpoint).
    Metrics,
    /// From the shard serving the debug console: stay watched, and hand
    /// over your tap events and counters (and your busiest channels).
    Tap { busiest: bool },
    /// To an address's owner: count one more connection from it, if it
    /// is below `server.limits.max_connections_per_ip`.
    IpAdmit(IpAddr),
}

/// An answer. Answers that move quota slots name the quota, so one that
/// arrives after its asker stopped waiting is still counted, never lost.
pub enum Reply {
    Admitted(bool),
    /// Slots lent (answer to `Lease`).
    Leased {
        quota: Quota,
        n: u32,
    },
    /// Slots given back (answer to `Reclaim`).
    Returned {
        quota: Quota,
        n: u32,
    },
    Query(QueryAnswer),
    Metrics(Snapshot),
    /// Answer to `Tap` (boxed: the other answers are small).
    Tap(Box<TapPart>),
    /// Answer to `IpAdmit`; names the address, so an answer that arrives
    /// after its asker stopped waiting can give a count back.
    IpAdmitted {
        ip: IpAddr,
        admitted: bool,
    },
}
