//! The checks behind every fuzz target, one function per target, each
//! taking the raw fuzzer input. Shared by the libFuzzer wrappers in
//! `fuzz_targets/` and by the regression test that replays saved inputs
//! (`tests/integration/fuzz_regressions.rs` includes this file), so it uses
//! only `shardcast` and its own dependencies.
#![allow(dead_code)]

pub mod http_head {
    //! The HTTP request reader the server runs (`http::framing::read_head`
    //! and `read_body`), fed the input in pieces: a complete head is followed
    //! by its Content-Length body (left in place after the head) (refused past the body limit, any
    //! Transfer-Encoding refused), then the next pipelined request. Checks
    //! that the parser never claims more bytes than it was given, that a
    //! head parsed from a prefix is the head parsed from the whole, that the
    //! buffer never grows past head limit + one read, and that a body is
    //! exactly its Content-Length.
    //!
    //! Also: a head with a `Transfer-Encoding` header (any case, any value)
    //! is refused; `parse_head_with` under a configured client-address
    //! header (none, `X-Forwarded-For`, a header name the input itself
    //! carries, or arbitrary bytes from the input) gives the head
    //! `parse_head` gives and captures exactly the trimmed value of the last
    //! line of that header; and the client address drawn from it
    //! (`resolve_client_ip`) is either the peer's or the strict parse of the
    //! value's last comma-separated entry, never an earlier entry.

    use shardcast::http::framing::{
        read_body, read_head, HeadLimits, ReadBody, ReadHead, Reader, TimedOut,
    };
    use shardcast::http::{
        canonical, parse_head, parse_head_with, parse_query, percent_decode, resolve_client_ip,
    };
    use std::future::Future;
    use std::net::IpAddr;
    use std::task::{Context, Poll, Waker};
    use std::time::{Duration, Instant};

    const HEAD_LIMIT: usize = 16 * 1024;
    const BODY_LIMIT: usize = 4096 * 1024;

    pub fn run(data: &[u8]) {
        if data.is_empty() {
            return;
        }
        // The first byte picks how the stream is cut into reads (low six
        // bits) and which client-address header is configured (top two).
        let step = 1 + (data[0] as usize % 64);
        let stream = &data[1..];

        refuses_transfer_encoding(stream);
        captures_client_ip(data[0] >> 6, stream);

        // One-shot parse and its invariants.
        if let Ok(Some(head)) = parse_head(stream) {
            assert!(head.len <= stream.len(), "head longer than the input");
            // Content-Length is 1*DIGIT (RFC 9110 8.6): anything else
            // accepted lets a proxy and the server disagree on where a
            // request ends.
            if head.content_length.is_some() {
                let mut headers = [httparse::EMPTY_HEADER; 64];
                let mut req = httparse::Request::new(&mut headers);
                if req.parse(stream).is_ok() {
                    for h in req.headers.iter() {
                        if h.name.eq_ignore_ascii_case("content-length") {
                            let v = String::from_utf8_lossy(h.value);
                            let v = v.trim();
                            assert!(
                                !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()),
                                "Content-Length {v:?} accepted"
                            );
                        }
                    }
                }
            }
            // Any longer input with the same prefix parses to the same head.
            let again = parse_head(&stream[..head.len]).expect("same prefix parses");
            assert_eq!(again.as_ref(), Some(&head));
            let _ = head.pusher_upgrade();
            for (k, v) in parse_query(&head.query) {
                let _ = (k.len(), v.len());
            }
            let _ = percent_decode(&head.path);
        }

        // The server's own request reader (`http::framing`), fed the
        // stream in pieces of `step` bytes, request after request the way
        // `http::serve` loops over a keep-alive connection.
        let mut reader = Pieces {
            stream,
            pos: 0,
            step,
        };
        let limits = HeadLimits {
            max_head_bytes: HEAD_LIMIT,
            ip_header: None,
        };
        let deadline = Instant::now() + Duration::from_secs(3600);
        let mut buf: Vec<u8> = Vec::new();
        loop {
            let head = match ready(read_head(&mut reader, &mut buf, &limits, deadline)) {
                ReadHead::Head(h) => h,
                ReadHead::Refused(_) | ReadHead::Closed => break,
                ReadHead::TimedOut => panic!("an in-memory read timed out"),
            };
            assert!(head.len <= buf.len(), "head longer than what was read");
            assert!(
                buf.len() <= HEAD_LIMIT + step,
                "head buffer grew past the limit and one read"
            );
            if head.upgrade.is_some() {
                let _ = head.pusher_upgrade();
                break;
            }
            let len = match ready(read_body(
                &mut reader,
                &mut buf,
                &head,
                BODY_LIMIT,
                deadline,
            )) {
                Ok(ReadBody::Complete(len)) => len,
                Ok(ReadBody::Closed) => break,
                Ok(ReadBody::TimedOut) => panic!("an in-memory read timed out"),
                Err(_) => {
                    assert!(head.content_length.unwrap_or(0) > BODY_LIMIT);
                    break; // 413
                }
            };
            assert_eq!(Some(len), head.content_length.or(Some(0)));
            // The body follows the head in place.
            let end = head.len + len;
            assert!(buf.len() >= end && buf.len() < end + step + HEAD_LIMIT);
            buf.drain(..end);
            if !head.keep_alive {
                break;
            }
        }
    }

    /// The input as a connection delivering `step` bytes per read.
    struct Pieces<'a> {
        stream: &'a [u8],
        pos: usize,
        step: usize,
    }

    impl Reader for Pieces<'_> {
        async fn read_more(&mut self, buf: &mut Vec<u8>, _: Duration) -> Result<usize, TimedOut> {
            let n = self.step.min(self.stream.len() - self.pos);
            buf.extend_from_slice(&self.stream[self.pos..self.pos + n]);
            self.pos += n;
            Ok(n)
        }
    }

    /// Runs a future that never waits (its reads are in memory) to its end.
    fn ready<F: Future>(f: F) -> F::Output {
        let mut f = std::pin::pin!(f);
        match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(out) => out,
            Poll::Pending => panic!("an in-memory read waited"),
        }
    }

    /// A complete head naming `Transfer-Encoding` (in any case) is an error.
    fn refuses_transfer_encoding(stream: &[u8]) {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut req = httparse::Request::new(&mut headers);
        if let Ok(httparse::Status::Complete(_)) = req.parse(stream) {
            if req
                .headers
                .iter()
                .any(|h| h.name.eq_ignore_ascii_case("transfer-encoding"))
            {
                assert!(parse_head(stream).is_err(), "Transfer-Encoding accepted");
                assert!(
                    parse_head_with(stream, Some("transfer-encoding")).is_err(),
                    "Transfer-Encoding accepted when it is the address header"
                );
            }
        }
    }

    fn captures_client_ip(choice: u8, stream: &[u8]) {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut req = httparse::Request::new(&mut headers);
        let parsed = match req.parse(stream) {
            Ok(httparse::Status::Complete(len)) => Some(len),
            _ => None,
        };
        let name: Option<String> = match choice {
            0 => None,
            1 => Some("X-Forwarded-For".into()),
            // The name of the head's last header, as the input spells it.
            2 => Some(
                parsed
                    .and_then(|_| req.headers.last())
                    .map_or("X-Real-IP".into(), |h| h.name.to_string()),
            ),
            // Up to 40 bytes after the head: any string at all.
            _ => {
                let tail = &stream[parsed.unwrap_or(stream.len())..];
                Some(String::from_utf8_lossy(&tail[..tail.len().min(40)]).into_owned())
            }
        };
        let plain = parse_head(stream);
        let with = parse_head_with(stream, name.as_deref());
        let (head, captured) = match (plain, with) {
            (Ok(plain), Ok(mut with)) => {
                let captured = with
                    .as_mut()
                    .and_then(|h| h.upgrade.as_mut())
                    .and_then(|u| u.client_ip.take());
                assert_eq!(plain, with, "the address header changed the head");
                if name.is_none() {
                    assert_eq!(captured, None, "a header captured unasked");
                }
                match with {
                    Some(head) => (head, captured),
                    None => return,
                }
            }
            (Err(_), Err(_)) => return,
            (plain, with) => panic!("parse_head {plain:?} but parse_head_with {with:?}"),
        };
        if let (Some(name), Some(_)) = (&name, &head.upgrade) {
            // The trimmed value of the last line with that name.
            let expected = req
                .headers
                .iter()
                .rev()
                .find(|h| h.name.eq_ignore_ascii_case(name))
                .map(|h| {
                    std::str::from_utf8(h.value)
                        .unwrap_or("")
                        .trim()
                        .to_string()
                });
            assert_eq!(captured, expected, "captured value of {name:?}");
        }
        let peers: [IpAddr; 3] = [
            [192, 0, 2, 1].into(),
            "2001:db8::9".parse().unwrap(),
            "::ffff:198.51.100.2".parse().unwrap(),
        ];
        for peer in peers {
            let got = resolve_client_ip(peer, captured.as_deref());
            let last = captured
                .as_deref()
                .and_then(|v| v.rsplit(',').next())
                .map(str::trim);
            match last.and_then(|l| l.parse::<IpAddr>().ok()) {
                // The last entry is an address: it counts, canonical.
                Some(ip) => assert_eq!(got, canonical(ip), "entry {last:?}"),
                // Else the peer counts.
                None => assert_eq!(got, canonical(peer), "value {captured:?}"),
            }
            assert!(
                got == canonical(peer)
                    || last.is_some_and(|l| l.parse::<IpAddr>().map(canonical) == Ok(got)),
                "{got} is neither the peer nor the last entry of {captured:?}"
            );
            // One spelling per client: never an IPv4-mapped IPv6 address.
            assert_eq!(got, canonical(got));
        }
    }
}

pub mod ws_frame {
    //! The WebSocket frame decoder as `ws::conn::ConnTask` drives it: the
    //! stream arrives in reads of fuzzer-chosen sizes; each step decodes at
    //! most a budget of messages (1–32, fuzzed; the server's is 32) from the
    //! kept bytes then the fresh read, keeps the rest (an incomplete frame,
    //! or complete frames over the budget from `partial_start` on) and,
    //! while such a backlog remains, takes further steps without reading
    //! (`take_input_from`, `decode_some`); the client's close frame or the
    //! first error ends it. The same reads are also decoded without a budget.
    //! Checks: a decoder never uses more bytes than it has, delivered text is
    //! valid UTF-8 and within the cap, control payloads are at most 125
    //! bytes, close codes are valid, errors are 1002/1003/1007/1009, the
    //! kept bytes stay within cap + the largest header + one read, and the
    //! budgeted run yields exactly the messages (and error) of the
    //! unbudgeted one, in the same order: none lost, duplicated or reordered.

    use shardcast::ws::frame::{Decoder, FrameError, Inbound};

    /// A decoded message, owned, to compare two runs.
    #[derive(Debug, Clone, PartialEq, Eq)]
    enum Seen {
        Text(Vec<u8>),
        Ping(Vec<u8>),
        Pong,
        Close(Option<u16>),
        Fragment,
        Error(u16),
    }

    /// Checks one decoded message; returns its owned form.
    fn seen(message: Inbound<'_>, used: usize, len: usize, max: usize) -> Seen {
        assert!(used <= len && used >= 2, "used {used} of {len}");
        match message {
            Inbound::Text(t) => {
                assert!(t.len() <= max, "text over the cap");
                assert!(std::str::from_utf8(t).is_ok(), "text not UTF-8");
                Seen::Text(t.to_vec())
            }
            Inbound::Ping(p) => {
                assert!(p.len() <= 125);
                Seen::Ping(p.to_vec())
            }
            Inbound::Close(code) => {
                if let Some(code) = code {
                    assert!(matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999))
                }
                Seen::Close(code)
            }
            Inbound::Pong => Seen::Pong,
            Inbound::Fragment => Seen::Fragment,
        }
    }

    fn error(e: FrameError) -> Seen {
        assert!(
            matches!(e.code, 1002 | 1003 | 1007 | 1009),
            "code {}",
            e.code
        );
        Seen::Error(e.code)
    }

    pub fn run(data: &[u8]) {
        if data.len() < 2 {
            return;
        }
        // First byte: the message cap (small caps reach the size checks);
        // second: the read size; both: the message budget per step.
        let max = match data[0] % 4 {
            0 => 64 * 1024,
            1 => 125,
            2 => 1 + data[0] as usize * 3,
            _ => 4096,
        };
        let step = 1 + data[1] as usize;
        let budget = 1 + ((data[0] as usize >> 2) + data[1] as usize) % 32;
        let stream = &data[2..];

        let all = unbudgeted(stream, step, max);
        let stepped = budgeted(stream, step, max, budget);
        assert_eq!(
            stepped, all,
            "a budget of {budget} changed the messages decoded"
        );
    }

    /// Every complete frame of each read decoded at once.
    fn unbudgeted(stream: &[u8], step: usize, max: usize) -> Vec<Seen> {
        let mut out = Vec::new();
        let mut decoder = Decoder::default();
        let mut partial: Vec<u8> = Vec::new();
        let mut at = 0;
        'conn: while at < stream.len() {
            let n = step.min(stream.len() - at);
            let mut fresh = stream[at..at + n].to_vec();
            at += n;
            let mut kept = std::mem::take(&mut partial);
            let buf: &mut [u8] = if kept.is_empty() {
                &mut fresh[..]
            } else {
                kept.extend_from_slice(&fresh);
                &mut kept[..]
            };
            let mut pos = 0;
            loop {
                let len = buf.len() - pos;
                match decoder.decode(&mut buf[pos..], max) {
                    Ok(None) => break,
                    Ok(Some((message, used))) => {
                        let m = seen(message, used, len, max);
                        let close = matches!(m, Seen::Close(_));
                        out.push(m);
                        if close {
                            break 'conn; // later bytes are read and ignored
                        }
                        pos += used;
                    }
                    Err(e) => {
                        out.push(error(e));
                        break 'conn;
                    }
                }
            }
            if pos < buf.len() {
                partial = buf[pos..].to_vec();
            }
            assert!(
                partial.len() <= max + 14 + step,
                "kept {} bytes",
                partial.len()
            );
        }
        out
    }

    /// The connection's side of `ConnTask`: what it keeps between steps.
    struct Task {
        decoder: Decoder,
        partial: Vec<u8>,
        partial_start: usize,
        backlog: bool,
        /// Close frame or error seen: nothing more is decoded.
        done: bool,
        out: Vec<Seen>,
        max: usize,
        budget: usize,
    }

    impl Task {
        fn take_input_from(&mut self, fresh: &mut [u8]) {
            if self.partial_start == self.partial.len() {
                self.partial.clear();
                self.partial_start = 0;
                let used = self.decode_some(fresh);
                assert!(used <= fresh.len());
                if used < fresh.len() {
                    self.partial.extend_from_slice(&fresh[used..]);
                }
                return;
            }
            if !fresh.is_empty() {
                assert!(!self.backlog, "read while complete frames wait");
                self.partial.drain(..self.partial_start);
                self.partial_start = 0;
                self.partial.extend_from_slice(fresh);
            }
            let mut kept = std::mem::take(&mut self.partial);
            let used = self.decode_some(&mut kept[self.partial_start..]);
            self.partial = kept;
            self.partial_start += used;
            assert!(self.partial_start <= self.partial.len());
            if self.partial_start == self.partial.len() {
                self.partial = Vec::new();
                self.partial_start = 0;
            }
        }

        fn decode_some(&mut self, buf: &mut [u8]) -> usize {
            let mut pos = 0;
            self.backlog = false;
            for _ in 0..self.budget {
                let len = buf.len() - pos;
                match self.decoder.decode(&mut buf[pos..], self.max) {
                    Ok(None) => return pos,
                    Ok(Some((message, used))) => {
                        let m = seen(message, used, len, self.max);
                        pos += used;
                        let close = matches!(m, Seen::Close(_));
                        self.out.push(m);
                        if close {
                            self.done = true;
                            return buf.len();
                        }
                    }
                    Err(e) => {
                        self.out.push(error(e));
                        self.done = true;
                        return buf.len();
                    }
                }
            }
            self.backlog = pos < buf.len();
            pos
        }
    }

    fn budgeted(stream: &[u8], step: usize, max: usize, budget: usize) -> Vec<Seen> {
        let mut task = Task {
            decoder: Decoder::default(),
            partial: Vec::new(),
            partial_start: 0,
            backlog: false,
            done: false,
            out: Vec::new(),
            max,
            budget,
        };
        let mut at = 0;
        let mut steps = 0;
        while !task.done && (task.backlog || at < stream.len()) {
            steps += 1;
            assert!(steps <= 2 * stream.len() + 2, "no progress");
            if task.backlog {
                let before = task.out.len();
                task.take_input_from(&mut []);
                assert!(
                    task.out.len() > before || !task.backlog,
                    "a backlog step decoded nothing"
                );
            } else {
                let n = step.min(stream.len() - at);
                let mut fresh = stream[at..at + n].to_vec();
                at += n;
                task.take_input_from(&mut fresh);
            }
            let unhandled = task.partial.len() - task.partial_start;
            assert!(
                task.partial.len() <= max + 14 + step && unhandled <= task.partial.len(),
                "kept {} bytes",
                task.partial.len()
            );
            if task.backlog {
                assert!(unhandled > 0, "a backlog with nothing kept");
            }
        }
        task.out
    }
}

pub mod pusher_message {
    //! The Pusher message parser: every client event (`pusher:ping`, `pong`,
    //! `subscribe` with `auth` and `channel_data`, `unsubscribe`, `signin` with
    //! `user_data`, `client-*`, unknown), the presence `channel_data` and
    //! sign-in `user_data` parsers, and the bounded JSON parser under them.
    //! Checks: no panic and no stack overflow at any nesting; anything
    //! `json::parse` accepts is nested at most `MAX_DEPTH` deep and re-encodes
    //! to JSON that parses again; a relayed client event's `data` is JSON.

    use shardcast::member::{parse_channel_data, MAX_USER_ID_LEN, MAX_USER_INFO_BYTES};
    use shardcast::pusher::inbound::{parse, ClientMessage};
    use shardcast::pusher::signin::parse_user_data;
    use simd_json::prelude::*;
    use simd_json::BorrowedValue;

    fn depth(v: &BorrowedValue<'_>) -> usize {
        // Iterative, so the check itself cannot overflow.
        let mut max = 0;
        let mut stack = vec![(v, 0usize)];
        while let Some((v, d)) = stack.pop() {
            match v {
                BorrowedValue::Array(a) => {
                    max = max.max(d + 1);
                    stack.extend(a.iter().map(|x| (x, d + 1)));
                }
                BorrowedValue::Object(o) => {
                    max = max.max(d + 1);
                    stack.extend(o.values().map(|x| (x, d + 1)));
                }
                _ => {}
            }
        }
        max
    }

    fn check_side_parsers(s: &str) {
        if let Ok(m) = parse_channel_data(s) {
            assert!(!m.user_id.is_empty() && m.user_id.len() <= MAX_USER_ID_LEN);
            assert!(m.user_info.len() <= MAX_USER_INFO_BYTES);
        }
        if let Ok(u) = parse_user_data(s) {
            assert!(!u.id.is_empty());
            assert!(u.watchlist.len() <= 100);
        }
    }

    pub fn run(data: &[u8]) {
        // The bounded JSON parser.
        let mut bytes = data.to_vec();
        if let Ok(v) = shardcast::json::parse(&mut bytes) {
            assert!(depth(&v) <= shardcast::json::MAX_DEPTH, "nested too deep");
            let mut again = v.encode().into_bytes();
            assert!(
                shardcast::json::parse(&mut again).is_ok(),
                "re-encoded JSON does not parse"
            );
        }
        // The message parser (the decoder only hands it valid UTF-8, but it
        // must not care).
        let mut bytes = data.to_vec();
        match parse(&mut bytes) {
            Ok(ClientMessage::Subscribe {
                channel_data: Some(cd),
                ..
            }) => check_side_parsers(&cd),
            Ok(ClientMessage::Signin {
                user_data: Some(ud),
                ..
            }) => check_side_parsers(&ud),
            Ok(ClientMessage::ClientEvent { data, .. }) => {
                let mut d = data.into_bytes();
                assert!(
                    shardcast::json::parse(&mut d).is_ok(),
                    "client event data is not JSON"
                );
            }
            Ok(_) | Err(_) => {}
        }
        // channel_data / user_data as they arrive: any string.
        if let Ok(s) = std::str::from_utf8(data) {
            check_side_parsers(s);
        }
    }
}

pub mod api_body {
    //! The HTTP API body parser: `POST /apps/{id}/events` and `/batch_events`
    //! bodies, under the default limits and under small ones. Checks: no panic,
    //! and every accepted event respects the limits it was parsed with.

    use shardcast::apps::AppLimits;
    use shardcast::http::{parse_batch, parse_event, TriggerEvent};

    fn check(e: &TriggerEvent, l: &AppLimits) {
        assert!(!e.name.is_empty() && e.name.len() <= l.max_event_name_length);
        assert!(!e.name.starts_with("pusher:") && !e.name.starts_with("pusher_internal:"));
        assert!(e.data.len() <= l.max_event_payload_bytes);
        assert!(!e.channels.is_empty() && e.channels.len() <= l.max_channels_per_event);
        for c in &e.channels {
            assert!(!c.is_empty() && c.len() <= l.max_channel_name_length);
        }
    }

    pub fn run(data: &[u8]) {
        let default = AppLimits::default();
        let small = AppLimits {
            max_event_payload_bytes: 16,
            max_channels_per_event: 2,
            max_batch_size: 2,
            max_event_name_length: 8,
            max_channel_name_length: 8,
            ..AppLimits::default()
        };
        for limits in [&default, &small] {
            if let Ok(e) = parse_event(&mut data.to_vec(), limits) {
                check(&e, limits);
            }
            if let Ok(batch) = parse_batch(&mut data.to_vec(), limits) {
                assert!(!batch.is_empty() && batch.len() <= limits.max_batch_size);
                for e in &batch {
                    check(e, limits);
                    assert_eq!(e.channels.len(), 1, "one channel per batch item");
                }
            }
        }
    }
}

pub mod signatures {
    //! The signature checks: the HTTP API request (key, version, timestamp
    //! window, body_md5, HMAC over the sorted decoded query) and client auth
    //! strings (`key:signature`). The query string is fuzzed as it arrives,
    //! percent-encoded, and decoded with `http::parse_query` as the server
    //! does. Checks: no panic (overflow included) for any query, timestamp
    //! or clock; a request signed correctly is accepted, with a stale
    //! timestamp or a changed body refused; client auth accepts exactly
    //! `key:HMAC`.
    //!
    //! Input: 4 bytes server clock (u32 seconds), 2 bytes timestamp skew
    //! (i16), 1 flag byte, then NUL-separated method, path, raw query, body,
    //! secret, client auth, string to sign.

    use shardcast::apps::App;
    use shardcast::auth::{
        api_string_to_sign, body_md5, sign, verify_api_request, verify_client_auth,
    };
    use shardcast::http::parse_query;

    pub fn run(data: &[u8]) {
        if data.len() < 7 {
            return;
        }
        let now = u32::from_le_bytes([data[0], data[1], data[2], data[3]]) as i64;
        let skew = i16::from_le_bytes([data[4], data[5]]) as i64;
        let tamper = data[6] & 1 == 1;
        let mut fields = data[7..].split(|&b| b == 0);
        let mut next = || fields.next().unwrap_or(&[]);
        let (method, path, raw_query, body, secret, client_auth, to_sign) =
            (next(), next(), next(), next(), next(), next(), next());
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        let (method, path, raw_query) = (text(method), text(path), text(raw_query));
        let (secret, client_auth, to_sign) = (text(secret), text(client_auth), text(to_sign));
        let app = App::new("app-id".into(), "app-key".into(), secret);

        // 1. Whatever arrives.
        let query = parse_query(&raw_query);
        let _ = verify_api_request(&app, &method, &path, &query, body, now);

        // 2. The same parameters, signed as a server library would.
        let mut signed: Vec<(String, String)> = query
            .into_iter()
            .filter(|(k, _)| {
                let k = k.to_ascii_lowercase();
                !matches!(
                    k.as_str(),
                    "auth_key" | "auth_timestamp" | "auth_version" | "body_md5" | "auth_signature"
                )
            })
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        signed.push(("auth_key".into(), "app-key".into()));
        signed.push(("auth_timestamp".into(), (now + skew).to_string()));
        signed.push(("auth_version".into(), "1.0".into()));
        if !body.is_empty() {
            signed.push(("body_md5".into(), body_md5(body)));
        }
        let sig = sign(
            &app.secret,
            api_string_to_sign(&method, &path, &signed).as_bytes(),
        );
        signed.push(("auth_signature".into(), sig));
        let result = verify_api_request(&app, &method, &path, &signed, body, now);
        if skew.abs() <= 600 {
            assert!(
                result.is_ok(),
                "a correctly signed request was refused: {result:?}"
            );
        } else {
            assert!(result.is_err(), "a stale timestamp was accepted");
        }
        if tamper && !body.is_empty() {
            let mut other = body.to_vec();
            other[0] ^= 1;
            assert!(verify_api_request(&app, &method, &path, &signed, &other, now).is_err());
        }

        // 3. Client auth strings.
        let ok = verify_client_auth(&app, &client_auth, &to_sign);
        let expected = format!("app-key:{}", sign(&app.secret, to_sign.as_bytes()));
        assert_eq!(ok, client_auth == expected, "client auth mismatch");
        assert!(verify_client_auth(&app, &expected, &to_sign));
    }
}

pub mod cluster_wire {
    //! The cluster link's decoder of engine messages (what Redis or NATS
    //! hands a node; anyone who can publish on the engine can send it
    //! anything). Checks: no panic; a decoded message encodes back to bytes
    //! that decode to the same messages; every frame the link would accept
    //! is a single unmasked text frame of exactly its length.
    use bytes::Bytes;
    use shardcast::cluster::wire::{decode, encode, envelope_header, NodeMsg};
    use shardcast::ws::frame::Frame;

    pub fn run(data: &[u8]) {
        let message = Bytes::copy_from_slice(data);
        let Ok(envelope) = decode(&message) else {
            return;
        };
        let mut again = Vec::new();
        envelope_header(&envelope.header, &mut again);
        for m in &envelope.messages {
            encode(m, &mut again);
        }
        let round = decode(&Bytes::from(again)).expect("re-encoded message decodes");
        assert_eq!(round, envelope);
        for m in envelope.messages {
            if let NodeMsg::Publish { frames, .. } = m {
                for (_, bytes) in frames {
                    let len = bytes.len();
                    if let Some(frame) = Frame::from_encoded(bytes) {
                        assert_eq!(frame.len(), len);
                        assert_eq!(frame.bytes()[0], 0x81);
                    }
                }
            }
        }
    }
}

pub mod channel_index {
    //! `pusher::channels::ChannelTable`, the subscription relation indexed
    //! from both sides, against a plain model (per connection: the set of
    //! (app, channel name) it is subscribed to, with its presence user).
    //! The input is a sequence of operations over 3 apps, 32 connections
    //! and 24 channel names: subscribe (with or without a presence user),
    //! unsubscribe (by name, or by a raw, possibly stale, channel id),
    //! close (leave every channel from the end, as a closing connection
    //! does), bulk joins that grow the table past the sizes `shrink` gives
    //! memory back from (one per input, in inputs starting with `B`),
    //! `shrink`, and full checks. After each operation
    //! the touched channel and connection agree with the model (subscribers
    //! as a set, the connection's list as a set, `is_member`,
    //! `presence_user`, ids stable while a channel lives, a channel freed
    //! when its last subscriber leaves) and so do `len`, `subscriptions`
    //! and the interest the table holds (one key per live channel); a full
    //! check compares everything.

    use shardcast::apps::AppIdx;
    use shardcast::pusher::channels::{ChannelTable, SubList};
    use shardcast::pusher::conns::{ChannelId, ConnKey};
    use shardcast::pusher::interest::ShardInterest;
    use std::collections::{BTreeMap, BTreeSet};

    const APPS: u32 = 3;
    const CONNS: usize = 32;
    const NAMES: u8 = 24;
    /// Channels one bulk join adds: enough that leaving them all leaves
    /// capacities `shrink` gives back (its threshold is 4 × 1024).
    const BULK: usize = 4200;

    /// (app, name number): integer keys keep the model cheap under
    /// libFuzzer's comparison tracing; [`name_of`] spells the name.
    type Chan = (u32, u32);

    #[derive(Default)]
    struct Model {
        /// Per connection: its channels and the user it declared on each.
        by_conn: Vec<BTreeMap<Chan, Option<String>>>,
        /// Per live channel: its id and subscribers.
        by_chan: BTreeMap<Chan, (ChannelId, BTreeSet<ConnKey>)>,
        /// Live channel ids.
        by_id: BTreeMap<ChannelId, Chan>,
    }

    /// Names of bulk joins are numbered from here.
    const BULK_NAMES: u32 = 1000;

    fn name_of(n: u32) -> String {
        // A third of the names look like presence channels; the table
        // does not care, the model neither.
        if n >= BULK_NAMES {
            format!("bulk{}", n - BULK_NAMES)
        } else if n.is_multiple_of(3) {
            format!("presence-c{n}")
        } else {
            format!("c{n}")
        }
    }

    /// The name number of a name `name_of` spelled.
    fn number_of(name: &str) -> u32 {
        let n = if let Some(i) = name.strip_prefix("bulk") {
            BULK_NAMES + i.parse::<u32>().unwrap()
        } else {
            let digits = name.strip_prefix("presence-").unwrap_or(name);
            digits.strip_prefix('c').unwrap().parse().unwrap()
        };
        assert_eq!(name_of(n), name, "a channel name the table made up");
        n
    }

    fn key(conn: usize) -> ConnKey {
        // Not dense from 0: connection slots are arbitrary numbers.
        conn as ConnKey * 7 + 3
    }

    pub fn run(data: &[u8]) {
        let mut table = ChannelTable::new(APPS as usize, ShardInterest::alone());
        let mut lists: Vec<SubList> = (0..CONNS).map(|_| SubList::new()).collect();
        let mut model = Model {
            by_conn: vec![BTreeMap::new(); CONNS],
            ..Model::default()
        };
        let Some((&mode, ops)) = data.split_first() else {
            return;
        };
        // Bulk joins cost thousands of operations: only inputs that start
        // with `B` may make one (so most inputs stay fast).
        let mut bulks = if mode == b'B' { 0 } else { 1 };
        // Full checks are linear in the table: a budget of work per input.
        let mut checked = 0;
        for op in ops.chunks_exact(3) {
            let (kind, conn, target) = (op[0], op[1] as usize % CONNS, op[2]);
            let chan: Chan = ((target % APPS as u8) as u32, (target / 3 % NAMES) as u32);
            match kind % 8 {
                0..=2 => {
                    let user = (kind & 0x80 != 0).then(|| format!("u{}", kind >> 3 & 0x7));
                    subscribe(&mut table, &mut lists, &mut model, conn, &chan, user);
                    check_pair(&table, &lists, &model, conn, &chan);
                }
                3 | 4 => {
                    let id = table.find(AppIdx(chan.0), &name_of(chan.1));
                    assert_eq!(id.is_some(), model.by_chan.contains_key(&chan));
                    if let Some(id) = id {
                        unsubscribe(&mut table, &mut lists, &mut model, conn, id);
                    }
                    check_pair(&table, &lists, &model, conn, &chan);
                }
                5 => {
                    // A raw id: live, freed, reused or never used.
                    let id = target as ChannelId % 64;
                    unsubscribe(&mut table, &mut lists, &mut model, conn, id);
                    if lists[conn].len() <= 64 {
                        check_conn(&table, &lists, &model, conn);
                    }
                }
                6 => {
                    // The connection closes: it leaves every channel, last first.
                    while let Some(&id) = lists[conn].last() {
                        assert!(unsubscribe(&mut table, &mut lists, &mut model, conn, id));
                    }
                    assert!(model.by_conn[conn].is_empty());
                    check_conn(&table, &lists, &model, conn);
                }
                _ => match target % 4 {
                    0 if bulks < 1 => {
                        // A connection joins thousands of channels (then
                        // typically closes: op 6).
                        bulks += 1;
                        for i in 0..BULK {
                            let chan = (chan.0, BULK_NAMES + i as u32);
                            subscribe(&mut table, &mut lists, &mut model, conn, &chan, None);
                        }
                        check_conn(&table, &lists, &model, conn);
                    }
                    1 => {
                        table.shrink();
                        full_check(&table, &lists, &model, &mut checked);
                    }
                    _ => full_check(&table, &lists, &model, &mut checked),
                },
            }
            check_counts(&table, &model);
        }
        check_all(&table, &lists, &model, true);
        // Everyone leaves: nothing is left behind.
        for conn in 0..CONNS {
            while let Some(&id) = lists[conn].last() {
                assert!(unsubscribe(&mut table, &mut lists, &mut model, conn, id));
            }
        }
        assert!(table.is_empty());
        assert_eq!(table.subscriptions(), 0);
        table.shrink();
        assert!(table.is_empty());
    }

    fn subscribe(
        table: &mut ChannelTable,
        lists: &mut [SubList],
        model: &mut Model,
        conn: usize,
        chan: &Chan,
        user: Option<String>,
    ) {
        let before = table.find(AppIdx(chan.0), &name_of(chan.1));
        let (id, new) = table.subscribe(
            AppIdx(chan.0),
            &name_of(chan.1),
            key(conn),
            &mut lists[conn],
            user.as_deref().map(Into::into),
        );
        let was = model.by_conn[conn].contains_key(chan);
        assert_eq!(new, !was, "subscribe says new={new} for a member={was}");
        match model.by_chan.get_mut(chan) {
            Some((known, subs)) => {
                assert_eq!(before, Some(*known));
                assert_eq!(id, *known, "a live channel changed id");
                subs.insert(key(conn));
            }
            None => {
                assert_eq!(before, None, "a channel nobody joined exists");
                let twice = model.by_id.insert(id, *chan);
                assert!(twice.is_none(), "id {id} given to two live channels");
                model
                    .by_chan
                    .insert(*chan, (id, BTreeSet::from([key(conn)])));
            }
        }
        // A repeated subscribe keeps the user declared first.
        model.by_conn[conn].entry(*chan).or_insert(user);
    }

    /// Unsubscribes through the table and the model; whether it was a member.
    fn unsubscribe(
        table: &mut ChannelTable,
        lists: &mut [SubList],
        model: &mut Model,
        conn: usize,
        id: ChannelId,
    ) -> bool {
        // Which channel `id` is, if any lives under it.
        let chan = table.get(id).map(|c| (c.app.0, number_of(&c.name)));
        assert_eq!(chan.as_ref(), model.by_id.get(&id), "channel {id}");
        let member = chan
            .as_ref()
            .and_then(|c| model.by_conn[conn].get(c).cloned());
        let got = table.unsubscribe(id, key(conn), &mut lists[conn]);
        match (got, member) {
            (None, None) => false,
            (Some(user), Some(expected)) => {
                assert_eq!(user.as_deref(), expected.as_deref(), "wrong presence user");
                let chan = chan.unwrap();
                model.by_conn[conn].remove(&chan);
                let (_, subs) = model.by_chan.get_mut(&chan).unwrap();
                subs.remove(&key(conn));
                if subs.is_empty() {
                    model.by_chan.remove(&chan);
                    model.by_id.remove(&id);
                    assert!(table.get(id).is_none(), "an empty channel kept");
                    assert_eq!(table.find(AppIdx(chan.0), &name_of(chan.1)), None);
                }
                true
            }
            (got, member) => panic!("unsubscribe gave {got:?} for membership {member:?}"),
        }
    }

    /// A full check while the input's budget of checking work lasts.
    fn full_check(table: &ChannelTable, lists: &[SubList], model: &Model, checked: &mut usize) {
        let size = model.by_chan.len() + table.subscriptions();
        if *checked + size <= 20_000 {
            *checked += size;
            check_all(table, lists, model, false);
        }
    }

    fn check_counts(table: &ChannelTable, model: &Model) {
        assert_eq!(table.len(), model.by_chan.len());
        assert_eq!(table.is_empty(), model.by_chan.is_empty());
        // Interest is held exactly while a channel lives (72 names: no
        // two keys collide).
        assert_eq!(table.interest().len(), model.by_chan.len());
        let pairs: usize = model.by_conn.iter().map(|c| c.len()).sum();
        assert_eq!(table.subscriptions(), pairs);
    }

    /// One (connection, channel) pair, the channel's subscribers and the
    /// connection's list.
    fn check_pair(
        table: &ChannelTable,
        lists: &[SubList],
        model: &Model,
        conn: usize,
        chan: &Chan,
    ) {
        check_channel(table, model, chan);
        if let Some(id) = table.find(AppIdx(chan.0), &name_of(chan.1)) {
            let user = model.by_conn[conn].get(chan);
            assert_eq!(table.is_member(id, key(conn)), user.is_some());
            assert_eq!(
                table.presence_user(id, key(conn)),
                user.and_then(|u| u.as_deref())
            );
        }
        // A bulk-sized list is checked by the full checks only.
        if lists[conn].len() <= 64 {
            check_conn(table, lists, model, conn);
        }
    }

    fn check_channel(table: &ChannelTable, model: &Model, chan: &Chan) {
        let subscribers = table.subscribers(AppIdx(chan.0), &name_of(chan.1));
        let set: BTreeSet<ConnKey> = subscribers.iter().copied().collect();
        assert_eq!(set.len(), subscribers.len(), "a subscriber listed twice");
        match model.by_chan.get(chan) {
            Some((id, subs)) => {
                assert_eq!(&set, subs, "subscribers of {chan:?}");
                assert_eq!(table.find(AppIdx(chan.0), &name_of(chan.1)), Some(*id));
                let c = table.get(*id).expect("a live channel");
                assert_eq!((c.app.0, &*c.name), (chan.0, name_of(chan.1).as_str()));
            }
            None => {
                assert!(set.is_empty());
                assert_eq!(table.find(AppIdx(chan.0), &name_of(chan.1)), None);
            }
        }
    }

    fn check_conn(table: &ChannelTable, lists: &[SubList], model: &Model, conn: usize) {
        let list = &lists[conn];
        let ids: BTreeSet<ChannelId> = list.iter().copied().collect();
        assert_eq!(
            ids.len(),
            list.len(),
            "a channel listed twice for a connection"
        );
        let expected: BTreeSet<ChannelId> = model.by_conn[conn]
            .keys()
            .map(|c| model.by_chan[c].0)
            .collect();
        assert_eq!(ids, expected, "channels of connection {conn}");
        for (chan, user) in &model.by_conn[conn] {
            let id = model.by_chan[chan].0;
            assert!(table.is_member(id, key(conn)));
            assert_eq!(table.presence_user(id, key(conn)), user.as_deref());
        }
    }

    fn check_all(table: &ChannelTable, lists: &[SubList], model: &Model, thorough: bool) {
        for conn in 0..CONNS {
            check_conn(table, lists, model, conn);
        }
        for chan in model.by_chan.keys() {
            check_channel(table, model, chan);
        }
        for app in 0..APPS {
            let listed: BTreeMap<u32, u32> = table
                .iter_app(AppIdx(app))
                .map(|(n, c)| (number_of(n), c))
                .collect();
            let expected: BTreeMap<u32, u32> = model
                .by_chan
                .iter()
                .filter(|((a, _), _)| *a == app)
                .map(|((_, n), (_, subs))| (*n, subs.len() as u32))
                .collect();
            assert_eq!(listed, expected, "channels of app {app}");
        }
        // Non-members are not members either (at the end, small tables only).
        if thorough && model.by_chan.len() <= 256 {
            for (id, subs) in model.by_chan.values() {
                for conn in 0..CONNS {
                    assert_eq!(table.is_member(*id, key(conn)), subs.contains(&key(conn)));
                }
            }
        }
        check_counts(table, model);
    }
}

pub mod quota_leases {
    //! `pusher::admission::Quotas`, connection limits leased in chunks from a home
    //! shard, played by 2–4 simulated shards the way `pusher::shard::Shard` plays
    //! them (`take_slot`, `lend`, `release_slot`, `give_back`, `answer`,
    //! `late_reply`), with every message between shards held in a FIFO
    //! ring per (sender, receiver) and delivered when the input says. The
    //! quotas: the node's and two apps' (fuzzed limits and app ids, so
    //! fuzzed homes). Operations: admit a connection on a shard (from the
    //! lease, else a lend at the home: directly when the shard is the home,
    //! else a `Lease` request answered later), close one, deliver one
    //! message, run one lend the home has queued (it reclaims every shard's
    //! spare when nothing is unleased; a fuzzed set of shards answers that
    //! reclaim too late), give up on an unanswered lease request (timeout),
    //! deliver everything.
    //!
    //! Checks: open connections never exceed a limit; a lend that had every
    //! reclaim answered in time refuses only when the open connections
    //! equal the limit (the limit is exact); a grant always admits the
    //! connection it was asked for; once everything is closed, every
    //! message delivered and every shard's spare given back, the home holds
    //! the whole limit again, nothing lent out.

    use shardcast::apps::{App, AppIdx, AppRegistry};
    use shardcast::pusher::admission::{Quota, Quotas};
    use std::collections::VecDeque;

    const QUOTAS: [Quota; 3] = [Quota::Node, Quota::App(AppIdx(0)), Quota::App(AppIdx(1))];

    #[derive(Debug, Clone, Copy)]
    enum Msg {
        /// To the home: lend me up to `want` (a pending admission `id`).
        Lease { q: usize, want: u32, id: u64 },
        /// From the home: `n` slots for admission `id`.
        Leased { q: usize, n: u32, id: u64 },
        /// To the home: spare slots given back after a close.
        Return { q: usize, n: u32 },
        /// From the home: give back your spare (a reclaim whose answer
        /// comes too late for the lend that asked).
        Reclaim { q: usize },
        /// Answer to `Reclaim`.
        Returned { q: usize, n: u32 },
    }

    struct Sim {
        shards: usize,
        quotas: Vec<Quotas>,
        homes: [usize; 3],
        max: [u32; 3],
        /// `rings[from][to]`: messages in flight, FIFO.
        rings: Vec<Vec<VecDeque<Msg>>>,
        /// Per shard: lease requests received, waiting for their lend task
        /// (`from`, quota, want, id).
        tasks: Vec<VecDeque<(usize, usize, u32, u64)>>,
        /// Per shard: admissions waiting for a lease answer (id, quota).
        pending: Vec<Vec<(u64, usize)>>,
        /// Per shard and quota: connections admitted and not yet closed.
        open: Vec<[u32; 3]>,
        next_id: u64,
    }

    impl Sim {
        fn open_total(&self, q: usize) -> u32 {
            self.open.iter().map(|o| o[q]).sum()
        }

        fn check_limits(&self) {
            for (q, quota) in QUOTAS.iter().enumerate() {
                assert!(
                    self.open_total(q) <= self.max[q],
                    "{quota:?}: {} open over the limit {}",
                    self.open_total(q),
                    self.max[q]
                );
            }
        }

        /// A slot for a connection, as `Shard::take_slot`.
        fn admit(&mut self, s: usize, q: usize, late: u8) {
            let quota = QUOTAS[q];
            if self.quotas[s].take(quota) {
                self.open[s][q] += 1;
                return;
            }
            let want = self.quotas[s].chunk(quota);
            let home = self.homes[q];
            if home == s {
                let n = self.lend(q, s, want, late);
                self.quotas[s].absorb(quota, n);
                let took = self.quotas[s].take(quota);
                assert_eq!(took, n > 0, "granted {n} at the home, took: {took}");
                if took {
                    self.open[s][q] += 1;
                }
            } else {
                let id = self.next_id;
                self.next_id += 1;
                self.pending[s].push((id, q));
                self.rings[s][home].push_back(Msg::Lease { q, want, id });
            }
        }

        /// `Shard::lend` at the home of quota `q`: a grant, else (when slots
        /// are lent out) a reclaim from every shard first. `late` says which
        /// peers answer the reclaim too late (bit per peer, when bit 4 is set).
        fn lend(&mut self, q: usize, to: usize, want: u32, late: u8) -> u32 {
            let quota = QUOTAS[q];
            let home = self.homes[q];
            let granted = self.quotas[home].grant(quota, to, want);
            if granted > 0 || !self.quotas[home].lent_out(quota) {
                if granted == 0 {
                    assert_eq!(self.open_total(q), self.max[q], "refused below the limit");
                }
                return granted;
            }
            let mine = self.quotas[home].reclaim(quota);
            self.quotas[home].returned(quota, home, mine);
            let mut all_answered = true;
            for peer in (0..self.shards).filter(|&p| p != home) {
                if late & 0x10 != 0 && late & (1 << (peer % 4)) != 0 {
                    // The question goes out; its answer will be late.
                    all_answered = false;
                    self.rings[home][peer].push_back(Msg::Reclaim { q });
                    continue;
                }
                // FIFO: the peer handles what the home sent it before, then
                // answers; its answer comes after what it sent before.
                self.flush(home, peer);
                let n = self.quotas[peer].reclaim(quota);
                self.flush(peer, home);
                self.quotas[home].returned(quota, peer, n);
            }
            let granted = self.quotas[home].grant(quota, to, want);
            if granted == 0 && all_answered {
                assert_eq!(
                    self.open_total(q),
                    self.max[q],
                    "{quota:?} refused after a full reclaim below its limit"
                );
            }
            granted
        }

        /// A connection on `s` closes, as `Shard::release_slot`.
        fn close(&mut self, s: usize, q: usize) {
            if self.open[s][q] == 0 {
                return;
            }
            self.open[s][q] -= 1;
            let quota = QUOTAS[q];
            let back = self.quotas[s].release(quota);
            if back > 0 {
                self.give_back(s, q, back);
            }
        }

        fn give_back(&mut self, s: usize, q: usize, n: u32) {
            let home = self.homes[q];
            if home == s {
                self.quotas[s].returned(QUOTAS[q], home, n);
            } else {
                self.rings[s][home].push_back(Msg::Return { q, n });
            }
        }

        fn flush(&mut self, from: usize, to: usize) {
            while self.deliver(from, to) {}
        }

        /// Delivers the oldest message from `from` to `to`, as
        /// `Shard::handle_msg`; false when there is none.
        fn deliver(&mut self, from: usize, to: usize) -> bool {
            let Some(msg) = self.rings[from][to].pop_front() else {
                return false;
            };
            match msg {
                Msg::Lease { q, want, id } => self.tasks[to].push_back((from, q, want, id)),
                Msg::Leased { q, n, id } => {
                    let quota = QUOTAS[q];
                    self.quotas[to].absorb(quota, n);
                    if let Some(i) = self.pending[to].iter().position(|&(p, _)| p == id) {
                        self.pending[to].remove(i);
                        let took = self.quotas[to].take(quota);
                        assert!(took || n == 0, "granted {n}, not admitted");
                        if took {
                            self.open[to][q] += 1;
                        }
                    } // else a late answer: the slots are kept (`late_reply`).
                }
                Msg::Return { q, n } | Msg::Returned { q, n } => {
                    self.quotas[to].returned(QUOTAS[q], from, n)
                }
                Msg::Reclaim { q } => {
                    let n = self.quotas[to].reclaim(QUOTAS[q]);
                    self.rings[to][from].push_back(Msg::Returned { q, n });
                }
            }
            true
        }

        /// Runs the oldest lend task queued on `s`.
        fn run_task(&mut self, s: usize, late: u8) -> bool {
            let Some((from, q, want, id)) = self.tasks[s].pop_front() else {
                return false;
            };
            let n = self.lend(q, from, want, late);
            self.rings[s][from].push_back(Msg::Leased { q, n, id });
            true
        }

        /// Delivers every message and runs every task until nothing moves.
        fn settle(&mut self) {
            loop {
                let mut moved = false;
                for s in 0..self.shards {
                    while self.run_task(s, 0) {
                        moved = true;
                    }
                    for t in 0..self.shards {
                        if !self.rings[s][t].is_empty() {
                            self.flush(s, t);
                            moved = true;
                        }
                    }
                }
                if !moved {
                    return;
                }
            }
        }
    }

    pub fn run(data: &[u8]) {
        if data.len() < 5 {
            return;
        }
        let shards = 2 + data[0] as usize % 3;
        let node_max = data[1] as u32;
        let app_max = [data[2] as u32 % 64, data[3] as u32 * 16];
        let apps = AppRegistry::new(
            (0..2)
                .map(|i| {
                    let mut app = App::new(
                        format!("app{}-{}", i, data[4]),
                        format!("key{i}"),
                        "secret".into(),
                    );
                    app.limits.max_connections = Some(app_max[i]);
                    app
                })
                .collect(),
        );
        let quotas: Vec<Quotas> = (0..shards)
            .map(|me| Quotas::new(me, shards, node_max, &apps))
            .collect();
        let homes = QUOTAS.map(|q| quotas[0].home_of(q, &apps));
        let max = QUOTAS.map(|q| quotas[0].max(q).expect("every quota has a limit"));
        assert_eq!(max, [node_max, app_max[0], app_max[1]]);
        let mut sim = Sim {
            shards,
            quotas,
            homes,
            max,
            rings: vec![vec![VecDeque::new(); shards]; shards],
            tasks: vec![VecDeque::new(); shards],
            pending: vec![Vec::new(); shards],
            open: vec![[0; 3]; shards],
            next_id: 0,
        };

        for op in data[5..].chunks_exact(2) {
            let (kind, arg) = (op[0], op[1]);
            let s = arg as usize % shards;
            let q = (arg as usize / 4) % 3;
            let late = kind >> 3;
            match kind % 8 {
                0..=2 => sim.admit(s, q, late),
                3 | 4 => sim.close(s, q),
                5 => {
                    // One message on the `arg`-th ring that has any.
                    let busy: Vec<(usize, usize)> = (0..shards)
                        .flat_map(|f| (0..shards).map(move |t| (f, t)))
                        .filter(|&(f, t)| !sim.rings[f][t].is_empty())
                        .collect();
                    if !busy.is_empty() {
                        let (f, t) = busy[arg as usize % busy.len()];
                        sim.deliver(f, t);
                    }
                }
                6 => {
                    if arg & 0x40 == 0 {
                        sim.run_task(s, late);
                    } else if !sim.pending[s].is_empty() {
                        // The oldest lease request timed out: refused.
                        sim.pending[s].remove(0);
                    }
                }
                _ => sim.settle(),
            }
            sim.check_limits();
        }

        // Everything closes, unanswered admissions give up, all settles.
        for s in 0..shards {
            for q in 0..3 {
                while sim.open[s][q] > 0 {
                    sim.close(s, q);
                }
            }
            sim.pending[s].clear();
        }
        sim.settle();
        // Each shard gives its spare back.
        for s in 0..shards {
            for (q, &quota) in QUOTAS.iter().enumerate() {
                let n = sim.quotas[s].reclaim(quota);
                sim.give_back(s, q, n);
                // Nothing is left to take.
                assert!(!sim.quotas[s].take(quota), "a slot left after reclaim");
            }
        }
        sim.settle();
        for (q, &quota) in QUOTAS.iter().enumerate() {
            let home = sim.homes[q];
            assert!(
                !sim.quotas[home].lent_out(quota),
                "{quota:?} still lent out"
            );
            let all = sim.quotas[home].grant(quota, home, u32::MAX);
            assert_eq!(all, sim.max[q], "{quota:?}: the home got back {all}");
        }
    }
}
