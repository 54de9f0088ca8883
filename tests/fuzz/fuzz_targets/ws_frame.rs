//! The WebSocket frame decoder as `ws::conn::ConnTask` drives it: reads of
//! fuzzer-chosen sizes, at most a budget of messages decoded per step with
//! the rest kept for the next step (read or not). Checks: used bytes within
//! the buffer, text valid UTF-8 and within the cap, pings at most 125 bytes,
//! close and error codes valid, kept bytes bounded, and exactly the messages
//! an unbudgeted decoder yields, in the same order.
#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::ws_frame::run(data));
