//! `GET /console/stream`: the live stream one page reads, as chunked
//! `application/x-ndjson` (one JSON object per line): a `hello` line, then
//! every ~250 ms the new events that pass the stream's filter, and once a
//! second a `stats` line (charts, busiest channels) and a `dropped` line.
//!
//! A slow reader never slows a shard: the stream reads the hub's ring at
//! its own pace and skips what it missed, counted; a write that does not
//! finish within [`WRITE_TIMEOUT`] ends the stream. At most
//! [`MAX_EVENTS_PER_SECOND`] events a second are sent (the newest of each
//! batch); the rest are counted as skipped, so the page is told how much
//! it does not show. At most [`MAX_STREAMS`] streams are open at once.

use super::super::request::Head;
use super::super::response::Response;
use super::filter::{Filter, KINDS};
use super::hub::{self, COLLECT_EVERY, RING_ITEMS};
use super::{authorize, render};
use crate::errors::ApiError;
use crate::net::Stream;
use crate::pusher::shard::Shard;
use crate::pusher::tap::BUFFER_EVENTS;
use std::rc::Rc;
use std::time::Duration;

/// Streams open at once at most (503 beyond).
pub const MAX_STREAMS: usize = 8;
/// Events one stream sends per second at most.
pub const MAX_EVENTS_PER_SECOND: usize = 1000;
/// How long one write to the page may take before the stream ends.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a new stream waits for the shards to be watched before `hello`.
const WATCH_WAIT: Duration = Duration::from_secs(2);
/// Route label for metrics.
const ROUTE: &str = "console_stream";

/// Serves one stream until the page goes away, a write times out or the
/// server shuts down. Refusals (401, 404, 405, 400) are plain responses.
pub async fn serve_stream(shard: &Rc<Shard>, mut socket: Stream, head: &Head) {
    let hub = hub::hub();
    let filter = match check(shard, head, hub.viewers()) {
        Ok(f) => f,
        Err(e) => {
            shard.counters.http_request(ROUTE, e.status());
            let mut r = Response::error(&e);
            if e.status() == 401 {
                r.headers = "WWW-Authenticate: Bearer realm=\"shardcast console\"\r\n";
            }
            let mut out = Vec::new();
            r.encode(false, &mut out);
            let _ = socket.write_all(&out).await;
            return;
        }
    };
    shard.counters.http_request(ROUTE, 200);
    let _attached = hub.attach(shard);
    // `hello` means "watching": the shards have been asked once.
    let waited = std::time::Instant::now();
    while !hub.is_watching() && waited.elapsed() < WATCH_WAIT {
        crate::runtime::sleep(Duration::from_millis(5)).await;
    }
    let mut out = b"HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\n\
Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n\
Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        .to_vec();
    chunk(&mut out, &hello(shard));
    if !write(shard, &mut socket, &out).await {
        return;
    }
    let mut cursor = hub.next_seq();
    let dropped_before = hub.dropped();
    let mut skipped: u64 = 0;
    let mut stats_seen = 0;
    let per_batch = MAX_EVENTS_PER_SECOND * COLLECT_EVERY.as_millis() as usize / 1000;
    loop {
        crate::runtime::sleep(COLLECT_EVERY).await;
        if shard.is_draining() {
            let _ = write(shard, &mut socket, b"0\r\n\r\n").await;
            return;
        }
        let (items, lost) = hub.since(cursor);
        cursor += lost + items.len() as u64;
        skipped += lost;
        let shown: Vec<_> = items.iter().filter(|i| filter.shows(i)).collect();
        let over = shown.len().saturating_sub(per_batch);
        skipped += over as u64;
        let mut lines = Vec::new();
        for item in &shown[over..] {
            lines.extend_from_slice(&item.line);
            lines.push(b'\n');
        }
        if let Some((seq, stats)) = hub.stats_after(stats_seen) {
            stats_seen = seq;
            lines.extend_from_slice(&stats);
            lines.push(b'\n');
            let at_buffers = hub.dropped().saturating_sub(dropped_before);
            lines.extend_from_slice(
                format!(
                    "{{\"type\":\"dropped\",\"at_buffers\":{at_buffers},\"skipped\":{skipped}}}\n"
                )
                .as_bytes(),
            );
        }
        if lines.is_empty() {
            continue;
        }
        let mut out = Vec::with_capacity(lines.len() + 16);
        chunk(&mut out, &lines);
        if !write(shard, &mut socket, &out).await {
            return;
        }
    }
}

/// The request's method, token and filter, and room for one more stream.
fn check(shard: &Shard, head: &Head, streams: usize) -> Result<Filter, ApiError> {
    authorize(shard, head)?;
    if head.method != "GET" {
        return Err(ApiError::MethodNotAllowed(format!(
            "{} accepts GET only",
            head.path
        )));
    }
    let filter = Filter::parse(shard, &head.query)?;
    if streams >= MAX_STREAMS {
        return Err(ApiError::Unavailable(format!(
            "{MAX_STREAMS} console streams are open already; close one and retry"
        )));
    }
    Ok(filter)
}

/// The first line: the apps, the kinds and the bounds the page states.
fn hello(shard: &Shard) -> Vec<u8> {
    let apps = render::apps(shard);
    let kinds: Vec<String> = KINDS.iter().map(|k| format!("\"{k}\"")).collect();
    format!(
        "{{\"type\":\"hello\",\"shards\":{},\"apps\":{},\"kinds\":[{}],\"limits\":{{\"shard_buffer\":{BUFFER_EVENTS},\"ring\":{RING_ITEMS},\"per_second\":{MAX_EVENTS_PER_SECOND}}}}}\n",
        shard.count,
        String::from_utf8_lossy(&apps[8..apps.len() - 1]),
        kinds.join(",")
    )
    .into_bytes()
}

/// Appends `data` as one HTTP chunk.
fn chunk(out: &mut Vec<u8>, data: &[u8]) {
    out.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// Writes within [`WRITE_TIMEOUT`]; false when the stream must end.
async fn write(shard: &Shard, socket: &mut Stream, out: &[u8]) -> bool {
    matches!(
        shard
            .deadlines
            .within(WRITE_TIMEOUT, socket.write_all(out))
            .await,
        Some(Ok(_))
    )
}
