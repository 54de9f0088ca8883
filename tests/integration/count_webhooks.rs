//! The `subscription_count` webhook on one node with 2 shards: the
//! channel-wide count on every change of every channel kind but presence,
//! nothing for the last unsubscribe, the same counts as subscribers get in
//! `pusher_internal:subscription_count`, and Pusher's throttle for channels
//! over 100 subscribers (at most one count per 5 s, the last one held back
//! sent when the interval is over).

use crate::receiver::Receiver;
use crate::support::*;
use crate::webhooks::{
    config, connect, connect_on, fence, hook, subscribe_presence, subscribe_private, LONG,
};
use serde_json::Value;
use std::time::{Duration, Instant};

fn counts_of(events: &[Value], channel: &str) -> Vec<u64> {
    events
        .iter()
        .filter(|e| e["name"] == "subscription_count" && e["channel"] == channel)
        .map(|e| {
            assert_eq!(e.as_object().unwrap().len(), 3, "name, channel, count: {e}");
            e["subscription_count"].as_u64().unwrap()
        })
        .collect()
}

/// The `subscription_count` a subscriber is told next (other frames skipped).
fn next_count(ws: &mut Ws, channel: &str) -> u64 {
    loop {
        let v: Value = serde_json::from_str(&ws.recv_within(LONG).text()).unwrap();
        if v["event"] == "pusher_internal:subscription_count" && v["channel"] == channel {
            return v["data"]["subscription_count"].as_u64().unwrap();
        }
    }
}

#[test]
fn subscription_count_webhook_carries_the_channel_wide_count_but_not_for_presence() {
    let receiver = Receiver::start();
    let server = Server::start_with(&config(
        "batch_window_ms = 10",
        // Counts for the webhook only (subscribers are not told them).
        &hook(&receiver.url("/hooks"), r#"["subscription_count"]"#, ""),
    ));
    let mut a = connect_on(server.port, 0);
    let mut b = connect_on(server.port, 1);
    for ch in ["room", "private-room"] {
        for ws in [&mut a, &mut b] {
            if ch.starts_with("private-") {
                subscribe_private(ws, ch);
            } else {
                ws.subscribe(ch);
            }
        }
    }
    subscribe_presence(&mut a, "presence-room", "alice");
    subscribe_presence(&mut b, "presence-room", "bob");
    a.expect_event("pusher_internal:member_added");
    b.unsubscribe("room");
    b.unsubscribe("private-room");
    b.unsubscribe("presence-room");
    a.expect_event("pusher_internal:member_removed");
    // The last subscriber leaving: vacated says that, no count.
    a.unsubscribe("private-room");
    // Everything each connection did is reported before its fence.
    fence(&mut b, &receiver, "fence-b-", "", "subscription_count");
    let events = fence(&mut a, &receiver, "fence-a-", "", "subscription_count");
    assert_eq!(counts_of(&events, "room"), [1, 2, 1], "{events:?}");
    assert_eq!(counts_of(&events, "private-room"), [1, 2, 1], "{events:?}");
    assert_eq!(counts_of(&events, "presence-room"), Vec::<u64>::new());
    assert!(
        events.iter().all(|e| e["name"] == "subscription_count"),
        "{events:?}"
    );
    for d in receiver.deliveries() {
        d.assert_signed(crate::webhooks::KEY, "hook-secret");
    }
}

/// 101 subscribers: counts 1..=100 at once, then 101 held back to 5 s after
/// the last announcement; a 102nd within the next interval is held again.
/// Webhook and subscribers see the same counts.
#[test]
fn counts_of_channels_over_100_are_announced_at_most_every_5_seconds() {
    raise_open_files();
    let receiver = Receiver::start();
    let server = Server::start_with(&config(
        "batch_window_ms = 10",
        &format!(
            "enable_subscription_count = true\n{}",
            hook(&receiver.url("/hooks"), r#"["subscription_count"]"#, "")
        ),
    ));
    let mut first = connect(server.port);
    first.subscribe("big");
    assert_eq!(next_count(&mut first, "big"), 1);
    let mut others = Vec::new();
    for n in 2..=100u64 {
        let mut ws = connect(server.port);
        ws.subscribe("big");
        assert_eq!(next_count(&mut first, "big"), n);
        others.push(ws);
    }
    let at_100 = Instant::now();
    let mut ws = connect(server.port);
    ws.subscribe("big");
    others.push(ws);
    assert_eq!(next_count(&mut first, "big"), 101);
    let held = at_100.elapsed();
    assert!(
        held >= Duration::from_millis(4900) && held < Duration::from_secs(8),
        "101 announced {held:?} after 100"
    );
    let at_101 = Instant::now();
    let mut ws = connect(server.port);
    ws.subscribe("big");
    others.push(ws);
    assert_eq!(next_count(&mut first, "big"), 102);
    let held = at_101.elapsed();
    assert!(
        held >= Duration::from_millis(4900) && held < Duration::from_secs(8),
        "102 announced {held:?} after 101"
    );
    receiver.wait_for("102 by webhook", LONG, |e| {
        e["channel"] == "big" && e["subscription_count"] == 102
    });
    let events = receiver.events();
    let want: Vec<u64> = (1..=102).collect();
    assert_eq!(counts_of(&events, "big"), want);
}
