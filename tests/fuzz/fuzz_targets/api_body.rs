//! The HTTP API body parser: `POST /apps/{id}/events` and `/batch_events`
//! bodies, under the default limits and under small ones. Checks: no panic,
//! and every accepted event respects the limits it was parsed with.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shardcast::apps::AppLimits;
use shardcast::http::{parse_batch, parse_event, TriggerEvent};

fn check(e: &TriggerEvent, l: &AppLimits) {
    assert!(!e.name.is_empty() && e.name.len() <= l.max_event_name_length);
    assert!(!e.name.starts_with("pusher:") && !e.name.starts_with("pusher_internal:"));
    assert!(e.data.len() <= l.max_event_payload_bytes);
    assert!(!e.channels.is_empty() && e.channels.len() <= l.max_channels_per_event);
    for c in &e.channels {
        assert!(!c.is_empty() && c.len() <= l.max_channel_name_length);
    }
}

fuzz_target!(|data: &[u8]| {
    let default = AppLimits::default();
    let small = AppLimits {
        max_event_payload_bytes: 16,
        max_channels_per_event: 2,
        max_batch_size: 2,
        max_event_name_length: 8,
        max_channel_name_length: 8,
        ..AppLimits::default()
    };
    for limits in [&default, &small] {
        if let Ok(e) = parse_event(&mut data.to_vec(), limits) {
            check(&e, limits);
        }
        if let Ok(batch) = parse_batch(&mut data.to_vec(), limits) {
            assert!(!batch.is_empty() && batch.len() <= limits.max_batch_size);
            for e in &batch {
                check(e, limits);
                assert_eq!(e.channels.len(), 1, "one channel per batch item");
            }
        }
    }
});
