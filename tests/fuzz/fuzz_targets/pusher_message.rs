//! The Pusher message parser: every client event (`pusher:ping`, `pong`,
//! `subscribe` with `auth` and `channel_data`, `unsubscribe`, `signin` with
//! `user_data`, `client-*`, unknown), the presence `channel_data` and
//! sign-in `user_data` parsers, and the bounded JSON parser under them.
//! Checks: no panic and no stack overflow at any nesting; anything
//! `json::parse` accepts is nested at most `MAX_DEPTH` deep and re-encodes
//! to JSON that parses again; a relayed client event's `data` is JSON.
#![no_main]

use libfuzzer_sys::fuzz_target;
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

fuzz_target!(|data: &[u8]| {
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
            assert!(shardcast::json::parse(&mut d).is_ok(), "client event data is not JSON");
        }
        Ok(_) | Err(_) => {}
    }
    // channel_data / user_data as they arrive: any string.
    if let Ok(s) = std::str::from_utf8(data) {
        check_side_parsers(s);
    }
});
