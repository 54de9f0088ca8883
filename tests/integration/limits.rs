//! Limits under abuse: node-wide connections (4100), the per-app API rate
//! (429), unfinished request heads (503) and the head time limit (408).
//! Each refusal has the documented code, and everyone else is still served.

use crate::support::*;
use serde_json::json;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

#[test]
fn node_connections_are_refused_exactly_at_the_limit() {
    let server = Server::start_with("[server.limits]\nmax_connections = 3\n");
    // Hold the three admitted connections on both shards, so the limit is
    // the node's and not one shard's: keep a connection while a spread is
    // still possible, close it (freeing its slot) when it would fill the
    // third slot on the shard that already has two.
    let mut open: Vec<Ws> = Vec::new();
    for _ in 0..200 {
        if open.len() == 3 {
            break;
        }
        let ws = connect_admitted(server.port, 4100);
        let new_shard = open.iter().all(|w| w.shard() != ws.shard());
        if open.len() < 2 || new_shard || open[0].shard() != open[1].shard() {
            open.push(ws);
        } else {
            ws.close();
        }
    }
    let shards: std::collections::HashSet<u64> = open.iter().map(|w| w.shard()).collect();
    assert_eq!(
        (open.len(), shards),
        (3, std::collections::HashSet::from([0, 1])),
        "three connections held, on both shards"
    );
    // Whichever shard accepts it, the fourth is refused.
    for _ in 0..6 {
        let message = expect_refused(server.port, &app_path("app-key"), 4100);
        assert!(message.contains("capacity"), "{message}");
    }
    for ws in open.iter_mut() {
        ws.ping();
    }
    // A slot freed anywhere is usable again.
    open.pop().unwrap().close();
    let deadline = Instant::now() + WAIT;
    let mut again = loop {
        let mut ws = Ws::upgrade(server.port, &app_path("app-key")).expect("101");
        let v = ws.recv_json();
        if v["event"] == "pusher:connection_established" {
            break ws;
        }
        assert!(
            Instant::now() < deadline,
            "the freed slot was not reusable: {v}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    again.subscribe("after-refusals");
    assert!(
        server.log_text().contains("max_connections 3"),
        "the refusal is logged"
    );
}

#[test]
fn api_rate_limit_answers_429_and_other_apps_are_served() {
    let server = Server::start_with(
        r#"
[[apps]]
id = "limited"
key = "limited-key"
secret = "limited-secret"
max_api_requests_per_second = 5

[[apps]]
id = "free"
key = "free-key"
secret = "free-secret"
"#,
    );
    let limited = Creds {
        id: "limited",
        key: "limited-key",
        secret: "limited-secret",
    };
    let free = Creds {
        id: "free",
        key: "free-key",
        secret: "free-secret",
    };
    let event = json!({"name":"e","channel":"c","data":"{}"});
    let (mut ok, mut refused) = (0, 0);
    for _ in 0..20 {
        // Fresh connections, so both shards take requests.
        let r = Http::connect(server.port).trigger(&limited, &event);
        match r.status {
            200 => ok += 1,
            429 => {
                let message = r.expect_error(429);
                assert!(message.contains("5 API requests per second"), "{message}");
                refused += 1;
            }
            s => panic!("unexpected status {s}: {}", r.text()),
        }
        Http::connect(server.port)
            .trigger(&free, &event)
            .expect_ok_json();
    }
    assert!(refused >= 5, "ok {ok}, refused {refused}");
    assert!(
        (5..=10).contains(&ok),
        "at most 5 per second (the burst may span two seconds): ok {ok}"
    );
    // Allowed again in the next second: wait for it (429 meanwhile).
    let mut last = 0;
    let again = wait_until(Duration::from_secs(3), || {
        let r = Http::connect(server.port).trigger(&limited, &event);
        last = r.status;
        assert!(matches!(r.status, 200 | 429), "{}", r.text());
        r.status == 200
    });
    assert!(again, "still refused after 3 s (last status {last})");
}

#[test]
fn unfinished_request_heads_over_the_limit_get_503() {
    let server = Server::start_with("[server.limits]\nmax_pending_heads = 4\n");
    let mut ws = Ws::connect(server.port);
    ws.subscribe("still-served");
    // Slowloris: many connections that never finish their head.
    let mut held: Vec<TcpStream> = (0..16)
        .map(|_| {
            let mut s = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
            // Past the cap the server answers 503 and closes at once, so a
            // write may find the connection gone (EPIPE): that is expected.
            let _ = s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n");
            s
        })
        .collect();
    // Two a shard hold the cap; the other twelve are refused as the server
    // accepts them. Their endings are the barrier: after them both shards
    // are full, whichever way the kernel spread the sixteen.
    wait_for_refusals(&mut held, 12);
    for _ in 0..4 {
        let r = Http::connect(server.port).request("GET", "/", b"");
        let message = r.expect_error(503);
        assert!(message.contains("still sending"), "{message}");
    }
    // Open WebSockets are not affected.
    ws.ping();
    drop(held);
    let deadline = Instant::now() + WAIT;
    loop {
        let r = Http::connect(server.port).request("GET", "/", b"");
        if r.status == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still refused after the slow clients left: {}",
            r.text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    trigger(
        server.port,
        &DEV,
        &json!({"name":"e","channel":"still-served","data":"1"}),
    );
    ws.expect_event("e");
}

#[test]
fn a_head_that_takes_too_long_gets_408() {
    let server = Server::start_with("[server.limits]\nhead_timeout_secs = 1\n");
    let start = Instant::now();
    let mut slow = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").unwrap();
    // Others are served meanwhile.
    let r = Http::connect(server.port).request("GET", "/", b"");
    assert_eq!(r.status, 200);
    slow.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut got = Vec::new();
    let _ = slow.read_to_end(&mut got);
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 408 "), "{text}");
    assert!(text.contains("Connection: close"), "{text}");
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(4),
        "{took:?}"
    );
    // A connection that sends nothing at all is closed the same way.
    let mut silent = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    silent
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut got = Vec::new();
    let _ = silent.read_to_end(&mut got);
    assert!(String::from_utf8_lossy(&got).starts_with("HTTP/1.1 408 "));
}
