//! Log lines a client can trigger at will are rate-limited: a burst of
//! refused connections is one line, and the next line a second later says
//! how many were held back.

use crate::support::*;
use std::time::{Duration, Instant};

const REFUSED: &str = "connection refused (4001)";

/// The `N` of every "(and N more like this ...)" in `lines`.
fn held_back(lines: &[&str]) -> u64 {
    lines
        .iter()
        .filter_map(|l| l.split("(and ").nth(1))
        .filter_map(|rest| rest.split(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[test]
fn a_burst_of_refused_connections_is_logged_once_a_second_with_a_count() {
    let server = Server::start();
    let path = app_path("no-such-key");
    let start = Instant::now();
    for _ in 0..30 {
        expect_refused(server.port, &path, 4001);
    }
    let burst = start.elapsed();
    // A second after the burst the next refusal is written, with the count.
    std::thread::sleep(Duration::from_millis(1100));
    expect_refused(server.port, &path, 4001);
    assert!(
        wait_until(WAIT, || server.log_text().contains("more like this")),
        "no summary line:\n{}",
        server.log_text()
    );
    // The summary is the last refusal line: every earlier one is in the log.
    let log = server.log_text();
    let lines: Vec<&str> = log.lines().filter(|l| l.contains(REFUSED)).collect();
    assert!(
        lines.len() as u64 <= 2 + burst.as_secs(),
        "{} lines for a {burst:?} burst:\n{log}",
        lines.len()
    );
    assert_eq!(
        lines.len() as u64 + held_back(&lines),
        31,
        "written plus held back is every refusal:\n{log}"
    );
}
