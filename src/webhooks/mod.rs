//! Webhooks: telling an app's backend what happened on its channels
//! (`channel_occupied` / `channel_vacated`, `member_added` /
//! `member_removed`, `client_event`, `cache_miss`), as signed, batched,
//! retried HTTP POSTs (reference sections 1.7 and 2.7).
//!
//! This module is the delivery side: the events ([`event`]), the table that holds vacated/removed events back for
//! `delay_ms` ([`DelayTable`]), and the sender thread ([`sender`]), which
//! batches, signs, posts and retries. Which events happen, and when, is
//! decided on the shards (`pusher::webhook_events`); shards never wait on
//! delivery.

pub mod backlog;
pub mod delays;
pub mod event;
pub mod sender;

pub use delays::DelayTable;
pub use event::WebhookEvent;
pub use sender::{DeliveryStats, SenderThread, WebhookQueue};
