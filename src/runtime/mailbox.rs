//! Mailboxes between shards: a full mesh carrying one message type `M`
//! chosen by the layer above (the protocol's shard messages). Between shards
//! on different executors the mesh is a bounded lock-free SPSC ring (glommio
//! shared channel) per ordered pair, created before the executors start;
//! nothing else crosses cores. Shards that share an executor (their CPU is
//! listed more than once, see `boot`) reach each other through in-thread
//! [`LocalQueue`]s instead, made on that executor's thread.
//!
//! Sending never blocks the caller's logic: [`Mesh::post`] appends to a
//! shard-local FIFO outbox per peer, and one pump task per peer moves the
//! outbox into the ring, waiting while the ring is full. So messages from
//! one shard to another arrive in the order they were posted, whichever task
//! posted them, and only the pump ever waits on a ring (glommio's `send`
//! assumes a single waiter).
//!
//! A message a shard posts to itself or to a shard on its own executor is
//! queued like any other: it goes to that pair's local FIFO and is handled
//! by the receiver's loop for it, after whatever the poster is doing now,
//! never inline inside `post`.
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
//! dropped. A local queue counts as its sender's outbox: its length is what
//! the sender's producers wait on, and the receiver taking it down to the
//! low-water mark wakes them.

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

/// One shard's unconnected ring ends, movable to its thread: a sender to
/// and a receiver from every shard on another executor.
pub struct MeshEnds<M: Send + Sized> {
    senders: Vec<Option<SharedSender<M>>>,
    /// Receivers with the shard each comes from.
    receivers: Vec<(usize, SharedReceiver<M>)>,
}

/// Builds a ring for every ordered pair of shards on different executors
/// (`executor_of[shard]`) and hands each shard its ends.
pub fn build_mesh<M: Send + Sized>(executor_of: &[usize]) -> Vec<MeshEnds<M>> {
    let shards = executor_of.len();
    let mut ends: Vec<MeshEnds<M>> = (0..shards)
        .map(|_| MeshEnds {
            senders: (0..shards).map(|_| None).collect(),
            receivers: Vec::new(),
        })
        .collect();
    for from in 0..shards {
        for to in 0..shards {
            if executor_of[from] != executor_of[to] {
                let (tx, rx) = shared_channel::new_bounded(MAILBOX_CAPACITY);
                ends[from].senders[to] = Some(tx);
                ends[to].receivers.push((from, rx));
            }
        }
    }
    ends
}

/// One shard's ends of the local queues of its executor: to and from each
/// shard there, itself included. Made on the executor's thread
/// ([`build_local`]); never leaves it.
pub struct LocalEnds<M> {
    /// The shard's producers waiting for its outboxes and queues to drain.
    waiters: Rc<RefCell<Vec<Waker>>>,
    outgoing: Vec<(usize, Rc<LocalQueue<M>>)>,
    incoming: Vec<(usize, Rc<LocalQueue<M>>)>,
}

/// Makes a local queue for every ordered pair of `shards` (the shards of
/// one executor, each paired with itself too), one [`LocalEnds`] per shard
/// in the order given.
pub fn build_local<M>(shards: &[usize]) -> Vec<LocalEnds<M>> {
    let mut ends: Vec<LocalEnds<M>> = shards
        .iter()
        .map(|_| LocalEnds {
            waiters: Rc::new(RefCell::new(Vec::new())),
            outgoing: Vec::new(),
            incoming: Vec::new(),
        })
        .collect();
    for (f, &from) in shards.iter().enumerate() {
        for (t, &to) in shards.iter().enumerate() {
            let queue = Rc::new(LocalQueue {
                queue: RefCell::new(VecDeque::new()),
                waker: RefCell::new(None),
                waiters: ends[f].waiters.clone(),
            });
            ends[f].outgoing.push((to, queue.clone()));
            ends[t].incoming.push((from, queue));
        }
    }
    ends
}

struct Peer<M: Send + Sized> {
    sender: ConnectedSender<M>,
    outbox: RefCell<VecDeque<M>>,
    pumping: Cell<bool>,
}

/// Messages one shard posted to another on the same executor (or to
/// itself), waiting for the receiver's loop. Unbounded by type; its sender's
/// producers wait above [`OUTBOX_HIGH_WATER`] like for a ring's outbox.
pub struct LocalQueue<M> {
    queue: RefCell<VecDeque<M>>,
    /// The receiver's loop, when it waits for a message.
    waker: RefCell<Option<Waker>>,
    /// The sender's waiting producers, woken when this queue drains.
    waiters: Rc<RefCell<Vec<Waker>>>,
}

/// How a shard reaches one other shard (or itself).
enum Route<M: Send + Sized> {
    /// A shard on another executor: its ring and our outbox for it.
    Ring(Rc<Peer<M>>),
    /// A shard on this executor, or this shard.
    Local(Rc<LocalQueue<M>>),
}

/// A shard's connected routes, one per shard of the set (itself included).
pub struct Mesh<M: Send + Sized> {
    /// Indexed by shard; `None` only for a ring that failed to connect.
    routes: Vec<Option<Route<M>>>,
    /// Producers waiting for the outboxes and local queues to drain.
    waiters: Rc<RefCell<Vec<Waker>>>,
}

/// Where a shard's messages come from: a ring from each shard on another
/// executor, a local queue from each on its own (itself included).
pub enum Inbox<M: Send + Sized> {
    Peer {
        from: usize,
        ring: ConnectedReceiver<M>,
    },
    Local {
        from: usize,
        queue: Rc<LocalQueue<M>>,
    },
}

impl<M: Send + Sized> Inbox<M> {
    /// The shard the messages come from.
    pub fn from(&self) -> usize {
        match self {
            Inbox::Peer { from, .. } | Inbox::Local { from, .. } => *from,
        }
    }

    /// The next message; `None` once the peer is gone (a local queue never
    /// ends).
    pub async fn recv(&self) -> Option<M> {
        match self {
            Inbox::Peer { ring, .. } => ring.recv().await,
            Inbox::Local { queue, .. } => {
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
    /// Connects this shard's ring ends and takes its local ends; returns
    /// the routes and the inboxes to drain. Each ring connect waits for the
    /// peer's, so all run concurrently.
    pub async fn connect(ends: MeshEnds<M>, local: LocalEnds<M>) -> (Mesh<M>, Vec<Inbox<M>>) {
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
            .map(|(from, r)| (from, glommio::spawn_local(r.connect())))
            .collect();
        let mut routes = Vec::with_capacity(senders.len());
        for task in senders {
            routes.push(task.await.map(|sender| {
                Route::Ring(Rc::new(Peer {
                    sender,
                    outbox: RefCell::new(VecDeque::new()),
                    pumping: Cell::new(false),
                }))
            }));
        }
        let mut inboxes = Vec::with_capacity(receivers.len() + local.incoming.len());
        for (from, task) in receivers {
            inboxes.push(Inbox::Peer {
                from,
                ring: task.await,
            });
        }
        connected.set(true);
        ticker.await;
        for (to, queue) in local.outgoing {
            routes[to] = Some(Route::Local(queue));
        }
        inboxes.extend(
            local
                .incoming
                .into_iter()
                .map(|(from, queue)| Inbox::Local { from, queue }),
        );
        let mesh = Mesh {
            routes,
            waiters: local.waiters,
        };
        (mesh, inboxes)
    }

    /// Queues `msg` for `peer` (possibly this shard itself) in FIFO order;
    /// never waits and never handles it inline.
    pub fn post(&self, peer: usize, msg: M) {
        let p = match &self.routes[peer] {
            Some(Route::Ring(p)) => p,
            Some(Route::Local(queue)) => {
                queue.queue.borrow_mut().push_back(msg);
                if let Some(w) = queue.waker.borrow_mut().take() {
                    w.wake();
                }
                return;
            }
            None => return, // never connected: shutting down
        };
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

    /// Messages waiting in all outboxes and outgoing local queues
    /// (metrics).
    pub fn queued(&self) -> usize {
        self.routes.iter().flatten().map(Route::waiting).sum()
    }

    /// Ready when every outbox is under its high-water mark; otherwise registers `cx`'s waker to be woken
    /// once it drains under the low-water mark.
    pub fn poll_room(&self, cx: &mut Context<'_>) -> Poll<()> {
        let congested = self
            .routes
            .iter()
            .flatten()
            .any(|r| r.waiting() > OUTBOX_HIGH_WATER);
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

impl<M: Send + Sized> Route<M> {
    /// Messages posted on this route and not yet handed on (an outbox) or
    /// taken by the receiver (a local queue).
    fn waiting(&self) -> usize {
        match self {
            Route::Ring(p) => p.outbox.borrow().len(),
            Route::Local(q) => q.queue.borrow().len(),
        }
    }
}

fn wake_all(waiters: &RefCell<Vec<Waker>>) {
    let woken = std::mem::take(&mut *waiters.borrow_mut());
    woken.into_iter().for_each(Waker::wake);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::task::Wake;

    /// A waker that remembers it was woken.
    struct Flag(AtomicBool);

    impl Wake for Flag {
        fn wake(self: Arc<Self>) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    /// Two shards on one executor, connected: their meshes and inboxes.
    async fn co_hosted() -> Vec<(Mesh<usize>, Vec<Inbox<usize>>)> {
        let mut pairs = Vec::new();
        for (ends, local) in build_mesh::<usize>(&[0, 0])
            .into_iter()
            .zip(build_local::<usize>(&[0, 1]))
        {
            pairs.push(Mesh::connect(ends, local).await);
        }
        pairs
    }

    fn inbox_from(inboxes: &[Inbox<usize>], from: usize) -> &Inbox<usize> {
        inboxes.iter().find(|i| i.from() == from).expect("an inbox")
    }

    /// Runs the future `test` makes on a fresh executor.
    fn run<F, Fut>(test: F)
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + 'static,
    {
        glommio::LocalExecutorBuilder::default()
            .spawn(test)
            .expect("an executor")
            .join()
            .expect("the test ran");
    }

    #[test]
    fn shards_of_one_executor_get_no_rings_and_one_inbox_per_sender() {
        run(|| async {
            let shards = co_hosted().await;
            for (mesh, inboxes) in &shards {
                assert!(mesh
                    .routes
                    .iter()
                    .all(|r| matches!(r, Some(Route::Local(_)))));
                let mut from: Vec<usize> = inboxes.iter().map(Inbox::from).collect();
                from.sort();
                assert_eq!(from, [0, 1]);
                assert!(inboxes.iter().all(|i| matches!(i, Inbox::Local { .. })));
            }
        });
    }

    #[test]
    fn a_local_queue_keeps_order_and_holds_producers_above_high_water() {
        run(|| async {
            let shards = co_hosted().await;
            let (mesh0, inboxes0) = &shards[0];
            let (mesh1, inboxes1) = &shards[1];
            // To itself and to its neighbour, in order, never inline.
            mesh0.post(0, 42);
            assert_eq!(inbox_from(inboxes0, 0).recv().await, Some(42));
            mesh1.post(0, 7);
            assert_eq!(inbox_from(inboxes0, 1).recv().await, Some(7));

            let flag = Arc::new(Flag(AtomicBool::new(false)));
            let waker = Waker::from(flag.clone());
            let mut cx = Context::from_waker(&waker);
            for n in 0..=OUTBOX_HIGH_WATER {
                mesh0.post(1, n);
            }
            assert_eq!(mesh0.queued(), OUTBOX_HIGH_WATER + 1);
            assert!(mesh0.poll_room(&mut cx).is_pending(), "above high water");
            // The neighbour's own producers are not held by it.
            assert!(mesh1.poll_room(&mut cx).is_ready());
            let from0 = inbox_from(inboxes1, 0);
            let mut next = 0;
            while mesh0.queued() > OUTBOX_LOW_WATER {
                assert!(!flag.0.load(Ordering::SeqCst), "woken above low water");
                assert_eq!(from0.recv().await, Some(next), "FIFO");
                next += 1;
            }
            assert!(flag.0.load(Ordering::SeqCst), "woken at low water");
            assert!(mesh0.poll_room(&mut cx).is_ready());
            while next <= OUTBOX_HIGH_WATER {
                assert_eq!(from0.recv().await, Some(next), "FIFO");
                next += 1;
            }
            assert_eq!(mesh0.queued(), 0);
        });
    }
}
