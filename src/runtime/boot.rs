//! Startup: check the environment, reserve the port, build the mailbox mesh,
//! start one pinned executor per configured CPU, and wait for them to finish.

use super::env_check;
use super::mailbox::{build_mesh, Mailboxes};
use super::shard::Shard;
use crate::apps::AppRegistry;
use crate::config::Config;
use crate::errors::StartupError;
use crate::net;
use glommio::{LocalExecutorBuilder, Placement};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::AtomicBool;
use std::sync::{mpsc, Arc};

/// Runs the server until SIGINT or SIGTERM has drained every shard.
pub fn run(config: Config) -> Result<(), StartupError> {
    let (nofile, memlock) = env_check::raise_limits();
    log::info!(
        "limits: open files {nofile}, locked memory {} KiB",
        memlock / 1024
    );
    env_check::check_io_uring(memlock).map_err(StartupError::Environment)?;
    let allowed = env_check::allowed_cpus();
    if let Some(cpu) = config.cpus.iter().find(|c| !allowed.contains(c)) {
        return Err(StartupError::Environment(format!(
            "CPU {cpu} is not available to this process (allowed: {allowed:?}); \
             pick CPUs from that list with --cpus"
        )));
    }
    if config.cpus.len() > crate::pusher::socket_id::MAX_SHARDS as usize {
        return Err(StartupError::Environment(
            "at most 1024 shards are supported".into(),
        ));
    }

    let shutdown = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        // A second signal while draining exits at once (status 1).
        signal_hook::flag::register_conditional_shutdown(signal, 1, shutdown.clone())
            .and_then(|_| signal_hook::flag::register(signal, shutdown.clone()))
            .map_err(|e| {
                StartupError::Environment(format!("cannot install signal handler: {e}"))
            })?;
    }

    let (addr, reservation) =
        net::probe_port(&config.host, config.port).map_err(|e| StartupError::Bind {
            addr: format!("{}:{}", config.host, config.port),
            source: e,
        })?;
    let nonce = process_nonce();
    let count = config.cpus.len();
    let config = Arc::new(config);
    let apps = Arc::new(AppRegistry::new(config.apps.clone()));
    let (ready_tx, ready_rx) = mpsc::channel::<Result<(), StartupError>>();

    let mut threads = Vec::new();
    for (index, (ends, &cpu)) in build_mesh(count).into_iter().zip(&config.cpus).enumerate() {
        let (config, apps, shutdown, ready) = (
            config.clone(),
            apps.clone(),
            shutdown.clone(),
            ready_tx.clone(),
        );
        let thread = std::thread::Builder::new()
            .name(format!("shard-{index}"))
            .spawn(move || {
                let executor = LocalExecutorBuilder::new(Placement::Fixed(cpu))
                    .name(&format!("shard-{index}"))
                    .io_memory(64 * 1024)
                    .make();
                let executor = match executor {
                    Ok(ex) => ex,
                    Err(e) => {
                        let _ = ready.send(Err(StartupError::Shard {
                            cpu,
                            why: e.to_string(),
                        }));
                        return;
                    }
                };
                executor.run(async move {
                    let listener = match net::bind_reuseport(addr) {
                        Ok(l) => l,
                        Err(e) => {
                            let _ = ready.send(Err(StartupError::Bind {
                                addr: addr.to_string(),
                                source: e,
                            }));
                            return;
                        }
                    };
                    let (mailboxes, receivers) = Mailboxes::connect(ends).await;
                    let shard = Rc::new(Shard::new(
                        index as u16,
                        count as u16,
                        nonce,
                        config,
                        apps,
                        mailboxes,
                    ));
                    let _ = ready.send(Ok(()));
                    shard.run(receivers, listener, shutdown).await;
                });
            })
            .map_err(|e| StartupError::Shard {
                cpu,
                why: e.to_string(),
            })?;
        threads.push(thread);
    }
    drop(ready_tx);
    for _ in 0..count {
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => {
                return Err(StartupError::Environment(
                    "a shard thread died while starting".into(),
                ))
            }
        }
    }
    drop(reservation);
    log_listening(addr, &config);
    for t in threads {
        let _ = t.join();
    }
    log::info!("all shards stopped");
    Ok(())
}

fn log_listening(addr: SocketAddr, config: &Config) {
    let cpus: Vec<String> = config.cpus.iter().map(|c| c.to_string()).collect();
    log::info!(
        "listening on {addr} ({} shards on CPUs {})",
        config.cpus.len(),
        cpus.join(",")
    );
}

/// A per-process number folded into socket ids, so ids from an earlier run
/// never match a connection of this one.
fn process_nonce() -> u32 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let mixed =
        (t ^ (std::process::id() as u64).rotate_left(32)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    // 1..=999_999 keeps socket ids short, like Pusher's.
    ((mixed >> 32) % 999_999) as u32 + 1
}
