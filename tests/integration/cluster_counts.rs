//! Counts that hold for a whole cluster: two nodes (2 shards each) on a
//! private Redis or NATS server; every scenario runs on both engines.

use crate::cluster::{for_each_plain_engine, two_nodes};
use crate::support::*;
use serde_json::json;
use std::time::Duration;

const CONNECTIONS: &str = "/apps/app-id/connections";

/// Waits until `port` answers `GET /connections` with `n`.
fn wait_connections(port: u16, n: u64, timeout: Duration) {
    let mut last = json!(null);
    let ok = wait_until(timeout, || {
        last = get_json(port, CONNECTIONS, &[]);
        last == json!({ "connections": n })
    });
    assert!(ok, "port {port}: expected {n} connections, have {last}");
}

/// `GET /apps/{id}/connections` answers the cluster's total from either
/// node, follows closes on the other node, and once a SIGKILLed node is
/// taken as gone (node_timeout_secs = 2 in the test config) counts only
/// the living.
#[test]
fn connections_count_the_whole_cluster_from_every_node() {
    for_each_plain_engine(|engine| {
        let (a, mut b) = two_nodes(engine);
        let on_a: Vec<Ws> = (0..2).map(|s| Ws::connect_on(a.port, s)).collect();
        let mut on_b: Vec<Ws> = (0..2)
            .flat_map(|s| [Ws::connect_on(b.port, s), Ws::connect_on(b.port, s)])
            .collect();
        // (connect_on closes the connections that landed on the other
        // shard: wait for those closes to be seen.)
        for port in [a.port, b.port] {
            wait_connections(port, 6, WAIT);
        }
        on_b.pop();
        wait_connections(a.port, 5, WAIT);
        b.kill();
        // A dead node does not answer: A leaves it out after the query's
        // 1 s wait, and stops asking once it takes B as gone.
        wait_connections(a.port, 2, Duration::from_secs(8));
        drop(on_a);
        drop(on_b);
    });
}
