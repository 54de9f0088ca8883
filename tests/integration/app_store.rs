//! Apps changed while the server runs (issue 15), through the file store:
//! the config file rewritten and SIGHUP sent. Every change is observed on
//! connections held on both shards, within 1 s of the signal, by polling
//! for the condition.

use crate::store_support::*;
use crate::support::*;
use serde_json::json;
use std::time::{Duration, Instant};

/// How soon a change must be visible everywhere.
const BOUND: Duration = Duration::from_secs(1);

const A: Creds = Creds {
    id: "app-id",
    key: "app-key",
    secret: "app-secret",
};
const A_ROTATED: Creds = Creds {
    secret: "rotated-secret",
    ..A
};
const B: Creds = Creds {
    id: "b",
    key: "key-b",
    secret: "secret-b",
};
const C: Creds = Creds {
    id: "c",
    key: "key-c",
    secret: "secret-c",
};

/// A config file with these apps, each with its extra lines.
fn apps_toml(apps: &[(Creds, &str)]) -> String {
    apps.iter()
        .map(|(c, extra)| {
            format!(
                "[[apps]]\nid = \"{}\"\nkey = \"{}\"\nsecret = \"{}\"\n{extra}\n",
                c.id, c.key, c.secret
            )
        })
        .collect()
}

#[test]
fn sighup_adds_rotates_disables_and_deletes_apps_on_every_shard() {
    let server = Server::start_with(&apps_toml(&[(A, ""), (B, "")]));
    let port = server.port;
    let mut a_conns = one_per_shard(port, A.key);
    for ws in &mut a_conns {
        ws.subscribe("room");
    }
    let mut b_conns = one_per_shard(port, B.key);

    // A's secret rotated, B disabled, C added.
    server.rewrite_config(&apps_toml(&[
        (A_ROTATED, ""),
        (B, "enabled = false"),
        (C, ""),
    ]));
    let t0 = Instant::now();
    server.send_sighup();
    within(t0, BOUND, "the rotated secret is accepted", || {
        trigger_status(port, &A_ROTATED, "room", "rotated") == 200
    });
    assert_eq!(
        trigger_status(port, &A, "room", "old"),
        401,
        "the old secret is refused"
    );
    for ws in &mut a_conns {
        assert_eq!(
            ws.expect_event("e")["data"],
            "rotated",
            "A's connections stay open and get the event signed with the new secret"
        );
    }
    for ws in &mut b_conns {
        let message = ws.expect_pusher_close(4003);
        assert!(t0.elapsed() < BOUND, "4003 after {:?}", t0.elapsed());
        assert!(message.contains("disabled"), "{message}");
        // The close handshake completes and the server ends the stream.
        ws.send_raw_lenient(&encode_frame(true, OP_CLOSE, &4003u16.to_be_bytes(), true));
        ws.expect_eof(WAIT);
    }
    let mut http = Http::connect(port);
    let refused = http.trigger(&B, &json!({"name": "e", "channel": "x", "data": "{}"}));
    assert!(refused.expect_error(403).contains("disabled"));
    expect_refused(port, &app_path(B.key), 4003);
    let mut c_conns = one_per_shard(port, C.key);
    for ws in &mut c_conns {
        ws.subscribe("room");
    }
    assert_eq!(trigger_status(port, &C, "room", "for c"), 200);
    for ws in &mut c_conns {
        assert_eq!(ws.expect_event("e")["data"], "for c");
    }

    // C deleted.
    server.rewrite_config(&apps_toml(&[(A_ROTATED, ""), (B, "enabled = false")]));
    let t1 = Instant::now();
    server.send_sighup();
    for ws in &mut c_conns {
        ws.expect_pusher_close(4003);
        assert!(t1.elapsed() < BOUND, "4003 after {:?}", t1.elapsed());
    }
    let mut http = Http::connect(port);
    let gone = http.trigger(&C, &json!({"name": "e", "channel": "x", "data": "{}"}));
    assert!(gone.expect_error(404).contains("unknown app"));
    expect_refused(port, &app_path(C.key), 4001);
    // A is untouched by C's deletion: its connections still get events.
    assert_eq!(trigger_status(port, &A_ROTATED, "room", "still"), 200);
    for ws in &mut a_conns {
        assert_eq!(ws.expect_event("e")["data"], "still");
    }
    server.wait_for_log("SIGHUP: apps reloaded", 2, WAIT);
    let log = server.log_text();
    assert!(
        log.contains("added [c], changed [app-id, b], deleted []")
            && log.contains("added [], changed [], deleted [c]"),
        "{log}"
    );
    assert!(!log.contains("rotated-secret"), "no secret in the log");
}

/// Connects to app A; `Err(code)` when refused.
fn try_connect(port: u16) -> Result<Ws, u64> {
    let mut ws = Ws::upgrade(port, &app_path(A.key)).expect("101");
    let v = ws.recv_json();
    if v["event"] == "pusher:connection_established" {
        return Ok(ws);
    }
    assert_eq!(v["event"], "pusher:error", "{v}");
    Err(v["data"]["code"].as_u64().unwrap())
}

#[test]
fn a_lowered_connection_limit_applies_to_new_connections_only() {
    // A high limit first, so each shard holds a spare lease of it
    // (`admission::quota`): the change must take those back too.
    let server = Server::start_with(&apps_toml(&[(A, "max_connections = 100")]));
    let port = server.port;
    let mut open: Vec<Ws> = (0..3).map(|_| connect_admitted(port, 4004)).collect();
    server.rewrite_config(&apps_toml(&[(A, "max_connections = 2")]));
    let t0 = Instant::now();
    server.send_sighup();
    // Until the change lands more connections may still be admitted (limit
    // 100); once it has, new ones are refused with 4004 on every shard.
    within(
        t0,
        BOUND,
        "the lowered limit refuses a new connection",
        || match try_connect(port) {
            Ok(ws) => {
                open.push(ws);
                false
            }
            Err(code) => {
                assert_eq!(code, 4004);
                true
            }
        },
    );
    for _ in 0..12 {
        assert_eq!(
            try_connect(port).err(),
            Some(4004),
            "still over the new limit"
        );
    }
    // The connections admitted before stay open (each answers a ping).
    for ws in &mut open {
        ws.ping();
    }
    // Below the new limit again: one more fits, and then no more.
    while open.len() > 1 {
        open.pop().unwrap().close();
    }
    open.push(connect_admitted(port, 4004));
    assert_eq!(try_connect(port).err(), Some(4004), "two is the limit now");
    // The limit removed: more connections are admitted.
    server.rewrite_config(&apps_toml(&[(A, "")]));
    let t1 = Instant::now();
    server.send_sighup();
    within(
        t1,
        BOUND,
        "the removed limit admits a new connection",
        || match try_connect(port) {
            Ok(ws) => {
                open.push(ws);
                true
            }
            Err(_) => false,
        },
    );
}

#[test]
fn a_file_that_does_not_validate_is_refused_and_the_apps_stay() {
    let server = Server::start_with(&apps_toml(&[(A, ""), (B, "")]));
    let port = server.port;
    let mut ws = Ws::connect_key(port, B.key);
    ws.subscribe("room");
    server.rewrite_config("[[apps]]\nid = \"app-id\"\nkey = ");
    server.send_sighup();
    server.wait_for_log("refused, apps unchanged", 1, WAIT);
    // A duplicate key: the start-up validation, naming the field.
    server.rewrite_config(&apps_toml(&[(A, ""), (Creds { key: A.key, ..B }, "")]));
    server.send_sighup();
    server.wait_for_log("refused, apps unchanged", 2, WAIT);
    let log = server.log_text();
    assert!(
        log.contains("apps[1].key"),
        "the refusal names the field: {log}"
    );
    assert!(
        log.contains("TOML") || log.contains("expected"),
        "the parse error is given: {log}"
    );
    // Nothing changed: B's connection stays, both apps are served with
    // their old credentials.
    assert_eq!(trigger_status(port, &B, "room", "kept"), 200);
    assert_eq!(ws.expect_event("e")["data"], "kept");
    assert_eq!(trigger_status(port, &A, "room", "a"), 200);
}

#[test]
fn webhooks_follow_a_changed_url_and_a_rotated_secret() {
    let receiver = crate::receiver::Receiver::start();
    let hook = |path: &str| {
        format!(
            "[[apps.webhooks]]\nurl = \"{}\"\nevent_types = [\"channel_occupied\"]\n",
            receiver.url(path)
        )
    };
    let batch = "[server.webhooks]\nbatch_window_ms = 10\n";
    let server = Server::start_with(&format!("{batch}{}", apps_toml(&[(A, &hook("/before"))])));
    let mut ws = Ws::connect_key(server.port, A.key);
    ws.subscribe("w-before");
    let first = &receiver.wait_events(1, WAIT)[0];
    assert_eq!(first["channel"], "w-before");
    let d = receiver.deliveries();
    assert_eq!(d[0].path, "/before");
    d[0].assert_signed(A.key, A.secret);

    server.rewrite_config(&format!(
        "{batch}{}",
        apps_toml(&[(A_ROTATED, &hook("/after"))])
    ));
    let t0 = Instant::now();
    server.send_sighup();
    within(t0, BOUND, "the rotated secret", || {
        trigger_status(server.port, &A_ROTATED, "x", "1") == 200
    });
    ws.subscribe("w-after");
    let events = receiver.wait_events(2, WAIT);
    assert_eq!(events[1]["channel"], "w-after");
    let d = receiver.deliveries();
    let last = d.last().unwrap();
    assert_eq!(last.path, "/after", "the changed URL");
    last.assert_signed(A_ROTATED.key, A_ROTATED.secret);
}
