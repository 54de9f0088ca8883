//! The HTTP API body parser: `POST /apps/{id}/events` and `/batch_events`
//! bodies, under the default limits and under small ones. Checks: no panic,
//! and every accepted event respects the limits it was parsed with.
#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::api_body::run(data));
