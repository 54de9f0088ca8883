//! HTTP framing a hostile client controls: Transfer-Encoding (refused and
//! closed, so bytes after it are never served as a second request),
//! Content-Length spelling, the deadline on a whole request (head and body),
//! the cap on connections whose request is still arriving, and the order
//! of the signature and `body_md5` checks.

use crate::support::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const EVENTS: &str = "/apps/app-id/events";
const PIPELINED_READY: &[u8] = b"GET /ready HTTP/1.1\r\nHost: x\r\n\r\n";

/// Everything the server sends until it closes the connection (EOF or
/// reset); panics if it is still open after `timeout`.
fn read_to_eof(stream: &mut TcpStream, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    let mut got = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "connection still open after {timeout:?}; got {:?}",
            String::from_utf8_lossy(&got)
        );
        stream.set_read_timeout(Some(left)).unwrap();
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => panic!("read failed: {e}"),
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

/// Sends `raw` in one write and reads to EOF: asserts that exactly one
/// response came back, with `status` and `Connection: close`; returns it.
fn only_response(port: u16, raw: &[u8], status: u16, what: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(raw).unwrap();
    let text = read_to_eof(&mut s, WAIT);
    assert!(
        text.starts_with(&format!("HTTP/1.1 {status} ")),
        "{what}: {text:?}"
    );
    assert_eq!(
        text.matches("HTTP/1.1 ").count(),
        1,
        "{what}: a second response was served: {text:?}"
    );
    assert!(text.contains("Connection: close"), "{what}: {text:?}");
    text
}

fn post_head(extra: &str) -> Vec<u8> {
    format!("POST {EVENTS} HTTP/1.1\r\nHost: x\r\n{extra}\r\n").into_bytes()
}

#[test]
fn transfer_encoding_gzip_is_refused_and_the_pipelined_request_is_not_served() {
    let server = Server::start();
    let mut raw = post_head("Transfer-Encoding: gzip\r\n");
    raw.extend_from_slice(PIPELINED_READY);
    let text = only_response(server.port, &raw, 400, "gzip");
    assert!(text.contains("Transfer-Encoding"), "{text}");
    assert!(!text.contains("OK"), "{text}");
}

#[test]
fn every_transfer_encoding_is_refused_and_closed() {
    let server = Server::start();
    let cases = [
        ("identity", "Transfer-Encoding: identity\r\n"),
        ("chunked", "Transfer-Encoding: chunked\r\n"),
        ("list", "Transfer-Encoding: gzip, chunked\r\n"),
        (
            "repeated",
            "Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n",
        ),
        (
            "with Content-Length",
            "Content-Length: 2\r\nTransfer-Encoding: identity\r\n",
        ),
        ("upper case", "TRANSFER-ENCODING: CHUNKED\r\n"),
    ];
    for (what, headers) in cases {
        let mut raw = post_head(headers);
        if headers.contains("Content-Length") {
            raw.extend_from_slice(b"{}");
        }
        raw.extend_from_slice(PIPELINED_READY);
        let text = only_response(server.port, &raw, 400, what);
        assert!(text.contains("Transfer-Encoding"), "{what}: {text}");
    }
    // Others are still served.
    let r = Http::connect(server.port).request("GET", "/ready", b"");
    assert_eq!(r.status, 200);
}

#[test]
fn bad_content_lengths_are_refused_and_closed() {
    let server = Server::start();
    let cases = [
        (
            "different duplicates",
            "Content-Length: 2\r\nContent-Length: 3\r\n",
        ),
        ("plus sign", "Content-Length: +2\r\n"),
        ("space inside", "Content-Length: 1 2\r\n"),
        ("list", "Content-Length: 2, 2\r\n"),
    ];
    for (what, headers) in cases {
        let mut raw = post_head(headers);
        raw.extend_from_slice(b"{}");
        raw.extend_from_slice(PIPELINED_READY);
        let text = only_response(server.port, &raw, 400, what);
        assert!(text.contains("Content-Length"), "{what}: {text}");
    }
}

/// Writes one body byte every `every` until told to stop or the server
/// closes; the head announces a body far longer than what is sent.
fn trickle(port: u16, every: Duration) -> (TcpStream, Arc<AtomicBool>) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(&post_head("Content-Length: 1000\r\n")).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let mut writer = s.try_clone().unwrap();
    let stopped = stop.clone();
    std::thread::spawn(move || {
        while !stopped.load(Ordering::Relaxed) {
            if writer.write_all(b"x").is_err() {
                return;
            }
            std::thread::sleep(every);
        }
    });
    (s, stop)
}

#[test]
fn a_trickled_body_gets_408_within_head_timeout() {
    let server = Server::start_with("[server.limits]\nhead_timeout_secs = 2\n");
    let start = Instant::now();
    let (mut slow, stop) = trickle(server.port, Duration::from_millis(200));
    // Others are served meanwhile.
    let r = Http::connect(server.port).request("GET", "/ready", b"");
    assert_eq!(r.status, 200);
    let text = read_to_eof(&mut slow, Duration::from_secs(8));
    let took = start.elapsed();
    stop.store(true, Ordering::Relaxed);
    assert!(text.starts_with("HTTP/1.1 408 "), "{text:?}");
    assert!(text.contains("Connection: close"), "{text:?}");
    assert!(
        took >= Duration::from_millis(1800) && took < Duration::from_secs(4),
        "408 after {took:?}, head_timeout is 2 s"
    );
}

/// `max_pending_heads = 4` on two shards: two a shard. Sixteen connections
/// fill both shards whichever way the kernel spreads them.
const PENDING_CAP: &str = "[server.limits]\nmax_pending_heads = 4\n";

fn expect_refused_as_pending(port: u16) {
    let r = Http::connect(port).request("GET", "/", b"");
    let message = r.expect_error(503);
    assert!(message.contains("still sending"), "{message}");
}

fn wait_until_served(port: u16) {
    let deadline = Instant::now() + WAIT;
    loop {
        let r = Http::connect(port).request("GET", "/", b"");
        if r.status == 200 {
            return;
        }
        assert!(Instant::now() < deadline, "still refused: {}", r.text());
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn slow_bodies_count_against_max_pending_heads() {
    let server = Server::start_with(PENDING_CAP);
    let port = server.port;
    let body = vec![b'x'; 1000];
    let mut slow: Vec<TcpStream> = (0..16)
        .map(|_| {
            let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
            // Past the cap the server answers 503 and closes at once, so a
            // write may find the connection gone (EPIPE): that is expected.
            let _ = s.write_all(&post_head("Content-Length: 1000\r\n"));
            let _ = s.write_all(&body[..10]);
            s
        })
        .collect();
    // Two connections a shard hold the cap with their unfinished bodies;
    // the server refuses the other twelve as it accepts them (a 503, or a
    // reset when it closes over their unread bytes). Those twelve endings
    // are the barrier: once they are in, every connection was accepted and
    // the four left are the holders (finishing bodies before that would
    // free a slot for a connection not yet accepted).
    let ended = wait_for_refusals(&mut slow, 12);
    expect_refused_as_pending(port);
    // The bodies finish: the four holders are answered (401, unsigned).
    let mut holders: Vec<&mut TcpStream> = slow
        .iter_mut()
        .zip(&ended)
        .filter(|(_, e)| !**e)
        .map(|(s, _)| s)
        .collect();
    assert_eq!(holders.len(), 4, "connections holding the cap");
    for s in &mut holders {
        s.write_all(&body[10..]).unwrap();
    }
    let answered = holders
        .iter_mut()
        .map(|s| read_first_response(s))
        .filter(|text| text.starts_with("HTTP/1.1 401 "))
        .count();
    assert_eq!(answered, 4, "connections whose body was served");
    wait_until_served(port);
}

/// The first response head on `s`; empty if the server reset the
/// connection (one refused before its bytes were read).
fn read_first_response(s: &mut TcpStream) -> String {
    s.set_read_timeout(Some(WAIT)).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("no response: {e}; got {:?}", String::from_utf8_lossy(&got)),
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

#[test]
fn keep_alive_connections_are_pending_only_while_a_request_arrives() {
    let server = Server::start_with(PENDING_CAP);
    let port = server.port;
    let mut idle: Vec<Http> = (0..16)
        .map(|_| {
            let mut h = Http::connect(port);
            assert_eq!(h.request("GET", "/", b"").status, 200);
            h
        })
        .collect();
    // Sixteen idle keep-alive connections hold no pending slot.
    assert_eq!(Http::connect(port).request("GET", "/", b"").status, 200);
    // Each starts a next request and stops half way through its head.
    for h in &mut idle {
        h.send(b"GET / HTTP/1.1\r\nHo");
    }
    // Two a shard hold the cap; the server answers the other twelve 503
    // as it reads their bytes. Those answers are the barrier: once all
    // twelve are in, both shards are full (a probe before that could take
    // a slot and push a keep-alive request out instead).
    let mut answered = vec![false; idle.len()];
    let deadline = Instant::now() + WAIT;
    while answered.iter().filter(|a| **a).count() < 12 {
        assert!(Instant::now() < deadline, "fewer than twelve refusals");
        for (h, done) in idle.iter_mut().zip(&mut answered) {
            if !*done {
                if let Ok(r) = h.try_read_response(Duration::from_millis(20)) {
                    r.expect_error(503);
                    *done = true;
                }
            }
        }
    }
    expect_refused_as_pending(port);
    drop(idle);
    wait_until_served(port);
}

#[test]
fn a_bad_signature_on_a_large_body_is_refused_401() {
    let server = Server::start();
    let body = format!(
        r#"{{"name":"e","channel":"c","data":"{}"}}"#,
        "x".repeat(1024 * 1024)
    );
    let mut query = signed_query(&DEV, "POST", EVENTS, body.as_bytes(), now_secs());
    query.last_mut().unwrap().1 = "0".repeat(64);
    let r = Http::connect(server.port).request("POST", &target(EVENTS, &query), body.as_bytes());
    let message = r.expect_error(401);
    assert!(message.contains("signature"), "{message}");
}
