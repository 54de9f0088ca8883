//! Client events (`client-*`): relayed to the other subscribers of private
//! and presence channels on every shard, never echoed; every refusal is a
//! `pusher:error` 4301 that leaves the connection open.

use crate::support::*;
use serde_json::{json, Value};
use std::time::Duration;

fn app(extra: &str) -> String {
    dev_app_with(&format!("enable_client_messages = true\n{extra}"))
}

/// The next frame is a `pusher:error` 4301 whose message contains every one of `words`.
fn expect_rejected(ws: &mut Ws, words: &[&str]) {
    let m = ws.expect_error(Some(4301));
    for w in words {
        assert!(m.contains(w), "message {m:?} should contain {w:?}");
    }
    // Still open and answering.
    ws.ping();
}

#[test]
fn relayed_to_other_subscribers_on_both_shards_not_echoed() {
    let server = Server::start_with(&app(""));
    let mut subs = connect_spread(server.port, 2);
    for ws in subs.iter_mut() {
        ws.subscribe_private("private-c");
    }
    let mut bystander = Ws::connect(server.port);
    bystander.subscribe_private("private-other");
    for sender in [0usize, 3] {
        let data = json!({"text":"hi","n":sender});
        subs[sender].send_client_event("client-x", "private-c", &data);
        // Not echoed: the sender's next frame is its pong.
        subs[sender].ping();
        let expected = format!(r#"{{"event":"client-x","channel":"private-c","data":{data}}}"#);
        for (i, ws) in subs.iter_mut().enumerate() {
            if i != sender {
                ws.expect_text(&expected);
            }
        }
    }
    // String data stays a string.
    subs[1].send_client_event("client-s", "private-c", &Value::from("plain \"text\""));
    for i in [0usize, 2, 3] {
        subs[i]
            .expect_text(r#"{"event":"client-s","channel":"private-c","data":"plain \"text\""}"#);
    }
    // Barrier: each sender's next client event, on private-c and on the
    // bystander's channel, is every other socket's next frame (a
    // connection's client events reach each subscriber in order).
    for s in [0usize, 3, 1] {
        subs[s].subscribe_private("private-other");
    }
    for s in [0usize, 3, 1] {
        let end = json!({"end": s});
        for ch in ["private-c", "private-other"] {
            subs[s].send_client_event("client-end", ch, &end);
        }
        subs[s].ping();
        for (i, ws) in subs.iter_mut().enumerate() {
            if i != s {
                ws.expect_text(&format!(
                    r#"{{"event":"client-end","channel":"private-c","data":{end}}}"#
                ));
                if [0, 3, 1].contains(&i) {
                    ws.expect_text(&format!(
                        r#"{{"event":"client-end","channel":"private-other","data":{end}}}"#
                    ));
                }
            }
        }
        bystander.expect_text(&format!(
            r#"{{"event":"client-end","channel":"private-other","data":{end}}}"#
        ));
    }
}

#[test]
fn on_presence_channels_the_senders_user_id_is_added() {
    let server = Server::start_with(&app(""));
    let ch = "presence-chat";
    let mut a = Ws::connect_on(server.port, 0);
    let mut b = Ws::connect_on(server.port, 1);
    let mut c = Ws::connect_on(server.port, 1);
    a.subscribe_presence(ch, r#"{"user_id":"7"}"#);
    b.subscribe_presence(ch, r#"{"user_id":8}"#);
    a.expect_event("pusher_internal:member_added");
    c.subscribe_presence(ch, r#"{"user_id":"9"}"#);
    a.expect_event("pusher_internal:member_added");
    b.expect_event("pusher_internal:member_added");

    a.send_client_event("client-typing", ch, &json!({"on":true}));
    a.ping();
    for ws in [&mut b, &mut c] {
        ws.expect_text(r#"{"event":"client-typing","channel":"presence-chat","data":{"on":true},"user_id":"7"}"#);
    }
    // A numeric user_id is sent as a string.
    b.send_client_event("client-typing", ch, &json!({"on":false}));
    b.ping();
    for ws in [&mut a, &mut c] {
        ws.expect_text(r#"{"event":"client-typing","channel":"presence-chat","data":{"on":false},"user_id":"8"}"#);
    }
}

#[test]
fn refused_when_the_app_does_not_enable_client_messages() {
    let server = Server::start();
    let mut subs = connect_spread(server.port, 1);
    for ws in subs.iter_mut() {
        ws.subscribe_private("private-c");
    }
    // Client events are off, so none can be a barrier. What orders a wrong
    // relay (posted from shard 0 to shard 1 while the event is handled): a
    // presence join the sender sends next, to a channel owned by shard 1,
    // which travels the same way and makes the owner tell subs[1] at once.
    let presence = name_owned_by("presence-barrier-", 1);
    subs[1].subscribe_presence(&presence, r#"{"user_id":"peer"}"#);
    let data = json!({"presence_data": 1});
    subs[0].send_client_event("client-x", "private-c", &data);
    expect_rejected(&mut subs[0], &["client-x", "enabled"]);
    subs[0].subscribe_presence(&presence, r#"{"user_id":"sender"}"#);
    let added = subs[1].expect_event("pusher_internal:member_added");
    assert!(added["data"].to_string().contains("sender"), "{added}");
}

#[test]
fn every_refusal_is_4301_and_the_connection_stays() {
    let server = Server::start_with(&app("max_event_name_length = 30\nmax_event_payload_kb = 1"));
    let mut ws = Ws::connect_on(server.port, 0);
    let mut peer = Ws::connect_on(server.port, 1);
    for w in [&mut ws, &mut peer] {
        w.subscribe("public");
        w.subscribe("cache-pub");
        w.expect_text(&cache_miss_text("cache-pub"));
        w.subscribe_private("private-c");
        w.subscribe_private("private-encrypted-c");
    }
    peer.subscribe_private("private-peer-only");
    let small = json!({"a":1});

    // Public channels (also when subscribed).
    ws.send_client_event("client-x", "public", &small);
    expect_rejected(&mut ws, &["client-x", "public", "private"]);
    ws.send_client_event("client-x", "cache-pub", &small);
    expect_rejected(&mut ws, &["client-x", "cache-pub", "private"]);
    // Encrypted channels.
    ws.send_client_event("client-x", "private-encrypted-c", &small);
    expect_rejected(&mut ws, &["client-x", "encrypted"]);
    // Not subscribed (the channel exists on another connection).
    ws.send_client_event("client-x", "private-peer-only", &small);
    expect_rejected(&mut ws, &["client-x", "subscribed", "private-peer-only"]);
    ws.send_client_event("client-x", "private-nobody", &small);
    expect_rejected(&mut ws, &["subscribed", "private-nobody"]);
    // No channel at all.
    ws.send_text(r#"{"event":"client-x","data":{}}"#);
    expect_rejected(&mut ws, &["client-x", "channel"]);
    // Name longer than max_event_name_length (30).
    let name_30 = format!("client-{}", "n".repeat(23));
    let name_31 = format!("client-{}", "n".repeat(24));
    ws.send_client_event(&name_31, "private-c", &small);
    expect_rejected(&mut ws, &[name_31.as_str(), "30"]);
    // Data larger than max_event_payload_kb (1 KB = 1024 bytes of JSON).
    let data_1025 = Value::from("d".repeat(1023)); // "…" is 1025 bytes
    ws.send_client_event("client-x", "private-c", &data_1025);
    expect_rejected(&mut ws, &["client-x", "KB"]);
    // Unsubscribed meanwhile.
    ws.subscribe_private("private-left");
    ws.unsubscribe("private-left");
    ws.send_client_event("client-x", "private-left", &small);
    expect_rejected(&mut ws, &["subscribed", "private-left"]);

    // None of that reached the peer; at the limits exactly, it is relayed.
    let data_1024 = Value::from("d".repeat(1022));
    ws.send_client_event(&name_30, "private-c", &data_1024);
    ws.ping();
    peer.expect_text(&format!(
        r#"{{"event":"{name_30}","channel":"private-c","data":{data_1024}}}"#
    ));
}

/// Sends `n` client events in one write (so they land within one second).
fn burst(ws: &mut Ws, channel: &str, n: usize, tag: &str) {
    let mut bytes = Vec::new();
    for i in 0..n {
        let text =
            json!({"event":"client-burst","channel":channel,"data":{"tag":tag,"i":i}}).to_string();
        bytes.extend(encode_frame(true, OP_TEXT, text.as_bytes(), true));
    }
    ws.send_raw(&bytes);
}

/// Sends one client event (`tag`, i = 0) until the rate limit lets it
/// through: each try is answered by 4301 or relayed; the ping after it tells
/// which. Up to 3 s (a rate window is one second).
fn relay_once_allowed(sender: &mut Ws, channel: &str, tag: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    loop {
        burst(sender, channel, 1, tag);
        sender.send_text(r#"{"event":"pusher:ping","data":{}}"#);
        let v = sender.recv_json();
        if v["event"] == "pusher:pong" {
            return;
        }
        assert_eq!(v["data"]["code"], 4301, "{v}");
        sender.expect_event("pusher:pong");
        assert!(
            std::time::Instant::now() < deadline,
            "still rate-limited after 3 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn burst_text(channel: &str, tag: &str, i: usize) -> String {
    let data = json!({"tag":tag,"i":i});
    format!(r#"{{"event":"client-burst","channel":"{channel}","data":{data}}}"#)
}

#[test]
fn more_than_the_per_second_limit_is_refused() {
    let server = Server::start_with(&app("max_client_events_per_second = 3"));
    let mut sender = Ws::connect_on(server.port, 0);
    let mut peer = Ws::connect_on(server.port, 1);
    sender.subscribe_private("private-r");
    peer.subscribe_private("private-r");

    burst(&mut sender, "private-r", 4, "a");
    // The 4th within the second is refused, the first 3 relayed.
    let m = sender.expect_error(Some(4301));
    assert!(m.contains("per second") && m.contains('3'), "{m}");
    sender.ping();
    for i in 0..3 {
        peer.expect_text(&burst_text("private-r", "a", i));
    }
    // The next second allows events again; its first relayed one is also
    // the barrier: the peer's next frame (the 4th "a" was not relayed).
    relay_once_allowed(&mut sender, "private-r", "b");
    peer.expect_text(&burst_text("private-r", "b", 0));
}

#[test]
fn default_limit_is_10_per_second() {
    let server = Server::start_with(&app(""));
    let mut sender = Ws::connect_on(server.port, 1);
    let mut peer = Ws::connect_on(server.port, 0);
    sender.subscribe_private("private-r");
    peer.subscribe_private("private-r");
    burst(&mut sender, "private-r", 12, "d");
    for _ in 0..2 {
        let m = sender.expect_error(Some(4301));
        assert!(m.contains("per second") && m.contains("10"), "{m}");
    }
    sender.ping();
    for i in 0..10 {
        peer.expect_text(&burst_text("private-r", "d", i));
    }
    // Barrier: the sender's next relayed event (in the next second) is the
    // peer's next frame, so the two refused ones were not relayed.
    relay_once_allowed(&mut sender, "private-r", "e");
    peer.expect_text(&burst_text("private-r", "e", 0));
}
