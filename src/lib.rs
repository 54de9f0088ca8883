//! shardcast: a Pusher Channels (protocol 7) server, thread-per-core on glommio.
//!
//! # Architecture
//!
//! One pinned glommio executor per configured CPU runs one shard
//! ([`runtime::Shard`]). A shard owns its SO_REUSEPORT listener, its
//! connections ([`pusher::conns::ConnTable`]) and its channels
//! ([`pusher::channels::ChannelTable`]); nothing mutable is shared between
//! cores. Shards talk only through a full mesh of bounded lock-free mailboxes
//! carrying one enum, [`runtime::ShardMsg`]. The app registry
//! ([`apps::AppRegistry`]) and [`config::Config`] are read-only after start.
//!
//! # Data flow, from accept to delivery
//!
//! ```text
//!  client / backend
//!        │ TCP (kernel spreads accepts over shards: SO_REUSEPORT)
//!        ▼
//!  net::Listener ──► http::serve ── [TLS handshake: net::Stream] ── httparse head
//!        │                 │
//!        │   GET /app/{key} (Upgrade)        POST /apps/{id}/events
//!        ▼                                    ▼
//!  ws::conn::serve                        http::api ── auth::verify_api_request
//!   handshake, pusher::session::open          │         (key, timestamp, HMAC, body_md5)
//!   ConnTask: read ─► ws::frame::Decoder      │ trigger body (simd-json) ─► one Frame
//!             ─► pusher::session               ▼          per (event, channel)
//!             (subscribe → ChannelTable)   pusher::broadcast::publish
//!                                              │ deliver_local: each subscriber's
//!                                              │   queue gets the same Frame (skip except)
//!                                              │ ShardMsg::Publish(Arc) ─► every other shard
//!                                              │   (mailbox; peer runs deliver_local)
//!                                              │ cluster::NodeMsg ─► cluster link thread
//!                                              │   ─► Redis/NATS ─► other nodes' links
//!                                              ▼   ─► their shards (deliver_local)
//!  pusher::flusher ◄── Conn.out queue ◄────────┘ (queue marks the connection dirty)
//!   one pass over dirty connections: one vectored sendmsg each (frames
//!   coalesced); a full socket hands over to its ConnTask, which waits for room;
//!   a TLS connection's frames are always written (encrypted) by its ConnTask
//! ```
//!
//! Layers: [`net`] and [`runtime`] hold every glommio type; [`http`] and
//! [`ws`] speak the wire protocols; [`pusher`] holds protocol state and
//! logic; [`auth`], [`config`], [`apps`] and [`errors`] are single concerns.
//! [`webhooks`] reports channel events to app backends from a sender thread
//! outside the shards; [`cluster`] joins nodes through Redis or NATS from a
//! link thread outside the shards; [`metrics`] holds each shard's counters for the
//! Prometheus endpoint. [`logging`] writes log lines from its own thread,
//! rate-limits the ones clients can trigger, and keeps secrets out of them.

pub mod apps;
pub mod auth;
pub mod cluster;
pub mod config;
pub mod errors;
pub mod http;
pub mod json;
pub mod logging;
pub mod metrics;
pub mod net;
pub mod pusher;
pub mod runtime;
pub mod webhooks;
pub mod ws;
