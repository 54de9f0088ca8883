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
    anon.subscribe("plain");
    u43.subscribe("plain");

    // What sendToUser does: a trigger on #server-to-user-42. Then a marker
    // on the same HTTP connection: the next frame of anon and u43.
    let mut h = Http::connect(server.port);
    h.trigger(
        &DEV,
        &json!({"name":"personal","channel":ch,"data":{"for":"42"}}),
    )
    .expect_ok_json();
    for ws in u42.iter_mut() {
        ws.expect_text(&event_text("personal", ch, r#"{"for":"42"}"#));
    }
    let end = marker(&mut h, "plain", "end");
    anon.expect_text(&end);
    u43.expect_text(&end);
}

#[test]
fn watchlist_online_and_offline_across_shards() {
    let server = Server::start();
    let mut a = Ws::connect_on(server.port, 0);
    a.signin(r#"{"id":"A","watchlist":["B"]}"#);
    // B is not online: nothing yet. (B's owner tells A of B in order: a
    // wrong event now would come before the `online` below.)

    // B signs in on the other shard: A hears `online`.
    let mut b1 = Ws::connect_on(server.port, 1);
    b1.signin(r#"{"id":"B"}"#);
    a.expect_text(&watchlist_text("online", &["B"]));
    // A second connection of B: no new event.
    let mut b2 = Ws::connect_on(server.port, 0);
    b2.signin(r#"{"id":"B"}"#);
    // (A wrong event for it would come before A's `offline` below: B's owner
    // handles b2's sign-in and b2's leave in order, both from shard 0.)

    // A watcher signing in while B is online hears `online` right away.
    let mut c = Ws::connect_on(server.port, 1);
    c.signin(r#"{"id":"C","watchlist":["B","nobody"]}"#);
    c.expect_text(&watchlist_text("online", &["B"]));

    // B's first connection closing is not B going offline: the next frames
    // of A and C are the `offline` for the last one (b1's leave was sent on
    // when its close finished, before b2's close began).
    b1.close();
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
    // "nobody" on C's watchlist never came online before: when it does, its
    // owner's `online` is C's next frame.
    let mut nobody = Ws::connect(server.port);
    nobody.signin(r#"{"id":"nobody"}"#);
    c.expect_text(&watchlist_text("online", &["nobody"]));
}

#[test]
fn a_watchlist_of_more_than_100_ids_gets_4302_and_keeps_the_first_100() {
    let server = Server::start();
    let mut w = Ws::connect(server.port);
    // The 100th and 101st ids have the same owner shard, so that the 100th's
    // `online` is a barrier for the 101st's (signed in from one shard).
    let mut ids: Vec<String> = (0..99).map(|i| format!("w{i}")).collect();
    ids.extend(
        (0..)
            .map(|i| format!("wl{i}"))
            .filter(|n| shardcast::pusher::owned::owner_of(shardcast::apps::AppIdx(0), n, 2) == 0)
            .take(2),
    );
    let (id_100, id_101) = (ids[99].clone(), ids[100].clone());
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
    // The 101st id is not watched; the 100th is, and its `online` is the
    // next frame of both watchers.
    let mut u = Ws::connect_on(server.port, 0);
    u.signin(&json!({ "id": id_101 }).to_string());
    let mut u = Ws::connect_on(server.port, 0);
    u.signin(&json!({ "id": id_100 }).to_string());
    w.expect_text(&watchlist_text("online", &[&id_100]));
    w100.expect_text(&watchlist_text("online", &[&id_100]));
}

#[test]
fn connections_must_sign_in_within_user_authentication_timeout() {
    let server = Server::start_with(&dev_app_with(
        "enable_user_authentication = true\nuser_authentication_timeout = 1",
    ));
    // The ones that stay connect first, on both shards; the idle ones on
    // each shard last, so their deadlines are the latest of their shard.
    let start = Instant::now();
    let mut signed = Ws::connect_on(server.port, 1);
    signed.signin(r#"{"id":"1"}"#);
    let mut private = Ws::connect_on(server.port, 0);
    private.subscribe_private("private-p");
    let mut presence = Ws::connect_on(server.port, 1);
    presence.subscribe_presence("presence-p", r#"{"user_id":"p"}"#);
    let mut public_only = Ws::connect(server.port);
    public_only.subscribe("news");
    let mut idle = Ws::connect_on(server.port, 0);
    let mut idle1 = Ws::connect_on(server.port, 1);
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
    // The others stay: each shard's sweep that closed its idle connection
    // (the latest deadline there) looked at them too, and would have queued
    // their 4009 before the pong to a ping sent now.
    for ws in [&mut signed, &mut private, &mut presence] {
        ws.ping();
    }
}

#[test]
fn without_the_requirement_unsigned_connections_stay() {
    // A second app that requires sign-in: its connection, opened after ws on
    // ws's shard, is closed by a sweep that also looked at ws (whose deadline,
    // were there one, would be earlier); ws's next frame is then its pong.
    let server = Server::start_with(&format!(
        "{}[[apps]]\nid = \"strict\"\nkey = \"strict-key\"\nsecret = \"strict-secret\"\n\
         enable_user_authentication = true\nuser_authentication_timeout = 1\n",
        dev_app_with("user_authentication_timeout = 1")
    ));
    let mut ws = Ws::connect(server.port);
    let mut strict = (0..400)
        .map(|_| Ws::connect_key(server.port, "strict-key"))
        .find(|s| s.shard() == ws.shard())
        .expect("a strict-app connection on ws's shard");
    strict.expect_pusher_close(4009);
    ws.ping();
}
