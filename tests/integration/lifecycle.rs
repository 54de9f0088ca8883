//! Server-side activity pings and the 4201 pong timeout, graceful shutdown
//! (4200), and slow consumers (4100).

use crate::support::*;
use serde_json::json;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

const FAST_PING: &str = r#"
[server]
activity_timeout = 1
pong_timeout = 1
"#;

#[test]
fn activity_timeout_is_advertised_from_config() {
    let server = Server::start_with(FAST_PING);
    let ws = Ws::connect(server.port);
    assert_eq!(ws.activity_timeout, 1);
}

#[test]
fn silent_client_is_pinged_then_closed_with_4201() {
    let server = Server::start_with(FAST_PING);
    let start = Instant::now();
    let mut ws = Ws::connect(server.port);
    let ping = ws.recv_within(Duration::from_secs(4));
    let v: serde_json::Value = serde_json::from_slice(&ping.payload).unwrap();
    assert_eq!(v["event"], "pusher:ping", "{v}");
    let pinged = start.elapsed();
    assert!(
        pinged >= Duration::from_millis(900),
        "pinged too early: {pinged:?}"
    );
    assert!(
        pinged <= Duration::from_millis(3000),
        "pinged late: {pinged:?}"
    );
    // No answer: 4201.
    let v = ws.recv_json_within(Duration::from_secs(4));
    assert_eq!(v["event"], "pusher:error", "{v}");
    assert_eq!(v["data"]["code"], 4201, "{v}");
    ws.expect_close(4201);
    assert!(
        start.elapsed() <= Duration::from_secs(6),
        "closed after {:?}",
        start.elapsed()
    );
    ws.send_raw_lenient(&encode_frame(true, OP_CLOSE, &4201u16.to_be_bytes(), true));
    ws.expect_eof(WAIT);
}

#[test]
fn answering_server_pings_keeps_the_connection_open() {
    let server = Server::start_with(FAST_PING);
    let mut ws = Ws::connect(server.port);
    let start = Instant::now();
    let mut pings = 0;
    while start.elapsed() < Duration::from_secs(5) {
        match ws.read_frame(Duration::from_millis(200)) {
            Err(ReadErr::Timeout) => continue,
            Ok(f) => {
                let v: serde_json::Value = serde_json::from_slice(&f.payload)
                    .unwrap_or_else(|_| panic!("unexpected frame {f:?}"));
                assert_eq!(
                    v["event"], "pusher:ping",
                    "only pings are expected, got {v}"
                );
                pings += 1;
                ws.send_text(r#"{"event":"pusher:pong","data":{}}"#);
            }
            Err(e) => panic!("connection ended after {:?}: {e:?}", start.elapsed()),
        }
    }
    assert!(pings >= 2, "expected repeated pings over 5 s, got {pings}");
    ws.ping();
    ws.close();
}

#[test]
fn any_client_traffic_counts_as_activity() {
    let server = Server::start_with(
        r#"
[server]
activity_timeout = 2
pong_timeout = 1
"#,
    );
    let mut ws = Ws::connect(server.port);
    // Client pings every 500 ms: the server never needs to ping.
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(4) {
        ws.ping();
        std::thread::sleep(Duration::from_millis(500));
    }
    ws.close();
}

#[test]
fn sigterm_tells_clients_4200_and_exits_zero() {
    let mut server = Server::start();
    let mut clients = connect_spread(server.port, 2);
    for ws in clients.iter_mut() {
        ws.subscribe("c");
    }
    // An idle keep-alive HTTP connection does not hold the shutdown up.
    let mut http = Http::connect(server.port);
    assert_eq!(http.request("GET", "/", b"").status, 200);

    let start = Instant::now();
    server.send_sigterm();
    for ws in clients.iter_mut() {
        let m = ws.expect_pusher_close(4200);
        assert!(
            m.to_lowercase().contains("reconnect") || m.to_lowercase().contains("shut"),
            "{m}"
        );
        ws.send_raw_lenient(&encode_frame(true, OP_CLOSE, &4200u16.to_be_bytes(), true));
        ws.expect_eof(WAIT);
    }
    let status = server.wait_exit(Duration::from_secs(5).saturating_sub(start.elapsed()));
    let status = status.unwrap_or_else(|| {
        panic!(
            "still running 5 s after SIGTERM; log:\n{}",
            server.log_text()
        )
    });
    assert!(status.success(), "exit status {status}");
    assert_eq!(status.code(), Some(0));
    assert!(start.elapsed() < Duration::from_secs(5));
}

#[test]
fn sigterm_with_unresponsive_clients_still_exits_zero() {
    let mut server = Server::start();
    let mut clients = connect_spread(server.port, 1);
    let start = Instant::now();
    // Clients read the 4200 frames but never answer the close.
    let status = server.stop_gracefully(Duration::from_secs(6));
    let status = status.unwrap_or_else(|| {
        panic!(
            "still running 6 s after SIGTERM; log:\n{}",
            server.log_text()
        )
    });
    assert_eq!(status.code(), Some(0), "exit status {status}");
    for ws in clients.iter_mut() {
        ws.expect_pusher_close(4200);
    }
    eprintln!("unresponsive shutdown took {:?}", start.elapsed());
}

#[test]
fn sigterm_with_no_clients_exits_quickly() {
    let mut server = Server::start();
    let start = Instant::now();
    let status = server
        .stop_gracefully(Duration::from_secs(5))
        .expect("exited");
    assert_eq!(status.code(), Some(0));
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "took {:?}",
        start.elapsed()
    );
}

const SMALL_QUEUE: &str = r#"
[server.limits]
max_write_queue_kb = 64
"#;

#[test]
fn slow_consumer_is_disconnected_while_readers_get_everything() {
    let server = Server::start_with(SMALL_QUEUE);
    let port = server.port;
    // One reader on each shard.
    let mut readers = connect_spread(port, 1);
    // One slow consumer on each shard, with a small TCP receive window so the
    // kernel buffers little of what the server writes.
    let mut slow: [Option<Ws>; 2] = [None, None];
    for _ in 0..200 {
        if slow.iter().all(Option::is_some) {
            break;
        }
        let ws = Ws::connect_small_rcvbuf(port, 8 * 1024);
        let s = ws.shard() as usize;
        if slow[s].is_none() {
            slow[s] = Some(ws);
        }
    }
    let [slow_a, slow_b] = slow;
    let (mut slow_a, mut slow_b) = (
        slow_a.expect("slow on shard 0"),
        slow_b.expect("slow on shard 1"),
    );
    for ws in readers.iter_mut().chain([&mut slow_a, &mut slow_b]) {
        ws.subscribe("firehose");
    }
    let reader_b = readers.pop().unwrap();
    let reader_a = readers.pop().unwrap();
    let events = firehose_events();
    let payload = firehose_payload;
    // Readers report how far they got; triggers wait for them to be at most
    // two events behind, so a reader never has more than ~48 KiB outstanding
    // (under the 64 KiB cap) even when the test machine is busy.
    let (readers, progress): (Vec<_>, Vec<_>) = read_firehose(vec![reader_a, reader_b], events)
        .into_iter()
        .unzip();
    let mut http = Http::connect(port);
    for i in 0..events {
        let wait_until = Instant::now() + Duration::from_secs(10);
        while progress.iter().any(|p| p.load(Ordering::Acquire) + 2 < i) {
            if Instant::now() > wait_until {
                // A reader died or stalled: its thread's panic says why.
                break;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        http.trigger(
            &DEV,
            &json!({"name":"big","channel":"firehose","data":payload(i)}),
        )
        .expect_ok_json();
    }
    for r in readers {
        let mut ws = r.join().expect("a reading subscriber missed events");
        ws.ping();
    }

    // Now drain the slow ones: some events, maybe the 4100 error and close,
    // then the end of the stream — never all events.
    for mut ws in [slow_a, slow_b] {
        let mut got = 0;
        let mut saw_close = false;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            assert!(
                Instant::now() < deadline,
                "slow consumer {} was never disconnected",
                ws.socket_id
            );
            match ws.read_frame(Duration::from_secs(8)) {
                Ok(f) if f.opcode == OP_TEXT => {
                    let v: serde_json::Value = serde_json::from_slice(&f.payload).unwrap();
                    if v["event"] == "big" {
                        assert!(!saw_close);
                        // What arrives is a gap-free, in-order prefix.
                        assert_eq!(
                            v["data"].as_str().map(|d| &d[..5]),
                            Some(format!("{got:05}").as_str())
                        );
                        got += 1;
                    } else {
                        assert_eq!(v["event"], "pusher:error", "{v}");
                        assert_eq!(v["data"]["code"], 4100, "{v}");
                    }
                }
                Ok(f) if f.opcode == OP_CLOSE => {
                    assert_eq!(f.close_code(), Some(4100), "{f:?}");
                    saw_close = true;
                }
                Ok(f) => panic!("unexpected frame {f:?}"),
                Err(ReadErr::Eof) | Err(ReadErr::Io(_)) => break,
                Err(ReadErr::Timeout) => {
                    panic!(
                        "slow consumer {} still open after {got} events",
                        ws.socket_id
                    )
                }
            }
        }
        eprintln!(
            "slow consumer {} got {got} of {events} events; close frame seen: {saw_close}",
            ws.socket_id
        );
        assert!(got < events, "a slow consumer got every event");
    }
    // The server is fine afterwards.
    let mut ws = Ws::connect(port);
    ws.subscribe("firehose");
    trigger(
        port,
        &DEV,
        &json!({"name":"e","channel":"firehose","data":"after"}),
    );
    ws.expect_text(&event_text("e", "firehose", "after"));
}

#[test]
fn ready_is_503_while_draining() {
    let mut server = Server::start();
    // Clients that never answer the close keep both shards draining for a while.
    let mut clients = connect_spread(server.port, 1);
    let mut https: Vec<Http> = (0..6).map(|_| Http::connect(server.port)).collect();
    for http in https.iter_mut() {
        assert_eq!(http.request("GET", "/ready", b"").status, 200);
    }
    server.send_sigterm();
    for ws in clients.iter_mut() {
        ws.expect_pusher_close(4200);
    }
    // Each keep-alive connection's shard is draining now.
    for http in https.iter_mut() {
        let r = http.request("GET", "/ready", b"");
        let m = r.expect_error(503);
        assert!(m.contains("shutting down"), "{m}");
        assert_eq!(
            r.header("connection")
                .map(str::to_ascii_lowercase)
                .as_deref(),
            Some("close")
        );
        assert!(http.closed_within(WAIT));
    }
    let status = server.wait_exit(Duration::from_secs(6)).expect("exits");
    assert_eq!(status.code(), Some(0));
}

/// What one connection attempt to a shutting-down server got.
#[derive(Debug, PartialEq)]
enum Attempt {
    /// The TCP connection was refused: no shard listens any more.
    Refused,
    /// 101, then `pusher:error` 4200 and a close.
    ShuttingDown,
    /// The stream ended or was reset before any answer.
    Dropped,
    /// `pusher:connection_established`: the dying server admitted it.
    Admitted,
    /// Anything else, with what arrived.
    Other(String),
}

/// Connects and asks for a WebSocket; reads the answer up to its first frame.
fn attempt_connection(port: u16) -> Attempt {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return Attempt::Refused;
    };
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        app_path("app-key")
    );
    if stream.write_all(request.as_bytes()).is_err() {
        return Attempt::Dropped;
    }
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let mut buf = Vec::new();
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            if !head.starts_with("HTTP/1.1 101 ") {
                return Attempt::Other(head);
            }
            let mut rest = buf[end + 4..].to_vec();
            if let Some(frame) = split_frame(&mut rest) {
                let v: serde_json::Value = serde_json::from_slice(&frame.payload)
                    .unwrap_or_else(|_| panic!("first frame is JSON: {frame:?}"));
                return match (v["event"].as_str(), v["data"]["code"].as_u64()) {
                    (Some("pusher:connection_established"), _) => Attempt::Admitted,
                    (Some("pusher:error"), Some(4200)) => Attempt::ShuttingDown,
                    _ => Attempt::Other(v.to_string()),
                };
            }
        }
        let mut tmp = [0u8; 4096];
        match stream.read(&mut tmp) {
            Ok(0) | Err(_) if buf.is_empty() => return Attempt::Dropped,
            Ok(0) | Err(_) => return Attempt::Other(String::from_utf8_lossy(&buf).into()),
            Ok(n) => buf.extend_from_slice(&tmp[..n]),
        }
    }
}

#[test]
fn no_shard_admits_a_connection_once_shutdown_began() {
    let mut server = Server::start();
    let port = server.port;
    let mut clients = connect_spread(port, 8);
    server.send_sigterm();
    // The first 4200 proves the signal arrived; from then on, every
    // attempt on any shard must be refused. Three threads keep trying
    // until the process has exited (one client below never answers its
    // close, so the drain lasts seconds).
    clients[0].expect_pusher_close(4200);
    let exited = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let tries: Vec<_> = (0..3)
        .map(|_| {
            let exited = exited.clone();
            std::thread::spawn(move || {
                let mut seen = Vec::new();
                while !exited.load(Ordering::Acquire) {
                    seen.push(attempt_connection(port));
                    std::thread::sleep(Duration::from_micros(200));
                }
                seen
            })
        })
        .collect();
    for ws in clients[1..].iter_mut() {
        ws.expect_pusher_close(4200);
        ws.send_raw_lenient(&encode_frame(true, OP_CLOSE, &4200u16.to_be_bytes(), true));
    }
    let status = server.wait_exit(Duration::from_secs(8));
    exited.store(true, Ordering::Release);
    assert_eq!(status.and_then(|s| s.code()), Some(0), "exit status");
    let attempts: Vec<Attempt> = tries.into_iter().flat_map(|t| t.join().unwrap()).collect();
    let count = |a: Attempt| attempts.iter().filter(|x| **x == a).count();
    eprintln!(
        "{} attempts while draining: {} refused by TCP, {} told 4200, {} dropped",
        attempts.len(),
        count(Attempt::Refused),
        count(Attempt::ShuttingDown),
        count(Attempt::Dropped)
    );
    assert!(attempts.len() >= 10, "only {} attempts", attempts.len());
    let wrong: Vec<&Attempt> = attempts
        .iter()
        .filter(|a| matches!(a, Attempt::Admitted | Attempt::Other(_)))
        .collect();
    assert!(wrong.is_empty(), "admitted while shutting down: {wrong:?}");
}
