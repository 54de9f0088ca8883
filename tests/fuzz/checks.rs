//! The checks behind every fuzz target, one function per target, each
//! taking the raw fuzzer input. Shared by the libFuzzer wrappers in
//! `fuzz_targets/` and by the regression test that replays saved inputs
//! (`tests/integration/fuzz_regressions.rs` includes this file), so it uses
//! only `shardcast` and its own dependencies.
#![allow(dead_code)]

pub mod http_head {
    //! The HTTP request head and body reader, as `http::serve` drives it: bytes
    //! arrive in chunks; after each chunk the head parser runs on what is
    //! buffered (refused past the head limit); a complete head is followed by
    //! its Content-Length body (refused past the body limit, any Transfer-Encoding refused),
    //! then the next pipelined request. Checks that the parser never claims more
    //! bytes than it was given, that a head parsed from a prefix is the head
    //! parsed from the whole, and that the buffer never grows past
    //! head limit + one read.

    use shardcast::http::{parse_head, parse_query, percent_decode};

    const HEAD_LIMIT: usize = 16 * 1024;
    const BODY_LIMIT: usize = 4096 * 1024;
    const READ_CHUNK: usize = 16 * 1024;

    pub fn run(data: &[u8]) {
        if data.is_empty() {
            return;
        }
        // The first byte picks how the stream is cut into reads.
        let step = 1 + (data[0] as usize % 64);
        let stream = &data[1..];

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

        // The chunked read loop of `http::server::serve`.
        let mut buf: Vec<u8> = Vec::new();
        let mut pos = 0;
        'conn: loop {
            // read_head
            let head = loop {
                if !buf.is_empty() {
                    match parse_head(&buf) {
                        Ok(Some(h)) => break h,
                        Ok(None) if buf.len() > HEAD_LIMIT => break 'conn, // 431
                        Ok(None) => {}
                        Err(_) => break 'conn, // 400 / 431
                    }
                }
                if pos >= stream.len() {
                    break 'conn; // EOF
                }
                let n = step.min(stream.len() - pos).min(READ_CHUNK);
                buf.extend_from_slice(&stream[pos..pos + n]);
                pos += n;
                assert!(
                    buf.len() <= HEAD_LIMIT + READ_CHUNK,
                    "head buffer unbounded"
                );
            };
            assert!(head.len <= buf.len());
            if head.upgrade.is_some() {
                let _ = head.pusher_upgrade();
                break;
            }
            buf.drain(..head.len);
            // read_body (a Transfer-Encoding was refused with the head)
            let len = head.content_length.unwrap_or(0);
            if len > BODY_LIMIT {
                break; // 413
            }
            while buf.len() < len {
                if pos >= stream.len() {
                    break 'conn;
                }
                let n = step.min(stream.len() - pos);
                buf.extend_from_slice(&stream[pos..pos + n]);
                pos += n;
            }
            assert!(buf.len() <= len + READ_CHUNK + HEAD_LIMIT);
            buf.drain(..len);
            if !head.keep_alive {
                break;
            }
        }
    }
}

pub mod ws_frame {
    //! The WebSocket frame decoder as `ws::conn::ConnTask` drives it: the stream
    //! arrives in reads of fuzzer-chosen sizes, an incomplete frame's bytes are
    //! kept for the next read, every complete frame is decoded, and the first
    //! error ends the connection. Checks: a decoder never uses more bytes than
    //! it has, delivered text is valid UTF-8 and within the cap, control
    //! payloads are at most 125 bytes, and the kept partial frame stays within
    //! cap + the largest header.

    use shardcast::ws::frame::{Decoder, Inbound};

    pub fn run(data: &[u8]) {
        if data.len() < 2 {
            return;
        }
        // First byte: the message cap (small caps reach the size checks);
        // second: the read size.
        let max = match data[0] % 4 {
            0 => 64 * 1024,
            1 => 125,
            2 => 1 + data[0] as usize * 3,
            _ => 4096,
        };
        let step = 1 + data[1] as usize;
        let stream = &data[2..];

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
                        assert!(used <= len && used >= 2, "used {used} of {len}");
                        match message {
                            Inbound::Text(t) => {
                                assert!(t.len() <= max, "text over the cap");
                                assert!(std::str::from_utf8(t).is_ok(), "text not UTF-8");
                            }
                            Inbound::Ping(p) => assert!(p.len() <= 125),
                            Inbound::Close(Some(code)) => {
                                assert!(matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999))
                            }
                            Inbound::Close(None) | Inbound::Pong | Inbound::Fragment => {}
                        }
                        pos += used;
                    }
                    Err(e) => {
                        assert!(
                            matches!(e.code, 1002 | 1003 | 1007 | 1009),
                            "code {}",
                            e.code
                        );
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

    use shardcast::pusher::inbound::{parse, ClientMessage};
    use shardcast::pusher::presence::{parse_channel_data, MAX_USER_ID_LEN, MAX_USER_INFO_BYTES};
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
        envelope_header(envelope.node, &mut again);
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
