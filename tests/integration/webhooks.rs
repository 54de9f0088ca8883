//! Webhooks: every event kind signed, batching, retries in order, the
//! vacate/remove delay, presence members across shards, filters.

use crate::receiver::{count, is, Receiver};
use crate::support::*;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::{Duration, Instant};

pub(crate) const KEY: &str = "hook-key";
const SECRET: &str = "hook-secret";
const CREDS: Creds = Creds {
    id: "hook-app",
    key: KEY,
    secret: SECRET,
};
const ALL: &str = r#"["channel_occupied", "channel_vacated", "member_added", "member_removed", "client_event", "cache_miss"]"#;
pub(crate) const LONG: Duration = Duration::from_secs(8);

/// A config with one app whose webhooks are `hooks` (TOML tables), and
/// `[server.webhooks]` keys `server`.
pub(crate) fn config(server: &str, hooks: &str) -> String {
    format!(
        "[server.webhooks]\n{server}\n\n[[apps]]\nid = \"{}\"\nkey = \"{KEY}\"\nsecret = \"{SECRET}\"\nenable_client_messages = true\n{hooks}",
        CREDS.id
    )
}

pub(crate) fn hook(url: &str, types: &str, extra: &str) -> String {
    format!("[[apps.webhooks]]\nurl = \"{url}\"\nevent_types = {types}\n{extra}\n")
}

pub(crate) fn connect(port: u16) -> Ws {
    Ws::connect_key(port, KEY)
}

/// A connection of this file's app on `shard`.
pub(crate) fn connect_on(port: u16, shard: u64) -> Ws {
    (0..400)
        .map(|_| connect(port))
        .find(|ws| ws.shard() == shard)
        .unwrap_or_else(|| panic!("no connection on shard {shard}"))
}

fn sign(s: &str) -> String {
    format!("{KEY}:{}", shardcast::auth::sign(SECRET, s.as_bytes()))
}

pub(crate) fn subscribe_private(ws: &mut Ws, channel: &str) {
    let auth = sign(&format!("{}:{channel}", ws.socket_id));
    ws.send_json(&json!({"event":"pusher:subscribe","data":{"channel":channel,"auth":auth}}));
    let v = ws.expect_event("pusher_internal:subscription_succeeded");
    assert_eq!(v["channel"], channel, "{v}");
}

/// Subscribes to a presence channel as `user`; skips member events of others.
pub(crate) fn subscribe_presence(ws: &mut Ws, channel: &str, user: &str) {
    let data = json!({"user_id": user}).to_string();
    let auth = sign(&format!("{}:{channel}:{data}", ws.socket_id));
    ws.send_json(&json!({"event":"pusher:subscribe","data":{"channel":channel,"auth":auth,"channel_data":data}}));
    loop {
        let v = ws.recv_json();
        if v["event"] == "pusher_internal:subscription_succeeded" {
            assert_eq!(v["channel"], channel, "{v}");
            return;
        }
        assert!(
            v["event"]
                .as_str()
                .unwrap_or("")
                .starts_with("pusher_internal:member"),
            "{v}"
        );
    }
}

/// The end of an absence check for webhooks: `ws` subscribes to a fence
/// channel owned by each shard (named `{prefix}{i}{suffix}`), and leaves it
/// again when `kind` is `channel_vacated`; waits until `receiver` has the
/// `kind` event of both fences and returns every event it has of channels
/// not named `*fence*`. Each
/// owner handles what one connection sends in order, holds vacated and
/// member_removed events in the order they arise (one delay for all), and
/// the sender delivers in order: so a webhook for anything `ws` did before
/// arrives before the fence's.
pub(crate) fn fence(
    ws: &mut Ws,
    receiver: &Receiver,
    prefix: &str,
    suffix: &str,
    kind: &str,
) -> Vec<Value> {
    let names: Vec<String> = (0..2)
        .map(|shard| {
            (0..)
                .map(|i| format!("{prefix}{i}{suffix}"))
                .find(|n| {
                    shardcast::pusher::owned::owner_of(shardcast::apps::AppIdx(0), n, 2) == shard
                })
                .unwrap()
        })
        .collect();
    for name in &names {
        ws.subscribe(name);
        if kind == "channel_vacated" {
            ws.unsubscribe(name);
        }
    }
    for name in &names {
        receiver.wait_for(&format!("{kind} {name}"), LONG, is(kind, name));
    }
    receiver
        .events()
        .into_iter()
        .filter(|e| !e["channel"].as_str().unwrap_or("").contains("fence"))
        .collect()
}

#[test]
fn every_event_kind_arrives_signed() {
    let receiver = Receiver::start();
    let server = Server::start_with(&config(
        "delay_ms = 200",
        &hook(&receiver.url("/hooks"), ALL, ""),
    ));
    let mut a = connect(server.port);
    let mut b = connect(server.port);

    a.subscribe("news");
    receiver.wait_for(
        "channel_occupied news",
        LONG,
        is("channel_occupied", "news"),
    );

    subscribe_presence(&mut a, "presence-room", "alice");
    let added = receiver.wait_for("member_added", LONG, is("member_added", "presence-room"));
    assert_eq!(added["user_id"], "alice", "{added}");
    receiver.wait_for(
        "channel_occupied presence-room",
        LONG,
        is("channel_occupied", "presence-room"),
    );

    subscribe_private(&mut a, "private-chat");
    subscribe_private(&mut b, "private-chat");
    a.send_json(&json!({"event":"client-typing","channel":"private-chat","data":{"who":"a"}}));
    b.expect_event("client-typing");
    let ev = receiver.wait_for("client_event", LONG, is("client_event", "private-chat"));
    assert_eq!(ev["event"], "client-typing", "{ev}");
    assert_eq!(ev["data"], r#"{"who":"a"}"#, "data is the JSON text: {ev}");
    assert_eq!(ev["socket_id"], a.socket_id.as_str(), "{ev}");
    assert!(
        ev.get("user_id").is_none(),
        "no user_id on private channels: {ev}"
    );

    // On a presence channel the client event names the sender's user.
    subscribe_presence(&mut b, "presence-room", "bob");
    a.expect_event("pusher_internal:member_added");
    a.send_json(&json!({"event":"client-hi","channel":"presence-room","data":"hello"}));
    let ev = receiver.wait_for(
        "client_event on presence",
        LONG,
        is("client_event", "presence-room"),
    );
    assert_eq!(ev["user_id"], "alice", "{ev}");
    assert_eq!(ev["data"], "hello", "a string is sent as is: {ev}");

    a.send_json(&json!({"event":"pusher:subscribe","data":{"channel":"cache-prices"}}));
    a.expect_event("pusher_internal:subscription_succeeded");
    a.expect_event("pusher:cache_miss");
    receiver.wait_for("cache_miss", LONG, is("cache_miss", "cache-prices"));

    a.unsubscribe("news");
    receiver.wait_for("channel_vacated news", LONG, is("channel_vacated", "news"));
    b.unsubscribe("presence-room");
    let removed = receiver.wait_for(
        "member_removed",
        LONG,
        is("member_removed", "presence-room"),
    );
    assert_eq!(removed["user_id"], "bob", "{removed}");

    let deliveries = receiver.deliveries();
    assert!(!deliveries.is_empty());
    for d in &deliveries {
        d.assert_signed(KEY, SECRET);
        assert_eq!(d.path, "/hooks");
    }
}

#[test]
fn events_close_in_time_are_batched_up_to_batch_max() {
    let receiver = Receiver::start();
    let server = Server::start_with(&config(
        "batch_window_ms = 400\nbatch_max = 3",
        &hook(&receiver.url("/"), r#"["channel_occupied"]"#, ""),
    ));
    let mut ws = connect(server.port);
    let mut burst = Vec::new();
    for i in 0..5 {
        burst.extend(encode_frame(
            true,
            OP_TEXT,
            json!({"event":"pusher:subscribe","data":{"channel":format!("b-{i}")}})
                .to_string()
                .as_bytes(),
            true,
        ));
    }
    ws.send_raw(&burst);
    for _ in 0..5 {
        ws.expect_event("pusher_internal:subscription_succeeded");
    }
    receiver.wait_events(5, LONG);
    let sizes: Vec<usize> = receiver
        .deliveries()
        .iter()
        .map(|d| d.events().len())
        .collect();
    assert_eq!(
        sizes,
        vec![3, 2],
        "5 events close together with batch_max 3"
    );
    for d in receiver.deliveries() {
        d.assert_signed(KEY, SECRET);
    }
    let events = fence(&mut ws, &receiver, "fence-", "", "channel_occupied");
    assert_eq!(events.len(), 5, "each event once: {events:?}");
}

#[test]
fn failed_deliveries_are_retried_in_order() {
    let receiver = Receiver::start();
    receiver.answer_next(&[500, 500]);
    let server = Server::start_with(&config(
        "batch_window_ms = 10",
        &hook(&receiver.url("/"), r#"["channel_occupied"]"#, ""),
    ));
    let mut ws = connect(server.port);
    ws.subscribe("first");
    // "second" in a batch of its own, queued behind the first's retries.
    let deadline = Instant::now() + LONG;
    while receiver.deliveries().is_empty() {
        assert!(Instant::now() < deadline, "no delivery attempt");
        std::thread::sleep(Duration::from_millis(10));
    }
    ws.subscribe("second");
    let events = receiver.wait_events(2, Duration::from_secs(12));
    let names: Vec<&str> = events
        .iter()
        .map(|e| e["channel"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        vec!["first", "second"],
        "in order, after the retries"
    );
    let d = receiver.deliveries();
    let statuses: Vec<u16> = d.iter().map(|d| d.status).collect();
    assert_eq!(statuses, vec![500, 500, 200, 200], "{d:?}");
    // The same signed body is retried, with backoff (1 s, then 2 s).
    assert_eq!(d[0].body, d[1].body);
    assert_eq!(d[1].body, d[2].body);
    assert!(
        d[1].at - d[0].at >= Duration::from_millis(900),
        "{:?}",
        d[1].at - d[0].at
    );
    assert!(
        d[2].at - d[1].at >= Duration::from_millis(1900),
        "{:?}",
        d[2].at - d[1].at
    );
    for d in &d {
        d.assert_signed(KEY, SECRET);
    }
    assert!(
        server.log_text().contains("answered 500"),
        "the failure is logged"
    );
}

#[test]
fn a_quick_return_suppresses_vacated_and_removed() {
    let receiver = Receiver::start();
    let server = Server::start_with(&config(
        "delay_ms = 1000",
        &hook(&receiver.url("/"), ALL, ""),
    ));
    let mut ws = connect(server.port);
    ws.subscribe("blink");
    subscribe_presence(&mut ws, "presence-blink", "u1");
    receiver.wait_events(3, LONG); // occupied ×2, member_added
                                   // Leave and come back within the delay: nothing to report.
    ws.unsubscribe("blink");
    ws.unsubscribe("presence-blink");
    ws.subscribe("blink");
    subscribe_presence(&mut ws, "presence-blink", "u1");
    let events = fence(&mut ws, &receiver, "fence-", "", "channel_vacated");
    assert_eq!(events.len(), 3, "nothing for the quick return: {events:?}");
    // Leave for good: vacated and removed after the delay.
    let left = Instant::now();
    ws.unsubscribe("blink");
    ws.unsubscribe("presence-blink");
    receiver.wait_for("vacated", LONG, is("channel_vacated", "blink"));
    assert!(
        left.elapsed() >= Duration::from_millis(900),
        "sent before the delay: {:?}",
        left.elapsed()
    );
    receiver.wait_for("removed", LONG, is("member_removed", "presence-blink"));
    receiver.wait_for(
        "vacated presence",
        LONG,
        is("channel_vacated", "presence-blink"),
    );
    let events = receiver.events();
    assert_eq!(count(&events, "channel_occupied", "blink"), 1, "{events:?}");
    assert_eq!(
        count(&events, "member_added", "presence-blink"),
        1,
        "{events:?}"
    );
    let events = fence(&mut ws, &receiver, "last-fence-", "", "channel_vacated");
    assert_eq!(events.len(), 6, "each event once: {events:?}");
}

#[test]
fn members_are_reported_once_per_user_with_sockets_on_both_shards() {
    let receiver = Receiver::start();
    let server = Server::start_with(&config(
        "delay_ms = 100",
        &hook(
            &receiver.url("/"),
            r#"["member_added", "member_removed"]"#,
            "",
        ),
    ));
    // One connection on each shard (connect_spread uses the dev app key).
    let mut on: [Vec<Ws>; 2] = [Vec::new(), Vec::new()];
    for _ in 0..200 {
        if !on[0].is_empty() && !on[1].is_empty() {
            break;
        }
        let ws = connect(server.port);
        let s = ws.shard() as usize;
        on[s].push(ws);
    }
    let [mut a, mut b] = on.map(|mut v| v.pop().expect("a connection on each shard"));
    assert_ne!(a.shard(), b.shard());
    // Barriers: another user joining (or leaving) from the shard whose
    // message must not make a webhook. The channel's owner handles what one
    // shard sends in order and queues its webhooks in order, so the
    // barrier's webhook comes after any wrong one.
    let user = |e: &Value| format!("{} {}", e["name"].as_str().unwrap(), e["user_id"]);
    subscribe_presence(&mut a, "presence-both", "same-user");
    subscribe_presence(&mut b, "presence-both", "same-user");
    let mut bar_b = connect_on(server.port, b.shard());
    subscribe_presence(&mut bar_b, "presence-both", "bar-b");
    let events = receiver.wait_events(2, LONG);
    assert_eq!(
        events.iter().map(user).collect::<Vec<_>>(),
        ["member_added \"same-user\"", "member_added \"bar-b\""],
        "one member_added per user"
    );
    a.expect_event("pusher_internal:member_added"); // bar-b
    a.unsubscribe("presence-both");
    a.ping(); // handled, and its message to the owner sent
    let mut bar_a = connect_on(server.port, a.shard());
    subscribe_presence(&mut bar_a, "presence-both", "bar-a");
    bar_a.unsubscribe("presence-both");
    let events = receiver.wait_events(4, LONG);
    assert_eq!(
        events[2..].iter().map(user).collect::<Vec<_>>(),
        ["member_added \"bar-a\"", "member_removed \"bar-a\""],
        "no member_removed while a socket of the user remains"
    );
    b.shutdown(); // the last socket goes away without a close handshake
    let removed = receiver.wait_for("member_removed", LONG, |e| {
        e["name"] == "member_removed" && e["user_id"] == "same-user"
    });
    assert_eq!(removed["user_id"], "same-user");
    // Once: a last barrier user from b's shard joins and leaves; its
    // member_removed waits out the same delay, started later.
    let mut bar_c = connect_on(server.port, b.shard());
    subscribe_presence(&mut bar_c, "presence-both", "bar-c");
    bar_c.unsubscribe("presence-both");
    let events = receiver.wait_events(7, LONG);
    assert_eq!(
        events[4..].iter().map(user).collect::<Vec<_>>(),
        [
            "member_removed \"same-user\"",
            "member_added \"bar-c\"",
            "member_removed \"bar-c\""
        ],
        "{events:?}"
    );
}

#[test]
fn filters_event_types_and_headers_are_respected() {
    let news = Receiver::start();
    let eu = Receiver::start();
    let hooks = format!(
        "{}{}",
        hook(
            &news.url("/news"),
            r#"["channel_occupied"]"#,
            "filter = { prefix = \"news-\" }\nheaders = { X-Custom = \"yes\" }"
        ),
        hook(
            &eu.url("/eu"),
            r#"["channel_vacated"]"#,
            "filter = { suffix = \"-eu\" }"
        ),
    );
    let server = Server::start_with(&config("delay_ms = 0", &hooks));
    let mut ws = connect(server.port);
    for c in ["news-1", "sport-eu", "news-eu"] {
        ws.subscribe(c);
    }
    for c in ["news-1", "sport-eu", "news-eu"] {
        ws.unsubscribe(c);
    }
    ws.ping(); // the unsubscribes are handled
    let got = news.wait_events(2, LONG);
    let got_eu = eu.wait_events(2, LONG);
    // Fences: anything wrongly sent to either URL would come first.
    let fenced_news = fence(&mut ws, &news, "news-fence-", "", "channel_occupied");
    let fenced_eu = fence(&mut ws, &eu, "fence-", "-eu", "channel_vacated");
    let names = |events: Vec<Value>| {
        let mut v: Vec<String> = events
            .iter()
            .map(|e| format!("{} {}", e["name"], e["channel"]))
            .collect();
        v.sort();
        v
    };
    assert_eq!(names(fenced_news), names(got.clone()));
    assert_eq!(
        names(got),
        vec![
            r#""channel_occupied" "news-1""#,
            r#""channel_occupied" "news-eu""#
        ]
    );
    assert_eq!(names(fenced_eu), names(got_eu.clone()));
    assert_eq!(
        names(got_eu),
        vec![
            r#""channel_vacated" "news-eu""#,
            r#""channel_vacated" "sport-eu""#
        ]
    );
    for d in news.deliveries() {
        assert_eq!(d.header("x-custom"), Some("yes"));
        d.assert_signed(KEY, SECRET);
    }
}

#[test]
fn undelivered_events_are_counted_at_shutdown() {
    let receiver = Receiver::start();
    receiver.answer_next(&[503; 20]);
    let mut server = Server::start_with(&config(
        "batch_window_ms = 10",
        &hook(&receiver.url("/"), r#"["channel_occupied"]"#, ""),
    ));
    let mut ws = connect(server.port);
    ws.subscribe("never-delivered");
    let deadline = Instant::now() + LONG;
    while receiver.deliveries().is_empty() {
        assert!(Instant::now() < deadline, "no delivery attempt");
        std::thread::sleep(Duration::from_millis(20));
    }
    let status = server
        .stop_gracefully(Duration::from_secs(8))
        .expect("exits");
    assert!(status.success(), "{status}");
    // The process has exited; its last lines may still be on their way
    // through the test's log reader.
    assert!(
        wait_until(Duration::from_secs(5), || server
            .log_text()
            .contains("1 events undelivered")),
        "{}",
        server.log_text()
    );
}

#[test]
fn a_down_receiver_costs_a_bounded_queue_that_keeps_the_newest_events() {
    use crate::metrics::{metrics_port, scrape};
    const CAP: u64 = 20;
    const TOTAL: usize = 120;
    let receiver = Receiver::start();
    receiver.answer_all(Some(500));
    let server = Server::start_with(&format!(
        "[server.metrics]\nenabled = true\nport = 0\n{}",
        config(
            &format!(
                "batch_window_ms = 10\nbatch_max = 5\nretry_for_secs = 60\nmax_queued_events = {CAP}"
            ),
            &hook(&receiver.url("/down"), r#"["channel_occupied"]"#, ""),
        )
    ));
    let mport = metrics_port(&server);
    // Channels whose owner is shard 0, so their occupancy events reach the
    // sender in subscription order.
    let names: Vec<String> = (0..)
        .map(|i| format!("q{i}"))
        .filter(|n| shardcast::pusher::owned::owner_of(shardcast::apps::AppIdx(0), n, 2) == 0)
        .take(TOTAL)
        .collect();
    let mut ws = connect(server.port);
    // The first event's batch is in flight (answered 500, retried for 60 s)
    // before the others come, so the others can only wait in the queue.
    ws.subscribe(&names[0]);
    assert!(wait_until(LONG, || !receiver.deliveries().is_empty()));
    for name in &names[1..] {
        ws.send_json(&json!({"event":"pusher:subscribe","data":{"channel":name}}));
    }
    for _ in &names[1..] {
        ws.expect_event("pusher_internal:subscription_succeeded");
    }
    // Every event is routed: one in flight, CAP waiting, the rest dropped.
    let figure = |m: &HashMap<String, u64>, name: &str| m.get(name).copied().unwrap_or(0);
    let mut m = scrape(mport);
    let full = wait_until(LONG, || {
        m = scrape(mport);
        figure(&m, "shardcast_webhook_pending_events") == 1 + CAP
            && figure(&m, "shardcast_webhook_queue_depth") == CAP
    });
    assert!(full, "the queue did not fill up to its bound: {m:?}");
    let dropped = figure(&m, "shardcast_webhook_events_dropped_total");
    assert_eq!(dropped, TOTAL as u64 - 1 - CAP, "{m:?}");
    assert_eq!(figure(&m, "shardcast_webhook_deliveries_total"), 0);

    // The receiver recovers: the batch in flight, then the newest CAP events.
    receiver.answer_all(None);
    let newest = names.last().unwrap();
    receiver.wait_for(
        "the newest event",
        Duration::from_secs(30),
        is("channel_occupied", newest),
    );
    // FIFO per webhook: the newest arriving proves everything queued before
    // it has arrived too.
    let got: Vec<String> = receiver
        .events()
        .iter()
        .map(|e| e["channel"].as_str().unwrap().to_string())
        .collect();
    let expected: Vec<String> = names[..1]
        .iter()
        .chain(&names[names.len() - CAP as usize..])
        .cloned()
        .collect();
    assert_eq!(got, expected, "the oldest waiting events were dropped");
    let m = scrape(mport);
    assert_eq!(figure(&m, "shardcast_webhook_queue_depth"), 0, "{m:?}");
    assert_eq!(figure(&m, "shardcast_webhook_pending_events"), 0, "{m:?}");
    assert_eq!(
        figure(&m, "shardcast_webhook_events_dropped_total"),
        dropped,
        "{m:?}"
    );
    // One line when dropping began, one summary when it ended.
    assert!(
        wait_until(WAIT, || server
            .log_text()
            .contains("oldest events were dropped")),
        "no summary line:\n{}",
        server.log_text()
    );
    let log = server.log_text();
    assert_eq!(log.matches("dropping the oldest").count(), 1, "{log}");
    assert_eq!(
        log.matches("oldest events were dropped").count(),
        1,
        "{log}"
    );
    assert!(
        log.contains(&format!("{} oldest events were dropped", dropped)),
        "{log}"
    );
}
