//! `pusher::admission::Quotas` played by 2–4 simulated shards that admit and close
//! connections, lend and reclaim chunks through FIFO message rings
//! delivered in fuzzed order (with late answers). Checks: no limit is ever
//! exceeded, a full reclaim refuses only at the limit, and once everything
//! is closed and settled the home holds the whole limit again.
#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::quota_leases::run(data));
