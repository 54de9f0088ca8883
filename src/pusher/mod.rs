//! The Pusher Channels protocol (version 7): socket ids, channel names,
//! server messages, per-shard connection and channel tables, the session
//! logic for client messages, owner-held state (presence, cache, users,
//! counts), queries, and broadcast delivery, posted only to the shards
//! that have subscribers ([`interest`]).

pub mod admission;
pub mod apps;
pub mod broadcast;
pub mod cache;
pub mod channels;
pub mod client_event;
pub mod connection;
pub mod conns;
pub mod counts;
pub mod delivery;
pub mod flusher;
pub mod inbound;
pub mod inbox;
pub mod interest;
pub mod messages;
pub mod node_interest;
pub mod owned;
pub mod presence;
pub mod query;
pub mod session;
pub mod shard;
pub mod shard_msg;
pub mod signin;
pub mod subscribe;
pub mod tap;
pub mod users;
pub mod webhook_events;
