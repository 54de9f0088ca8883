//! The shard's side of sparse routing between nodes (`cluster::interest`):
//! every subscription, and every subscribe under way, holds its channel's
//! event bucket, so the cluster link stays subscribed to it on the engine;
//! a subscriber whose bucket is not open yet is told
//! `subscription_succeeded` only once the link has it open (the engine
//! confirmed the subscription), so an event published on any node after
//! that reaches it. Later subscribers of an open bucket do not wait.
//!
//! Invariant: a shard holds a bucket once per subscribe from the moment
//! [`hold`] returns until [`release`] for the same app and channel: when
//! the subscribe fails or repeats one already held, or when the
//! subscription ends.

use super::shard::Shard;
use crate::apps::AppIdx;
use crate::cluster::route::Stream;

/// Takes the hold of a subscribe of `channel`; `Some(bucket)` when the
/// subscriber must wait for the link to open it (`ClusterHandle::opened`).
/// `None` on a single node or when the bucket is open.
pub fn hold(shard: &Shard, app: AppIdx, channel: &str) -> Option<Stream> {
    let cluster = shard.cluster.as_ref()?;
    let bucket = cluster.bucket(shard.apps.get(app).id.as_str(), channel);
    match cluster.hold(bucket) {
        true => None,
        false => Some(bucket),
    }
}

/// Gives back one hold taken by [`hold`] for the same app and channel.
pub fn release(shard: &Shard, app: AppIdx, channel: &str) {
    if let Some(cluster) = &shard.cluster {
        cluster.release(cluster.bucket(shard.apps.get(app).id.as_str(), channel));
    }
}
