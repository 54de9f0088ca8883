//! The app store: where the apps come from while the server runs, and how
//! a change reaches every shard.
//!
//! A store runs on a thread of its own beside the shards (never on a shard
//! thread): it reads the apps, and on every change builds the next
//! registry snapshot ([`crate::apps::AppRegistry::updated`]) and hands it
//! to the [`Publisher`], which makes it current for the threads beside the
//! shards ([`SharedApps`]) and queues it to every shard ([`AppFeed`]); each
//! shard swaps it in between two steps (`pusher::apps`).
//!
//! - `file` (the default): the config file's `[[apps]]`, read again on
//!   SIGHUP ([`file`]).
//!
//! # Invariants
//! - Snapshots reach each shard in the order they were made, and none is
//!   dropped: a feed is a bounded queue ([`FEED_QUEUE`]) and the store
//!   waits while a shard is that far behind.
//! - A change that cannot be read (a file that does not parse) changes
//!   nothing: the apps stay as they were and the log says why.

mod file;

use crate::apps::{AppRegistry, SharedApps};
use crate::config::Config;
use std::sync::Arc;

/// Snapshots queued to one shard before the store waits for it.
pub const FEED_QUEUE: usize = 16;

/// Where a shard receives the store's snapshots (`pusher::apps::follow`).
pub type AppFeed = flume::Receiver<Arc<AppRegistry>>;

/// Hands each new snapshot to the threads beside the shards and to every
/// shard.
pub struct Publisher {
    shared: Arc<SharedApps>,
    to_shards: Vec<flume::Sender<Arc<AppRegistry>>>,
}

impl Publisher {
    /// The current snapshot.
    pub fn current(&self) -> Arc<AppRegistry> {
        self.shared.current()
    }

    /// Makes `next` current everywhere (waits while a shard's feed is full).
    pub fn publish(&self, next: Arc<AppRegistry>) {
        self.shared.set(next.clone());
        for shard in &self.to_shards {
            // A shard that stopped has dropped its end: nothing to tell it.
            let _ = shard.send(next.clone());
        }
    }
}

/// The running store; [`AppStore::stop`] ends its thread.
pub struct AppStore {
    /// The current apps, for the threads beside the shards.
    pub shared: Arc<SharedApps>,
    stop: Option<Box<dyn FnOnce() + Send>>,
}

impl AppStore {
    pub fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            stop();
        }
    }
}

/// Starts the store for `shards` shards: the apps it holds now, and each
/// shard's feed of later changes. `webhooks` says whether the webhook
/// sender runs (a change adding webhooks without it is logged).
pub fn start(
    config: &Config,
    shards: usize,
    webhooks: bool,
) -> Result<(AppStore, Vec<AppFeed>), String> {
    let first = Arc::new(AppRegistry::new(config.apps.clone()));
    let shared = Arc::new(SharedApps::new(first));
    let (to_shards, feeds): (Vec<_>, Vec<_>) =
        (0..shards).map(|_| flume::bounded(FEED_QUEUE)).unzip();
    let publisher = Publisher {
        shared: shared.clone(),
        to_shards,
    };
    let stop = file::start(config.config_file.clone(), publisher, webhooks)?;
    Ok((
        AppStore {
            shared,
            stop: Some(stop),
        },
        feeds,
    ))
}

/// One log line saying what a new snapshot changed, by app id.
pub fn describe_change(old: &AppRegistry, next: &AppRegistry) -> String {
    let mut added = Vec::new();
    let mut changed = Vec::new();
    let mut deleted = Vec::new();
    for i in 0..next.len() {
        let idx = crate::apps::AppIdx(i as u32);
        let id = next.get(idx).id.as_str();
        let was = i < old.len() && old.is_live(idx);
        match (was, next.is_live(idx)) {
            (false, true) => added.push(id),
            (true, false) => deleted.push(id),
            (true, true) if !Arc::ptr_eq(old.get(idx), next.get(idx)) => changed.push(id),
            _ => {}
        }
    }
    format!(
        "added [{}], changed [{}], deleted [{}]",
        added.join(", "),
        changed.join(", "),
        deleted.join(", ")
    )
}
