//! Client `pusher:ping`, subscribe / unsubscribe, and malformed or unknown
//! messages.

use crate::support::*;
use serde_json::json;

#[test]
fn pusher_ping_gets_pusher_pong() {
    let server = Server::start();
    let mut ws = Ws::connect(server.port);
    ws.send_text(r#"{"event":"pusher:ping","data":{}}"#);
    let v = ws.expect_event("pusher:pong");
    assert!(v.get("channel").is_none(), "{v}");
    // Ping without data, and repeatedly.
    for _ in 0..3 {
        ws.send_text(r#"{"event":"pusher:ping"}"#);
        ws.expect_event("pusher:pong");
    }
    // A client pong (answer to a server ping) gets no reply.
    ws.send_text(r#"{"event":"pusher:pong","data":{}}"#);
    // Handled in order: the next frame answers the ping sent after it.
    ws.ping();
    ws.close();
}

#[test]
fn subscribe_public_channel_then_unsubscribe_stops_events() {
    let server = Server::start();
    let mut ws = Ws::connect(server.port);
    ws.send_text(r#"{"event":"pusher:subscribe","data":{"channel":"my-channel"}}"#);
    let v = ws.expect_event("pusher_internal:subscription_succeeded");
    assert_eq!(v["channel"], "my-channel", "{v}");
    ws.subscribe("marker");
    // Subscribing twice is answered again and does not double deliveries.
    ws.subscribe("my-channel");

    let mut h = Http::connect(server.port);
    h.trigger(
        &DEV,
        &json!({"name":"e","channel":"my-channel","data":"one"}),
    )
    .expect_ok_json();
    ws.expect_text(&event_text("e", "my-channel", "one"));
    // No second copy: the same connection's marker is the next frame.
    ws.expect_text(&marker(&mut h, "marker", "once"));

    // Unsubscribe has no reply; afterwards the channel's events stop.
    ws.unsubscribe("my-channel");
    ws.ping(); // the unsubscribe was handled before this
               // "two" and then a marker on one HTTP connection (so in that order):
    h.trigger(
        &DEV,
        &json!({"name":"e","channel":"my-channel","data":"two"}),
    )
    .expect_ok_json();
    h.trigger(&DEV, &json!({"name":"m","channel":"marker","data":"after"}))
        .expect_ok_json();
    // The first thing to arrive is the marker: "two" was not delivered.
    ws.expect_text(&event_text("m", "marker", "after"));

    // Unsubscribing a channel that is not subscribed is harmless.
    ws.unsubscribe("never-subscribed");
    ws.unsubscribe("my-channel");
    ws.ping();
    // Resubscribing works.
    ws.subscribe("my-channel");
    trigger(
        server.port,
        &DEV,
        &json!({"name":"e","channel":"my-channel","data":"three"}),
    );
    ws.expect_text(&event_text("e", "my-channel", "three"));
    ws.close();
}

fn expect_subscription_error(ws: &mut Ws, channel: &str) -> serde_json::Value {
    let v = ws.expect_event("pusher:subscription_error");
    assert_eq!(v["channel"], channel, "{v}");
    let data = v["data"]
        .as_object()
        .unwrap_or_else(|| panic!("data is an object: {v}"));
    assert!(data["type"].as_str().is_some_and(|s| !s.is_empty()), "{v}");
    assert!(data["error"].as_str().is_some_and(|s| !s.is_empty()), "{v}");
    assert!(data["status"].as_u64().is_some(), "{v}");
    v
}

#[test]
fn invalid_channel_names_get_subscription_error_and_connection_stays() {
    let server = Server::start();
    let mut ws = Ws::connect(server.port);
    let long = "a".repeat(201);
    for name in ["bad name", long.as_str(), "", "é", "#other"] {
        ws.send_json(&json!({"event":"pusher:subscribe","data":{"channel":name}}));
        let v = expect_subscription_error(&mut ws, name);
        assert_eq!(v["data"]["type"], "InvalidChannel", "{v}");
        assert_eq!(v["data"]["status"], 400, "{v}");
        ws.ping();
    }
    // 200 characters is still fine.
    ws.subscribe(&"a".repeat(200));
    ws.subscribe("a-Z_0=@,.;");
    // The refused subscription did not register: triggering on a valid
    // channel works, and the connection is still usable.
    ws.subscribe("ok");
    trigger(
        server.port,
        &DEV,
        &json!({"name":"e","channel":"ok","data":"x"}),
    );
    ws.expect_text(&event_text("e", "ok", "x"));
    ws.close();
}

#[test]
fn private_presence_and_encrypted_with_a_bad_auth_are_refused_without_closing() {
    let server = Server::start();
    let mut ws = Ws::connect(server.port);
    for name in ["private-x", "presence-x", "private-encrypted-x"] {
        ws.send_json(
            &json!({"event":"pusher:subscribe","data":{"channel":name,"auth":"app-key:abc"}}),
        );
        expect_subscription_error(&mut ws, name);
        ws.ping();
    }
    // Refused subscriptions receive no events.
    ws.subscribe("marker");
    trigger(
        server.port,
        &DEV,
        &json!({"name":"e","channel":"private-x","data":"secret"}),
    );
    trigger(
        server.port,
        &DEV,
        &json!({"name":"m","channel":"marker","data":"m"}),
    );
    ws.expect_text(&event_text("m", "marker", "m"));
    ws.close();
}

#[test]
fn malformed_messages_get_pusher_error_and_connection_stays() {
    let server = Server::start();
    let mut ws = Ws::connect(server.port);
    let cases: &[(&str, &str)] = &[
        ("not json", "JSON"),
        ("{\"event\":", "JSON"),
        ("[1,2]", "object"),
        ("\"pusher:ping\"", "object"),
        ("42", "object"),
        ("{\"data\":{}}", "event"),
        ("{\"event\":5}", "event"),
        ("{\"event\":\"pusher:subscribe\",\"data\":\"x\"}", "data"),
        ("{\"event\":\"pusher:subscribe\",\"data\":{}}", "channel"),
        (
            "{\"event\":\"pusher:subscribe\",\"data\":{\"channel\":[\"a\"]}}",
            "channel",
        ),
        ("{\"event\":\"no-such-event\",\"data\":{}}", "no-such-event"),
        ("{\"event\":\"pusher:nonsense\"}", "pusher:nonsense"),
    ];
    for (text, mentions) in cases {
        ws.send_text(text);
        let message = ws.expect_error(None);
        assert!(
            message.contains(mentions),
            "for {text:?}: message {message:?} should mention {mentions:?}"
        );
        // Still open and answering.
        ws.ping();
    }
    // Deep nesting does not hurt the server.
    let deep = format!(
        "{{\"event\":\"x\",\"data\":{}{}}}",
        "[".repeat(20_000),
        "]".repeat(20_000)
    );
    ws.send_text(&deep);
    ws.expect_error(None);
    ws.ping();
    ws.close();
}

#[test]
fn client_events_are_rejected_with_4301_without_closing() {
    let server = Server::start();
    let mut ws = Ws::connect(server.port);
    ws.send_text(r#"{"event":"client-typing","channel":"private-c","data":{"a":1}}"#);
    let m = ws.expect_error(Some(4301));
    assert!(m.contains("client-typing"), "{m}");
    ws.ping();
    ws.close();
}

#[test]
fn frames_sent_with_the_upgrade_request_are_handled_after_established() {
    let server = Server::start();
    let mut after = encode_frame(true, OP_TEXT, br#"{"event":"pusher:ping","data":{}}"#, true);
    after.extend(encode_frame(
        true,
        OP_TEXT,
        br#"{"event":"pusher:subscribe","data":{"channel":"early"}}"#,
        true,
    ));
    let mut ws = Ws::upgrade_with(server.port, &app_path("app-key"), &after).expect("101");
    ws.read_established();
    ws.expect_event("pusher:pong");
    let v = ws.expect_event("pusher_internal:subscription_succeeded");
    assert_eq!(v["channel"], "early");
    ws.close();
}
