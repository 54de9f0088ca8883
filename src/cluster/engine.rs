//! The engines that carry node-to-node messages: Redis pub/sub and NATS,
//! through their well-kept client crates, on the link thread's tokio
//! runtime. Each offers the same two things: publish bytes on the
//! cluster's subject, and a stream of what every node published there.
//!
//! Redis needs a connection for publishing and another for subscribing;
//! when either breaks, [`Publisher`] and [`Subscription`] reconnect by
//! themselves (with backoff) and resubscribe. The NATS client reconnects and
//! resubscribes on its own; its state changes are logged.
//!
//! Each engine is compiled only with its cargo feature (`redis`, `nats`);
//! an adapter whose feature is off is refused when the link opens.

use super::engine_files::{self, UrlAuth};
use crate::config::settings::{CLUSTER_CA_FILE, CLUSTER_CERT_FILE, CLUSTER_CREDENTIALS_FILE};
use crate::config::{Adapter, EngineFiles};
use bytes::Bytes;
use futures_lite::StreamExt;
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

/// The cluster's subject (Redis channel or NATS subject) under `prefix`.
pub fn subject(prefix: &str) -> String {
    format!("{prefix}.cluster")
}

/// Doubles a reconnection delay up to [`MAX_BACKOFF`].
fn backoff(delay: &mut Duration) -> Duration {
    let now = *delay;
    *delay = (*delay * 2).min(MAX_BACKOFF);
    now
}

/// Publishes on the cluster subject.
pub struct Publisher {
    engine: Engine,
    subject: String,
    #[cfg(feature = "redis")]
    redis: Option<redis::aio::MultiplexedConnection>,
    /// Messages given up while the engine was unreachable (this outage).
    dropped: u64,
}

impl Publisher {
    pub fn new(engine: Engine, subject: String) -> Publisher {
        Publisher {
            engine,
            subject,
            #[cfg(feature = "redis")]
            redis: None,
            dropped: 0,
        }
    }

    /// Publishes one engine message. While Redis is unreachable the message
    /// is dropped (counted, logged at reconnection): local delivery goes on.
    pub async fn publish(&mut self, payload: Bytes) {
        match &self.engine {
            #[cfg(feature = "nats")]
            Engine::Nats { client, .. } => {
                if let Err(e) = client.publish(self.subject.clone(), payload).await {
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
                    .arg(&self.subject)
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

/// What every node published on the cluster subject (our own messages
/// included; the link skips them).
pub struct Subscription {
    engine: Engine,
    subject: String,
    #[cfg(feature = "redis")]
    redis: Option<redis::aio::PubSubStream>,
    #[cfg(feature = "nats")]
    nats: Option<async_nats::Subscriber>,
    /// Redis is unreachable (logged once per outage).
    #[cfg(feature = "redis")]
    outage: bool,
}

impl Subscription {
    pub fn new(engine: Engine, subject: String) -> Subscription {
        Subscription {
            engine,
            subject,
            #[cfg(feature = "redis")]
            redis: None,
            #[cfg(feature = "nats")]
            nats: None,
            #[cfg(feature = "redis")]
            outage: false,
        }
    }

    /// The next message; reconnects and resubscribes as long as it takes.
    /// Cancel-safe: a dropped call loses no message and no state.
    pub async fn next(&mut self) -> Bytes {
        let mut delay = Duration::from_millis(50);
        loop {
            match &self.engine {
                #[cfg(feature = "redis")]
                Engine::Redis(client) => {
                    if let Some(stream) = &mut self.redis {
                        match stream.next().await {
                            Some(msg) => return Bytes::copy_from_slice(msg.get_payload_bytes()),
                            None => {
                                log::warn!("cluster: lost the Redis subscription; local delivery continues, reconnecting");
                                self.redis = None;
                                self.outage = true;
                            }
                        }
                    }
                    match subscribe_redis(client, &self.subject).await {
                        Ok(stream) => {
                            if self.outage {
                                log::info!("cluster: subscribed to Redis again");
                                self.outage = false;
                            }
                            self.redis = Some(stream);
                            delay = Duration::from_millis(50);
                        }
                        Err(e) => {
                            if !self.outage {
                                log::warn!("cluster: cannot subscribe to Redis: {e}; retrying");
                                self.outage = true;
                            }
                            tokio::time::sleep(backoff(&mut delay)).await;
                        }
                    }
                }
                #[cfg(feature = "nats")]
                Engine::Nats { client } => {
                    if let Some(sub) = &mut self.nats {
                        // The client resubscribes by itself after a reconnect.
                        match sub.next().await {
                            Some(msg) => return msg.payload,
                            None => self.nats = None,
                        }
                    }
                    match client.subscribe(self.subject.clone()).await {
                        Ok(sub) => self.nats = Some(sub),
                        Err(e) => {
                            log::warn!("cluster: cannot subscribe to NATS: {e}; retrying");
                            tokio::time::sleep(backoff(&mut delay)).await;
                        }
                    }
                }
            }
        }
    }
}

#[cfg(feature = "redis")]
async fn subscribe_redis(
    client: &redis::Client,
    subject: &str,
) -> redis::RedisResult<redis::aio::PubSubStream> {
    let mut pubsub = client.get_async_pubsub().await?;
    pubsub.subscribe(subject).await?;
    Ok(pubsub.into_on_message())
}
