//! One accepted TCP connection: HTTP/1.1 requests in order (keep-alive and
//! pipelining) until it closes or upgrades to a WebSocket.

use super::api;
use super::request::{parse_head, Head};
use super::response::Response;
use crate::errors::ApiError;
use crate::net::Socket;
use crate::runtime::{sleep, Shard};
use crate::ws;
use std::rc::Rc;
use std::time::Duration;

/// How long a client may take to send a complete request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(30);
/// How long an idle keep-alive connection stays open.
const IDLE_TIMEOUT: Duration = Duration::from_secs(120);
const READ_CHUNK: usize = 16 * 1024;

enum Read {
    Head(Head),
    Closed,
    Refused(ApiError),
}

/// Serves a connection until it closes or becomes a WebSocket.
pub async fn serve(shard: Rc<Shard>, mut socket: Socket) {
    let mut buf: Vec<u8> = Vec::new();
    loop {
        let head = match read_head(&shard, &mut socket, &mut buf).await {
            Read::Head(h) => h,
            Read::Closed => return,
            Read::Refused(e) => {
                let mut out = Vec::new();
                Response::error(&e).encode(false, &mut out);
                let _ = socket.write_all(&out).await;
                return;
            }
        };
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
                    return ws::conn::serve(shard, socket, pusher, leftover).await;
                }
                (Err(why), _) => ApiError::BadRequest(format!("bad WebSocket upgrade: {why}")),
                (Ok(()), None) => ApiError::NotFound(format!(
                    "no WebSocket endpoint at {}: connect to /app/{{key}}?protocol=7",
                    head.path
                )),
            };
            let mut out = Vec::new();
            Response::error(&refusal).encode(false, &mut out);
            let _ = socket.write_all(&out).await;
            return;
        }
        buf.drain(..head.len);
        let keep_alive = head.keep_alive && !shard.draining.is_raised();
        let response = match read_body(&shard, &mut socket, &mut buf, &head).await {
            Ok(Some(len)) => {
                shard.http_in_flight.set(shard.http_in_flight.get() + 1);
                let response = api::handle(&shard, &head, &mut buf[..len]).await;
                shard.http_in_flight.set(shard.http_in_flight.get() - 1);
                buf.drain(..len);
                response
            }
            Ok(None) => return,
            Err(e) => {
                let mut out = Vec::new();
                Response::error(&e).encode(false, &mut out);
                let _ = socket.write_all(&out).await;
                return;
            }
        };
        let mut out = Vec::with_capacity(128 + response.body.len());
        response.encode(keep_alive, &mut out);
        if head.method == "HEAD" {
            // Same head as for GET, without the body.
            out.truncate(out.len() - response.body.len());
        }
        if socket.write_all(&out).await.is_err() || !keep_alive {
            return;
        }
        if buf.is_empty() {
            buf = Vec::new();
        }
    }
}

/// Reads until `buf` starts with a complete head, within the time limits.
async fn read_head(shard: &Shard, socket: &mut Socket, buf: &mut Vec<u8>) -> Read {
    let limit = shard.config.limits.max_request_head_bytes;
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
        let timeout = if first && buf.is_empty() {
            IDLE_TIMEOUT
        } else {
            HEAD_TIMEOUT
        };
        first = false;
        match read_more(socket, buf, timeout).await {
            Some(n) if n > 0 => {}
            _ => return Read::Closed,
        }
    }
}

/// Reads the body into `buf` (after the head was removed); returns its length.
async fn read_body(
    shard: &Shard,
    socket: &mut Socket,
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
        match read_more(socket, buf, HEAD_TIMEOUT).await {
            Some(n) if n > 0 => {}
            _ => return Ok(None),
        }
    }
    Ok(Some(len))
}

/// Appends what the socket has to `buf`; `None` on timeout or error.
async fn read_more(socket: &mut Socket, buf: &mut Vec<u8>, timeout: Duration) -> Option<usize> {
    let old = buf.len();
    buf.resize(old + READ_CHUNK, 0);
    let read = futures_lite::future::or(async { socket.read(&mut buf[old..]).await.ok() }, async {
        sleep(timeout).await;
        None
    })
    .await;
    buf.truncate(old + read.unwrap_or(0));
    read
}
