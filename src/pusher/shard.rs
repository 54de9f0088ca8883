//! `Shard`: everything one core owns for the Pusher protocol, and the loop
//! that runs it. The state lives in per-shard services (connections,
//! channels, owner state, admission, deliveries), each with its own
//! methods; `Shard` composes them with this core's ends of the mesh and the
//! process-wide services (webhook sender, cluster link).
//!
//! # Invariants
//! - Shard state is never `Send`: it lives in an `Rc<Shard>` on its own
//!   executor thread. The only values that cross cores are [`ShardMsg`]s in
//!   the mesh, the read-only `Arc<Config>`, the app registry snapshots the
//!   app store sends (`pusher::apps`), the process-wide shutdown flag
//!   set by the signal handler, and the node's interest table
//!   (`pusher::interest`), where each shard writes only its own bits.
//! - A publication is posted to exactly the other shards whose bit is set
//!   for one of its channels when it is published; a shard's bit for a
//!   channel is set before any of its subscriptions to it is confirmed.
//! - No `RefCell` borrow is held across an `.await`.
//! - Each connection has exactly one task that owns its socket and writes its
//!   queue; frames are immutable once built and shared between recipients.
//! - A publication's `except` socket is skipped by slot on the shard that owns
//!   it (the shard is encoded in the socket_id); other shards skip nothing.
//! - Order: FIFO per (source shard → destination shard) ring and per socket
//!   queue, so events from one HTTP connection reach each subscriber in order.
//! - Connection limits (node and per app) are leased out to shards in chunks
//!   (`admission::quota`): a shard admits from its own lease and asks the quota's
//!   home only when the lease runs out, so no shard is asked per connection
//!   and a limit still refuses exactly at its value. API request rates are
//!   counted on the app's home shard (a hash of the app id). Connections
//!   per client address, when limited, are counted on the address's owner
//!   shard (a keyed hash of the address; see `ip_quota`), one request per
//!   connection to another owner, none when the owner is the shard itself.
//! - A message to the shard itself is queued like any other (the mesh's own
//!   queue) and handled by the same loop, never inline while its poster runs.
//! - Every question to another shard has a time limit ([`REQUEST_TIMEOUT`])
//!   and a defined answer when it expires; an answer that moves quota slots
//!   and arrives late is still counted.
//! - Delivering webhooks never blocks a shard: events go to the sender
//!   thread through a bounded queue ([`WebhookQueue`]) and are dropped, and
//!   counted, when it is full. The webhook delivery counters are process-wide
//!   atomics, read only by the metrics endpoint.

use super::admission::Admission;
use super::apps::ShardApps;
use super::channels::ChannelTable;
use super::conns::ConnTable;
use super::delivery::{DeliveryQueue, Source};
use super::inbox;
use super::interest::{InterestTable, ShardInterest};
use super::owned::{self, Owned};
use super::query::{self, QueryAnswer, QueryAsk};
use super::shard_msg::{Reply, Request, ShardMsg};
use super::tap::{self, Tap};
use super::webhook_events;
use crate::apps::AppRegistry;
use crate::cluster::{ClusterHandle, ClusterInbox};
use crate::config::Config;
use crate::errors::{ApiError, ClientError};
use crate::metrics::{Counters, Snapshot};
use crate::net::TlsAcceptor;
use crate::runtime::{
    collect_thread_heap, sleep, spawn, spawn_bulk, spawn_in, yield_now, Deadlines, Inbox, Mesh,
    Queue, Reaper, Requests, Signal, COLLECT_EVERY_SECS,
};
use crate::webhooks::{DeliveryStats, WebhookQueue};
use futures_util::future::join_all;
use std::cell::{Cell, RefCell};
use std::collections::hash_map::RandomState;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

/// Index of a shard in the configured CPU list (not glommio's executor id).
pub type ShardId = u16;

/// How long a client may take to finish a close before its socket is dropped.
const CLOSE_TIMEOUT_SECS: u32 = 3;
/// Connection slots swept before the sweep lets other tasks run.
const SWEEP_SLICE: usize = 4096;
/// How long draining may take before the shard stops regardless.
const DRAIN_DEADLINE: Duration = Duration::from_millis(4500);
/// Size of the shared read buffer every connection reads into.
const SCRATCH_BYTES: usize = 64 * 1024;
/// How long a shard waits for another shard's answer. On expiry: a quota
/// lease counts as refused (the client gets 4100 and retries), a rate-limit
/// check and a per-address connection count as allowed (uncounted; the
/// node limit still applies), a query or metrics part as empty.
pub const REQUEST_TIMEOUT: Duration = Duration::from_millis(100);

/// How long a channel query waits for another shard's part before it
/// fails with 503: longer than [`REQUEST_TIMEOUT`], since a shard busy
/// with a large slice of work still answers, and a query without one
/// shard's part would be wrong.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(1);

/// The 503 of a channel query a shard did not answer in time.
fn silent(peer: usize) -> ApiError {
    ApiError::Unavailable(format!(
        "shard {peer} did not answer the query within {} ms; retry",
        QUERY_TIMEOUT.as_millis()
    ))
}

pub struct Shard {
    pub id: ShardId,
    pub count: u16,
    /// Per-process nonce encoded in every socket_id.
    pub nonce: u32,
    pub config: Arc<Config>,
    /// The apps as this shard knows them (swapped on a change).
    pub apps: ShardApps,
    pub conns: RefCell<ConnTable>,
    pub channels: RefCell<ChannelTable>,
    /// Teardown of closed connections, in slices in the bulk queue.
    pub reaper: Rc<Reaper>,
    /// Large publications being delivered in slices.
    pub deliveries: RefCell<DeliveryQueue>,
    /// State this shard holds as owner of channels and users.
    pub owned: RefCell<Owned>,
    /// Read buffer shared by all connections of the shard, so an idle socket
    /// owns none. Borrowed only between two awaits.
    pub scratch: RefCell<Vec<u8>>,
    /// Coarse time limits for waiting reads, expired by the tick.
    pub deadlines: Deadlines,
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
    /// Whether the app store reaches its database (for `/ready`).
    pub app_store: Option<Arc<crate::app_store::StoreHealth>>,
    /// Where the admin API's writes go.
    pub app_admin: Option<crate::app_store::AdminHandle>,
    /// Channel queries waiting for other nodes' parts.
    pub cluster_queries: query::ClusterQueries,
    mesh: Mesh<ShardMsg>,
    /// Questions to other shards awaiting their answer.
    requests: Requests<Reply>,
    /// HTTP connections accepted, which names each one's publications.
    http_connections: Cell<u64>,
    /// Who may connect and call the API (quotas, per-address counts, rates).
    pub admission: Admission,
    /// What this shard reports to the debug console while watched.
    pub tap: Tap,
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
    /// Whether the app store reaches its database (for `/ready`).
    pub app_store: Option<Arc<crate::app_store::StoreHealth>>,
    /// Where the admin API's writes go.
    pub app_admin: Option<crate::app_store::AdminHandle>,
    /// The keys of the hash that picks each client address's owner shard:
    /// drawn once at start; every shard gets a clone (same keys).
    pub ip_hasher: RandomState,
    /// Which shards have subscribers of which channels: one table for
    /// the node, every shard gets the same `Arc` (`pusher::interest`).
    pub interest: Arc<InterestTable>,
}

impl Shard {
    pub fn new(
        id: ShardId,
        count: u16,
        nonce: u32,
        config: Arc<Config>,
        apps: Arc<AppRegistry>,
        mesh: Mesh<ShardMsg>,
        services: Services,
    ) -> Shard {
        let max_connections = config.limits.max_connections as usize;
        let queue_cap = config.limits.max_write_queue_bytes;
        let queue_budget = config.limits.max_write_queues_bytes;
        Shard {
            id,
            count,
            nonce,
            config,
            channels: RefCell::new(ChannelTable::new(
                apps.len(),
                ShardInterest::new(services.interest.clone(), id as usize),
            )),
            deliveries: RefCell::new(DeliveryQueue::default()),
            reaper: Rc::new(Reaper::default()),
            admission: Admission::new(
                id as usize,
                count as usize,
                max_connections as u32,
                &apps,
                services.ip_hasher,
            ),
            apps: ShardApps::new(apps),
            // Room for the node's connection limit up front: untouched slots
            // cost address space, not resident memory, and the table never
            // has to be copied while it grows.
            conns: RefCell::new(ConnTable::with_capacity(
                max_connections,
                queue_cap,
                queue_budget / count as usize,
            )),
            owned: RefCell::new(Owned::default()),
            scratch: RefCell::new(vec![0; SCRATCH_BYTES]),
            deadlines: Deadlines::default(),
            draining: Signal::default(),
            http_in_flight: Cell::new(0),
            pending_heads: Cell::new(0),
            counters: Counters::default(),
            webhooks: services.webhooks,
            webhook_stats: services.webhook_stats,
            tls: services.tls,
            cluster: services.cluster,
            app_store: services.app_store,
            app_admin: services.app_admin,
            cluster_queries: Default::default(),
            mesh,
            requests: Requests::default(),
            http_connections: Cell::new(0),
            tap: Tap::new(id),
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

    /// Sends a message to a shard (possibly this one) in FIFO order
    /// without waiting. A message to this shard is queued like any other and
    /// handled by its receiving loop after the caller's step, never inline.
    pub fn post(&self, peer: usize, msg: ShardMsg) {
        self.mesh.post(peer, msg);
    }

    /// A new HTTP connection's [`Source`]: its events keep their order.
    pub fn new_http_source(&self) -> Source {
        let n = self.http_connections.get();
        self.http_connections.set(n + 1);
        Source::http(self.id, n)
    }

    /// Ready unless this shard's outboxes, or the delivery queue of
    /// `source`, are backed up; then `cx` is woken once they drain. Client
    /// connections stop reading meanwhile (see `runtime::mailbox`, "Bounds",
    /// and `pusher::delivery`).
    pub fn poll_room(&self, cx: &mut std::task::Context<'_>, source: Source) -> Poll<()> {
        match self.mesh.poll_room(cx) {
            Poll::Ready(()) => self.deliveries.borrow_mut().poll_room(cx, source),
            Poll::Pending => Poll::Pending,
        }
    }

    /// Waits while the outboxes or `source`'s delivery queue are backed up.
    pub async fn wait_for_room(&self, source: Source) {
        futures_lite::future::poll_fn(|cx| self.poll_room(cx, source)).await
    }

    /// Asks `peer` a question and waits for its answer, at most
    /// [`REQUEST_TIMEOUT`]; `None` when it did not answer in time (a late
    /// answer is then handled by [`Shard::late_reply`]).
    pub(crate) async fn request(&self, peer: usize, body: Request) -> Option<Reply> {
        self.request_within(peer, body, REQUEST_TIMEOUT).await
    }

    /// [`Shard::request`] with its own time limit.
    async fn request_within(&self, peer: usize, body: Request, limit: Duration) -> Option<Reply> {
        let from = self.id;
        let reply = self
            .requests
            .ask(limit, |id| {
                self.post(peer, ShardMsg::Request { from, id, body })
            })
            .await;
        if reply.is_none() {
            self.counters.request_timed_out();
            log::debug!("shard {}: shard {peer} did not answer in time", self.id);
        }
        reply
    }

    /// Gathers every shard's answer to a channel query. A shard that does
    /// not answer within [`QUERY_TIMEOUT`] makes the whole query fail (503):
    /// an answer without its part would be wrong, not late.
    pub async fn ask_all(&self, ask: QueryAsk) -> Result<Vec<QueryAnswer>, ApiError> {
        let peers: Vec<usize> = self.peers().collect();
        let replies =
            join_all(peers.iter().map(|&peer| {
                self.request_within(peer, Request::Query(ask.clone()), QUERY_TIMEOUT)
            }))
            .await;
        let mut answers = vec![query::answer(self, &ask)];
        for (peer, reply) in peers.into_iter().zip(replies) {
            match reply {
                Some(Reply::Query(a)) => answers.push(a),
                _ => return Err(silent(peer)),
            }
        }
        Ok(answers)
    }

    /// Asks one shard (possibly this one) a channel query; like
    /// [`Shard::ask_all`], no answer in time is an error.
    pub async fn ask(&self, shard: usize, ask: QueryAsk) -> Result<QueryAnswer, ApiError> {
        if shard == self.id as usize {
            return Ok(query::answer(self, &ask));
        }
        match self
            .request_within(shard, Request::Query(ask), QUERY_TIMEOUT)
            .await
        {
            Some(Reply::Query(a)) => Ok(a),
            _ => Err(silent(shard)),
        }
    }

    /// Gathers every shard's counters, in shard order (a shard that does not
    /// answer in time shows zeros).
    pub async fn gather_metrics(&self) -> Vec<Snapshot> {
        let peers: Vec<usize> = self.peers().collect();
        let replies = join_all(
            peers
                .iter()
                .map(|&peer| self.request(peer, Request::Metrics)),
        )
        .await;
        let mut all = vec![Snapshot::default(); self.count as usize];
        all[self.id as usize] = self.snapshot();
        for (peer, reply) in peers.into_iter().zip(replies) {
            if let Some(Reply::Metrics(s)) = reply {
                all[peer] = s;
            }
        }
        all
    }

    /// This shard's counters now.
    pub(crate) fn snapshot(&self) -> Snapshot {
        let mut s = self.counters.snapshot();
        let conns = self.conns.borrow();
        s.connections_current = conns.len() as u64;
        s.messages_out = conns.frames_out;
        s.bytes_out = conns.bytes_out;
        s.slow_consumer_closes = conns.slow_consumer_closes;
        s.write_queue_bytes = conns.flush.queued_bytes as u64;
        s.over_budget_closes = conns.over_budget_closes;
        s.outbox_messages = self.mesh.queued() as u64;
        s
    }

    /// Answers a question from shard `from`. A lease request may have to
    /// reclaim slots from every shard first, so it is answered from a task.
    fn answer(self: &Rc<Self>, from: u16, id: u32, body: Request) {
        let reply = match body {
            Request::Lease { quota, want } => {
                let shard = self.clone();
                spawn(async move {
                    let n = shard.lend(quota, from as usize, want).await;
                    let body = Reply::Leased { quota, n };
                    shard.post(from as usize, ShardMsg::Reply { id, body });
                });
                return;
            }
            Request::Reclaim(quota) => Reply::Returned {
                quota,
                n: self.admission.reclaim(quota),
            },
            Request::ApiRequest { app } => Reply::Admitted(self.count_api_request(app)),
            Request::Query(ask) => Reply::Query(query::answer(self, &ask)),
            Request::Metrics => Reply::Metrics(self.snapshot()),
            Request::Tap { busiest } => Reply::Tap(Box::new(tap::part(self, busiest))),
            Request::IpAdmit(ip) => Reply::IpAdmitted {
                ip,
                admitted: self.count_ip(ip),
            },
        };
        self.post(from as usize, ShardMsg::Reply { id, body: reply });
    }

    /// Handles one message from another shard (or posted to itself).
    fn handle_msg(self: &Rc<Self>, from: usize, msg: ShardMsg) {
        match msg {
            ShardMsg::Request { from, id, body } => self.answer(from, id, body),
            ShardMsg::Reply { id, body } => {
                if let Err(late) = self.requests.answer(id, body) {
                    self.late_reply(from, late);
                }
            }
            ShardMsg::Return { quota, n } => self.admission.returned(quota, from, n),
            ShardMsg::IpRelease(ip) => self.uncount_ip(ip),
            other => inbox::handle(self, other),
        }
    }

    /// Runs the shard's own tasks (message loops, flushers, deliveries,
    /// the reaper, the housekeeping tick) until it has drained after a
    /// shutdown signal. Accepting sockets is the caller's (`server`).
    pub async fn run(self: Rc<Self>, inboxes: Vec<Inbox<ShardMsg>>, cluster: Option<ClusterInbox>) {
        if let Some(mut from_cluster) = cluster {
            let shard = self.clone();
            spawn(async move {
                while let Some(inbound) = from_cluster.recv().await {
                    inbox::handle_remote(&shard, &inbound);
                    shard.wait_for_room(Source::CLUSTER).await;
                }
            });
        }
        for messages in inboxes {
            let shard = self.clone();
            spawn_in(Queue::Mailboxes, async move {
                let from = messages.from();
                while let Some(msg) = messages.recv().await {
                    shard.handle_msg(from, msg);
                    // A long backlog is handled in slices like any other work.
                    yield_now().await;
                }
            });
        }
        use crate::pusher::flusher::{self, Lane};
        spawn(flusher::run(self.clone(), Lane::Ordinary));
        spawn_bulk(flusher::run(self.clone(), Lane::Bulk));
        spawn_bulk(crate::pusher::delivery::run(self.clone()));
        spawn_bulk(self.reaper.clone().run());

        // The housekeeping tick: held webhook events and the shutdown flag
        // every 100 ms, activity sweep once a second.
        let mut last_sweep = 0;
        while !self.shutdown.load(Ordering::Acquire) {
            sleep(Duration::from_millis(100)).await;
            self.deadlines.expire_due(Instant::now());
            self.tap.expire(Instant::now());
            webhook_events::release_held(&self, false);
            owned::nodes::flush_counts(&self);
            let now = self.now();
            if now != last_sweep {
                last_sweep = now;
                if now.is_multiple_of(COLLECT_EVERY_SECS) {
                    collect_thread_heap();
                }
                self.sweep_connections(now).await;
                owned::flush_due_counts(&self);
                if now.is_multiple_of(10) {
                    self.owned.borrow_mut().cache.sweep(Instant::now());
                }
                // Tables that grew for a crowd give the room back after it.
                self.channels.borrow_mut().shrink();
            }
        }
        self.drain().await;
    }

    /// The once-a-second sweep of every connection, in slices of
    /// [`SWEEP_SLICE`] slots that let other tasks run in between.
    async fn sweep_connections(&self, now: u32) {
        let c = &self.config;
        let slots = self.conns.borrow().slots();
        let mut from = 0;
        while from < slots {
            let to = (from + SWEEP_SLICE).min(slots);
            self.conns.borrow_mut().sweep_slots(
                from..to,
                now,
                c.activity_timeout,
                c.pong_timeout,
                CLOSE_TIMEOUT_SECS,
            );
            from = to;
            yield_now().await;
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
        webhook_events::release_held(self, true);
        log::info!("shard {} drained", self.id);
    }
}
