//! The WebSocket frame decoder as `ws::conn::ConnTask` drives it: the stream
//! arrives in reads of fuzzer-chosen sizes, an incomplete frame's bytes are
//! kept for the next read, every complete frame is decoded, and the first
//! error ends the connection. Checks: a decoder never uses more bytes than
//! it has, delivered text is valid UTF-8 and within the cap, control
//! payloads are at most 125 bytes, and the kept partial frame stays within
//! cap + the largest header.
#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::ws_frame::run(data));
