//! Presence channels: the member snapshot, member_added / member_removed per
//! user (not per socket) across shards, and the membership limits.

use crate::support::*;
use serde_json::{json, Value};
use std::collections::BTreeSet;

fn ids_of(presence: &Value) -> BTreeSet<String> {
    presence["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

fn set(ids: &[&str]) -> BTreeSet<String> {
    ids.iter().map(|s| s.to_string()).collect()
}

pub fn member_added_text(channel: &str, user_id: &str, user_info: &str) -> String {
    let data = format!(
        "{{\"user_id\":{},\"user_info\":{user_info}}}",
        serde_json::to_string(user_id).unwrap()
    );
    format!(
        "{{\"event\":\"pusher_internal:member_added\",\"channel\":{},\"data\":{}}}",
        serde_json::to_string(channel).unwrap(),
        serde_json::to_string(&data).unwrap()
    )
}

pub fn member_removed_text(channel: &str, user_id: &str) -> String {
    let data = format!(
        "{{\"user_id\":{}}}",
        serde_json::to_string(user_id).unwrap()
    );
    format!(
        "{{\"event\":\"pusher_internal:member_removed\",\"channel\":{},\"data\":{}}}",
        serde_json::to_string(channel).unwrap(),
        serde_json::to_string(&data).unwrap()
    )
}

fn cd(user_id: &str) -> String {
    json!({"user_id": user_id}).to_string()
}

#[test]
fn snapshot_lists_members_and_member_added_goes_to_the_others_only() {
    let server = Server::start();
    let ch = "presence-room";
    let mut a = Ws::connect_on(server.port, 0);
    let mut b = Ws::connect_on(server.port, 1);
    let mut c = Ws::connect_on(server.port, 0);

    let p = a.subscribe_presence(ch, r#"{"user_id":"1","user_info":{"name":"Ann"}}"#);
    assert_eq!(
        p,
        json!({"ids":["1"],"hash":{"1":{"name":"Ann"}},"count":1})
    );

    // A numeric user_id is stored (and announced) as a string.
    let p = b.subscribe_presence(
        ch,
        r#"{"user_id":2,"user_info":{"name":"Bob","tags":[1,2]}}"#,
    );
    assert_eq!(ids_of(&p), set(&["1", "2"]));
    assert_eq!(p["count"], 2);
    assert_eq!(p["hash"]["1"], json!({"name":"Ann"}));
    assert_eq!(p["hash"]["2"], json!({"name":"Bob","tags":[1,2]}));
    a.expect_text(&member_added_text(
        ch,
        "2",
        r#"{"name":"Bob","tags":[1,2]}"#,
    ));

    let p = c.subscribe_presence(ch, r#"{"user_id":"3"}"#);
    assert_eq!(ids_of(&p), set(&["1", "2", "3"]));
    assert_eq!(p["count"], 3);
    for ws in [&mut a, &mut b] {
        let v = ws.expect_event("pusher_internal:member_added");
        assert_eq!(v["channel"], ch, "{v}");
        let data: Value =
            serde_json::from_str(v["data"].as_str().expect("data is a JSON string")).unwrap();
        assert_eq!(data["user_id"], "3", "{v}");
    }
    // Nobody hears about themselves, and nothing else is pending: the owner
    // answered every join above before a barrier user's, whose member
    // events are everyone's next frames.
    presence_barrier(server.port, ch, 0, "bar", &mut [&mut a, &mut b, &mut c]);
    // HTTP events reach every member on both shards.
    trigger(
        server.port,
        &DEV,
        &json!({"name":"e","channel":ch,"data":"hi"}),
    );
    for ws in [&mut a, &mut b, &mut c] {
        ws.expect_text(&event_text("e", ch, "hi"));
    }
}

/// Observers on both shards, and user "u" joined from shard 0 then shard 1.
struct SameUser {
    observers: Vec<Ws>,
    u0: Ws,
    u1: Ws,
}

fn join_same_user_on_two_shards(port: u16, ch: &str) -> SameUser {
    let mut observers = vec![Ws::connect_on(port, 0), Ws::connect_on(port, 1)];
    let p = observers[0].subscribe_presence(ch, &cd("obs0"));
    assert_eq!(p["count"], 1);
    let p = observers[1].subscribe_presence(ch, &cd("obs1"));
    assert_eq!(p["count"], 2);
    observers[0].expect_text(&member_added_text(ch, "obs1", "{}"));

    let mut u0 = Ws::connect_on(port, 0);
    let mut u1 = Ws::connect_on(port, 1);
    let p = u0.subscribe_presence(ch, r#"{"user_id":"u","user_info":{"v":1}}"#);
    assert_eq!(ids_of(&p), set(&["obs0", "obs1", "u"]));
    assert_eq!(p["count"], 3);
    for o in observers.iter_mut() {
        o.expect_text(&member_added_text(ch, "u", r#"{"v":1}"#));
    }
    // The same user on the other shard: the count does not change, and
    // nobody (observers nor the user's first socket) hears member_added.
    let p = u1.subscribe_presence(ch, r#"{"user_id":"u","user_info":{"v":1}}"#);
    assert_eq!(ids_of(&p), set(&["obs0", "obs1", "u"]));
    assert_eq!(p["count"], 3);
    // The owner answered u1's join before a barrier user's.
    let [o0, o1] = &mut observers[..] else {
        unreachable!()
    };
    presence_barrier(port, ch, 0, "bar-join", &mut [o0, o1, &mut u0, &mut u1]);
    SameUser { observers, u0, u1 }
}

#[test]
fn same_user_on_two_shards_is_one_member_and_leaves_on_last_unsubscribe() {
    let server = Server::start();
    let ch = "presence-same-unsub";
    let SameUser {
        mut observers,
        mut u0,
        mut u1,
    } = join_same_user_on_two_shards(server.port, ch);
    // Same-owner channel for the sockets that leave ch, joined now: the
    // owner's answers come after anything it sent them before.
    let other = presence_with_owner_of(ch, "after");
    u0.unsubscribe(ch);
    u0.ping(); // the unsubscribe was handled (and its leave sent on) before this
    let [o0, o1] = &mut observers[..] else {
        unreachable!()
    };
    presence_barrier(server.port, ch, 0, "bar-unsub", &mut [o0, o1, &mut u1]);
    u1.unsubscribe(ch);
    for o in observers.iter_mut() {
        o.expect_text(&member_removed_text(ch, "u"));
    }
    // The owner had handled u1's leave (it told the observers) before these
    // joins: nothing more of ch for u0 or u1 comes before their answers.
    u0.subscribe_presence(&other, &cd("u0"));
    u1.subscribe_presence(&other, &cd("u1"));
    // Joining again is a new member again.
    let p = u1.subscribe_presence(ch, &cd("u"));
    assert_eq!(p["count"], 3);
    for o in observers.iter_mut() {
        o.expect_text(&member_added_text(ch, "u", "{}"));
    }
}

#[test]
fn same_user_leaves_when_its_last_socket_closes_shard_1_last() {
    let server = Server::start();
    let ch = "presence-same-close-a";
    let SameUser {
        mut observers,
        u0,
        mut u1,
    } = join_same_user_on_two_shards(server.port, ch);
    // After the close handshake and the end of the stream, shard 0 has
    // dropped u0 and sent its leave on; a barrier from shard 0 follows it.
    u0.close();
    let [o0, o1] = &mut observers[..] else {
        unreachable!()
    };
    presence_barrier(server.port, ch, 0, "bar-close", &mut [o0, o1, &mut u1]);
    // The socket on the other shard was the user's last.
    u1.close();
    for o in observers.iter_mut() {
        o.expect_text(&member_removed_text(ch, "u"));
    }
    let mut late = Ws::connect(server.port);
    let p = late.subscribe_presence(ch, &cd("late"));
    assert_eq!(ids_of(&p), set(&["obs0", "obs1", "late"]));
}

#[test]
fn same_user_leaves_when_its_last_socket_closes_shard_0_last() {
    let server = Server::start();
    let ch = "presence-same-close-b";
    let SameUser {
        mut observers,
        mut u0,
        u1,
    } = join_same_user_on_two_shards(server.port, ch);
    // An abrupt close (no close handshake) counts too.
    u1.shutdown();
    drop(u1);
    // Once the channel counts 3 subscribers, shard 1 has dropped u1 and sent
    // its leave on; a barrier from shard 1 follows it.
    let count = || {
        get_json(
            server.port,
            &format!("/apps/app-id/channels/{ch}"),
            &[("info", "subscription_count")],
        )["subscription_count"]
            .as_u64()
    };
    assert!(
        wait_until(WAIT, || count() == Some(3)),
        "u1's abrupt close not seen: count {:?}",
        count()
    );
    let [o0, o1] = &mut observers[..] else {
        unreachable!()
    };
    presence_barrier(server.port, ch, 1, "bar-abrupt", &mut [o0, o1, &mut u0]);
    u0.close();
    for o in observers.iter_mut() {
        o.expect_text(&member_removed_text(ch, "u"));
    }
    // u's removal was sent before the barrier user's join was answered.
    let [o0, o1] = &mut observers[..] else {
        unreachable!()
    };
    presence_barrier(server.port, ch, 0, "bar-gone", &mut [o0, o1]);
}

#[test]
fn a_full_channel_refuses_a_new_user_with_4100_but_not_an_existing_one() {
    let server = Server::start_with(&dev_app_with("max_presence_members = 2"));
    let ch = "presence-small";
    let mut a = Ws::connect_on(server.port, 0);
    let mut b = Ws::connect_on(server.port, 1);
    a.subscribe_presence(ch, &cd("1"));
    let p = b.subscribe_presence(ch, &cd("2"));
    assert_eq!(p["count"], 2);
    a.expect_text(&member_added_text(ch, "2", "{}"));
    // The channel is full, so barriers go through channels of the same
    // owner (one each: at most 2 members there too, with the barrier user).
    let others = [
        presence_with_owner_of(ch, "bar-a"),
        presence_with_owner_of(ch, "bar-b"),
    ];
    a.subscribe_presence(&others[0], &cd("1"));
    b.subscribe_presence(&others[1], &cd("2"));

    for shard in [0, 1] {
        let mut c = Ws::connect_on(server.port, shard);
        let data = cd("3");
        let auth = presence_auth(&c.socket_id, ch, &data);
        c.send_subscribe(ch, Some(&auth), Some(&data));
        let err = c.expect_subscription_error(ch, 4100);
        assert!(
            err["error"].as_str().unwrap().contains('2'),
            "names the limit: {err}"
        );
        c.ping();
        // The refused socket gets nothing from the channel: the same HTTP
        // connection's marker, on a channel c is on, is its next frame.
        c.subscribe("plain");
        let mut h = Http::connect(server.port);
        h.trigger(&DEV, &json!({"name":"e","channel":ch,"data":"x"}))
            .expect_ok_json();
        a.expect_text(&event_text("e", ch, "x"));
        b.expect_text(&event_text("e", ch, "x"));
        c.expect_text(&marker(&mut h, "plain", "after"));
    }
    // Nobody heard about user 3: the owner refused both before it handled
    // a barrier user's join of the same-owner channel.
    presence_barrier(server.port, &others[0], 0, "bar-full", &mut [&mut a]);
    presence_barrier(server.port, &others[1], 0, "bar-full", &mut [&mut b]);

    // Another socket of a present user is not a new member: accepted.
    let mut a2 = Ws::connect_on(server.port, 1);
    let p = a2.subscribe_presence(ch, &cd("1"));
    assert_eq!(ids_of(&p), set(&["1", "2"]));
    assert_eq!(p["count"], 2);

    // Once user 2 leaves, user 3 fits.
    b.close();
    a.expect_text(&member_removed_text(ch, "2"));
    a2.expect_text(&member_removed_text(ch, "2"));
    let mut c = Ws::connect(server.port);
    let p = c.subscribe_presence(ch, &cd("3"));
    assert_eq!(ids_of(&p), set(&["1", "3"]));
}

#[test]
fn default_limit_is_100_members() {
    let server = Server::start();
    let ch = "presence-hundred";
    let mut conns: Vec<Ws> = Vec::new();
    for i in 0..100 {
        let mut ws = Ws::connect(server.port);
        let p = ws.subscribe_presence(ch, &cd(&format!("user-{i}")));
        assert_eq!(p["count"], i + 1);
        conns.push(ws);
    }
    let mut extra = Ws::connect(server.port);
    let data = cd("user-100");
    let auth = presence_auth(&extra.socket_id, ch, &data);
    extra.send_subscribe(ch, Some(&auth), Some(&data));
    extra.expect_subscription_error(ch, 4100);
    extra.ping();
}

#[test]
fn oversized_user_id_or_user_info_is_refused() {
    let server = Server::start();
    let ch = "presence-sizes";
    let mut ws = Ws::connect(server.port);
    let mut watcher = Ws::connect(server.port);
    watcher.subscribe_presence(ch, &cd("watcher"));

    let id_128 = "i".repeat(128);
    let id_129 = "i".repeat(129);
    // `{"n":"..."}` is 8 bytes plus the string.
    let info_1024 = json!({"n": "x".repeat(1016)}).to_string();
    let info_1025 = json!({"n": "x".repeat(1017)}).to_string();
    assert_eq!(info_1024.len(), 1024);

    let refused = [
        (json!({"user_id": id_129}).to_string(), "128"),
        (
            format!(r#"{{"user_id":"big","user_info":{info_1025}}}"#),
            "1024",
        ),
    ];
    for (data, mentions) in refused {
        let auth = presence_auth(&ws.socket_id, ch, &data);
        ws.send_subscribe(ch, Some(&auth), Some(&data));
        let v = ws.expect_event("pusher:subscription_error");
        assert_eq!(v["channel"], ch, "{v}");
        let status = v["data"]["status"]
            .as_u64()
            .unwrap_or_else(|| panic!("status: {v}"));
        assert!((400..5000).contains(&status) && status != 200, "{v}");
        let msg = v["data"]["error"]
            .as_str()
            .unwrap_or_else(|| panic!("error string: {v}"));
        assert!(msg.contains(mentions), "{msg} should mention {mentions}");
        ws.ping();
    }

    // At the limits exactly: accepted, and the watcher's next frame is its
    // member_added, so none of the refused ones was announced.
    let data = json!({"user_id": id_128}).to_string();
    let p = ws.subscribe_presence(ch, &data);
    assert_eq!(p["count"], 2);
    watcher.expect_text(&member_added_text(ch, &id_128, "{}"));
    let mut ws2 = Ws::connect(server.port);
    let data = format!(r#"{{"user_id":"big","user_info":{info_1024}}}"#);
    let p = ws2.subscribe_presence(ch, &data);
    assert_eq!(p["count"], 3);
    assert_eq!(p["hash"]["big"]["n"].as_str().map(str::len), Some(1016));
}

#[test]
fn bad_auth_or_channel_data_is_refused_and_the_connection_stays() {
    let server = Server::start();
    let ch = "presence-auth";
    let mut ws = Ws::connect(server.port);
    let mut member = Ws::connect(server.port);
    member.subscribe_presence(ch, &cd("m"));
    let id = ws.socket_id.clone();
    let data = cd("1");
    let cases: Vec<(Option<String>, Option<String>)> = vec![
        // No auth.
        (None, Some(data.clone())),
        // Garbage.
        (Some("app-key:0000".into()), Some(data.clone())),
        // Signed as a private channel (without channel_data).
        (Some(private_auth(&id, ch)), Some(data.clone())),
        // Signed over other channel_data than sent.
        (Some(presence_auth(&id, ch, &cd("2"))), Some(data.clone())),
        // Signed for another channel.
        (
            Some(presence_auth(&id, "presence-other", &data)),
            Some(data.clone()),
        ),
        // Signed for another socket.
        (
            Some(presence_auth(&member.socket_id, ch, &data)),
            Some(data.clone()),
        ),
    ];
    for (auth, channel_data) in cases {
        ws.send_subscribe(ch, auth.as_deref(), channel_data.as_deref());
        let e = ws.expect_subscription_error(ch, 401);
        assert_eq!(e["type"], "AuthError", "{e}");
        ws.ping();
    }
    // Missing channel_data (auth signed as if it were empty) is refused too.
    ws.send_subscribe(ch, Some(&presence_auth(&id, ch, "")), None);
    let v = ws.expect_event("pusher:subscription_error");
    assert_eq!(v["channel"], ch, "{v}");
    ws.ping();
    // Well signed but unusable channel_data: refused (not a member).
    for bad in [
        "not json",
        "[]",
        "{}",
        r#"{"user_id":true}"#,
        r#"{"user_id":""}"#,
    ] {
        ws.send_subscribe(ch, Some(&presence_auth(&id, ch, bad)), Some(bad));
        let v = ws.expect_event("pusher:subscription_error");
        assert_eq!(v["channel"], ch, "{v}");
        assert!(
            v["data"]["error"]
                .as_str()
                .is_some_and(|m| m.contains("channel_data")),
            "{v}"
        );
        ws.ping();
    }
    // Then a valid one works, and its member_added is the member's next
    // frame: none of the refused ones was announced.
    let p = ws.subscribe_presence(ch, &data);
    assert_eq!(ids_of(&p), set(&["m", "1"]));
    member.expect_text(&member_added_text(ch, "1", "{}"));
}
