//! Reading one request off a connection: its head, then its body, from
//! whatever pieces the connection delivers, within the size limits and the
//! request's deadline.
//!
//! The HTTP server reads sockets through these functions
//! ([`read_head`], [`read_body`]); the `http_head` fuzz target drives the
//! very same functions over its input cut into random pieces, so what is
//! fuzzed is what serves.
//!
//! # Bounds
//! The buffer never holds more than the head limit plus one read while a
//! head is incomplete (past the limit the request is refused with 431),
//! and a body longer than the body limit is refused (413) before any of
//! it is read. A `Transfer-Encoding` is refused with the head (see
//! `request`), so a body is always exactly `Content-Length` bytes.

use super::request::{parse_head_with, Head};
use crate::errors::ApiError;
use std::future::Future;
use std::time::{Duration, Instant};

/// The peer sent nothing within the time limit.
pub struct TimedOut;

/// Where a request's bytes come from.
pub trait Reader {
    /// Appends what arrived to `buf` within `timeout`; `Ok(0)` when the
    /// peer closed (or the read failed).
    fn read_more(
        &mut self,
        buf: &mut Vec<u8>,
        timeout: Duration,
    ) -> impl Future<Output = Result<usize, TimedOut>>;
}

/// What limits a request head.
pub struct HeadLimits<'a> {
    /// `server.limits.max_request_head_kb`, in bytes.
    pub max_head_bytes: usize,
    /// The header that names the client's address, when it is read.
    pub ip_header: Option<&'a str>,
}

/// How reading a head ended.
pub enum ReadHead {
    /// `buf` starts with this complete head.
    Head(Head),
    /// The peer went away first.
    Closed,
    /// The head is malformed or too large.
    Refused(ApiError),
    /// The request's deadline passed first.
    TimedOut,
}

/// How reading a body ended.
pub enum ReadBody {
    /// `buf` holds the whole body, this long, right after the head
    /// (`buf[head.len..head.len + len]`).
    Complete(usize),
    /// The peer went away first.
    Closed,
    /// The request's deadline passed first.
    TimedOut,
}

/// Time left until `deadline` (zero once it passed).
pub fn left(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now())
}

/// Reads until `buf` starts with a complete head, by `deadline`.
pub async fn read_head(
    reader: &mut impl Reader,
    buf: &mut Vec<u8>,
    limits: &HeadLimits<'_>,
    deadline: Instant,
) -> ReadHead {
    loop {
        if !buf.is_empty() {
            match parse_head_with(buf, limits.ip_header) {
                Ok(Some(head)) => return ReadHead::Head(head),
                Ok(None) if buf.len() > limits.max_head_bytes => {
                    return ReadHead::Refused(ApiError::HeadTooLarge(format!(
                        "request head is larger than {} KiB",
                        limits.max_head_bytes / 1024
                    )))
                }
                Ok(None) => {}
                Err(e) => return ReadHead::Refused(e),
            }
        }
        match reader.read_more(buf, left(deadline)).await {
            Ok(n) if n > 0 => {}
            Err(TimedOut) => return ReadHead::TimedOut,
            Ok(_) => return ReadHead::Closed,
        }
    }
}

/// Reads the body of `head` into `buf`, after the head it starts with (the
/// body is not moved), by `deadline`; refuses a body over
/// `max_body_bytes` unread.
pub async fn read_body(
    reader: &mut impl Reader,
    buf: &mut Vec<u8>,
    head: &Head,
    max_body_bytes: usize,
    deadline: Instant,
) -> Result<ReadBody, ApiError> {
    let len = head.content_length.unwrap_or(0);
    if len > max_body_bytes {
        return Err(ApiError::PayloadTooLarge(format!(
            "request body of {len} bytes is over the {} KiB limit",
            max_body_bytes / 1024
        )));
    }
    while buf.len() < head.len + len {
        match reader.read_more(buf, left(deadline)).await {
            Ok(n) if n > 0 => {}
            Ok(_) => return Ok(ReadBody::Closed),
            Err(TimedOut) => return Ok(ReadBody::TimedOut),
        }
    }
    Ok(ReadBody::Complete(len))
}
