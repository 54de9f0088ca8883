//! The webhook sender in a build without the cargo feature `webhooks`: the
//! same names as `sender.rs`, but no queue can exist, so no shard ever
//! hands an event over, and [`start`] (called only when an app has
//! webhooks) refuses at start-up, naming the app and the missing feature.

use super::event::WebhookEvent;
use super::stats::DeliveryStats;
use crate::apps::{AppIdx, AppRegistry, SharedApps};
use crate::config::WebhookSettings;
use crate::errors::FeatureMissing;
use std::convert::Infallible;
use std::sync::Arc;

/// A shard's handle for handing events to the sender; never made here.
#[derive(Clone)]
pub struct WebhookQueue(Infallible);

impl WebhookQueue {
    pub fn send(&self, _app: AppIdx, _event: WebhookEvent) {
        match self.0 {}
    }
}

/// The sender thread; never started in this build.
pub struct SenderThread(Infallible);

impl SenderThread {
    pub fn stop(self) {
        match self.0 {}
    }
}

/// Refuses: an app has webhooks and this build cannot send them.
pub fn start(
    apps: Arc<SharedApps>,
    _settings: WebhookSettings,
) -> std::io::Result<(WebhookQueue, Arc<DeliveryStats>, SenderThread)> {
    Err(std::io::Error::other(refusal(&apps.current())))
}

/// What [`start`] says: the first app with webhooks, and the feature.
pub fn refusal(apps: &AppRegistry) -> String {
    let app = (0..apps.len() as u32)
        .map(|i| apps.get(AppIdx(i)))
        .find(|app| !app.webhooks.is_empty())
        .map_or("?", |app| app.id.as_str());
    format!("app `{app}` has webhooks, but {}", FeatureMissing::WEBHOOKS)
}
