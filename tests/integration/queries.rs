//! Channel queries and actions over signed HTTP (`GET /channels`,
//! `/channels/{name}`, `/channels/{name}/users`, `terminate_connections`,
//! trigger `info`), and `pusher_internal:subscription_count`.

use crate::support::*;
use serde_json::json;
use std::collections::BTreeSet;

const CHANNELS: &str = "/apps/app-id/channels";

fn channel_path(name: &str) -> String {
    format!("/apps/app-id/channels/{name}")
}

/// Polls a signed GET until it answers `expected` (state that settles
/// asynchronously after a disconnect), within [`WAIT`].
fn eventually_json(port: u16, path: &str, params: &[(&str, &str)], expected: serde_json::Value) {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let v = get_json(port, path, params);
        if v == expected {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "GET {path}: still {v}, expected {expected}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

fn get_error(port: u16, path: &str, params: &[(&str, &str)], status: u16) -> String {
    Http::connect(port)
        .get_signed(&DEV, path, params)
        .expect_error(status)
}

/// Two connections per shard with a mix of channels:
/// - `a` by 3 sockets (both shards), `b` by 1, `private-p` by 1
/// - `presence-x`: user "1" on both shards, user "2" on shard 1 (3 sockets, 2 users)
fn populate(port: u16) -> Vec<Ws> {
    let mut c = connect_spread(port, 2);
    c[0].subscribe("a");
    c[0].subscribe_private("private-p");
    c[1].subscribe("a");
    c[2].subscribe("a");
    c[2].subscribe("b");
    c[1].subscribe_presence("presence-x", r#"{"user_id":"1"}"#);
    c[3].subscribe_presence("presence-x", r#"{"user_id":"1"}"#);
    c[2].subscribe_presence("presence-x", r#"{"user_id":2}"#);
    // User 1's sockets hear about user 2.
    c[1].expect_event("pusher_internal:member_added");
    c[3].expect_event("pusher_internal:member_added");
    // Subscribed and left again: not occupied.
    c[0].subscribe("gone");
    c[0].unsubscribe("gone");
    c[3].subscribe_private("private-gone");
    c[3].unsubscribe("private-gone");
    for ws in c.iter_mut() {
        ws.ping();
    }
    c
}

#[test]
fn channels_lists_occupied_channels_with_prefix_and_totals() {
    let server = Server::start();
    let p = server.port;
    let _conns = populate(p);

    assert_eq!(
        get_json(p, CHANNELS, &[]),
        json!({"channels":{"a":{},"b":{},"private-p":{},"presence-x":{}}})
    );
    assert_eq!(
        get_json(p, CHANNELS, &[("filter_by_prefix", "private-")]),
        json!({"channels":{"private-p":{}}})
    );
    assert_eq!(
        get_json(p, CHANNELS, &[("filter_by_prefix", "nothing-")]),
        json!({"channels":{}})
    );
    assert_eq!(
        get_json(p, CHANNELS, &[("info", "subscription_count")]),
        json!({"channels":{
            "a":{"subscription_count":3},
            "b":{"subscription_count":1},
            "private-p":{"subscription_count":1},
            "presence-x":{"subscription_count":3}
        }})
    );
    // user_count needs filter_by_prefix=presence-.
    for params in [
        vec![("info", "user_count")],
        vec![("info", "user_count,subscription_count")],
        vec![("info", "user_count"), ("filter_by_prefix", "private-")],
        vec![("info", "user_count"), ("filter_by_prefix", "pres")],
    ] {
        let m = get_error(p, CHANNELS, &params, 400);
        assert!(m.contains("presence-"), "{params:?}: {m}");
    }
    assert_eq!(
        get_json(
            p,
            CHANNELS,
            &[("info", "user_count"), ("filter_by_prefix", "presence-")]
        ),
        json!({"channels":{"presence-x":{"user_count":2}}})
    );
    assert_eq!(
        get_json(
            p,
            CHANNELS,
            &[
                ("info", "user_count,subscription_count"),
                ("filter_by_prefix", "presence-")
            ]
        ),
        json!({"channels":{"presence-x":{"user_count":2,"subscription_count":3}}})
    );
    let m = get_error(p, CHANNELS, &[("info", "bogus")], 400);
    assert!(m.contains("bogus"), "{m}");
    // The signature covers the query parameters.
    let mut q = signed_query(&DEV, "GET", CHANNELS, b"", now_secs());
    q.push(("filter_by_prefix".into(), "private-".into()));
    Http::connect(p)
        .request("GET", &target(CHANNELS, &q), b"")
        .expect_error(401);
}

#[test]
fn channels_empty_after_everyone_leaves() {
    let server = Server::start();
    let conns = populate(server.port);
    for mut ws in conns {
        // Others may still send member_removed before the close echo.
        ws.send_close(1000);
        loop {
            let f = ws.recv();
            if f.opcode == OP_CLOSE {
                break;
            }
        }
        ws.expect_eof(WAIT);
    }
    // The server cleans up right after the close handshake; allow it a moment.
    eventually_json(server.port, CHANNELS, &[], json!({"channels":{}}));
    eventually_json(
        server.port,
        &channel_path("presence-x/users"),
        &[],
        json!({"users":[]}),
    );
    assert_eq!(
        get_json(
            server.port,
            &channel_path("a"),
            &[("info", "subscription_count")]
        ),
        json!({"occupied":false,"subscription_count":0})
    );
    assert_eq!(
        get_json(
            server.port,
            &channel_path("presence-x"),
            &[("info", "user_count")]
        ),
        json!({"occupied":false,"user_count":0})
    );
}

#[test]
fn channel_reports_occupied_counts_and_users() {
    let server = Server::start();
    let p = server.port;
    let _conns = populate(p);

    // An empty channel: exactly {"occupied":false}.
    let r = Http::connect(p).get_signed(&DEV, &channel_path("nobody"), &[]);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), r#"{"occupied":false}"#);
    assert_eq!(
        get_json(p, &channel_path("gone"), &[]),
        json!({"occupied":false})
    );

    assert_eq!(
        get_json(p, &channel_path("a"), &[]),
        json!({"occupied":true})
    );
    assert_eq!(
        get_json(p, &channel_path("a"), &[("info", "subscription_count")]),
        json!({"occupied":true,"subscription_count":3})
    );
    assert_eq!(
        get_json(
            p,
            &channel_path("private-p"),
            &[("info", "subscription_count")]
        ),
        json!({"occupied":true,"subscription_count":1})
    );
    assert_eq!(
        get_json(
            p,
            &channel_path("presence-x"),
            &[("info", "user_count,subscription_count")]
        ),
        json!({"occupied":true,"user_count":2,"subscription_count":3})
    );
    assert_eq!(
        get_json(p, &channel_path("presence-x"), &[("info", "user_count")]),
        json!({"occupied":true,"user_count":2})
    );
    // user_count applies to presence channels only.
    for name in ["a", "private-p", "nobody"] {
        let m = get_error(p, &channel_path(name), &[("info", "user_count")], 400);
        assert!(m.contains("presence"), "{m}");
    }
    // cache applies to cache channels only.
    get_error(p, &channel_path("a"), &[("info", "cache")], 400);
    get_error(p, &channel_path("bad%20name"), &[], 400);

    // Users: distinct across shards.
    let users = get_json(p, &channel_path("presence-x/users"), &[]);
    let list = users["users"]
        .as_array()
        .unwrap_or_else(|| panic!("{users}"));
    assert_eq!(users.as_object().unwrap().len(), 1, "{users}");
    let ids: BTreeSet<String> = list.iter().map(|u| u.to_string()).collect();
    assert_eq!(list.len(), 2, "{users}");
    let expected: BTreeSet<String> =
        [r#"{"id":"1"}"#.to_string(), r#"{"id":"2"}"#.to_string()].into();
    assert_eq!(ids, expected, "{users}");
    assert_eq!(
        get_json(p, &channel_path("presence-empty/users"), &[]),
        json!({"users":[]})
    );
    for name in ["a", "private-p", "cache-a"] {
        let m = get_error(p, &channel_path(&format!("{name}/users")), &[], 400);
        assert!(m.contains("presence"), "{m}");
    }
}

#[test]
fn channel_reports_the_cached_event() {
    let server = Server::start();
    let p = server.port;
    // Nothing cached: no `cache` attribute.
    assert_eq!(
        get_json(p, &channel_path("cache-q"), &[("info", "cache")]),
        json!({"occupied":false})
    );
    trigger(
        p,
        &DEV,
        &json!({"name":"e","channel":"cache-q","data":"{\"v\":1}"}),
    );
    let v = get_json(p, &channel_path("cache-q"), &[("info", "cache")]);
    assert_eq!(v["occupied"], false, "{v}");
    assert_eq!(v["cache"]["data"], "{\"v\":1}", "{v}");
    let ttl = v["cache"]["ttl"]
        .as_u64()
        .unwrap_or_else(|| panic!("ttl is a number: {v}"));
    assert!(
        (1795..=1800).contains(&ttl),
        "default cache_ttl is 1800: {v}"
    );
    assert_eq!(v["cache"].as_object().unwrap().len(), 2, "{v}");
    // With a subscriber (on either shard) and other attributes.
    let mut ws = Ws::connect_on(p, 1);
    ws.subscribe("cache-q");
    ws.expect_text(&event_text("e", "cache-q", "{\"v\":1}"));
    let v = get_json(
        p,
        &channel_path("cache-q"),
        &[("info", "subscription_count,cache")],
    );
    assert_eq!(v["occupied"], true, "{v}");
    assert_eq!(v["subscription_count"], 1, "{v}");
    assert_eq!(v["cache"]["data"], "{\"v\":1}", "{v}");
    // Private cache channels too.
    trigger(
        p,
        &DEV,
        &json!({"name":"e","channel":"private-cache-q","data":"p"}),
    );
    let v = get_json(p, &channel_path("private-cache-q"), &[("info", "cache")]);
    assert_eq!(v["cache"]["data"], "p", "{v}");
}

#[test]
fn terminate_connections_closes_every_connection_of_the_user_on_both_shards() {
    let server = Server::start();
    let p = server.port;
    let mut watcher = Ws::connect_on(p, 0);
    watcher.signin(r#"{"id":"w","watchlist":["42"]}"#);
    watcher.subscribe_presence("presence-t", r#"{"user_id":"w"}"#);
    let mut u42 = [
        Ws::connect_on(p, 0),
        Ws::connect_on(p, 1),
        Ws::connect_on(p, 1),
    ];
    for ws in u42.iter_mut() {
        ws.signin(r#"{"id":"42"}"#);
        ws.subscribe("news");
        ws.subscribe_presence("presence-t", r#"{"user_id":"42"}"#);
    }
    // The watcher hears once that 42 is online and once that it joined.
    let mut got = vec![watcher.recv_text(), watcher.recv_text()];
    got.sort();
    let mut expected = vec![
        watchlist_text("online", &["42"]),
        r#"{"event":"pusher_internal:member_added","channel":"presence-t","data":"{\"user_id\":\"42\",\"user_info\":{}}"}"#.to_string(),
    ];
    expected.sort();
    assert_eq!(got, expected);
    // (A second `online` or member_added would come before the watcher's
    // next frames below: 42's owners handle each connection's sign-in and
    // join before its leave.)
    let mut u43 = Ws::connect_on(p, 0);
    u43.signin(r#"{"id":"43"}"#);
    let mut u420 = Ws::connect_on(p, 1);
    u420.signin(r#"{"id":"420"}"#);
    let mut anon = Ws::connect_on(p, 1);
    for ws in [&mut u43, &mut u420, &mut anon] {
        ws.subscribe("news");
    }

    let path = "/apps/app-id/users/42/terminate_connections";
    // Unsigned: refused, nobody closed.
    Http::connect(p)
        .request("POST", path, b"{}")
        .expect_error(401);
    for ws in u42.iter_mut() {
        ws.ping();
    }
    let mut h = Http::connect(p);
    let r = h.post_signed(&DEV, path, "{}");
    r.expect_ok_json();
    for ws in u42.iter_mut() {
        let m = ws.expect_pusher_close(4009);
        assert!(m.contains("42"), "{m}");
        // Complete the close handshake; the server then ends the stream.
        ws.send_raw_lenient(&encode_frame(true, OP_CLOSE, &4009u16.to_be_bytes(), true));
        ws.expect_eof(WAIT);
        // As a browser does after the server's FIN, close our side too: the
        // server releases the connection's state on the TCP end (else only
        // after its close timeout).
        ws.shutdown();
    }
    // User 42 is gone: from the presence channel and from the watchlist.
    let mut got = vec![watcher.recv_text(), watcher.recv_text()];
    got.sort();
    let mut expected = vec![
        watchlist_text("offline", &["42"]),
        r#"{"event":"pusher_internal:member_removed","channel":"presence-t","data":"{\"user_id\":\"42\"}"}"#.to_string(),
    ];
    expected.sort();
    assert_eq!(got, expected);
    // Barriers: a presence user joining (the channel's owner sends its member
    // events after the removal) and 42 signing in again (its owner sends
    // `online` after the `offline`) are the watcher's next frames.
    presence_barrier(p, "presence-t", 0, "bar", &mut [&mut watcher]);
    let mut again = Ws::connect_on(p, 0);
    again.signin(r#"{"id":"42"}"#);
    watcher.expect_text(&watchlist_text("online", &["42"]));
    // The others were not closed: the same HTTP connection's marker is
    // their next frame.
    let end = marker(&mut h, "news", "end");
    for ws in [&mut u43, &mut u420, &mut anon] {
        ws.expect_text(&end);
    }
    // A user with no connections: still 200.
    Http::connect(p)
        .post_signed(
            &DEV,
            "/apps/app-id/users/nobody/terminate_connections",
            "{}",
        )
        .expect_ok_json();
    // Method is POST only.
    Http::connect(p)
        .get_signed(&DEV, path, &[])
        .expect_error(405);
    // The others still get events.
    trigger(
        p,
        &DEV,
        &json!({"name":"e","channel":"news","data":"after"}),
    );
    anon.expect_text(&event_text("e", "news", "after"));
}

#[test]
fn trigger_and_batch_return_the_requested_info() {
    let server = Server::start();
    let p = server.port;
    let mut conns = connect_spread(p, 1);
    for ws in conns.iter_mut() {
        ws.subscribe_presence("presence-x", r#"{"user_id":"1"}"#);
        ws.subscribe("c");
    }
    conns[1].subscribe("d");

    let r = Http::connect(p).trigger(
        &DEV,
        &json!({"name":"e","channel":"presence-x","data":"1","info":"subscription_count,user_count"}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(
        r.json(),
        json!({"channels":{"presence-x":{"user_count":1,"subscription_count":2}}})
    );
    for ws in conns.iter_mut() {
        ws.expect_text(&event_text("e", "presence-x", "1"));
    }

    let r = Http::connect(p).trigger(
        &DEV,
        &json!({"name":"e","channels":["c","d","empty"],"data":"2","info":"subscription_count"}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json(),
        json!({"channels":{"c":{"subscription_count":2},"d":{"subscription_count":1},"empty":{"subscription_count":0}}})
    );
    let r = Http::connect(p).trigger(
        &DEV,
        &json!({"name":"e","channel":"c","data":"3","info":"bogus"}),
    );
    r.expect_error(400);

    let r = Http::connect(p).batch(
        &DEV,
        &json!({"batch":[
            {"name":"e","channel":"presence-x","data":"4","info":"subscription_count,user_count"},
            {"name":"e","channel":"c","data":"5"},
            {"name":"e","channel":"d","data":"6","info":"subscription_count"}
        ]}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json(),
        json!({"batch":[{"user_count":1,"subscription_count":2},{},{"subscription_count":1}]})
    );
    // Without any info, a batch answers {}.
    Http::connect(p)
        .batch(
            &DEV,
            &json!({"batch":[{"name":"e","channel":"c","data":"7"}]}),
        )
        .expect_ok_json();
}

#[test]
fn subscription_count_follows_subscribes_and_unsubscribes_on_both_shards() {
    let server = Server::start_with(&dev_app_with("enable_subscription_count = true"));
    let p = server.port;
    // One channel owned by each shard.
    for owner in [0, 1] {
        let ch = name_owned_by("counted-", owner);
        let mut a = Ws::connect_on(p, 0);
        let mut b = Ws::connect_on(p, 1);
        let mut c = Ws::connect_on(p, 0);

        a.subscribe(&ch);
        a.expect_text(&subscription_count_text(&ch, 1));
        b.subscribe(&ch);
        expect_count_settles(&mut b, &ch, 2);
        a.expect_text(&subscription_count_text(&ch, 2));
        c.subscribe(&ch);
        expect_count_settles(&mut c, &ch, 3);
        for ws in [&mut a, &mut b] {
            ws.expect_text(&subscription_count_text(&ch, 3));
        }
        b.unsubscribe(&ch);
        for ws in [&mut a, &mut c] {
            ws.expect_text(&subscription_count_text(&ch, 2));
        }
        // b left: the owner's answer to b's next subscription (a channel of
        // the same owner, from b's shard, after its unsubscribe) is b's next
        // frame.
        let same_owner = name_owned_by("counted-bar-b-", owner);
        b.subscribe(&same_owner);
        b.expect_text(&subscription_count_text(&same_owner, 1));
        c.close();
        a.expect_text(&subscription_count_text(&ch, 1));
        b.subscribe(&ch);
        a.expect_text(&subscription_count_text(&ch, 2));
        // b may first see the announcement of 1 that was already on its way
        // to b's shard when it subscribed; the count then settles at 2.
        expect_count_settles(&mut b, &ch, 2);
        // Nothing more for ch: the owner had announced 2 before it handles
        // these subscriptions to other channels it owns.
        for (ws, tag) in [(&mut a, "counted-end-a-"), (&mut b, "counted-end-b-")] {
            let same_owner = name_owned_by(tag, owner);
            ws.subscribe(&same_owner);
            ws.expect_text(&subscription_count_text(&same_owner, 1));
        }
    }
}

/// Reads `subscription_count` frames until the expected count arrives: one
/// stale, smaller count that was in flight when the socket subscribed may
/// come first (counts are announced asynchronously from the owner shard).
fn expect_count_settles(ws: &mut Ws, ch: &str, n: u32) {
    let first = ws.recv_text();
    if first == subscription_count_text(ch, n) {
        return;
    }
    let stale = (1..n).any(|k| first == subscription_count_text(ch, k));
    assert!(stale, "expected a subscription_count for {ch}, got {first}");
    ws.expect_text(&subscription_count_text(ch, n));
}

#[test]
fn subscription_count_is_off_unless_enabled() {
    let server = Server::start();
    let mut conns = connect_spread(server.port, 1);
    for ws in conns.iter_mut() {
        ws.subscribe("quiet");
    }
    conns[1].unsubscribe("quiet");
    // Barrier through quiet's owner: a cache channel it owns answers each
    // join (succeeded, cache_miss) after anything it sent before; conns[1]
    // first (its join follows its unsubscribe), then conns[0].
    let owner = shardcast::pusher::owned::owner_of(shardcast::apps::AppIdx(0), "quiet", 2);
    let cache = name_owned_by("cache-quiet-", owner);
    for i in [1, 0] {
        conns[i].subscribe(&cache);
        conns[i].expect_text(&cache_miss_text(&cache));
    }
}

/// `GET /apps/{id}/connections` counts the app's open connections on every
/// shard (and only that app's), follows closes, and is signed like the
/// other endpoints: 401 unsigned or badly signed, 403 for a disabled app,
/// 404 for an unknown one, 405 for another method.
#[test]
fn connections_counts_the_apps_connections_on_every_shard() {
    let apps = format!(
        "{DEV_AND_DISABLED_APPS}\n[[apps]]\nid = \"other-id\"\nkey = \"other-key\"\nsecret = \"other-secret\"\n"
    );
    let server = Server::start_with(&apps);
    let port = server.port;
    const PATH: &str = "/apps/app-id/connections";
    assert_eq!(get_json(port, PATH, &[]), json!({"connections":0}));
    let mut conns = connect_spread(port, 2);
    let other = Ws::connect_key(port, "other-key");
    assert_eq!(get_json(port, PATH, &[]), json!({"connections":4}));
    let other_creds = Creds {
        id: "other-id",
        key: "other-key",
        secret: "other-secret",
    };
    let r = Http::connect(port).get_signed(&other_creds, "/apps/other-id/connections", &[]);
    assert_eq!(r.json(), json!({"connections":1}), "{}", r.text());
    // One connection on each shard closes.
    let s0 = conns.iter().position(|w| w.shard() == 0).unwrap();
    conns.remove(s0);
    let s1 = conns.iter().position(|w| w.shard() == 1).unwrap();
    conns.remove(s1);
    eventually_json(port, PATH, &[], json!({"connections":2}));
    drop(other);
    let mut last = json!(null);
    let gone = wait_until(WAIT, || {
        last = Http::connect(port)
            .get_signed(&other_creds, "/apps/other-id/connections", &[])
            .json();
        last == json!({"connections":0})
    });
    assert!(gone, "other-id still reports {last}");
    assert_eq!(get_json(port, PATH, &[]), json!({"connections":2}));

    // Signing, apps and methods as for every endpoint.
    let m = Http::connect(port)
        .request("GET", PATH, b"")
        .expect_error(401);
    assert!(m.contains("auth"), "{m}");
    let bad = Creds {
        id: "app-id",
        key: "app-key",
        secret: "not-the-secret",
    };
    Http::connect(port)
        .get_signed(&bad, PATH, &[])
        .expect_error(401);
    let off = Creds {
        id: "off-id",
        key: "off-key",
        secret: "off-secret",
    };
    Http::connect(port)
        .get_signed(&off, "/apps/off-id/connections", &[])
        .expect_error(403);
    Http::connect(port)
        .get_signed(&DEV, "/apps/no-such-app/connections", &[])
        .expect_error(404);
    Http::connect(port)
        .post_signed(&DEV, PATH, "{}")
        .expect_error(405);
}
