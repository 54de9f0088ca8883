//! Broadcast across shards, `socket_id` exclusion, several channels,
//! batches, and per-connection ordering.

use crate::support::*;
use serde_json::json;

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
    // A marker on both channels, on one HTTP connection after nothing else
    // from it: the next frame of every socket.
    let mut http = Http::connect(server.port);
    let on_c = marker(&mut http, "c", "end");
    let on_unrelated = marker(&mut http, "unrelated", "end");
    for ws in other.iter_mut() {
        ws.expect_text(&on_unrelated);
    }
    for ws in subs.iter_mut() {
        ws.expect_text(&on_c);
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
    // The excluded one gets nothing: its next frame is the one after.
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
    // The last marker above was each socket's last frame: a new one, on the
    // same kind of fresh connection as the exclusions, is the next.
    let mut http = Http::connect(server.port);
    let ends = [marker(&mut http, "a", "end"), marker(&mut http, "b", "end")];
    for (ws, kind) in conns.iter_mut().zip(kinds) {
        for (ch, end) in ["a", "b"].iter().zip(&ends) {
            if kind.contains(ch) {
                ws.expect_text(end);
            }
        }
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
    // After the batch, on its connection: each socket's next frame.
    let end_c = marker(&mut http, "c", "end");
    let end_d = marker(&mut http, "d", "end");
    for ws in subs.iter_mut() {
        ws.expect_text(&end_c);
        ws.expect_text(&end_d);
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
    }
    let end = marker(&mut http, "order", "end");
    for ws in subs.iter_mut() {
        ws.expect_text(&end);
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
    // App one's event and then app two's marker on one HTTP connection: the
    // marker is two_ws's next frame, so app one's event never reached it.
    let mut http = Http::connect(server.port);
    http.trigger(&DEV, &json!({"name":"e","channel":"c","data":"for one"}))
        .expect_ok_json();
    http.trigger(&two, &json!({"name":"marker","channel":"c","data":"two"}))
        .expect_ok_json();
    one_ws.expect_text(&event_text("e", "c", "for one"));
    two_ws.expect_text(&event_text("marker", "c", "two"));
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
                // Each sender's last event, after all of its others.
                marker(&mut http, "busy", &format!("end-{t}"));
            })
        })
        .collect();
    for s in senders {
        s.join().expect("sender");
    }
    for ws in subs.iter_mut() {
        // Every event of each sender in its order, then that sender's marker
        // (its last publication): an extra event would come before it.
        let mut next = [0usize; SENDERS];
        let mut ended = [false; SENDERS];
        while ended.iter().any(|e| !e) {
            let v = ws.recv_json();
            assert_eq!(v["channel"], "busy", "{v}");
            let data = v["data"].as_str().unwrap();
            if v["event"] == "marker" {
                let t: usize = data.strip_prefix("end-").unwrap().parse().unwrap();
                assert_eq!(
                    next[t], EACH,
                    "socket {}: sender {t}'s marker after {} of its events",
                    ws.socket_id, next[t]
                );
                assert!(
                    !ended[t],
                    "socket {}: two markers of sender {t}",
                    ws.socket_id
                );
                ended[t] = true;
                continue;
            }
            assert_eq!(v["event"], "e", "{v}");
            let (t, i) = data.split_once(':').unwrap();
            let (t, i): (usize, usize) = (t.parse().unwrap(), i.parse().unwrap());
            assert!(
                !ended[t],
                "socket {}: an event of sender {t} after its marker: {v}",
                ws.socket_id
            );
            assert_eq!(
                i, next[t],
                "socket {}: events of sender {t} out of order",
                ws.socket_id
            );
            next[t] += 1;
        }
        assert_eq!(next, [EACH; SENDERS]);
    }
}
