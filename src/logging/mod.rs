//! Logging that an attacker cannot turn against the server.
//!
//! Shard threads never write to stderr themselves: a log line is formatted
//! where it is logged and handed to a bounded queue ([`queue`]) that one
//! writer thread drains, so a slow or blocked stderr costs a shard at most
//! a dropped line (counted, and reported by the writer). Lines a client can
//! trigger at will go through the rate-limited macros ([`throttle`]), and
//! URLs are printed without their credentials ([`redact`]). Filtering and
//! the line format are `env_logger`'s (`RUST_LOG`, else `server.log_level`).

pub mod queue;
pub mod redact;
pub mod throttle;

pub use queue::LogQueue;
pub use throttle::Throttle;

use std::io::IsTerminal;
use std::sync::OnceLock;
use std::time::Duration;

/// Log lines waiting for the writer thread; more are dropped and counted.
pub const QUEUE_LINES: usize = 4096;

/// How long [`flush`] waits for the writer at exit.
const FLUSH_WAIT: Duration = Duration::from_secs(2);

static QUEUE: OnceLock<LogQueue> = OnceLock::new();

/// Installs the logger: `RUST_LOG` wins over `default_filter` (the
/// `server.log_level`). Call once, before any shard starts.
pub fn init(default_filter: &str) {
    let queue = QUEUE.get_or_init(|| LogQueue::start(QUEUE_LINES, Box::new(std::io::stderr())));
    let env = env_logger::Env::default().default_filter_or(default_filter);
    let mut builder = env_logger::Builder::from_env(env);
    if std::io::stderr().is_terminal() && std::env::var_os("RUST_LOG_STYLE").is_none() {
        builder.write_style(env_logger::WriteStyle::Always);
    }
    builder
        .target(env_logger::Target::Pipe(Box::new(queue.writer())))
        .init();
}

/// Writes every queued line to stderr (waits at most two seconds): call
/// before the process exits, so the last lines (a startup error) appear.
pub fn flush() {
    if let Some(queue) = QUEUE.get() {
        queue.flush(FLUSH_WAIT);
    }
}
