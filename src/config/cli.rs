//! The command line: the flags that override the file's `[server]` keys.
//! Each flag's help ends with its default, taken from the settings table.

use super::settings::{Setting, CPUS, HOST, PORT};
use clap::{Parser, Subcommand};
use std::path::PathBuf;

/// The command line.
#[derive(Debug, Parser, Default)]
#[command(
    name = "shardcast",
    version,
    about = "A thread-per-core Pusher Channels server"
)]
pub struct Cli {
    /// TOML configuration file (see shardcast.example.toml).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address to listen on (`server.host`).
    #[arg(long, value_name = "H", help = help(&HOST, "Address to listen on"))]
    pub host: Option<String>,
    /// Port for WebSocket and HTTP API (`server.port`).
    #[arg(
        long,
        value_name = "P",
        help = help(&PORT, "Port for WebSocket and HTTP API (0 picks a free one)")
    )]
    pub port: Option<u16>,
    /// CPUs to run one pinned shard each on (`server.cpus`).
    #[arg(
        long,
        value_name = "LIST",
        help = help(
            &CPUS,
            "CPUs to run one pinned shard each on, e.g. `0,2-3`; a CPU listed twice runs two shards on its one executor"
        )
    )]
    pub cpus: Option<String>,
    /// Instead of serving: a maintenance command.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// A maintenance command (the server does not start).
#[derive(Debug, Subcommand)]
pub enum Command {
    /// The app store's database.
    #[command(name = "app-store", subcommand)]
    AppStore(AppStoreCommand),
}

#[derive(Debug, Subcommand)]
pub enum AppStoreCommand {
    /// Create the apps table if it is missing and install the trigger that
    /// tells shardcast of changes (app_store.driver = "postgres"; "mysql"
    /// creates the table).
    Init,
}

/// A flag's help: what it sets, then the setting's default.
fn help(setting: &Setting, meaning: &str) -> String {
    format!(
        "{meaning} [default: {}]",
        setting.default_text().replace('`', "")
    )
}
