//! The HTTP API over raw HTTP/1.1: signatures, statuses, JSON errors,
//! keep-alive and pipelining.

use crate::support::*;
use serde_json::json;
use std::time::Duration;

const OFF: Creds = Creds {
    id: "off-id",
    key: "off-key",
    secret: "off-secret",
};

const EVENT: &str =
    r#"{"name":"my-event","channel":"my-channel","data":"{\"message\":\"hello\"}"}"#;
const EVENTS: &str = "/apps/app-id/events";

fn post(port: u16, target: &str, body: &str) -> HttpResponse {
    Http::connect(port).request("POST", target, body.as_bytes())
}

fn signed_post(port: u16, body: &str) -> HttpResponse {
    Http::connect(port).post_signed(&DEV, EVENTS, body)
}

#[test]
fn signed_trigger_is_200_with_empty_object() {
    let server = Server::start_with(DEV_AND_DISABLED_APPS);
    let r = signed_post(server.port, EVENT);
    r.expect_ok_json();
    assert_eq!(r.header("content-length"), Some("2"));
    // Several channels, object data, socket_id, and `info` are fine too.
    signed_post(
        server.port,
        r#"{"name":"e","channels":["a","b"],"data":{"x":[1,2]},"socket_id":"123.456"}"#,
    )
    .expect_ok_json();
    // Upper-case hex in the signature and body_md5 is accepted.
    let body = EVENT.as_bytes();
    let mut q = signed_query(&DEV, "POST", EVENTS, body, now_secs());
    for (k, v) in q.iter_mut() {
        if k == "auth_signature" {
            *v = v.to_ascii_uppercase();
        }
    }
    post(server.port, &target(EVENTS, &q), EVENT).expect_ok_json();
}

#[test]
fn bad_request_bodies_are_400_naming_the_problem() {
    let server = Server::start_with(DEV_AND_DISABLED_APPS);
    let cases: &[(&str, &str)] = &[
        ("{\"name\":", "JSON"),
        ("nonsense", "JSON"),
        ("[1]", "object"),
        (r#"{"channel":"c","data":"x"}"#, "name"),
        (r#"{"name":5,"channel":"c","data":"x"}"#, "name"),
        (r#"{"name":"e","data":"x"}"#, "channel"),
        (r#"{"name":"e","channel":"c"}"#, "data"),
        (r#"{"name":"e","channel":"bad name","data":"x"}"#, "channel"),
        (
            r#"{"name":"e","channels":["ok","bad name"],"data":"x"}"#,
            "channel",
        ),
        (r#"{"name":"e","channels":[],"data":"x"}"#, "channels"),
        (
            r#"{"name":"e","channel":"c","data":"x","socket_id":"abc"}"#,
            "socket_id",
        ),
        (
            r#"{"name":"e","channel":"c","data":"x","socket_id":"1.2.3"}"#,
            "socket_id",
        ),
        (
            r#"{"name":"e","channel":"c","data":"x","socket_id":12}"#,
            "socket_id",
        ),
        (
            r#"{"name":"pusher:x","channel":"c","data":"x"}"#,
            "reserved",
        ),
    ];
    for (body, mentions) in cases {
        let m = signed_post(server.port, body).expect_error(400);
        assert!(
            m.contains(mentions),
            "{body}: {m:?} should mention {mentions:?}"
        );
    }
    let long = format!(
        r#"{{"name":"e","channel":"{}","data":"x"}}"#,
        "c".repeat(201)
    );
    signed_post(server.port, &long).expect_error(400);
    // An empty body (signed, so without body_md5) is 400 too.
    let q = signed_query(&DEV, "POST", EVENTS, b"", now_secs());
    let m = post(server.port, &target(EVENTS, &q), "").expect_error(400);
    assert!(m.contains("empty"), "{m}");
}

#[test]
fn authentication_failures_are_401() {
    let server = Server::start_with(DEV_AND_DISABLED_APPS);
    let port = server.port;
    let body = EVENT.as_bytes();
    let now = now_secs();

    // Wrong signature.
    let mut q = signed_query(&DEV, "POST", EVENTS, body, now);
    q.last_mut().unwrap().1 = "0".repeat(64);
    let m = post(port, &target(EVENTS, &q), EVENT).expect_error(401);
    assert!(m.to_lowercase().contains("signature"), "{m}");

    // Signed with the wrong secret.
    let wrong = Creds {
        secret: "not-the-secret",
        ..DEV
    };
    let q = signed_query(&wrong, "POST", EVENTS, body, now);
    post(port, &target(EVENTS, &q), EVENT).expect_error(401);

    // body_md5 of another body (signature recomputed, so only md5 is wrong).
    let mut q = signed_query(&DEV, "POST", EVENTS, body, now);
    for (k, v) in q.iter_mut() {
        if k == "body_md5" {
            *v = shardcast::auth::body_md5(b"something else");
        }
    }
    sign_query(&DEV, "POST", EVENTS, &mut q);
    let m = post(port, &target(EVENTS, &q), EVENT).expect_error(401);
    assert!(m.contains("body_md5"), "{m}");

    // Body changed after signing.
    let q = signed_query(&DEV, "POST", EVENTS, body, now);
    let other = r#"{"name":"my-event","channel":"my-channel","data":"tampered"}"#;
    let m = post(port, &target(EVENTS, &q), other).expect_error(401);
    assert!(m.contains("body_md5"), "{m}");

    // Missing body_md5 on a body.
    let mut q = signed_query(&DEV, "POST", EVENTS, body, now);
    q.retain(|(k, _)| k != "body_md5");
    sign_query(&DEV, "POST", EVENTS, &mut q);
    post(port, &target(EVENTS, &q), EVENT).expect_error(401);

    // Stale and future timestamps (601 s away).
    for ts in [now - 601, now + 601] {
        let q = signed_query(&DEV, "POST", EVENTS, body, ts);
        let m = post(port, &target(EVENTS, &q), EVENT).expect_error(401);
        assert!(m.contains("600"), "{m}");
    }
    // Within the window is fine.
    let q = signed_query(&DEV, "POST", EVENTS, body, now - 500);
    post(port, &target(EVENTS, &q), EVENT).expect_ok_json();

    // Wrong auth_key (signed with the right secret).
    let other_key = Creds {
        key: "other-key",
        ..DEV
    };
    let q = signed_query(&other_key, "POST", EVENTS, body, now);
    let m = post(port, &target(EVENTS, &q), EVENT).expect_error(401);
    assert!(m.contains("auth_key"), "{m}");

    // No auth at all; wrong auth_version.
    post(port, EVENTS, EVENT).expect_error(401);
    let mut q = signed_query(&DEV, "POST", EVENTS, body, now);
    for (k, v) in q.iter_mut() {
        if k == "auth_version" {
            *v = "2.0".into();
        }
    }
    sign_query(&DEV, "POST", EVENTS, &mut q);
    post(port, &target(EVENTS, &q), EVENT).expect_error(401);

    // A signature for another path does not carry over.
    let q = signed_query(&DEV, "POST", "/apps/app-id/batch_events", body, now);
    post(port, &target(EVENTS, &q), EVENT).expect_error(401);
}

#[test]
fn disabled_app_signed_correctly_is_403() {
    let server = Server::start_with(DEV_AND_DISABLED_APPS);
    let mut http = Http::connect(server.port);
    let m = http
        .post_signed(&OFF, "/apps/off-id/events", EVENT)
        .expect_error(403);
    assert!(m.contains("disabled"), "{m}");
    // Signed incorrectly, the signature check comes first (401).
    let q = signed_query(
        &DEV,
        "POST",
        "/apps/off-id/events",
        EVENT.as_bytes(),
        now_secs(),
    );
    post(server.port, &target("/apps/off-id/events", &q), EVENT).expect_error(401);
}

#[test]
fn not_found_and_method_not_allowed() {
    let server = Server::start_with(DEV_AND_DISABLED_APPS);
    let port = server.port;
    // Unknown app (even when signed with its would-be credentials).
    let ghost = Creds { id: "ghost", ..DEV };
    let m = Http::connect(port)
        .post_signed(&ghost, "/apps/ghost/events", EVENT)
        .expect_error(404);
    assert!(m.contains("ghost"), "{m}");
    // Unknown paths.
    for path in [
        "/nope",
        "/apps",
        "/apps/app-id",
        "/apps/app-id/events/x",
        "/apps/app-id/channels/a/b/c",
    ] {
        Http::connect(port)
            .request("GET", path, b"")
            .expect_error(404);
    }
    // POST on a GET-only query route.
    Http::connect(port)
        .post_signed(&DEV, "/apps/app-id/channels", EVENT)
        .expect_error(405);
    // GET on the POST-only routes.
    let q = signed_query(&DEV, "GET", EVENTS, b"", now_secs());
    let m = Http::connect(port)
        .request("GET", &target(EVENTS, &q), b"")
        .expect_error(405);
    assert!(m.contains("POST"), "{m}");
    Http::connect(port)
        .request("PUT", "/apps/app-id/batch_events", b"{}")
        .expect_error(405);
    // POST on the health checks.
    Http::connect(port)
        .request("POST", "/", b"")
        .expect_error(405);
}

#[test]
fn oversized_data_is_413() {
    let server = Server::start_with(DEV_AND_DISABLED_APPS);
    let big = json!({"name":"e","channel":"c","data":"x".repeat(100 * 1024 + 1)}).to_string();
    let m = signed_post(server.port, &big).expect_error(413);
    assert!(m.contains("data"), "{m}");
    // Exactly 100 KiB is accepted.
    let ok = json!({"name":"e","channel":"c","data":"x".repeat(100 * 1024)}).to_string();
    signed_post(server.port, &ok).expect_ok_json();
    // A body over the server's request body cap is refused before it is read.
    let mut http = Http::connect(server.port);
    http.send(
        format!(
            "POST {EVENTS} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
            4 * 1024 * 1024 + 1
        )
        .as_bytes(),
    );
    http.read_response().expect_error(413);
}

#[test]
fn batch_events() {
    let server = Server::start_with(DEV_AND_DISABLED_APPS);
    let path = "/apps/app-id/batch_events";
    let mut http = Http::connect(server.port);
    let batch = json!({"batch":[
        {"name":"a","channel":"c1","data":"1"},
        {"name":"b","channel":"c2","data":{"k":"v"},"socket_id":"1.2"}
    ]});
    http.post_signed(&DEV, path, &batch.to_string())
        .expect_ok_json();
    let ten: Vec<_> = (0..10)
        .map(|i| json!({"name":"e","channel":"c","data":i.to_string()}))
        .collect();
    http.post_signed(&DEV, path, &json!({ "batch": ten }).to_string())
        .expect_ok_json();
    let eleven: Vec<_> = (0..11)
        .map(|i| json!({"name":"e","channel":"c","data":i.to_string()}))
        .collect();
    let m = http
        .post_signed(&DEV, path, &json!({ "batch": eleven }).to_string())
        .expect_error(400);
    assert!(m.contains("10"), "{m}");
    for (body, mentions) in [
        (json!({}), "batch"),
        (json!({"batch": []}), "batch"),
        (json!({"batch": "x"}), "batch"),
        (
            json!({"batch":[{"name":"a","data":"1"}]}),
            "batch[0].channel",
        ),
        (
            json!({"batch":[{"name":"a","channel":"c","data":"1"},{"channel":"c","data":"1"}]}),
            "batch[1].name",
        ),
        (
            json!({"batch":[{"name":"a","channels":["c"],"data":"1"}]}),
            "channels",
        ),
    ] {
        let m = http
            .post_signed(&DEV, path, &body.to_string())
            .expect_error(400);
        assert!(m.contains(mentions), "{body}: {m:?}");
    }
}

#[test]
fn health_checks() {
    let server = Server::start();
    let mut http = Http::connect(server.port);
    for path in ["/", "/ready"] {
        let r = http.request("GET", path, b"");
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        assert_eq!(r.text(), "OK");
        assert!(r
            .header("content-type")
            .is_some_and(|t| t.starts_with("text/plain")));
    }
    // HEAD has the headers but no body.
    http.send(b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n");
    let deadline = std::time::Instant::now() + WAIT;
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        assert!(std::time::Instant::now() < deadline, "no HEAD response");
        let mut b = [0u8; 1];
        std::io::Read::read_exact(&mut http.stream, &mut b).unwrap();
        head.push(b[0]);
    }
    let head = String::from_utf8(head).unwrap();
    assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
    // Still usable after HEAD: nothing but the head was written.
    let r = http.request("GET", "/ready", b"");
    assert_eq!(r.status, 200);
}

#[test]
fn keep_alive_serves_several_requests_on_one_connection() {
    let server = Server::start();
    let mut http = Http::connect(server.port);
    http.post_signed(&DEV, EVENTS, EVENT).expect_ok_json();
    http.post_signed(&DEV, EVENTS, EVENT).expect_ok_json();
    // An error does not end a keep-alive connection.
    http.post_signed(&DEV, EVENTS, "{bad").expect_error(400);
    http.request("GET", "/nope", b"").expect_error(404);
    let r = http.request("GET", "/", b"");
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("connection"),
        None,
        "keep-alive responses have no Connection: close"
    );
    // `Connection: close` is honoured.
    http.send(&request_bytes("GET", "/", b"", &["Connection: close"]));
    let r = http.read_response();
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("connection")
            .map(str::to_ascii_lowercase)
            .as_deref(),
        Some("close")
    );
    assert!(
        http.closed_within(WAIT),
        "server closes after Connection: close"
    );
}

#[test]
fn http_1_0_closes_unless_keep_alive() {
    let server = Server::start();
    let mut http = Http::connect(server.port);
    http.send(b"GET / HTTP/1.0\r\n\r\n");
    let r = http.read_response();
    assert_eq!(r.status, 200);
    assert!(http.closed_within(WAIT));
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let server = Server::start();
    let mut http = Http::connect(server.port);
    let mut bytes = Vec::new();
    let ok = EVENT.as_bytes();
    bytes.extend(request_bytes(
        "POST",
        &signed_target(&DEV, EVENTS, ok),
        ok,
        &[],
    ));
    bytes.extend(request_bytes("GET", "/nowhere", b"", &[]));
    let bad = b"{\"name\":\"e\"}";
    bytes.extend(request_bytes(
        "POST",
        &signed_target(&DEV, EVENTS, bad),
        bad,
        &[],
    ));
    bytes.extend(request_bytes("GET", "/ready", b"", &[]));
    http.send(&bytes);
    http.read_response().expect_ok_json();
    http.read_response().expect_error(404);
    let m = http.read_response().expect_error(400);
    assert!(m.contains("channel") || m.contains("data"), "{m}");
    let r = http.read_response();
    assert_eq!((r.status, r.text().as_str()), (200, "OK"));
    // And the connection is still open for more.
    http.post_signed(&DEV, EVENTS, EVENT).expect_ok_json();
}

#[test]
fn request_split_over_many_writes_is_read() {
    let server = Server::start();
    let mut http = Http::connect(server.port);
    let bytes = request_bytes(
        "POST",
        &signed_target(&DEV, EVENTS, EVENT.as_bytes()),
        EVENT.as_bytes(),
        &[],
    );
    for chunk in bytes.chunks(17) {
        http.send(chunk);
        std::thread::sleep(Duration::from_millis(2));
    }
    http.read_response().expect_ok_json();
}

#[test]
fn malformed_http_gets_400_and_close() {
    let server = Server::start();
    let mut http = Http::connect(server.port);
    http.send(b"\x01\x02 garbage\r\n\r\n");
    http.read_response().expect_error(400);
    assert!(http.closed_within(WAIT));
    // Chunked bodies are refused.
    let mut http = Http::connect(server.port);
    http.send(
        format!("POST {EVENTS} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
            .as_bytes(),
    );
    let m = http.read_response().expect_error(400);
    assert!(m.contains("chunked"), "{m}");
    assert!(http.closed_within(WAIT));
    // Invalid Content-Length.
    let mut http = Http::connect(server.port);
    http.send(
        format!("POST {EVENTS} HTTP/1.1\r\nHost: x\r\nContent-Length: ten\r\n\r\n").as_bytes(),
    );
    http.read_response().expect_error(400);
}

#[test]
fn limits_from_config_apply() {
    let server = Server::start_with(
        r#"
[server.limits]
max_request_body_kb = 8

[[apps]]
id = "app-id"
key = "app-key"
secret = "app-secret"
max_event_payload_kb = 1
"#,
    );
    let ok = json!({"name":"e","channel":"c","data":"x".repeat(1024)}).to_string();
    signed_post(server.port, &ok).expect_ok_json();
    let big = json!({"name":"e","channel":"c","data":"x".repeat(1025)}).to_string();
    signed_post(server.port, &big).expect_error(413);
    let huge = json!({"name":"e","channel":"c","data":"x".repeat(9 * 1024)}).to_string();
    let m = signed_post(server.port, &huge).expect_error(413);
    assert!(m.contains("8 KiB"), "{m}");
}
