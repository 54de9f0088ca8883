//! Broadcast: deliver pre-built frames to a channel's subscribers on every
//! shard, skipping the one excluded socket.
//!
//! A [`Publication`] is built once (each frame encoded once), delivered to
//! the local subscribers, and the same `Arc` is handed once through the
//! mailboxes to each other shard that has subscribers of one of its
//! channels (the node's interest table: [`super::interest`], which says
//! why no subscriber is missed); each shard runs [`deliver_local`] itself.
//! In a cluster, node-level events ([`publish`], [`publish_now`]) also go
//! once to the cluster link, which carries the encoded frames to the other
//! nodes; owner announcements ([`publish_on_node`]) stay on this node,
//! because every node's owners make their own.

use super::interest::ShardSet;
use super::shard::Shard;
use super::shard_msg::ShardMsg;
use crate::apps::AppIdx;
use crate::cluster::NodeMsg;
use crate::pusher::delivery::{self, Publisher, Source, MAX_IN_FLIGHT};
use crate::socket_id::SocketId;
use crate::ws::frame::Frame;
use std::sync::Arc;

/// Frames for one or more channels of one app, from one trigger or batch.
pub struct Publication {
    pub app: AppIdx,
    /// The connection that must not receive these frames.
    pub except: Option<SocketId>,
    /// (channel name, encoded frame), delivered in this order.
    pub frames: Vec<(Box<str>, Frame)>,
    /// Where it came from: publications of one source keep their order.
    pub source: Source,
    /// Counts it as in flight for its HTTP publisher until every shard has
    /// delivered it (see [`Publisher`]).
    pub ticket: Option<Arc<()>>,
}

impl Publication {
    /// One frame for one channel.
    pub fn one(
        app: AppIdx,
        channel: Box<str>,
        frame: Frame,
        except: Option<SocketId>,
        source: Source,
    ) -> Publication {
        Publication {
            app,
            except,
            frames: vec![(channel, frame)],
            source,
            ticket: None,
        }
    }
}

/// Delivers on this shard and posts the publication to every other shard
/// of this node with subscribers of one of its channels, without waiting
/// (owner announcements).
pub fn publish_on_node(shard: &Shard, publication: Publication) -> Arc<Publication> {
    let publication = Arc::new(publication);
    deliver_local(shard, &publication);
    if shard.count > 1 {
        let targets = interested(shard, &publication);
        for peer in targets.iter() {
            shard.post(peer, ShardMsg::Publish(publication.clone()));
        }
        let skipped = shard.count as usize - 1 - targets.len();
        shard.counters.publications_skipped(skipped as u64);
    }
    publication
}

/// The other shards that hold one of the publication's channels now.
fn interested(shard: &Shard, publication: &Publication) -> ShardSet {
    let channels = shard.channels.borrow();
    let table = channels.interest();
    let mut targets = ShardSet::default();
    for (name, _) in &publication.frames {
        table.add_to(table.key(publication.app, name), &mut targets);
    }
    targets.remove(shard.id as usize);
    targets
}

/// Delivers on every shard of every node, without waiting (client events).
pub fn publish_now(shard: &Shard, publication: Publication) {
    let publication = publish_on_node(shard, publication);
    if let Some(cluster) = &shard.cluster {
        cluster.send_now(&node_msg(shard, &publication));
    }
}

/// Like [`publish_now`] for an HTTP connection's publication, then waits
/// while the cluster link or any peer's outbox is backed up, or while the
/// connection has [`MAX_IN_FLIGHT`] publications not yet delivered by every
/// shard, so a fast HTTP publisher is slowed down instead of queueing
/// without bound.
pub async fn publish(shard: &Shard, mut publication: Publication, publisher: &Publisher) {
    publication.ticket = Some(publisher.ticket());
    let publication = publish_on_node(shard, publication);
    if let Some(cluster) = &shard.cluster {
        cluster.send(&node_msg(shard, &publication)).await;
    }
    drop(publication);
    shard.wait_for_room(publisher.source).await;
    // Other shards drop their share from their own threads: look again
    // every millisecond (only a publisher this far ahead waits here).
    while publisher.in_flight() > MAX_IN_FLIGHT {
        crate::runtime::sleep(std::time::Duration::from_millis(1)).await;
    }
}

/// The publication as the other nodes receive it (app by id, frames encoded).
fn node_msg(shard: &Shard, publication: &Publication) -> NodeMsg {
    NodeMsg::Publish {
        app: shard.apps.get(publication.app).id.as_str().into(),
        except: publication.except,
        frames: publication
            .frames
            .iter()
            .map(|(channel, frame)| (channel.clone(), frame.bytes().clone()))
            .collect(),
    }
}

/// Queues each frame for this shard's subscribers of its channel (at once,
/// or in slices for a large publication: see [`delivery`]).
pub fn deliver_local(shard: &Shard, publication: &Arc<Publication>) {
    delivery::deliver(shard, publication);
}
