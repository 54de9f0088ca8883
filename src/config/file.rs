//! The TOML file as written: every section with every key optional, unknown
//! keys rejected by serde with the key's name. Nothing here is validated or
//! defaulted; that is `resolve`'s job, from the table in `settings`.

use crate::errors::ConfigError;
use serde::Deserialize;
use std::collections::BTreeMap;

/// The TOML file as written.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    #[serde(default)]
    pub server: ServerSection,
    #[serde(default)]
    pub apps: Vec<AppSection>,
    #[serde(default)]
    pub cluster: ClusterSection,
    #[serde(default)]
    pub app_store: AppStoreSection,
}

/// `[app_store]`: where the apps come from; its `Debug` prints the url
/// without credentials.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct AppStoreSection {
    pub driver: Option<String>,
    pub url: Option<String>,
    pub table: Option<String>,
    pub poll_interval_ms: Option<u32>,
}

impl std::fmt::Debug for AppStoreSection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppStoreSection")
            .field("driver", &self.driver)
            .field("url", &self.url.as_deref().map(crate::logging::redact::url))
            .field("table", &self.table)
            .field("poll_interval_ms", &self.poll_interval_ms)
            .finish()
    }
}

/// `[cluster]`: how this node reaches the others; its `Debug` prints the
/// url without credentials.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ClusterSection {
    pub adapter: Option<String>,
    pub url: Option<String>,
    pub prefix: Option<String>,
    pub node_timeout_secs: Option<u32>,
    pub engine_timeout_secs: Option<u32>,
    pub link_queue: Option<u32>,
    pub unsubscribe_linger_ms: Option<u32>,
    pub secret: Option<String>,
    pub secret_file: Option<std::path::PathBuf>,
    pub ca_file: Option<std::path::PathBuf>,
    pub cert_file: Option<std::path::PathBuf>,
    pub key_file: Option<std::path::PathBuf>,
    pub credentials_file: Option<std::path::PathBuf>,
}

impl std::fmt::Debug for ClusterSection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterSection")
            .field("adapter", &self.adapter)
            .field("url", &self.url.as_deref().map(crate::logging::redact::url))
            .field("prefix", &self.prefix)
            .field("node_timeout_secs", &self.node_timeout_secs)
            .field(
                "secret",
                &self.secret.as_ref().map(|_| crate::logging::redact::Masked),
            )
            .field("secret_file", &self.secret_file)
            .field("ca_file", &self.ca_file)
            .field("cert_file", &self.cert_file)
            .field("key_file", &self.key_file)
            .field("credentials_file", &self.credentials_file)
            .finish()
    }
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    pub host: Option<String>,
    pub port: Option<u16>,
    pub cpus: Option<String>,
    pub activity_timeout: Option<u32>,
    pub pong_timeout: Option<u32>,
    /// Log filter when `RUST_LOG` is not set (`info`, `debug`, `shardcast=debug`...).
    pub log_level: Option<String>,
    #[serde(default)]
    pub limits: LimitsSection,
    #[serde(default)]
    pub webhooks: WebhooksSection,
    #[serde(default)]
    pub metrics: MetricsSection,
    #[serde(default)]
    pub console: ConsoleSection,
    /// `wss://` and `https://` on the main port when present.
    pub tls: Option<TlsFiles>,
    #[serde(default)]
    pub admin: AdminSection,
}

/// `[server.admin]`; its `Debug` hides the token.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct AdminSection {
    pub token: Option<String>,
}

impl std::fmt::Debug for AdminSection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminSection")
            .field(
                "token",
                &self.token.as_ref().map(|_| crate::logging::redact::Masked),
            )
            .finish()
    }
}

/// `[server.tls]`: PEM files of the certificate chain and its private key.
#[derive(Debug, Deserialize, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    pub cert: std::path::PathBuf,
    pub key: std::path::PathBuf,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct WebhooksSection {
    pub batch_window_ms: Option<u32>,
    pub batch_max: Option<u32>,
    pub delay_ms: Option<u32>,
    pub retry_for_secs: Option<u32>,
    pub timeout_ms: Option<u32>,
    pub max_queued_events: Option<u32>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct MetricsSection {
    pub enabled: Option<bool>,
    pub port: Option<u16>,
}

/// `[server.console]`; its `Debug` leaves the token out.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ConsoleSection {
    pub enabled: Option<bool>,
    pub token: Option<String>,
}

impl std::fmt::Debug for ConsoleSection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsoleSection")
            .field("enabled", &self.enabled)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// One `[[apps.webhooks]]` table as written; its `Debug` prints the URL
/// without credentials and the headers' names only.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSection {
    pub url: String,
    pub event_types: Vec<String>,
    pub filter: Option<FilterSection>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

impl std::fmt::Debug for WebhookSection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookSection")
            .field("url", &crate::logging::redact::url(&self.url))
            .field("event_types", &self.event_types)
            .field("filter", &self.filter)
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .finish()
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterSection {
    pub prefix: Option<String>,
    pub suffix: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct LimitsSection {
    pub max_frame_kb: Option<u32>,
    pub max_write_queue_kb: Option<u32>,
    pub max_request_body_kb: Option<u32>,
    pub max_request_head_kb: Option<u32>,
    pub max_connections: Option<u32>,
    pub max_pending_heads: Option<u32>,
    pub head_timeout_secs: Option<u32>,
    pub max_subscriptions_per_connection: Option<u32>,
    pub max_write_queues_mb: Option<u32>,
    pub max_cached_channels: Option<u32>,
    pub max_cache_kb: Option<u32>,
    pub max_connections_per_ip: Option<u32>,
    pub client_ip_header: Option<String>,
}

/// `[[apps]]` as written; its `Debug` prints the secret as `***`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppSection {
    pub id: String,
    pub key: String,
    pub secret: String,
    pub enabled: Option<bool>,
    pub enable_client_messages: Option<bool>,
    pub enable_user_authentication: Option<bool>,
    pub max_connections: Option<u32>,
    pub max_event_payload_kb: Option<u32>,
    pub max_channels_per_event: Option<u32>,
    pub max_batch_size: Option<u32>,
    pub max_event_name_length: Option<u32>,
    pub max_channel_name_length: Option<u32>,
    pub max_presence_members: Option<u32>,
    pub max_client_events_per_second: Option<u32>,
    pub user_authentication_timeout: Option<u32>,
    pub enable_subscription_count: Option<bool>,
    pub cache_ttl: Option<u32>,
    pub max_api_requests_per_second: Option<u32>,
    #[serde(default)]
    pub webhooks: Vec<WebhookSection>,
}

impl std::fmt::Debug for AppSection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppSection")
            .field("id", &self.id)
            .field("key", &self.key)
            .field("secret", &crate::logging::redact::Masked)
            .field("webhooks", &self.webhooks)
            .finish_non_exhaustive()
    }
}

/// Parses the TOML text; serde names unknown keys and mistyped values.
pub fn parse_file(text: &str) -> Result<FileConfig, ConfigError> {
    toml::from_str(text).map_err(|e| ConfigError::Toml(e.to_string()))
}
