//! Startup configuration: the command line, the optional TOML file and the
//! environment, resolved once into an immutable [`Config`].
//!
//! Two layers, as in ripgrep's flags pipeline: [`Cli`] and [`FileConfig`] are
//! the raw inputs (every key optional, unknown keys rejected by serde with the
//! key's name), and [`Config`] is the validated result the runtime reads.
//! Precedence: CLI flag, then file, then built-in default. Without a file the
//! server runs one development app whose credentials come from
//! `SHARDCAST_APP_ID`, `SHARDCAST_APP_KEY`, `SHARDCAST_APP_SECRET`.

mod cli;
mod defaults;
mod file;
#[cfg(test)]
mod reference;
mod resolve;
mod resolved;
pub mod settings;

pub use cli::Cli;
pub use file::{
    parse_file, AppSection, ClusterSection, FileConfig, FilterSection, LimitsSection,
    MetricsSection, ServerSection, TlsFiles, WebhookSection, WebhooksSection,
};
pub use resolve::parse_cpu_list;
pub use resolved::{
    Adapter, ClusterSettings, Config, ServerLimits, DEFAULT_HOST, DEFAULT_METRICS_PORT,
    DEFAULT_PORT, DEV_HOST,
};
