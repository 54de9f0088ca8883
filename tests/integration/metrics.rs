//! The metrics port: Prometheus counters per shard and in total, moved by a
//! scenario; `/usage`; webhook delivery counters.

use crate::receiver::Receiver;
use crate::support::*;
use serde_json::json;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// The metrics port the server logged (`metrics on 127.0.0.1:PORT`).
pub fn metrics_port(server: &Server) -> u16 {
    let deadline = Instant::now() + WAIT;
    loop {
        let log = server.log_text();
        if let Some(at) = log.find("metrics on 127.0.0.1:") {
            let rest = &log[at + "metrics on 127.0.0.1:".len()..];
            let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
            return digits.parse().expect("metrics port");
        }
        assert!(
            Instant::now() < deadline,
            "no `metrics on` line in the log:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `name{labels}` → value, from one scrape.
pub fn scrape(port: u16) -> HashMap<String, u64> {
    let r = Http::connect(port).request("GET", "/metrics", b"");
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        r.header("content-type")
            .unwrap_or("")
            .starts_with("text/plain"),
        "{r:?}"
    );
    r.text()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (name, value) = l.rsplit_once(' ').expect("`name value` line");
            (
                name.to_string(),
                value.parse().unwrap_or_else(|_| panic!("value in {l:?}")),
            )
        })
        .collect()
}

fn get(m: &HashMap<String, u64>, key: &str) -> u64 {
    *m.get(key).unwrap_or_else(|| {
        let mut keys: Vec<&String> = m.keys().collect();
        keys.sort();
        panic!("no metric {key}; have {keys:?}")
    })
}

#[test]
fn counters_move_with_a_scenario_per_shard_and_in_total() {
    let server = Server::start_with("[server.metrics]\nenabled = true\nport = 0\n");
    let mport = metrics_port(&server);
    let before = scrape(mport);
    assert_eq!(get(&before, "shardcast_connections"), 0);
    assert_eq!(
        get(&before, "shardcast_connections_opened_total{shard=\"0\"}"),
        0
    );

    let mut conns = connect_spread(server.port, 1);
    for ws in conns.iter_mut() {
        ws.subscribe("metered");
        ws.ping();
    }
    trigger(
        server.port,
        &DEV,
        &json!({"name":"e","channel":"metered","data":"x".repeat(100)}),
    );
    for ws in conns.iter_mut() {
        ws.expect_event("e");
    }
    let r = Http::connect(server.port).request("POST", "/apps/app-id/events", b"{}");
    r.expect_error(401);
    let closing = conns.pop().unwrap();
    closing.close();
    // The close is counted once the server has torn the connection down.
    assert!(
        wait_until(Duration::from_secs(5), || get(
            &scrape(mport),
            "shardcast_connections"
        ) == 1),
        "the closed connection is still counted"
    );

    let m = scrape(mport);
    assert_eq!(get(&m, "shardcast_connections"), 1);
    // connect_spread may have opened (and closed with 1000) a few extra ones.
    let closed = get(&m, "shardcast_connections_closed_total{code=\"1000\"}");
    assert!(closed >= 1);
    assert_eq!(get(&m, "shardcast_connections_opened_total"), 1 + closed);
    assert!(get(&m, "shardcast_connections_opened_total{shard=\"0\"}") >= 1);
    assert!(get(&m, "shardcast_connections_opened_total{shard=\"1\"}") >= 1);
    // subscribe, ping, close from the closed one; subscribe, ping from the other.
    assert!(get(&m, "shardcast_messages_in_total") >= 5, "{m:?}");
    assert!(get(&m, "shardcast_bytes_in_total") > 0);
    // established, subscribed, pong, event (+ close echo) on each.
    assert!(get(&m, "shardcast_messages_out_total") >= 8, "{m:?}");
    assert!(get(&m, "shardcast_bytes_out_total") >= 200, "{m:?}");
    assert_eq!(
        get(&m, "shardcast_messages_in_total"),
        get(&m, "shardcast_messages_in_total{shard=\"0\"}")
            + get(&m, "shardcast_messages_in_total{shard=\"1\"}")
    );
    assert_eq!(
        get(
            &m,
            "shardcast_http_requests_total{route=\"events\",status=\"200\"}"
        ),
        1
    );
    assert_eq!(
        get(
            &m,
            "shardcast_http_requests_total{route=\"events\",status=\"401\"}"
        ),
        1
    );
    assert_eq!(get(&m, "shardcast_slow_consumer_closes_total"), 0);
    // The scrapes themselves are counted (on shard 0, which serves the port).
    assert!(
        get(
            &m,
            "shardcast_http_requests_total{shard=\"0\",route=\"metrics\",status=\"200\"}"
        ) >= 1
    );

    let usage = Http::connect(mport).request("GET", "/usage", b"");
    assert_eq!(usage.status, 200);
    let rss = usage.json()["memory"]["rss_bytes"]
        .as_u64()
        .expect("rss_bytes");
    assert!(rss > 1024 * 1024, "rss {rss}");

    Http::connect(mport)
        .request("GET", "/nope", b"")
        .expect_error(404);
    // The main port does not serve metrics.
    Http::connect(server.port)
        .request("GET", "/metrics", b"")
        .expect_error(404);
    match Ws::upgrade(mport, &app_path("app-key")) {
        Err(_) => {}
        Ok(_) => panic!("the metrics port must not accept WebSocket clients"),
    }
}

#[test]
fn refused_connections_are_counted_by_code() {
    let server = Server::start_with("[server.metrics]\nenabled = true\nport = 0\n");
    let mport = metrics_port(&server);
    expect_refused(server.port, &app_path("no-such-key"), 4001);
    let m = scrape(mport);
    assert_eq!(
        get(&m, "shardcast_connections_refused_total{code=\"4001\"}"),
        1
    );
    assert_eq!(get(&m, "shardcast_connections_opened_total"), 0);
}

#[test]
fn webhook_deliveries_and_retries_are_counted() {
    let receiver = Receiver::start();
    receiver.answer_next(&[500]);
    let config = format!(
        "[server.metrics]\nenabled = true\nport = 0\n[server.webhooks]\nbatch_window_ms = 10\n\n\
         [[apps]]\nid = \"app-id\"\nkey = \"app-key\"\nsecret = \"app-secret\"\n\
         [[apps.webhooks]]\nurl = \"{}\"\nevent_types = [\"channel_occupied\"]\n",
        receiver.url("/")
    );
    let server = Server::start_with(&config);
    let mport = metrics_port(&server);
    let mut ws = Ws::connect(server.port);
    ws.subscribe("counted");
    receiver.wait_events(1, Duration::from_secs(8));
    // The sender counts the delivery once the receiver's answer is in.
    assert!(
        wait_until(Duration::from_secs(5), || {
            get(&scrape(mport), "shardcast_webhook_deliveries_total") == 1
        }),
        "the delivery was not counted"
    );
    let m = scrape(mport);
    assert_eq!(get(&m, "shardcast_webhook_retries_total"), 1);
    assert_eq!(get(&m, "shardcast_webhook_deliveries_total"), 1);
    assert_eq!(get(&m, "shardcast_webhook_failures_total"), 0);
    assert_eq!(get(&m, "shardcast_webhook_pending_events"), 0);
}

#[test]
fn slow_consumer_closes_are_counted() {
    let server = Server::start_with(
        "[server.metrics]\nenabled = true\nport = 0\n[server.limits]\nmax_write_queue_kb = 64\n",
    );
    let mport = metrics_port(&server);
    let mut slow = Ws::connect_small_rcvbuf(server.port, 8 * 1024);
    slow.subscribe("firehose");
    // More than the kernel buffers can absorb for a client that never reads.
    let wmem_max: usize = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_wmem")
        .ok()
        .and_then(|s| s.split_whitespace().nth(2).and_then(|v| v.parse().ok()))
        .unwrap_or(4 * 1024 * 1024);
    const SIZE: usize = 16 * 1024;
    let data = "x".repeat(SIZE);
    let mut http = Http::connect(server.port);
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut sent = 0;
    loop {
        http.trigger(
            &DEV,
            &json!({"name":"big","channel":"firehose","data":data}),
        )
        .expect_ok_json();
        sent += SIZE;
        if sent > wmem_max + 2 * 1024 * 1024 || Instant::now() > deadline {
            break;
        }
        if sent % (256 * SIZE) == 0
            && get(&scrape(mport), "shardcast_slow_consumer_closes_total") > 0
        {
            break;
        }
    }
    let deadline = Instant::now() + WAIT;
    while get(&scrape(mport), "shardcast_slow_consumer_closes_total") == 0 {
        assert!(
            Instant::now() < deadline,
            "no slow consumer close after {sent} bytes"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    slow.shutdown();
    let deadline = Instant::now() + WAIT;
    loop {
        let m = scrape(mport);
        if m.get("shardcast_connections_closed_total{code=\"4100\"}") == Some(&1) {
            break;
        }
        assert!(Instant::now() < deadline, "close 4100 not counted: {m:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        server.log_text().contains("slow consumer closed"),
        "the close is logged"
    );
}
