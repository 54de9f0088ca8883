//! Sparse routing between shards (`pusher::interest`): a publication is
//! posted only to the shards with subscribers of its channels, and that
//! stays exact under races: an event published after `subscription_succeeded`
//! reaches the subscriber, from any shard; a shard's last subscriber
//! leaving while events are on their way is harmless.
//!
//! Each test runs twice: with the shards on two executors (rings between
//! them) and on one executor (`--cpus` naming one CPU twice: in-thread
//! queues between them).

use crate::metrics::{metrics_port, scrape};
use crate::support::*;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::Duration;

/// Runs the test `$name(layout)` once per [`Layout`], as
/// `$name::apart` and `$name::co_hosted`.
macro_rules! in_both_layouts {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[test]
            fn apart() {
                super::$name(crate::support::Layout::Apart)
            }
            #[test]
            fn co_hosted() {
                super::$name(crate::support::Layout::CoHosted)
            }
        }
    )*};
}

in_both_layouts!(
    triggers_are_posted_only_to_shards_with_subscribers,
    an_event_published_right_after_subscription_succeeded_always_arrives,
    presence_and_cache_joins_through_the_owner_are_routed_before_confirmation,
    last_subscriber_leaving_while_events_are_in_flight_is_harmless,
);

fn config() -> String {
    format!(
        "[server.metrics]\nenabled = true\nport = 0\n{}",
        dev_app_with("enable_client_messages = true\nmax_client_events_per_second = 100000")
    )
}

fn value(m: &HashMap<String, u64>, key: &str) -> u64 {
    *m.get(key)
        .unwrap_or_else(|| panic!("no metric {key} in the scrape"))
}

/// Events requests a shard handled, by the metrics.
fn events_handled(mport: u16, shard: u64) -> u64 {
    let key = format!(
        "shardcast_http_requests_total{{shard=\"{shard}\",route=\"events\",status=\"200\"}}"
    );
    scrape(mport).get(&key).copied().unwrap_or(0)
}

/// An HTTP connection served by `shard` (0 or 1): each candidate makes one
/// trigger to a channel nobody subscribes to, and the metrics tell which
/// shard answered it.
fn http_on(port: u16, mport: u16, shard: u64) -> Http {
    for _ in 0..64 {
        let mut http = Http::connect(port);
        let before = events_handled(mport, shard);
        http.trigger(&DEV, &json!({"name":"probe","channel":"probe","data":"p"}))
            .expect_ok_json();
        if events_handled(mport, shard) > before {
            return http;
        }
    }
    panic!("no HTTP connection of 64 was served by shard {shard}");
}

/// Reads frames until both `a` and `b` came (in either order: they come
/// from different sources); panics on any other frame.
fn expect_both(ws: &mut Ws, a: &str, b: &str, round: usize) {
    let (mut got_a, mut got_b) = (false, false);
    while !(got_a && got_b) {
        let f = ws.recv_within(Duration::from_secs(5)).text();
        match f.as_str() {
            t if t == a && !got_a => got_a = true,
            t if t == b && !got_b => got_b = true,
            other => panic!(
                "round {round}: socket on shard {} got {other}, waiting for {a} and {b} \
                 (got first: {got_a}, got second: {got_b})",
                ws.shard()
            ),
        }
    }
}

fn triggers_are_posted_only_to_shards_with_subscribers(layout: Layout) {
    let server = Server::start_laid_out(&config(), layout);
    let mport = metrics_port(&server);
    let mut http = [
        http_on(server.port, mport, 0),
        http_on(server.port, mport, 1),
    ];
    // "both" has a subscriber on each shard; "one" only on shard 1; a third
    // channel had one on shard 0 that left; "nobody" never had any.
    let mut subs = connect_spread(server.port, 1);
    for ws in subs.iter_mut() {
        ws.subscribe("both");
    }
    subs[1].subscribe("one");
    subs[0].subscribe("gone");
    subs[0].unsubscribe("gone");
    subs[0].ping(); // the unsubscribe is handled
    let before = scrape(mport);
    // From each shard: triggers to channels the other shard has no
    // subscriber of, each followed by a marker on "both" (posted to the
    // other shard either way). A marker reaching the other shard's
    // subscriber proves everything posted before it there was handled
    // (one ring per pair of shards, in order).
    let rounds = 20;
    for round in 0..rounds {
        for (from, h) in http.iter_mut().enumerate() {
            for ch in ["nobody", "gone"] {
                h.trigger(&DEV, &json!({"name":"e","channel":ch,"data":"x"}))
                    .expect_ok_json();
            }
            // From shard 0, "one" must go to shard 1; from shard 1 it stays.
            h.trigger(
                &DEV,
                &json!({"name":"e","channel":"one","data":round.to_string()}),
            )
            .expect_ok_json();
            subs[1].expect_text(&event_text("e", "one", &round.to_string()));
            let m = marker(h, "both", &format!("{round}-{from}"));
            for ws in subs.iter_mut() {
                ws.expect_text(&m);
            }
        }
    }
    let after = scrape(mport);
    let delta = |key: &str| value(&after, key) - value(&before, key);
    let received = |s: u64| {
        delta(&format!(
            "shardcast_shard_publications_received_total{{shard=\"{s}\"}}"
        ))
    };
    let skipped = |s: u64| {
        delta(&format!(
            "shardcast_shard_publications_skipped_total{{shard=\"{s}\"}}"
        ))
    };
    // Shard 1 received from shard 0: its markers and "one"; shard 0 from
    // shard 1: its markers only. Nothing for "nobody" or "gone".
    assert_eq!(received(1), 2 * rounds as u64, "received by shard 1");
    assert_eq!(received(0), rounds as u64, "received by shard 0");
    // Left out: "nobody" and "gone" from both, and "one" from shard 1.
    assert_eq!(skipped(0), 2 * rounds as u64, "skipped by shard 0");
    assert_eq!(skipped(1), 3 * rounds as u64, "skipped by shard 1");
}

fn an_event_published_right_after_subscription_succeeded_always_arrives(layout: Layout) {
    let server = Server::start_laid_out(&config(), layout);
    let mport = metrics_port(&server);
    // Publishers on one shard, the subscriber on the other, both ways.
    for (a, b) in [(0u64, 1u64), (1, 0)] {
        let mut http = http_on(server.port, mport, a);
        let mut sender = Ws::connect_on(server.port, a);
        let mut sub = Ws::connect_on(server.port, b);
        for round in 0..150 {
            let ch = format!("private-race-{a}-{round}");
            sender.subscribe_private(&ch);
            let auth = private_auth(&sub.socket_id, &ch);
            sub.send_subscribe(&ch, Some(&auth), None);
            sub.expect_text(&succeeded_text(&ch));
            // At once, from shard a: a client event and an HTTP trigger.
            let data = json!({ "n": round });
            sender.send_client_event("client-race", &ch, &data);
            http.trigger(&DEV, &json!({"name":"race","channel":ch,"data":"t"}))
                .expect_ok_json();
            sender.expect_text(&event_text("race", &ch, "t"));
            let client = format!(r#"{{"event":"client-race","channel":"{ch}","data":{data}}}"#);
            expect_both(&mut sub, &client, &event_text("race", &ch, "t"), round);
            // Leave, so the next round's channel is again new on shard b.
            sub.unsubscribe(&ch);
            sender.unsubscribe(&ch);
        }
        sub.ping();
        sender.ping();
    }
}

fn presence_and_cache_joins_through_the_owner_are_routed_before_confirmation(layout: Layout) {
    let server = Server::start_laid_out(&config(), layout);
    let mport = metrics_port(&server);
    let mut http = [
        http_on(server.port, mport, 0),
        http_on(server.port, mport, 1),
    ];
    let mut on = [
        Ws::connect_on(server.port, 0),
        Ws::connect_on(server.port, 1),
    ];
    for round in 0..60 {
        // The joiner on shard b, the channel owned by the other shard a, a
        // second member joining from shard a at the same moment.
        let (a, b) = if round % 2 == 0 { (0, 1) } else { (1, 0) };
        let ch = name_owned_by(&format!("presence-race-{round}-"), a);
        let x = format!(r#"{{"user_id":"x{round}"}}"#);
        let y = format!(r#"{{"user_id":"y{round}"}}"#);
        let auth_x = presence_auth(&on[b].socket_id, &ch, &x);
        let auth_y = presence_auth(&on[a].socket_id, &ch, &y);
        on[b].send_subscribe(&ch, Some(&auth_x), Some(&x));
        on[a].send_subscribe(&ch, Some(&auth_y), Some(&y));
        let p = on[b].expect_presence_succeeded(&ch);
        let y_id = format!("y{round}");
        let y_in_snapshot = p["ids"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v.as_str() == Some(y_id.as_str()));
        // y's own confirmation too (y's join may be handled after x's, and
        // an event published before it succeeded need not reach y).
        let q = on[a].expect_presence_succeeded(&ch);
        // An HTTP event from the owner's shard right after the confirmations.
        http[a]
            .trigger(&DEV, &json!({"name":"after","channel":ch,"data":"t"}))
            .expect_ok_json();
        // y is in x's snapshot, or x gets its member_added (before the event
        // when y joined first on the owner; the owner's announcements and
        // the HTTP event are different sources, so in any order otherwise).
        let mut want_added = !y_in_snapshot;
        let mut want_event = true;
        while want_added || want_event {
            let v: Value = on[b].recv_json_within(Duration::from_secs(5));
            match v["event"].as_str() {
                Some("pusher_internal:member_added") if want_added => {
                    assert!(v["data"].to_string().contains(&y_id), "round {round}: {v}");
                    want_added = false;
                }
                Some("after") if want_event => want_event = false,
                _ => {
                    panic!("round {round}: x on shard {b} got {v} (y in snapshot: {y_in_snapshot})")
                }
            }
        }
        // y: its snapshot has x, or it gets x's member_added; then the event.
        let x_id = format!("x{round}");
        if !q["ids"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v.as_str() == Some(x_id.as_str()))
        {
            let v = on[a].expect_event("pusher_internal:member_added");
            assert!(v["data"].to_string().contains(&x_id), "round {round}: {v}");
        }
        on[a].expect_text(&event_text("after", &ch, "t"));
        on[a].unsubscribe(&ch);
        let v = on[b].expect_event("pusher_internal:member_removed");
        assert!(v["data"].to_string().contains(&y_id), "round {round}: {v}");
        on[b].unsubscribe(&ch);
        on[a].ping();
        on[b].ping();
    }
    // A cache channel owned by the other shard: the event right after the
    // confirmation (and its cache miss) arrives.
    for round in 0..40 {
        let (a, b) = if round % 2 == 0 { (0, 1) } else { (1, 0) };
        let ch = name_owned_by(&format!("cache-race-{round}-"), a);
        on[b].send_subscribe(&ch, None, None);
        on[b].expect_text(&succeeded_text(&ch));
        http[a]
            .trigger(&DEV, &json!({"name":"after","channel":ch,"data":"t"}))
            .expect_ok_json();
        on[b].expect_event("pusher:cache_miss");
        on[b].expect_text(&event_text("after", &ch, "t"));
        on[b].unsubscribe(&ch);
        on[b].ping();
    }
}

fn last_subscriber_leaving_while_events_are_in_flight_is_harmless(layout: Layout) {
    let server = Server::start_laid_out(&config(), layout);
    let mport = metrics_port(&server);
    let total = 400;
    for round in 0..3 {
        let ch = format!("inflight-{round}");
        // The publisher on shard 0; the leaving subscriber alone on shard 1;
        // a staying subscriber on shard 0 checks nothing else changed.
        let mut stay = Ws::connect_on(server.port, 0);
        let mut leave = Ws::connect_on(server.port, 1);
        stay.subscribe(&ch);
        leave.subscribe(&ch);
        let mut http = http_on(server.port, mport, 0);
        let publisher = {
            let ch = ch.clone();
            std::thread::spawn(move || {
                for k in 0..total {
                    http.trigger(&DEV, &json!({"name":"e","channel":ch,"data":k.to_string()}))
                        .expect_ok_json();
                }
                http
            })
        };
        // Leave once a few arrived, while the publisher goes on.
        let mut next = 0;
        while next < 5 {
            leave.expect_text(&event_text("e", &ch, &next.to_string()));
            next += 1;
        }
        leave.unsubscribe(&ch);
        leave.send_text(r#"{"event":"pusher:ping","data":{}}"#);
        // Until the pong: the events queued before the unsubscribe, in order.
        loop {
            let v = leave.recv_json_within(Duration::from_secs(5));
            if v["event"] == "pusher:pong" {
                break;
            }
            assert_eq!(
                v,
                serde_json::from_str::<Value>(&event_text("e", &ch, &next.to_string())).unwrap(),
                "round {round}: in order until the pong"
            );
            next += 1;
        }
        // Back while events may still be on their way.
        leave.subscribe(&ch);
        let mut http = publisher.join().expect("publisher");
        let end = marker(&mut http, &ch, "end");
        // Whatever came since the resubscribe is in order, then the marker.
        let mut last: Option<usize> = None;
        loop {
            let t = leave.recv_within(Duration::from_secs(5)).text();
            if t == end {
                break;
            }
            let v: Value = serde_json::from_str(&t).unwrap();
            assert_eq!(v["event"], "e", "round {round}: {t}");
            let k: usize = v["data"].as_str().unwrap().parse().unwrap();
            assert!(
                last.is_none_or(|l| k > l),
                "round {round}: out of order: {t}"
            );
            last = Some(k);
        }
        for k in 0..total {
            stay.expect_text(&event_text("e", &ch, &k.to_string()));
        }
        stay.expect_text(&end);
    }
}
