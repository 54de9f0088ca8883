//! Private and private-encrypted channels: `key:HMAC(secret, socket_id:channel)`
//! auth, refusals as `pusher:subscription_error` 401 that keep the connection,
//! ciphertext relayed untouched, and encrypted channels alone per trigger.

use crate::support::*;
use serde_json::json;

#[test]
fn valid_auth_subscribes_on_both_shards_and_receives_events() {
    let server = Server::start();
    let mut subs = connect_spread(server.port, 2);
    for ws in subs.iter_mut() {
        ws.subscribe_private("private-room");
        ws.subscribe_private("private-encrypted-room");
    }
    let mut h = Http::connect(server.port);
    h.trigger(
        &DEV,
        &json!({"name":"e","channel":"private-room","data":"hello"}),
    )
    .expect_ok_json();
    // Then a marker on the encrypted channel, on the same connection: the
    // next frame, so the event went to private-room only and once.
    let end = marker(&mut h, "private-encrypted-room", "end");
    for ws in subs.iter_mut() {
        ws.expect_text(&event_text("e", "private-room", "hello"));
        ws.expect_text(&end);
    }
}

#[test]
fn missing_or_wrong_auth_is_401_and_the_connection_stays() {
    let server = Server::start();
    let mut ws = Ws::connect(server.port);
    let mut other = Ws::connect(server.port);
    for channel in [
        "private-a",
        "private-encrypted-a",
        "private-cache-a",
        "private-encrypted-cache-a",
    ] {
        let id = ws.socket_id.clone();
        let good_sig = private_auth(&id, channel);
        let sig_hex = good_sig.split_once(':').unwrap().1.to_string();
        let wrong_secret = client_auth(
            &Creds {
                id: "app-id",
                key: "app-key",
                secret: "not-the-secret",
            },
            &format!("{id}:{channel}"),
        );
        let bad: Vec<(Option<String>, &str)> = vec![
            (None, "missing"),
            (Some("app-key:abc".into()), "garbage signature"),
            (Some(wrong_secret), "wrong secret"),
            (Some(format!("other-key:{sig_hex}")), "wrong key"),
            (Some(sig_hex.clone()), "no key prefix"),
            (
                Some(private_auth(&other.socket_id, channel)),
                "another socket's auth",
            ),
            (
                Some(private_auth(&id, "private-other")),
                "another channel's auth",
            ),
            (Some(String::new()), "empty"),
        ];
        for (auth, why) in bad {
            ws.send_subscribe(channel, auth.as_deref(), None);
            let data = ws.expect_subscription_error(channel, 401);
            assert_eq!(data["type"], "AuthError", "{why}: {data}");
            let msg = data["error"].as_str().unwrap().to_ascii_lowercase();
            assert!(
                msg.contains("auth") || msg.contains("signature"),
                "{why}: {msg}"
            );
            assert!(msg.contains(channel), "{why}: names the channel: {msg}");
            // The connection stays open and usable.
            ws.ping();
        }
        // The refused channel delivers nothing to this connection.
        let data = "{\"nonce\":\"bm9uY2U=\",\"ciphertext\":\"Y2lwaGVy\"}";
        trigger(
            server.port,
            &DEV,
            &json!({"name":"e","channel":channel,"data":data}),
        );
        ws.ping();
        // After the refusals, the right auth still works.
        ws.send_subscribe(channel, Some(&good_sig), None);
        ws.expect_text(&succeeded_text(channel));
        if channel.contains("cache-") {
            // The event triggered above is cached and delivered now.
            ws.expect_text(&event_text("e", channel, data));
        }
        ws.ping();
    }
    other.ping();
    ws.close();
    other.close();
}

#[test]
fn auth_of_another_socket_is_refused_even_on_the_same_shard() {
    let server = Server::start();
    let conns = connect_spread(server.port, 2);
    let [mut a0, mut b0, mut a1, mut b1]: [Ws; 4] = conns.try_into().ok().unwrap();
    let (id_b0, id_b1, id_a1) = (
        b0.socket_id.clone(),
        b1.socket_id.clone(),
        a1.socket_id.clone(),
    );
    // A signature made for another socket: same shard and across shards.
    for (ws, owner) in [(&mut a0, &id_b0), (&mut a1, &id_b1), (&mut b0, &id_a1)] {
        let stolen = private_auth(owner, "private-x");
        ws.send_subscribe("private-x", Some(&stolen), None);
        ws.expect_subscription_error("private-x", 401);
        ws.ping();
    }
    b1.subscribe_private("private-x");
}

#[test]
fn encrypted_channel_relays_the_data_string_untouched() {
    let server = Server::start();
    let mut subs = connect_spread(server.port, 1);
    for ws in subs.iter_mut() {
        ws.subscribe_private("private-encrypted-secret");
    }
    // What a server SDK sends: a JSON string holding nonce and ciphertext.
    let data = r#"{"nonce":"4p2KSF8bI7Szc1Ygd+cQW61hdAtr7Xl+","ciphertext":"ZVl0+/1A9p8nGpX8Lz2u6EE1s7CFQjvjVLQ=\\u00e9"}"#;
    trigger(
        server.port,
        &DEV,
        &json!({"name":"secret-event","channel":"private-encrypted-secret","data":data}),
    );
    for ws in subs.iter_mut() {
        let text = ws.recv_text();
        assert_eq!(
            text,
            event_text("secret-event", "private-encrypted-secret", data)
        );
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            v["data"].as_str(),
            Some(data),
            "data string relayed byte for byte"
        );
    }
}

#[test]
fn event_to_an_encrypted_channel_together_with_others_is_400() {
    let server = Server::start();
    let mut ws = Ws::connect(server.port);
    ws.subscribe_private("private-encrypted-a");
    ws.subscribe("plain");
    let cases = [
        json!({"name":"e","channels":["private-encrypted-a","plain"],"data":"x"}),
        json!({"name":"e","channels":["plain","private-encrypted-a"],"data":"x"}),
        json!({"name":"e","channels":["private-encrypted-a","private-encrypted-b"],"data":"x"}),
        json!({"name":"e","channels":["private-encrypted-cache-a","private-x"],"data":"x"}),
    ];
    // All on one HTTP connection: its later events are the barrier.
    let mut h = Http::connect(server.port);
    for body in cases {
        let r = h.trigger(&DEV, &body);
        let m = r.expect_error(400);
        assert!(m.contains("encrypted"), "{body}: {m}");
    }
    // Nothing of the refused triggers was delivered: the connection's next
    // event is ws's next frame.
    // One encrypted channel alone, as `channels` of one or `channel`, is fine.
    h.trigger(
        &DEV,
        &json!({"name":"e","channels":["private-encrypted-a"],"data":"one"}),
    )
    .expect_ok_json();
    ws.expect_text(&event_text("e", "private-encrypted-a", "one"));
    h.trigger(
        &DEV,
        &json!({"name":"e","channel":"private-encrypted-a","data":"two"}),
    )
    .expect_ok_json();
    ws.expect_text(&event_text("e", "private-encrypted-a", "two"));
    // Several non-encrypted channels are still fine.
    h.trigger(
        &DEV,
        &json!({"name":"e","channels":["plain","private-x"],"data":"three"}),
    )
    .expect_ok_json();
    ws.expect_text(&event_text("e", "plain", "three"));
    ws.expect_text(&marker(&mut h, "plain", "end"));
}

#[test]
fn unsubscribing_a_private_channel_stops_its_events() {
    let server = Server::start();
    let mut ws = Ws::connect(server.port);
    ws.subscribe_private("private-u");
    ws.subscribe("marker");
    ws.unsubscribe("private-u");
    trigger(
        server.port,
        &DEV,
        &json!({"name":"e","channel":"private-u","data":"x"}),
    );
    trigger(
        server.port,
        &DEV,
        &json!({"name":"m","channel":"marker","data":"m"}),
    );
    ws.expect_text(&event_text("m", "marker", "m"));
    // Resubscribing needs the auth again.
    ws.send_subscribe("private-u", None, None);
    ws.expect_subscription_error("private-u", 401);
    ws.subscribe_private("private-u");
}
