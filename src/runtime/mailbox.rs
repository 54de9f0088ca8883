//! Cross-core mailboxes: a full mesh of bounded lock-free SPSC rings
//! (glommio shared channels), one per ordered pair of shards, created before
//! the executors start. [`ShardMsg`] is the only type that crosses cores.
//!
//! Sending never blocks the caller's logic: [`Mailboxes::post`] appends to a
//! shard-local FIFO outbox per peer, and one pump task per peer moves the
//! outbox into the ring, waiting while the ring is full. So messages from
//! one shard to another arrive in the order they were posted, whichever task
//! posted them, and only the pump ever waits on a ring (glommio's `send`
//! assumes a single waiter).
//!
//! # Bounds
//! An outbox above [`OUTBOX_HIGH_WATER`] messages makes its producers wait:
//! HTTP publishers and the cluster inbox wait for room after posting, and every client connection of the shard
//! stops reading its socket ([`Mailboxes::poll_room`]) until the outboxes
//! are back under [`OUTBOX_LOW_WATER`], so a client's subscribes, joins and
//! client events are slowed by TCP, never dropped. The one producer that
//! never waits is the mailbox receiver itself (answers and owner
//! announcements caused by a peer's message): waiting there could deadlock
//! two shards, and what it posts is bounded by what its paused producers
//! sent. Nothing in an outbox is ever dropped.

use crate::apps::AppIdx;
use crate::metrics::Snapshot;
use crate::pusher::broadcast::Publication;
use crate::pusher::owned::{JoinOutcome, Member};
use crate::pusher::query::{QueryAnswer, QueryAsk};
use crate::pusher::socket_id::SocketId;
use crate::ws::frame::Frame;
use glommio::channels::shared_channel::{
    self, ConnectedReceiver, ConnectedSender, SharedReceiver, SharedSender,
};
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::net::IpAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

/// Messages per ring; a full ring pauses the pump, never drops.
pub const MAILBOX_CAPACITY: usize = 1024;
/// Outbox length above which producers wait.
pub const OUTBOX_HIGH_WATER: usize = 4096;
/// Outbox length under which waiting producers resume.
pub const OUTBOX_LOW_WATER: usize = 1024;

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
    /// To an address's owner: a connection from it closed (see `runtime::ip_quota`).
    IpRelease(IpAddr),
}

/// A connection count with a cap, leased out to shards by a home shard
/// (see `runtime::quota`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quota {
    /// WebSocket connections on the node (`server.limits.max_connections`; home: shard 0).
    Node,
    /// Connections of one app (`max_connections`; home: a hash of the app id).
    App(AppIdx),
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
    /// Answer to `IpAdmit`; names the address, so an answer that arrives
    /// after its asker stopped waiting can give a count back.
    IpAdmitted {
        ip: IpAddr,
        admitted: bool,
    },
}

/// One shard's unconnected ends of the mesh, movable to its thread.
pub struct MeshEnds {
    pub senders: Vec<Option<SharedSender<ShardMsg>>>,
    pub receivers: Vec<SharedReceiver<ShardMsg>>,
}

/// Builds the N×(N−1) rings and hands each shard its ends.
pub fn build_mesh(shards: usize) -> Vec<MeshEnds> {
    let mut ends: Vec<MeshEnds> = (0..shards)
        .map(|_| MeshEnds {
            senders: (0..shards).map(|_| None).collect(),
            receivers: Vec::new(),
        })
        .collect();
    for from in 0..shards {
        for to in 0..shards {
            if from != to {
                let (tx, rx) = shared_channel::new_bounded(MAILBOX_CAPACITY);
                ends[from].senders[to] = Some(tx);
                ends[to].receivers.push(rx);
            }
        }
    }
    ends
}

struct Peer {
    sender: ConnectedSender<ShardMsg>,
    outbox: RefCell<VecDeque<ShardMsg>>,
    pumping: Cell<bool>,
}

/// A shard's connected senders (one per peer, `None` for itself).
pub struct Mailboxes {
    peers: Vec<Option<Rc<Peer>>>,
    /// Producers waiting for the outboxes to drain.
    waiters: Rc<RefCell<Vec<Waker>>>,
}

impl Mailboxes {
    /// Connects this shard's ends; returns the senders and the receivers to
    /// drain. Each connect waits for the peer's, so all run concurrently.
    pub async fn connect(ends: MeshEnds) -> (Mailboxes, Vec<ConnectedReceiver<ShardMsg>>) {
        let senders: Vec<_> = ends
            .senders
            .into_iter()
            .map(|s| {
                glommio::spawn_local(async move {
                    match s {
                        Some(s) => Some(s.connect().await),
                        None => None,
                    }
                })
            })
            .collect();
        let receivers: Vec<_> = ends
            .receivers
            .into_iter()
            .map(|r| glommio::spawn_local(r.connect()))
            .collect();
        let mut peers = Vec::with_capacity(senders.len());
        for task in senders {
            peers.push(task.await.map(|sender| {
                Rc::new(Peer {
                    sender,
                    outbox: RefCell::new(VecDeque::new()),
                    pumping: Cell::new(false),
                })
            }));
        }
        let mut connected_receivers = Vec::with_capacity(receivers.len());
        for task in receivers {
            connected_receivers.push(task.await);
        }
        let waiters = Rc::new(RefCell::new(Vec::new()));
        (Mailboxes { peers, waiters }, connected_receivers)
    }

    /// Queues `msg` for `peer` in FIFO order; never waits.
    pub fn post(&self, peer: usize, msg: ShardMsg) {
        let Some(p) = &self.peers[peer] else { return };
        // Fast path: nothing queued ahead and room in the ring.
        if p.outbox.borrow().is_empty() && !p.pumping.get() {
            match p.sender.try_send(msg) {
                Ok(()) => return,
                Err(glommio::GlommioError::WouldBlock(glommio::ResourceType::Channel(msg))) => {
                    p.outbox.borrow_mut().push_back(msg)
                }
                Err(_) => return, // the peer is gone: shutting down
            }
        } else {
            p.outbox.borrow_mut().push_back(msg);
        }
        if !p.pumping.get() {
            p.pumping.set(true);
            let p = p.clone();
            let waiters = self.waiters.clone();
            glommio::spawn_local(async move {
                loop {
                    let next = p.outbox.borrow_mut().pop_front();
                    let Some(msg) = next else { break };
                    if p.sender.send(msg).await.is_err() {
                        p.outbox.borrow_mut().clear();
                        break;
                    }
                    if p.outbox.borrow().len() <= OUTBOX_LOW_WATER {
                        // Waiters re-check every outbox when they run.
                        let woken = std::mem::take(&mut *waiters.borrow_mut());
                        woken.into_iter().for_each(Waker::wake);
                    }
                }
                p.pumping.set(false);
                let woken = std::mem::take(&mut *waiters.borrow_mut());
                woken.into_iter().for_each(Waker::wake);
            })
            .detach();
        }
    }

    /// Messages waiting in all outboxes (metrics).
    pub fn queued(&self) -> usize {
        self.peers
            .iter()
            .flatten()
            .map(|p| p.outbox.borrow().len())
            .sum()
    }

    /// Ready when every outbox is under its high-water mark; otherwise registers `cx`'s waker to be woken
    /// once it drains under the low-water mark.
    pub fn poll_room(&self, cx: &mut Context<'_>) -> Poll<()> {
        let congested = self
            .peers
            .iter()
            .flatten()
            .any(|p| p.outbox.borrow().len() > OUTBOX_HIGH_WATER);
        if !congested {
            return Poll::Ready(());
        }
        let mut waiters = self.waiters.borrow_mut();
        if !waiters.iter().any(|w| w.will_wake(cx.waker())) {
            waiters.push(cx.waker().clone());
        }
        Poll::Pending
    }
}
