//! Broadcast across shards, `socket_id` exclusion, several channels,
//! batches, and per-connection ordering.

use crate::support::*;
use serde_json::json;

/// After an event that some sockets must not get, a marker event on the same
/// channel, sent on the same HTTP connection, tells "nothing was delivered"
/// apart from "not delivered yet": deliveries are FIFO per (source shard,
/// subscriber), so a socket's next frame must be the marker.
fn marker(http: &mut Http, channel: &str, tag: &str) -> String {
    http.trigger(&DEV, &json!({"name":"marker","channel":channel,"data":tag}))
        .expect_ok_json();
    event_text("marker", channel, tag)
}

#[test]
fn event_reaches_subscribers_on_both_shards_exactly() {
    let server = Server::start();
    let mut subs = connect_spread(server.port, 3);
    for ws in subs.iter_mut() {
        ws.subscribe("c");
    }
    let mut other = connect_spread(server.port, 1);
    for ws in other.iter_mut() {
        ws.subscribe("unrelated");
    }
    let data = "{\"message\":\"hello \\\"world\\\"\",\"n\":[1,2]}\n\té";
    trigger(
        server.port,
        &DEV,
        &json!({"name":"e","channel":"c","data":data}),
    );
    for ws in subs.iter_mut() {
        ws.expect_text(&event_text("e", "c", data));
    }
    // Object data is sent as its JSON text.
    trigger(
        server.port,
        &DEV,
        &json!({"name":"e","channel":"c","data":{"a":1}}),
    );
    for ws in subs.iter_mut() {
        ws.expect_text(r#"{"event":"e","channel":"c","data":"{\"a\":1}"}"#);
    }
    for ws in other.iter_mut() {
        ws.expect_silence(200);
    }
    for ws in subs.iter_mut() {
        ws.expect_silence(50);
    }
}

#[test]
fn socket_id_excludes_exactly_one_subscriber_on_either_shard() {
    let server = Server::start();
    let mut subs = connect_spread(server.port, 3);
    for ws in subs.iter_mut() {
        ws.subscribe("c");
    }
    let ids: Vec<String> = subs.iter().map(|w| w.socket_id.clone()).collect();
    // Each subscriber is excluded in turn, several times on fresh HTTP
    // connections, so the HTTP request is handled both on the excluded
    // socket's shard and on the other one.
    for round in 0..4 {
        for (i, id) in ids.iter().enumerate() {
            let mut http = Http::connect(server.port);
            let data = format!("ex-{round}-{i}");
            http.trigger(
                &DEV,
                &json!({"name":"e","channel":"c","data":data,"socket_id":id}),
            )
            .expect_ok_json();
            let m = marker(&mut http, "c", &data);
            for (j, ws) in subs.iter_mut().enumerate() {
                if j != i {
                    ws.expect_text(&event_text("e", "c", &data));
                }
                ws.expect_text(&m);
            }
        }
    }
    // The excluded one gets nothing within 300 ms (nothing else is pending).
    let mut http = Http::connect(server.port);
    http.trigger(
        &DEV,
        &json!({"name":"e","channel":"c","data":"last","socket_id":ids[4]}),
    )
    .expect_ok_json();
    for (j, ws) in subs.iter_mut().enumerate() {
        if j != 4 {
            ws.expect_text(&event_text("e", "c", "last"));
        }
    }
    subs[4].expect_silence(300);
    // A well-formed socket id that is nobody's excludes nobody.
    http.trigger(
        &DEV,
        &json!({"name":"e","channel":"c","data":"all","socket_id":"1.1"}),
    )
    .expect_ok_json();
    for ws in subs.iter_mut() {
        ws.expect_text(&event_text("e", "c", "all"));
    }
}

#[test]
fn socket_id_of_a_closed_connection_does_not_exclude_its_slot_successor() {
    let server = Server::start();
    let first = Ws::connect(server.port);
    let old_id = first.socket_id.clone();
    first.close();
    // New connections may reuse the slot, but never the id.
    let mut subs = connect_spread(server.port, 2);
    for ws in subs.iter_mut() {
        assert_ne!(ws.socket_id, old_id);
        ws.subscribe("c");
    }
    trigger(
        server.port,
        &DEV,
        &json!({"name":"e","channel":"c","data":"x","socket_id":old_id}),
    );
    for ws in subs.iter_mut() {
        ws.expect_text(&event_text("e", "c", "x"));
    }
}

#[test]
fn trigger_to_several_channels_with_exclusion() {
    let server = Server::start();
    // On each shard: one on a, one on b, one on both.
    let mut conns = connect_spread(server.port, 3);
    let kinds = ["a", "b", "ab", "a", "b", "ab"];
    for (ws, kind) in conns.iter_mut().zip(kinds) {
        if kind.contains('a') {
            ws.subscribe("a");
        }
        if kind.contains('b') {
            ws.subscribe("b");
        }
    }
    for excluded in [2usize, 5] {
        let mut http = Http::connect(server.port);
        let id = conns[excluded].socket_id.clone();
        let data = format!("multi-{excluded}");
        http.trigger(
            &DEV,
            &json!({"name":"e","channels":["a","b"],"data":data,"socket_id":id}),
        )
        .expect_ok_json();
        http.trigger(
            &DEV,
            &json!({"name":"marker","channels":["a","b"],"data":"m"}),
        )
        .expect_ok_json();
        for (i, (ws, kind)) in conns.iter_mut().zip(kinds).enumerate() {
            if i != excluded {
                for ch in ["a", "b"] {
                    if kind.contains(ch) {
                        ws.expect_text(&event_text("e", ch, &data));
                    }
                }
            }
            for ch in ["a", "b"] {
                if kind.contains(ch) {
                    ws.expect_text(&event_text("marker", ch, "m"));
                }
            }
        }
    }
    for ws in conns.iter_mut() {
        ws.expect_silence(100);
    }
}

#[test]
fn batch_with_per_item_socket_id() {
    let server = Server::start();
    let mut subs = connect_spread(server.port, 2);
    for ws in subs.iter_mut() {
        ws.subscribe("c");
        ws.subscribe("d");
    }
    // subs[0], subs[1] on shard 0; subs[2], subs[3] on shard 1.
    let x = subs[0].socket_id.clone();
    let y = subs[3].socket_id.clone();
    let mut http = Http::connect(server.port);
    http.batch(
        &DEV,
        &json!({"batch":[
            {"name":"e1","channel":"c","data":"1","socket_id":x},
            {"name":"e2","channel":"c","data":"2","socket_id":y},
            {"name":"e3","channel":"d","data":{"three":3}},
        ]}),
    )
    .expect_ok_json();
    let e1 = event_text("e1", "c", "1");
    let e2 = event_text("e2", "c", "2");
    let e3 = event_text("e3", "d", "{\"three\":3}");
    subs[0].expect_text(&e2);
    subs[0].expect_text(&e3);
    subs[3].expect_text(&e1);
    subs[3].expect_text(&e3);
    for i in [1, 2] {
        subs[i].expect_text(&e1);
        subs[i].expect_text(&e2);
        subs[i].expect_text(&e3);
    }
    for ws in subs.iter_mut() {
        ws.expect_silence(100);
    }
}

#[test]
fn events_from_one_http_connection_arrive_in_order_on_both_shards() {
    let server = Server::start();
    let mut subs = connect_spread(server.port, 2);
    for ws in subs.iter_mut() {
        ws.subscribe("order");
    }
    let mut http = Http::connect(server.port);
    for i in 0..50 {
        http.trigger(
            &DEV,
            &json!({"name":"seq","channel":"order","data":i.to_string()}),
        )
        .expect_ok_json();
    }
    for ws in subs.iter_mut() {
        for i in 0..50 {
            ws.expect_text(&event_text("seq", "order", &i.to_string()));
        }
    }
    // Pipelined triggers keep their order as well.
    let mut bytes = Vec::new();
    for i in 50..80 {
        let body = json!({"name":"seq","channel":"order","data":i.to_string()}).to_string();
        bytes.extend(request_bytes(
            "POST",
            &signed_target(&DEV, "/apps/app-id/events", body.as_bytes()),
            body.as_bytes(),
            &[],
        ));
    }
    http.send(&bytes);
    for _ in 50..80 {
        http.read_response().expect_ok_json();
    }
    for ws in subs.iter_mut() {
        for i in 50..80 {
            ws.expect_text(&event_text("seq", "order", &i.to_string()));
        }
        ws.expect_silence(50);
    }
}

#[test]
fn apps_are_isolated() {
    let server = Server::start_with(
        r#"
[[apps]]
id = "app-id"
key = "app-key"
secret = "app-secret"

[[apps]]
id = "two-id"
key = "two-key"
secret = "two-secret"
"#,
    );
    let two = Creds {
        id: "two-id",
        key: "two-key",
        secret: "two-secret",
    };
    let mut one_ws = Ws::connect(server.port);
    let mut two_ws = Ws::connect_key(server.port, "two-key");
    one_ws.subscribe("c");
    two_ws.subscribe("c");
    trigger(
        server.port,
        &two,
        &json!({"name":"e","channel":"c","data":"for two"}),
    );
    two_ws.expect_text(&event_text("e", "c", "for two"));
    trigger(
        server.port,
        &DEV,
        &json!({"name":"e","channel":"c","data":"for one"}),
    );
    one_ws.expect_text(&event_text("e", "c", "for one"));
    two_ws.expect_silence(200);
}

#[test]
fn concurrent_triggers_from_many_connections_all_arrive_in_per_connection_order() {
    let server = Server::start();
    let port = server.port;
    let mut subs = connect_spread(port, 2);
    for ws in subs.iter_mut() {
        ws.subscribe("busy");
    }
    const SENDERS: usize = 6;
    const EACH: usize = 60;
    let senders: Vec<_> = (0..SENDERS)
        .map(|t| {
            std::thread::spawn(move || {
                let mut http = Http::connect(port);
                for i in 0..EACH {
                    http.trigger(
                        &DEV,
                        &json!({"name":"e","channel":"busy","data":format!("{t}:{i}")}),
                    )
                    .expect_ok_json();
                }
            })
        })
        .collect();
    for s in senders {
        s.join().expect("sender");
    }
    for ws in subs.iter_mut() {
        let mut next = [0usize; SENDERS];
        for _ in 0..SENDERS * EACH {
            let v = ws.recv_json();
            assert_eq!(v["event"], "e", "{v}");
            assert_eq!(v["channel"], "busy", "{v}");
            let data = v["data"].as_str().unwrap();
            let (t, i) = data.split_once(':').unwrap();
            let (t, i): (usize, usize) = (t.parse().unwrap(), i.parse().unwrap());
            assert_eq!(
                i, next[t],
                "socket {}: events of sender {t} out of order",
                ws.socket_id
            );
            next[t] += 1;
        }
        assert_eq!(next, [EACH; SENDERS]);
        ws.expect_silence(50);
    }
}
