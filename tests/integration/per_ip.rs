//! `server.limits.max_connections_per_ip`: connections from one address,
//! on whichever shard they land, are refused with 4100 at the limit and
//! admitted again once one closes; with `client_ip_header` the last entry
//! of that header is the address, else the TCP peer's.

use crate::metrics::{metrics_port, scrape};
use crate::support::*;
use std::collections::HashSet;
use std::time::{Duration, Instant};

const LIMIT_MESSAGE: &str =
    "already has 3 connections, the most server.limits.max_connections_per_ip allows";

/// Opens `n` (≥ 2) connections with `headers`, at least one on each of the
/// two shards: one that would make the last and leave a shard empty is
/// closed and another opened (retrying while its count is on its way back).
fn open_on_both_shards(port: u16, headers: &[&str], n: usize) -> Vec<Ws> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut open: Vec<Ws> = Vec::new();
    while open.len() < n {
        assert!(
            Instant::now() < deadline,
            "could not get {n} connections over both shards"
        );
        match Ws::try_connect_with_headers(port, headers) {
            Ok(ws) => {
                let shards: HashSet<u64> = open.iter().chain([&ws]).map(Ws::shard).collect();
                if open.len() + 1 == n && shards.len() < 2 {
                    ws.close();
                } else {
                    open.push(ws);
                }
            }
            Err(v) => {
                // The count of the extra just closed is not back yet.
                assert_eq!(v["data"]["code"], 4100, "{v}");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
    let shards: HashSet<u64> = open.iter().map(Ws::shard).collect();
    assert_eq!(shards.len(), 2, "connections on shards {shards:?}");
    open
}

/// Connects with `headers`, retrying while refused with 4100 (a count
/// given back on another shard is on its way), within `timeout`.
fn connect_within(port: u16, headers: &[&str], timeout: Duration) -> Ws {
    let deadline = Instant::now() + timeout;
    loop {
        match Ws::try_connect_with_headers(port, headers) {
            Ok(ws) => return ws,
            Err(v) => {
                assert_eq!(v["data"]["code"], 4100, "{v}");
                assert!(
                    Instant::now() < deadline,
                    "still refused after {timeout:?}: {v}"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

#[test]
fn one_address_is_refused_at_its_limit_across_shards_and_admitted_after_a_close() {
    let server = Server::start_with(
        "[server.limits]\nmax_connections_per_ip = 3\n[server.metrics]\nenabled = true\nport = 0\n",
    );
    let port = server.port;
    // Without client_ip_header, headers are ignored: all of these are 127.0.0.1.
    let mut open = open_on_both_shards(port, &["X-Forwarded-For: 198.51.100.1"], 3);
    for headers in [
        &["X-Forwarded-For: 198.51.100.2"][..],
        &["X-Real-IP: 198.51.100.3"][..],
        &[][..],
    ] {
        let message = expect_refused_with_headers(port, headers, 4100);
        assert!(message.contains(LIMIT_MESSAGE), "{message}");
    }
    // The open ones are unaffected.
    for ws in open.iter_mut() {
        ws.ping();
    }
    // A connection that goes away without a close handshake gives its count back.
    let gone = open.pop().unwrap();
    gone.shutdown();
    drop(gone);
    let mut again = connect_within(port, &[], WAIT);
    again.ping();
    // The refusals took no count: the node is at the limit again, no further.
    let message = expect_refused(port, &app_path("app-key"), 4100);
    assert!(message.contains(LIMIT_MESSAGE), "{message}");
    // A clean close gives its count back too.
    open.pop().unwrap().close();
    connect_within(port, &[], WAIT).ping();

    let m = scrape(metrics_port(&server));
    // Four refusals above, and any retry while a count was on its way back.
    let refused = m
        .get("shardcast_connections_refused_total{code=\"4100\"}")
        .copied();
    assert!(refused.is_some_and(|n| n >= 4), "{m:?}");
    assert!(
        wait_until(WAIT, || server
            .log_text()
            .contains("it has max_connections_per_ip 3")),
        "no refusal logged"
    );
}

#[test]
fn behind_a_proxy_the_last_forwarded_entry_counts() {
    let server = Server::start_with(
        "[server.limits]\nmax_connections_per_ip = 3\nclient_ip_header = \"X-Forwarded-For\"\n",
    );
    let port = server.port;
    let proxied = "X-Forwarded-For: 10.0.0.1, 203.0.113.5";
    let _open = open_on_both_shards(port, &[proxied], 3);
    let message = expect_refused_with_headers(port, &[proxied], 4100);
    assert!(message.contains(LIMIT_MESSAGE), "{message}");
    // The same address however the client spells the earlier entries, or
    // the header's name, or on a second header line.
    for headers in [
        &["X-Forwarded-For: 6.6.6.6, 203.0.113.5"][..],
        &["x-forwarded-for: 203.0.113.5"][..],
        &["X-Forwarded-For: 1.2.3.4", "X-Forwarded-For: 203.0.113.5"][..],
    ] {
        expect_refused_with_headers(port, headers, 4100);
    }
    // Another last entry is another address.
    let mut other = Ws::connect_with_headers(port, &["X-Forwarded-For: 10.0.0.1, 198.51.100.7"]);
    let mut swapped = Ws::connect_with_headers(port, &["X-Forwarded-For: 203.0.113.5, 10.0.0.1"]);
    other.ping();
    swapped.ping();

    // A missing or unparsable header counts as the peer, 127.0.0.1.
    let _peer: Vec<Ws> = [
        &[][..],
        &["X-Forwarded-For: garbage"][..],
        &["X-Forwarded-For: 10.0.0.1, 203.0.113.5:443"][..],
    ]
    .into_iter()
    .map(|headers| Ws::connect_with_headers(port, headers))
    .collect();
    let message = expect_refused_with_headers(port, &["X-Forwarded-For: [::1]"], 4100);
    assert!(message.contains(LIMIT_MESSAGE), "{message}");
}

#[test]
fn off_by_default() {
    let server = Server::start();
    let open: Vec<Ws> = (0..6).map(|_| Ws::connect(server.port)).collect();
    assert_eq!(open.len(), 6);
}
