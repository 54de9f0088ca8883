//! Cross-core mailboxes: a full mesh of bounded lock-free SPSC rings
//! (glommio shared channels), one per ordered pair of shards, created before
//! the executors start. [`ShardMsg`] is the only type that crosses cores.
//!
//! Order: messages from one shard to another arrive in the order sent.
//! Backpressure: a full ring makes the sender wait (the HTTP API path);
//! a gate per peer lets only one task wait at a time, because glommio's
//! `send` assumes a single waiter.

use crate::apps::AppIdx;
use crate::pusher::broadcast::Publication;
use glommio::channels::shared_channel::{
    self, ConnectedReceiver, ConnectedSender, SharedReceiver, SharedSender,
};
use glommio::sync::Semaphore;
use std::sync::Arc;

/// Messages per ring; a full ring pauses the sender, never drops.
pub const MAILBOX_CAPACITY: usize = 1024;

/// Everything one shard can tell another.
pub enum ShardMsg {
    /// Deliver these frames to local subscribers, skipping `except`.
    Publish(Arc<Publication>),
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
    /// A connection of `app` counted by this (owner) shard has closed.
    ConnectionClosed {
        app: AppIdx,
    },
}

pub enum Request {
    /// May one more connection of `app` open? (asked of the app's owner shard)
    AdmitConnection { app: AppIdx },
}

pub enum Reply {
    Admitted(bool),
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

/// A shard's connected senders (one per peer, `None` for itself).
pub struct Mailboxes {
    senders: Vec<Option<ConnectedSender<ShardMsg>>>,
    gates: Vec<Semaphore>,
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
        let mut connected_senders = Vec::with_capacity(senders.len());
        for task in senders {
            connected_senders.push(task.await);
        }
        let mut connected_receivers = Vec::with_capacity(receivers.len());
        for task in receivers {
            connected_receivers.push(task.await);
        }
        let gates = connected_senders
            .iter()
            .map(|_| Semaphore::new(1))
            .collect();
        (
            Mailboxes {
                senders: connected_senders,
                gates,
            },
            connected_receivers,
        )
    }

    /// Sends to `peer`, waiting for room if its ring is full. Only the holder
    /// of the peer's gate touches its sender, so glommio's single-waiter
    /// `send` never finds its slot taken.
    pub async fn send(&self, peer: usize, msg: ShardMsg) {
        let Some(sender) = &self.senders[peer] else {
            return;
        };
        let Ok(_permit) = self.gates[peer].acquire_permit(1).await else {
            return;
        };
        // An error means the peer is gone: the process is shutting down.
        let _ = sender.send(msg).await;
    }
}
