//! The Pusher Channels protocol (version 7): socket ids, channel names,
//! server messages, per-shard connection and channel tables, the session
//! logic for client messages, owner-held state (presence, cache, users,
//! counts), queries, and broadcast delivery.

pub mod broadcast;
pub mod cache;
pub mod channel;
pub mod channels;
pub mod client_event;
pub mod conns;
pub mod counts;
pub mod delivery;
pub mod flusher;
pub mod inbound;
pub mod inbox;
pub mod messages;
pub mod nodes;
pub mod owned;
pub mod presence;
pub mod query;
pub mod session;
pub mod signin;
pub mod socket_id;
pub mod subscribe;
pub mod users;
