//! Reading one HTTP/1.1 request head with httparse, with hard limits.
//!
//! Nothing in a head is trusted: bodies are framed by one plain-digit
//! `Content-Length` only, and any `Transfer-Encoding` is refused (the
//! server decodes none, and guessing a body's end is how requests are
//! smuggled past a proxy).

use crate::errors::ApiError;
use crate::ws::handshake::Upgrade;
use smallvec::SmallVec;
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
    /// Whether the connection stays open after the response.
    pub keep_alive: bool,
    /// Set when the request asks for a WebSocket upgrade.
    pub upgrade: Option<UpgradeHead>,
    /// The token of an `Authorization: Bearer` header (the debug console's
    /// and the admin API's).
    pub bearer: Option<Bearer>,
    /// Bytes the head took in the buffer.
    pub len: usize,
}

/// A bearer token from a request head. Its `Debug` does not show it, so
/// it cannot reach a log line.
#[derive(Clone, PartialEq, Eq)]
pub struct Bearer(pub String);

impl std::fmt::Debug for Bearer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Bearer(<redacted>)")
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpgradeHead {
    pub version_13: bool,
    pub ws_key: Option<String>,
    pub connection_upgrade: bool,
    /// The value of the header named by `server.limits.client_ip_header`
    /// (its last line when repeated); read only when that is configured.
    pub client_ip: Option<String>,
}

/// Parses a head from the start of `buf`: `Ok(None)` when incomplete.
pub fn parse_head(buf: &[u8]) -> Result<Option<Head>, ApiError> {
    parse_head_with(buf, None)
}

/// [`parse_head`], also keeping the value of the header `client_ip_header`
/// (when named) of an upgrade request in [`UpgradeHead::client_ip`].
pub fn parse_head_with(
    buf: &[u8],
    client_ip_header: Option<&str>,
) -> Result<Option<Head>, ApiError> {
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
    let mut connection_close = false;
    let mut connection_keep_alive = false;
    let mut connection_upgrade = false;
    let mut upgrade_ws = false;
    let mut version_13 = false;
    let mut ws_key = None;
    let mut client_ip = None;
    let mut bearer = None;
    for h in req.headers.iter() {
        let value = std::str::from_utf8(h.value).unwrap_or("").trim();
        let name = h.name;
        if client_ip_header.is_some_and(|wanted| name.eq_ignore_ascii_case(wanted)) {
            // A later line wins: its last entry is the last one of them all.
            client_ip = Some(value.to_string());
        }
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
            return Err(ApiError::BadRequest(format!(
                "Transfer-Encoding `{}` is not supported (chunked included): send the body with Content-Length",
                value.escape_default()
            )));
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
        } else if name.eq_ignore_ascii_case("authorization") {
            let token = value
                .split_once(' ')
                .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
                .map(|(_, token)| Bearer(token.trim().to_string()));
            bearer = token;
        }
    }
    let http11 = req.version == Some(1);
    Ok(Some(Head {
        method: req.method.unwrap_or("").to_string(),
        path: path.to_string(),
        query: query.to_string(),
        content_length,
        keep_alive: if http11 {
            !connection_close
        } else {
            connection_keep_alive
        },
        upgrade: upgrade_ws.then_some(UpgradeHead {
            version_13,
            ws_key,
            connection_upgrade,
            client_ip,
        }),
        bearer,
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

/// A request's decoded query parameters, in order; a signed API request
/// (five or six of them) fits without an allocation.
pub type Query<'a> = SmallVec<[(Cow<'a, str>, Cow<'a, str>); 8]>;

/// Splits a query string into decoded `(key, value)` pairs (empty parts
/// skipped, a part without `=` has an empty value); a part without escapes
/// is borrowed, not copied. One pass over the bytes finds the separators
/// and whether a part has anything to decode.
pub fn parse_query(query: &str) -> Query<'_> {
    let bytes = query.as_bytes();
    let mut pairs = Query::new();
    let mut start = 0;
    let mut equals = None;
    let mut escaped = false;
    for i in 0..=bytes.len() {
        match bytes.get(i).copied().unwrap_or(b'&') {
            b'&' => {
                if i > start {
                    // Cut at ASCII separators: always on character boundaries.
                    let (k, v) = match equals {
                        Some(e) => (&query[start..e], &query[e + 1..i]),
                        None => (&query[start..i], ""),
                    };
                    pairs.push(if escaped {
                        (percent_decode(k), percent_decode(v))
                    } else {
                        (Cow::Borrowed(k), Cow::Borrowed(v))
                    });
                }
                start = i + 1;
                equals = None;
                escaped = false;
            }
            b'=' if equals.is_none() => equals = Some(i),
            b'%' | b'+' => escaped = true,
            _ => {}
        }
    }
    pairs
}

/// Decodes `%XX` escapes (two hex digits exactly, no sign) and `+` (as
/// space); an invalid escape stays as written, as the Pusher libraries
/// never produce one, and bytes that are not UTF-8 become U+FFFD.
pub fn percent_decode(s: &str) -> Cow<'_, str> {
    // Most parts (every signed API parameter) have nothing to decode.
    if !s.bytes().any(|b| b == b'%' || b == b'+') {
        return Cow::Borrowed(s);
    }
    if !s.contains('+') {
        return percent_encoding::percent_decode_str(s).decode_utf8_lossy();
    }
    let spaced = s.replace('+', " ");
    let decoded = percent_encoding::percent_decode_str(&spaced)
        .decode_utf8_lossy()
        .into_owned();
    Cow::Owned(decoded)
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
            parse_query(&h.query).to_vec(),
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
    fn keeps_the_client_ip_header_only_when_named() {
        let raw = b"GET /app/k?protocol=7 HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: a==\r\nX-Forwarded-For: 1.1.1.1\r\nx-forwarded-for: 10.0.0.1, 203.0.113.5\r\n\r\n";
        let plain = parse_head(raw).unwrap().unwrap();
        assert_eq!(plain.upgrade.unwrap().client_ip, None);
        let named = parse_head_with(raw, Some("X-Forwarded-For"))
            .unwrap()
            .unwrap();
        assert_eq!(
            named.upgrade.unwrap().client_ip.as_deref(),
            Some("10.0.0.1, 203.0.113.5")
        );
        let other = parse_head_with(raw, Some("X-Real-IP")).unwrap().unwrap();
        assert_eq!(other.upgrade.unwrap().client_ip, None);
    }

    /// The one-pass split agrees with splitting on `&` then on the first `=`.
    #[test]
    fn query_parts_as_split_would_cut_them() {
        for query in [
            "",
            "&",
            "a",
            "a=",
            "=b",
            "a=b=c&&d&e=%41+x&f=%zz&g=%C3%A9&h=é&=&==",
            "auth_key=k&auth_timestamp=1&auth_version=1.0&body_md5=00&auth_signature=ff",
            "a+b=c%20d&+=+",
        ] {
            let split: Vec<_> = query
                .split('&')
                .filter(|p| !p.is_empty())
                .map(|pair| {
                    let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                    (percent_decode(k), percent_decode(v))
                })
                .collect();
            assert_eq!(parse_query(query).to_vec(), split, "{query:?}");
        }
        assert!(parse_query("a=b&c=d")
            .iter()
            .all(|(k, v)| matches!((k, v), (Cow::Borrowed(_), Cow::Borrowed(_)))));
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%20b+c"), "a b c");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz"), "%zz");
        assert_eq!(percent_decode("%4"), "%4");
        assert_eq!(percent_decode("%2B+%2b"), "+ +");
        assert!(matches!(percent_decode("plain"), Cow::Borrowed("plain")));
    }

    /// `u8::from_str_radix` takes a sign: `%+5` and `%-0` must not decode.
    #[test]
    fn escapes_with_a_sign_stay_literal() {
        assert_eq!(percent_decode("%+5"), "% 5");
        assert_eq!(percent_decode("%-0x"), "%-0x");
        assert_eq!(percent_decode("a%+fb"), "a% fb");
    }

    /// Any Transfer-Encoding is refused, alone, listed, repeated or beside
    /// a Content-Length; the message names the header.
    #[test]
    fn every_transfer_encoding_is_refused() {
        for te in [
            "Transfer-Encoding: chunked\r\n",
            "Transfer-Encoding: gzip\r\n",
            "Transfer-Encoding: identity\r\n",
            "Transfer-Encoding: gzip, chunked\r\n",
            "Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n",
            "Content-Length: 3\r\nTransfer-Encoding: identity\r\n",
            "transfer-encoding: \r\n",
        ] {
            let raw = format!("POST /apps/1/events HTTP/1.1\r\nHost: h\r\n{te}\r\nabc");
            assert!(
                matches!(parse_head(raw.as_bytes()), Err(ApiError::BadRequest(m)) if m.contains("Transfer-Encoding")),
                "{te:?} accepted"
            );
        }
    }

    #[test]
    fn content_length_takes_plain_digits_only() {
        for cl in ["+5", "-5", "5 5", "5, 5", "0x5", " ", "5\t5"] {
            let raw = format!("POST / HTTP/1.1\r\nContent-Length: {cl}\r\n\r\n");
            assert!(
                matches!(parse_head(raw.as_bytes()), Err(ApiError::BadRequest(_))),
                "Content-Length {cl:?} accepted"
            );
        }
        let padded = parse_head(b"POST / HTTP/1.1\r\nContent-Length:  7 \r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(padded.content_length, Some(7));
    }
}
