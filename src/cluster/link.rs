//! The cluster link: one thread per node, outside the shards, running the
//! engine client on a current-thread tokio runtime.
//!
//! Shards hand it encoded [`NodeMsg`]s through a bounded lock-free queue
//! ([`ClusterHandle`]), each tagged with its stream (`route`: events by
//! their channel's bucket, everything else on the control stream); it
//! batches whatever queued up into one engine publish per stream. What
//! other nodes publish is decoded here once and handed to every shard
//! through its own bounded queue ([`ClusterInbox`]), as an `Arc` the shards
//! share. The link also sends this node's heartbeat and keeps the list of
//! live nodes: a node silent for `node_timeout` is announced gone to the
//! shards.
//!
//! Sparse routing: the link subscribes to an event bucket when a shard asks
//! for it (a first subscriber waits for that: [`ClusterHandle::opened`],
//! `interest`) and drops the engine subscription once no subscription of
//! this node has held the bucket for `cluster.unsubscribe_linger_ms`.

use super::admit;
use super::engine::{Engine, Publisher, Subscription};
use super::inbound::{Inbound, LinkStats, OwnerOf};
use super::interest::Interest;
use super::peers::{Admitted, Peers, Refusal};
use super::route::{self, Stream, CONTROL};
use super::seal::Seal;
use super::wire::{self, Header, NodeMsg};
use crate::apps::SharedApps;
use crate::config::ClusterSettings;
use bytes::Bytes;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, oneshot, Notify};

/// Messages waiting for one shard.
const INBOUND_QUEUE: usize = 4 * 1024;
/// An engine message carries at most this much (more goes in the next).
const BATCH_BYTES: usize = 256 * 1024;

/// The stream tag of a queue item that is not a node message but a shard
/// saying its part of full sync `gen` is queued (never published).
const SHARD_SYNCED: Stream = 0xfffe;
/// Shards' requests for event buckets waiting for the link, at most (a
/// full queue makes the asking subscriber wait for room).
const WANT_QUEUE: usize = 4096;

/// A shard asking for an event bucket, and where to answer once it is open.
type Want = (Stream, oneshot::Sender<()>);

/// A shard's way to the link; cheap to clone.
#[derive(Clone)]
pub struct ClusterHandle {
    tx: mpsc::Sender<Vec<u8>>,
    /// This node's id (random per process).
    pub node: u64,
    pub stats: Arc<LinkStats>,
    /// Other nodes heard from within the node timeout.
    pub live_nodes: Arc<AtomicUsize>,
    /// A message was dropped (queue full): what the others know of this
    /// node may be wrong until its next full sync.
    state_lost: Arc<AtomicBool>,
    /// When this node last saw one of its own envelopes come back from the
    /// engine (ms after `started`): the engine works both ways.
    echoed_ms: Arc<AtomicU64>,
    started: Instant,
    /// Which event buckets this node holds and has open.
    interest: Arc<Interest>,
    wants: mpsc::Sender<Want>,
}

/// (channel, encoded frame) of a publication.
type Frames = Vec<(Box<str>, Bytes)>;

/// Encodes `msg` as queue items, each tagged with its stream: a
/// publication goes on the stream of each of its channels
/// ([`route::stream_for_event`]; split when its channels fall in several,
/// each channel's frames keeping their order); everything else on the
/// control stream.
fn queue_items(msg: &NodeMsg) -> Vec<Vec<u8>> {
    let tagged = |stream: Stream, msg: &NodeMsg| {
        let mut out = stream.to_le_bytes().to_vec();
        wire::encode(msg, &mut out);
        out
    };
    let NodeMsg::Publish {
        app,
        except,
        frames,
    } = msg
    else {
        return vec![tagged(CONTROL, msg)];
    };
    if let [(channel, _)] = &frames[..] {
        return vec![tagged(route::stream_for_event(app, channel), msg)];
    }
    let mut groups: Vec<(Stream, Frames)> = Vec::new();
    for (channel, frame) in frames {
        let bucket = route::stream_for_event(app, channel);
        let entry = (channel.clone(), frame.clone());
        match groups.iter_mut().find(|(b, _)| *b == bucket) {
            Some((_, group)) => group.push(entry),
            None => groups.push((bucket, vec![entry])),
        }
    }
    if let [(bucket, _)] = groups[..] {
        return vec![tagged(bucket, msg)];
    }
    groups
        .into_iter()
        .map(|(bucket, frames)| {
            let part = NodeMsg::Publish {
                app: app.clone(),
                except: *except,
                frames,
            };
            tagged(bucket, &part)
        })
        .collect()
}

impl ClusterHandle {
    /// The stream of a channel of the app with id `app_id`: its event
    /// bucket, or the control stream (always heard) for a cache channel.
    pub fn bucket(&self, app_id: &str, channel: &str) -> Stream {
        route::stream_for_event(app_id, channel)
    }

    /// Takes a hold on `bucket` for a subscription (or a subscribe under
    /// way); true if the bucket is open already, else the subscriber waits
    /// for [`ClusterHandle::opened`] before it is told it succeeded.
    pub fn hold(&self, bucket: Stream) -> bool {
        bucket == CONTROL || self.interest.hold(bucket)
    }

    /// Gives back a hold taken with [`ClusterHandle::hold`].
    pub fn release(&self, bucket: Stream) {
        if bucket != CONTROL {
            self.interest.release(bucket)
        }
    }

    /// Waits until the link has `bucket` open: the engine confirmed the
    /// subscription (or could not be reached: it is made on reconnection).
    pub async fn opened(&self, bucket: Stream) {
        let (tx, rx) = oneshot::channel();
        if self.wants.send((bucket, tx)).await.is_ok() {
            let _ = rx.await;
        }
    }

    /// Queues a message for the other nodes without waiting; drops it
    /// (counted, logged) when the link is that far behind, and then has the
    /// link send a full sync once it can, so no membership or occupancy
    /// change is lost for good.
    pub fn send_now(&self, msg: &NodeMsg) {
        for item in queue_items(msg) {
            self.queue_now(item);
        }
    }

    fn queue_now(&self, item: Vec<u8>) {
        if self.tx.try_send(item).is_err() {
            self.state_lost.store(true, Ordering::Relaxed);
            let n = self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            if n.is_power_of_two() || n == 0 {
                log::warn!(
                    "cluster: link queue full, {} messages dropped so far; a full sync follows",
                    n + 1
                );
            }
        }
    }

    /// How long since this node last heard its own messages back through
    /// the engine (since start, if never): over `cluster.engine_timeout_secs`
    /// the node is cut off from the cluster and says so on `/ready`.
    pub fn engine_silence(&self) -> Duration {
        let echoed = Duration::from_millis(self.echoed_ms.load(Ordering::Relaxed));
        self.started.elapsed().saturating_sub(echoed)
    }

    /// Tells the link this shard's part of full sync `gen` is queued.
    pub async fn shard_synced(&self, gen: u64) {
        let mut out = SHARD_SYNCED.to_le_bytes().to_vec();
        out.extend_from_slice(&gen.to_le_bytes());
        let _ = self.tx.send(out).await;
    }

    /// Queues a message, waiting while the link's queue is full (HTTP
    /// publishers are slowed down instead of losing events).
    pub async fn send(&self, msg: &NodeMsg) {
        for item in queue_items(msg) {
            let _ = self.tx.send(item).await;
        }
    }
}

/// A shard's end of the link's deliveries.
pub struct ClusterInbox(mpsc::Receiver<Arc<Inbound>>);

impl ClusterInbox {
    pub async fn recv(&mut self) -> Option<Arc<Inbound>> {
        self.0.recv().await
    }
}

/// The running link thread.
pub struct LinkThread {
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl LinkThread {
    /// Publishes what is queued (briefly) and joins the thread.
    pub fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Starts the link for `shards` shards; `None` for the local adapter.
/// Shards queue node messages for it in one queue of
/// `cluster.link_queue` messages: HTTP publishers wait for room; other
/// messages are dropped when it is full (counted), and a full sync
/// follows so the others' view of this node is repaired.
#[allow(clippy::type_complexity)]
pub fn start(
    settings: &ClusterSettings,
    apps: Arc<SharedApps>,
    shards: usize,
    owner_of: OwnerOf,
) -> Result<Option<(ClusterHandle, Vec<ClusterInbox>, LinkThread)>, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cluster: cannot start the link runtime: {e}"))?;
    let Some(engine) = runtime.block_on(Engine::open(&settings.adapter, &settings.files))? else {
        return Ok(None);
    };
    let secret = settings.secret.as_ref().ok_or_else(|| {
        format!(
            "{} is required with the {} engine",
            crate::config::settings::CLUSTER_SECRET.key,
            engine.name()
        )
    })?;
    let subject = route::control_subject(&settings.prefix);
    let node = random_node_id()?;
    let (tx, rx) = mpsc::channel(settings.link_queue);
    let (wants_tx, wants_rx) = mpsc::channel(WANT_QUEUE);
    let interest = Arc::new(Interest::default());
    let (to_shards, inboxes): (Vec<_>, Vec<_>) = (0..shards)
        .map(|_| {
            let (tx, rx) = mpsc::channel(INBOUND_QUEUE);
            (tx, ClusterInbox(rx))
        })
        .unzip();
    let stats = Arc::new(LinkStats::default());
    let live_nodes = Arc::new(AtomicUsize::new(0));
    let state_lost = Arc::new(AtomicBool::new(false));
    let echoed_ms = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let (stop_tx, stop_rx) = oneshot::channel();
    let link = Link {
        node,
        tx: tx.clone(),
        seal: Seal::new(&secret.0, &subject),
        published: AtomicU64::new(0),
        published_control: AtomicU64::new(0),
        subject,
        prefix: settings.prefix.clone(),
        node_timeout: settings.node_timeout,
        linger: settings.unsubscribe_linger,
        interest: interest.clone(),
        apps,
        to_shards,
        owner_of,
        stats: stats.clone(),
        live_nodes: live_nodes.clone(),
        state_lost: state_lost.clone(),
        want_sync: Notify::new(),
        echoed_ms: echoed_ms.clone(),
        started,
    };
    log::info!(
        "cluster: node {node:016x} joins through {} on subject {}",
        engine.name(),
        link.subject
    );
    let thread = std::thread::Builder::new()
        .name("cluster-link".into())
        .spawn(move || runtime.block_on(link.run(engine, rx, wants_rx, stop_rx)))
        .map_err(|e| format!("cluster: cannot start the link thread: {e}"))?;
    let handle = ClusterHandle {
        tx,
        node,
        stats,
        live_nodes,
        state_lost,
        echoed_ms,
        started,
        interest,
        wants: wants_tx,
    };
    let thread = LinkThread {
        stop: Some(stop_tx),
        thread: Some(thread),
    };
    Ok(Some((handle, inboxes, thread)))
}

/// A random id for this node, from the OS (`getrandom`). No fallback: a
/// node id made from the clock and pid could repeat on another node started
/// at the same moment, and two nodes with one id drop each other's events,
/// so a system without randomness fails at start-up instead.
fn random_node_id() -> Result<u64, String> {
    let mut bytes = [0u8; 8];
    getrandom::getrandom(&mut bytes)
        .map_err(|e| format!("cluster: no randomness from the OS for the node id: {e}"))?;
    Ok(u64::from_le_bytes(bytes))
}

struct Link {
    node: u64,
    /// The shards' queue to the link, for the link's own messages (Hello).
    tx: mpsc::Sender<Vec<u8>>,
    /// Signs what this node publishes and checks what it receives.
    seal: Seal,
    /// The number of the last envelope this node published (from 1).
    published: AtomicU64,
    /// The number of the last control envelope this node published.
    published_control: AtomicU64,
    /// The control subject.
    subject: String,
    prefix: String,
    node_timeout: Duration,
    /// How long an unheld event bucket stays subscribed.
    linger: Duration,
    interest: Arc<Interest>,
    /// The current apps (they change while the link runs).
    apps: Arc<SharedApps>,
    to_shards: Vec<mpsc::Sender<Arc<Inbound>>>,
    /// Which shard holds a channel's state (presence members, occupancy):
    /// the protocol's placement, given at start.
    owner_of: OwnerOf,
    stats: Arc<LinkStats>,
    live_nodes: Arc<AtomicUsize>,
    state_lost: Arc<AtomicBool>,
    /// Raised when this node should send a full sync (a node joined, a node
    /// lost some of ours, or our queue dropped a message).
    want_sync: Notify,
    echoed_ms: Arc<AtomicU64>,
    started: Instant,
}

/// This node's full sync under way: its number, shards done.
struct OwnSync {
    gen: u64,
    done: usize,
}

impl Link {
    async fn run(
        self,
        engine: Engine,
        rx: mpsc::Receiver<Vec<u8>>,
        wants: mpsc::Receiver<Want>,
        stop: oneshot::Receiver<()>,
    ) {
        let this = Arc::new(self);
        let publisher = Publisher::new(engine.clone());
        let subscription = Subscription::new(engine, this.prefix.clone());
        let sending = tokio::spawn(this.clone().send_loop(publisher, rx));
        let receiving = tokio::spawn(this.clone().receive_loop(subscription, wants));
        let _ = stop.await;
        // Give queued messages a moment to go out, then stop.
        let _ = tokio::time::timeout(Duration::from_millis(500), async {
            while !sending.is_finished() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        sending.abort();
        receiving.abort();
    }

    /// Batches queued messages into engine publishes; sends heartbeats;
    /// runs this node's full syncs: `SyncStart`, every shard's state (each
    /// shard queues its part, then a [`SHARD_SYNCED`] mark), `SyncEnd`
    /// once every shard's mark came through, in queue order.
    async fn send_loop(self: Arc<Self>, mut publisher: Publisher, mut rx: mpsc::Receiver<Vec<u8>>) {
        let mut heartbeat = tokio::time::interval(self.node_timeout / 4);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut batches: Vec<(Stream, Vec<u8>, u64)> = Vec::new();
        let mut gen = 0u64;
        let mut own: Option<OwnSync> = None;
        let mut again = false;
        loop {
            let first = tokio::select! {
                msg = rx.recv() => match msg {
                    Some(m) => m,
                    None => return,
                },
                _ = heartbeat.tick() => {
                    let mut out = Vec::new();
                    wire::encode(&NodeMsg::Heartbeat, &mut out);
                    self.publish_envelope(&mut publisher, CONTROL, &out).await;
                    if self.state_lost.swap(false, Ordering::Relaxed) {
                        self.want_sync.notify_one();
                    }
                    continue;
                }
                _ = self.want_sync.notified() => {
                    if own.is_some() {
                        again = true;
                    } else {
                        gen += 1;
                        own = Some(self.begin_sync(&mut publisher, gen).await);
                    }
                    continue;
                }
            };
            // An envelope per stream; a batch of only marks publishes
            // nothing (and takes no number).
            batches.clear();
            let mut size = 0;
            let mut next = Some(first);
            while let Some(m) = next.take() {
                let stream = u16::from_le_bytes([m[0], m[1]]);
                if stream == SHARD_SYNCED {
                    let marked = m
                        .get(2..10)
                        .and_then(|b| b.try_into().ok())
                        .map(u64::from_le_bytes);
                    if let Some(sync) = own.as_mut().filter(|o| Some(o.gen) == marked) {
                        sync.done += 1;
                        if sync.done == self.to_shards.len() {
                            let mut end = CONTROL.to_le_bytes().to_vec();
                            wire::encode(&NodeMsg::SyncEnd { gen: sync.gen }, &mut end);
                            add_to_batch(&mut batches, &end);
                            own = None;
                        }
                    }
                } else {
                    size += m.len();
                    add_to_batch(&mut batches, &m);
                }
                if size < BATCH_BYTES {
                    next = rx.try_recv().ok();
                }
            }
            for (stream, body, count) in batches.drain(..) {
                self.publish_envelope(&mut publisher, stream, &body).await;
                self.stats.sent.fetch_add(count, Ordering::Relaxed);
                self.stats.publishes.fetch_add(1, Ordering::Relaxed);
            }
            if own.is_none() && again {
                again = false;
                gen += 1;
                own = Some(self.begin_sync(&mut publisher, gen).await);
            }
        }
    }

    /// Starts full sync `gen`: publishes `SyncStart` and asks every shard
    /// for its part (from a task, so the link never waits on a shard
    /// while shards wait on the link).
    async fn begin_sync(self: &Arc<Self>, publisher: &mut Publisher, gen: u64) -> OwnSync {
        let mut out = Vec::new();
        wire::encode(&NodeMsg::SyncStart { gen }, &mut out);
        self.publish_envelope(publisher, CONTROL, &out).await;
        let this = self.clone();
        tokio::spawn(async move { this.to_all(Arc::new(Inbound::Resend { gen })).await });
        OwnSync { gen, done: 0 }
    }

    /// Publishes `body` (encoded messages) on `stream` as this node's
    /// next envelope: header with its next numbers, then the signature.
    async fn publish_envelope(&self, publisher: &mut Publisher, stream: Stream, body: &[u8]) {
        let control = match stream {
            CONTROL => self.published_control.fetch_add(1, Ordering::Relaxed) + 1,
            _ => self.published_control.load(Ordering::Relaxed),
        };
        let header = Header {
            node: self.node,
            seq: self.published.fetch_add(1, Ordering::Relaxed) + 1,
            control,
            stream,
            sent_ms: now_ms(),
        };
        let mut out = Vec::with_capacity(wire::HEADER_BYTES + body.len() + super::seal::TAG_BYTES);
        wire::envelope_header(&header, &mut out);
        out.extend_from_slice(body);
        self.seal.sign(&mut out);
        let subject = match stream {
            CONTROL => self.subject.clone(),
            bucket => route::event_subject(&self.prefix, bucket),
        };
        publisher.publish(&subject, Bytes::from(out)).await;
    }

    /// Decodes what other nodes publish and hands it to every shard; keeps
    /// the list of live nodes. Nothing is read from an envelope before its
    /// signature is checked, and nothing is acted on before its sender and
    /// number are ([`Peers`]).
    async fn receive_loop(
        self: Arc<Self>,
        mut subscription: Subscription,
        mut wants: mpsc::Receiver<Want>,
    ) {
        let mut peers = Peers::new(self.node);
        // Buckets this link opened, and since when each has had no holder.
        let mut open: BTreeSet<Stream> = BTreeSet::new();
        let mut idle: HashMap<Stream, Instant> = HashMap::new();
        let mut sweep = tokio::time::interval(
            (self.linger / 2).clamp(Duration::from_millis(20), Duration::from_secs(1)),
        );
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut refusals = RefusalLog::default();
        // Other nodes' full syncs under way: their number, and whether every
        // envelope since their SyncStart arrived.
        let mut incoming: HashMap<u64, (u64, bool)> = HashMap::new();
        // Nodes a full sync was taken from (afterwards their syncs are news).
        let mut synced: HashSet<u64> = HashSet::new();
        let mut check = tokio::time::interval(self.node_timeout / 4);
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let (stream, payload) = tokio::select! {
                p = subscription.next() => p,
                Some((bucket, answer)) = wants.recv() => {
                    if !self.interest.is_open(bucket) {
                        if !subscription.add(bucket).await {
                            crate::warn_limited!(
                                "cluster: the engine did not confirm the subscription to {}; \
                                 it is made when the engine is back",
                                route::event_subject(&self.prefix, bucket)
                            );
                        }
                        peers.open_bucket(bucket);
                        self.interest.mark_open(bucket);
                        open.insert(bucket);
                        self.stats.event_subjects.store(open.len() as u64, Ordering::Relaxed);
                    }
                    let _ = answer.send(());
                    continue;
                }
                _ = sweep.tick() => {
                    let now = Instant::now();
                    let mut closing = Vec::new();
                    for &bucket in &open {
                        if self.interest.held(bucket) {
                            idle.remove(&bucket);
                            continue;
                        }
                        let since = *idle.entry(bucket).or_insert(now);
                        if now.duration_since(since) >= self.linger
                            && self.interest.close_if_idle(bucket)
                        {
                            closing.push(bucket);
                        }
                    }
                    for bucket in closing {
                        open.remove(&bucket);
                        idle.remove(&bucket);
                        subscription.remove(bucket).await;
                        self.stats.event_subjects.store(open.len() as u64, Ordering::Relaxed);
                    }
                    continue;
                }
                _ = check.tick() => {
                    let timeout = self.node_timeout;
                    for node in peers.expire(Instant::now(), timeout) {
                        incoming.remove(&node);
                        let live = peers.live();
                        self.live_nodes.store(live.len(), Ordering::Relaxed);
                        log::warn!("cluster: node {node:016x} silent for {} s, taken as gone", timeout.as_secs());
                        self.to_all(Arc::new(Inbound::Nodes(live))).await;
                        self.to_all(Arc::new(Inbound::NodeGone(node))).await;
                    }
                    continue;
                }
            };
            // What still arrives on a bucket just dropped is for nobody here.
            if stream != CONTROL && !self.interest.is_open(stream) {
                continue;
            }
            let Some(body) = self.seal.open(&payload) else {
                self.refuse(&mut refusals, Refusal::Signature, || {
                    format!(
                        "{} bytes not signed with this cluster's secret (a node with another \
                         cluster.secret, or a forgery)",
                        payload.len()
                    )
                });
                continue;
            };
            let envelope = match wire::decode(&body) {
                Ok(e) => e,
                Err(e) => {
                    self.refuse(&mut refusals, Refusal::Malformed, || e.to_string());
                    continue;
                }
            };
            let header = envelope.header;
            if header.stream != stream {
                self.refuse(&mut refusals, Refusal::Misrouted, || {
                    format!(
                        "envelope {} of node {:016x} signed for stream {} arrived on {}",
                        header.seq, header.node, header.stream, stream
                    )
                });
                continue;
            }
            let published = (
                self.published.load(Ordering::Relaxed),
                self.published_control.load(Ordering::Relaxed),
            );
            let (new, lost) = match peers.admit(&header, Instant::now(), now_ms(), published) {
                Ok(Admitted::Own) if stream != CONTROL => continue,
                Ok(Admitted::Own) => {
                    let at = self.started.elapsed().as_millis() as u64;
                    self.echoed_ms.store(at, Ordering::Relaxed);
                    continue;
                }
                Ok(Admitted::Peer { new, lost }) => (new, lost),
                Err(reason) => {
                    self.refuse(&mut refusals, reason, || {
                        format!("envelope {} of node {:016x}", header.seq, header.node)
                    });
                    continue;
                }
            };
            if lost > 0 {
                self.stats.lost.fetch_add(lost, Ordering::Relaxed);
                crate::warn_limited!(
                    "cluster: {lost} control envelopes of node {:016x} never arrived (before \
                     number {}); asking it for a full sync",
                    header.node,
                    header.control
                );
                // A sync under way is spoilt (its end will ask again);
                // otherwise ask now.
                match incoming.get_mut(&header.node) {
                    Some((_, whole)) => *whole = false,
                    None => self.ask_resync(header.node),
                }
            }
            if new {
                let live = peers.live();
                self.live_nodes.store(live.len(), Ordering::Relaxed);
                log::info!("cluster: node {:016x} is up", header.node);
                self.to_all(Arc::new(Inbound::Nodes(live))).await;
                // It may have dropped what we hold (new, or it timed us
                // out): tell it all again. And ask it to do the same (its
                // own view of us may be all that came back: our Hello is
                // lost if it does not hear the engine yet, so each side
                // also syncs on its own when it sees the other come).
                self.want_sync.notify_one();
                let mut hello = CONTROL.to_le_bytes().to_vec();
                wire::encode(&NodeMsg::Hello, &mut hello);
                let _ = self.tx.send(hello).await;
            }
            let node = header.node;
            for msg in envelope.messages {
                match msg {
                    NodeMsg::Hello => self.want_sync.notify_one(),
                    NodeMsg::Resync { node: asked } if asked == self.node => {
                        self.want_sync.notify_one()
                    }
                    NodeMsg::SyncStart { gen } => {
                        incoming.insert(node, (gen, true));
                        let quiet = !synced.contains(&node);
                        self.to_all(Arc::new(Inbound::SyncStart { node, gen, quiet }))
                            .await;
                    }
                    NodeMsg::SyncEnd { gen } => match incoming.remove(&node) {
                        Some((started, true)) if started == gen => {
                            synced.insert(node);
                            self.to_all(Arc::new(Inbound::SyncEnd { node, gen })).await;
                        }
                        _ => self.ask_resync(node),
                    },
                    _ => {}
                }
                // Answers are for one shard of one node.
                let mut answer_shard = 0;
                if let NodeMsg::Answer { to, shard, .. } = &msg {
                    if *to != self.node || *shard as usize >= self.to_shards.len() {
                        continue;
                    }
                    answer_shard = *shard as usize;
                }
                if let Some(inbound) = self.resolve(node, msg, &mut refusals) {
                    self.stats.received.fetch_add(1, Ordering::Relaxed);
                    let shards = self.to_shards.len();
                    let one = match &inbound {
                        Inbound::Member { app, channel, .. }
                        | Inbound::Occupancy { app, channel, .. }
                        | Inbound::UserOnline {
                            app,
                            user_id: channel,
                            ..
                        } => Some((self.owner_of)(*app, channel, shards as u16)),
                        Inbound::Query { id, .. } => Some(*id as usize % shards),
                        Inbound::Answer { .. } => Some(answer_shard),
                        _ => None,
                    };
                    match one {
                        Some(i) => {
                            let _ = self.to_shards[i].send(Arc::new(inbound)).await;
                        }
                        None => self.to_all(Arc::new(inbound)).await,
                    }
                }
            }
        }
    }

    /// Asks `node` for a full sync (without waiting: when the queue is
    /// full, the next gap or sync end asks again).
    fn ask_resync(&self, node: u64) {
        let mut out = CONTROL.to_le_bytes().to_vec();
        wire::encode(&NodeMsg::Resync { node }, &mut out);
        let _ = self.tx.try_send(out);
    }

    /// Counts a refusal; logs the first of each reason (the counter
    /// `cluster_messages_refused_total{reason}` has the rest).
    fn refuse(&self, log: &mut RefusalLog, reason: Refusal, what: impl FnOnce() -> String) {
        self.stats.refuse(reason);
        if !log.0[reason.index()] {
            log.0[reason.index()] = true;
            log::warn!(
                "cluster: refused a message on {} ({}): {}; further refusals are counted in \
                 cluster_messages_refused_total{{reason=\"{}\"}}",
                self.subject,
                reason.label(),
                what(),
                reason.label()
            );
        }
    }

    /// Turns a node message into what shards act on, checked
    /// ([`admit::to_inbound`]); `None` for heartbeats and refused messages
    /// (counted, the first of each reason logged).
    fn resolve(&self, node: u64, msg: NodeMsg, refusals: &mut RefusalLog) -> Option<Inbound> {
        match admit::to_inbound(&self.apps.current(), node, msg) {
            Ok(inbound) => inbound,
            Err((reason, why)) => {
                self.refuse(refusals, reason, || why);
                None
            }
        }
    }

    async fn to_all(&self, inbound: Arc<Inbound>) {
        for shard in &self.to_shards {
            let _ = shard.send(inbound.clone()).await;
        }
    }
}

/// Appends a tagged queue item's message to its stream's batch.
fn add_to_batch(batches: &mut Vec<(Stream, Vec<u8>, u64)>, item: &[u8]) {
    let stream = u16::from_le_bytes([item[0], item[1]]);
    let at = match batches.iter().position(|(s, _, _)| *s == stream) {
        Some(at) => at,
        None => {
            batches.push((stream, Vec::new(), 0));
            batches.len() - 1
        }
    };
    let (_, body, count) = &mut batches[at];
    body.extend_from_slice(&item[2..]);
    *count += 1;
}

/// Which refusal reasons were logged already (each is logged once).
#[derive(Default)]
struct RefusalLog([bool; Refusal::ALL.len()]);

/// This node's clock, ms since the Unix epoch (0 if it is before 1970).
fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn publish(channels: &[&str]) -> NodeMsg {
        NodeMsg::Publish {
            app: "app".into(),
            except: None,
            frames: channels
                .iter()
                .map(|c| (Box::from(*c), Bytes::from(c.to_string())))
                .collect(),
        }
    }

    /// (stream, channels in order) of each queue item.
    fn routed(msg: &NodeMsg) -> Vec<(Stream, Vec<String>)> {
        queue_items(msg)
            .iter()
            .map(|item| {
                let stream = u16::from_le_bytes([item[0], item[1]]);
                let mut envelope = Vec::new();
                wire::envelope_header(
                    &Header {
                        node: 1,
                        seq: 1,
                        control: 1,
                        stream,
                        sent_ms: 0,
                    },
                    &mut envelope,
                );
                envelope.extend_from_slice(&item[2..]);
                let decoded = wire::decode(&Bytes::from(envelope)).unwrap();
                let channels = decoded
                    .messages
                    .iter()
                    .flat_map(|m| match m {
                        NodeMsg::Publish { frames, .. } => {
                            frames.iter().map(|(c, _)| c.to_string()).collect()
                        }
                        _ => vec![],
                    })
                    .collect();
                (stream, channels)
            })
            .collect()
    }

    #[test]
    fn a_publication_goes_on_each_channels_stream_in_order() {
        let (a, b) = ("news", "sport");
        assert_ne!(route::bucket_of("app", a), route::bucket_of("app", b));
        assert_eq!(
            routed(&publish(&[a])),
            vec![(route::bucket_of("app", a), vec![a.to_string()])]
        );
        // Split per bucket; each channel's frames keep their order.
        let items = routed(&publish(&[a, b, a, "cache-x"]));
        assert_eq!(
            items,
            vec![
                (
                    route::bucket_of("app", a),
                    vec![a.to_string(), a.to_string()]
                ),
                (route::bucket_of("app", b), vec![b.to_string()]),
                (CONTROL, vec!["cache-x".to_string()]),
            ]
        );
        let control = routed(&NodeMsg::Heartbeat);
        assert_eq!(control, vec![(CONTROL, vec![])]);
    }
}
