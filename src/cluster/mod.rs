//! Several shardcast nodes acting as one server, joined through an
//! existing message engine (`[cluster] adapter = "redis" | "nats"`).
//!
//! The node-to-node link sits beside the core-to-core mailboxes: a shard
//! that publishes a node-level event (an HTTP trigger, a client event, a
//! terminate) delivers it to its own node through the mailboxes as before,
//! and hands it once, encoded ([`wire`]), to this node's link thread
//! ([`link`]), which batches and publishes it on the engine ([`engine`]).
//! Every other node's link decodes it once and gives it to each of its
//! shards, which deliver to their own subscribers and skip the excluded
//! socket if it is theirs (a socket id names its node through its nonce).
//! Events travel sparsely: each on its channel's event stream ([`route`]),
//! which a node subscribes to only while it has subscribers there
//! ([`interest`]), so a node receives only events its clients may want,
//! plus the control stream every node hears (presence, counts, syncs,
//! heartbeats).
//!
//! With the default `local` adapter there is no link and nothing here runs.
//!
//! Each engine is a cargo feature (`redis`, `nats`, both on by default). A
//! build with neither has no link thread and no tokio: [`link`] is then a
//! stand-in (`no_link.rs`) whose handles cannot exist and whose `start`
//! refuses any adapter but `local`, naming the missing feature; the shards
//! compile against the same names either way.

pub mod admit;
#[cfg(any(feature = "redis", feature = "nats"))]
pub mod engine;
#[cfg(any(feature = "redis", feature = "nats"))]
pub mod engine_files;
pub mod inbound;
pub mod interest;
#[cfg(any(feature = "redis", feature = "nats"))]
pub mod link;
#[cfg(not(any(feature = "redis", feature = "nats")))]
#[path = "no_link.rs"]
pub mod link;
pub mod peers;
pub mod route;
pub mod seal;
pub mod wire;

use crate::config::settings::CLUSTER_ADAPTER;
use crate::errors::FeatureMissing;

pub use inbound::{Inbound, LinkStats};
pub use link::{start, ClusterHandle, ClusterInbox, LinkThread};
pub use peers::Refusal;
pub use wire::{NodeMsg, RemoteAsk, RemotePart};

/// The start-up refusal of `cluster.adapter = "{adapter}"` in a build
/// without that engine's feature.
pub fn not_built(adapter: &str, missing: FeatureMissing) -> String {
    format!("{} = \"{adapter}\": {missing}", CLUSTER_ADAPTER.key)
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_adapter_this_build_lacks_is_refused_by_name() {
        assert_eq!(
            super::not_built("redis", crate::errors::FeatureMissing::REDIS),
            "cluster.adapter = \"redis\": this build has no Redis support (cargo feature `redis`)"
        );
    }
}
