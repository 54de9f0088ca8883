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
//! - Connection limits (node and per app) are leased out to shards in chunks
//!   ([`Quotas`]): a shard admits from its own lease and asks the quota's
//!   home only when the lease runs out, so no shard is asked per connection
//!   and a limit still refuses exactly at its value. API request rates are
//!   counted on the app's home shard (a hash of the app id). Connections
//!   per client address, when limited, are counted on the address's owner
//!   shard (a keyed hash of the address; see `ip_quota`), one request per
//!   connection to another owner, none when the owner is the shard itself.
//! - Every question to another shard has a time limit ([`REQUEST_TIMEOUT`])
//!   and a defined answer when it expires; an answer that moves quota slots
//!   and arrives late is still counted.
//! - Delivering webhooks never blocks a shard: events go to the sender
//!   thread through a bounded queue ([`WebhookQueue`]) and are dropped, and
//!   counted, when it is full. The webhook delivery counters are process-wide
//!   atomics, read only by the metrics endpoint.

use super::ip_quota::{IpCounts, IpOwners, IpSlot};
use super::mailbox::{Mailboxes, Quota, Reply, Request, ShardMsg};
use super::quota::Quotas;
use super::reaper::Reaper;
use super::tasks::{sleep, spawn, spawn_bulk, yield_now, Signal};
use crate::apps::{AppIdx, AppRegistry};
use crate::cluster::{ClusterHandle, ClusterInbox};
use crate::config::Config;
use crate::errors::ClientError;
use crate::http::Site;
use crate::metrics::{Counters, Snapshot};
use crate::net::{Listener, TlsAcceptor};
use crate::pusher::channels::ChannelTable;
use crate::pusher::conns::ConnTable;
use crate::pusher::delivery::{DeliveryQueue, Source};
use crate::pusher::inbox;
use crate::pusher::owned::{self, Owned};
use crate::pusher::query::{self, QueryAnswer, QueryAsk};
use crate::webhooks::{self, DeliveryStats, WebhookQueue};
use futures_util::future::join_all;
use glommio::channels::shared_channel::ConnectedReceiver;
use rustc_hash::FxHashMap;
use std::cell::{Cell, RefCell};
use std::collections::hash_map::RandomState;
use std::net::IpAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Poll, Waker};
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
    /// Questions to other shards awaiting their answer, by request id.
    /// Ids are never reused while the process runs long enough to matter
    /// (u32 wraps after 4 billion questions), so a late answer cannot be
    /// taken for another question's.
    pending: RefCell<FxHashMap<u32, PendingReply>>,
    next_request: Cell<u32>,
    /// HTTP connections accepted, which names each one's publications.
    http_connections: Cell<u64>,
    /// Connection quotas: this shard's leases, and the budgets it is home of.
    quotas: RefCell<Quotas>,
    /// API requests per app in the current second (second, count);
    /// meaningful for apps whose home is this shard.
    api_requests: RefCell<Vec<(u32, u32)>>,
    started: Instant,
    /// The process-wide shutdown flag, set by the signal handler. Admission
    /// reads it directly ([`Shard::is_draining`]), so no shard admits a
    /// connection once a signal arrived, even before its tick noticed.
    shutdown: Arc<AtomicBool>,
    /// Which shard counts each client address (`runtime::ip_quota`).
    pub(super) ip_owners: IpOwners,
    /// Open connections per client address, for the addresses this shard
    /// owns; empty unless `server.limits.max_connections_per_ip` is set.
    pub(super) ip_counts: RefCell<IpCounts>,
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
    /// The keys of the hash that picks each client address's owner shard:
    /// drawn once at start; every shard gets a clone (same keys).
    pub ip_hasher: RandomState,
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
        let queue_budget = config.limits.max_write_queues_bytes;
        Shard {
            id,
            count,
            nonce,
            config,
            channels: RefCell::new(ChannelTable::new(app_count)),
            deliveries: RefCell::new(DeliveryQueue::default()),
            reaper: Rc::new(Reaper::default()),
            quotas: RefCell::new(Quotas::new(
                id as usize,
                count as usize,
                max_connections as u32,
                &apps,
            )),
            apps,
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
            pending: RefCell::new(FxHashMap::default()),
            next_request: Cell::new(0),
            http_connections: Cell::new(0),
            api_requests: RefCell::new(vec![(0, 0); app_count]),
            started: Instant::now(),
            shutdown: services.shutdown,
            ip_owners: IpOwners::new(services.ip_hasher, count as usize),
            ip_counts: RefCell::new(IpCounts::default()),
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
    /// borrow of shard state. (Questions and quota moves never go to the
    /// shard itself: their callers handle the local case directly.)
    pub fn post(&self, peer: usize, msg: ShardMsg) {
        if peer != self.id as usize {
            self.mailboxes.post(peer, msg);
            return;
        }
        match msg {
            ShardMsg::Request { .. }
            | ShardMsg::Reply { .. }
            | ShardMsg::Return { .. }
            | ShardMsg::IpRelease(_) => {
                debug_assert!(false, "a shard asked itself over the mailbox");
            }
            other => inbox::handle(self, other),
        }
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
        match self.mailboxes.poll_room(cx) {
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
    pub(super) async fn request(&self, peer: usize, body: Request) -> Option<Reply> {
        let id = self.next_request.get();
        self.next_request.set(id.wrapping_add(1));
        self.pending
            .borrow_mut()
            .insert(id, PendingReply::default());
        self.post(
            peer,
            ShardMsg::Request {
                from: self.id,
                id,
                body,
            },
        );
        let answer = futures_lite::future::poll_fn(|cx| {
            let mut pending = self.pending.borrow_mut();
            let Some(slot) = pending.get_mut(&id) else {
                return Poll::Ready(None);
            };
            match slot.reply.take() {
                Some(reply) => Poll::Ready(Some(reply)),
                None => {
                    slot.waker = Some(cx.waker().clone());
                    Poll::Pending
                }
            }
        });
        let expiry = async {
            sleep(REQUEST_TIMEOUT).await;
            None
        };
        let reply = futures_lite::future::or(answer, expiry).await;
        self.pending.borrow_mut().remove(&id);
        if reply.is_none() {
            self.counters.request_timed_out();
            log::debug!("shard {}: shard {peer} did not answer in time", self.id);
        }
        reply
    }

    /// Gathers every shard's answer to a channel query (a shard that does
    /// not answer in time is left out).
    pub async fn ask_all(&self, ask: QueryAsk) -> Vec<QueryAnswer> {
        let asks = self
            .peers()
            .map(|peer| self.request(peer, Request::Query(ask.clone())));
        let replies = join_all(asks).await;
        let mut answers = vec![query::answer(self, &ask)];
        answers.extend(replies.into_iter().filter_map(|r| match r {
            Some(Reply::Query(a)) => Some(a),
            _ => None,
        }));
        answers
    }

    /// Asks one shard (possibly this one) a channel query.
    pub async fn ask(&self, shard: usize, ask: QueryAsk) -> QueryAnswer {
        if shard == self.id as usize {
            return query::answer(self, &ask);
        }
        match self.request(shard, Request::Query(ask)).await {
            Some(Reply::Query(a)) => a,
            _ => QueryAnswer::default(),
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

    fn snapshot(&self) -> Snapshot {
        let mut s = self.counters.snapshot(&self.conns.borrow());
        s.outbox_messages = self.mailboxes.queued() as u64;
        s
    }

    /// The home shard of `quota`.
    fn home_of(&self, quota: Quota) -> usize {
        self.quotas.borrow().home_of(quota, &self.apps)
    }

    /// Takes a slot of `quota`: from the local lease, else after asking
    /// its home for another chunk.
    async fn take_slot(&self, quota: Quota) -> bool {
        if self.quotas.borrow_mut().take(quota) {
            return true;
        }
        let want = self.quotas.borrow().chunk(quota);
        let home = self.home_of(quota);
        let granted = if home == self.id as usize {
            self.lend(quota, home, want).await
        } else {
            match self.request(home, Request::Lease { quota, want }).await {
                Some(Reply::Leased { n, .. }) => n,
                _ => 0,
            }
        };
        let mut quotas = self.quotas.borrow_mut();
        quotas.absorb(quota, granted);
        quotas.take(quota)
    }

    /// At a quota's home: lends up to `want` slots to shard `to`. When the
    /// budget is all lent out, first reclaims every shard's unused slots,
    /// so a refusal means the limit really is reached.
    async fn lend(&self, quota: Quota, to: usize, want: u32) -> u32 {
        let granted = self.quotas.borrow_mut().grant(quota, to, want);
        if granted > 0 || !self.quotas.borrow().lent_out(quota) {
            return granted;
        }
        let mine = self.quotas.borrow_mut().reclaim(quota);
        self.quotas
            .borrow_mut()
            .returned(quota, self.id as usize, mine);
        let peers: Vec<usize> = self.peers().collect();
        let replies = join_all(
            peers
                .iter()
                .map(|&peer| self.request(peer, Request::Reclaim(quota))),
        )
        .await;
        let mut quotas = self.quotas.borrow_mut();
        for (peer, reply) in peers.into_iter().zip(replies) {
            if let Some(Reply::Returned { n, .. }) = reply {
                quotas.returned(quota, peer, n);
            }
        }
        quotas.grant(quota, to, want)
    }

    /// Reserves a connection slot for the client's address `client`
    /// (`server.limits.max_connections_per_ip`, when set and the address is
    /// known), on the node (`server.limits.max_connections`) and for `app`
    /// (its `max_connections`); says which limit refused. The address is
    /// checked first, so one address over its limit never takes node slots.
    /// Returns the address's count to give back with the others.
    pub async fn admit_connection(
        &self,
        app: AppIdx,
        client: Option<IpAddr>,
    ) -> Result<Option<IpSlot>, ClientError> {
        let ip = match client {
            Some(ip) => self.admit_ip(ip).await?,
            None => None,
        };
        match self.admit_node_and_app(app).await {
            Ok(()) => Ok(ip),
            Err(why) => {
                if let Some(slot) = ip {
                    self.release_ip(slot);
                }
                Err(why)
            }
        }
    }

    async fn admit_node_and_app(&self, app: AppIdx) -> Result<(), ClientError> {
        if !self.take_slot(Quota::Node).await {
            crate::warn_limited!(
                "shard {}: connection refused, node is at max_connections {}",
                self.id,
                self.config.limits.max_connections
            );
            return Err(ClientError::OverCapacity);
        }
        if self.apps.get(app).limits.max_connections.is_some()
            && !self.take_slot(Quota::App(app)).await
        {
            self.release_slot(Quota::Node);
            crate::warn_limited!(
                "shard {}: connection refused, app {} is at its max_connections",
                self.id,
                self.apps.get(app).id
            );
            return Err(ClientError::OverQuota);
        }
        Ok(())
    }

    /// Gives back the slots taken by [`Shard::admit_connection`].
    pub fn release_connection(&self, app: AppIdx, ip: Option<IpSlot>) {
        if let Some(slot) = ip {
            self.release_ip(slot);
        }
        self.release_slot(Quota::Node);
        if self.apps.get(app).limits.max_connections.is_some() {
            self.release_slot(Quota::App(app));
        }
    }

    /// Frees one slot locally; spare slots beyond the lease's margin go
    /// back to the home.
    fn release_slot(&self, quota: Quota) {
        let back = self.quotas.borrow_mut().release(quota);
        if back > 0 {
            self.give_back(quota, back);
        }
    }

    fn give_back(&self, quota: Quota, n: u32) {
        let home = self.home_of(quota);
        if home == self.id as usize {
            self.quotas.borrow_mut().returned(quota, home, n);
        } else {
            self.post(home, ShardMsg::Return { quota, n });
        }
    }

    /// An answer that arrived after its asker stopped waiting: slots it
    /// moves are counted where they now belong.
    fn late_reply(&self, from: usize, body: Reply) {
        match body {
            Reply::Leased { quota, n } => self.quotas.borrow_mut().absorb(quota, n),
            Reply::Returned { quota, n } => self.quotas.borrow_mut().returned(quota, from, n),
            Reply::IpAdmitted { ip, admitted } => self.late_ip_reply(from, ip, admitted),
            _ => {}
        }
    }

    /// Counts one HTTP API request of `app` against its
    /// `max_api_requests_per_second`, on the app's home shard.
    pub async fn admit_api_request(&self, app: AppIdx) -> bool {
        if self.apps.get(app).max_api_requests_per_second.is_none() {
            return true;
        }
        let home = self.home_of(Quota::App(app));
        if home == self.id as usize {
            return self.count_api_request(app);
        }
        match self.request(home, Request::ApiRequest { app }).await {
            Some(Reply::Admitted(admitted)) => admitted,
            _ => true, // the home did not answer in time: let it through
        }
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
                n: self.quotas.borrow_mut().reclaim(quota),
            },
            Request::ApiRequest { app } => Reply::Admitted(self.count_api_request(app)),
            Request::Query(ask) => Reply::Query(query::answer(self, &ask)),
            Request::Metrics => Reply::Metrics(self.snapshot()),
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
                let mut pending = self.pending.borrow_mut();
                match pending.get_mut(&id) {
                    Some(slot) => {
                        slot.reply = Some(body);
                        if let Some(w) = slot.waker.take() {
                            w.wake();
                        }
                    }
                    None => {
                        drop(pending);
                        self.late_reply(from, body);
                    }
                }
            }
            ShardMsg::Return { quota, n } => self.quotas.borrow_mut().returned(quota, from, n),
            ShardMsg::IpRelease(ip) => self.uncount_ip(ip),
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
                    shard.wait_for_room(Source::CLUSTER).await;
                }
            });
        }
        // Receivers come in peer order, this shard left out.
        for (i, rx) in receivers.into_iter().enumerate() {
            let from = if i < self.id as usize { i } else { i + 1 };
            let shard = self.clone();
            spawn(async move {
                while let Some(msg) = rx.recv().await {
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
                    crate::warn_limited!("shard {}: accept failed: {e}", self.id);
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
