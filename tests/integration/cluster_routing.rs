//! Sparse routing between nodes: a node receives from the engine only the
//! events of channels it has subscribers for, and exactly those: a
//! subscriber told `subscription_succeeded` gets every event published on
//! any node after it, across its node's first subscription of a channel,
//! the last subscriber leaving and coming back, and the engine connection
//! lost and restored. Every test runs on Redis and on NATS.

use crate::cluster::{for_each_plain_engine, two_nodes, wait_log, EngineProcess};
use crate::cluster_loss::{nodes_with_b_behind_a_proxy, ready};
use crate::metrics::{metrics_port, scrape};
use crate::support::*;
use serde_json::json;
use shardcast::cluster::route::bucket_of;
use std::collections::HashSet;
use std::time::{Duration, Instant};

/// Triggers per direction in the traffic test (the benchmark sends more).
const TRIGGERS: usize = 2_000;

fn with_metrics(config: String) -> String {
    format!("{config}\n[server.metrics]\nenabled = true\nport = 0\n")
}

/// `name` from one scrape of the metrics port `port`.
fn figure(port: u16, name: &str) -> u64 {
    let m = scrape(port);
    *m.get(&format!("shardcast_{name}"))
        .unwrap_or_else(|| panic!("no {name} in {m:?}"))
}

fn post(http: &mut Http, channel: &str, name: &str, data: &str) {
    let r = http.trigger(&DEV, &json!({"name":name,"channel":channel,"data":data}));
    assert_eq!(r.status, 200, "{}", r.text());
}

/// Two nodes with metrics on one engine, `cluster_extra` added to their
/// `[cluster]` section, each having heard the other.
fn two_measured_nodes(engine: &EngineProcess, cluster_extra: &str) -> (Server, Server) {
    let config = with_metrics(
        engine
            .config("")
            .replace("[cluster]\n", &format!("[cluster]\n{cluster_extra}")),
    );
    let a = Server::start_with(&config);
    let b = Server::start_with(&config);
    wait_log(&a, "is up", 1, Duration::from_secs(10));
    wait_log(&b, "is up", 1, Duration::from_secs(10));
    (a, b)
}

/// 2,000 triggers to a channel subscribed only on A: published on A, they
/// add less than 1% of that to B's received messages (B does not even
/// hear them); published on B, every one reaches each of A's subscribers,
/// in order.
#[test]
fn events_reach_only_the_nodes_with_subscribers() {
    for_each_plain_engine(|engine| {
        let (a, b) = two_measured_nodes(engine, "");
        let (ma, mb) = (metrics_port(&a), metrics_port(&b));
        let mut on_a: Vec<Ws> = (0..2)
            .map(|shard| {
                let mut ws = Ws::connect_on(a.port, shard);
                ws.subscribe("only-a");
                ws
            })
            .collect();
        let mut marker = Ws::connect(b.port);
        marker.subscribe("marker-b");

        let before = figure(mb, "cluster_messages_received_total");
        let mut http_a = Http::connect(a.port);
        for i in 0..TRIGGERS {
            post(&mut http_a, "only-a", "e", &i.to_string());
        }
        for ws in &mut on_a {
            for i in 0..TRIGGERS {
                ws.expect_text(&event_text("e", "only-a", &i.to_string()));
            }
        }
        // Barrier: published on A after all of them, for B's subscriber.
        post(&mut http_a, "marker-b", "m", "1");
        marker.expect_text(&event_text("m", "marker-b", "1"));
        let added = figure(mb, "cluster_messages_received_total") - before;
        eprintln!(
            "{:?}: B received {added} messages for {TRIGGERS} triggers on A to a channel only A \
             subscribes ({:.4} per trigger)",
            engine.kind,
            added as f64 / TRIGGERS as f64
        );
        assert!(
            added * 100 < TRIGGERS as u64,
            "B received {added} messages for {TRIGGERS} triggers it has no subscriber for"
        );

        let before = figure(ma, "cluster_messages_received_total");
        let mut http_b = Http::connect(b.port);
        for i in 0..TRIGGERS {
            post(&mut http_b, "only-a", "f", &i.to_string());
        }
        for ws in &mut on_a {
            for i in 0..TRIGGERS {
                ws.expect_text(&event_text("f", "only-a", &i.to_string()));
            }
        }
        let got = figure(ma, "cluster_messages_received_total") - before;
        assert!(got >= TRIGGERS as u64, "A received {got}");
        for node in [ma, mb] {
            for reason in shardcast::cluster::Refusal::ALL {
                let name = format!(
                    "cluster_messages_refused_total{{reason=\"{}\"}}",
                    reason.label()
                );
                assert_eq!(figure(node, &name), 0, "{name}");
            }
            assert_eq!(figure(node, "cluster_envelopes_lost_total"), 0);
        }
    });
}

/// The exactness race, many times over: a client on B subscribes to a
/// channel whose bucket no node has open, and the moment
/// `subscription_succeeded` arrives a trigger is posted on A; it must
/// reach the client. (Fails if B answers before the engine confirmed its
/// subscription.)
#[test]
fn a_first_subscriber_gets_every_event_published_after_it_succeeded() {
    for_each_plain_engine(|engine| {
        let (a, b) = two_nodes(engine);
        let mut http = Http::connect(a.port);
        let mut used = HashSet::new();
        let mut client = Ws::connect(b.port);
        let (mut rounds, mut i) = (0, 0);
        while rounds < 150 {
            i += 1;
            let channel = format!("race-{i}");
            if !used.insert(bucket_of("app-id", &channel)) {
                continue; // a bucket B opened already: not a first subscriber
            }
            rounds += 1;
            if rounds % 100 == 0 {
                client = Ws::connect(b.port); // within the per-connection limit
            }
            client.send_json(&json!({"event":"pusher:subscribe","data":{"channel":channel}}));
            let v = client.expect_event("pusher_internal:subscription_succeeded");
            assert_eq!(v["channel"], channel, "{v}");
            post(&mut http, &channel, "first", &i.to_string());
            client.expect_text(&event_text("first", &channel, &i.to_string()));
        }
    });
}

/// Subscribers leaving and coming back: while one subscriber of a channel
/// on B stays, another leaves and subscribes again (within the linger) and
/// gets the event posted right after each success; the one that stayed
/// gets every event in order. Then the last subscriber leaves, B drops the
/// engine subscription after the linger, and a new subscribe waits for the
/// engine again: the event posted right after its success arrives.
#[test]
fn subscribers_leaving_and_coming_back_lose_nothing() {
    for_each_plain_engine(|engine| {
        let (a, b) = two_measured_nodes(engine, "unsubscribe_linger_ms = 100\n");
        let mb = metrics_port(&b);
        let mut http = Http::connect(a.port);
        let mut stay = Ws::connect_on(b.port, 0);
        stay.subscribe("flap");
        let mut comer = Ws::connect_on(b.port, 1);
        for round in 0..20 {
            comer.subscribe("flap");
            post(&mut http, "flap", "r", &round.to_string());
            comer.expect_text(&event_text("r", "flap", &round.to_string()));
            comer.unsubscribe("flap");
        }
        for round in 0..20 {
            stay.expect_text(&event_text("r", "flap", &round.to_string()));
        }
        assert_eq!(figure(mb, "cluster_event_subjects"), 1);

        for round in 0..5 {
            stay.unsubscribe("flap");
            let dropped = wait_until(WAIT, || figure(mb, "cluster_event_subjects") == 0);
            assert!(dropped, "B kept the engine subscription past the linger");
            stay.subscribe("flap");
            assert_eq!(figure(mb, "cluster_event_subjects"), 1);
            post(&mut http, "flap", "back", &round.to_string());
            stay.expect_text(&event_text("back", "flap", &round.to_string()));
        }
    });
}

/// The engine connection of B is cut and restored (a TCP proxy): a client
/// subscribing while it is cut is not held up, and after the heal events
/// reach both it and a client subscribed before the cut (B subscribes to
/// every event subject it wants again on reconnection).
#[test]
fn subscriptions_are_restored_when_the_engine_connection_comes_back() {
    for_each_plain_engine(|engine| {
        let (a, proxy, b) = nodes_with_b_behind_a_proxy(engine);
        let mut http = Http::connect(a.port);
        let mut before = Ws::connect(b.port);
        before.subscribe("before-cut");
        post(&mut http, "before-cut", "e", "1");
        before.expect_text(&event_text("e", "before-cut", "1"));

        proxy.cut();
        assert!(
            wait_until(Duration::from_secs(5), || ready(b.port) == 503),
            "B never said it is cut off"
        );
        let started = Instant::now();
        let mut during = Ws::connect(b.port);
        during.subscribe("during-cut");
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "a subscribe during the cut waited {:?}",
            started.elapsed()
        );

        proxy.heal();
        assert!(
            wait_until(Duration::from_secs(20), || ready(b.port) == 200),
            "B not back 20 s after the heal:\n{}",
            b.log_text()
        );
        post(&mut http, "before-cut", "e", "2");
        before.expect_text(&event_text("e", "before-cut", "2"));
        post(&mut http, "during-cut", "e", "3");
        during.expect_text(&event_text("e", "during-cut", "3"));
    });
}
