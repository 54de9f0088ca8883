//! The cluster link: one thread per node, outside the shards, running the
//! engine client on a current-thread tokio runtime.
//!
//! Shards hand it encoded [`NodeMsg`]s through a bounded lock-free queue
//! ([`ClusterHandle`]); it batches whatever queued up into one engine
//! publish. What other nodes publish is decoded here once and handed to
//! every shard through its own bounded queue ([`ClusterInbox`]), as an
//! `Arc` the shards share. The link also sends this node's heartbeat and
//! keeps the list of live nodes: a node silent for `node_timeout` is
//! announced gone to the shards.

use super::engine::{self, Engine, Publisher, Subscription};
use super::inbound::{Inbound, LinkStats, OwnerOf};
use super::wire::{self, NodeMsg};
use crate::apps::SharedApps;
use crate::config::ClusterSettings;
use crate::ws::frame::Frame;
use bytes::Bytes;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// Messages waiting for the link, from all shards.
const OUTBOUND_QUEUE: usize = 16 * 1024;
/// Messages waiting for one shard.
const INBOUND_QUEUE: usize = 4 * 1024;
/// An engine message carries at most this much (more goes in the next).
const BATCH_BYTES: usize = 256 * 1024;

/// A shard's way to the link; cheap to clone.
#[derive(Clone)]
pub struct ClusterHandle {
    tx: mpsc::Sender<Vec<u8>>,
    /// This node's id (random per process).
    pub node: u64,
    pub stats: Arc<LinkStats>,
    /// Other nodes heard from within the node timeout.
    pub live_nodes: Arc<AtomicUsize>,
}

impl ClusterHandle {
    /// Queues a message for the other nodes without waiting; drops it
    /// (counted, logged) when the link is that far behind.
    pub fn send_now(&self, msg: &NodeMsg) {
        let mut out = Vec::new();
        wire::encode(msg, &mut out);
        if self.tx.try_send(out).is_err() {
            let n = self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            if n.is_power_of_two() || n == 0 {
                log::warn!(
                    "cluster: link queue full, {} messages dropped so far",
                    n + 1
                );
            }
        }
    }

    /// Queues a message, waiting while the link's queue is full (HTTP
    /// publishers are slowed down instead of losing events).
    pub async fn send(&self, msg: &NodeMsg) {
        let mut out = Vec::new();
        wire::encode(msg, &mut out);
        let _ = self.tx.send(out).await;
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
    let Some(engine) = runtime.block_on(Engine::open(&settings.adapter))? else {
        return Ok(None);
    };
    let node = random_node_id()?;
    let (tx, rx) = mpsc::channel(OUTBOUND_QUEUE);
    let (to_shards, inboxes): (Vec<_>, Vec<_>) = (0..shards)
        .map(|_| {
            let (tx, rx) = mpsc::channel(INBOUND_QUEUE);
            (tx, ClusterInbox(rx))
        })
        .unzip();
    let stats = Arc::new(LinkStats::default());
    let live_nodes = Arc::new(AtomicUsize::new(0));
    let (stop_tx, stop_rx) = oneshot::channel();
    let link = Link {
        node,
        tx: tx.clone(),
        subject: engine::subject(&settings.prefix),
        node_timeout: settings.node_timeout,
        apps,
        to_shards,
        owner_of,
        stats: stats.clone(),
        live_nodes: live_nodes.clone(),
    };
    log::info!(
        "cluster: node {node:016x} joins through {} on subject {}",
        engine.name(),
        link.subject
    );
    let thread = std::thread::Builder::new()
        .name("cluster-link".into())
        .spawn(move || runtime.block_on(link.run(engine, rx, stop_rx)))
        .map_err(|e| format!("cluster: cannot start the link thread: {e}"))?;
    let handle = ClusterHandle {
        tx,
        node,
        stats,
        live_nodes,
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
    subject: String,
    node_timeout: Duration,
    /// The current apps (they change while the link runs).
    apps: Arc<SharedApps>,
    to_shards: Vec<mpsc::Sender<Arc<Inbound>>>,
    /// Which shard holds a channel's state (presence members, occupancy):
    /// the protocol's placement, given at start.
    owner_of: OwnerOf,
    stats: Arc<LinkStats>,
    live_nodes: Arc<AtomicUsize>,
}

impl Link {
    async fn run(self, engine: Engine, rx: mpsc::Receiver<Vec<u8>>, stop: oneshot::Receiver<()>) {
        let this = Arc::new(self);
        let publisher = Publisher::new(engine.clone(), this.subject.clone());
        let subscription = Subscription::new(engine, this.subject.clone());
        let sending = tokio::spawn(this.clone().send_loop(publisher, rx));
        let receiving = tokio::spawn(this.clone().receive_loop(subscription));
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

    /// Batches queued messages into engine publishes; sends heartbeats.
    async fn send_loop(self: Arc<Self>, mut publisher: Publisher, mut rx: mpsc::Receiver<Vec<u8>>) {
        let mut heartbeat = tokio::time::interval(self.node_timeout / 4);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut batch = Vec::new();
        loop {
            let first = tokio::select! {
                msg = rx.recv() => match msg {
                    Some(m) => m,
                    None => return,
                },
                _ = heartbeat.tick() => {
                    let mut out = Vec::new();
                    wire::envelope_header(self.node, &mut out);
                    wire::encode(&NodeMsg::Heartbeat, &mut out);
                    publisher.publish(Bytes::from(out)).await;
                    continue;
                }
            };
            batch.clear();
            wire::envelope_header(self.node, &mut batch);
            batch.extend_from_slice(&first);
            let mut count = 1;
            while batch.len() < BATCH_BYTES {
                match rx.try_recv() {
                    Ok(m) => {
                        batch.extend_from_slice(&m);
                        count += 1;
                    }
                    Err(_) => break,
                }
            }
            publisher.publish(Bytes::copy_from_slice(&batch)).await;
            self.stats.sent.fetch_add(count, Ordering::Relaxed);
            self.stats.publishes.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Decodes what other nodes publish and hands it to every shard; keeps
    /// the list of live nodes.
    async fn receive_loop(self: Arc<Self>, mut subscription: Subscription) {
        let mut nodes: HashMap<u64, Instant> = HashMap::new();
        let mut check = tokio::time::interval(self.node_timeout / 4);
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let payload = tokio::select! {
                p = subscription.next() => p,
                _ = check.tick() => {
                    let timeout = self.node_timeout;
                    let gone: Vec<u64> = nodes
                        .iter()
                        .filter(|(_, seen)| seen.elapsed() > timeout)
                        .map(|(&n, _)| n)
                        .collect();
                    for node in gone {
                        nodes.remove(&node);
                        self.live_nodes.store(nodes.len(), Ordering::Relaxed);
                        log::warn!("cluster: node {node:016x} silent for {} s, taken as gone", timeout.as_secs());
                        let live = nodes.keys().copied().collect();
                        self.to_all(Arc::new(Inbound::Nodes(live))).await;
                        self.to_all(Arc::new(Inbound::NodeGone(node))).await;
                    }
                    continue;
                }
            };
            let envelope = match wire::decode(&payload) {
                Ok(e) => e,
                Err(e) => {
                    self.stats.refused.fetch_add(1, Ordering::Relaxed);
                    log::warn!("cluster: ignored a message on {}: {e}", self.subject);
                    continue;
                }
            };
            if envelope.node == self.node {
                continue;
            }
            if nodes.insert(envelope.node, Instant::now()).is_none() {
                self.live_nodes.store(nodes.len(), Ordering::Relaxed);
                log::info!("cluster: node {:016x} is up", envelope.node);
                let live = nodes.keys().copied().collect();
                self.to_all(Arc::new(Inbound::Nodes(live))).await;
                // It may have dropped what we hold (new, or it timed us out).
                let mut hello = Vec::new();
                wire::encode(&NodeMsg::Hello, &mut hello);
                let _ = self.tx.send(hello).await;
            }
            for msg in envelope.messages {
                // Answers are for one shard of one node.
                let mut answer_shard = 0;
                if let NodeMsg::Answer { to, shard, .. } = &msg {
                    if *to != self.node || *shard as usize >= self.to_shards.len() {
                        continue;
                    }
                    answer_shard = *shard as usize;
                }
                if let Some(inbound) = self.resolve(envelope.node, msg) {
                    self.stats.received.fetch_add(1, Ordering::Relaxed);
                    let shards = self.to_shards.len();
                    let one = match &inbound {
                        Inbound::Member { app, channel, .. }
                        | Inbound::Occupancy { app, channel, .. } => {
                            Some((self.owner_of)(*app, channel, shards as u16))
                        }
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

    /// Turns a node message into what shards act on (app ids to indexes,
    /// frames checked); `None` for heartbeats and refused messages.
    fn resolve(&self, node: u64, msg: NodeMsg) -> Option<Inbound> {
        let app_of = |id: &str| {
            let idx = self.apps.current().by_id(id);
            if idx.is_none() {
                self.stats.refused.fetch_add(1, Ordering::Relaxed);
                log::debug!("cluster: message for unknown app {id:?} ignored");
            }
            idx
        };
        match msg {
            NodeMsg::Heartbeat => None,
            NodeMsg::Hello => Some(Inbound::Resend),
            NodeMsg::Query {
                id,
                shard,
                app,
                ask,
            } => Some(Inbound::Query {
                from: node,
                id,
                shard,
                app: app_of(&app)?,
                ask,
            }),
            NodeMsg::Answer { id, part, .. } => Some(Inbound::Answer { id, part }),
            NodeMsg::MemberJoined {
                app,
                channel,
                user_id,
                user_info,
                sync,
            } => Some(Inbound::Member {
                node,
                app: app_of(&app)?,
                channel,
                user_id,
                joined: Some(user_info),
                sync,
            }),
            NodeMsg::Occupancy {
                app,
                channel,
                occupied,
                sync,
            } => Some(Inbound::Occupancy {
                node,
                app: app_of(&app)?,
                channel,
                occupied,
                sync,
            }),
            NodeMsg::MemberLeft {
                app,
                channel,
                user_id,
            } => Some(Inbound::Member {
                node,
                app: app_of(&app)?,
                channel,
                user_id,
                joined: None,
                sync: false,
            }),
            NodeMsg::TerminateUser { app, user_id } => Some(Inbound::TerminateUser {
                app: app_of(&app)?,
                user_id,
            }),
            NodeMsg::Publish {
                app,
                except,
                frames,
            } => {
                let app = app_of(&app)?;
                let mut checked = Vec::with_capacity(frames.len());
                for (channel, bytes) in frames {
                    match Frame::from_encoded(bytes) {
                        Some(frame) => checked.push((channel, frame)),
                        None => {
                            self.stats.refused.fetch_add(1, Ordering::Relaxed);
                            log::warn!("cluster: ignored a malformed frame for {channel:?}");
                            return None;
                        }
                    }
                }
                Some(Inbound::Publish {
                    app,
                    except,
                    frames: checked,
                })
            }
        }
    }

    async fn to_all(&self, inbound: Arc<Inbound>) {
        for shard in &self.to_shards {
            let _ = shard.send(inbound.clone()).await;
        }
    }
}
