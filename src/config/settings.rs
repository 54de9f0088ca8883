//! The one definition of every configurable key: its TOML key, type,
//! default, bounds and a one-line doc. The resolved structs take their
//! defaults from here (`defaults`), `resolve` checks values against the
//! bounds here, and a test holds README.md's table and
//! `shardcast.example.toml` to this table (`reference`).

/// What a key holds in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Integer,
    Bool,
    Text,
    /// A file path (relative to the config file's folder).
    Path,
    /// A list of strings.
    List,
    /// An inline table.
    Table,
}

/// What a left-out key means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preset {
    Integer(u32),
    Bool(bool),
    Text(&'static str),
    /// No value; the words say what that means ("no limit", "none").
    Absent(&'static str),
    /// The key must be given.
    Required,
    /// The value depends on something else: `(when, value)` pairs, the
    /// first being the usual case.
    Choice(&'static [(&'static str, &'static str)]),
    /// Computed at start; the words say how.
    Computed(&'static str),
}

/// The values a key accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bounds {
    /// An integer from `min` to `max`, both included.
    Range { min: u32, max: u32 },
    /// One (or, for a list, several) of these words.
    OneOf(&'static [&'static str]),
    /// A rule `resolve` checks, in words.
    Rule(&'static str),
    /// Any value of the key's type.
    Any,
}

/// One configurable key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setting {
    /// Dotted TOML key; `apps[]` stands for each `[[apps]]` table and
    /// `apps[].webhooks[]` for each `[[apps.webhooks]]` table.
    pub key: &'static str,
    pub kind: Kind,
    pub preset: Preset,
    pub bounds: Bounds,
    pub doc: &'static str,
}

const NO_MAX: u32 = u32::MAX;
const PORT_MAX: u32 = u16::MAX as u32;

const fn at_least(min: u32) -> Bounds {
    Bounds::Range { min, max: NO_MAX }
}

const fn any_port() -> Bounds {
    Bounds::Range {
        min: 0,
        max: PORT_MAX,
    }
}

impl Setting {
    /// The integer default. Asking a setting without one is a bug: a panic,
    /// at compile time where a const asks.
    pub const fn integer(&self) -> u32 {
        match self.preset {
            Preset::Integer(n) => n,
            _ => panic!("setting has no integer default"),
        }
    }

    /// The boolean default.
    pub const fn flag(&self) -> bool {
        match self.preset {
            Preset::Bool(b) => b,
            _ => panic!("setting has no boolean default"),
        }
    }

    /// The text default.
    pub const fn text(&self) -> &'static str {
        match self.preset {
            Preset::Text(t) => t,
            _ => panic!("setting has no text default"),
        }
    }

    /// The value of a `Choice`'s `index`th case.
    pub const fn case(&self, index: usize) -> &'static str {
        match self.preset {
            Preset::Choice(cases) => cases[index].1,
            _ => panic!("setting has no choice of defaults"),
        }
    }

    /// The key's last part, as written inside its table.
    pub fn name(&self) -> &'static str {
        self.key.rsplit('.').next().unwrap_or(self.key)
    }

    /// Whether `value` is within the bounds (always for non-integers).
    pub fn allows(&self, value: u32) -> bool {
        match self.bounds {
            Bounds::Range { min, max } => (min..=max).contains(&value),
            _ => true,
        }
    }

    /// The accepted values in words, for errors.
    pub fn allowed(&self) -> String {
        match self.bounds {
            Bounds::Range { min, max: NO_MAX } => format!("{min} or more"),
            Bounds::Range { min, max } => format!("{min} to {max}"),
            Bounds::OneOf(words) => {
                let quoted: Vec<String> = words.iter().map(|w| format!("\"{w}\"")).collect();
                format!("one of {}", quoted.join(", "))
            }
            Bounds::Rule(rule) => rule.to_string(),
            Bounds::Any => "any value".to_string(),
        }
    }

    /// The default as README's table writes it: a number or `true`/`false`
    /// bare, text in backticks, words for the rest.
    pub fn default_text(&self) -> String {
        match self.preset {
            Preset::Integer(n) => n.to_string(),
            Preset::Bool(b) => b.to_string(),
            Preset::Text(t) => format!("`{t}`"),
            Preset::Absent(words) | Preset::Computed(words) => words.to_string(),
            Preset::Required => "required".to_string(),
            Preset::Choice(cases) => {
                let parts: Vec<String> = cases
                    .iter()
                    .map(|(when, value)| format!("`{value}` {when}"))
                    .collect();
                parts.join("; ")
            }
        }
    }
}

/// The webhook event types, as `event_types` names them.
pub const EVENT_TYPES: &[&str] = &[
    "channel_occupied",
    "channel_vacated",
    "member_added",
    "member_removed",
    "client_event",
    "cache_miss",
    "subscription_count",
];

/// Defines each setting as a `pub const` and lists them all in [`ALL`], so a
/// setting cannot be defined without being in the table.
macro_rules! settings {
    ($($name:ident: $key:literal, $kind:ident, $preset:expr, $bounds:expr, $doc:literal;)*) => {
        $(
            #[doc = $doc]
            pub const $name: Setting = Setting {
                key: $key,
                kind: Kind::$kind,
                preset: $preset,
                bounds: $bounds,
                doc: $doc,
            };
        )*
        /// Every setting, in the order README.md's table lists them.
        pub const ALL: &[Setting] = &[$($name),*];
    };
}

use Bounds::{Any, OneOf, Rule};
use Preset::{Absent, Bool, Choice, Computed, Integer, Required, Text};

settings! {
    HOST: "server.host", Text,
        Choice(&[("with `[[apps]]`", "0.0.0.0"), ("for the development app", "127.0.0.1")]),
        Any, "address for WebSocket clients and the HTTP API (`--host`)";
    PORT: "server.port", Integer, Integer(6001), any_port(),
        "port for WebSocket clients and the HTTP API; 0 picks a free one (`--port`)";
    CPUS: "server.cpus", Text, Computed("every CPU the process may run on"),
        Rule("a CPU list such as `0,2-3`"), "one pinned shard per listed CPU (`--cpus`)";
    ACTIVITY_TIMEOUT: "server.activity_timeout", Integer, Integer(120), at_least(1),
        "seconds of client silence before the server sends pusher:ping";
    PONG_TIMEOUT: "server.pong_timeout", Integer, Integer(30), at_least(1),
        "seconds to wait for the pong before closing with 4201";
    LOG_LEVEL: "server.log_level", Text, Text("info"),
        Rule("a level (error, warn, info, debug, trace) or a filter like `shardcast=debug`"),
        "log filter when RUST_LOG is not set";
    MAX_FRAME_KB: "server.limits.max_frame_kb", Integer, Integer(64), at_least(1),
        "largest client WebSocket message, KiB (1009 above it)";
    MAX_WRITE_QUEUE_KB: "server.limits.max_write_queue_kb", Integer, Integer(4096), at_least(1),
        "KiB queued for one client before it is closed as a slow consumer (4100)";
    MAX_REQUEST_BODY_KB: "server.limits.max_request_body_kb", Integer, Integer(4096), at_least(1),
        "largest HTTP API body, KiB (413)";
    MAX_REQUEST_HEAD_KB: "server.limits.max_request_head_kb", Integer, Integer(16), at_least(1),
        "largest HTTP request head, KiB (431)";
    MAX_CONNECTIONS: "server.limits.max_connections", Integer, Integer(100_000), at_least(1),
        "WebSocket connections on the whole node (4100 above it)";
    MAX_CONNECTIONS_PER_IP: "server.limits.max_connections_per_ip", Integer, Integer(0),
        at_least(0), "open WebSocket connections from one client address; 0 is no limit";
    CLIENT_IP_HEADER: "server.limits.client_ip_header", Text, Absent("none"),
        Rule("an HTTP header name (letters, digits and !#$%&'*+-.^_`|~)"),
        "the header a trusted proxy sets with the client address (its last entry counts)";
    MAX_SUBSCRIPTIONS_PER_CONNECTION: "server.limits.max_subscriptions_per_connection", Integer,
        Integer(200), at_least(1), "channels one connection may be subscribed to at once";
    MAX_WRITE_QUEUES_MB: "server.limits.max_write_queues_mb", Integer, Integer(1024), at_least(1),
        "MiB queued for all clients together, node-wide";
    MAX_PENDING_HEADS: "server.limits.max_pending_heads", Integer, Integer(1024), at_least(1),
        "connections whose request is still arriving, node-wide (503 above it)";
    HEAD_TIMEOUT_SECS: "server.limits.head_timeout_secs", Integer, Integer(30), at_least(1),
        "seconds for a whole request, head and body (408 after it)";
    MAX_CACHED_CHANNELS: "server.limits.max_cached_channels", Integer, Integer(100_000),
        at_least(1), "cache channels keeping a last event, node-wide";
    MAX_CACHE_KB: "server.limits.max_cache_kb", Integer, Integer(262_144), at_least(1),
        "KiB of kept cache events, node-wide";
    WEBHOOK_BATCH_WINDOW_MS: "server.webhooks.batch_window_ms", Integer, Integer(50), at_least(0),
        "webhook events closer together than this go in one request";
    WEBHOOK_BATCH_MAX: "server.webhooks.batch_max", Integer, Integer(100), at_least(1),
        "events per webhook request";
    WEBHOOK_DELAY_MS: "server.webhooks.delay_ms", Integer, Integer(3000), at_least(0),
        "how long channel_vacated and member_removed wait";
    WEBHOOK_RETRY_FOR_SECS: "server.webhooks.retry_for_secs", Integer, Integer(300), at_least(0),
        "how long a failed webhook request is retried";
    WEBHOOK_TIMEOUT_MS: "server.webhooks.timeout_ms", Integer, Integer(10_000), at_least(1),
        "time limit of one webhook request";
    WEBHOOK_MAX_QUEUED_EVENTS: "server.webhooks.max_queued_events", Integer, Integer(10_000),
        at_least(1), "events waiting per webhook; beyond it the oldest are dropped";
    METRICS_ENABLED: "server.metrics.enabled", Bool, Bool(false), Any,
        "serve Prometheus /metrics and /usage on their own port";
    METRICS_PORT: "server.metrics.port", Integer, Integer(9601), any_port(),
        "the metrics port (on server.host; not the main port)";
    CONSOLE_ENABLED: "server.console.enabled", Bool, Bool(false), Any,
        "serve the live debug console at /console on the metrics port (needs server.metrics)";
    CONSOLE_TOKEN: "server.console.token", Text, Absent("none"),
        Rule("16 to 256 printable ASCII characters without spaces; required when enabled"),
        "the token the console asks for (sent as `Authorization: Bearer`)";
    ADMIN_TOKEN: "server.admin.token", Text, Absent("none: the admin API is off"),
        Rule("16 to 256 printable ASCII characters"),
        "bearer token of the admin API (/admin/apps on the metrics port)";
    TLS_CERT: "server.tls.cert", Path, Absent("none"), Rule("a PEM certificate chain"),
        "certificate chain; with it the main port speaks only wss:// and https://";
    TLS_KEY: "server.tls.key", Path, Absent("none"), Rule("the certificate's PEM private key"),
        "private key of server.tls.cert";
    CLUSTER_ADAPTER: "cluster.adapter", Text, Text("local"), OneOf(&["local", "redis", "nats"]),
        "how this node joins others: one node, Redis or NATS";
    CLUSTER_URL: "cluster.url", Text,
        Choice(&[("for redis", "redis://127.0.0.1:6379"), ("for nats", "nats://127.0.0.1:4222")]),
        Rule("a redis:// or nats:// URL matching the adapter; none for local"),
        "the engine's URL";
    CLUSTER_PREFIX: "cluster.prefix", Text, Text("shardcast"),
        Rule("1 to 64 characters of A-Z, a-z, 0-9, '-' and '_'"),
        "names the engine channel, so clusters can share an engine";
    CLUSTER_NODE_TIMEOUT_SECS: "cluster.node_timeout_secs", Integer, Integer(10), at_least(1),
        "how long a silent node is kept";
    CLUSTER_ENGINE_TIMEOUT_SECS: "cluster.engine_timeout_secs", Integer, Integer(10), at_least(1),
        "without its own messages back from the engine this long, /ready answers 503";
    CLUSTER_LINK_QUEUE: "cluster.link_queue", Integer, Integer(16_384),
        Bounds::Range { min: 1, max: 1 << 20 },
        "node messages waiting for the cluster link";
    CLUSTER_UNSUBSCRIBE_LINGER_MS: "cluster.unsubscribe_linger_ms", Integer, Integer(2_000),
        Bounds::Range { min: 0, max: 600_000 },
        "how long an event subject without local subscribers stays subscribed on the engine";
    CLUSTER_SECRET: "cluster.secret", Text,
        Absent("none"),
        Rule("16 or more bytes, the same on every node"),
        "signs every message between nodes";
    CLUSTER_SECRET_FILE: "cluster.secret_file", Path, Absent("none"),
        Rule("a file holding the secret (one trailing newline is ignored)"),
        "cluster.secret read from a file instead";
    CLUSTER_CA_FILE: "cluster.ca_file", Path, Absent("the system's roots"),
        Rule("PEM certificates"),
        "CA to trust for rediss:// or NATS TLS";
    CLUSTER_CERT_FILE: "cluster.cert_file", Path, Absent("none"),
        Rule("a PEM certificate chain, with cluster.key_file"),
        "client certificate for the engine";
    CLUSTER_KEY_FILE: "cluster.key_file", Path, Absent("none"),
        Rule("the client certificate's PEM private key"),
        "private key of cluster.cert_file";
    CLUSTER_CREDENTIALS_FILE: "cluster.credentials_file", Path, Absent("none"),
        Rule("a NATS .creds file (JWT and NKey seed)"),
        "NATS credentials (adapter nats only)";
    APP_STORE_DRIVER: "app_store.driver", Text, Text("file"), OneOf(&["file", "postgres", "mysql"]),
        "where the apps come from: this file's [[apps]] (reloaded on SIGHUP) or a database table";
    APP_STORE_URL: "app_store.url", Text, Absent("none (required for postgres and mysql)"),
        Rule("a postgres:// or mysql:// URL matching the driver; credentials allowed, never logged"),
        "the database holding the apps table";
    APP_STORE_TABLE: "app_store.table", Text, Text("apps"),
        Rule("1 to 63 characters of a-z, A-Z, 0-9 and '_', not starting with a digit"),
        "the apps table (soketi's columns)";
    APP_STORE_POLL_INTERVAL_MS: "app_store.poll_interval_ms", Integer, Integer(2000),
        Bounds::Range { min: 100, max: 3_600_000 },
        "mysql: how often the table is read again for changes";
    APP_ID: "apps[].id", Text, Required, Rule("printable ASCII without `/` or `?`, unique"),
        "the id in /apps/{id}/...";
    APP_KEY: "apps[].key", Text, Required, Rule("printable ASCII without `/` or `?`, unique"),
        "the key in ws://host/app/{key}";
    APP_SECRET: "apps[].secret", Text, Required, Rule("not empty"),
        "signs API requests and channel auth";
    APP_ENABLED: "apps[].enabled", Bool, Bool(true), Any,
        "disabled: connections refused with 4003, API with 403";
    APP_ENABLE_CLIENT_MESSAGES: "apps[].enable_client_messages", Bool, Bool(false), Any,
        "allow client- events on private and presence channels";
    APP_ENABLE_USER_AUTHENTICATION: "apps[].enable_user_authentication", Bool, Bool(false), Any,
        "connections must sign in within user_authentication_timeout, else 4009";
    APP_USER_AUTHENTICATION_TIMEOUT: "apps[].user_authentication_timeout", Integer, Integer(30),
        at_least(1), "seconds to sign in";
    APP_ENABLE_SUBSCRIPTION_COUNT: "apps[].enable_subscription_count", Bool, Bool(false), Any,
        "send pusher_internal:subscription_count";
    APP_CACHE_TTL: "apps[].cache_ttl", Integer, Integer(1800), at_least(1),
        "seconds a cache channel keeps its last event";
    APP_MAX_PRESENCE_MEMBERS: "apps[].max_presence_members", Integer, Integer(100), at_least(1),
        "distinct users per presence channel";
    APP_MAX_CLIENT_EVENTS_PER_SECOND: "apps[].max_client_events_per_second", Integer, Integer(10),
        at_least(1), "client events per connection per second (4301 above it)";
    APP_MAX_CONNECTIONS: "apps[].max_connections", Integer, Absent("no limit"), at_least(1),
        "connections across all shards (4004 above it)";
    APP_MAX_EVENT_PAYLOAD_KB: "apps[].max_event_payload_kb", Integer, Integer(100), at_least(1),
        "KiB of an event's data (413 above it)";
    APP_MAX_CHANNELS_PER_EVENT: "apps[].max_channels_per_event", Integer, Integer(100),
        at_least(1), "channels in one trigger (400 above it)";
    APP_MAX_BATCH_SIZE: "apps[].max_batch_size", Integer, Integer(10), at_least(1),
        "events in one batch_events (400 above it)";
    APP_MAX_EVENT_NAME_LENGTH: "apps[].max_event_name_length", Integer, Integer(200),
        at_least(1), "characters of an event name (400 above it)";
    APP_MAX_CHANNEL_NAME_LENGTH: "apps[].max_channel_name_length", Integer, Integer(200),
        at_least(1), "characters of a channel name";
    APP_MAX_API_REQUESTS_PER_SECOND: "apps[].max_api_requests_per_second", Integer,
        Absent("no limit"), at_least(1), "HTTP API requests across the node (429 above it)";
    WEBHOOK_URL: "apps[].webhooks[].url", Text, Required, Rule("an http:// or https:// URL"),
        "where the webhook's requests go";
    WEBHOOK_EVENT_TYPES: "apps[].webhooks[].event_types", List, Required, OneOf(EVENT_TYPES),
        "the events this webhook wants (at least one)";
    WEBHOOK_FILTER: "apps[].webhooks[].filter", Table, Absent("none"),
        Rule("`{ prefix = \"...\", suffix = \"...\" }`"), "only channels whose name matches";
    WEBHOOK_HEADERS: "apps[].webhooks[].headers", Table, Absent("none"),
        Rule("header names except X-Pusher-*, Content-Type and Content-Length"),
        "extra request headers";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_setting_has_a_doc_and_a_default_within_its_bounds() {
        for s in ALL {
            assert!(!s.doc.trim().is_empty(), "{} has no doc", s.key);
            match (s.preset, s.bounds) {
                (Preset::Integer(n), Bounds::Range { min, max }) => {
                    assert!(min <= max, "{}: empty range", s.key);
                    assert!(s.allows(n), "{}: default {n} not in {}", s.key, s.allowed());
                    assert_eq!(s.kind, Kind::Integer, "{}", s.key);
                }
                (Preset::Integer(_), _) => panic!("{}: an integer without a range", s.key),
                (Preset::Text(t), Bounds::OneOf(words)) => {
                    assert!(words.contains(&t), "{}: `{t}` not one of {words:?}", s.key)
                }
                (Preset::Bool(_), _) => assert_eq!(s.kind, Kind::Bool, "{}", s.key),
                _ => {}
            }
            if s.kind == Kind::Integer {
                assert!(
                    matches!(s.bounds, Bounds::Range { .. }),
                    "{}: an integer without a range",
                    s.key
                );
            }
        }
    }

    #[test]
    fn keys_are_unique() {
        for (i, s) in ALL.iter().enumerate() {
            assert!(ALL[..i].iter().all(|t| t.key != s.key), "{} twice", s.key);
        }
    }

    #[test]
    fn event_types_are_the_webhook_event_kinds() {
        let kinds: Vec<&str> = crate::apps::webhook::EventKind::ALL
            .iter()
            .map(|k| k.name())
            .collect();
        assert_eq!(kinds, EVENT_TYPES);
    }
}
