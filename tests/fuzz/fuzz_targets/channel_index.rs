//! `pusher::channels::ChannelTable` (subscriptions indexed from both sides)
//! under a fuzzed sequence of subscribes, unsubscribes, closes, bulk joins
//! and shrinks, checked after each against a plain model: subscribers and
//! each connection's channels as sets, `is_member`, `presence_user`, stable
//! ids, a channel freed with its last subscriber, the counts.
#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::channel_index::run(data));
