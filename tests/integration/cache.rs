//! Cache channels (`cache-`, `private-cache-`, `presence-cache-`,
//! `private-encrypted-cache-`): the last HTTP event is replayed to new
//! subscribers, `pusher:cache_miss` when there is none, for `cache_ttl`.

use crate::support::*;
use serde_json::json;
use std::time::Duration;

/// Subscribes with whatever auth the channel kind needs; the next frame must
/// be `subscription_succeeded` (presence: with the snapshot).
fn subscribe_any(ws: &mut Ws, channel: &str) {
    if channel.starts_with("presence-") {
        let data = json!({"user_id": ws.socket_id.clone()}).to_string();
        ws.subscribe_presence(channel, &data);
    } else if channel.starts_with("private-") {
        ws.subscribe_private(channel);
    } else {
        ws.send_subscribe(channel, None, None);
        ws.expect_text(&succeeded_text(channel));
    }
}

const KINDS: [&str; 4] = [
    "cache-x",
    "private-cache-x",
    "presence-cache-x",
    "private-encrypted-cache-x",
];

#[test]
fn empty_cache_gives_succeeded_then_cache_miss_for_every_kind() {
    let server = Server::start();
    let mut first = Ws::connect_on(server.port, 0);
    for channel in KINDS {
        subscribe_any(&mut first, channel);
        first.expect_text(&cache_miss_text(channel));
    }
    // Each join's frames are queued together when it completes here: a
    // pong to a later ping comes after all of them.
    first.ping();
    let mut second = Ws::connect_on(server.port, 1);
    for channel in KINDS {
        subscribe_any(&mut second, channel);
        second.expect_text(&cache_miss_text(channel));
    }
    second.ping();
    // The first one heard of the second presence member only: the owner's
    // next member event, for a third member joining now, comes right after.
    let added = first.expect_event("pusher_internal:member_added");
    assert!(
        added["data"].to_string().contains(&second.socket_id),
        "{added}"
    );
    let mut third = Ws::connect(server.port);
    subscribe_any(&mut third, "presence-cache-x");
    third.expect_text(&cache_miss_text("presence-cache-x"));
    for ws in [&mut first, &mut second] {
        let added = ws.expect_event("pusher_internal:member_added");
        assert!(
            added["data"].to_string().contains(&third.socket_id),
            "{added}"
        );
    }
    // Prefixes are anchored: these are not cache channels.
    let mut ws = Ws::connect(server.port);
    for channel in ["x-cache-y", "cachey", "private-x-cache-"] {
        subscribe_any(&mut ws, channel);
    }
    ws.ping();
}

#[test]
fn new_subscribers_on_either_shard_get_the_last_event_exactly() {
    let server = Server::start();
    for channel in KINDS {
        let mut live = Ws::connect(server.port);
        subscribe_any(&mut live, channel);
        live.expect_text(&cache_miss_text(channel));
        let data = format!("{{\"v\":1,\"on\":\"{channel}\",\"s\":\"quote \\\" é\"}}");
        trigger(
            server.port,
            &DEV,
            &json!({"name":"first","channel":channel,"data":"old"}),
        );
        trigger(
            server.port,
            &DEV,
            &json!({"name":"last","channel":channel,"data":data}),
        );
        live.expect_text(&event_text("first", channel, "old"));
        live.expect_text(&event_text("last", channel, &data));
        // Kept open: a presence member leaving would send member_removed.
        let mut keep = Vec::new();
        for shard in [0, 1, 0, 1] {
            let mut ws = Ws::connect_on(server.port, shard);
            subscribe_any(&mut ws, channel);
            ws.expect_text(&event_text("last", channel, &data));
            ws.ping();
            keep.push(ws);
        }
    }
}

#[test]
fn cache_is_kept_while_the_channel_is_empty_and_per_channel() {
    let server = Server::start();
    // Nobody is subscribed when the event is triggered.
    trigger(
        server.port,
        &DEV,
        &json!({"name":"e","channel":"cache-empty","data":{"a":1}}),
    );
    let mut ws = Ws::connect(server.port);
    subscribe_any(&mut ws, "cache-empty");
    ws.expect_text(r#"{"event":"e","channel":"cache-empty","data":"{\"a\":1}"}"#);
    // A different cache channel has its own (empty) cache.
    subscribe_any(&mut ws, "cache-other");
    ws.expect_text(&cache_miss_text("cache-other"));
    // An event with several channels is cached on each cache channel.
    trigger(
        server.port,
        &DEV,
        &json!({"name":"multi","channels":["cache-m1","plain","cache-m2"],"data":"d"}),
    );
    for ch in ["cache-m1", "cache-m2"] {
        let mut w = Ws::connect(server.port);
        subscribe_any(&mut w, ch);
        w.expect_text(&event_text("multi", ch, "d"));
    }
    // Batch events are cached too.
    Http::connect(server.port)
        .batch(&DEV, &json!({"batch":[{"name":"b1","channel":"cache-b","data":"1"},{"name":"b2","channel":"cache-b","data":"2"}]}))
        .expect_ok_json();
    let mut w = Ws::connect(server.port);
    subscribe_any(&mut w, "cache-b");
    w.expect_text(&event_text("b2", "cache-b", "2"));
    // A socket excluded with socket_id still does not get the live event.
    let mut ex = Ws::connect(server.port);
    subscribe_any(&mut ex, "cache-ex");
    ex.expect_text(&cache_miss_text("cache-ex"));
    let mut http = Http::connect(server.port);
    http.trigger(
        &DEV,
        &json!({"name":"e","channel":"cache-ex","data":"x","socket_id":ex.socket_id.clone()}),
    )
    .expect_ok_json();
    ex.expect_text(&marker(&mut http, "cache-ex", "after"));
}

#[test]
fn private_cache_still_needs_auth_and_leaks_nothing() {
    let server = Server::start();
    trigger(
        server.port,
        &DEV,
        &json!({"name":"secret","channel":"private-cache-s","data":"s3cret"}),
    );
    trigger(
        server.port,
        &DEV,
        &json!({"name":"secret","channel":"presence-cache-s","data":"s3cret"}),
    );
    trigger(
        server.port,
        &DEV,
        &json!({"name":"secret","channel":"private-encrypted-cache-s","data":"s3cret"}),
    );
    let mut keep = Vec::new();
    for shard in [0, 1] {
        let mut ws = Ws::connect_on(server.port, shard);
        for channel in ["private-cache-s", "private-encrypted-cache-s"] {
            ws.send_subscribe(channel, None, None);
            ws.expect_subscription_error(channel, 401);
            ws.send_subscribe(channel, Some("app-key:bad"), None);
            ws.expect_subscription_error(channel, 401);
            // No cached event (nor cache_miss) follows a refusal.
            ws.ping();
        }
        let data = json!({"user_id":"1"}).to_string();
        ws.send_subscribe("presence-cache-s", Some("app-key:bad"), Some(&data));
        ws.expect_subscription_error("presence-cache-s", 401);
        ws.ping();
        // With the right auth, the cached event comes.
        for channel in [
            "private-cache-s",
            "private-encrypted-cache-s",
            "presence-cache-s",
        ] {
            subscribe_any(&mut ws, channel);
            ws.expect_text(&event_text("secret", channel, "s3cret"));
        }
        keep.push(ws);
    }
}

#[test]
fn cached_event_expires_after_cache_ttl() {
    let server = Server::start_with(&dev_app_with("cache_ttl = 1"));
    trigger(
        server.port,
        &DEV,
        &json!({"name":"e","channel":"cache-t","data":"fresh"}),
    );
    let mut ws = Ws::connect(server.port);
    subscribe_any(&mut ws, "cache-t");
    ws.expect_text(&event_text("e", "cache-t", "fresh"));
    // Wait for the expiry itself (the owner drops the entry), not a guess.
    let cached = || {
        get_json(
            server.port,
            "/apps/app-id/channels/cache-t",
            &[("info", "cache")],
        )
        .get("cache")
        .is_some_and(|c| !c.is_null())
    };
    assert!(
        wait_until(Duration::from_secs(5), || !cached()),
        "the cached event did not expire"
    );
    for shard in [0, 1] {
        let mut late = Ws::connect_on(server.port, shard);
        subscribe_any(&mut late, "cache-t");
        late.expect_text(&cache_miss_text("cache-t"));
    }
    // A new event fills the cache again.
    trigger(
        server.port,
        &DEV,
        &json!({"name":"e","channel":"cache-t","data":"again"}),
    );
    ws.expect_text(&event_text("e", "cache-t", "again"));
    let mut late = Ws::connect(server.port);
    subscribe_any(&mut late, "cache-t");
    late.expect_text(&event_text("e", "cache-t", "again"));
}

#[test]
fn a_full_cache_evicts_the_oldest_event_and_its_channel_misses_again() {
    use crate::metrics::{metrics_port, scrape};
    // 4 node-wide: 2 on each of the 2 shards.
    let server = Server::start_with(
        "[server.limits]\nmax_cached_channels = 4\n[server.metrics]\nenabled = true\nport = 0\n",
    );
    let mport = metrics_port(&server);
    // Three cache channels with the same owner, triggered in order over one
    // connection (so they reach the owner in that order).
    let names: Vec<String> = (0..)
        .map(|i| format!("cache-full-{i}"))
        .filter(|n| shardcast::pusher::owned::owner_of(shardcast::apps::AppIdx(0), n, 2) == 0)
        .take(3)
        .collect();
    let mut http = Http::connect(server.port);
    for name in &names {
        http.trigger(&DEV, &json!({"name":"e","channel":name,"data":name}))
            .expect_ok_json();
    }
    let evictions = || {
        scrape(mport)
            .get("shardcast_cache_evictions_total")
            .copied()
    };
    assert!(
        wait_until(WAIT, || evictions() == Some(1)),
        "cache_evictions_total: {:?}",
        evictions()
    );
    for shard in [0, 1] {
        let mut ws = Ws::connect_on(server.port, shard);
        subscribe_any(&mut ws, &names[0]);
        ws.expect_text(&cache_miss_text(&names[0]));
        for name in &names[1..] {
            subscribe_any(&mut ws, name);
            ws.expect_text(&event_text("e", name, name));
        }
    }
    assert_eq!(evictions(), Some(1));
}
