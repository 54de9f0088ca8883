//! The command line: the flags that override the file's `[server]` keys.

use clap::Parser;
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
    /// Address to listen on [default: 0.0.0.0; 127.0.0.1 when the built-in
    /// development app is served].
    #[arg(long, value_name = "H")]
    pub host: Option<String>,
    /// Port for WebSocket and HTTP API (0 picks a free one) [default: 6001].
    #[arg(long, value_name = "P")]
    pub port: Option<u16>,
    /// CPUs to run one pinned shard each on, e.g. `0,2-3` [default: every CPU
    /// this process may run on]. A CPU listed twice runs two shards.
    #[arg(long, value_name = "LIST")]
    pub cpus: Option<String>,
}
