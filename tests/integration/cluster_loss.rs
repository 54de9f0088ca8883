//! Cluster state that survives loss: a node cut off from the engine (by a
//! TCP proxy the test controls) keeps serving its clients, says it is not
//! ready, and when the link comes back both sides converge to the true
//! presence members with each change announced once; a node whose link
//! queue overflows repairs the others' view of it with a full sync.

use crate::cluster::{for_each_plain_engine, wait_log};
use crate::metrics::{metrics_port, scrape};
use crate::support::*;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A TCP proxy to the engine that the test can cut (every connection
/// through it dropped, new ones closed at once) and heal.
pub(crate) struct Proxy {
    pub(crate) port: u16,
    cut: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    open: Arc<Mutex<Vec<TcpStream>>>,
}

impl Proxy {
    pub(crate) fn start(upstream: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let cut = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let open: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (c, s, o) = (cut.clone(), stop.clone(), open.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = client else { continue };
                if c.load(Ordering::SeqCst) {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    continue;
                };
                let mut open = o.lock().unwrap();
                open.push(client.try_clone().unwrap());
                open.push(server.try_clone().unwrap());
                pump(client.try_clone().unwrap(), server.try_clone().unwrap());
                pump(server, client);
            }
        });
        Proxy {
            port,
            cut,
            stop,
            open,
        }
    }

    /// Drops every connection through the proxy and refuses new ones.
    pub(crate) fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for s in self.open.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    pub(crate) fn heal(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.cut();
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// Copies `from` to `to` until either ends.
fn pump(mut from: TcpStream, mut to: TcpStream) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 16 * 1024];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = to.shutdown(Shutdown::Both);
        let _ = from.shutdown(Shutdown::Both);
    });
}

/// The user ids a node lists for a presence channel.
fn users(port: u16, channel: &str) -> BTreeSet<String> {
    let v = get_json(port, &format!("/apps/app-id/channels/{channel}/users"), &[]);
    v["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["id"].as_str().unwrap().to_string())
        .collect()
}

fn wait_users(port: u16, channel: &str, want: &[&str], within: Duration) {
    let want: BTreeSet<String> = want.iter().map(|s| s.to_string()).collect();
    let ok = wait_until(within, || users(port, channel) == want);
    assert!(
        ok,
        "node {port} lists {:?} in {channel}, not {want:?} within {within:?}",
        users(port, channel)
    );
}

/// Two nodes that have heard each other, B reaching the engine through a
/// proxy the test can cut; both say not ready 1 s after their link is cut.
pub(crate) fn nodes_with_b_behind_a_proxy(
    engine: &crate::cluster::EngineProcess,
) -> (Server, Proxy, Server) {
    let timing = "[cluster]\nengine_timeout_secs = 1\n";
    let a = Server::start_with(&engine.config("").replace("[cluster]\n", timing));
    let proxy = Proxy::start(engine.port);
    let b = Server::start_with(
        &engine
            .config_via(proxy.port, "")
            .replace("[cluster]\n", timing),
    );
    wait_log(&a, "is up", 1, Duration::from_secs(10));
    wait_log(&b, "is up", 1, Duration::from_secs(10));
    (a, proxy, b)
}

pub(crate) fn ready(port: u16) -> u16 {
    Http::connect(port).request("GET", "/ready", b"").status
}

fn join(port: u16, channel: &str, user: &str) -> Ws {
    let mut ws = Ws::connect(port);
    ws.subscribe_presence(channel, &format!(r#"{{"user_id":"{user}"}}"#));
    ws
}

/// Reads member events from `ws` until both barrier users' member_added
/// arrived; returns the events before and between them (other users'), as
/// "added X" / "removed X", sorted.
fn member_events_until(ws: &mut Ws, channel: &str, barriers: &[&str]) -> Vec<String> {
    let mut seen = Vec::new();
    let mut waiting: BTreeSet<&str> = barriers.iter().copied().collect();
    while !waiting.is_empty() {
        let v = ws.recv_json();
        let event = v["event"].as_str().unwrap_or_default().to_string();
        assert_eq!(v["channel"], channel, "{v}");
        let data: Value = serde_json::from_str(v["data"].as_str().unwrap()).unwrap();
        let user = data["user_id"].as_str().unwrap().to_string();
        let kind = match event.as_str() {
            "pusher_internal:member_added" => "added",
            "pusher_internal:member_removed" => "removed",
            other => panic!("unexpected {other}: {v}"),
        };
        if kind == "added" && waiting.remove(user.as_str()) {
            continue;
        }
        seen.push(format!("{kind} {user}"));
    }
    seen.sort();
    seen
}

/// A node cut off from the engine serves its own clients, reports not
/// ready, and after the link heals both nodes list exactly the members
/// that are really there; the watchers on each side hear each change that
/// happened on the other side once, and nothing of members that came and
/// went during the cut.
#[test]
fn a_partitioned_node_serves_its_clients_and_converges_when_the_link_heals() {
    for_each_plain_engine(|engine| {
        let room = "presence-part";
        let (a, proxy, b) = nodes_with_b_behind_a_proxy(engine);
        let mut wa = join(a.port, room, "wa");
        let _a1 = join(a.port, room, "a1");
        let mut wb = join(b.port, room, "wb");
        let b1 = join(b.port, room, "b1");
        let all = ["a1", "b1", "wa", "wb"];
        for port in [a.port, b.port] {
            wait_users(port, room, &all, Duration::from_secs(5));
        }
        let mut news_b = Ws::connect(b.port);
        news_b.subscribe("news");
        // Barrier members, one per side: what the watchers heard so far
        // comes before them.
        let _da = join(a.port, room, "da");
        let _db = join(b.port, room, "db");
        let _ = member_events_until(&mut wa, room, &["da", "db"]);
        let _ = member_events_until(&mut wb, room, &["da", "db"]);

        proxy.cut();
        // Each side takes the other as gone after node_timeout_secs (2 s).
        wait_users(a.port, room, &["a1", "da", "wa"], Duration::from_secs(8));
        wait_users(b.port, room, &["b1", "db", "wb"], Duration::from_secs(8));
        assert!(
            wait_until(Duration::from_secs(5), || ready(b.port) == 503),
            "B never said it is cut off"
        );
        assert_eq!(ready(a.port), 200, "A still hears the engine");
        // B keeps serving its own clients.
        trigger(
            b.port,
            &DEV,
            &json!({"name":"local","channel":"news","data":"1"}),
        );
        news_b.expect_text(&event_text("local", "news", "1"));
        // Changes on both sides while cut off.
        drop(b1);
        let _b2 = join(b.port, room, "b2");
        drop(_a1);
        let _a2 = join(a.port, room, "a2");
        wait_users(a.port, room, &["a2", "da", "wa"], Duration::from_secs(5));
        wait_users(b.port, room, &["b2", "db", "wb"], Duration::from_secs(5));
        // What the watchers heard up to now, each once.
        assert_eq!(
            member_events_until(&mut wa, room, &["a2"]),
            ["removed a1", "removed b1", "removed db", "removed wb"]
        );
        assert_eq!(
            member_events_until(&mut wb, room, &["b2"]),
            ["removed a1", "removed b1", "removed da", "removed wa"]
        );

        proxy.heal();
        let truth = ["a2", "b2", "da", "db", "wa", "wb"];
        for port in [a.port, b.port] {
            wait_users(port, room, &truth, Duration::from_secs(15));
        }
        assert!(
            wait_until(Duration::from_secs(5), || ready(b.port) == 200),
            "B still not ready after the link healed"
        );
        // Barriers from both sides: anything the heal made either owner
        // send comes before these.
        let _late_a = join(a.port, room, "late-a");
        let _late_b = join(b.port, room, "late-b");
        assert_eq!(
            member_events_until(&mut wa, room, &["late-a", "late-b"]),
            ["added b2", "added db", "added wb"],
            "A's watcher: the other side's members, once, and no ghost"
        );
        assert_eq!(
            member_events_until(&mut wb, room, &["late-a", "late-b"]),
            ["added a2", "added da", "added wa"],
            "B's watcher: the other side's members, once, and no ghost"
        );
    });
}

/// A node whose link queue is far too small for a burst of membership
/// changes drops messages (counted) and repairs the other node's view with
/// a full sync: the other node lists the members there are, both when they
/// join and when they leave, and its watcher hears each change once.
#[test]
fn a_node_whose_link_queue_overflowed_repairs_the_others_view() {
    for_each_plain_engine(|engine| {
        let small = "link_queue = 2\n";
        let a = Server::start_with(&engine.config(""));
        let b_config = format!(
            "{}\n[server.metrics]\nenabled = true\nport = 0\n",
            engine
                .config("")
                .replace("[cluster]\n", &format!("[cluster]\n{small}"))
        );
        let b = Server::start_with(&b_config);
        wait_log(&a, "is up", 1, Duration::from_secs(10));
        wait_log(&b, "is up", 1, Duration::from_secs(10));
        let rooms: Vec<String> = (0..40).map(|i| format!("presence-burst-{i}")).collect();
        let mut watcher = join(a.port, &rooms[0], "watcher");
        // B knows the watcher before anyone on B joins (else a member_added
        // could come between the joins' subscription_succeeded answers).
        wait_users(b.port, &rooms[0], &["watcher"], Duration::from_secs(5));
        // A holder on B joins every room first, so B's engine subscriptions
        // for the rooms are open before the burst: a node's first
        // subscriber of a channel waits for the engine, which would spread
        // the burst out over 40 round trips and let the link keep up.
        let mut holder = Ws::connect(b.port);
        let holder_data = r#"{"user_id":"holder"}"#;
        for room in &rooms {
            let auth = presence_auth(&holder.socket_id, room, holder_data);
            holder.send_subscribe(room, Some(&auth), Some(holder_data));
            holder.expect_event("pusher_internal:subscription_succeeded");
        }
        // A knows the holder everywhere before the burst joins.
        wait_users(
            a.port,
            &rooms[0],
            &["holder", "watcher"],
            Duration::from_secs(15),
        );
        for room in &rooms[1..] {
            wait_users(a.port, room, &["holder"], Duration::from_secs(15));
        }
        // One connection on B joins all 40 at once: 40 member messages into
        // a queue of 2.
        let dropped_before = scrape(metrics_port(&b))["shardcast_cluster_messages_dropped_total"];
        let mut burst = Ws::connect(b.port);
        let data = r#"{"user_id":"u"}"#;
        for room in &rooms {
            let auth = presence_auth(&burst.socket_id, room, data);
            burst.send_subscribe(room, Some(&auth), Some(data));
        }
        // Answers come from each channel's owner shard, in any order.
        let mut joined = BTreeSet::new();
        for _ in &rooms {
            let v = burst.expect_event("pusher_internal:subscription_succeeded");
            joined.insert(v["channel"].as_str().unwrap().to_string());
        }
        assert_eq!(joined, rooms.iter().cloned().collect());
        for room in &rooms {
            let want: &[&str] = if room == &rooms[0] {
                &["holder", "u", "watcher"]
            } else {
                &["holder", "u"]
            };
            wait_users(a.port, room, want, Duration::from_secs(15));
        }
        let m = scrape(metrics_port(&b));
        assert!(
            m["shardcast_cluster_messages_dropped_total"] > dropped_before,
            "the burst never overflowed the queue ({dropped_before} dropped before it): {m:?}"
        );
        assert!(b.log_text().contains("a full sync follows"));
        // And all leave at once.
        burst.send_close(1000);
        burst.shutdown();
        for room in &rooms {
            let want: &[&str] = if room == &rooms[0] {
                &["holder", "watcher"]
            } else {
                &["holder"]
            };
            wait_users(a.port, room, want, Duration::from_secs(15));
        }
        let _late = join(b.port, &rooms[0], "late");
        assert_eq!(
            member_events_until(&mut watcher, &rooms[0], &["late"]),
            ["added holder", "added u", "removed u"]
        );
    });
}
