//! The app registry: every app's id, key, secret, flags and limits.
//!
//! Built once at startup from [`crate::config::Config`] and shared read-only by
//! every shard behind an `Arc`; nothing in it changes while the server runs.
//! Apps are addressed inside the server by [`AppIdx`], their position here.

use crate::logging::redact::Masked;
pub mod webhook;

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;
use webhook::{KindSet, Webhook};

/// Position of an app in the [`AppRegistry`]; cheap to copy and to send between shards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AppIdx(pub u32);

/// Per-app limits on what clients and backends may send; its `Default`
/// (the table in `config::settings`) is in `config::defaults`.
#[derive(Debug, Clone)]
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
#[derive(Clone)]
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

/// All apps, looked up by id (HTTP API) or key (WebSocket path).
#[derive(Debug)]
pub struct AppRegistry {
    apps: Vec<App>,
    by_id: HashMap<String, AppIdx>,
    by_key: HashMap<String, AppIdx>,
}

impl AppRegistry {
    pub fn new(apps: Vec<App>) -> AppRegistry {
        let mut by_id = HashMap::new();
        let mut by_key = HashMap::new();
        for (i, app) in apps.iter().enumerate() {
            by_id.insert(app.id.clone(), AppIdx(i as u32));
            by_key.insert(app.key.clone(), AppIdx(i as u32));
        }
        AppRegistry {
            apps,
            by_id,
            by_key,
        }
    }

    pub fn get(&self, idx: AppIdx) -> &App {
        &self.apps[idx.0 as usize]
    }

    pub fn by_id(&self, id: &str) -> Option<AppIdx> {
        self.by_id.get(id).copied()
    }

    pub fn by_key(&self, key: &str) -> Option<AppIdx> {
        self.by_key.get(key).copied()
    }

    pub fn len(&self) -> usize {
        self.apps.len()
    }

    pub fn is_empty(&self) -> bool {
        self.apps.is_empty()
    }

    /// Whether any app has a webhook (the sender thread is started only then).
    pub fn any_webhooks(&self) -> bool {
        self.apps.iter().any(|a| !a.webhooks.is_empty())
    }
}
