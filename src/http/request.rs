//! Reading one HTTP/1.1 request head with httparse, with hard limits.

use crate::errors::ApiError;
use crate::ws::handshake::Upgrade;
use std::borrow::Cow;

const MAX_HEADERS: usize = 64;

/// The parts of a request head the server uses, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub method: String,
    /// Path without the query.
    pub path: String,
    /// The raw query string (after `?`), empty when absent.
    pub query: String,
    pub content_length: Option<usize>,
    pub chunked: bool,
    /// Whether the connection stays open after the response.
    pub keep_alive: bool,
    /// Set when the request asks for a WebSocket upgrade.
    pub upgrade: Option<UpgradeHead>,
    /// Bytes the head took in the buffer.
    pub len: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpgradeHead {
    pub version_13: bool,
    pub ws_key: Option<String>,
    pub connection_upgrade: bool,
}

/// Parses a head from the start of `buf`: `Ok(None)` when incomplete.
pub fn parse_head(buf: &[u8]) -> Result<Option<Head>, ApiError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(ApiError::HeadTooLarge(format!(
                "more than {MAX_HEADERS} headers"
            )))
        }
        Err(e) => return Err(ApiError::BadRequest(format!("malformed HTTP request: {e}"))),
    };
    let target = req.path.unwrap_or("/");
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut content_length = None;
    let mut chunked = false;
    let mut connection_close = false;
    let mut connection_keep_alive = false;
    let mut connection_upgrade = false;
    let mut upgrade_ws = false;
    let mut version_13 = false;
    let mut ws_key = None;
    for h in req.headers.iter() {
        let value = std::str::from_utf8(h.value).unwrap_or("").trim();
        let name = h.name;
        if name.eq_ignore_ascii_case("content-length") {
            // Digits only: `parse` would also take a sign (`+5`), which other
            // HTTP parsers read differently (a request-smuggling risk).
            let n = Some(value)
                .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|v| v.parse::<usize>().ok())
                .ok_or_else(|| ApiError::BadRequest(format!("invalid Content-Length `{value}`")))?;
            if content_length.is_some_and(|c| c != n) {
                return Err(ApiError::BadRequest(
                    "conflicting Content-Length headers".into(),
                ));
            }
            content_length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked |= value.to_ascii_lowercase().contains("chunked");
        } else if name.eq_ignore_ascii_case("connection") {
            for token in value.split(',').map(|t| t.trim().to_ascii_lowercase()) {
                match token.as_str() {
                    "close" => connection_close = true,
                    "keep-alive" => connection_keep_alive = true,
                    "upgrade" => connection_upgrade = true,
                    _ => {}
                }
            }
        } else if name.eq_ignore_ascii_case("upgrade") {
            upgrade_ws |= value.eq_ignore_ascii_case("websocket");
        } else if name.eq_ignore_ascii_case("sec-websocket-version") {
            version_13 = value == "13";
        } else if name.eq_ignore_ascii_case("sec-websocket-key") {
            ws_key = Some(value.to_string());
        }
    }
    let http11 = req.version == Some(1);
    Ok(Some(Head {
        method: req.method.unwrap_or("").to_string(),
        path: path.to_string(),
        query: query.to_string(),
        content_length,
        chunked,
        keep_alive: if http11 {
            !connection_close
        } else {
            connection_keep_alive
        },
        upgrade: upgrade_ws.then_some(UpgradeHead {
            version_13,
            ws_key,
            connection_upgrade,
        }),
        len,
    }))
}

impl Head {
    /// The Pusher view of an upgrade to `/app/{key}`; `None` for other paths.
    pub fn pusher_upgrade(&self) -> Option<Upgrade> {
        let key = self.path.strip_prefix("/app/")?;
        if key.is_empty() || key.contains('/') {
            return None;
        }
        let protocol = parse_query(&self.query)
            .into_iter()
            .find(|(k, _)| k == "protocol")
            .map(|(_, v)| v.into_owned());
        Some(Upgrade {
            app_key: percent_decode(key).into_owned(),
            protocol,
            ws_key: self.upgrade.as_ref()?.ws_key.clone().unwrap_or_default(),
        })
    }
}

/// Splits a query string into decoded `(key, value)` pairs.
/// Splits a query string into decoded `(key, value)` pairs; a part without
/// escapes is borrowed, not copied.
pub fn parse_query(query: &str) -> Vec<(Cow<'_, str>, Cow<'_, str>)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

/// Decodes `%XX` escapes and `+` (as space); invalid escapes stay as written.
pub fn percent_decode(s: &str) -> Cow<'_, str> {
    if !s.bytes().any(|b| b == b'%' || b == b'+') {
        return Cow::Borrowed(s);
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_post_head() {
        let raw = b"POST /apps/1/events?auth_key=k&x=a%2Cb HTTP/1.1\r\nHost: h\r\nContent-Length: 12\r\n\r\n{\"a\":1}";
        let h = parse_head(raw).unwrap().unwrap();
        assert_eq!(h.method, "POST");
        assert_eq!(h.path, "/apps/1/events");
        assert_eq!(h.query, "auth_key=k&x=a%2Cb");
        assert_eq!(h.content_length, Some(12));
        assert!(h.keep_alive);
        assert!(h.upgrade.is_none());
        assert_eq!(&raw[h.len..], b"{\"a\":1}");
        assert_eq!(
            parse_query(&h.query),
            vec![("auth_key".into(), "k".into()), ("x".into(), "a,b".into())]
        );
    }

    #[test]
    fn incomplete_and_bad_heads() {
        assert_eq!(parse_head(b"GET / HTTP/1.1\r\nHost:").unwrap(), None);
        assert!(matches!(
            parse_head(b"\x01\x02 nonsense\r\n\r\n"),
            Err(ApiError::BadRequest(_))
        ));
        assert!(matches!(
            parse_head(b"POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n"),
            Err(ApiError::BadRequest(m)) if m.contains("Content-Length")
        ));
    }

    #[test]
    fn connection_semantics() {
        let h = parse_head(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(!h.keep_alive);
        let h = parse_head(b"GET / HTTP/1.0\r\n\r\n").unwrap().unwrap();
        assert!(!h.keep_alive);
        let h = parse_head(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(h.keep_alive);
    }

    #[test]
    fn reads_a_pusher_upgrade() {
        let raw = b"GET /app/app-key?protocol=7&client=js HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: abc==\r\n\r\n";
        let h = parse_head(raw).unwrap().unwrap();
        let up = h.upgrade.clone().unwrap();
        assert!(up.version_13 && up.connection_upgrade);
        let p = h.pusher_upgrade().unwrap();
        assert_eq!(p.app_key, "app-key");
        assert_eq!(p.protocol.as_deref(), Some("7"));
        assert_eq!(p.ws_key, "abc==");
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%20b+c"), "a b c");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz"), "%zz");
        assert_eq!(percent_decode("%4"), "%4");
    }
}
