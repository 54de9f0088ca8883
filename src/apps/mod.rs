//! The apps: every app's id, key, secret, flags and limits, and the
//! registry that finds them.
//!
//! An [`AppRegistry`] is one immutable snapshot of all apps; a change (an
//! app added, replaced or deleted, from the app store) makes a new snapshot
//! ([`AppRegistry::updated`]) that replaces the old one wherever it is held:
//! on each shard through a queued message (`pusher::apps`), on the threads
//! beside the shards through [`SharedApps`]. Apps are addressed inside the
//! server by [`AppIdx`], their position in the registry, which an app id
//! keeps for the life of the process.

use crate::logging::redact::Masked;
mod registry;
mod shared;
pub mod webhook;

pub use registry::{AppChange, AppRegistry};
pub use shared::SharedApps;

use std::fmt;
use std::time::Duration;
use webhook::{KindSet, Webhook};

/// Position of an app in the [`AppRegistry`]; cheap to copy and to send
/// between shards. Never reused: a deleted app keeps its position, and the
/// same id added again gets it back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AppIdx(pub u32);

/// Per-app limits on what clients and backends may send; its `Default`
/// (the table in `config::settings`) is in `config::defaults`.
#[derive(Debug, Clone, PartialEq)]
pub struct AppLimits {
    /// Connections allowed for the app across all shards; `None` means no limit.
    pub max_connections: Option<u32>,
    pub max_event_payload_bytes: usize,
    pub max_channels_per_event: usize,
    pub max_batch_size: usize,
    pub max_event_name_length: usize,
    pub max_channel_name_length: usize,
    /// Distinct users per presence channel (subscription_error 4100 above it).
    pub max_presence_members: usize,
    /// Client events one connection may send per second (4301 above it).
    pub max_client_events_per_second: u32,
}

/// One app as configured (`App::new`, with every default, is in
/// `config::defaults`). Its `Debug` prints the secret as `***` and
/// webhook URLs without credentials, so `{:?}` of a config is safe to log.
#[derive(Clone, PartialEq)]
pub struct App {
    pub id: String,
    pub key: String,
    pub secret: String,
    pub enabled: bool,
    pub enable_client_messages: bool,
    /// Connections must sign in (or subscribe to a private or presence
    /// channel) within `user_authentication_timeout` seconds, else 4009.
    pub enable_user_authentication: bool,
    pub user_authentication_timeout: u32,
    /// Subscribers of non-presence channels are told the channel's count.
    pub enable_subscription_count: bool,
    /// How long a cache channel keeps its last event.
    pub cache_ttl: Duration,
    /// HTTP API requests per second across the node; `None` means no limit (429 above it).
    pub max_api_requests_per_second: Option<u32>,
    pub webhooks: Vec<Webhook>,
    /// Every event kind some webhook wants (empty without webhooks).
    pub webhook_kinds: KindSet,
    pub limits: AppLimits,
}

impl fmt::Debug for App {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("App")
            .field("id", &self.id)
            .field("key", &self.key)
            .field("secret", &Masked)
            .field("enabled", &self.enabled)
            .field("enable_client_messages", &self.enable_client_messages)
            .field(
                "enable_user_authentication",
                &self.enable_user_authentication,
            )
            .field(
                "user_authentication_timeout",
                &self.user_authentication_timeout,
            )
            .field("enable_subscription_count", &self.enable_subscription_count)
            .field("cache_ttl", &self.cache_ttl)
            .field(
                "max_api_requests_per_second",
                &self.max_api_requests_per_second,
            )
            .field("webhooks", &self.webhooks)
            .field("limits", &self.limits)
            .finish()
    }
}
