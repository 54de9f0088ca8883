//! The cluster link's decoder of engine messages: no panic, and what
//! decodes encodes back to the same messages.
#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::cluster_wire::run(data));
