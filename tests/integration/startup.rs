//! Start-up: a port another process listens on stops the server with a
//! message naming it (instead of sharing it through SO_REUSEPORT), and the
//! development app listens on loopback only unless a host is given.

use crate::support::*;
use serde_json::json;
use std::time::Duration;

/// The server at `port` still delivers a trigger to a subscriber on each shard.
fn still_serves(port: u16) {
    let mut clients = connect_spread(port, 1);
    for ws in clients.iter_mut() {
        ws.subscribe("alive");
    }
    trigger(
        port,
        &DEV,
        &json!({"name":"e","channel":"alive","data":"still here"}),
    );
    for ws in clients.iter_mut() {
        ws.expect_text(&event_text("e", "alive", "still here"));
    }
}

#[test]
fn a_second_server_on_a_taken_port_exits_naming_it() {
    let first = Server::start();
    let port = first.port.to_string();
    let cpus = two_cpus();
    let (code, log) = run_to_exit(
        &["--host", "127.0.0.1", "--port", &port, "--cpus", &cpus],
        Duration::from_secs(10),
    );
    assert_eq!(code, Some(1), "log:\n{log}");
    assert!(
        log.contains(&format!("127.0.0.1:{port}")) && log.contains("another process"),
        "the error names the address and says why: {log}"
    );
    assert!(!log.contains("listening on"), "{log}");
    still_serves(first.port);
}

#[test]
fn a_taken_metrics_port_stops_the_server_naming_it() {
    // Any listener, not just another shardcast.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let metrics = taken.local_addr().unwrap().port();
    let config = std::env::temp_dir().join(format!(
        "shardcast-it-metrics-taken-{}-{metrics}.toml",
        std::process::id()
    ));
    std::fs::write(
        &config,
        format!("[server.metrics]\nenabled = true\nport = {metrics}\n"),
    )
    .unwrap();
    let (code, log) = run_config_to_exit(&config);
    let _ = std::fs::remove_file(&config);
    assert_eq!(code, Some(1), "log:\n{log}");
    assert!(
        log.contains(&format!("127.0.0.1:{metrics}"))
            && log.contains("another process")
            && log.contains("server.metrics.port"),
        "{log}"
    );
}

#[test]
fn the_dev_app_without_a_host_listens_on_loopback_and_says_so() {
    let cpus = two_cpus();
    let server = Server::start_args(&["--port", "0", "--cpus", &cpus]);
    let log = server.log_text();
    let line = log
        .lines()
        .find(|l| l.contains("development app"))
        .unwrap_or_else(|| panic!("no development app line in:\n{log}"));
    for words in ["loopback only (127.0.0.1)", "--host 0.0.0.0", "[[apps]]"] {
        assert!(line.contains(words), "`{words}` missing from: {line}");
    }
    assert!(log.contains(&format!("listening on 127.0.0.1:{}", server.port)));
    let mut ws = Ws::connect(server.port);
    ws.ping();
}
