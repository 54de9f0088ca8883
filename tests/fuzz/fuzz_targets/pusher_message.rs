//! The Pusher message parser: every client event (`pusher:ping`, `pong`,
//! `subscribe` with `auth` and `channel_data`, `unsubscribe`, `signin` with
//! `user_data`, `client-*`, unknown), the presence `channel_data` and
//! sign-in `user_data` parsers, and the bounded JSON parser under them.
//! Checks: no panic and no stack overflow at any nesting; anything
//! `json::parse` accepts is nested at most `MAX_DEPTH` deep and re-encodes
//! to JSON that parses again; a relayed client event's `data` is JSON.
#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::pusher_message::run(data));
