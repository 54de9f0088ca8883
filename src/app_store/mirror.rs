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
        // Refusals of rows gone or fixed are forgotten after a full read.
        self.refused = refused;
        self.apply(&current, changes);
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
        self.refused.extend(refused);
        self.apply(&current, changes);
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

    fn apply(&self, current: &AppRegistry, changes: Vec<AppChange>) {
        let (next, conflicts) = current.updated(changes);
        for why in conflicts {
            crate::warn_limited!("app store: row refused, that app is unchanged: {why}");
        }
        if next.differs(current) {
            log::info!("app store: {}", super::describe_change(current, &next));
            self.publisher.publish(Arc::new(next));
        }
    }
}
