//! Start-up: a port another process listens on stops the server with a
//! message naming it (instead of sharing it through SO_REUSEPORT), and the
//! development app listens on loopback only unless a host is given; a CPU
//! listed twice runs both its shards on one executor thread, and a mixed
//! layout (two CPUs, two shards each) joins rings and in-thread queues.

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

/// The names of the threads of process `pid`.
fn thread_names(pid: u32) -> Vec<String> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("the server's threads");
    tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .map(|name| name.trim().to_string())
        .collect()
}

/// Every io_uring ring of the server is 4096 entries deep (the kernel's
/// poll table then has its most buckets, so the cancel glommio makes each
/// reactor turn walks 1/256 of the open connections, not 1/8: README,
/// "The reactor's ring"). Read from `/proc/{pid}/fdinfo`.
#[test]
fn io_uring_rings_are_4096_entries_deep() {
    let server = Server::start();
    let pid = server.pid();
    let mut masks = Vec::new();
    for fd in std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap() {
        let fd = fd.unwrap();
        let Ok(target) = std::fs::read_link(fd.path()) else {
            continue; // closed meanwhile
        };
        if target.to_string_lossy() != "anon_inode:[io_uring]" {
            continue;
        }
        let info = format!("/proc/{pid}/fdinfo/{}", fd.file_name().to_string_lossy());
        let Ok(info) = std::fs::read_to_string(info) else {
            continue;
        };
        let mask = info
            .lines()
            .find_map(|l| l.strip_prefix("SqMask:"))
            .unwrap_or_else(|| panic!("no SqMask in {info}"))
            .trim()
            .to_string();
        masks.push(mask);
    }
    // Three rings (main, latency, poll) for each of the two executors.
    assert!(masks.len() >= 3, "io_uring rings found: {masks:?}");
    assert!(
        masks.iter().all(|m| m == "0xfff"),
        "SqMask per ring: {masks:?}"
    );
}

#[test]
fn a_cpu_listed_twice_runs_both_shards_on_one_executor() {
    for (layout, present, absent) in [
        (
            Layout::CoHosted,
            &["shards-0-1"][..],
            &["shard-0", "shard-1"][..],
        ),
        (
            Layout::Apart,
            &["shard-0", "shard-1"][..],
            &["shards-0-1"][..],
        ),
    ] {
        let cpus = layout.cpus();
        if matches!(layout, Layout::Apart)
            && cpus
                .split(',')
                .collect::<Vec<_>>()
                .windows(2)
                .any(|w| w[0] == w[1])
        {
            continue; // a one-CPU machine has no apart layout
        }
        let server = Server::start_args(&["--host", "127.0.0.1", "--port", "0", "--cpus", &cpus]);
        let names = thread_names(server.pid());
        for name in present {
            assert!(
                names.iter().any(|n| n == name),
                "{layout:?}: no thread {name} in {names:?}"
            );
        }
        for name in absent {
            assert!(
                !names.iter().any(|n| n == name),
                "{layout:?}: thread {name} in {names:?}"
            );
        }
        assert!(server
            .log_text()
            .contains(&format!("2 shards on CPUs {cpus}")));
        // Both shards accept and serve, and reach each other.
        still_serves(server.port);
    }
}

#[test]
fn four_shards_two_per_cpu_reach_each_other_over_rings_and_queues() {
    let two = two_cpus();
    let (a, b) = two.split_once(',').expect("two CPUs");
    let cpus = format!("{a},{a},{b},{b}");
    let server = Server::start_args(&["--host", "127.0.0.1", "--port", "0", "--cpus", &cpus]);
    if a != b {
        let names = thread_names(server.pid());
        for name in ["shards-0-1", "shards-2-3"] {
            assert!(
                names.iter().any(|n| n == name),
                "no thread {name} in {names:?}"
            );
        }
    }
    let mut subs: Vec<Ws> = (0..4).map(|s| Ws::connect_on(server.port, s)).collect();
    for ws in subs.iter_mut() {
        ws.subscribe("mixed");
    }
    // Each trigger on a fresh HTTP connection, so they land on various
    // shards; every subscriber gets every event (in any order: events
    // published on different shards take different routes).
    for n in 0..12 {
        trigger(
            server.port,
            &DEV,
            &json!({"name":"e","channel":"mixed","data":n.to_string()}),
        );
    }
    let mut want: Vec<String> = (0..12)
        .map(|n| event_text("e", "mixed", &n.to_string()))
        .collect();
    want.sort();
    for ws in subs.iter_mut() {
        let mut got: Vec<String> = (0..12)
            .map(|_| ws.recv_within(Duration::from_secs(5)).text())
            .collect();
        got.sort();
        assert_eq!(got, want, "shard {}", ws.shard());
    }
}
