//! The `shardcast` binary: parse flags, load the config, run the shards.

use clap::Parser;
use shardcast::config::{Cli, Config};
use shardcast::runtime;

/// mimalloc: fast thread-local allocation for the per-core shards.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let cli = Cli::parse();
    let allowed = runtime::env_check::allowed_cpus();
    let config = match Config::resolve(&cli, &|k| std::env::var(k).ok(), &allowed) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("shardcast: {e}");
            std::process::exit(1);
        }
    };
    // RUST_LOG wins over `server.log_level`; `info` without either. Lines
    // go through a bounded queue to a writer thread (`logging`).
    shardcast::logging::init(
        config
            .log_level
            .as_deref()
            .unwrap_or(shardcast::config::settings::LOG_LEVEL.text()),
    );
    if let Some(shardcast::config::Command::AppStore(shardcast::config::AppStoreCommand::Init)) =
        cli.command
    {
        match shardcast::app_store::init(&config) {
            Ok(done) => {
                println!("shardcast app-store init: {done}");
                return;
            }
            Err(e) => {
                eprintln!("shardcast app-store init: {e}");
                std::process::exit(1);
            }
        }
    }
    if config.dev_loopback {
        log::warn!(
            "no apps configured: serving the development app id={} key={}, whose credentials \
             are public, on loopback only ({}); to serve on all interfaces give --host 0.0.0.0 \
             or configure [[apps]] with your own credentials",
            config.apps[0].id,
            config.apps[0].key,
            config.host
        );
    } else if config.dev_app {
        log::warn!(
            "no apps configured: serving the development app id={} key={} with its default \
             secret; these are development credentials, set apps in a config file for production",
            config.apps[0].id,
            config.apps[0].key
        );
    }
    let result = shardcast::server::run(config);
    shardcast::logging::flush();
    if let Err(e) = result {
        eprintln!("shardcast: {e}");
        std::process::exit(1);
    }
}
