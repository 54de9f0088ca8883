//! Counts that hold for a whole cluster: two nodes (2 shards each) on a
//! private Redis or NATS server; every scenario runs on both engines.

use crate::cluster::{for_each_plain_engine, two_nodes};
use crate::support::*;
use serde_json::json;
use std::time::Duration;

const CONNECTIONS: &str = "/apps/app-id/connections";

/// Waits until `port` answers `GET /connections` with `n`.
fn wait_connections(port: u16, n: u64, timeout: Duration) {
    let mut last = json!(null);
    let ok = wait_until(timeout, || {
        last = get_json(port, CONNECTIONS, &[]);
        last == json!({ "connections": n })
    });
    assert!(ok, "port {port}: expected {n} connections, have {last}");
}

/// `GET /apps/{id}/connections` answers the cluster's total from either
/// node, follows closes on the other node, and once a SIGKILLed node is
/// taken as gone (node_timeout_secs = 2 in the test config) counts only
/// the living.
#[test]
fn connections_count_the_whole_cluster_from_every_node() {
    for_each_plain_engine(|engine| {
        let (a, mut b) = two_nodes(engine);
        let on_a: Vec<Ws> = (0..2).map(|s| Ws::connect_on(a.port, s)).collect();
        let mut on_b: Vec<Ws> = (0..2)
            .flat_map(|s| [Ws::connect_on(b.port, s), Ws::connect_on(b.port, s)])
            .collect();
        // (connect_on closes the connections that landed on the other
        // shard: wait for those closes to be seen.)
        for port in [a.port, b.port] {
            wait_connections(port, 6, WAIT);
        }
        on_b.pop();
        wait_connections(a.port, 5, WAIT);
        b.kill();
        // A dead node does not answer: A leaves it out after the query's
        // 1 s wait, and stops asking once it takes B as gone.
        wait_connections(a.port, 2, Duration::from_secs(8));
        drop(on_a);
        drop(on_b);
    });
}

/// Subscribers of one channel on two nodes, following
/// `pusher_internal:subscription_count`.
struct Counted {
    ws: Ws,
    /// Every count this subscriber was told, in order.
    seen: Vec<u64>,
}

impl Counted {
    fn subscribe(port: u16, shard: u64, channel: &str) -> Counted {
        let mut ws = Ws::connect_on(port, shard);
        ws.send_json(&json!({"event":"pusher:subscribe","data":{"channel":channel}}));
        let mut c = Counted {
            ws,
            seen: Vec::new(),
        };
        loop {
            let v = c.next(channel, WAIT);
            if v["event"] == "pusher_internal:subscription_succeeded" {
                return c;
            }
        }
    }

    /// The next frame (counts of `channel` noted on the way).
    fn next(&mut self, channel: &str, timeout: Duration) -> serde_json::Value {
        let v: serde_json::Value =
            serde_json::from_str(&self.ws.recv_within(timeout).text()).unwrap();
        if v["event"] == "pusher_internal:subscription_count" && v["channel"] == channel {
            self.seen
                .push(v["data"]["subscription_count"].as_u64().unwrap());
        }
        v
    }

    /// Reads until the last count told is `n`, within `timeout`.
    fn settles_at(&mut self, channel: &str, n: u64, timeout: Duration) {
        let deadline = std::time::Instant::now() + timeout;
        while self.seen.last() != Some(&n) {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            assert!(
                !left.is_zero(),
                "socket {}: expected count {n}, was told {:?}",
                self.ws.socket_id,
                self.seen
            );
            match self.ws.read_frame(left) {
                Ok(f) => {
                    let v: serde_json::Value = serde_json::from_str(&f.text()).unwrap();
                    if v["event"] == "pusher_internal:subscription_count" && v["channel"] == channel
                    {
                        self.seen
                            .push(v["data"]["subscription_count"].as_u64().unwrap());
                    }
                }
                Err(_) => continue,
            }
        }
    }
}

/// `pusher_internal:subscription_count` counts the whole cluster: every
/// subscriber on both nodes (both shards each) is told the same count
/// after each join and leave anywhere (within 100 ms of coalescing plus the
/// engine's latency), `GET /channels/{name}` agrees from either node, and
/// the subscribers of a SIGKILLed node leave the count within
/// node_timeout_secs (2 s here) plus a heartbeat interval.
#[test]
fn subscription_counts_agree_on_every_node_and_follow_a_dead_node() {
    for_each_plain_engine(|engine| {
        let config = engine.config("enable_subscription_count = true");
        let a = Server::start_with(&config);
        let mut b = Server::start_with(&config);
        crate::cluster::wait_log(&a, "is up", 1, Duration::from_secs(10));
        crate::cluster::wait_log(&b, "is up", 1, Duration::from_secs(10));
        const CH: &str = "room";
        let mut subs: Vec<Counted> = Vec::new();
        for (i, (port, shard)) in [(a.port, 0), (b.port, 1), (a.port, 1), (b.port, 0)]
            .into_iter()
            .enumerate()
        {
            subs.push(Counted::subscribe(port, shard, CH));
            for s in subs.iter_mut() {
                s.settles_at(CH, i as u64 + 1, WAIT);
            }
        }
        for port in [a.port, b.port] {
            let v = get_json(
                port,
                "/apps/app-id/channels/room",
                &[("info", "subscription_count")],
            );
            assert_eq!(v["subscription_count"], 4, "port {port}: {v}");
        }
        // A leave on B (shard 1): everyone is told 3.
        subs.remove(1);
        for s in subs.iter_mut() {
            s.settles_at(CH, 3, WAIT);
        }
        // B dies with its subscriber (subs[2]): A's subscribers are told 2.
        let on_b = subs.remove(2);
        let killed = std::time::Instant::now();
        b.kill();
        for s in subs.iter_mut() {
            s.settles_at(CH, 2, Duration::from_secs(8));
        }
        let took = killed.elapsed();
        assert!(took < Duration::from_secs(6), "count after {took:?}");
        let v = get_json(
            a.port,
            "/apps/app-id/channels/room",
            &[("info", "subscription_count")],
        );
        assert_eq!(v["subscription_count"], 2, "{v}");
        drop(on_b);
    });
}

/// The `subscription_count` webhook carries the cluster-wide count, once
/// per change, whichever node the subscribers are on.
#[test]
fn the_subscription_count_webhook_counts_the_cluster_once() {
    use crate::receiver::Receiver;
    for_each_plain_engine(|engine| {
        let receiver = Receiver::start();
        let hooks = format!(
            "[[apps.webhooks]]\nurl = \"{}\"\nevent_types = [\"subscription_count\"]\n\n[server.webhooks]\nbatch_window_ms = 10\n",
            receiver.url("/hooks")
        );
        let (a, b) = {
            let a = Server::start_with(&engine.config(&hooks));
            let b = Server::start_with(&engine.config(&hooks));
            crate::cluster::wait_log(&a, "is up", 1, Duration::from_secs(10));
            crate::cluster::wait_log(&b, "is up", 1, Duration::from_secs(10));
            (a, b)
        };
        let counts = || -> Vec<u64> {
            receiver
                .events()
                .iter()
                .filter(|e| e["name"] == "subscription_count" && e["channel"] == "hooked")
                .map(|e| e["subscription_count"].as_u64().unwrap())
                .collect()
        };
        let wait_len = |n: usize| {
            let ok = wait_until(WAIT, || counts().len() >= n);
            assert!(ok, "expected {n} counts, have {:?}", counts());
        };
        let mut subs = Vec::new();
        for (i, port) in [a.port, b.port, b.port].into_iter().enumerate() {
            let mut ws = Ws::connect(port);
            ws.subscribe("hooked");
            subs.push(ws);
            wait_len(i + 1);
        }
        subs.remove(0); // the one on A leaves
        wait_len(4);
        // The barrier: a further change of the same channel, reported by
        // the same deciding node after everything before it.
        let mut last = Ws::connect(a.port);
        last.subscribe("hooked");
        wait_len(5);
        assert_eq!(counts(), [1, 2, 3, 2, 3]);
    });
}

/// A connection of node `port`'s shard `shard`, signed in as `id`.
fn signed_in(port: u16, shard: u64, user_data: &str) -> Ws {
    let mut ws = Ws::connect_on(port, shard);
    ws.signin(user_data);
    ws
}

/// A user id whose owner shard (on every node: 2 shards each) is `user`'s,
/// so its watchlist events take the same path.
fn same_owner(user: &str, prefix: &str) -> String {
    use shardcast::apps::AppIdx;
    use shardcast::pusher::owned::owner_of;
    let owner = owner_of(AppIdx(0), user, 2);
    (0..)
        .map(|i| format!("{prefix}{i}"))
        .find(|n| owner_of(AppIdx(0), n, 2) == owner)
        .unwrap()
}

/// Watchlists see users across the cluster: `online` when a watched user's
/// first connection anywhere signs in, `offline` when its last one anywhere
/// leaves, once each; and a SIGKILLed node's users go offline (when they
/// have no connection elsewhere) within node_timeout_secs. Each absence
/// check ends on a marker user with the same owner shard signing in from
/// the same connection shard as the change before it, whose `online` comes
/// after anything that change caused.
#[test]
fn watchlists_see_users_on_every_node_once() {
    for_each_plain_engine(|engine| {
        let (a, mut b) = two_nodes(engine);
        let marks: Vec<String> = (0..3)
            .map(|i| same_owner("u", &format!("mark{i}-")))
            .collect();
        let watchlist = json!({"id":"w","watchlist":["u", marks[0], marks[1], marks[2]]});
        let mut w = signed_in(a.port, 0, &watchlist.to_string());
        // First connection anywhere (on B): online, once.
        let on_b = signed_in(b.port, 1, r#"{"id":"u"}"#);
        w.expect_text(&watchlist_text("online", &["u"]));
        // A second one, on A: nothing.
        let on_a = signed_in(a.port, 1, r#"{"id":"u"}"#);
        let _m0 = signed_in(a.port, 1, &json!({"id": marks[0]}).to_string());
        w.expect_text(&watchlist_text("online", &[&marks[0]]));
        // B's leaves: still on A, nothing.
        on_b.close();
        // The cluster holds w, on_a and the marker on A only: the closed
        // connection is gone from its shard, and what its close told the
        // owner shard is on its way.
        wait_connections(b.port, 3, WAIT);
        let _m1 = signed_in(b.port, 1, &json!({"id": marks[1]}).to_string());
        w.expect_text(&watchlist_text("online", &[&marks[1]]));
        // The last one, on A: offline, once.
        on_a.close();
        w.expect_text(&watchlist_text("offline", &["u"]));
        // On B again, and B dies: offline within the node timeout.
        let again = signed_in(b.port, 0, r#"{"id":"u"}"#);
        w.expect_text(&watchlist_text("online", &["u"]));
        let killed = std::time::Instant::now();
        b.kill();
        // B's users go offline: u and the marker signed in there.
        let mut frames: Vec<String> = (0..2)
            .map(|_| w.recv_within(Duration::from_secs(8)).text())
            .collect();
        frames.sort();
        let mut want = vec![
            watchlist_text("offline", &["u"]),
            watchlist_text("offline", &[&marks[1]]),
        ];
        want.sort();
        assert_eq!(frames, want);
        let took = killed.elapsed();
        assert!(took < Duration::from_secs(6), "offline after {took:?}");
        let _m2 = signed_in(a.port, 1, &json!({"id": marks[2]}).to_string());
        w.expect_text(&watchlist_text("online", &[&marks[2]]));
        drop(again);
    });
}

/// Subscribes `ws` to every room at once and waits for every confirmation
/// (count events in between are skipped).
fn join_all(ws: &mut Ws, rooms: &[String]) {
    for room in rooms {
        ws.send_json(&json!({"event":"pusher:subscribe","data":{"channel":room}}));
    }
    let mut succeeded = 0;
    while succeeded < rooms.len() {
        let v: serde_json::Value = serde_json::from_str(&ws.recv_within(WAIT).text()).unwrap();
        if v["event"] == "pusher_internal:subscription_succeeded" {
            succeeded += 1;
        }
    }
}

/// A node whose link queue is far too small for a burst of count changes
/// drops messages (counted) and repairs the other node's counts with a
/// full sync: the other node's subscribers are told the true counts, when
/// the burst joins and when it leaves.
#[test]
fn counts_lost_by_an_overflowing_link_queue_are_repaired_by_a_full_sync() {
    use crate::metrics::{metrics_port, scrape};
    use std::collections::HashMap;
    for_each_plain_engine(|engine| {
        let config = engine.config("enable_subscription_count = true");
        let a = Server::start_with(&config);
        let b = Server::start_with(&format!(
            "{}\n[server.metrics]\nenabled = true\nport = 0\n",
            config.replace("[cluster]\n", "[cluster]\nlink_queue = 2\n")
        ));
        crate::cluster::wait_log(&a, "is up", 1, Duration::from_secs(10));
        crate::cluster::wait_log(&b, "is up", 1, Duration::from_secs(10));
        let rooms: Vec<String> = (0..40).map(|i| format!("burst-{i}")).collect();
        let mut watcher = Ws::connect(a.port);
        let mut last: HashMap<String, u64> = HashMap::new();
        let mut note = |v: &serde_json::Value, last: &mut HashMap<String, u64>| {
            if v["event"] == "pusher_internal:subscription_count" {
                let ch = v["channel"].as_str().unwrap().to_string();
                last.insert(ch, v["data"]["subscription_count"].as_u64().unwrap());
            }
        };
        for room in &rooms {
            watcher.send_json(&json!({"event":"pusher:subscribe","data":{"channel":room}}));
        }
        let settle =
            |ws: &mut Ws,
             last: &mut HashMap<String, u64>,
             n: u64,
             note: &mut dyn FnMut(&serde_json::Value, &mut HashMap<String, u64>)| {
                let deadline = std::time::Instant::now() + Duration::from_secs(15);
                while !rooms.iter().all(|r| last.get(r) == Some(&n)) {
                    let left = deadline.saturating_duration_since(std::time::Instant::now());
                    assert!(!left.is_zero(), "expected every room at {n}: {last:?}");
                    if let Ok(f) = ws.read_frame(left) {
                        note(&serde_json::from_str(&f.text()).unwrap(), last);
                    }
                }
            };
        // A holder on B subscribes first, so B's engine subscriptions for
        // the rooms are open (a node's first subscriber of a channel waits
        // for the engine, which would spread the burst out).
        let mut holder = Ws::connect(b.port);
        join_all(&mut holder, &rooms);
        settle(&mut watcher, &mut last, 2, &mut note);
        // One connection on B joins all 40 at once: 40 count changes in one
        // tick, 40 messages into a queue of 2.
        let mut burst = Ws::connect(b.port);
        join_all(&mut burst, &rooms);
        settle(&mut watcher, &mut last, 3, &mut note);
        let m = scrape(metrics_port(&b));
        assert!(
            m["shardcast_cluster_messages_dropped_total"] > 0,
            "the queue never overflowed: {m:?}"
        );
        // And all leave at once.
        burst.send_close(1000);
        burst.shutdown();
        settle(&mut watcher, &mut last, 2, &mut note);
    });
}

/// Watchlist events a watcher was told, by user id.
type Seen = std::collections::BTreeMap<String, Vec<String>>;

/// Signed-in users lost by an overflowing link queue are repaired by a full
/// sync too: a watcher on the other node hears each user of a burst come
/// online once, and go offline once when they all leave.
#[test]
fn users_lost_by_an_overflowing_link_queue_are_repaired_by_a_full_sync() {
    use crate::metrics::{metrics_port, scrape};
    use shardcast::{apps::AppIdx, pusher::owned::owner_of};
    for_each_plain_engine(|engine| {
        let config = engine.config("");
        let a = Server::start_with(&config);
        let b = Server::start_with(&format!(
            "{}\n[server.metrics]\nenabled = true\nport = 0\n",
            config.replace("[cluster]\n", "[cluster]\nlink_queue = 2\n")
        ));
        crate::cluster::wait_log(&a, "is up", 1, Duration::from_secs(10));
        crate::cluster::wait_log(&b, "is up", 1, Duration::from_secs(10));
        let users: Vec<String> = (0..40).map(|i| format!("burst-user-{i}")).collect();
        // A marker user per owner shard (the barrier at the end).
        let marks: Vec<String> = (0..2)
            .map(|s| {
                (0..)
                    .map(|i| format!("mark-{i}"))
                    .find(|n| owner_of(AppIdx(0), n, 2) == s)
                    .unwrap()
            })
            .collect();
        let watchlist: Vec<&String> = users.iter().chain(&marks).collect();
        let mut watcher = signed_in(
            a.port,
            0,
            &json!({"id":"w","watchlist":watchlist}).to_string(),
        );
        // 40 connections on B sign in at once: 40 messages into a queue of 2.
        let mut burst: Vec<Ws> = users.iter().map(|_| Ws::connect(b.port)).collect();
        for (ws, id) in burst.iter_mut().zip(&users) {
            let data = json!({ "id": id }).to_string();
            let auth = user_auth(&ws.socket_id, &data);
            ws.send_signin(&auth, &data);
        }
        for (ws, id) in burst.iter_mut().zip(&users) {
            ws.expect_text(&signin_success_text(&json!({ "id": id }).to_string()));
        }
        let mut events: Seen = Seen::new();
        let mut read_until = |events: &mut Seen, done: &dyn Fn(&Seen) -> bool| {
            let deadline = std::time::Instant::now() + Duration::from_secs(15);
            while !done(events) {
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                assert!(!left.is_zero(), "watchlist events so far: {events:?}");
                if let Ok(f) = watcher.read_frame(left) {
                    let v: serde_json::Value = serde_json::from_str(&f.text()).unwrap();
                    for e in v["data"]["events"].as_array().unwrap() {
                        for id in e["user_ids"].as_array().unwrap() {
                            events
                                .entry(id.as_str().unwrap().to_string())
                                .or_default()
                                .push(e["name"].as_str().unwrap().to_string());
                        }
                    }
                }
            }
        };
        let each = |n: usize| {
            let users = users.clone();
            move |e: &Seen| users.iter().all(|u| e.get(u).is_some_and(|v| v.len() >= n))
        };
        read_until(&mut events, &each(1));
        let m = scrape(metrics_port(&b));
        assert!(
            m["shardcast_cluster_messages_dropped_total"] > 0,
            "the queue never overflowed: {m:?}"
        );
        for ws in burst.iter_mut() {
            ws.send_close(1000);
        }
        drop(burst);
        read_until(&mut events, &each(2));
        // Once each: the markers sign in on B after the burst left; what B
        // tells A goes in order through one queue and one engine
        // subscription to each owner shard, so their `online` comes after
        // anything more about the burst.
        let _marks_on_b: Vec<Ws> = marks
            .iter()
            .map(|id| signed_in(b.port, 0, &json!({ "id": id }).to_string()))
            .collect();
        let marks_in = |e: &Seen| marks.iter().all(|m| e.contains_key(m));
        read_until(&mut events, &marks_in);
        for u in &users {
            assert_eq!(events[u], ["online", "offline"], "{u}: {events:?}");
        }
        for m in &marks {
            assert_eq!(events[m], ["online"], "{m}");
        }
    });
}
