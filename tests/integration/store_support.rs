//! What the app store tests (file, PostgreSQL, MariaDB, admin API) share:
//! credentials, a trigger's status, a connection on each shard, and the
//! poll for a change that must be visible within a bound.

use crate::support::*;
use serde_json::json;
use std::time::{Duration, Instant};

pub fn creds(id: &'static str, key: &'static str, secret: &'static str) -> Creds {
    Creds { id, key, secret }
}

/// The status of a signed trigger of event `e` to `channel`.
pub fn trigger_status(port: u16, c: &Creds, channel: &str, data: &str) -> u16 {
    Http::connect(port)
        .trigger(c, &json!({"name": "e", "channel": channel, "data": data}))
        .status
}

/// Polls until `f` holds, failing after `bound` from `since`.
pub fn within(since: Instant, bound: Duration, what: &str, mut f: impl FnMut() -> bool) {
    loop {
        if f() {
            return;
        }
        assert!(since.elapsed() < bound, "{what}: not within {bound:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Whether a connection to `key` is admitted now.
pub fn admitted(port: u16, key: &str) -> bool {
    let mut ws = Ws::upgrade(port, &app_path(key)).expect("101");
    ws.recv_json()["event"] == "pusher:connection_established"
}

/// One connection of the app `key` on each of shards 0 and 1.
pub fn one_per_shard(port: u16, key: &str) -> Vec<Ws> {
    let mut on: [Option<Ws>; 2] = [None, None];
    for _ in 0..200 {
        if on.iter().all(Option::is_some) {
            break;
        }
        let ws = Ws::connect_key(port, key);
        let s = ws.shard() as usize;
        if on[s].is_none() {
            on[s] = Some(ws);
        } else {
            ws.close();
        }
    }
    on.into_iter()
        .map(|w| w.expect("a connection on each shard"))
        .collect()
}

/// The body of `GET /ready`.
pub fn ready_text(port: u16) -> String {
    Http::connect(port).request("GET", "/ready", b"").text()
}
