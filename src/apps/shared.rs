//! [`SharedApps`]: the current registry for the threads beside the shards
//! (webhook sender, cluster link, app store), which may take a lock. The
//! shards never read it: they get each new snapshot as a queued message
//! and keep their own copy (`pusher::apps`), so their hot path takes no lock.

use super::AppRegistry;
use std::sync::{Arc, RwLock};

/// The latest registry snapshot, replaced whole by the app store.
#[derive(Debug)]
pub struct SharedApps(RwLock<Arc<AppRegistry>>);

impl SharedApps {
    pub fn new(registry: Arc<AppRegistry>) -> SharedApps {
        SharedApps(RwLock::new(registry))
    }

    /// The current snapshot (held only for the lookup that needs it).
    pub fn current(&self) -> Arc<AppRegistry> {
        // A writer never panics mid-update: a poisoned lock still holds a
        // whole snapshot.
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Makes `registry` the current snapshot.
    pub fn set(&self, registry: Arc<AppRegistry>) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = registry;
    }
}
