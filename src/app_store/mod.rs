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
//!   SIGHUP (`file.rs`).
//! - `postgres`: a table with soketi's columns ([`row`]), mirrored
//!   ([`mirror`]) and followed through LISTEN/NOTIFY (`postgres.rs`).
//! - `mysql`: the same table in MySQL or MariaDB, read again every
//!   `app_store.poll_interval_ms` (`mysql.rs`).
//!
//! The database drivers mirror the whole table in memory (at most
//! [`mirror::MAX_ROWS`] rows): every lookup is answered from the mirror,
//! so a client trying random keys never reaches the database, and a
//! database outage leaves every known app working. [`StoreHealth`] tells
//! `/ready` whether the database is reachable.
//!
//! # Invariants
//! - Snapshots reach each shard in the order they were made, and none is
//!   dropped: a feed is a bounded queue ([`FEED_QUEUE`]) and the store
//!   waits while a shard is that far behind.
//! - A change that cannot be read (a file that does not parse) changes
//!   nothing: the apps stay as they were and the log says why.

pub mod admin;
mod file;
mod health;
pub mod mirror;
#[cfg(feature = "mysql")]
pub mod mysql;
#[cfg(feature = "postgres")]
pub mod postgres;
pub mod row;
#[cfg(any(feature = "postgres", feature = "mysql"))]
mod thread;

pub use admin::{AdminError, AdminHandle, AdminOp};
pub use health::StoreHealth;

/// Ends a running store and waits for its thread.
pub type StopStore = Box<dyn FnOnce() + Send>;

use crate::apps::{AppRegistry, SharedApps};
use crate::config::{Config, StoreDriver};
use crate::errors::FeatureMissing;
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
    /// Whether the database is reachable (for `/ready`).
    pub health: Arc<StoreHealth>,
    /// Where the admin API's writes go.
    pub admin: AdminHandle,
    stop: Option<StopStore>,
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
    let settings = &config.app_store;
    let health = Arc::new(StoreHealth::new(settings.driver.name()));
    let first = Arc::new(AppRegistry::new(config.apps.clone()));
    let shared = Arc::new(SharedApps::new(first));
    let (to_shards, feeds): (Vec<_>, Vec<_>) =
        (0..shards).map(|_| flume::bounded(FEED_QUEUE)).unzip();
    let publisher = Publisher {
        shared: shared.clone(),
        to_shards,
    };
    let (admin, admin_rx) = match settings.driver {
        StoreDriver::File => (AdminHandle::read_only(), None),
        _ => {
            let (handle, rx) = AdminHandle::new();
            (handle, Some(rx))
        }
    };
    if settings.driver != StoreDriver::File {
        // The file store reloads on SIGHUP; with a database there is
        // nothing to reload, and SIGHUP must not end the process (its
        // default action).
        signal_hook::flag::register(
            signal_hook::consts::SIGHUP,
            Arc::new(std::sync::atomic::AtomicBool::new(false)),
        )
        .map_err(|e| format!("app store: cannot handle SIGHUP: {e}"))?;
    }
    let stop = match (&settings.driver, admin_rx) {
        (StoreDriver::Postgres { url }, Some(rx)) => {
            let driver = postgres_driver();
            start_database(
                "postgres",
                url,
                driver,
                settings,
                publisher,
                health.clone(),
                rx,
            )?
        }
        (StoreDriver::Mysql { url }, Some(rx)) => {
            let driver = mysql_driver();
            start_database(
                "mysql",
                url,
                driver,
                settings,
                publisher,
                health.clone(),
                rx,
            )?
        }
        _ => file::start(config.config_file.clone(), publisher, webhooks)?,
    };
    Ok((
        AppStore {
            shared,
            health,
            admin,
            stop: Some(stop),
        },
        feeds,
    ))
}

/// How a database driver starts: url, table, poll interval, the mirror to
/// fill, its health and the admin API's writes.
type StartDatabase = fn(
    String,
    String,
    std::time::Duration,
    mirror::Mirror,
    Arc<StoreHealth>,
    flume::Receiver<admin::AdminRequest>,
) -> Result<StopStore, String>;

/// Starts a database store: `driver` is its `app_store.driver` name and
/// `start` the driver, or the feature this build lacks for it.
fn start_database(
    driver: &str,
    url: &str,
    start: Result<StartDatabase, FeatureMissing>,
    settings: &crate::config::AppStoreSettings,
    publisher: Publisher,
    health: Arc<StoreHealth>,
    admin: flume::Receiver<admin::AdminRequest>,
) -> Result<StopStore, String> {
    let start = start.map_err(|missing| not_built(driver, missing))?;
    let mirror = mirror::Mirror::new(settings.table.clone(), publisher);
    start(
        url.to_string(),
        settings.table.clone(),
        settings.poll_interval,
        mirror,
        health,
        admin,
    )
    .map_err(|e| format!("{e} ({})", crate::logging::redact::url(url)))
}

fn postgres_driver() -> Result<StartDatabase, FeatureMissing> {
    #[cfg(feature = "postgres")]
    return Ok(postgres::start);
    #[cfg(not(feature = "postgres"))]
    Err(FeatureMissing::POSTGRES)
}

fn mysql_driver() -> Result<StartDatabase, FeatureMissing> {
    #[cfg(feature = "mysql")]
    return Ok(mysql::start);
    #[cfg(not(feature = "mysql"))]
    Err(FeatureMissing::MYSQL)
}

/// The start-up refusal of a driver this build lacks.
fn not_built(driver: &str, missing: FeatureMissing) -> String {
    format!(
        "{} = \"{driver}\": {missing}",
        crate::config::settings::APP_STORE_DRIVER.key
    )
}

/// `shardcast app-store init`: creates the table if it is missing and
/// installs what tells the store of changes; says what it did.
pub fn init(config: &Config) -> Result<String, String> {
    let s = &config.app_store;
    match &s.driver {
        StoreDriver::File => Err(format!(
            "{} is \"file\": there is no database to initialize",
            crate::config::settings::APP_STORE_DRIVER.key
        )),
        #[cfg(feature = "postgres")]
        StoreDriver::Postgres { url } => postgres::init(url, &s.table).map(|()| {
            format!(
                "table {} is ready in {} (created if it was missing) with the change trigger on channel {}",
                s.table,
                crate::logging::redact::url(url),
                postgres::CHANNEL
            )
        }),
        #[cfg(not(feature = "postgres"))]
        StoreDriver::Postgres { .. } => Err(not_built("postgres", FeatureMissing::POSTGRES)),
        #[cfg(feature = "mysql")]
        StoreDriver::Mysql { url } => mysql::init(url, &s.table).map(|()| {
            format!(
                "table {} is ready in {} (created if it was missing); changes are read every {} ms",
                s.table,
                crate::logging::redact::url(url),
                s.poll_interval.as_millis()
            )
        }),
        #[cfg(not(feature = "mysql"))]
        StoreDriver::Mysql { .. } => Err(not_built("mysql", FeatureMissing::MYSQL)),
    }
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
