//! The Pusher Channels protocol (version 7): socket ids, channel names,
//! server messages, per-shard connection and channel tables, the session
//! logic for client messages, and broadcast delivery.

pub mod broadcast;
pub mod channel;
pub mod channels;
pub mod conns;
pub mod inbound;
pub mod messages;
pub mod session;
pub mod socket_id;
