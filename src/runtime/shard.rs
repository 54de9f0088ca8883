//! `Shard`: everything one core owns, and the loop that runs it.
//!
//! # Invariants
//! - Shard state is never `Send`: it lives in an `Rc<Shard>` on its own
//!   executor thread. The only values that cross cores are [`ShardMsg`]s in
//!   the mailboxes, the read-only `Arc<Config>` / `Arc<AppRegistry>`, and the
//!   process-wide shutdown flag set by the signal handler.
//! - No `RefCell` borrow is held across an `.await`.
//! - Each connection has exactly one task that owns its socket and writes its
//!   queue; frames are immutable once built and shared between recipients.
//! - A publication's `except` socket is skipped by slot on the shard that owns
//!   it (the shard is encoded in the socket_id); other shards skip nothing.
//! - Order: FIFO per (source shard → destination shard) ring and per socket
//!   queue, so events from one HTTP connection reach each subscriber in order.
//! - Per-app connection counts and API request rates are authoritative on
//!   the app's owner shard (`app index % shard count`), the node's
//!   connection count on shard 0; others ask the owner before admitting, so
//!   a limit refuses exactly at its value.
//! - Delivering webhooks never blocks a shard: events go to the sender
//!   thread through a bounded queue ([`WebhookQueue`]) and are dropped, and
//!   counted, when it is full. The webhook delivery counters are process-wide
//!   atomics, read only by the metrics endpoint.

use super::mailbox::{Mailboxes, Quota, Reply, Request, ShardMsg};
use super::tasks::{sleep, spawn, Signal};
use crate::apps::{AppIdx, AppRegistry};
use crate::cluster::{ClusterHandle, ClusterInbox};
use crate::config::Config;
use crate::errors::ClientError;
use crate::http::Site;
use crate::metrics::{Counters, Snapshot};
use crate::net::{Listener, TlsAcceptor};
use crate::pusher::channels::ChannelTable;
use crate::pusher::conns::ConnTable;
use crate::pusher::inbox;
use crate::pusher::owned::{self, Owned};
use crate::pusher::query::{self, QueryAnswer, QueryAsk};
use crate::webhooks::{self, DeliveryStats, WebhookQueue};
use glommio::channels::shared_channel::ConnectedReceiver;
use slab::Slab;
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

/// Index of a shard in the configured CPU list (not glommio's executor id).
pub type ShardId = u16;

/// How long a client may take to finish a close before its socket is dropped.
const CLOSE_TIMEOUT_SECS: u32 = 3;
/// How long draining may take before the shard stops regardless.
const DRAIN_DEADLINE: Duration = Duration::from_millis(4500);
/// Size of the shared read buffer every connection reads into.
const SCRATCH_BYTES: usize = 64 * 1024;

#[derive(Default)]
struct PendingReply {
    reply: Option<Reply>,
    waker: Option<Waker>,
}

pub struct Shard {
    pub id: ShardId,
    pub count: u16,
    /// Per-process nonce encoded in every socket_id.
    pub nonce: u32,
    pub config: Arc<Config>,
    pub apps: Arc<AppRegistry>,
    pub conns: RefCell<ConnTable>,
    pub channels: RefCell<ChannelTable>,
    /// State this shard holds as owner of channels and users.
    pub owned: RefCell<Owned>,
    /// Read buffer shared by all connections of the shard, so an idle socket
    /// owns none. Borrowed only between two awaits.
    pub scratch: RefCell<Vec<u8>>,
    /// Coarse time limits for waiting reads, expired by the tick.
    pub deadlines: super::Deadlines,
    /// Raised when the shard starts draining for shutdown.
    pub draining: Signal,
    /// HTTP API requests being handled right now.
    pub http_in_flight: Cell<u32>,
    /// Connections of this shard still sending their first request head.
    pub pending_heads: Cell<u32>,
    /// This shard's metrics counters.
    pub counters: Counters,
    /// Where webhook events go; `None` when no app has webhooks.
    pub webhooks: Option<WebhookQueue>,
    /// The sender thread's delivery counters (process-wide atomics).
    pub webhook_stats: Option<Arc<DeliveryStats>>,
    /// TLS for the main port (this shard's own acceptor), when configured.
    pub tls: Option<TlsAcceptor>,
    /// The way to the other nodes of the cluster; `None` on a single node.
    pub cluster: Option<ClusterHandle>,
    /// Channel queries waiting for other nodes' parts.
    pub cluster_queries: query::ClusterQueries,
    mailboxes: Mailboxes,
    pending: RefCell<Slab<PendingReply>>,
    /// Open connections per app; meaningful for apps this shard owns.
    app_connections: RefCell<Vec<u32>>,
    /// Open connections on the node; meaningful on shard 0.
    node_connections: Cell<u32>,
    /// API requests per app in the current second (second, count);
    /// meaningful for apps this shard owns.
    api_requests: RefCell<Vec<(u32, u32)>>,
    started: Instant,
    /// The process-wide shutdown flag, set by the signal handler. Admission
    /// reads it directly ([`Shard::is_draining`]), so no shard admits a
    /// connection once a signal arrived, even before its tick noticed.
    shutdown: Arc<AtomicBool>,
}

/// What a shard gets besides its config: the webhook sender's ends, its
/// own TLS acceptor and the cluster link's handle.
#[derive(Clone, Default)]
pub struct Services {
    pub webhooks: Option<WebhookQueue>,
    pub webhook_stats: Option<Arc<DeliveryStats>>,
    pub tls: Option<TlsAcceptor>,
    pub cluster: Option<ClusterHandle>,
    /// The process-wide shutdown flag.
    pub shutdown: Arc<AtomicBool>,
}

impl Shard {
    pub(super) fn new(
        id: ShardId,
        count: u16,
        nonce: u32,
        config: Arc<Config>,
        apps: Arc<AppRegistry>,
        mailboxes: Mailboxes,
        services: Services,
    ) -> Shard {
        let app_count = apps.len();
        let max_connections = config.limits.max_connections as usize;
        let queue_cap = config.limits.max_write_queue_bytes;
        Shard {
            id,
            count,
            nonce,
            config,
            channels: RefCell::new(ChannelTable::new(app_count)),
            apps,
            // Room for the node's connection limit up front: untouched slots
            // cost address space, not resident memory, and the table never
            // has to be copied while it grows.
            conns: RefCell::new(ConnTable::with_capacity(max_connections, queue_cap)),
            owned: RefCell::new(Owned::default()),
            scratch: RefCell::new(vec![0; SCRATCH_BYTES]),
            deadlines: super::Deadlines::default(),
            draining: Signal::default(),
            http_in_flight: Cell::new(0),
            pending_heads: Cell::new(0),
            counters: Counters::default(),
            webhooks: services.webhooks,
            webhook_stats: services.webhook_stats,
            tls: services.tls,
            cluster: services.cluster,
            cluster_queries: Default::default(),
            mailboxes,
            pending: RefCell::new(Slab::new()),
            app_connections: RefCell::new(vec![0; app_count]),
            node_connections: Cell::new(0),
            api_requests: RefCell::new(vec![(0, 0); app_count]),
            started: Instant::now(),
            shutdown: services.shutdown,
        }
    }

    /// Whether the process is shutting down: new connections are refused
    /// (4200), keep-alive ends and `/ready` answers 503. True from the
    /// moment a signal arrives, on every shard at once.
    pub fn is_draining(&self) -> bool {
        self.draining.is_raised() || self.shutdown.load(Ordering::Acquire)
    }

    /// Seconds since the shard started: the coarse clock of activity timers.
    pub fn now(&self) -> u32 {
        self.started.elapsed().as_secs() as u32
    }

    /// Every other shard's id.
    pub fn peers(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.count as usize).filter(move |&p| p != self.id as usize)
    }

    /// Sends a message to a shard in FIFO order without waiting. A message
    /// to this shard itself is handled right away, so callers must hold no
    /// borrow of shard state.
    pub fn post(&self, peer: usize, msg: ShardMsg) {
        if peer == self.id as usize {
            self.handle_msg(msg);
        } else {
            self.mailboxes.post(peer, msg);
        }
    }

    /// Waits while the outbox to `peer` is backed up (HTTP backpressure).
    pub async fn wait_for_room(&self, peer: usize) {
        self.mailboxes.wait_for_room(peer).await
    }

    /// Asks `peer` a question and waits for its answer.
    async fn request(&self, peer: usize, body: Request) -> Reply {
        let id = self.pending.borrow_mut().insert(PendingReply::default()) as u32;
        self.post(
            peer,
            ShardMsg::Request {
                from: self.id,
                id,
                body,
            },
        );
        futures_lite::future::poll_fn(|cx| {
            let mut pending = self.pending.borrow_mut();
            let slot = &mut pending[id as usize];
            match slot.reply.take() {
                Some(reply) => {
                    pending.remove(id as usize);
                    Poll::Ready(reply)
                }
                None => {
                    slot.waker = Some(cx.waker().clone());
                    Poll::Pending
                }
            }
        })
        .await
    }

    /// Gathers every shard's answer to a channel query.
    pub async fn ask_all(&self, ask: QueryAsk) -> Vec<QueryAnswer> {
        let mut answers = vec![query::answer(self, &ask)];
        for peer in self.peers() {
            if let Reply::Query(a) = self.request(peer, Request::Query(ask.clone())).await {
                answers.push(a);
            }
        }
        answers
    }

    /// Asks one shard (possibly this one) a channel query.
    pub async fn ask(&self, shard: usize, ask: QueryAsk) -> QueryAnswer {
        if shard == self.id as usize {
            return query::answer(self, &ask);
        }
        match self.request(shard, Request::Query(ask)).await {
            Reply::Query(a) => a,
            _ => QueryAnswer::default(),
        }
    }

    /// Gathers every shard's counters, in shard order.
    pub async fn gather_metrics(&self) -> Vec<Snapshot> {
        let mut all = vec![Snapshot::default(); self.count as usize];
        all[self.id as usize] = self.snapshot();
        for peer in self.peers() {
            if let Reply::Metrics(s) = self.request(peer, Request::Metrics).await {
                all[peer] = s;
            }
        }
        all
    }

    fn snapshot(&self) -> Snapshot {
        self.counters.snapshot(&self.conns.borrow())
    }

    fn owner_of(&self, app: AppIdx) -> usize {
        app.0 as usize % self.count as usize
    }

    fn quota_owner(&self, quota: Quota) -> usize {
        match quota {
            Quota::Node => 0,
            Quota::App(app) => self.owner_of(app),
        }
    }

    /// Takes a slot of `quota`, asking its owner shard when that is another one.
    async fn admit(&self, quota: Quota) -> bool {
        let owner = self.quota_owner(quota);
        if owner == self.id as usize {
            return self.count_connection(quota);
        }
        matches!(
            self.request(owner, Request::Admit(quota)).await,
            Reply::Admitted(true)
        )
    }

    /// Reserves a connection slot on the node (`server.limits.max_connections`)
    /// and for `app` (its `max_connections`); says which limit refused.
    pub async fn admit_connection(&self, app: AppIdx) -> Result<(), ClientError> {
        if !self.admit(Quota::Node).await {
            log::warn!(
                "shard {}: connection refused, node is at max_connections {}",
                self.id,
                self.config.limits.max_connections
            );
            return Err(ClientError::OverCapacity);
        }
        if self.apps.get(app).limits.max_connections.is_some() && !self.admit(Quota::App(app)).await
        {
            self.post(0, ShardMsg::Release(Quota::Node));
            log::warn!(
                "shard {}: connection refused, app {} is at its max_connections",
                self.id,
                self.apps.get(app).id
            );
            return Err(ClientError::OverQuota);
        }
        Ok(())
    }

    /// Gives back the slots taken by [`Shard::admit_connection`].
    pub fn release_connection(&self, app: AppIdx) {
        self.post(0, ShardMsg::Release(Quota::Node));
        if self.apps.get(app).limits.max_connections.is_some() {
            self.post(self.owner_of(app), ShardMsg::Release(Quota::App(app)));
        }
    }

    fn count_connection(&self, quota: Quota) -> bool {
        let (count, max) = match quota {
            Quota::Node => (
                self.node_connections.get(),
                self.config.limits.max_connections,
            ),
            Quota::App(app) => (
                self.app_connections.borrow()[app.0 as usize],
                self.apps
                    .get(app)
                    .limits
                    .max_connections
                    .unwrap_or(u32::MAX),
            ),
        };
        if count >= max {
            return false;
        }
        match quota {
            Quota::Node => self.node_connections.set(count + 1),
            Quota::App(app) => self.app_connections.borrow_mut()[app.0 as usize] = count + 1,
        }
        true
    }

    fn uncount_connection(&self, quota: Quota) {
        match quota {
            Quota::Node => self
                .node_connections
                .set(self.node_connections.get().saturating_sub(1)),
            Quota::App(app) => {
                let mut counts = self.app_connections.borrow_mut();
                let count = &mut counts[app.0 as usize];
                *count = count.saturating_sub(1);
            }
        }
    }

    /// Counts one HTTP API request of `app` against its
    /// `max_api_requests_per_second`, on the app's owner shard.
    pub async fn admit_api_request(&self, app: AppIdx) -> bool {
        if self.apps.get(app).max_api_requests_per_second.is_none() {
            return true;
        }
        let owner = self.owner_of(app);
        if owner == self.id as usize {
            return self.count_api_request(app);
        }
        matches!(
            self.request(owner, Request::ApiRequest { app }).await,
            Reply::Admitted(true)
        )
    }

    fn count_api_request(&self, app: AppIdx) -> bool {
        let max = self
            .apps
            .get(app)
            .max_api_requests_per_second
            .unwrap_or(u32::MAX);
        let now = self.now();
        let mut windows = self.api_requests.borrow_mut();
        let (second, count) = &mut windows[app.0 as usize];
        if *second != now {
            *second = now;
            *count = 0;
        }
        if *count >= max {
            false
        } else {
            *count += 1;
            true
        }
    }

    /// Handles one message from another shard (or posted to itself).
    fn handle_msg(&self, msg: ShardMsg) {
        match msg {
            ShardMsg::Request { from, id, body } => {
                let reply = match body {
                    Request::Admit(quota) => Reply::Admitted(self.count_connection(quota)),
                    Request::ApiRequest { app } => Reply::Admitted(self.count_api_request(app)),
                    Request::Query(ask) => Reply::Query(query::answer(self, &ask)),
                    Request::Metrics => Reply::Metrics(self.snapshot()),
                };
                self.post(from as usize, ShardMsg::Reply { id, body: reply });
            }
            ShardMsg::Reply { id, body } => {
                if let Some(slot) = self.pending.borrow_mut().get_mut(id as usize) {
                    slot.reply = Some(body);
                    if let Some(w) = slot.waker.take() {
                        w.wake();
                    }
                }
            }
            ShardMsg::Release(quota) => self.uncount_connection(quota),
            other => inbox::handle(self, other),
        }
    }

    /// Runs the shard until it has drained after a shutdown signal.
    pub(super) async fn run(
        self: Rc<Self>,
        receivers: Vec<ConnectedReceiver<ShardMsg>>,
        listener: Listener,
        metrics_listener: Option<Listener>,
        cluster_inbox: Option<ClusterInbox>,
    ) {
        if let Some(mut inbox) = cluster_inbox {
            let shard = self.clone();
            spawn(async move {
                while let Some(inbound) = inbox.recv().await {
                    crate::pusher::inbox::handle_remote(&shard, &inbound);
                }
            });
        }
        for rx in receivers {
            let shard = self.clone();
            spawn(async move {
                while let Some(msg) = rx.recv().await {
                    shard.handle_msg(msg);
                }
            });
        }
        spawn(crate::pusher::flusher::run(self.clone()));
        let shard = self.clone();
        spawn(async move { shard.accept_loop(listener, Site::Main).await });
        if let Some(metrics) = metrics_listener {
            let shard = self.clone();
            spawn(async move { shard.accept_loop(metrics, Site::Metrics).await });
        }

        // The housekeeping tick: held webhook events and the shutdown flag
        // every 100 ms, activity sweep once a second.
        let mut last_sweep = 0;
        while !self.shutdown.load(Ordering::Acquire) {
            sleep(Duration::from_millis(100)).await;
            self.deadlines.expire_due(Instant::now());
            webhooks::release_held(&self, false);
            let now = self.now();
            if now != last_sweep {
                last_sweep = now;
                if now.is_multiple_of(super::allocator::COLLECT_EVERY_SECS) {
                    super::allocator::collect_thread_heap();
                }
                let c = &self.config;
                self.conns.borrow_mut().sweep(
                    now,
                    c.activity_timeout,
                    c.pong_timeout,
                    CLOSE_TIMEOUT_SECS,
                );
                owned::flush_due_counts(&self);
                if now.is_multiple_of(10) {
                    self.owned.borrow_mut().cache.sweep(Instant::now());
                }
            }
        }
        self.drain().await;
    }

    async fn accept_loop(self: Rc<Self>, listener: Listener, site: Site) {
        loop {
            let accepted =
                futures_lite::future::or(async { Some(listener.accept().await) }, async {
                    self.draining.wait().await;
                    None
                })
                .await;
            match accepted {
                None => return, // dropping the listener stops accepting
                Some(Ok(socket)) => {
                    let shard = self.clone();
                    spawn(async move { crate::http::serve(shard, socket, site).await });
                }
                Some(Err(e)) => {
                    log::warn!("shard {}: accept failed: {e}", self.id);
                    // Out of file descriptors or similar: back off briefly.
                    sleep(Duration::from_millis(10)).await;
                }
            }
        }
    }

    /// Graceful shutdown: stop accepting, tell every client to reconnect
    /// (4200), let in-flight HTTP requests finish, within the deadline.
    async fn drain(&self) {
        self.draining.raise();
        let now = self.now();
        {
            let mut conns = self.conns.borrow_mut();
            for key in conns.keys() {
                conns.close(key, &ClientError::ShuttingDown, now);
            }
        }
        let deadline = Instant::now() + DRAIN_DEADLINE;
        while Instant::now() < deadline {
            if self.conns.borrow().is_empty() && self.http_in_flight.get() == 0 {
                break;
            }
            let c = &self.config;
            self.conns.borrow_mut().sweep(
                self.now(),
                c.activity_timeout,
                c.pong_timeout,
                CLOSE_TIMEOUT_SECS,
            );
            sleep(Duration::from_millis(20)).await;
        }
        // The server is going away: held vacated/removed events are true now.
        webhooks::release_held(self, true);
        log::info!("shard {} drained", self.id);
    }
}
