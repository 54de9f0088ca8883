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
//! A node never receives its own publications back.
//!
//! With the default `local` adapter there is no link and nothing here runs.

pub mod engine;
pub mod link;
pub mod wire;

pub use link::{start, ClusterHandle, ClusterInbox, Inbound, LinkStats, LinkThread};
pub use wire::{NodeMsg, RemoteAsk, RemotePart};
