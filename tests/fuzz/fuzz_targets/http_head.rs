//! The HTTP request head and body reader, as `http::serve` drives it: bytes
//! arrive in chunks; after each chunk the head parser runs on what is
//! buffered (refused past the head limit); a complete head is followed by
//! its Content-Length body (refused past the body limit, any Transfer-Encoding refused),
//! then the next pipelined request. Checks that the parser never claims more
//! bytes than it was given, that a head parsed from a prefix is the head
//! parsed from the whole, and that the buffer never grows past
//! head limit + one read. Also: any Transfer-Encoding header refused; the
//! configured client-address header captured exactly (`parse_head_with`)
//! and the address drawn from it the peer's or its last entry's.
#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::http_head::run(data));
