//! [`AppRegistry`]: one immutable snapshot of every app, found by id (HTTP
//! API) or key (WebSocket path), and the next snapshot after a change.
//!
//! # Invariants
//! - An app id keeps its [`AppIdx`] for the life of the process: positions
//!   only grow, a deleted app keeps its slot (disabled, out of both maps) so
//!   connections still naming it can be closed, and the same id added again
//!   gets its slot back.
//! - `by_id` and `by_key` hold exactly the live apps, and no two live apps
//!   share an id or a key.
//! - An app unchanged by an update keeps its `Arc`, so holders can tell
//!   changed apps by pointer.

use super::{App, AppIdx};
use std::collections::HashMap;
use std::sync::Arc;

/// One change to the apps, as a store reports it.
#[derive(Debug, Clone)]
pub enum AppChange {
    /// Add the app, or replace the one with its id.
    Put(App),
    /// Delete the app with this id.
    Remove(String),
}

/// All apps at one moment.
#[derive(Debug, Clone, Default)]
pub struct AppRegistry {
    apps: Vec<Arc<App>>,
    by_id: HashMap<String, AppIdx>,
    by_key: HashMap<String, AppIdx>,
    /// Ids of deleted apps and their slots, so a re-added id gets its slot back.
    deleted: HashMap<String, AppIdx>,
    /// The longest channel name any app (deleted ones included) allows:
    /// a check of a name whose app is not known. Set by `updated`.
    longest_channel_name: usize,
}

impl AppRegistry {
    /// The registry of `apps`, which must have distinct ids and keys
    /// (`config` checks it); a repeated one is left out.
    pub fn new(apps: Vec<App>) -> AppRegistry {
        let (registry, _) =
            AppRegistry::default().updated(apps.into_iter().map(AppChange::Put).collect());
        registry
    }

    /// The app at `idx` (a deleted app's last definition, disabled).
    pub fn get(&self, idx: AppIdx) -> &Arc<App> {
        &self.apps[idx.0 as usize]
    }

    pub fn by_id(&self, id: &str) -> Option<AppIdx> {
        self.by_id.get(id).copied()
    }

    pub fn by_key(&self, key: &str) -> Option<AppIdx> {
        self.by_key.get(key).copied()
    }

    /// Slots, deleted apps included: every `AppIdx` below it is valid.
    pub fn len(&self) -> usize {
        self.apps.len()
    }

    pub fn is_empty(&self) -> bool {
        self.apps.is_empty()
    }

    /// Whether the app at `idx` still exists (it may be disabled).
    pub fn is_live(&self, idx: AppIdx) -> bool {
        self.by_id.get(&self.get(idx).id) == Some(&idx)
    }

    /// Whether the app at `idx` exists and is enabled: its clients may
    /// stay connected and its API calls are served.
    pub fn serves(&self, idx: AppIdx) -> bool {
        self.get(idx).enabled && self.is_live(idx)
    }

    /// The live apps, in slot order.
    pub fn live(&self) -> impl Iterator<Item = (AppIdx, &Arc<App>)> + '_ {
        (0..self.apps.len() as u32)
            .map(AppIdx)
            .filter(|&i| self.is_live(i))
            .map(|i| (i, self.get(i)))
    }

    /// The longest channel name any app allows (for a name whose app is
    /// not known).
    pub fn longest_channel_name(&self) -> usize {
        self.longest_channel_name
    }

    /// Whether any live app has a webhook.
    pub fn any_webhooks(&self) -> bool {
        self.live().any(|(_, a)| !a.webhooks.is_empty())
    }

    /// Whether `other` holds different apps (by pointer: an update that
    /// changed nothing keeps every `Arc`).
    pub fn differs(&self, other: &AppRegistry) -> bool {
        self.apps.len() != other.apps.len()
            || self.by_id.len() != other.by_id.len()
            || (0..self.apps.len()).any(|i| {
                let idx = AppIdx(i as u32);
                !Arc::ptr_eq(self.get(idx), other.get(idx))
                    || self.is_live(idx) != other.is_live(idx)
            })
    }

    /// The next snapshot with `changes` applied in order, and why each
    /// refused change was refused (a key another live app uses). A put
    /// equal to the current app changes nothing.
    pub fn updated(&self, changes: Vec<AppChange>) -> (AppRegistry, Vec<String>) {
        let mut next = self.clone();
        let mut refused = Vec::new();
        for change in changes {
            match change {
                AppChange::Put(app) => {
                    if let Err(why) = next.put(app) {
                        refused.push(why);
                    }
                }
                AppChange::Remove(id) => next.remove(&id),
            }
        }
        next.longest_channel_name = next
            .apps
            .iter()
            .map(|a| a.limits.max_channel_name_length)
            .max()
            .unwrap_or(0);
        (next, refused)
    }

    /// The next snapshot holding exactly `apps`: apps not among them are
    /// deleted; see [`AppRegistry::updated`].
    pub fn replaced(&self, apps: Vec<App>) -> (AppRegistry, Vec<String>) {
        let keep: std::collections::HashSet<&str> = apps.iter().map(|a| a.id.as_str()).collect();
        let mut changes: Vec<AppChange> = self
            .by_id
            .keys()
            .filter(|id| !keep.contains(id.as_str()))
            .map(|id| AppChange::Remove(id.clone()))
            .collect();
        // Removals first, so a key moved from a deleted app to a new one is free.
        changes.extend(apps.into_iter().map(AppChange::Put));
        self.updated(changes)
    }

    fn put(&mut self, app: App) -> Result<(), String> {
        if let Some(&other) = self.by_key.get(&app.key) {
            if self.get(other).id != app.id {
                return Err(format!(
                    "app {:?}: key {:?} is used by app {:?}",
                    app.id,
                    app.key,
                    self.get(other).id
                ));
            }
        }
        match self.by_id.get(&app.id).copied() {
            Some(idx) => {
                let old = &self.apps[idx.0 as usize];
                if **old == app {
                    return Ok(());
                }
                if old.key != app.key {
                    self.by_key.remove(&old.key);
                    self.by_key.insert(app.key.clone(), idx);
                }
                self.apps[idx.0 as usize] = Arc::new(app);
            }
            None => {
                let idx = self
                    .deleted
                    .remove(&app.id)
                    .unwrap_or(AppIdx(self.apps.len() as u32));
                self.by_id.insert(app.id.clone(), idx);
                self.by_key.insert(app.key.clone(), idx);
                if idx.0 as usize == self.apps.len() {
                    self.apps.push(Arc::new(app));
                } else {
                    self.apps[idx.0 as usize] = Arc::new(app);
                }
            }
        }
        Ok(())
    }

    fn remove(&mut self, id: &str) {
        let Some(idx) = self.by_id.remove(id) else {
            return;
        };
        let slot = &mut self.apps[idx.0 as usize];
        self.by_key.remove(&slot.key);
        let mut gone = (**slot).clone();
        gone.enabled = false;
        *slot = Arc::new(gone);
        self.deleted.insert(id.to_string(), idx);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(id: &str, key: &str) -> App {
        App::new(id.into(), key.into(), "s".into())
    }

    #[test]
    fn an_app_keeps_its_slot_through_changes_and_deletion() {
        let r = AppRegistry::new(vec![app("a", "ka"), app("b", "kb")]);
        assert_eq!(r.by_key("kb"), Some(AppIdx(1)));
        let mut rotated = app("b", "kb2");
        rotated.secret = "new".into();
        let (r2, refused) = r.updated(vec![AppChange::Put(rotated), AppChange::Remove("a".into())]);
        assert!(refused.is_empty());
        assert_eq!(r2.by_key("kb"), None);
        assert_eq!(r2.by_key("kb2"), Some(AppIdx(1)));
        assert_eq!(r2.get(AppIdx(1)).secret, "new");
        assert_eq!(r2.by_id("a"), None);
        assert!(!r2.serves(AppIdx(0)) && !r2.get(AppIdx(0)).enabled);
        assert!(Arc::ptr_eq(r.get(AppIdx(0)), r.get(AppIdx(0))));
        // The old snapshot is untouched.
        assert_eq!(r.get(AppIdx(1)).secret, "s");
        let (r3, _) = r2.updated(vec![
            AppChange::Put(app("c", "kc")),
            AppChange::Put(app("a", "ka")),
        ]);
        assert_eq!(r3.by_id("c"), Some(AppIdx(2)));
        assert_eq!(
            r3.by_id("a"),
            Some(AppIdx(0)),
            "a re-added id gets its slot back"
        );
        assert!(r3.serves(AppIdx(0)));
    }

    #[test]
    fn an_unchanged_app_keeps_its_arc_and_a_taken_key_is_refused() {
        let r = AppRegistry::new(vec![app("a", "ka"), app("b", "kb")]);
        let (r2, refused) = r.replaced(vec![app("a", "ka"), app("b", "kb"), app("c", "ka")]);
        assert!(Arc::ptr_eq(r.get(AppIdx(0)), r2.get(AppIdx(0))));
        assert_eq!(refused.len(), 1, "{refused:?}");
        assert!(refused[0].contains("\"ka\" is used by app \"a\""));
        assert_eq!(r2.by_id("c"), None);
        // A key freed by a deleted app may go to a new one in the same update.
        let (r3, refused) = r2.replaced(vec![app("c", "ka")]);
        assert!(refused.is_empty(), "{refused:?}");
        assert_eq!(r3.by_key("ka"), r3.by_id("c"));
        assert!(!r3.is_live(AppIdx(0)) && !r3.is_live(AppIdx(1)));
    }
}
