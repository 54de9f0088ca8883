//! The webhook sender: one dedicated OS thread, outside the shards, running
//! a current-thread tokio runtime with an HTTP client (rustls, so `https://`
//! URLs work too).
//!
//! Shards hand it `(app, event)` pairs through a bounded channel and never
//! wait: a full channel drops the event and counts it. The thread routes
//! each event to every webhook of the app that wants it, collects events
//! that come close together into one batch per webhook (window and maximum
//! from `[server.webhooks]`), and gives each webhook one *lane*: a task
//! that posts its batches one after another, retrying a failed one with
//! exponential backoff (1 s doubling to 60 s) for up to `retry_for` before
//! the next, so each webhook sees its events in order.
//!
//! Every queue is bounded: the shards' queue into the thread by
//! `QUEUE_CAPACITY` (newest dropped when full), an open batch by
//! `batch_max`, and each lane's [`Backlog`] by `max_queued_events` (oldest
//! dropped when full, see [`super::backlog`]). So a receiver that is down
//! costs at most `max_queued_events` + one batch in flight per webhook.
//!
//! At shutdown, batches still open are handed to their lanes, each lane
//! gets one more attempt per batch within a short grace period, and what is
//! still undelivered is logged with its count.

use super::backlog::Backlog;
use super::event::{body, WebhookEvent};
use super::stats::{DeliveryNote, DeliveryStats};
use crate::apps::webhook::Webhook;
use crate::apps::{App, AppIdx, SharedApps};
use crate::config::WebhookSettings;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, Notify};

/// Events waiting between the shards and the sender thread.
const QUEUE_CAPACITY: usize = 64 * 1024;
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// How long shutdown waits for the last attempts.
const SHUTDOWN_GRACE: Duration = Duration::from_millis(1500);

/// A shard's handle for handing events to the sender; cheap to clone.
#[derive(Clone)]
pub struct WebhookQueue {
    tx: mpsc::Sender<(AppIdx, WebhookEvent)>,
    stats: Arc<DeliveryStats>,
}

impl WebhookQueue {
    /// Queues an event without waiting; drops it (counted) when full.
    pub fn send(&self, app: AppIdx, event: WebhookEvent) {
        if self.tx.try_send((app, event)).is_err() {
            let n = self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            if n.is_power_of_two() || n == 0 {
                log::warn!("webhooks: queue full, {} events dropped so far", n + 1);
            }
        }
    }
}

/// The running sender thread.
pub struct SenderThread {
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl SenderThread {
    /// Delivers what it can within the grace period, logs the rest, and joins.
    pub fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Starts the sender thread for the apps' webhooks (`apps`: the current
/// apps, which change while it runs).
pub fn start(
    apps: Arc<SharedApps>,
    settings: WebhookSettings,
) -> std::io::Result<(WebhookQueue, Arc<DeliveryStats>, SenderThread)> {
    let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
    let (stop_tx, stop_rx) = oneshot::channel();
    let stats = Arc::new(DeliveryStats::default());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let client = reqwest::Client::builder()
        .timeout(settings.timeout)
        .build()
        .map_err(std::io::Error::other)?;
    let thread_stats = stats.clone();
    let thread = std::thread::Builder::new()
        .name("webhooks".into())
        .spawn(move || {
            let sender = Sender {
                apps,
                settings,
                client,
                stats: thread_stats,
                shutdown: Arc::new(Shutdown::default()),
                batches: HashMap::new(),
                lanes: HashMap::new(),
            };
            runtime.block_on(sender.run(rx, stop_rx));
        })?;
    Ok((
        WebhookQueue {
            tx,
            stats: stats.clone(),
        },
        stats,
        SenderThread {
            stop: Some(stop_tx),
            thread: Some(thread),
        },
    ))
}

/// (app, webhook index within the app).
type LaneKey = (AppIdx, usize);

struct Batch {
    events: Vec<WebhookEvent>,
    opened: Instant,
}

#[derive(Default)]
struct Shutdown {
    raised: AtomicBool,
    notify: Notify,
}

struct Sender {
    apps: Arc<SharedApps>,
    settings: WebhookSettings,
    client: reqwest::Client,
    stats: Arc<DeliveryStats>,
    shutdown: Arc<Shutdown>,
    batches: HashMap<LaneKey, Batch>,
    /// Each lane with the app definition it was made from: a changed app
    /// (URL, headers, rotated secret) gets a new lane.
    lanes: HashMap<LaneKey, (Arc<App>, Arc<LaneInbox>)>,
}

/// Where the sender leaves a lane's batches and the lane takes them.
struct LaneInbox {
    backlog: Mutex<Backlog>,
    /// Wakes the lane when a batch arrives or the inbox closes.
    ready: Notify,
    url: String,
}

impl LaneInbox {
    fn backlog(&self) -> MutexGuard<'_, Backlog> {
        // A panic elsewhere never leaves a backlog half-changed.
        self.backlog.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues a batch, dropping the oldest waiting events beyond the bound.
    fn push(&self, events: Vec<WebhookEvent>, stats: &DeliveryStats) {
        let added = events.len() as u64;
        let (pushed, waiting) = {
            let mut backlog = self.backlog();
            let pushed = backlog.push(events);
            (pushed, backlog.len())
        };
        let dropped = pushed.dropped as u64;
        stats.queued.fetch_add(added - dropped, Ordering::Relaxed);
        if dropped > 0 {
            stats.dropped_oldest.fetch_add(dropped, Ordering::Relaxed);
            stats.pending.fetch_sub(dropped, Ordering::Relaxed);
        }
        if pushed.began_dropping {
            log::warn!(
                "webhook {}: {waiting} events are waiting (server.webhooks.max_queued_events); \
                 dropping the oldest until it catches up",
                self.url
            );
        }
        self.ready.notify_one();
    }

    /// No more batches: the lane delivers what is left and exits.
    fn close(&self) {
        self.backlog().closed = true;
        self.ready.notify_one();
    }

    /// Logs the end of an overflow once there is room again (or at shutdown).
    fn settle(&self, force: bool) {
        let summary = self.backlog().settle(force);
        if let Some(s) = summary {
            log::warn!(
                "webhook {}: {} oldest events were dropped over {} s while its queue was full",
                self.url,
                s.dropped,
                s.lasted.as_secs()
            );
        }
    }
}

impl Sender {
    async fn run(
        mut self,
        mut rx: mpsc::Receiver<(AppIdx, WebhookEvent)>,
        mut stop: oneshot::Receiver<()>,
    ) {
        let mut workers = tokio::task::JoinSet::new();
        loop {
            let next = self
                .batches
                .values()
                .map(|b| b.opened + self.settings.batch_window)
                .min();
            tokio::select! {
                got = rx.recv() => match got {
                    Some((app, event)) => self.route(app, event, &mut workers),
                    None => break,
                },
                _ = sleep_until(next) => self.close_batches(Some(Instant::now()), &mut workers),
                _ = &mut stop => break,
            }
        }
        // Shutdown: take what the shards queued, close every batch.
        while let Ok((app, event)) = rx.try_recv() {
            self.route(app, event, &mut workers);
        }
        self.close_batches(None, &mut workers);
        for (_, lane) in self.lanes.values() {
            lane.close();
        }
        self.lanes.clear();
        self.shutdown.raised.store(true, Ordering::Relaxed);
        self.shutdown.notify.notify_waiters();
        let all_done = async { while workers.join_next().await.is_some() {} };
        let _ = tokio::time::timeout(SHUTDOWN_GRACE, all_done).await;
        match self.stats.pending.load(Ordering::Relaxed) {
            0 => log::info!("webhooks: sender stopped, nothing left undelivered"),
            n => log::warn!("webhooks: sender stopped with {n} events undelivered"),
        }
    }

    /// Adds an event to the batch of every webhook of its app that wants it.
    fn route(&mut self, app: AppIdx, event: WebhookEvent, workers: &mut tokio::task::JoinSet<()>) {
        let apps = self.apps.current();
        for (index, hook) in apps.get(app).webhooks.iter().enumerate() {
            if !hook.wants(event.kind(), event.channel()) {
                continue;
            }
            self.stats.pending.fetch_add(1, Ordering::Relaxed);
            let key = (app, index);
            let batch = self.batches.entry(key).or_insert_with(|| Batch {
                events: Vec::new(),
                opened: Instant::now(),
            });
            batch.events.push(event.clone());
            if batch.events.len() >= self.settings.batch_max {
                let events = self.batches.remove(&key).map(|b| b.events);
                self.hand_to_lane(key, events.unwrap_or_default(), workers);
            }
        }
    }

    /// Hands batches whose window is over (all with `None`) to their lanes.
    fn close_batches(&mut self, now: Option<Instant>, workers: &mut tokio::task::JoinSet<()>) {
        let window = self.settings.batch_window;
        let due: Vec<LaneKey> = self
            .batches
            .iter()
            .filter(|(_, b)| now.is_none_or(|now| b.opened + window <= now))
            .map(|(k, _)| *k)
            .collect();
        for key in due {
            if let Some(batch) = self.batches.remove(&key) {
                self.hand_to_lane(key, batch.events, workers);
            }
        }
    }

    fn hand_to_lane(
        &mut self,
        key: LaneKey,
        events: Vec<WebhookEvent>,
        workers: &mut tokio::task::JoinSet<()>,
    ) {
        let app = self.apps.current().get(key.0).clone();
        let Some(hook) = app.webhooks.get(key.1) else {
            // The app lost this webhook since the events were batched.
            self.stats
                .pending
                .fetch_sub(events.len() as u64, Ordering::Relaxed);
            return;
        };
        if let Some((made_from, inbox)) = self.lanes.get(&key) {
            if Arc::ptr_eq(made_from, &app) {
                return inbox.push(events, &self.stats);
            }
            // The app changed: the old lane delivers what it holds and ends.
            inbox.close();
        }
        let inbox = Arc::new(LaneInbox {
            backlog: Mutex::new(Backlog::new(self.settings.max_queued_events)),
            ready: Notify::new(),
            url: hook.url.clone(),
        });
        let lane = Lane {
            client: self.client.clone(),
            hook: hook.clone(),
            logged_url: crate::logging::redact::url(&hook.url),
            app_key: app.key.clone(),
            secret: app.secret.clone(),
            retry_for: self.settings.retry_for,
            stats: self.stats.clone(),
            shutdown: self.shutdown.clone(),
        };
        workers.spawn(lane.run(inbox.clone()));
        inbox.push(events, &self.stats);
        self.lanes.insert(key, (app, inbox));
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// Delivers one webhook's batches, in order.
struct Lane {
    client: reqwest::Client,
    hook: Webhook,
    /// The hook's URL without userinfo or query (tokens), for log lines.
    logged_url: String,
    app_key: String,
    secret: String,
    retry_for: Duration,
    stats: Arc<DeliveryStats>,
    shutdown: Arc<Shutdown>,
}

impl Lane {
    async fn run(self, inbox: Arc<LaneInbox>) {
        loop {
            let next = {
                let mut backlog = inbox.backlog();
                match backlog.pop() {
                    Some(events) => Some(events),
                    None if backlog.closed => break,
                    None => None,
                }
            };
            let Some(events) = next else {
                inbox.ready.notified().await;
                continue;
            };
            self.stats
                .queued
                .fetch_sub(events.len() as u64, Ordering::Relaxed);
            if self.deliver(&events).await {
                self.stats.deliveries.fetch_add(1, Ordering::Relaxed);
                self.stats
                    .pending
                    .fetch_sub(events.len() as u64, Ordering::Relaxed);
                inbox.settle(false);
            } else if !self.shutdown.raised.load(Ordering::Relaxed) {
                self.stats.failures.fetch_add(1, Ordering::Relaxed);
                self.stats
                    .pending
                    .fetch_sub(events.len() as u64, Ordering::Relaxed);
                log::warn!(
                    "webhook {}: gave up on {} events after retrying for {} s",
                    self.logged_url,
                    events.len(),
                    self.retry_for.as_secs()
                );
            }
            // Given up at shutdown: stays counted as pending (undelivered).
        }
        inbox.settle(true);
    }

    /// Posts one batch until it is accepted, `retry_for` runs out, or the
    /// server shuts down (one attempt then). True when delivered.
    async fn deliver(&self, events: &[WebhookEvent]) -> bool {
        let time_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let body = body(time_ms, events);
        let signature = crate::auth::sign(&self.secret, &body);
        let started = Instant::now();
        let mut backoff = FIRST_BACKOFF;
        loop {
            let why = match self.post(&body, &signature).await {
                Ok(status) if status.is_success() => {
                    self.stats.log.note(|| self.note(events, None));
                    return true;
                }
                Ok(status) => format!("answered {status}"),
                // Without the URL: reqwest would print it whole (query included).
                Err(e) => format!("failed: {}", e.without_url()),
            };
            let out_of_time = started.elapsed() + backoff > self.retry_for;
            let stop = self.shutdown.raised.load(Ordering::Relaxed) || out_of_time;
            self.stats.log.note(|| {
                let then = if stop { "not retrying" } else { "retrying" };
                self.note(events, Some(format!("{why}; {then}")))
            });
            if stop {
                log::warn!("webhook {} {why}; not retrying", self.logged_url);
                return false;
            }
            log::warn!(
                "webhook {} {why}; retrying in {} s",
                self.logged_url,
                backoff.as_secs()
            );
            self.stats.retries.fetch_add(1, Ordering::Relaxed);
            let shutdown = self.shutdown.notify.notified();
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = shutdown => {}
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// The debug console's note of one batch's outcome.
    fn note(&self, events: &[WebhookEvent], failure: Option<String>) -> DeliveryNote {
        DeliveryNote {
            at_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0),
            app_key: self.app_key.clone(),
            url: self.logged_url.clone(),
            events: events
                .iter()
                .map(|e| (e.kind().name(), e.channel().into()))
                .collect(),
            failure,
        }
    }

    async fn post(&self, body: &[u8], signature: &str) -> reqwest::Result<reqwest::StatusCode> {
        let mut request = self
            .client
            .post(&self.hook.url)
            .header("Content-Type", "application/json")
            .header("X-Pusher-Key", &self.app_key)
            .header("X-Pusher-Signature", signature);
        for (name, value) in &self.hook.headers {
            request = request.header(name.as_str(), value.as_str());
        }
        let response = request.body(body.to_vec()).send().await?;
        Ok(response.status())
    }
}
