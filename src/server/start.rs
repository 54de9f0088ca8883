//! Start-up and the run until shutdown: check the environment, reserve
//! the port, start the process-wide services (app store, webhook sender,
//! cluster link, TLS identity), then one [`Shard`] per configured CPU with its
//! listeners, and wait until every shard has drained.

use super::accept::accept_loop;
use crate::app_store::AppFeed;
use crate::apps::AppRegistry;
use crate::cluster::ClusterInbox;
use crate::config::Config;
use crate::errors::StartupError;
use crate::http::Site;
use crate::net::{self, BoundListener};
use crate::pusher::shard::{Services, Shard};
use crate::pusher::shard_msg::ShardMsg;
use crate::runtime::{self, spawn, Ready, Seat};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// What each shard's thread gets from start-up, besides the shared config.
struct ShardKit {
    config: Arc<Config>,
    apps: Arc<AppRegistry>,
    services: Services,
    nonce: u32,
    addr: SocketAddr,
    /// The metrics port's listener (shard 0 only).
    metrics: Option<BoundListener>,
    /// Messages from other nodes for this shard, when clustered.
    cluster: Option<ClusterInbox>,
    /// The app store's snapshots for this shard.
    apps_feed: AppFeed,
}

/// Runs the server until SIGINT or SIGTERM has drained every shard.
pub fn run(config: Config) -> Result<(), StartupError> {
    runtime::check_environment(&config.cpus)?;
    if config.cpus.len() > crate::socket_id::MAX_SHARDS as usize {
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

    // Fails when another process listens on the port (see net::probe_port).
    let (addr, reservation) = net::probe_port(&config.host, config.port).map_err(|e| {
        StartupError::bind(
            format!("{}:{}", config.host, config.port),
            "--port or server.port",
            e,
        )
    })?;
    let mut metrics: Option<BoundListener> = match config.metrics_port {
        Some(port) => {
            let (addr, listener) = net::bind_single(&config.host, port).map_err(|e| {
                StartupError::bind(format!("{}:{port}", config.host), "server.metrics.port", e)
            })?;
            log::info!("metrics on {addr} (/metrics, /usage)");
            if config.console.is_some() {
                log::info!("debug console on http://{addr}/console");
            }
            Some(listener)
        }
        None => None,
    };
    let tls = match &config.tls {
        Some(files) => {
            let identity =
                net::TlsIdentity::load(&files.cert, &files.key).map_err(StartupError::Tls)?;
            log::info!(
                "TLS on the main port: certificate {}, key {}",
                files.cert.display(),
                files.key.display()
            );
            Some(identity)
        }
        None => None,
    };
    let nonce = process_nonce()?;
    let count = config.cpus.len();
    let config = Arc::new(config);
    // A database's apps may gain webhooks at any time: the sender runs
    // whenever the build has it.
    let with_webhooks = config.apps.iter().any(|a| !a.webhooks.is_empty())
        || (config.app_store.driver != crate::config::StoreDriver::File
            && cfg!(feature = "webhooks"));
    let (store, feeds) = crate::app_store::start(&config, count, with_webhooks)
        .map_err(StartupError::Environment)?;
    let apps = store.shared.clone();
    let store_health = store.health.clone();
    let mut sender = None;
    let mut services = Services {
        shutdown: shutdown.clone(),
        app_store: Some(store_health),
        app_admin: Some(store.admin.clone()),
        interest: Arc::new(crate::pusher::interest::InterestTable::new(count)),
        ..Services::default()
    };
    if with_webhooks {
        let (queue, stats, thread) =
            crate::webhooks::sender::start(apps.clone(), config.webhooks.clone()).map_err(|e| {
                StartupError::Environment(format!("cannot start the webhook sender: {e}"))
            })?;
        services.webhooks = Some(queue);
        services.webhook_stats = Some(stats);
        sender = Some(thread);
    }
    let mut inboxes: Vec<Option<crate::cluster::ClusterInbox>> = Vec::new();
    let mut link = None;
    if let Some((handle, shard_inboxes, thread)) = crate::cluster::start(
        &config.cluster,
        apps.clone(),
        count,
        crate::pusher::owned::owner_of,
    )
    .map_err(StartupError::Cluster)?
    {
        services.cluster = Some(handle);
        inboxes = shard_inboxes.into_iter().map(Some).collect();
        link = Some(thread);
    }
    let mut kits = Vec::with_capacity(count);
    for (index, apps_feed) in feeds.into_iter().enumerate() {
        let mut services = services.clone();
        // Each shard its own TLS config, so its session cache is its own.
        services.tls = match &tls {
            Some(identity) => Some(
                identity
                    .acceptor()
                    .map_err(|e| StartupError::Tls(format!("TLS: {e}")))?,
            ),
            None => None,
        };
        kits.push(ShardKit {
            config: config.clone(),
            apps: apps.current(),
            services,
            nonce,
            addr,
            metrics: if index == 0 { metrics.take() } else { None },
            cluster: inboxes.get_mut(index).and_then(Option::take),
            apps_feed,
        });
    }
    drop(services);
    let threads = runtime::start_cores(&config.cpus, kits, serve_shard)?;
    drop(reservation);
    log_listening(addr, &config);
    for t in threads {
        let _ = t.join();
    }
    log::info!("all shards stopped");
    store.stop();
    if let Some(link) = link {
        link.stop();
    }
    if let Some(sender) = sender {
        sender.stop();
    }
    Ok(())
}

fn log_listening(addr: SocketAddr, config: &Config) {
    let cpus: Vec<String> = config.cpus.iter().map(|c| c.to_string()).collect();
    let l = &config.limits;
    let w = &config.webhooks;
    let apps: Vec<String> = config
        .apps
        .iter()
        .map(|a| {
            format!(
                "{}{}{}",
                a.id,
                if a.enabled { "" } else { " (disabled)" },
                match a.webhooks.len() {
                    0 => String::new(),
                    n => format!(" ({n} webhooks)"),
                }
            )
        })
        .collect();
    let apps = match config.app_store.driver.url_for_logs() {
        None => apps.join(", "),
        Some(url) => format!(
            "from {} table {} ({url})",
            config.app_store.driver.name(),
            config.app_store.table
        ),
    };
    log::info!(
        "config: apps [{}]; activity_timeout {} s, pong_timeout {} s; limits: max_connections {}, \
         max_pending_heads {}, head_timeout {} s, frame {} KiB, write queue {} KiB, body {} KiB, \
         head {} KiB, cache {} channels / {} KiB; webhooks: batch {} ms / {} events, delay {} ms, retry for {} s, timeout {} ms, \
         queue {} events; metrics {}; tls {}; cluster {}",
        apps,
        config.activity_timeout,
        config.pong_timeout,
        l.max_connections,
        l.max_pending_heads,
        l.head_timeout.as_secs(),
        l.max_frame_bytes / 1024,
        l.max_write_queue_bytes / 1024,
        l.max_request_body_bytes / 1024,
        l.max_request_head_bytes / 1024,
        l.max_cached_channels,
        l.max_cache_bytes / 1024,
        w.batch_window.as_millis(),
        w.batch_max,
        w.delay.as_millis(),
        w.retry_for.as_secs(),
        w.timeout.as_millis(),
        w.max_queued_events,
        match config.metrics_port {
            Some(p) => format!("on port {p}"),
            None => "off".into(),
        },
        if config.tls.is_some() { "on" } else { "off" },
        match config.cluster.adapter.url_for_logs() {
            None => "local".to_string(),
            Some(url) => format!(
                "{url} (prefix {}, node timeout {} s)",
                config.cluster.prefix,
                config.cluster.node_timeout.as_secs()
            ),
        }
    );
    log::info!(
        "listening on {addr} ({} shards on CPUs {})",
        config.cpus.len(),
        cpus.join(",")
    );
}

/// One core's life: bind its listener, build its shard, say it is up, then
/// accept and serve until the shard has drained.
async fn serve_shard(seat: Seat<ShardMsg>, kit: ShardKit, ready: Ready) {
    let listener = match net::bind_reuseport(kit.addr) {
        Ok(l) => l,
        Err(e) => {
            return ready.failed(StartupError::Bind {
                addr: kit.addr.to_string(),
                source: e,
            })
        }
    };
    let metrics = match kit.metrics.map(BoundListener::into_listener) {
        Some(Ok(l)) => Some(l),
        Some(Err(e)) => {
            return ready.failed(StartupError::Bind {
                addr: "metrics port".into(),
                source: e,
            })
        }
        None => None,
    };
    let (index, count) = (seat.index as u16, seat.count as u16);
    let (mesh, inboxes) = seat.connect().await;
    let shard = Rc::new(Shard::new(
        index,
        count,
        kit.nonce,
        kit.config,
        kit.apps,
        mesh,
        kit.services,
    ));
    ready.up();
    spawn(crate::pusher::apps::follow(shard.clone(), kit.apps_feed));
    spawn(accept_loop(shard.clone(), listener, Site::Main));
    if let Some(metrics) = metrics {
        spawn(accept_loop(shard.clone(), metrics, Site::Metrics));
    }
    shard.run(inboxes, kit.cluster).await;
}

/// The per-process nonce in every socket id, drawn from the OS random
/// source (`getrandom`): it must differ between process starts (so a socket
/// id from an earlier run matches no connection of this one) and between
/// the nodes of a cluster (a socket id names its node through it). A draw
/// repeats one time in 999,999; the clock and pid it replaces could repeat
/// outright for nodes started together. No randomness from the OS is a
/// start-up error, not a weaker nonce.
fn process_nonce() -> Result<u32, StartupError> {
    let mut bytes = [0u8; 4];
    getrandom::getrandom(&mut bytes).map_err(|e| {
        StartupError::Environment(format!(
            "no randomness from the OS for the socket-id nonce: {e}"
        ))
    })?;
    // 1..=999_999 keeps socket ids short, like Pusher's.
    Ok(u32::from_le_bytes(bytes) % 999_999 + 1)
}
