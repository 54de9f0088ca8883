//! Connection established, and refused connections with their close codes.

use crate::support::*;
use std::collections::HashSet;

fn is_socket_id(s: &str) -> bool {
    matches!(s.split_once('.'), Some((a, b))
        if !a.is_empty() && !b.is_empty()
            && a.bytes().all(|c| c.is_ascii_digit())
            && b.bytes().all(|c| c.is_ascii_digit()))
}

#[test]
fn first_frame_is_connection_established_with_socket_id_and_activity_timeout() {
    let server = Server::start();
    let mut ws = Ws::upgrade(server.port, &app_path("app-key")).expect("101");
    let f = ws.recv();
    assert_eq!(f.opcode, OP_TEXT);
    let v: serde_json::Value = serde_json::from_slice(&f.payload).unwrap();
    assert_eq!(v["event"], "pusher:connection_established", "{v}");
    // `data` is double-encoded: a string that holds JSON.
    let data = v["data"]
        .as_str()
        .unwrap_or_else(|| panic!("data must be a string: {v}"));
    let data: serde_json::Value = serde_json::from_str(data).unwrap();
    let id = data["socket_id"].as_str().unwrap();
    assert!(
        is_socket_id(id),
        "socket_id {id:?} must match ^\\d+\\.\\d+$"
    );
    assert_eq!(data["activity_timeout"], 120, "{data}");
    // Nothing else is sent unprompted: the next frame answers a ping.
    ws.ping();
    ws.close();
}

#[test]
fn socket_ids_are_unique_and_name_both_shards() {
    let server = Server::start();
    let mut ids = HashSet::new();
    let mut shards = HashSet::new();
    let mut open = Vec::new();
    for _ in 0..40 {
        let ws = Ws::connect(server.port);
        assert!(is_socket_id(&ws.socket_id), "{}", ws.socket_id);
        assert!(
            ids.insert(ws.socket_id.clone()),
            "duplicate socket id {}",
            ws.socket_id
        );
        assert!(shardcast::socket_id::SocketId::parse(&ws.socket_id).is_some());
        shards.insert(ws.shard());
        open.push(ws);
    }
    // Close half and open more: reused slots still get fresh ids.
    for ws in open.drain(..20) {
        ws.close();
    }
    for _ in 0..20 {
        let ws = Ws::connect(server.port);
        assert!(
            ids.insert(ws.socket_id.clone()),
            "reused socket id {}",
            ws.socket_id
        );
        shards.insert(ws.shard());
        open.push(ws);
    }
    assert_eq!(
        shards,
        HashSet::from([0, 1]),
        "connections are spread over both shards"
    );
}

#[test]
fn unknown_app_key_is_refused_with_4001() {
    let server = Server::start();
    let message = expect_refused(server.port, &app_path("no-such-key"), 4001);
    assert!(message.contains("no-such-key"), "{message}");
    // The server is still fine.
    Ws::connect(server.port).close();
}

#[test]
fn protocol_version_refusals() {
    let server = Server::start();
    expect_refused(server.port, "/app/app-key", 4008);
    expect_refused(server.port, "/app/app-key?client=js&version=8.0", 4008);
    expect_refused(server.port, "/app/app-key?protocol=4", 4007);
    expect_refused(server.port, "/app/app-key?protocol=8", 4007);
    expect_refused(server.port, "/app/app-key?protocol=abc", 4006);
    // Unknown key wins over the protocol check.
    expect_refused(server.port, "/app/nope?protocol=abc", 4001);
    Ws::connect(server.port).close();
}

#[test]
fn non_pusher_and_bad_upgrades_get_http_errors() {
    let server = Server::start();
    let e = Ws::upgrade(server.port, "/other?protocol=7")
        .err()
        .expect("no 101 for /other");
    assert_eq!(e.status, 404, "{e:?}");
    assert!(e.body.starts_with("{\"error\":"), "{e:?}");
    // Missing Sec-WebSocket-Key → 400.
    let mut http = Http::connect(server.port);
    http.send(
        b"GET /app/app-key?protocol=7 HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n",
    );
    let r = http.read_response();
    let m = r.expect_error(400);
    assert!(m.contains("Sec-WebSocket-Key"), "{m}");
    // Wrong version → 400.
    let mut http = Http::connect(server.port);
    http.send(
        b"GET /app/app-key?protocol=7 HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n",
    );
    http.read_response().expect_error(400);
}

#[test]
fn disabled_app_is_refused_with_4003() {
    let server = Server::start_with(DEV_AND_DISABLED_APPS);
    let message = expect_refused(server.port, &app_path("off-key"), 4003);
    assert!(message.to_lowercase().contains("disabled"), "{message}");
    Ws::connect(server.port).close();
}

const QUOTA: &str = r#"
[[apps]]
id = "app-id"
key = "app-key"
secret = "app-secret"
max_connections = 2
"#;

#[test]
fn max_connections_is_enforced_across_shards_with_4004() {
    let server = Server::start_with(QUOTA);
    let port = server.port;
    // Hold one admitted connection on each shard, so the count spans shards.
    let mut held: [Option<Ws>; 2] = [None, None];
    for _ in 0..200 {
        if held.iter().all(Option::is_some) {
            break;
        }
        let ws = connect_admitted(port, 4004);
        let s = ws.shard() as usize;
        if held[s].is_none() {
            held[s] = Some(ws);
        } else {
            ws.close();
        }
    }
    let [a, b] = held;
    let (mut a, b) = (
        a.expect("a connection on shard 0"),
        b.expect("a connection on shard 1"),
    );
    // Every further connection, whichever shard accepts it, is over quota.
    for _ in 0..8 {
        let message = expect_refused(port, &app_path("app-key"), 4004);
        assert!(message.to_lowercase().contains("quota"), "{message}");
    }
    a.ping();
    // Closing one frees one slot (on the non-owner shard the release is a message).
    b.close();
    let mut c = connect_admitted(port, 4004);
    c.ping();
    expect_refused(port, &app_path("app-key"), 4004);
    a.ping();
}
