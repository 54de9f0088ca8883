//! Broadcast: deliver pre-built frames to a channel's subscribers on every
//! shard, skipping the one excluded socket.
//!
//! A [`Publication`] is built once (each frame encoded once), delivered to
//! the local subscribers, and the same `Arc` is handed to every other shard
//! once through the mailboxes; each shard runs [`deliver_local`] itself.
//! In a cluster, node-level events ([`publish`], [`publish_now`]) also go
//! once to the cluster link, which carries the encoded frames to the other
//! nodes; owner announcements ([`publish_on_node`]) stay on this node,
//! because every node's owners make their own.

use crate::apps::AppIdx;
use crate::cluster::NodeMsg;
use crate::pusher::socket_id::SocketId;
use crate::runtime::{Shard, ShardMsg};
use crate::ws::frame::Frame;
use std::sync::Arc;

/// Frames for one or more channels of one app, from one trigger or batch.
pub struct Publication {
    pub app: AppIdx,
    /// The connection that must not receive these frames.
    pub except: Option<SocketId>,
    /// (channel name, encoded frame), delivered in this order.
    pub frames: Vec<(Box<str>, Frame)>,
}

impl Publication {
    /// One frame for one channel.
    pub fn one(
        app: AppIdx,
        channel: Box<str>,
        frame: Frame,
        except: Option<SocketId>,
    ) -> Publication {
        Publication {
            app,
            except,
            frames: vec![(channel, frame)],
        }
    }
}

/// Delivers on this shard and posts the publication to every other shard
/// of this node, without waiting (owner announcements).
pub fn publish_on_node(shard: &Shard, publication: Publication) -> Arc<Publication> {
    let publication = Arc::new(publication);
    deliver_local(shard, &publication);
    for peer in shard.peers() {
        shard.post(peer, ShardMsg::Publish(publication.clone()));
    }
    publication
}

/// Delivers on every shard of every node, without waiting (client events).
pub fn publish_now(shard: &Shard, publication: Publication) {
    let publication = publish_on_node(shard, publication);
    if let Some(cluster) = &shard.cluster {
        cluster.send_now(&node_msg(shard, &publication));
    }
}

/// Like [`publish_now`], then waits while the cluster link or any peer's
/// outbox is backed up, so a fast HTTP publisher is slowed down instead of
/// queueing without bound.
pub async fn publish(shard: &Shard, publication: Publication) {
    let publication = publish_on_node(shard, publication);
    if let Some(cluster) = &shard.cluster {
        cluster.send(&node_msg(shard, &publication)).await;
    }
    for peer in shard.peers() {
        shard.wait_for_room(peer).await;
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

/// Queues each frame for this shard's subscribers of its channel.
pub fn deliver_local(shard: &Shard, publication: &Publication) {
    let channels = shard.channels.borrow();
    let mut conns = shard.conns.borrow_mut();
    let excluded = publication
        .except
        .filter(|id| id.nonce == shard.nonce && id.shard == shard.id)
        .filter(|id| conns.get(id.slot).is_some_and(|c| c.serial == id.serial))
        .map(|id| id.slot);
    let cap = shard.config.limits.max_write_queue_bytes;
    let now = shard.now();
    for (channel, frame) in &publication.frames {
        for &key in channels.subscribers(publication.app, channel) {
            if Some(key) != excluded {
                conns.enqueue(key, frame, cap, now);
            }
        }
    }
}
