//! [`Mirror`]: a database table of apps mirrored into the registry. The
//! database drivers hand it rows (all of them, or the rows of some ids);
//! it validates each row (`row`), builds the next snapshot and publishes
//! it when anything changed.
//!
//! A row that does not validate is refused and logged once (until it
//! changes); the app it names stays as it was, or stays away if it was
//! never valid, so a bad edit never takes a working app down.

use super::row::{app_of, Row, Value};
use super::Publisher;
use crate::apps::{AppChange, AppRegistry};
use std::collections::HashSet;
use std::sync::Arc;

/// Most rows read from a table; the rest are left out (and logged).
pub const MAX_ROWS: usize = 100_000;

pub struct Mirror {
    table: String,
    publisher: Publisher,
    /// Refusals logged already, so a poll does not log them again.
    refused: HashSet<String>,
}

impl Mirror {
    pub fn new(table: String, publisher: Publisher) -> Mirror {
        Mirror {
            table,
            publisher,
            refused: HashSet::new(),
        }
    }

    /// The whole table was read: apps it no longer has are deleted.
    pub fn replace_all(&mut self, rows: Vec<Row>) {
        if rows.len() > MAX_ROWS {
            crate::warn_limited!(
                "app store: table {} has more than {MAX_ROWS} rows; the rest are not served",
                self.table
            );
        }
        let current = self.publisher.current();
        let (mut changes, seen, refused) = self.changes_of(rows.into_iter().take(MAX_ROWS));
        changes.extend(
            current
                .live()
                .filter(|(_, app)| !seen.contains(app.id.as_str()))
                .map(|(_, app)| AppChange::Remove(app.id.clone())),
        );
        let conflicts = self.apply(&current, changes);
        // Refusals of rows gone or fixed are forgotten after a full read.
        self.refused = refused;
        self.refused.extend(conflicts);
    }

    /// The rows of `ids` were read again: ids without a row are deleted.
    pub fn update(&mut self, ids: &HashSet<String>, rows: Vec<Row>) {
        let current = self.publisher.current();
        let (mut changes, seen, refused) = self.changes_of(rows.into_iter());
        changes.extend(
            ids.iter()
                .filter(|id| !seen.contains(id.as_str()))
                .map(|id| AppChange::Remove(id.clone())),
        );
        let conflicts = self.apply(&current, changes);
        self.refused.extend(refused);
        self.refused.extend(conflicts);
    }

    /// Puts for the valid rows, every id seen (valid or not), and the
    /// refusals (each logged unless it was logged before).
    fn changes_of(
        &self,
        rows: impl Iterator<Item = Row>,
    ) -> (Vec<AppChange>, HashSet<String>, HashSet<String>) {
        let mut changes = Vec::new();
        let mut seen = HashSet::new();
        let mut refused = HashSet::new();
        for row in rows {
            if let Some(Value::Text(id)) = row.get("id") {
                seen.insert(id.clone());
            }
            match app_of(&self.table, &row) {
                Ok(app) => changes.push(AppChange::Put(app)),
                Err(why) => {
                    if !self.refused.contains(&why) {
                        log::error!("app store: row refused, that app is unchanged: {why}");
                    }
                    refused.insert(why);
                }
            }
        }
        (changes, seen, refused)
    }

    /// Publishes the next apps when they differ; returns the rows refused
    /// for a key another app has (logged unless logged before).
    fn apply(&self, current: &AppRegistry, changes: Vec<AppChange>) -> Vec<String> {
        let (next, conflicts) = current.updated(changes);
        for why in &conflicts {
            if !self.refused.contains(why) {
                log::error!("app store: row refused, that app is unchanged: {why}");
            }
        }
        if next.differs(current) {
            log::info!("app store: {}", super::describe_change(current, &next));
            self.publisher.publish(Arc::new(next));
        }
        conflicts
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apps::SharedApps;

    fn row(id: &str, key: &str) -> Row {
        [
            ("id", Value::Text(id.into())),
            ("key", Value::Text(key.into())),
            ("secret", Value::Text("s".into())),
        ]
        .into_iter()
        .collect()
    }

    fn mirror() -> (Mirror, Arc<SharedApps>, flume::Receiver<Arc<AppRegistry>>) {
        let shared = Arc::new(SharedApps::new(Arc::new(AppRegistry::default())));
        let (tx, rx) = flume::unbounded();
        let publisher = Publisher {
            shared: shared.clone(),
            to_shards: vec![tx],
        };
        (Mirror::new("apps".into(), publisher), shared, rx)
    }

    #[test]
    fn a_bad_row_keeps_the_app_and_an_unchanged_table_publishes_nothing() {
        let (mut m, shared, feed) = mirror();
        m.replace_all(vec![row("a", "ka"), row("b", "kb")]);
        assert_eq!(feed.len(), 1);
        // b's key turns bad, c takes a's key: both refused, a and b stay.
        m.replace_all(vec![row("a", "ka"), row("b", "k/b"), row("c", "ka")]);
        let apps = shared.current();
        assert_eq!(apps.get(apps.by_id("b").unwrap()).key, "kb");
        assert!(apps.by_id("c").is_none());
        assert_eq!(m.refused.len(), 2, "{:?}", m.refused);
        let published = feed.len();
        // The same table again: nothing new to publish, nothing to log again.
        m.replace_all(vec![row("a", "ka"), row("b", "k/b"), row("c", "ka")]);
        assert_eq!(feed.len(), published);
        // A row gone from the table: the app is deleted.
        m.replace_all(vec![row("b", "kb")]);
        let apps = shared.current();
        assert!(apps.by_id("a").is_none() && apps.by_id("b").is_some());
        assert!(m.refused.is_empty(), "fixed rows are forgotten");
        // A notification for ids: a missing row deletes, a present one puts.
        let ids: HashSet<String> = ["b".to_string(), "d".to_string()].into();
        m.update(&ids, vec![row("d", "kd")]);
        let apps = shared.current();
        assert!(apps.by_id("b").is_none() && apps.by_id("d").is_some());
    }
}
