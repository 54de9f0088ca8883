//! The resolved settings the runtime reads: [`Config`], [`ServerLimits`],
//! [`ClusterSettings`] and the cluster [`Adapter`].

use super::{settings, TlsFiles};
use crate::apps::App;
use std::time::Duration;

/// The engine joining the nodes of a cluster; its `Debug` prints the url
/// without credentials.
#[derive(Clone, PartialEq, Eq)]
pub enum Adapter {
    /// One node, no other process.
    Local,
    /// Redis pub/sub at `url` (`redis://host:port`).
    Redis { url: String },
    /// NATS at `url` (`nats://host:port`).
    Nats { url: String },
}

impl std::fmt::Debug for Adapter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Adapter::Local => f.write_str("Local"),
            Adapter::Redis { .. } | Adapter::Nats { .. } => {
                let name = if matches!(self, Adapter::Redis { .. }) {
                    "Redis"
                } else {
                    "Nats"
                };
                f.debug_struct(name)
                    .field("url", &self.url_for_logs().unwrap_or_default())
                    .finish()
            }
        }
    }
}

impl Adapter {
    /// The engine's url for logs, without credentials (`user:pass@`).
    pub fn url_for_logs(&self) -> Option<String> {
        let url = match self {
            Adapter::Local => return None,
            Adapter::Redis { url } | Adapter::Nats { url } => url,
        };
        // `***@` says credentials were configured; the query (`?password=`)
        // is dropped like the rest (`logging::redact::url`).
        let logged = crate::logging::redact::url(url);
        Some(match (url.find("://"), url.rfind('@')) {
            (Some(scheme), Some(at)) if at > scheme => {
                let (scheme, rest) = logged.split_at(scheme + 3);
                format!("{scheme}***@{rest}")
            }
            _ => logged,
        })
    }
}

/// Resolved `[cluster]` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterSettings {
    pub adapter: Adapter,
    /// Names this cluster's channels/subjects, so clusters can share an engine.
    pub prefix: String,
    /// A node not heard from for this long is taken as gone.
    pub node_timeout: Duration,
    /// Without its own messages back from the engine this long, the node
    /// reports itself not ready.
    pub engine_timeout: Duration,
    /// Node messages waiting for the link, at most.
    pub link_queue: usize,
    /// An event subject without local subscribers stays subscribed on the
    /// engine this long (so flapping subscriptions do not churn it).
    pub unsubscribe_linger: Duration,
    /// Signs node messages; `None` only with the local adapter.
    pub secret: Option<ClusterSecret>,
    /// TLS and credential files for the engine connection.
    pub files: EngineFiles,
}

/// The shared cluster secret (16 bytes or more); `Debug` prints `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct ClusterSecret(pub Vec<u8>);

impl std::fmt::Debug for ClusterSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", crate::logging::redact::Masked)
    }
}

/// Files the engine connection uses, with paths already resolved against
/// the config file's folder; checked when the link starts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EngineFiles {
    /// PEM CA certificates to trust (instead of the system's roots).
    pub ca: Option<std::path::PathBuf>,
    /// Client certificate chain and its key (both or neither).
    pub cert: Option<std::path::PathBuf>,
    pub key: Option<std::path::PathBuf>,
    /// A NATS `.creds` file.
    pub credentials: Option<std::path::PathBuf>,
}

/// Server-wide limits that protect the process, not a particular app.
#[derive(Debug, Clone)]
pub struct ServerLimits {
    /// Largest inbound WebSocket message (after reassembly); larger closes with 1009.
    pub max_frame_bytes: usize,
    /// Bytes queued for one socket before it is closed as a slow consumer (4100).
    pub max_write_queue_bytes: usize,
    /// Hard cap on an HTTP request body (413 above it).
    pub max_request_body_bytes: usize,
    /// Hard cap on an HTTP request head (431 above it).
    pub max_request_head_bytes: usize,
    /// WebSocket connections on the whole node (4100 above it).
    pub max_connections: u32,
    /// Connections whose request (head or body) is still arriving,
    /// node-wide (shared out evenly between shards; 503 above it).
    pub max_pending_heads: u32,
    /// How long a client may take to send a whole request, head and body
    /// (408 and close after it).
    pub head_timeout: Duration,
    /// Channels one connection may be subscribed to (or joining) at once;
    /// one more gets `pusher:subscription_error` (4100) for that channel.
    pub max_subscriptions_per_connection: u32,
    /// Bytes queued for all clients together, node-wide (shared out evenly
    /// between shards); past it, clients with more than 64 KiB queued are
    /// closed as slow consumers (4100).
    pub max_write_queues_bytes: usize,
    /// Cache channels with a kept event, node-wide (shared out evenly
    /// between shards); beyond it the entries closest to expiry are evicted.
    pub max_cached_channels: u32,
    /// Bytes of kept cache events, node-wide (shared out like the above).
    pub max_cache_bytes: usize,
    /// Open WebSocket connections from one client address on the node; one
    /// more is refused with 4100. `None` (the default, or 0): no limit, and
    /// no address is looked at. Meant for clients that connect directly.
    pub max_connections_per_ip: Option<u32>,
    /// The request header a trusted proxy sets with the client's address
    /// (its last comma-separated entry counts); `None` (the default): the
    /// TCP peer address counts and headers are ignored, so clients cannot
    /// claim another address.
    pub client_ip_header: Option<String>,
}

/// The validated configuration every shard reads.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file the settings came from (`--config`), read again for its
    /// apps on SIGHUP.
    pub config_file: Option<std::path::PathBuf>,
    pub host: String,
    pub port: u16,
    /// One entry per shard: the CPU it is pinned to.
    pub cpus: Vec<usize>,
    /// Seconds of client silence before the server pings (advertised to clients).
    pub activity_timeout: u32,
    /// Seconds to wait for a pong after a server ping before closing with 4201.
    pub pong_timeout: u32,
    pub limits: ServerLimits,
    pub apps: Vec<App>,
    /// True when no config file named any app and the built-in one is served.
    pub dev_app: bool,
    pub webhooks: WebhookSettings,
    /// The Prometheus port (`/metrics`, `/usage`), when enabled.
    pub metrics_port: Option<u16>,
    /// The live debug console on the metrics port, when enabled.
    pub console: Option<ConsoleSettings>,
    /// The admin API's bearer token (`/admin/apps` on the metrics port);
    /// `None`: the admin API is off.
    pub admin_token: Option<AdminToken>,
    /// Certificate and key for TLS on the main port; plain when `None`.
    pub tls: Option<TlsFiles>,
    pub cluster: ClusterSettings,
    pub app_store: AppStoreSettings,
    /// `server.log_level`, used when `RUST_LOG` is not set.
    pub log_level: Option<String>,
    /// The development app is served and no host was given, so the server
    /// listens on loopback only: its credentials are public.
    pub dev_loopback: bool,
}

/// `[server.console]` when enabled: the token every console request must carry.
#[derive(Clone, PartialEq, Eq)]
pub struct ConsoleSettings {
    pub token: String,
}

impl std::fmt::Debug for ConsoleSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ConsoleSettings { token: <redacted> }")
    }
}

pub const DEFAULT_PORT: u16 = settings::PORT.integer() as u16;
pub const DEFAULT_HOST: &str = settings::HOST.case(0);
/// Where the development app is served when no host is given.
pub const DEV_HOST: &str = settings::HOST.case(1);
pub const DEFAULT_METRICS_PORT: u16 = settings::METRICS_PORT.integer() as u16;

/// `server.admin.token`; its `Debug` prints `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct AdminToken(pub String);

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", crate::logging::redact::Masked)
    }
}

/// Where the apps come from (`[app_store]`); its `Debug` prints the url
/// without credentials.
#[derive(Clone, PartialEq, Eq)]
pub enum StoreDriver {
    /// The config file's `[[apps]]`, read again on SIGHUP.
    File,
    /// A PostgreSQL table, followed through LISTEN/NOTIFY.
    Postgres { url: String },
    /// A MySQL or MariaDB table, read again every `poll_interval`.
    Mysql { url: String },
}

impl StoreDriver {
    /// The driver's name as configured.
    pub fn name(&self) -> &'static str {
        match self {
            StoreDriver::File => "file",
            StoreDriver::Postgres { .. } => "postgres",
            StoreDriver::Mysql { .. } => "mysql",
        }
    }

    /// The database URL for logs, without credentials or query.
    pub fn url_for_logs(&self) -> Option<String> {
        match self {
            StoreDriver::File => None,
            StoreDriver::Postgres { url } | StoreDriver::Mysql { url } => {
                Some(crate::logging::redact::url(url))
            }
        }
    }
}

impl std::fmt::Debug for StoreDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.url_for_logs() {
            None => f.write_str(self.name()),
            Some(url) => write!(f, "{}({url})", self.name()),
        }
    }
}

/// `[app_store]`, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppStoreSettings {
    pub driver: StoreDriver,
    /// The apps table: checked to be a plain identifier, so it can be
    /// written into SQL.
    pub table: String,
    /// How often the mysql driver reads the table again.
    pub poll_interval: Duration,
}

/// `[server.webhooks]`: how every webhook is delivered. Its `Default` (the
/// table in `config::settings`) is in `config::defaults`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookSettings {
    /// Events closer together than this go in one request.
    pub batch_window: Duration,
    /// At most this many events per request.
    pub batch_max: usize,
    /// `channel_vacated` and `member_removed` wait this long, and are
    /// dropped if the channel or member comes back meanwhile.
    pub delay: Duration,
    /// A failing request is retried (with backoff) for this long.
    pub retry_for: Duration,
    /// Time limit of one request.
    pub timeout: Duration,
    /// Events waiting per webhook while its batches are posted or retried;
    /// beyond it the oldest waiting events are dropped (and counted).
    pub max_queued_events: usize,
}
