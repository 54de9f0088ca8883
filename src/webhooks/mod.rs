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
//!
//! The sender is the cargo feature `webhooks` (on by default; it brings
//! tokio and reqwest). Without it [`sender`] is a stand-in
//! (`no_sender.rs`) whose queue cannot exist and whose `start` refuses at
//! start-up, naming the feature; the shards compile the same either way.

pub mod backlog;
pub mod delays;
pub mod event;
#[cfg(feature = "webhooks")]
pub mod sender;
#[cfg(not(feature = "webhooks"))]
#[path = "no_sender.rs"]
pub mod sender;
pub mod stats;

pub use delays::DelayTable;
pub use event::WebhookEvent;
pub use sender::{SenderThread, WebhookQueue};
pub use stats::{DeliveryLog, DeliveryNote, DeliveryStats};
