//! One accepted TCP connection: HTTP/1.1 requests in order (keep-alive and
//! pipelining) until it closes or upgrades to a WebSocket.
//!
//! Abuse limits: connections still sending their first request head are
//! capped per shard (a share of `max_pending_heads`; 503 above it), and a
//! head must arrive within `head_timeout_secs` (408 after it).
//!
//! With TLS configured, a main-port connection first completes its TLS
//! handshake, within the same time limit and counted against the same cap
//! (a connection over the cap is closed without a handshake).

use super::request::{parse_head, Head};
use super::response::Response;
use super::{api, metrics_port};
use crate::errors::ApiError;
use crate::net::{Socket, Stream};
use crate::runtime::Shard;
use crate::ws;
use std::rc::Rc;
use std::task::Poll;
use std::time::Duration;

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

enum Read {
    Head(Head),
    Closed,
    Refused(ApiError),
    TimedOut,
}

/// A connection counted in `Shard::pending_heads` until its first head is in.
struct PendingHead<'a> {
    shard: &'a Shard,
    held: bool,
}

impl PendingHead<'_> {
    fn release(&mut self) {
        if self.held {
            self.held = false;
            let n = self.shard.pending_heads.get();
            self.shard.pending_heads.set(n.saturating_sub(1));
        }
    }
}

impl Drop for PendingHead<'_> {
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
    let cap = shard
        .config
        .limits
        .max_pending_heads
        .div_ceil(shard.count as u32)
        .max(1);
    if shard.pending_heads.get() >= cap {
        if tls.is_some() {
            return; // no handshake spent on a connection we refuse
        }
        let e = ApiError::Unavailable(format!(
            "too many connections are still sending their request ({cap} on this core); retry later"
        ));
        return refuse(&shard, &mut Stream::Plain(socket), &e).await;
    }
    shard.pending_heads.set(shard.pending_heads.get() + 1);
    let mut pending = PendingHead {
        shard: &shard,
        held: true,
    };
    let mut socket = match tls {
        Some(tls) => {
            let timeout = shard.config.limits.head_timeout;
            match shard.deadlines.within(timeout, tls.accept(socket)).await {
                Some(Ok(stream)) => stream,
                Some(Err(e)) => {
                    log::debug!("shard {}: TLS handshake failed: {e}", shard.id);
                    return;
                }
                None => return, // the handshake took longer than head_timeout
            }
        }
        None => Stream::Plain(socket),
    };
    let mut buf: Vec<u8> = Vec::new();
    let mut served = false;
    loop {
        let head = match read_head(&shard, &mut socket, &mut buf, served).await {
            Read::Head(h) => h,
            Read::Closed => return,
            Read::TimedOut => {
                let e = ApiError::Timeout(format!(
                    "request head not received within {} s",
                    shard.config.limits.head_timeout.as_secs()
                ));
                return refuse(&shard, &mut socket, &e).await;
            }
            Read::Refused(e) => return refuse(&shard, &mut socket, &e).await,
        };
        pending.release();
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
                    // Boxed, like the API call below, so an idle keep-alive
                    // or handshaking connection holds only this loop's state.
                    return Box::pin(ws::conn::serve(shard, socket, pusher, leftover)).await;
                }
                (Err(why), _) => ApiError::BadRequest(format!("bad WebSocket upgrade: {why}")),
                (Ok(()), None) => ApiError::NotFound(format!(
                    "no WebSocket endpoint at {}: connect to /app/{{key}}?protocol=7",
                    head.path
                )),
            };
            return refuse(&shard, &mut socket, &refusal).await;
        }
        buf.drain(..head.len);
        let keep_alive = head.keep_alive && !shard.is_draining();
        let response = match read_body(&shard, &mut socket, &mut buf, &head).await {
            Ok(Some(len)) => {
                shard.http_in_flight.set(shard.http_in_flight.get() + 1);
                let (route, response) = match site {
                    Site::Main => (
                        api::route_label(&head.path),
                        Box::pin(api::handle(&shard, &head, &mut buf[..len])).await,
                    ),
                    Site::Metrics => Box::pin(metrics_port::handle(&shard, &head)).await,
                };
                shard.http_in_flight.set(shard.http_in_flight.get() - 1);
                shard.counters.http_request(route, response.status);
                buf.drain(..len);
                response
            }
            Ok(None) => return,
            Err(e) => return refuse(&shard, &mut socket, &e).await,
        };
        served = true;
        let mut out = Vec::with_capacity(128 + response.body.len());
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
    }
}

/// Reads until `buf` starts with a complete head, within the time limits.
/// Between keep-alive requests (`served`) the connection may idle longer.
async fn read_head(shard: &Shard, socket: &mut Stream, buf: &mut Vec<u8>, served: bool) -> Read {
    let limit = shard.config.limits.max_request_head_bytes;
    let head_timeout = shard.config.limits.head_timeout;
    let mut first = true;
    loop {
        if !buf.is_empty() {
            match parse_head(buf) {
                Ok(Some(head)) => return Read::Head(head),
                Ok(None) if buf.len() > limit => {
                    return Read::Refused(ApiError::HeadTooLarge(format!(
                        "request head is larger than {} KiB",
                        limit / 1024
                    )))
                }
                Ok(None) => {}
                Err(e) => return Read::Refused(e),
            }
        }
        let idle = served && first && buf.is_empty();
        let timeout = if idle { IDLE_TIMEOUT } else { head_timeout };
        first = false;
        match read_more(shard, socket, buf, timeout).await {
            Ok(n) if n > 0 => {}
            Err(TimedOut) if !idle => return Read::TimedOut,
            _ => return Read::Closed,
        }
    }
}

/// Reads the body into `buf` (after the head was removed); returns its length.
async fn read_body(
    shard: &Shard,
    socket: &mut Stream,
    buf: &mut Vec<u8>,
    head: &Head,
) -> Result<Option<usize>, ApiError> {
    if head.chunked {
        return Err(ApiError::BadRequest(
            "chunked request bodies are not supported: send Content-Length".into(),
        ));
    }
    let len = head.content_length.unwrap_or(0);
    let cap = shard.config.limits.max_request_body_bytes;
    if len > cap {
        return Err(ApiError::PayloadTooLarge(format!(
            "request body of {len} bytes is over the {} KiB limit",
            cap / 1024
        )));
    }
    while buf.len() < len {
        match read_more(shard, socket, buf, shard.config.limits.head_timeout).await {
            Ok(n) if n > 0 => {}
            _ => return Ok(None),
        }
    }
    Ok(Some(len))
}

/// The peer sent nothing within the time limit.
struct TimedOut;

/// Appends what the socket has to `buf`; `Ok(0)` when the peer closed or
/// the read failed. Reads go through the shard's scratch buffer, so `buf`
/// only ever holds the bytes that arrived (no zeroed read-ahead space).
async fn read_more(
    shard: &Shard,
    socket: &mut Stream,
    buf: &mut Vec<u8>,
    timeout: Duration,
) -> Result<usize, TimedOut> {
    let read = futures_lite::future::poll_fn(|cx| {
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
    shard.deadlines.within(timeout, read).await.ok_or(TimedOut)
}
