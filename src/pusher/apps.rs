//! The apps as one shard sees them ([`ShardApps`]), and what the shard does
//! when they change ([`apply`], [`follow`]).
//!
//! The app store (`app_store`) sends every shard each new registry
//! snapshot through the shard's own bounded queue ([`AppFeed`]: nothing
//! dropped, in order; each snapshot holds every app); the shard
//! swaps it in between two steps, like any other queued message. Lookups
//! on the hot path borrow the shard's snapshot for the lookup only and
//! hand out an `Rc<App>` copy made on this shard, so a request costs a
//! non-atomic count and no lock, and no cache line is shared with other
//! cores.
//!
//! # Invariants
//! - `local[i]` is `None` or a copy of `registry.get(i)`: a swap clears the
//!   copies of every app whose `Arc` changed.
//! - No borrow of `registry` or `local` outlives the call that takes it, so
//!   a swap never meets a borrow (even across an `.await` elsewhere).
//! - After [`apply`], no connection of an app the snapshot does not serve
//!   (disabled or deleted) stays open: each gets `pusher:error` 4003 and a
//!   close; connections admitted while the change was on its way are
//!   checked again before they open (`connection::serve`).

use super::admission::Quota;
use super::shard::Shard;
use crate::app_store::AppFeed;
use crate::apps::{App, AppIdx, AppRegistry};
use crate::errors::ClientError;
use std::cell::{Ref, RefCell};
use std::rc::Rc;
use std::sync::Arc;

/// Connections closed before the closing lets other tasks run.
const CLOSE_SLICE: usize = 4096;

/// This shard's snapshot of the apps and its own copies of the ones used.
pub struct ShardApps {
    registry: RefCell<Arc<AppRegistry>>,
    local: RefCell<Vec<Option<Rc<App>>>>,
}

impl ShardApps {
    pub fn new(registry: Arc<AppRegistry>) -> ShardApps {
        let local = vec![None; registry.len()];
        ShardApps {
            registry: RefCell::new(registry),
            local: RefCell::new(local),
        }
    }

    /// The app at `idx` as this shard knows it now (a deleted app's last
    /// definition, disabled). Hold it across awaits if needed: it stays the
    /// definition of the moment it was taken.
    pub fn get(&self, idx: AppIdx) -> Rc<App> {
        let mut local = self.local.borrow_mut();
        let slot = &mut local[idx.0 as usize];
        if let Some(app) = slot {
            return app.clone();
        }
        let app = Rc::new((**self.registry.borrow().get(idx)).clone());
        *slot = Some(app.clone());
        app
    }

    pub fn by_id(&self, id: &str) -> Option<AppIdx> {
        self.registry.borrow().by_id(id)
    }

    pub fn by_key(&self, key: &str) -> Option<AppIdx> {
        self.registry.borrow().by_key(key)
    }

    /// Whether the app exists and is enabled.
    pub fn serves(&self, idx: AppIdx) -> bool {
        self.registry.borrow().serves(idx)
    }

    /// Slots, deleted apps included.
    pub fn len(&self) -> usize {
        self.registry.borrow().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The snapshot, borrowed for one synchronous step (never across an await).
    pub fn registry(&self) -> Ref<'_, Arc<AppRegistry>> {
        self.registry.borrow()
    }

    /// Makes `next` this shard's snapshot; returns the one it replaces.
    fn swap(&self, next: Arc<AppRegistry>) -> Arc<AppRegistry> {
        let old = std::mem::replace(&mut *self.registry.borrow_mut(), next.clone());
        let mut local = self.local.borrow_mut();
        local.resize(next.len(), None);
        for (i, copy) in local.iter_mut().enumerate().take(old.len()) {
            let idx = AppIdx(i as u32);
            if !Arc::ptr_eq(old.get(idx), next.get(idx)) {
                *copy = None;
            }
        }
        old
    }
}

/// Applies every snapshot the store sends, in order, until the store stops.
pub async fn follow(shard: Rc<Shard>, feed: AppFeed) {
    while let Ok(next) = feed.recv_async().await {
        apply(&shard, next);
    }
}

/// Swaps in a new snapshot: tables grow for new apps, changed connection
/// limits move the quotas, and connections of apps no longer served are
/// closed with 4003 (in slices, from a task of their own).
pub fn apply(shard: &Rc<Shard>, next: Arc<AppRegistry>) {
    let old = shard.apps.swap(next.clone());
    shard.channels.borrow_mut().grow(next.len());
    shard.admission.grow(&next);
    let mut stopped = Vec::new();
    for i in 0..old.len() {
        let idx = AppIdx(i as u32);
        let (was, now) = (old.get(idx), next.get(idx));
        if Arc::ptr_eq(was, now) {
            continue;
        }
        if was.limits.max_connections != now.limits.max_connections {
            let back = shard
                .admission
                .quotas
                .borrow_mut()
                .set_max(idx, now.limits.max_connections);
            if back > 0 {
                shard.give_back(Quota::App(idx), back);
            }
        }
        if old.serves(idx) && !next.serves(idx) {
            stopped.push(idx);
        }
    }
    if !stopped.is_empty() {
        let shard = shard.clone();
        crate::runtime::spawn(async move { close_apps(&shard, &stopped).await });
    }
}

/// Closes every connection of `apps` with `pusher:error` 4003.
async fn close_apps(shard: &Shard, apps: &[AppIdx]) {
    let keys = shard.conns.borrow().keys();
    for slice in keys.chunks(CLOSE_SLICE) {
        // An app served again meanwhile keeps its connections.
        let apps: Vec<AppIdx> = apps
            .iter()
            .copied()
            .filter(|&a| !shard.apps.serves(a))
            .collect();
        {
            let now = shard.now();
            let mut conns = shard.conns.borrow_mut();
            for &key in slice {
                if conns.get(key).is_some_and(|c| apps.contains(&c.app)) {
                    conns.close(key, &ClientError::AppDisabled, now);
                }
            }
        }
        crate::runtime::yield_now().await;
    }
}
