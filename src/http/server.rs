//! One accepted TCP connection: HTTP/1.1 requests in order (keep-alive and
//! pipelining) until it closes or upgrades to a WebSocket.
//!
//! Abuse limits: connections whose request (head or body) is still
//! arriving are "pending", capped per shard (a share of `max_pending_heads`;
//! 503 and close above it); a request, head and body together, must arrive
//! within `head_timeout_secs` of its start (408 and close after it). A
//! request starts when the connection is accepted, or for a later
//! keep-alive request with its first byte: an idle keep-alive connection
//! is neither pending nor on the request clock.
//!
//! With TLS configured, a main-port connection first completes its TLS
//! handshake, within the same time limit and counted against the same cap
//! (a connection over the cap is closed without a handshake).

use super::client_ip::resolve_client_ip;
use super::framing::{self, left, HeadLimits, ReadBody, ReadHead, Reader, TimedOut};
use super::response::Response;
use super::{api, console, metrics_port};
use crate::errors::ApiError;
use crate::net::{Socket, Stream};
use crate::pusher::delivery::Publisher;
use crate::pusher::shard::Shard;
use crate::ws;
use std::rc::Rc;
use std::task::Poll;
use std::time::{Duration, Instant};

/// How long an idle keep-alive connection stays open.
const IDLE_TIMEOUT: Duration = Duration::from_secs(120);
/// Route label for requests refused before they had a route.
const UNROUTED: &str = "unrouted";

/// Which listener a connection came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Site {
    /// WebSocket clients, the HTTP API and health checks.
    Main,
    /// `/metrics` and `/usage`.
    Metrics,
}

/// A connection counted in `Shard::pending_heads` while one of its
/// requests is incomplete (head or body).
struct PendingRequest<'a> {
    shard: &'a Shard,
    /// This shard's share of `max_pending_heads`.
    cap: u32,
    held: bool,
}

impl<'a> PendingRequest<'a> {
    fn new(shard: &'a Shard) -> Self {
        let cap = shard
            .config
            .limits
            .max_pending_heads
            .div_ceil(shard.count as u32)
            .max(1);
        PendingRequest {
            shard,
            cap,
            held: false,
        }
    }

    /// Counts the connection as pending; false when the shard is at its cap.
    fn hold(&mut self) -> bool {
        if self.held {
            return true;
        }
        let n = self.shard.pending_heads.get();
        if n >= self.cap {
            return false;
        }
        self.shard.pending_heads.set(n + 1);
        self.held = true;
        true
    }

    fn release(&mut self) {
        if self.held {
            self.held = false;
            let n = self.shard.pending_heads.get();
            self.shard.pending_heads.set(n.saturating_sub(1));
        }
    }

    fn refusal(&self) -> ApiError {
        ApiError::Unavailable(format!(
            "too many connections are still sending their request ({} on this core); retry later",
            self.cap
        ))
    }
}

impl Drop for PendingRequest<'_> {
    fn drop(&mut self) {
        self.release();
    }
}

async fn refuse(shard: &Shard, socket: &mut Stream, e: &ApiError) {
    shard.counters.http_request(UNROUTED, e.status());
    let mut out = Vec::new();
    Response::error(e).encode(false, &mut out);
    let _ = socket.write_all(&out).await;
}

/// Serves a connection until it closes or becomes a WebSocket.
pub async fn serve(shard: Rc<Shard>, socket: Socket, site: Site) {
    let tls = match site {
        Site::Main => shard.tls.clone(),
        Site::Metrics => None,
    };
    let publisher = Publisher::new(shard.new_http_source());
    let head_timeout = shard.config.limits.head_timeout;
    let mut deadline = Instant::now() + head_timeout;
    let mut pending = PendingRequest::new(&shard);
    if !pending.hold() {
        if tls.is_some() {
            return; // no handshake spent on a connection we refuse
        }
        let e = pending.refusal();
        return refuse(&shard, &mut Stream::Plain(socket), &e).await;
    }
    // The peer address, read only when connections per address are limited.
    let peer = shard
        .config
        .limits
        .max_connections_per_ip
        .and_then(|_| socket.peer_ip());
    let mut socket = match tls {
        Some(tls) => match shard
            .deadlines
            .within(left(deadline), tls.accept(socket))
            .await
        {
            Some(Ok(stream)) => stream,
            Some(Err(e)) => {
                crate::debug_limited!("shard {}: TLS handshake failed: {e}", shard.id);
                return;
            }
            None => return, // the handshake took longer than head_timeout
        },
        None => Stream::Plain(socket),
    };
    let mut buf: Vec<u8> = Vec::new();
    // The encoded response, kept between requests (dropped when large).
    let mut out: Vec<u8> = Vec::new();
    let mut served = false;
    loop {
        if served {
            // Idle until the next request's first byte: not pending, and
            // that byte starts the next request's clock.
            if buf.is_empty() {
                let mut reader = SocketReader::new(&shard, &mut socket);
                match reader.read_more(&mut buf, IDLE_TIMEOUT).await {
                    Ok(n) if n > 0 => {}
                    _ => return,
                }
            }
            if !pending.hold() {
                let e = pending.refusal();
                return refuse(&shard, &mut socket, &e).await;
            }
            deadline = Instant::now() + head_timeout;
        }
        let too_slow = || {
            ApiError::Timeout(format!(
                "request not received in full within {} s",
                head_timeout.as_secs()
            ))
        };
        let limits = &shard.config.limits;
        let head_limits = HeadLimits {
            max_head_bytes: limits.max_request_head_bytes,
            // The client address header is only of use to the per-address limit.
            ip_header: limits
                .max_connections_per_ip
                .and(limits.client_ip_header.as_deref()),
        };
        let mut reader = SocketReader::new(&shard, &mut socket);
        let head = match framing::read_head(&mut reader, &mut buf, &head_limits, deadline).await {
            ReadHead::Head(h) => h,
            ReadHead::Closed => return,
            ReadHead::TimedOut => return refuse(&shard, &mut socket, &too_slow()).await,
            ReadHead::Refused(e) => return refuse(&shard, &mut socket, &e).await,
        };
        if site == Site::Metrics && head.upgrade.is_some() {
            let e = ApiError::NotFound("no WebSocket endpoint on the metrics port".into());
            return refuse(&shard, &mut socket, &e).await;
        }
        if let Some(upgrade) = &head.upgrade {
            let checked = ws::handshake::check_headers(
                &head.method,
                upgrade.version_13,
                upgrade.connection_upgrade,
                upgrade.ws_key.as_deref(),
            );
            let refusal = match (checked, head.pusher_upgrade()) {
                (Ok(()), Some(pusher)) => {
                    let leftover = buf.split_off(head.len);
                    drop(buf);
                    drop(pending);
                    let client = peer.map(|p| resolve_client_ip(p, upgrade.client_ip.as_deref()));
                    // Boxed, like the API call below, so an idle keep-alive
                    // or handshaking connection holds only this loop's state.
                    return Box::pin(crate::pusher::connection::serve(
                        shard, socket, pusher, leftover, client,
                    ))
                    .await;
                }
                (Err(why), _) => ApiError::BadRequest(format!("bad WebSocket upgrade: {why}")),
                (Ok(()), None) => ApiError::NotFound(format!(
                    "no WebSocket endpoint at {}: connect to /app/{{key}}?protocol=7",
                    head.path
                )),
            };
            return refuse(&shard, &mut socket, &refusal).await;
        }
        let keep_alive = head.keep_alive && !shard.is_draining();
        let max_body = shard.config.limits.max_request_body_bytes;
        let mut reader = SocketReader::new(&shard, &mut socket);
        // The body stays where it arrived, after the head.
        let len = match framing::read_body(&mut reader, &mut buf, &head, max_body, deadline).await {
            Ok(ReadBody::Complete(len)) => len,
            Ok(ReadBody::Closed) => return,
            Ok(ReadBody::TimedOut) => return refuse(&shard, &mut socket, &too_slow()).await,
            Err(e) => return refuse(&shard, &mut socket, &e).await,
        };
        pending.release();
        if site == Site::Metrics && head.path == console::STREAM_PATH {
            // The console's event stream keeps the connection to itself.
            return Box::pin(console::serve_stream(&shard, socket, &head)).await;
        }
        shard.http_in_flight.set(shard.http_in_flight.get() + 1);
        let body = &mut buf[head.len..head.len + len];
        let (route, response) = match site {
            Site::Main => (
                api::route_label(&head.path),
                Box::pin(api::handle(&shard, &head, body, &publisher)).await,
            ),
            Site::Metrics => Box::pin(metrics_port::handle(&shard, &head, body, &publisher)).await,
        };
        shard.http_in_flight.set(shard.http_in_flight.get() - 1);
        shard.counters.http_request(route, response.status);
        buf.drain(..head.len + len);
        served = true;
        out.clear();
        response.encode(keep_alive, &mut out);
        if head.method == "HEAD" {
            // Same head as for GET, without the body.
            out.truncate(out.len() - response.body.len());
        }
        if socket.write_all(&out).await.is_err() || !keep_alive {
            return;
        }
        if buf.is_empty() && buf.capacity() > 4096 {
            buf = Vec::new(); // a large body's buffer is not kept while idle
        }
        if out.capacity() > 4096 {
            out = Vec::new(); // nor a large response's
        }
    }
}

/// A connection's socket as the request reader's source. Reads go through
/// the shard's scratch buffer, so `buf` only ever holds the bytes that
/// arrived (no zeroed read-ahead space); waiting uses the shard's coarse
/// deadlines.
struct SocketReader<'a> {
    shard: &'a Shard,
    socket: &'a mut Stream,
}

impl<'a> SocketReader<'a> {
    fn new(shard: &'a Shard, socket: &'a mut Stream) -> Self {
        SocketReader { shard, socket }
    }
}

impl Reader for SocketReader<'_> {
    async fn read_more(&mut self, buf: &mut Vec<u8>, timeout: Duration) -> Result<usize, TimedOut> {
        read_socket(self.shard, self.socket, buf, timeout).await
    }
}

/// Appends what the socket has to `buf`; `Ok(0)` when the peer closed or
/// the read failed.
async fn read_socket(
    shard: &Shard,
    socket: &mut Stream,
    buf: &mut Vec<u8>,
    timeout: Duration,
) -> Result<usize, TimedOut> {
    if timeout.is_zero() {
        return Err(TimedOut);
    }
    let mut read = futures_lite::future::poll_fn(|cx| {
        let mut scratch = shard.scratch.borrow_mut();
        match socket.poll_read(cx, &mut scratch[..]) {
            Poll::Ready(Ok(n)) => {
                buf.extend_from_slice(&scratch[..n]);
                Poll::Ready(n)
            }
            Poll::Ready(Err(_)) => Poll::Ready(0),
            Poll::Pending => Poll::Pending,
        }
    });
    // Bytes that are already there need no deadline (and no entry in the
    // shard's table of waiting reads).
    if let Some(n) = futures_lite::future::poll_once(&mut read).await {
        return Ok(n);
    }
    shard.deadlines.within(timeout, read).await.ok_or(TimedOut)
}
