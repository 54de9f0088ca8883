//! User authentication: `pusher:signin`, the `#server-to-user-{id}` channel,
//! watchlist online/offline events across shards, and the sign-in deadline.

use crate::support::*;
use serde_json::json;
use std::time::{Duration, Instant};

fn expect_signin_refused(ws: &mut Ws, words: &[&str]) {
    let m = ws.expect_error(Some(4009));
    let lower = m.to_ascii_lowercase();
    for w in words {
        assert!(lower.contains(w), "message {m:?} should contain {w:?}");
    }
    // Not closed: still answering.
    ws.ping();
}

#[test]
fn signin_success_echoes_user_data() {
    let server = Server::start();
    for shard in [0, 1] {
        let mut ws = Ws::connect_on(server.port, shard);
        let user_data = r#"{"id":"42","user_info":{"name":"Zaphod \"Z\""}}"#;
        let auth = user_auth(&ws.socket_id, user_data);
        ws.send_signin(&auth, user_data);
        ws.expect_text(&format!(
            "{{\"event\":\"pusher:signin_success\",\"data\":{{\"user_data\":{}}}}}",
            serde_json::to_string(user_data).unwrap()
        ));
        ws.ping();
    }
}

#[test]
fn refused_signins_are_4009_and_the_connection_stays() {
    let server = Server::start();
    let mut ws = Ws::connect(server.port);
    let other = Ws::connect(server.port);
    let id = ws.socket_id.clone();
    let ud = r#"{"id":"42"}"#;
    let sig = user_auth(&id, ud);
    let hex = sig.split_once(':').unwrap().1.to_string();
    // Bad signatures.
    for auth in [
        "app-key:00".to_string(),
        format!("wrong-key:{hex}"),
        hex.clone(),
        user_auth(&other.socket_id, ud),
        user_auth(&id, r#"{"id":"43"}"#),
        client_auth(&DEV, &format!("{id}:{ud}")),
    ] {
        ws.send_signin(&auth, ud);
        expect_signin_refused(&mut ws, &["signature"]);
    }
    // Missing fields.
    ws.send_json(&json!({"event":"pusher:signin","data":{"user_data":ud}}));
    expect_signin_refused(&mut ws, &["auth"]);
    ws.send_json(&json!({"event":"pusher:signin","data":{"auth":sig}}));
    expect_signin_refused(&mut ws, &["user_data"]);
    // Well signed, but user_data has no usable id.
    for bad in [
        r#"{"name":"x"}"#,
        r#"{"id":""}"#,
        r#"{"id":42}"#,
        "not json",
        "[]",
    ] {
        ws.send_signin(&user_auth(&id, bad), bad);
        expect_signin_refused(&mut ws, &[]);
    }
    // None of that signed the connection in.
    ws.send_subscribe("#server-to-user-42", None, None);
    let v = ws.expect_event("pusher:subscription_error");
    assert_eq!(v["channel"], "#server-to-user-42", "{v}");
    // A correct sign-in still works; a second one is refused.
    ws.signin(ud);
    ws.signin_again_refused(r#"{"id":"43"}"#);
    ws.signin_again_refused(ud);
    ws.subscribe("#server-to-user-42");
    ws.send_subscribe("#server-to-user-43", None, None);
    ws.expect_event("pusher:subscription_error");
    ws.ping();
}

trait SigninAgain {
    fn signin_again_refused(&mut self, user_data: &str);
}

impl SigninAgain for Ws {
    fn signin_again_refused(&mut self, user_data: &str) {
        let auth = user_auth(&self.socket_id, user_data);
        self.send_signin(&auth, user_data);
        expect_signin_refused(self, &["already"]);
    }
}

#[test]
fn server_to_user_channel_is_for_the_signed_in_user_and_reaches_all_their_sockets() {
    let server = Server::start();
    let ch = "#server-to-user-42";
    let mut u42 = [
        Ws::connect_on(server.port, 0),
        Ws::connect_on(server.port, 1),
        Ws::connect_on(server.port, 1),
    ];
    for ws in u42.iter_mut() {
        ws.signin(r#"{"id":"42"}"#);
        // No auth needed once signed in as 42.
        ws.send_subscribe(ch, None, None);
        ws.expect_text(&succeeded_text(ch));
    }
    // Not signed in, or signed in as someone else: refused, connection stays.
    let mut anon = Ws::connect_on(server.port, 0);
    let mut u43 = Ws::connect_on(server.port, 1);
    u43.signin(r#"{"id":"43"}"#);
    for ws in [&mut anon, &mut u43] {
        let auth = private_auth(&ws.socket_id, ch);
        for auth in [None, Some(auth.as_str())] {
            ws.send_subscribe(ch, auth, None);
            let v = ws.expect_event("pusher:subscription_error");
            assert_eq!(v["channel"], ch, "{v}");
            assert_eq!(v["data"]["type"], "AuthError", "{v}");
            let status = v["data"]["status"].as_u64();
            assert!(matches!(status, Some(401) | Some(403)), "{v}");
            ws.ping();
        }
    }
    u43.send_subscribe("#server-to-user-43", None, None);
    u43.expect_text(&succeeded_text("#server-to-user-43"));

    // What sendToUser does: a trigger on #server-to-user-42.
    trigger(
        server.port,
        &DEV,
        &json!({"name":"personal","channel":ch,"data":{"for":"42"}}),
    );
    for ws in u42.iter_mut() {
        ws.expect_text(&event_text("personal", ch, r#"{"for":"42"}"#));
    }
    anon.expect_silence(200);
    u43.expect_silence(50);
}

#[test]
fn watchlist_online_and_offline_across_shards() {
    let server = Server::start();
    let mut a = Ws::connect_on(server.port, 0);
    a.signin(r#"{"id":"A","watchlist":["B"]}"#);
    // B is not online: nothing yet.
    a.expect_silence(200);

    // B signs in on the other shard: A hears `online`.
    let mut b1 = Ws::connect_on(server.port, 1);
    b1.signin(r#"{"id":"B"}"#);
    a.expect_text(&watchlist_text("online", &["B"]));
    // A second connection of B: no new event.
    let mut b2 = Ws::connect_on(server.port, 0);
    b2.signin(r#"{"id":"B"}"#);
    a.expect_silence(300);

    // A watcher signing in while B is online hears `online` right away.
    let mut c = Ws::connect_on(server.port, 1);
    c.signin(r#"{"id":"C","watchlist":["B","nobody"]}"#);
    c.expect_text(&watchlist_text("online", &["B"]));
    c.expect_silence(200);

    // B's first connection closing is not B going offline.
    b1.close();
    a.expect_silence(300);
    c.expect_silence(50);
    // The last one is.
    b2.close();
    a.expect_text(&watchlist_text("offline", &["B"]));
    c.expect_text(&watchlist_text("offline", &["B"]));
    // And back online.
    let mut b3 = Ws::connect_on(server.port, 1);
    b3.signin(r#"{"id":"B"}"#);
    a.expect_text(&watchlist_text("online", &["B"]));
    c.expect_text(&watchlist_text("online", &["B"]));
    // An abrupt close also takes B offline.
    b3.shutdown();
    drop(b3);
    a.expect_text(&watchlist_text("offline", &["B"]));
    c.expect_text(&watchlist_text("offline", &["B"]));
}

#[test]
fn a_watchlist_of_more_than_100_ids_gets_4302_and_keeps_the_first_100() {
    let server = Server::start();
    let mut w = Ws::connect(server.port);
    let ids: Vec<String> = (0..101).map(|i| format!("w{i}")).collect();
    let ud = json!({"id":"watcher","watchlist":ids}).to_string();
    let auth = user_auth(&w.socket_id, &ud);
    w.send_signin(&auth, &ud);
    w.expect_text(&signin_success_text(&ud));
    let m = w.expect_error(Some(4302));
    assert!(m.contains("100"), "{m}");
    w.ping();
    // Exactly 100 is fine.
    let mut w100 = Ws::connect(server.port);
    let ud100 = json!({"id":"w100-watcher","watchlist":ids[..100]}).to_string();
    w100.signin(&ud100);
    w100.expect_silence(200);
    // The 101st id is not watched; the 100th is.
    let mut u = Ws::connect(server.port);
    u.signin(r#"{"id":"w100"}"#);
    w.expect_silence(300);
    let mut u = Ws::connect(server.port);
    u.signin(r#"{"id":"w99"}"#);
    w.expect_text(&watchlist_text("online", &["w99"]));
    w100.expect_text(&watchlist_text("online", &["w99"]));
}

#[test]
fn connections_must_sign_in_within_user_authentication_timeout() {
    let server = Server::start_with(&dev_app_with(
        "enable_user_authentication = true\nuser_authentication_timeout = 1",
    ));
    let start = Instant::now();
    let mut idle = Ws::connect_on(server.port, 0);
    let mut idle1 = Ws::connect_on(server.port, 1);
    let mut public_only = Ws::connect(server.port);
    public_only.subscribe("news");
    let mut signed = Ws::connect_on(server.port, 1);
    signed.signin(r#"{"id":"1"}"#);
    let mut private = Ws::connect_on(server.port, 0);
    private.subscribe_private("private-p");
    let mut presence = Ws::connect(server.port);
    presence.subscribe_presence("presence-p", r#"{"user_id":"p"}"#);
    let mut refused = Ws::connect(server.port);
    refused.send_subscribe("private-q", Some("app-key:bad"), None);
    refused.expect_subscription_error("private-q", 401);

    for ws in [&mut idle, &mut idle1, &mut public_only, &mut refused] {
        let m = ws.expect_pusher_close(4009);
        assert!(!m.is_empty());
        assert!(
            start.elapsed() < Duration::from_millis(3500),
            "closed after {:?}",
            start.elapsed()
        );
    }
    // The others stay (well past the deadline).
    std::thread::sleep(Duration::from_millis(2500).saturating_sub(start.elapsed()));
    for ws in [&mut signed, &mut private, &mut presence] {
        ws.expect_silence(500);
        ws.ping();
    }
}

#[test]
fn without_the_requirement_unsigned_connections_stay() {
    let server = Server::start_with(&dev_app_with("user_authentication_timeout = 1"));
    let mut ws = Ws::connect(server.port);
    ws.expect_silence(2500);
    ws.ping();
}
