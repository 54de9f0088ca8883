//! Hostile clients: whatever one client sends, every other client is
//! answered promptly, on either shard. The design target is 100 ms (README,
//! Security); the tests assert [`BOUND`], which leaves room for a shared
//! 2-CPU test machine where the attack's own clients run on the server's
//! CPUs, and print what the probe saw.
//!
//! Each test runs one attack against the optimized build
//! ([`Server::start_optimized`]) with 2 shards while a [`Probe`] opens a new
//! connection and triggers an event to a subscriber on each shard every
//! 50 ms, timing each answer. The test then asserts that no probe step
//! waited longer than the bound, that the server still serves, and, where
//! the attack held memory, that the memory came back. The tests take
//! [`heavy_lock`]: they are the heavy ones and must not judge each other's
//! load.

use crate::memory::{expect_rss_back, open_many, PURGE_AT_ONCE};
use crate::support::*;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The slowest probe answer a test accepts (see the module doc).
const BOUND: Duration = Duration::from_millis(250);
/// How often the probe acts.
const PROBE_EVERY: Duration = Duration::from_millis(50);

/// What the probe saw: the slowest answer of each kind, and how many.
#[derive(Debug, Default)]
struct ProbeReport {
    steps: u32,
    slowest_connect: Duration,
    slowest_trigger: Duration,
    slowest_delivery: Duration,
}

/// A client that keeps using the server while an attack runs.
struct Probe {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<ProbeReport>,
}

/// What a probe connection may be answered with besides
/// `connection_established`: at a full node the answer is a refusal.
#[derive(Clone, Copy, PartialEq)]
enum Admission {
    Expected,
    RefusalAllowed,
}

impl Probe {
    /// Starts probing with one subscriber of `probe` on each shard (opened
    /// before the attack starts).
    fn start(port: u16, admission: Admission) -> Probe {
        let mut subscribers = connect_spread(port, 1);
        for ws in &mut subscribers {
            ws.subscribe("probe");
        }
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            prefer_this_thread();
            let mut report = ProbeReport::default();
            let mut http = Http::connect(port);
            let mut next = Instant::now();
            while !flag.load(Ordering::Relaxed) {
                report.steps += 1;
                // A new connection, answered.
                let t = Instant::now();
                let stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
                stream.set_nodelay(true).unwrap();
                let connected = t.elapsed();
                match Ws::upgrade_stream(stream, port, &app_path("app-key"), &[]) {
                    Ok(mut ws) => {
                        let upgraded = t.elapsed();
                        let v = ws.recv_json_within(WAIT);
                        if std::env::var_os("PROBE_TRACE").is_some() {
                            eprintln!(
                                "probe step {}: TCP connected after {connected:?}, 101 after \
                                 {upgraded:?}, first frame after {:?}",
                                report.steps,
                                t.elapsed()
                            );
                        }
                        let ok = v["event"] == "pusher:connection_established"
                            || admission == Admission::RefusalAllowed
                                && v["event"] == "pusher:error";
                        assert!(ok, "probe connection answered with {v}");
                        report.slowest_connect = report.slowest_connect.max(t.elapsed());
                        ws.shutdown();
                    }
                    Err(e) => panic!("probe connection not upgraded: {e:?}"),
                }
                // An event, accepted and delivered on both shards.
                let data = format!("p{}", report.steps);
                let t = Instant::now();
                let r = http.trigger(&DEV, &json!({"name":"tick","channel":"probe","data":data}));
                assert_eq!(r.status, 200, "probe trigger: {}", r.text());
                report.slowest_trigger = report.slowest_trigger.max(t.elapsed());
                let mut at = Vec::new();
                for ws in &mut subscribers {
                    ws.expect_text(&event_text("tick", "probe", &data));
                    at.push(t.elapsed());
                }
                if std::env::var_os("PROBE_TRACE").is_some() {
                    eprintln!("probe step {}: deliveries after {at:?}", report.steps);
                }
                report.slowest_delivery = report.slowest_delivery.max(t.elapsed());
                next += PROBE_EVERY;
                if let Some(wait) = next.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                } else {
                    next = Instant::now();
                }
            }
            report
        });
        Probe { stop, thread }
    }

    /// Stops probing and checks every answer came within [`BOUND`].
    fn finish(self, attack: &str) -> ProbeReport {
        let bound = BOUND;
        self.stop.store(true, Ordering::Relaxed);
        let report = match self.thread.join() {
            Ok(r) => r,
            Err(e) => std::panic::resume_unwind(e),
        };
        eprintln!("{attack}: {report:?}");
        assert!(report.steps >= 5, "{attack}: the probe ran only {report:?}");
        for (what, took) in [
            ("a new connection", report.slowest_connect),
            ("a trigger", report.slowest_trigger),
            ("a delivery", report.slowest_delivery),
        ] {
            assert!(
                took <= bound,
                "{attack}: {what} waited {took:?} (bound {bound:?}); {report:?}"
            );
        }
        report
    }
}

/// Gives the probe's thread real-time priority where allowed (root), so
/// what it measures is the server's answer, not the wait of a test thread
/// for a CPU that the server's pinned shards and the attack's own test
/// threads keep busy on this small machine (a real client elsewhere would
/// not share them). Without the privilege the probe measures both.
fn prefer_this_thread() {
    let param = libc::sched_param { sched_priority: 1 };
    // SAFETY: sets the calling thread's scheduling policy; `param` is a
    // valid, initialised struct that outlives the call.
    let rc = unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) };
    if rc != 0 {
        eprintln!(
            "probe: no real-time priority ({}); its times include waits for a CPU",
            std::io::Error::last_os_error()
        );
    }
}

/// A raw client whose replies a thread counts (in bytes: cheap enough that
/// the test's own work does not slow the probe), so it can send a burst
/// without reading in between and without being closed as a slow reader.
struct Attacker {
    ws: Ws,
    received: Arc<AtomicU64>,
    reader: JoinHandle<()>,
}

/// Bytes of the unmasked server frame carrying `text`.
fn frame_bytes(text: &str) -> u64 {
    let header = match text.len() {
        0..=125 => 2,
        126..=65535 => 4,
        _ => 10,
    };
    (header + text.len()) as u64
}

impl Attacker {
    fn connect(port: u16) -> Attacker {
        let ws = Ws::connect(port);
        let received = Arc::new(AtomicU64::new(0));
        let mut stream = ws.stream.try_clone().expect("clone socket");
        let count = received.clone();
        let reader = std::thread::spawn(move || {
            let mut buf = vec![0u8; 256 * 1024];
            while let Ok(n) = stream.read(&mut buf) {
                if n == 0 {
                    break;
                }
                count.fetch_add(n as u64, Ordering::Relaxed);
            }
        });
        Attacker {
            ws,
            received,
            reader,
        }
    }

    /// Sends `messages` as masked text frames in large writes.
    fn burst(&mut self, messages: impl Iterator<Item = String>) {
        let mut batch = Vec::new();
        for m in messages {
            batch.extend(encode_frame(true, OP_TEXT, m.as_bytes(), true));
            if batch.len() > 256 * 1024 {
                self.ws.stream.write_all(&batch).expect("attacker write");
                batch.clear();
            }
        }
        self.ws.stream.write_all(&batch).expect("attacker write");
    }

    /// Waits until `bytes` of replies arrived in all.
    fn wait_for(&self, bytes: u64, within: Duration) {
        let received = &self.received;
        assert!(
            wait_until(within, || received.load(Ordering::Relaxed) >= bytes),
            "the server answered {} of {bytes} bytes to the attacker in {within:?}",
            received.load(Ordering::Relaxed)
        );
    }

    /// Drops the connection without a close handshake.
    fn drop_connection(self) {
        self.ws.shutdown();
        let _ = self.reader.join();
    }
}

fn subscribe_msg(channel: &str) -> String {
    format!(r#"{{"event":"pusher:subscribe","data":{{"channel":"{channel}"}}}}"#)
}

/// Whether `channel` has no subscriber left anywhere.
fn vacated(port: u16, channel: &str) -> bool {
    let v: Value = get_json(port, &format!("/apps/app-id/channels/{channel}"), &[]);
    v["occupied"] == false
}

#[test]
fn one_connection_subscribing_to_300000_channels_then_dropping() {
    let _heavy = heavy_lock();
    const N: usize = 300_000;
    // Freed memory goes back to the OS at once (see `memory.rs`), so what
    // stays afterwards is what was not freed.
    let server = Server::start_optimized_with_env(
        "[server.limits]\nmax_subscriptions_per_connection = 300000\nmax_write_queue_kb = 65536\n",
        PURGE_AT_ONCE,
    );
    let port = server.port;
    let base = rss_kb(server.pid());
    let probe = Probe::start(port, Admission::Expected);
    let mut attacker = Attacker::connect(port);
    attacker.burst((0..N).map(|i| subscribe_msg(&format!("atk-{i}"))));
    let replies: u64 = (0..N)
        .map(|i| frame_bytes(&succeeded_text(&format!("atk-{i}"))))
        .sum();
    attacker.wait_for(replies, Duration::from_secs(60));
    let peak = rss_kb(server.pid());
    attacker.drop_connection();
    // The first channel joined is the last one left.
    assert!(
        wait_until(Duration::from_secs(30), || vacated(port, "atk-0")),
        "the attacker's channels were not all left"
    );
    probe.finish("300,000 subscriptions, then a drop");
    expect_rss_back(&server, base, peak, "300,000 subscriptions");
    assert_healthy(port);
}

#[test]
fn nineteen_thousand_subscribers_of_one_channel_dropping_at_once() {
    let _heavy = heavy_lock();
    let server = Server::start_optimized_with_env("", PURGE_AT_ONCE);
    let port = server.port;
    let base = rss_kb(server.pid());
    let mut crowd = open_many(port, 19_000, 1);
    // Every one of them receives an event (the channel really is that big).
    trigger(
        port,
        &DEV,
        &json!({"name":"e","channel":"mem-0","data":"all"}),
    );
    for ws in &mut crowd {
        ws.expect_text(&event_text("e", "mem-0", "all"));
    }
    let peak = rss_kb(server.pid());
    let probe = Probe::start(port, Admission::Expected);
    std::thread::sleep(PROBE_EVERY * 4); // the probe's baseline
    for ws in &crowd {
        ws.shutdown();
    }
    drop(crowd);
    assert!(
        wait_until(Duration::from_secs(30), || vacated(port, "mem-0")),
        "mem-0 still has subscribers after all of them dropped"
    );
    probe.finish("19,000 subscribers of one channel dropping at once");
    expect_rss_back(&server, base, peak, "19,000 subscribers dropped");
    assert_healthy(port);
}

#[test]
fn a_burst_to_a_channel_of_19000_subscribers() {
    let _heavy = heavy_lock();
    let server = Server::start_optimized("");
    let port = server.port;
    let mut crowd = open_many(port, 19_000, 1);
    let probe = Probe::start(port, Admission::Expected);
    // 200 events in batches of 10: each shard delivers ~9,500 frames per
    // event, 1.9 million in all, in slices.
    let mut http = Http::connect(port);
    for b in 0..20 {
        let batch: Vec<Value> = (0..10)
            .map(|e| json!({"name":"burst","channel":"mem-0","data":format!("{b}-{e}")}))
            .collect();
        let r = http.batch(&DEV, &json!({ "batch": batch }));
        assert_eq!(r.status, 200, "{}", r.text());
    }
    // A sample of the crowd (every 95th) got all of them, in order.
    for ws in crowd.iter_mut().step_by(95) {
        for b in 0..20 {
            for e in 0..10 {
                ws.expect_text(&event_text("burst", "mem-0", &format!("{b}-{e}")));
            }
        }
    }
    probe.finish("200 events to a channel of 19,000 subscribers");
    for ws in &crowd {
        ws.shutdown();
    }
    assert_healthy(port);
}

#[test]
fn one_client_sending_100000_messages_in_one_burst() {
    let _heavy = heavy_lock();
    const N: u64 = 100_000;
    let server = Server::start_optimized("");
    let port = server.port;
    let probe = Probe::start(port, Admission::Expected);
    let pong = frame_bytes(r#"{"event":"pusher:pong","data":"{}"}"#);
    let mut attacker = Attacker::connect(port);
    attacker.burst((0..N).map(|_| r#"{"event":"pusher:ping","data":{}}"#.to_string()));
    attacker.wait_for(N * pong, Duration::from_secs(60));
    // And a burst of subscribe/unsubscribe pairs on one channel.
    let pairs = (0..N / 2).flat_map(|_| {
        [
            subscribe_msg("burst"),
            r#"{"event":"pusher:unsubscribe","data":{"channel":"burst"}}"#.to_string(),
        ]
    });
    attacker.burst(pairs);
    attacker.burst(std::iter::once(
        r#"{"event":"pusher:ping","data":{}}"#.into(),
    ));
    attacker.wait_for(N + 1, Duration::from_secs(60));
    probe.finish("100,000 messages in one burst");
    attacker.drop_connection();
    assert_healthy(port);
}

#[test]
fn a_node_at_its_connection_limit() {
    let _heavy = heavy_lock();
    // Room for the probe's two subscribers and one probe connection at a time.
    let server = Server::start_optimized("[server.limits]\nmax_connections = 503\n");
    let port = server.port;
    let probe = Probe::start(port, Admission::RefusalAllowed);
    let mut held = Vec::new();
    let mut refused = 0;
    while held.len() < 500 && refused < 50 {
        let mut ws = Ws::upgrade(port, &app_path("app-key")).expect("upgrade");
        let v = ws.recv_json_within(WAIT);
        if v["event"] == "pusher:connection_established" {
            held.push(ws);
        } else {
            assert_eq!(v["data"]["code"], 4100, "{v}");
            refused += 1;
        }
    }
    // Full now: more are refused with 4100, at once.
    for _ in 0..200 {
        let mut ws = Ws::upgrade(port, &app_path("app-key")).expect("upgrade");
        let v = ws.recv_json_within(WAIT);
        if v["event"] == "pusher:error" {
            assert_eq!(v["data"]["code"], 4100, "{v}");
        } else {
            // Only the probe's own connection slot can free up between.
            held.push(ws);
        }
    }
    probe.finish("a node at its connection limit");
    drop(held);
    assert_healthy(port);
}

#[test]
fn an_http_api_flood() {
    let _heavy = heavy_lock();
    let server = Server::start_optimized("");
    let port = server.port;
    let probe = Probe::start(port, Admission::Expected);
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let flooders: Vec<_> = (0..4)
        .map(|t| {
            let (stop, sent) = (stop.clone(), sent.clone());
            std::thread::spawn(move || {
                let mut http = Http::connect(port);
                let body =
                    json!({"name":"flood","channel":format!("nobody-{t}"),"data":"x"}).to_string();
                while !stop.load(Ordering::Relaxed) {
                    // 50 pipelined triggers (half of them badly signed), then the answers.
                    let mut bytes = Vec::new();
                    for i in 0..50 {
                        let mut target =
                            signed_target(&DEV, "/apps/app-id/events", body.as_bytes());
                        if i % 2 == 1 {
                            target = target.replace("auth_signature=", "auth_signature=0");
                        }
                        bytes.extend(request_bytes("POST", &target, body.as_bytes(), &[]));
                    }
                    http.send(&bytes);
                    for _ in 0..50 {
                        let r = http.read_response();
                        assert!(r.status == 200 || r.status == 401, "{}", r.text());
                    }
                    sent.fetch_add(50, Ordering::Relaxed);
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(3));
    stop.store(true, Ordering::Relaxed);
    for f in flooders {
        f.join().unwrap();
    }
    assert!(sent.load(Ordering::Relaxed) > 1000, "the flood hardly ran");
    probe.finish("an HTTP API flood");
    assert_healthy(port);
}

#[test]
fn subscriptions_beyond_the_limit_are_refused_and_the_connection_stays() {
    let server = Server::start_with("[server.limits]\nmax_subscriptions_per_connection = 3\n");
    let port = server.port;
    let mut ws = Ws::connect(port);
    for c in ["a", "b", "c"] {
        ws.subscribe(c);
    }
    // A repeat of a held channel is not a new subscription.
    ws.subscribe("b");
    ws.send_text(&subscribe_msg("d"));
    let v = ws.expect_event("pusher:subscription_error");
    assert_eq!(v["channel"], "d", "{v}");
    assert_eq!(v["data"]["type"], "LimitReached", "{v}");
    assert_eq!(v["data"]["status"], 4100, "{v}");
    let error = v["data"]["error"].as_str().unwrap();
    assert!(
        error.contains("max_subscriptions_per_connection") && error.contains('3'),
        "{error}"
    );
    // The connection stays, and a freed place can be used.
    ws.ping();
    ws.unsubscribe("a");
    ws.subscribe("d");
    trigger(port, &DEV, &json!({"name":"e","channel":"d","data":"x"}));
    ws.expect_text(&event_text("e", "d", "x"));
}

#[test]
fn many_slow_readers_cannot_hold_more_than_the_write_budget() {
    let _heavy = heavy_lock();
    // 2 MiB for all queues together (1 MiB per shard); each client's own cap
    // stays at its 4 MiB default, so only the shared budget can close them.
    let server = Server::start_with(
        "[server.limits]\nmax_write_queues_mb = 2\n[server.metrics]\nenabled = true\nport = 0\n",
    );
    let port = server.port;
    let metrics = crate::metrics::metrics_port(&server);
    let mut readers = connect_spread(port, 1);
    // Slow readers on both shards, with a small TCP window, that never read.
    let mut slow: Vec<Ws> = (0..10)
        .map(|_| Ws::connect_small_rcvbuf(port, 8 * 1024))
        .collect();
    assert!(
        slow.iter().any(|w| w.shard() == 0) && slow.iter().any(|w| w.shard() == 1),
        "the slow readers all landed on one shard"
    );
    for ws in readers.iter_mut().chain(slow.iter_mut()) {
        ws.subscribe("firehose");
    }
    // The kernel absorbs up to tcp_wmem's maximum per socket first.
    let events = firehose_events();
    let payload = firehose_payload;
    let (reading, progress): (Vec<_>, Vec<_>) = read_firehose(readers, events).into_iter().unzip();
    let mut http = Http::connect(port);
    let mut peak_queued = 0;
    for i in 0..events {
        // The readers keep up (at most two events behind): they stay under
        // the 64 KiB that makes a queue "large".
        let deadline = Instant::now() + Duration::from_secs(10);
        while progress.iter().any(|p| p.load(Ordering::Acquire) + 2 < i)
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_micros(200));
        }
        http.trigger(
            &DEV,
            &json!({"name":"big","channel":"firehose","data":payload(i)}),
        )
        .expect_ok_json();
        if i % 32 == 0 {
            let m = crate::metrics::scrape(metrics);
            peak_queued = peak_queued.max(m["shardcast_write_queue_bytes"]);
        }
    }
    for r in reading {
        let mut ws = r.join().expect("a reader that keeps up missed events");
        ws.ping();
    }
    // Every slow reader was closed with 4100 for the budget, never got
    // everything, and the queues never held much more than the budget.
    for mut ws in slow {
        let mut got = 0;
        let reason = loop {
            let f = ws
                .read_frame(WAIT)
                .expect("slow reader: a frame or the close");
            match f.opcode {
                OP_CLOSE => break f,
                _ if f.text().contains("\"event\":\"big\"") => got += 1,
                _ => {}
            }
        };
        assert_eq!(reason.close_code(), Some(4100));
        let why = String::from_utf8_lossy(&reason.payload[2..]).into_owned();
        assert!(why.contains("write queues are full"), "{why}");
        assert!(got < events, "a slow reader got all {events} events");
    }
    let m = crate::metrics::scrape(metrics);
    assert!(m["shardcast_over_budget_closes_total"] >= 10, "{m:?}");
    assert!(
        peak_queued <= 2 * 1024 * 1024 + 64 * 1024,
        "queues held {peak_queued} bytes with a 2 MiB budget"
    );
    assert_healthy(port);
}

#[test]
fn hundreds_of_slow_bodies() {
    let _heavy = heavy_lock();
    let server = Server::start_optimized("[server.limits]\nhead_timeout_secs = 3\n");
    let port = server.port;
    let probe = Probe::start(port, Admission::Expected);
    // 600 requests whose head promises a body that arrives a byte at a time
    // (under max_pending_heads, 1024 by default, so the probe still gets in).
    let body = json!({"name":"slow","channel":"nobody","data":"x"}).to_string();
    let target = signed_target(&DEV, "/apps/app-id/events", body.as_bytes());
    let head = request_bytes("POST", &target, body.as_bytes(), &[]);
    let head = &head[..head.len() - body.len()];
    let mut slow: Vec<std::net::TcpStream> = (0..600)
        .map(|_| {
            let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
            s.write_all(head).unwrap();
            s
        })
        .collect();
    // Trickle until the deadline passes: each gets 408 and is closed.
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(4) {
        for s in &mut slow {
            let _ = s.write_all(b" ");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    for mut s in slow {
        s.set_read_timeout(Some(WAIT)).unwrap();
        let mut answer = Vec::new();
        let _ = s.read_to_end(&mut answer);
        let text = String::from_utf8_lossy(&answer);
        assert!(text.starts_with("HTTP/1.1 408"), "a slow body got {text:?}");
    }
    probe.finish("600 slow bodies");
    assert_healthy(port);
}
