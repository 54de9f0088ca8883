//! The resolved structs' defaults, every value taken from the table in
//! `settings`: `ServerLimits`, `ClusterSettings`, `AppLimits`, `App::new`
//! and `WebhookSettings`. They live here rather than beside their types so
//! that `apps` and `webhooks` need not depend on `config`.

use super::settings::*;
use super::{Adapter, ClusterSettings, ServerLimits};
use crate::apps::webhook::KindSet;
use crate::apps::{App, AppLimits};
use crate::config::WebhookSettings;
use std::time::Duration;

/// `n` KiB in bytes.
pub(super) const fn kib(n: u32) -> usize {
    n as usize * 1024
}

/// `n` MiB in bytes.
pub(super) const fn mib(n: u32) -> usize {
    n as usize * 1024 * 1024
}

/// `n` seconds.
pub(super) const fn secs(n: u32) -> Duration {
    Duration::from_secs(n as u64)
}

/// `n` milliseconds.
pub(super) const fn millis(n: u32) -> Duration {
    Duration::from_millis(n as u64)
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            max_frame_bytes: kib(MAX_FRAME_KB.integer()),
            max_write_queue_bytes: kib(MAX_WRITE_QUEUE_KB.integer()),
            max_request_body_bytes: kib(MAX_REQUEST_BODY_KB.integer()),
            max_request_head_bytes: kib(MAX_REQUEST_HEAD_KB.integer()),
            max_connections: MAX_CONNECTIONS.integer(),
            max_pending_heads: MAX_PENDING_HEADS.integer(),
            head_timeout: secs(HEAD_TIMEOUT_SECS.integer()),
            max_subscriptions_per_connection: MAX_SUBSCRIPTIONS_PER_CONNECTION.integer(),
            max_write_queues_bytes: mib(MAX_WRITE_QUEUES_MB.integer()),
            max_cached_channels: MAX_CACHED_CHANNELS.integer(),
            max_cache_bytes: kib(MAX_CACHE_KB.integer()),
            // 0 is "no limit", held as `None`.
            max_connections_per_ip: Some(MAX_CONNECTIONS_PER_IP.integer()).filter(|&n| n > 0),
            client_ip_header: None,
        }
    }
}

impl Default for ClusterSettings {
    fn default() -> Self {
        ClusterSettings {
            adapter: Adapter::Local,
            prefix: CLUSTER_PREFIX.text().into(),
            node_timeout: secs(CLUSTER_NODE_TIMEOUT_SECS.integer()),
            engine_timeout: secs(CLUSTER_ENGINE_TIMEOUT_SECS.integer()),
            link_queue: CLUSTER_LINK_QUEUE.integer() as usize,
            unsubscribe_linger: millis(CLUSTER_UNSUBSCRIBE_LINGER_MS.integer()),
            secret: None,
            files: Default::default(),
        }
    }
}

impl Default for WebhookSettings {
    fn default() -> Self {
        WebhookSettings {
            batch_window: millis(WEBHOOK_BATCH_WINDOW_MS.integer()),
            batch_max: WEBHOOK_BATCH_MAX.integer() as usize,
            delay: millis(WEBHOOK_DELAY_MS.integer()),
            retry_for: secs(WEBHOOK_RETRY_FOR_SECS.integer()),
            timeout: millis(WEBHOOK_TIMEOUT_MS.integer()),
            max_queued_events: WEBHOOK_MAX_QUEUED_EVENTS.integer() as usize,
        }
    }
}

impl Default for AppLimits {
    fn default() -> Self {
        AppLimits {
            max_connections: None,
            max_event_payload_bytes: kib(APP_MAX_EVENT_PAYLOAD_KB.integer()),
            max_channels_per_event: APP_MAX_CHANNELS_PER_EVENT.integer() as usize,
            max_batch_size: APP_MAX_BATCH_SIZE.integer() as usize,
            max_event_name_length: APP_MAX_EVENT_NAME_LENGTH.integer() as usize,
            max_channel_name_length: APP_MAX_CHANNEL_NAME_LENGTH.integer() as usize,
            max_presence_members: APP_MAX_PRESENCE_MEMBERS.integer() as usize,
            max_client_events_per_second: APP_MAX_CLIENT_EVENTS_PER_SECOND.integer(),
        }
    }
}

impl App {
    /// An app with these credentials and every other setting at its default.
    pub fn new(id: String, key: String, secret: String) -> App {
        App {
            id,
            key,
            secret,
            enabled: APP_ENABLED.flag(),
            enable_client_messages: APP_ENABLE_CLIENT_MESSAGES.flag(),
            enable_user_authentication: APP_ENABLE_USER_AUTHENTICATION.flag(),
            user_authentication_timeout: APP_USER_AUTHENTICATION_TIMEOUT.integer(),
            enable_subscription_count: APP_ENABLE_SUBSCRIPTION_COUNT.flag(),
            cache_ttl: secs(APP_CACHE_TTL.integer()),
            max_api_requests_per_second: None,
            webhooks: Vec::new(),
            webhook_kinds: KindSet::default(),
            limits: AppLimits::default(),
        }
    }
}
