//! The engines that carry node-to-node messages: Redis pub/sub and NATS,
//! through their well-kept client crates, on the link thread's tokio
//! runtime. Each offers the same things: publish bytes on one of the
//! cluster's subjects (`route`), receive what nodes published on the
//! control subject and on the event subjects this node subscribes to, and
//! add or drop event subjects, an addition answered only once the engine
//! confirmed it (Redis: the SUBSCRIBE reply; NATS: SUB, then a probe on a
//! private subject seen back, a round trip like PING/PONG), so what is
//! published after that reaches this node.
//!
//! Redis needs a connection for publishing and another for subscribing;
//! when either breaks, [`Publisher`] and [`Subscription`] reconnect by
//! themselves (with backoff) and resubscribe to every subject this node
//! wants. The NATS client reconnects and resubscribes on its own; its state
//! changes are logged.
//!
//! Each engine is compiled only with its cargo feature (`redis`, `nats`);
//! an adapter whose feature is off is refused when the link opens.

use super::engine_files::{self, UrlAuth};
use super::route::{self, Stream, CONTROL};
use crate::config::settings::{CLUSTER_CA_FILE, CLUSTER_CERT_FILE, CLUSTER_CREDENTIALS_FILE};
use crate::config::{Adapter, EngineFiles};
use bytes::Bytes;
use futures_lite::StreamExt;
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Longest wait between two reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// A connected (or reconnecting) engine.
#[derive(Clone)]
pub enum Engine {
    #[cfg(feature = "redis")]
    Redis(redis::Client),
    #[cfg(feature = "nats")]
    Nats { client: async_nats::Client },
}

impl Engine {
    /// Opens the engine named by `adapter`; for NATS the connection is made
    /// in the background (and retried), so a node starts even while NATS is
    /// down. `None` for the local adapter.
    pub async fn open(adapter: &Adapter, files: &EngineFiles) -> Result<Option<Engine>, String> {
        let shown = adapter.url_for_logs().unwrap_or_default();
        let tls = engine_files::load(files)?;
        match adapter {
            Adapter::Local => Ok(None),
            #[cfg(not(feature = "redis"))]
            Adapter::Redis { .. } => Err(super::not_built(
                "redis",
                crate::errors::FeatureMissing::REDIS,
            )),
            #[cfg(not(feature = "nats"))]
            Adapter::Nats { .. } => Err(super::not_built(
                "nats",
                crate::errors::FeatureMissing::NATS,
            )),
            #[cfg(feature = "redis")]
            Adapter::Redis { url } => {
                if tls.any() && !url.starts_with("rediss://") {
                    return Err(format!(
                        "cluster: {} and {} are for a TLS connection: use a rediss:// url (got {shown})",
                        CLUSTER_CA_FILE.key, CLUSTER_CERT_FILE.key
                    ));
                }
                let client = if tls.any() {
                    redis::Client::build_with_tls(
                        url.as_str(),
                        redis::TlsCertificates {
                            client_tls: tls.client.map(|(client_cert, client_key)| {
                                redis::ClientTlsConfig {
                                    client_cert,
                                    client_key,
                                }
                            }),
                            root_cert: tls.ca,
                        },
                    )
                } else {
                    redis::Client::open(url.as_str())
                };
                client
                    .map(|c| Some(Engine::Redis(c)))
                    .map_err(|e| format!("cluster: cannot use the Redis url {shown}: {e}"))
            }
            #[cfg(feature = "nats")]
            Adapter::Nats { url } => {
                let mut options = async_nats::ConnectOptions::new();
                match engine_files::url_auth(url) {
                    UrlAuth::None => {}
                    UrlAuth::UserPassword(user, pass) => {
                        options = options.user_and_password(user, pass)
                    }
                    UrlAuth::Token(token) => options = options.token(token),
                }
                if let Some(path) = &files.credentials {
                    options = options.credentials_file(path).await.map_err(|e| {
                        format!(
                            "cluster: {}: cannot use {}: {e}",
                            CLUSTER_CREDENTIALS_FILE.key,
                            path.display()
                        )
                    })?;
                }
                if let Some(path) = &files.ca {
                    options = options.add_root_certificates(path.clone());
                }
                if let (Some(cert), Some(key)) = (&files.cert, &files.key) {
                    options = options.add_client_certificate(cert.clone(), key.clone());
                }
                if tls.any() || url.starts_with("tls://") {
                    options = options.require_tls(true);
                }
                let options = options
                    .retry_on_initial_connect()
                    .max_reconnects(None)
                    .connection_timeout(Duration::from_secs(2))
                    .event_callback(|event| async move {
                        match event {
                            async_nats::Event::Connected => log::info!("cluster: connected to NATS"),
                            async_nats::Event::Disconnected => {
                                log::warn!("cluster: lost the NATS connection; local delivery continues, reconnecting")
                            }
                            other => log::debug!("cluster: NATS {other}"),
                        }
                    });
                options
                    .connect(url.as_str())
                    .await
                    .map(|client| Some(Engine::Nats { client }))
                    .map_err(|e| format!("cluster: cannot use NATS at {shown}: {e}"))
            }
        }
    }

    /// The engine's name for logs.
    pub fn name(&self) -> &'static str {
        match self {
            #[cfg(feature = "redis")]
            Engine::Redis(_) => "Redis",
            #[cfg(feature = "nats")]
            Engine::Nats { .. } => "NATS",
        }
    }
}

/// How long making a Redis subscriber connection (with its subscriptions)
/// may take before it is given up and tried again.
#[cfg(feature = "redis")]
const CONNECT_WAIT: Duration = Duration::from_secs(5);

/// How long an engine subscription may take to be confirmed; after that
/// the waiting subscribers are answered anyway (the subscription stays
/// wanted and is made again on reconnection).
const CONFIRM_WAIT: Duration = Duration::from_secs(2);

/// Doubles a reconnection delay up to [`MAX_BACKOFF`].
fn backoff(delay: &mut Duration) -> Duration {
    let now = *delay;
    *delay = (*delay * 2).min(MAX_BACKOFF);
    now
}

/// Publishes on the cluster's subjects.
pub struct Publisher {
    engine: Engine,
    #[cfg(feature = "redis")]
    redis: Option<redis::aio::MultiplexedConnection>,
    /// Messages given up while the engine was unreachable (this outage).
    dropped: u64,
}

impl Publisher {
    pub fn new(engine: Engine) -> Publisher {
        Publisher {
            engine,
            #[cfg(feature = "redis")]
            redis: None,
            dropped: 0,
        }
    }

    /// Publishes one engine message on `subject`. While Redis is
    /// unreachable the message is dropped (counted, logged at
    /// reconnection): local delivery goes on.
    pub async fn publish(&mut self, subject: &str, payload: Bytes) {
        match &self.engine {
            #[cfg(feature = "nats")]
            Engine::Nats { client, .. } => {
                if let Err(e) = client.publish(subject.to_string(), payload).await {
                    self.dropped += 1;
                    log::warn!("cluster: NATS publish failed: {e}");
                }
            }
            #[cfg(feature = "redis")]
            Engine::Redis(client) => {
                if self.redis.is_none() {
                    match client.get_multiplexed_tokio_connection().await {
                        Ok(c) => {
                            if self.dropped > 0 {
                                log::info!(
                                    "cluster: publishing to Redis again; {} messages were not sent while it was unreachable",
                                    self.dropped
                                );
                                self.dropped = 0;
                            }
                            self.redis = Some(c);
                        }
                        Err(e) => {
                            if self.dropped == 0 {
                                log::warn!("cluster: cannot publish to Redis: {e}; local delivery continues");
                            }
                            self.dropped += 1;
                            return;
                        }
                    }
                }
                let conn = self.redis.as_mut().expect("connected above");
                let sent: redis::RedisResult<i64> = redis::cmd("PUBLISH")
                    .arg(subject)
                    .arg(&payload[..])
                    .query_async(conn)
                    .await;
                if let Err(e) = sent {
                    log::warn!("cluster: lost the Redis publish connection: {e}; local delivery continues, reconnecting");
                    self.redis = None;
                    self.dropped += 1;
                }
            }
        }
    }
}

/// What nodes published on the control subject and on the event subjects
/// this node wants (our own messages included; the link skips them).
pub struct Subscription {
    engine: Engine,
    prefix: String,
    /// Event buckets this node wants; restored on every reconnection
    /// (shared with a Redis connection being made, which subscribes to
    /// buckets added meanwhile too).
    wanted: Arc<Mutex<BTreeSet<Stream>>>,
    #[cfg(feature = "redis")]
    redis: Option<(redis::aio::PubSubSink, redis::aio::PubSubStream)>,
    /// A Redis subscriber connection being made: kept across cancelled
    /// calls of [`Subscription::next`], so a stream of bucket requests
    /// cannot keep restarting it.
    #[cfg(feature = "redis")]
    connecting: Option<RedisConnecting>,
    /// No new attempt before this (backoff after a failed one).
    #[cfg(feature = "redis")]
    retry_at: Option<tokio::time::Instant>,
    #[cfg(feature = "redis")]
    delay: Duration,
    /// Redis is unreachable (logged once per outage).
    #[cfg(feature = "redis")]
    outage: bool,
    #[cfg(feature = "nats")]
    nats: Option<NatsSubs>,
}

#[cfg(feature = "redis")]
type RedisConnecting = std::pin::Pin<
    Box<
        dyn std::future::Future<
                Output = redis::RedisResult<(redis::aio::PubSubSink, redis::aio::PubSubStream)>,
            > + Send,
    >,
>;

/// NATS subscriptions: one forwarding task per subject into one queue, so
/// each subject keeps its order.
#[cfg(feature = "nats")]
struct NatsSubs {
    tasks: HashMap<Stream, tokio::task::JoinHandle<()>>,
    tx: tokio::sync::mpsc::Sender<(Stream, Bytes)>,
    rx: tokio::sync::mpsc::Receiver<(Stream, Bytes)>,
    /// A private subject (the client's inbox) this link subscribes to, to
    /// see its own probes come back ([`Subscription::add`]).
    probe: Option<(String, async_nats::Subscriber)>,
    /// Probes sent so far (each carries its number).
    probes: u64,
}

/// Messages received from NATS waiting for the link.
#[cfg(feature = "nats")]
const NATS_QUEUE: usize = 16 * 1024;

#[cfg(feature = "nats")]
impl Drop for NatsSubs {
    fn drop(&mut self) {
        for task in self.tasks.values() {
            task.abort();
        }
    }
}

impl Subscription {
    pub fn new(engine: Engine, prefix: String) -> Subscription {
        Subscription {
            engine,
            prefix,
            wanted: Arc::default(),
            #[cfg(feature = "redis")]
            redis: None,
            #[cfg(feature = "redis")]
            connecting: None,
            #[cfg(feature = "redis")]
            retry_at: None,
            #[cfg(feature = "redis")]
            delay: Duration::from_millis(50),
            #[cfg(feature = "redis")]
            outage: false,
            #[cfg(feature = "nats")]
            nats: None,
        }
    }

    /// The next message and the stream it arrived on; reconnects and
    /// resubscribes as long as it takes. Cancel-safe: a dropped call loses
    /// no message and no state.
    pub async fn next(&mut self) -> (Stream, Bytes) {
        let mut delay = Duration::from_millis(50);
        loop {
            match &self.engine {
                #[cfg(feature = "redis")]
                Engine::Redis(client) => {
                    if let Some((_, stream)) = &mut self.redis {
                        match stream.next().await {
                            Some(msg) => {
                                let name = msg.get_channel_name();
                                match route::stream_of(&self.prefix, name) {
                                    Some(s) => {
                                        return (s, Bytes::copy_from_slice(msg.get_payload_bytes()))
                                    }
                                    None => continue,
                                }
                            }
                            None => {
                                log::warn!("cluster: lost the Redis subscription; local delivery continues, reconnecting");
                                self.redis = None;
                                self.outage = true;
                            }
                        }
                    }
                    if let Some(at) = self.retry_at {
                        tokio::time::sleep_until(at).await;
                        self.retry_at = None;
                    }
                    let connecting = self.connecting.get_or_insert_with(|| {
                        let (client, prefix) = (client.clone(), self.prefix.clone());
                        let wanted = self.wanted.clone();
                        Box::pin(async move {
                            // A connection that hangs (half-open, a proxy)
                            // is given up and tried again.
                            match tokio::time::timeout(
                                CONNECT_WAIT,
                                subscribe_redis(&client, &prefix, &wanted),
                            )
                            .await
                            {
                                Ok(made) => made,
                                Err(_) => Err(redis::RedisError::from((
                                    redis::ErrorKind::IoError,
                                    "no answer within the connect timeout",
                                ))),
                            }
                        })
                    });
                    let made = connecting.await;
                    self.connecting = None;
                    match made {
                        Ok(pair) => {
                            if self.outage {
                                log::info!(
                                    "cluster: subscribed to Redis again ({} event subjects)",
                                    self.wanted().len()
                                );
                                self.outage = false;
                            }
                            self.redis = Some(pair);
                            self.delay = Duration::from_millis(50);
                        }
                        Err(e) => {
                            if !self.outage {
                                log::warn!("cluster: cannot subscribe to Redis: {e}; retrying");
                                self.outage = true;
                            }
                            let wait = backoff(&mut self.delay);
                            self.retry_at = Some(tokio::time::Instant::now() + wait);
                        }
                    }
                }
                #[cfg(feature = "nats")]
                Engine::Nats { client } => {
                    if let Some(subs) = &mut self.nats {
                        // The client resubscribes by itself after a reconnect.
                        match subs.rx.recv().await {
                            Some(m) => return m,
                            None => self.nats = None,
                        }
                    }
                    let (tx, rx) = tokio::sync::mpsc::channel(NATS_QUEUE);
                    let mut subs = NatsSubs {
                        tasks: HashMap::new(),
                        tx,
                        rx,
                        probe: None,
                        probes: 0,
                    };
                    let mut ok = true;
                    let wanted: Vec<Stream> = self.wanted().iter().copied().collect();
                    for stream in std::iter::once(CONTROL).chain(wanted) {
                        if let Err(e) =
                            nats_subscribe(client, &self.prefix, stream, &mut subs).await
                        {
                            log::warn!("cluster: cannot subscribe to NATS: {e}; retrying");
                            ok = false;
                            break;
                        }
                    }
                    if ok {
                        self.nats = Some(subs);
                    } else {
                        tokio::time::sleep(backoff(&mut delay)).await;
                    }
                }
            }
        }
    }

    fn wanted(&self) -> std::sync::MutexGuard<'_, BTreeSet<Stream>> {
        self.wanted.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Wants event bucket `bucket` from now on; true once the engine
    /// confirmed the subscription, false if it could not (unreachable, or
    /// no answer within [`CONFIRM_WAIT`]): the subscription is then made on
    /// reconnection.
    pub async fn add(&mut self, bucket: Stream) -> bool {
        self.wanted().insert(bucket);
        let subject = route::event_subject(&self.prefix, bucket);
        match &self.engine {
            #[cfg(feature = "redis")]
            Engine::Redis(_) => match &mut self.redis {
                Some((sink, _)) => {
                    matches!(
                        tokio::time::timeout(CONFIRM_WAIT, sink.subscribe(&subject)).await,
                        Ok(Ok(()))
                    )
                }
                None => false,
            },
            #[cfg(feature = "nats")]
            Engine::Nats { client } => {
                let Some(subs) = &mut self.nats else {
                    return false;
                };
                if client.connection_state() != async_nats::connection::State::Connected {
                    // Still subscribed locally: the client sends it on reconnection.
                    let _ = nats_subscribe(client, &self.prefix, bucket, subs).await;
                    return false;
                }
                // A flush only writes the SUB out. NATS handles one
                // connection's operations in order, so a probe published
                // after the SUB, seen back on a private subject, proves the
                // server has the subscription (as a PING/PONG would; the
                // client has no call for that).
                let confirmed = async {
                    nats_subscribe(client, &self.prefix, bucket, subs)
                        .await
                        .ok()?;
                    if subs.probe.is_none() {
                        let inbox = client.new_inbox();
                        let sub = client.subscribe(inbox.clone()).await.ok()?;
                        subs.probe = Some((inbox, sub));
                    }
                    subs.probes += 1;
                    let nonce = Bytes::copy_from_slice(&subs.probes.to_le_bytes());
                    let (inbox, sub) = subs.probe.as_mut()?;
                    client.publish(inbox.clone(), nonce.clone()).await.ok()?;
                    while let Some(m) = sub.next().await {
                        if m.payload == nonce {
                            return Some(());
                        }
                    }
                    None
                };
                matches!(
                    tokio::time::timeout(CONFIRM_WAIT, confirmed).await,
                    Ok(Some(()))
                )
            }
        }
    }

    /// No longer wants event bucket `bucket`.
    pub async fn remove(&mut self, bucket: Stream) {
        self.wanted().remove(&bucket);
        match &self.engine {
            #[cfg(feature = "redis")]
            Engine::Redis(_) => {
                if let Some((sink, _)) = &mut self.redis {
                    let subject = route::event_subject(&self.prefix, bucket);
                    let _ = tokio::time::timeout(CONFIRM_WAIT, sink.unsubscribe(&subject)).await;
                }
            }
            #[cfg(feature = "nats")]
            Engine::Nats { .. } => {
                if let Some(task) = self.nats.as_mut().and_then(|s| s.tasks.remove(&bucket)) {
                    // Dropping the subscriber (with its task) unsubscribes.
                    task.abort();
                }
            }
        }
    }
}

/// Subscribes to `stream`'s subject (if not already) and forwards what
/// arrives into the shared queue.
#[cfg(feature = "nats")]
async fn nats_subscribe(
    client: &async_nats::Client,
    prefix: &str,
    stream: Stream,
    subs: &mut NatsSubs,
) -> Result<(), async_nats::SubscribeError> {
    if subs.tasks.contains_key(&stream) {
        return Ok(());
    }
    let subject = match stream {
        CONTROL => route::control_subject(prefix),
        b => route::event_subject(prefix, b),
    };
    let mut sub = client.subscribe(subject).await?;
    let tx = subs.tx.clone();
    let task = tokio::spawn(async move {
        while let Some(msg) = sub.next().await {
            if tx.send((stream, msg.payload)).await.is_err() {
                return;
            }
        }
    });
    subs.tasks.insert(stream, task);
    Ok(())
}

/// A Redis subscriber connection on the control subject and every wanted
/// event subject, those wanted while it is being made included.
#[cfg(feature = "redis")]
async fn subscribe_redis(
    client: &redis::Client,
    prefix: &str,
    wanted: &Mutex<BTreeSet<Stream>>,
) -> redis::RedisResult<(redis::aio::PubSubSink, redis::aio::PubSubStream)> {
    let pubsub = client.get_async_pubsub().await?;
    let (mut sink, stream) = pubsub.split();
    sink.subscribe(route::control_subject(prefix)).await?;
    // One at a time (the sink pairs each command with one reply), until
    // every bucket wanted by now is subscribed.
    let mut done = BTreeSet::new();
    loop {
        let next = {
            let wanted = wanted.lock().unwrap_or_else(|e| e.into_inner());
            wanted.iter().copied().find(|b| !done.contains(b))
        };
        let Some(b) = next else {
            return Ok((sink, stream));
        };
        sink.subscribe(route::event_subject(prefix, b)).await?;
        done.insert(b);
    }
}
