//! Startup configuration: the command line, the optional TOML file and the
//! environment, resolved once into an immutable [`Config`] that the runtime
//! reads. This module owns every configurable key, so a setting is added,
//! documented and defaulted in one place (`settings`), and no other module
//! needs to know how a value was given.
//!
//! Precedence: CLI flag, then file, then the table's default. Without
//! `[[apps]]` the server runs one development app whose credentials come
//! from `SHARDCAST_APP_ID`, `SHARDCAST_APP_KEY`, `SHARDCAST_APP_SECRET`.
//!
//! - `settings`: THE table: every key's TOML name, type, default, bounds
//!   and one-line doc.
//! - `cli`: the flags ([`Cli`]); `file`: the file's sections as written
//!   ([`FileConfig`], every key optional, unknown keys refused by serde).
//! - `resolve`: validation into the resolved structs (`resolved`:
//!   [`Config`], [`ServerLimits`], [`ClusterSettings`]); `defaults`: their
//!   `Default`s, and those of `AppLimits`, `App::new` and
//!   `WebhookSettings`, from the table.
//! - `reference` (tests): README.md's tables, `--help` and
//!   `shardcast.example.toml` held to the table.

mod cli;
mod defaults;
mod file;
#[cfg(test)]
mod reference;
mod resolve;
mod resolved;
pub mod settings;
#[cfg(test)]
mod tests;

pub use cli::{AppStoreCommand, Cli, Command};
pub use file::{
    parse_file, AppSection, AppStoreSection, ClusterSection, ConsoleSection, FileConfig,
    FilterSection, LimitsSection, MetricsSection, ServerSection, TlsFiles, WebhookSection,
    WebhooksSection,
};
pub use resolve::{app_from_section, apps_from_file, parse_cpu_list};
pub use resolved::{
    Adapter, AdminToken, AppStoreSettings, ClusterSecret, ClusterSettings, Config, ConsoleSettings,
    EngineFiles, ServerLimits, StoreDriver, WebhookSettings, DEFAULT_HOST, DEFAULT_METRICS_PORT,
    DEFAULT_PORT, DEV_HOST,
};
