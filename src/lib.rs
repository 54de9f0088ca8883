//! shardcast: a Pusher Channels (protocol 7) server, thread-per-core on glommio.
//!
//! # Architecture
//!
//! One pinned glommio executor per configured CPU ([`runtime::start_cores`])
//! runs one Pusher shard ([`pusher::shard::Shard`]), or several when the
//! CPU is listed more than once (they take turns as tasks of that one
//! executor instead of as threads at the kernel's tick). A shard owns its
//! SO_REUSEPORT listener and its state, kept in per-shard services with
//! their own methods: connections ([`pusher::conns::ConnTable`]), channels
//! ([`pusher::channels::ChannelTable`]), the state it owns for channels and
//! users hashed to it ([`pusher::owned`]), admission ([`pusher::admission`]:
//! leased connection quotas, per-address counts, API rates) and deliveries
//! in slices ([`pusher::delivery`]). Shards talk only through a full mesh
//! of bounded lock-free mailboxes ([`runtime::Mesh`]; in-thread queues
//! between shards of one executor) carrying one enum,
//! [`pusher::shard_msg::ShardMsg`]; a message to one's own shard is queued
//! like any other. The one mutable thing the shards share is the node's
//! interest table ([`pusher::interest`]: which shards have subscribers of
//! which channel), so a publication is posted only to those shards. [`config::Config`] is read-only after start; the apps
//! change while the server runs: the app store ([`app_store`], a thread
//! beside the shards) queues each new [`apps::AppRegistry`] snapshot to
//! every shard, which swaps it in ([`pusher::apps`]).
//!
//! # Layers
//!
//! Each top-level module uses only modules below it (checked by
//! `tests/integration/layering.rs`):
//!
//! ```text
//!  server                      the process: start-up, accept loops, shutdown
//!  http                        HTTP/1.1 server, the REST API, WebSocket upgrade
//!  pusher                      the protocol on one core: Shard and its services
//!  metrics                     counters and the Prometheus text
//!  webhooks · cluster ·        webhook sender thread · cluster link thread ·
//!  app_store                   the apps' store thread (file, database)
//!  ws                          WebSocket frames and handshake
//!  runtime · net               cores, mailboxes, tasks · sockets, TLS
//!  auth · config               signatures · settings
//!  apps                        the apps and their credentials
//!  channel_name · member       what clients name and declare, and its rules
//!  errors · json · logging · socket_id
//! ```
//! `runtime` and `net` know nothing of Pusher.
//!
//! # Data flow, from accept to delivery
//!
//! ```text
//!  client / backend
//!        │ TCP (kernel spreads accepts over shards: SO_REUSEPORT)
//!        ▼
//!  server::accept ──► http::serve ── [TLS handshake: net::Stream] ── httparse head
//!        │                 │
//!        │   GET /app/{key} (Upgrade)        POST /apps/{id}/events
//!        ▼                                    ▼
//!  pusher::connection::serve              http::api ── auth::verify_api_request
//!   handshake, pusher::session::open          │         (key, timestamp, HMAC, body_md5)
//!   ConnTask: read ─► ws::frame::Decoder      │ trigger body (simd-json) ─► one Frame
//!             ─► pusher::session               ▼          per (event, channel)
//!             (subscribe → ChannelTable)   pusher::broadcast::publish
//!                                              │ deliver_local: each subscriber's
//!                                              │   queue gets the same Frame (skip except)
//!                                              │ ShardMsg::Publish(Arc) ─► each other shard
//!                                              │   with subscribers (pusher::interest;
//!                                              │   mesh; peer runs deliver_local)
//!                                              │ cluster::NodeMsg ─► cluster link thread
//!                                              │   ─► Redis/NATS (the channel's event subject)
//!                                              │   ─► links of nodes with its subscribers
//!                                              ▼   ─► their shards (deliver_local)
//!  pusher::flusher ◄── Conn.out queue ◄────────┘ (queue marks the connection dirty)
//!   one pass over dirty connections: one vectored sendmsg each (frames
//!   coalesced); a full socket hands over to its ConnTask, which waits for room;
//!   a TLS connection's frames are always written (encrypted) by its ConnTask
//! ```
//!
//! [`webhooks`] reports channel events to app backends from a sender thread
//! outside the shards; [`cluster`] joins nodes through Redis or NATS from a
//! link thread outside the shards (the engines and the webhook sender are
//! cargo features, on by default: README, "Cargo features"); [`metrics`] holds each shard's counters for the
//! Prometheus endpoint; the debug console on the metrics port (`http`)
//! shows what each shard's taps ([`pusher::tap`]) report while a page
//! watches. [`logging`] writes log lines from its own thread,
//! rate-limits the ones clients can trigger, and keeps secrets out of them.

pub mod app_store;
pub mod apps;
pub mod auth;
pub mod channel_name;
pub mod cluster;
pub mod config;
pub mod errors;
pub mod http;
pub mod json;
pub mod logging;
pub mod member;
pub mod metrics;
pub mod net;
pub mod pusher;
pub mod runtime;
pub mod server;
pub mod socket_id;
pub mod webhooks;
pub mod ws;
