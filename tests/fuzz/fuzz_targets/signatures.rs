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
#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::signatures::run(data));
