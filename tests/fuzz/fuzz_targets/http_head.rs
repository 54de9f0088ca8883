//! The HTTP request head and body reader, as `http::serve` drives it: bytes
//! arrive in chunks; after each chunk the head parser runs on what is
//! buffered (refused past the head limit); a complete head is followed by
//! its Content-Length body (refused past the body limit, chunked refused),
//! then the next pipelined request. Checks that the parser never claims more
//! bytes than it was given, that a head parsed from a prefix is the head
//! parsed from the whole, and that the buffer never grows past
//! head limit + one read.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shardcast::http::{parse_head, parse_query, percent_decode};

const HEAD_LIMIT: usize = 16 * 1024;
const BODY_LIMIT: usize = 4096 * 1024;
const READ_CHUNK: usize = 16 * 1024;

fuzz_target!(|data: &[u8]| {
    if data.is_empty() {
        return;
    }
    // The first byte picks how the stream is cut into reads.
    let step = 1 + (data[0] as usize % 64);
    let stream = &data[1..];

    // One-shot parse and its invariants.
    if let Ok(Some(head)) = parse_head(stream) {
        assert!(head.len <= stream.len(), "head longer than the input");
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
            assert!(buf.len() <= HEAD_LIMIT + READ_CHUNK, "head buffer unbounded");
        };
        assert!(head.len <= buf.len());
        if head.upgrade.is_some() {
            let _ = head.pusher_upgrade();
            break;
        }
        buf.drain(..head.len);
        // read_body
        if head.chunked {
            break; // 400
        }
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
});
