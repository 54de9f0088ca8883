//! Cross-core mailboxes: a full mesh of bounded lock-free SPSC rings
//! (glommio shared channels), one per ordered pair of shards, created before
//! the executors start, carrying one message type `M` chosen by the layer
//! above (the protocol's shard messages). Nothing else crosses cores.
//!
//! Sending never blocks the caller's logic: [`Mesh::post`] appends to a
//! shard-local FIFO outbox per peer, and one pump task per peer moves the
//! outbox into the ring, waiting while the ring is full. So messages from
//! one shard to another arrive in the order they were posted, whichever task
//! posted them, and only the pump ever waits on a ring (glommio's `send`
//! assumes a single waiter).
//!
//! A message a shard posts to itself is queued like any other: it goes to
//! the shard's own FIFO and is handled by the same receiving loop, after
//! whatever the poster is doing now, never inline inside `post`.
//!
//! # Bounds
//! An outbox above [`OUTBOX_HIGH_WATER`] messages makes its producers wait:
//! producers that can pause (HTTP publishers, client connections, the
//! cluster inbox) ask [`Mesh::poll_room`] before more work and stop reading
//! until every outbox is back under [`OUTBOX_LOW_WATER`], so what they send
//! is slowed by TCP, never dropped. The one producer that never waits is the
//! receiving loop itself (answers and announcements caused by a peer's
//! message): waiting there could deadlock two shards, and what it posts is
//! bounded by what its paused producers sent. Nothing in an outbox is ever
//! dropped.

use glommio::channels::shared_channel::{
    self, ConnectedReceiver, ConnectedSender, SharedReceiver, SharedSender,
};
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

/// Messages per ring; a full ring pauses the pump, never drops.
pub const MAILBOX_CAPACITY: usize = 1024;
/// How often a connecting shard's reactor wakes to see its peers' connects.
const CONNECT_TICK: std::time::Duration = std::time::Duration::from_millis(1);
/// Outbox length above which producers wait.
pub const OUTBOX_HIGH_WATER: usize = 4096;
/// Outbox length under which waiting producers resume.
pub const OUTBOX_LOW_WATER: usize = 1024;

/// One shard's unconnected ends of the mesh, movable to its thread.
pub struct MeshEnds<M: Send + Sized> {
    me: usize,
    senders: Vec<Option<SharedSender<M>>>,
    /// Receivers in peer order, this shard left out.
    receivers: Vec<SharedReceiver<M>>,
}

/// Builds the N×(N−1) rings and hands each shard its ends.
pub fn build_mesh<M: Send + Sized>(shards: usize) -> Vec<MeshEnds<M>> {
    let mut ends: Vec<MeshEnds<M>> = (0..shards)
        .map(|me| MeshEnds {
            me,
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

struct Peer<M: Send + Sized> {
    sender: ConnectedSender<M>,
    outbox: RefCell<VecDeque<M>>,
    pumping: Cell<bool>,
}

/// Messages a shard posted to itself, waiting for its receiving loop.
pub struct OwnQueue<M> {
    queue: RefCell<VecDeque<M>>,
    waker: RefCell<Option<Waker>>,
    /// The mesh's waiting producers, woken when this queue drains.
    waiters: Rc<RefCell<Vec<Waker>>>,
}

/// A shard's connected senders (one per peer, `None` for itself) and its
/// own queue.
pub struct Mesh<M: Send + Sized> {
    me: usize,
    peers: Vec<Option<Rc<Peer<M>>>>,
    own: Rc<OwnQueue<M>>,
    /// Producers waiting for the outboxes to drain.
    waiters: Rc<RefCell<Vec<Waker>>>,
}

/// Where a shard's messages come from: one ring per peer, and its own queue.
pub enum Inbox<M: Send + Sized> {
    Peer {
        from: usize,
        ring: ConnectedReceiver<M>,
    },
    Own {
        me: usize,
        queue: Rc<OwnQueue<M>>,
    },
}

impl<M: Send + Sized> Inbox<M> {
    /// The shard the messages come from.
    pub fn from(&self) -> usize {
        match self {
            Inbox::Peer { from, .. } => *from,
            Inbox::Own { me, .. } => *me,
        }
    }

    /// The next message; `None` once the peer is gone (the own queue never
    /// ends).
    pub async fn recv(&self) -> Option<M> {
        match self {
            Inbox::Peer { ring, .. } => ring.recv().await,
            Inbox::Own { queue, .. } => {
                futures_lite::future::poll_fn(|cx| {
                    let mut q = queue.queue.borrow_mut();
                    match q.pop_front() {
                        Some(msg) => {
                            if q.len() == OUTBOX_LOW_WATER {
                                wake_all(&queue.waiters);
                            }
                            Poll::Ready(Some(msg))
                        }
                        None => {
                            *queue.waker.borrow_mut() = Some(cx.waker().clone());
                            Poll::Pending
                        }
                    }
                })
                .await
            }
        }
    }
}

impl<M: Send + Sized + 'static> Mesh<M> {
    /// Connects this shard's ends; returns the senders and the inboxes to
    /// drain (every peer's ring, then the own queue). Each connect waits for
    /// the peer's, so all run concurrently.
    pub async fn connect(ends: MeshEnds<M>) -> (Mesh<M>, Vec<Inbox<M>>) {
        let me = ends.me;
        // A pending connect is re-polled only when this executor's reactor
        // wakes, and a peer's connect sends no wake-up (glommio 0.9
        // `Reactor::process_shared_channels`): an executor asleep before
        // its peers connected would sleep forever (it did, about one start
        // in sixteen under load). A ticking timer keeps the reactor waking
        // until every end is connected.
        let connected = Rc::new(Cell::new(false));
        let ticker = glommio::spawn_local({
            let connected = connected.clone();
            async move {
                while !connected.get() {
                    glommio::timer::sleep(CONNECT_TICK).await;
                }
            }
        });
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
        let mut inboxes = Vec::with_capacity(receivers.len() + 1);
        for (i, task) in receivers.into_iter().enumerate() {
            // Receivers come in peer order, this shard left out.
            let from = if i < me { i } else { i + 1 };
            inboxes.push(Inbox::Peer {
                from,
                ring: task.await,
            });
        }
        connected.set(true);
        ticker.await;
        let waiters = Rc::new(RefCell::new(Vec::new()));
        let own = Rc::new(OwnQueue {
            queue: RefCell::new(VecDeque::new()),
            waker: RefCell::new(None),
            waiters: waiters.clone(),
        });
        inboxes.push(Inbox::Own {
            me,
            queue: own.clone(),
        });
        let mesh = Mesh {
            me,
            peers,
            own,
            waiters,
        };
        (mesh, inboxes)
    }

    /// Queues `msg` for `peer` (possibly this shard itself) in FIFO order;
    /// never waits and never handles it inline.
    pub fn post(&self, peer: usize, msg: M) {
        if peer == self.me {
            self.own.queue.borrow_mut().push_back(msg);
            if let Some(w) = self.own.waker.borrow_mut().take() {
                w.wake();
            }
            return;
        }
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
                        wake_all(&waiters);
                    }
                }
                p.pumping.set(false);
                wake_all(&waiters);
            })
            .detach();
        }
    }

    /// Messages waiting in all outboxes and the own queue (metrics).
    pub fn queued(&self) -> usize {
        self.peers
            .iter()
            .flatten()
            .map(|p| p.outbox.borrow().len())
            .sum::<usize>()
            + self.own.queue.borrow().len()
    }

    /// Ready when every outbox is under its high-water mark; otherwise registers `cx`'s waker to be woken
    /// once it drains under the low-water mark.
    pub fn poll_room(&self, cx: &mut Context<'_>) -> Poll<()> {
        let congested = self
            .peers
            .iter()
            .flatten()
            .any(|p| p.outbox.borrow().len() > OUTBOX_HIGH_WATER)
            || self.own.queue.borrow().len() > OUTBOX_HIGH_WATER;
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

fn wake_all(waiters: &RefCell<Vec<Waker>>) {
    let woken = std::mem::take(&mut *waiters.borrow_mut());
    woken.into_iter().for_each(Waker::wake);
}
