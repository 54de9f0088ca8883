//! Clusters: two shardcast processes (2 shards each) joined through a
//! private Redis or NATS server started by the test on an ephemeral port.
//! Every scenario runs against both engines.
//!
//! Needs `redis-server` and `nats-server` (Debian packages of those names);
//! `scripts/test.sh` installs them when they are missing.

use crate::support::*;
use serde_json::json;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The test clusters' shared secret.
pub(crate) const CLUSTER_SECRET: &str = "it-cluster-secret-0123456789";

#[derive(Clone, Copy, Debug)]
pub(crate) enum Kind {
    Redis,
    Nats,
}

/// Every engine the cluster tests run against: each kind, in plain TCP
/// and over TLS (with a client certificate and a password).
const ENGINES: [(Kind, bool); 4] = [
    (Kind::Redis, false),
    (Kind::Nats, false),
    (Kind::Redis, true),
    (Kind::Nats, true),
];

/// The password the TLS engines require.
pub(crate) const ENGINE_PASSWORD: &str = "engine-pa55word";

/// A private CA, the engine's server certificate and a client certificate,
/// made for one engine (rcgen), in a directory of its own.
pub(crate) struct EngineCerts {
    dir: PathBuf,
}

impl EngineCerts {
    fn new(port: u16) -> EngineCerts {
        let dir = std::env::temp_dir().join(format!(
            "shardcast-engine-tls-{}-{port}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let ca_key = rcgen::KeyPair::generate().unwrap();
        // Distinct names: a leaf whose subject equals its issuer's looks
        // self-signed to OpenSSL (the engines' TLS).
        let named = |sans: Vec<String>, cn: &str| {
            let mut p = rcgen::CertificateParams::new(sans).unwrap();
            p.distinguished_name = rcgen::DistinguishedName::new();
            p.distinguished_name.push(rcgen::DnType::CommonName, cn);
            p
        };
        let mut ca_params = named(Vec::new(), "shardcast test CA");
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).unwrap();
        std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
        for (name, sans) in [
            (
                "server",
                vec!["127.0.0.1".to_string(), "localhost".to_string()],
            ),
            ("client", vec!["shardcast-node".to_string()]),
        ] {
            let key = rcgen::KeyPair::generate().unwrap();
            let cert = named(sans, name).signed_by(&key, &ca, &ca_key).unwrap();
            std::fs::write(dir.join(format!("{name}.pem")), cert.pem()).unwrap();
            std::fs::write(dir.join(format!("{name}.key")), key.serialize_pem()).unwrap();
        }
        EngineCerts { dir }
    }

    pub(crate) fn path(&self, file: &str) -> String {
        self.dir.join(file).display().to_string()
    }
}

impl Drop for EngineCerts {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A private Redis or NATS server, plain or TLS-only.
pub(crate) struct EngineProcess {
    pub(crate) kind: Kind,
    pub(crate) port: u16,
    tls: Option<EngineCerts>,
    child: Option<Child>,
}

pub(crate) fn find_binary(name: &str) -> PathBuf {
    let dirs = std::env::var("PATH").unwrap_or_default();
    let found = dirs
        .split(':')
        .chain(["/usr/sbin", "/usr/bin", "/usr/local/bin", "/sbin"])
        .map(|d| PathBuf::from(d).join(name))
        .find(|p| p.is_file());
    found.unwrap_or_else(|| {
        panic!("{name} not found: install it (Debian package {name}; scripts/test.sh does)")
    })
}

pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl EngineProcess {
    fn start(kind: Kind) -> EngineProcess {
        Self::start_with(kind, false)
    }

    /// `tls`: the engine speaks only TLS, asks for a client certificate
    /// signed by its CA, and a password.
    fn start_with(kind: Kind, tls: bool) -> EngineProcess {
        let port = free_port();
        let mut engine = EngineProcess {
            kind,
            port,
            tls: tls.then(|| EngineCerts::new(port)),
            child: None,
        };
        engine.spawn();
        engine
    }

    fn spawn(&mut self) {
        let port = self.port.to_string();
        let mut cmd = match (self.kind, &self.tls) {
            (Kind::Redis, None) => {
                let mut c = Command::new(find_binary("redis-server"));
                c.args(["--port", &port, "--bind", "127.0.0.1", "--save", ""])
                    .args(["--appendonly", "no", "--protected-mode", "no"]);
                c
            }
            (Kind::Redis, Some(certs)) => {
                let mut c = Command::new(find_binary("redis-server"));
                c.args(["--port", "0", "--tls-port", &port, "--bind", "127.0.0.1"])
                    .args(["--save", "", "--appendonly", "no"])
                    .args(["--tls-cert-file", &certs.path("server.pem")])
                    .args(["--tls-key-file", &certs.path("server.key")])
                    .args(["--tls-ca-cert-file", &certs.path("ca.pem")])
                    .args(["--tls-auth-clients", "yes"])
                    .args(["--requirepass", ENGINE_PASSWORD]);
                c
            }
            (Kind::Nats, None) => {
                let mut c = Command::new(find_binary("nats-server"));
                c.args(["-a", "127.0.0.1", "-p", &port]);
                c
            }
            (Kind::Nats, Some(certs)) => {
                let conf = certs.path("nats.conf");
                std::fs::write(
                    &conf,
                    format!(
                        "listen: 127.0.0.1:{port}\ntls {{\n  cert_file: \"{}\"\n  key_file: \"{}\"\n  ca_file: \"{}\"\n  verify: true\n}}\nauthorization {{\n  user: alice\n  password: \"{ENGINE_PASSWORD}\"\n}}\n",
                        certs.path("server.pem"),
                        certs.path("server.key"),
                        certs.path("ca.pem")
                    ),
                )
                .unwrap();
                let mut c = Command::new(find_binary("nats-server"));
                c.args(["-c", &conf]);
                c
            }
        };
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the engine");
        self.child = Some(child);
        let up = wait_until(Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok()
        });
        assert!(up, "{:?} did not start on port {}", self.kind, self.port);
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The cluster prefix of this engine's tests: fresh per engine (engines
    /// are private, but keep clusters apart anyway).
    pub(crate) fn prefix(&self) -> String {
        format!("it{}", self.port)
    }

    /// [`EngineProcess::config`] for a node that reaches this (plain)
    /// engine through `port` (a proxy the test controls).
    pub(crate) fn config_via(&self, port: u16, extra: &str) -> String {
        assert!(self.tls.is_none(), "a proxied engine is a plain one");
        self.config(extra).replace(
            &format!("127.0.0.1:{}\"", self.port),
            &format!("127.0.0.1:{port}\""),
        )
    }

    pub(crate) fn config(&self, extra: &str) -> String {
        let (adapter, url) = match (self.kind, &self.tls) {
            (Kind::Redis, None) => ("redis", format!("redis://127.0.0.1:{}", self.port)),
            (Kind::Nats, None) => ("nats", format!("nats://127.0.0.1:{}", self.port)),
            (Kind::Redis, Some(_)) => (
                "redis",
                format!("rediss://default:{ENGINE_PASSWORD}@127.0.0.1:{}", self.port),
            ),
            (Kind::Nats, Some(_)) => (
                "nats",
                format!("tls://alice:{ENGINE_PASSWORD}@127.0.0.1:{}", self.port),
            ),
        };
        let files = match &self.tls {
            None => String::new(),
            Some(certs) => format!(
                "ca_file = \"{}\"\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
                certs.path("ca.pem"),
                certs.path("client.pem"),
                certs.path("client.key")
            ),
        };
        let prefix = self.prefix();
        format!(
            "[cluster]\nadapter = \"{adapter}\"\nurl = \"{url}\"\nprefix = \"{prefix}\"\nnode_timeout_secs = 2\nsecret = \"{CLUSTER_SECRET}\"\n{files}\n{}",
            dev_app_with(&format!("enable_client_messages = true\n{extra}"))
        )
    }
}

impl Drop for EngineProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Waits until `server`'s log has `count` lines containing `needle`.
pub(crate) fn wait_log(server: &Server, needle: &str, count: usize, timeout: Duration) {
    let ok = wait_until(timeout, || {
        server.log_text().matches(needle).count() >= count
    });
    assert!(
        ok,
        "no {needle:?} (x{count}) in the log within {timeout:?}:\n{}",
        server.log_text()
    );
}

/// Waits until `port`'s node lists exactly `ids` as the members of a
/// presence channel (what other nodes told it has arrived).
fn wait_users(port: u16, channel: &str, ids: &[&str]) {
    let path = format!("/apps/app-id/channels/{channel}/users");
    let want: Vec<serde_json::Value> = ids.iter().map(|id| json!({ "id": id })).collect();
    let mut last = serde_json::Value::Null;
    let ok = wait_until(WAIT, || {
        last = get_json(port, &path, &[]);
        last["users"] == json!(want)
    });
    assert!(
        ok,
        "{channel} on port {port}: expected users {ids:?}, have {last}"
    );
}

/// Two nodes on one engine, each having heard the other.
pub(crate) fn two_nodes(engine: &EngineProcess) -> (Server, Server) {
    let a = Server::start_with(&engine.config(""));
    let b = Server::start_with(&engine.config(""));
    wait_log(&a, "is up", 1, Duration::from_secs(10));
    wait_log(&b, "is up", 1, Duration::from_secs(10));
    (a, b)
}

/// Connections on both shards of a node, subscribed to `channel`.
fn subscribers(port: u16, channel: &str) -> Vec<Ws> {
    let mut out = Vec::new();
    for shard in 0..2 {
        for _ in 0..2 {
            let mut ws = Ws::connect_on(port, shard);
            ws.subscribe(channel);
            out.push(ws);
        }
    }
    out
}

pub(crate) fn for_each_engine(test: impl Fn(&EngineProcess)) {
    for (kind, tls) in ENGINES {
        let engine = EngineProcess::start_with(kind, tls);
        eprintln!(
            "-- {kind:?}{} on port {}",
            if tls { " (TLS)" } else { "" },
            engine.port
        );
        test(&engine);
    }
}

/// Each engine kind in plain TCP only (for tests that talk to the engine
/// themselves).
pub(crate) fn for_each_plain_engine(test: impl Fn(&EngineProcess)) {
    for kind in [Kind::Redis, Kind::Nats] {
        let engine = EngineProcess::start(kind);
        eprintln!("-- {kind:?} on port {}", engine.port);
        test(&engine);
    }
}

/// A trigger on node A carrying the socket_id of a connection on node B
/// reaches every subscriber on A and B except that connection, once.
#[test]
fn trigger_on_one_node_reaches_both_nodes_except_the_named_socket() {
    for_each_engine(|engine| {
        let (a, b) = two_nodes(engine);
        let mut on_a = subscribers(a.port, "news");
        let mut on_b = subscribers(b.port, "news");
        let excluded = on_b[3].socket_id.clone();
        let body = json!({"name":"e1","channel":"news","data":"one","socket_id":excluded});
        let mut h = Http::connect(a.port);
        h.trigger(&DEV, &body).expect_ok_json();
        h.trigger(&DEV, &json!({"name":"e2","channel":"news","data":"two"}))
            .expect_ok_json();
        let (first, second) = (
            event_text("e1", "news", "one"),
            event_text("e2", "news", "two"),
        );
        for ws in on_a.iter_mut().chain(on_b[..3].iter_mut()) {
            ws.expect_text(&first);
            ws.expect_text(&second);
        }
        on_b[3].expect_text(&second);
        // Nothing twice: the same connection's marker is everyone's next
        // frame (on B it comes through the engine after e1 and e2). A's own
        // publications coming back to A through the engine would come before
        // B's batch below, which B sends after it got A's marker.
        let end = marker(&mut h, "news", "end");
        for ws in on_a.iter_mut().chain(on_b.iter_mut()) {
            ws.expect_text(&end);
        }
        // The other way round, a batch from B.
        let batch = json!({"batch":[
            {"name":"b1","channel":"news","data":"x"},
            {"name":"b2","channel":"news","data":"y"}]});
        Http::connect(b.port).batch(&DEV, &batch).expect_ok_json();
        for ws in on_a.iter_mut().chain(on_b.iter_mut()) {
            ws.expect_text(&event_text("b1", "news", "x"));
            ws.expect_text(&event_text("b2", "news", "y"));
        }
        // The engine's password is never logged (the URL is, without it).
        for node in [&a, &b] {
            let log = node.log_text();
            assert!(!log.contains(ENGINE_PASSWORD), "{log}");
            assert!(log.contains(&format!("127.0.0.1:{}", engine.port)), "{log}");
        }
    });
}

/// Client events cross nodes and are not echoed to their sender.
#[test]
fn client_events_reach_subscribers_on_the_other_node() {
    for_each_engine(|engine| {
        let (a, b) = two_nodes(engine);
        let mut sender = Ws::connect(a.port);
        sender.subscribe_private("private-chat");
        let mut far = Ws::connect(b.port);
        far.subscribe_private("private-chat");
        let mut near = Ws::connect(a.port);
        near.subscribe_private("private-chat");
        sender.send_client_event("client-hi", "private-chat", &json!({"n":1}));
        let expected = r#"{"event":"client-hi","channel":"private-chat","data":{"n":1}}"#;
        far.expect_text(expected);
        near.expect_text(expected);
        // No echo: from A itself the pong would come after it; through the
        // engine, far's reply (sent after far got it) would come after it.
        sender.ping();
        far.send_client_event("client-back", "private-chat", &json!({}));
        let back = r#"{"event":"client-back","channel":"private-chat","data":{}}"#;
        sender.expect_text(back);
        near.expect_text(back);
        // No second copy on B: the sender's next client event is far's next frame.
        sender.send_client_event("client-end", "private-chat", &json!({}));
        let end = r#"{"event":"client-end","channel":"private-chat","data":{}}"#;
        far.expect_text(end);
        near.expect_text(end);
    });
}

/// sendToUser and terminate_connections on node A reach the user's
/// connections on node B.
#[test]
fn send_to_user_and_terminate_reach_the_other_node() {
    for_each_engine(|engine| {
        let (a, b) = two_nodes(engine);
        let user = r#"{"id":"u-7"}"#;
        let mut on_b = Ws::connect(b.port);
        on_b.signin(user);
        // As pusher-js does after signing in.
        on_b.subscribe("#server-to-user-u-7");
        let mut other_on_b = Ws::connect(b.port);
        other_on_b.signin(r#"{"id":"u-8"}"#);
        other_on_b.subscribe("plain");
        // Everything on one HTTP connection to A, so its markers (through
        // the engine in order) are other_on_b's next frames.
        let mut h = Http::connect(a.port);
        let body = json!({"name":"note","channel":"#server-to-user-u-7","data":"hello"});
        h.trigger(&DEV, &body).expect_ok_json();
        on_b.expect_text(&event_text("note", "#server-to-user-u-7", "hello"));
        other_on_b.expect_text(&marker(&mut h, "plain", "1"));
        let r = h.post_signed(&DEV, "/apps/app-id/users/u-7/terminate_connections", "{}");
        assert_eq!(r.status, 200, "{}", r.text());
        on_b.expect_pusher_close(4009);
        other_on_b.expect_text(&marker(&mut h, "plain", "2"));
    });
}

/// The engine restarts mid-test: local delivery never stops, and delivery
/// across nodes resumes without restarting shardcast.
#[test]
fn delivery_resumes_after_the_engine_restarts() {
    for (kind, tls) in ENGINES {
        let mut engine = EngineProcess::start_with(kind, tls);
        let (a, b) = two_nodes(&engine);
        let mut on_a = Ws::connect(a.port);
        on_a.subscribe("live");
        let mut on_b = Ws::connect(b.port);
        on_b.subscribe("live");
        trigger(
            a.port,
            &DEV,
            &json!({"name":"before","channel":"live","data":"1"}),
        );
        on_a.expect_text(&event_text("before", "live", "1"));
        on_b.expect_text(&event_text("before", "live", "1"));

        engine.stop();
        // While the engine is down, a node's own subscribers still get
        // everything. (What it publishes for other nodes meanwhile is lost
        // with Redis; the NATS client holds it and sends it on reconnection.)
        trigger(
            a.port,
            &DEV,
            &json!({"name":"during","channel":"live","data":"2"}),
        );
        on_a.expect_text(&event_text("during", "live", "2"));
        engine.spawn();

        // Each node hears the other again once both links are back.
        let started = Instant::now();
        let mut n = 0;
        let resumed = wait_until(Duration::from_secs(20), || {
            n += 1;
            let expected = event_text(&format!("after{n}"), "live", "3");
            trigger(
                a.port,
                &DEV,
                &json!({"name":format!("after{n}"),"channel":"live","data":"3"}),
            );
            on_a.expect_text(&expected);
            // Earlier attempts (and "during") may arrive first.
            let deadline = Instant::now() + Duration::from_millis(300);
            while let Ok(f) = on_b.read_frame(deadline.saturating_duration_since(Instant::now())) {
                if f.text() == expected {
                    return true;
                }
            }
            false
        });
        assert!(
            resumed,
            "{kind:?}: no delivery across nodes 20 s after the restart; logs:\n{}\n---\n{}",
            a.log_text(),
            b.log_text()
        );
        eprintln!(
            "{kind:?}: resumed {:?} after the restart",
            started.elapsed()
        );
        // And it keeps working, in order.
        on_b.expect_silence(300);
        for i in 0..5 {
            let name = format!("steady{i}");
            trigger(
                a.port,
                &DEV,
                &json!({"name":name,"channel":"live","data":"4"}),
            );
        }
        for i in 0..5 {
            on_b.expect_text(&event_text(&format!("steady{i}"), "live", "4"));
        }
    }
}

/// Cluster settings are checked at start.
#[test]
fn bad_cluster_settings_are_named() {
    let cases = [
        ("[cluster]\nadapter = \"zookeeper\"\n", "cluster.adapter"),
        (
            "[cluster]\nadapter = \"redis\"\nurl = \"http://x\"\n",
            "cluster.url",
        ),
        ("[cluster]\nurl = \"redis://x\"\n", "cluster.url"),
        (
            "[cluster]\nadapter = \"nats\"\nprefix = \"a b\"\n",
            "cluster.prefix",
        ),
        (
            "[cluster]\nnode_timeout_secs = 0\n",
            "cluster.node_timeout_secs",
        ),
        // No secret: the error says how to set one.
        (
            "[cluster]\nadapter = \"redis\"\n",
            "invalid value for `cluster.secret`: required with cluster.adapter = \"redis\"",
        ),
        (
            "[cluster]\nadapter = \"nats\"\n",
            "SHARDCAST_CLUSTER_SECRET environment variable",
        ),
        (
            "[cluster]\nadapter = \"redis\"\nsecret = \"short\"\n",
            "invalid value for `cluster.secret`: 5 bytes; a cluster secret needs 16 or more",
        ),
        (
            "[cluster]\nadapter = \"redis\"\nsecret = \"0123456789abcdef\"\nsecret_file = \"s\"\n",
            "cluster.secret_file",
        ),
        (
            "[cluster]\nadapter = \"redis\"\nsecret_file = \"no-such-secret\"\n",
            "no-such-secret",
        ),
        (
            "[cluster]\nadapter = \"redis\"\nsecret = \"0123456789abcdef\"\ncert_file = \"c.pem\"\n",
            "invalid value for `cluster.key_file`: required with cluster.cert_file",
        ),
        (
            "[cluster]\nadapter = \"redis\"\nsecret = \"0123456789abcdef\"\ncredentials_file = \"x.creds\"\n",
            "invalid value for `cluster.credentials_file`: for the nats adapter only",
        ),
        // Files that cannot be used stop the start, named.
        (
            "[cluster]\nadapter = \"redis\"\nurl = \"rediss://127.0.0.1:1\"\nsecret = \"0123456789abcdef\"\nca_file = \"missing-ca.pem\"\n",
            "cluster.ca_file: cannot read",
        ),
        (
            "[cluster]\nadapter = \"redis\"\nurl = \"rediss://127.0.0.1:1\"\nsecret = \"0123456789abcdef\"\nca_file = \"c.toml\"\n",
            "c.toml has no PEM CERTIFICATE block",
        ),
        (
            "[cluster]\nadapter = \"redis\"\nsecret = \"0123456789abcdef\"\nca_file = \"c.toml\"\n",
            "has no PEM CERTIFICATE block",
        ),
        (
            "[cluster]\nadapter = \"nats\"\nsecret = \"0123456789abcdef\"\ncredentials_file = \"missing.creds\"\n",
            "cluster.credentials_file: cannot use",
        ),
    ];
    for (toml, key) in cases {
        let dir =
            std::env::temp_dir().join(format!("shardcast-cluster-bad-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.toml");
        std::fs::write(&path, toml).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_shardcast"))
            .args(["--host", "127.0.0.1", "--port", "0", "--config"])
            .arg(&path)
            .output()
            .unwrap();
        let log = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{toml}: {log}");
        assert!(log.contains(key), "{toml}: log lacks {key}: {log}");
    }
}

/// Presence across nodes: one user with sockets on both nodes is one
/// member (member_added once, member_removed once), snapshots list the
/// members of every node, and a node killed with SIGKILL takes its members
/// along within the node timeout.
#[test]
fn presence_members_are_per_user_across_nodes_and_a_dead_node_takes_its_members() {
    use crate::presence::{member_added_text, member_removed_text};
    for_each_engine(|engine| {
        let (mut a, b) = two_nodes(engine);
        let room = "presence-room";
        let mut watcher = Ws::connect(b.port);
        let p = watcher.subscribe_presence(room, r#"{"user_id":"w"}"#);
        assert_eq!(p["ids"], json!(["w"]));
        // Membership reaches the other node through the engine (within a
        // few milliseconds here); a snapshot taken on A before that would
        // not list w yet.
        wait_users(a.port, room, &["w"]);

        // u1 joins on A: the watcher on B hears it once.
        let mut u1_a = Ws::connect(a.port);
        let p = u1_a.subscribe_presence(room, r#"{"user_id":"u1","user_info":{"n":1}}"#);
        assert_eq!(p["count"], 2, "{p}");
        watcher.expect_text(&member_added_text(room, "u1", r#"{"n":1}"#));
        // u1 again on B: no news for anyone; its snapshot has everyone.
        let mut u1_b = Ws::connect(b.port);
        let p = u1_b.subscribe_presence(room, r#"{"user_id":"u1","user_info":{"n":1}}"#);
        assert_eq!(p["count"], 2, "{p}");
        // Barrier: a user joining on B from u1_b's shard, after u1_b's join
        // was answered; B tells its watcher, and A (through the engine) its
        // members, in order.
        presence_barrier(
            b.port,
            room,
            u1_b.shard(),
            "bar1",
            &mut [&mut watcher, &mut u1_a, &mut u1_b],
        );
        // u1 leaves A; still on B: no member_removed. (A handled the
        // unsubscribe before the ping; a barrier user joining from that shard
        // of A reaches B through the engine after u1's leave.)
        u1_a.unsubscribe(room);
        u1_a.ping();
        presence_barrier(
            a.port,
            room,
            u1_a.shard(),
            "bar2",
            &mut [&mut watcher, &mut u1_b],
        );
        // u1 leaves B too: removed, once.
        u1_b.close();
        watcher.expect_text(&member_removed_text(room, "u1"));
        presence_barrier(b.port, room, 0, "bar3", &mut [&mut watcher]);

        // u2 only on A; A dies without a word.
        let mut u2 = Ws::connect(a.port);
        u2.subscribe_presence(room, r#"{"user_id":"u2"}"#);
        watcher.expect_text(&member_added_text(room, "u2", "{}"));
        let killed = Instant::now();
        a.kill();
        let v = watcher.recv_json_within(Duration::from_secs(6));
        assert_eq!(v["event"], "pusher_internal:member_removed", "{v}");
        assert!(v["data"].as_str().unwrap().contains("\"u2\""), "{v}");
        eprintln!(
            "{:?}: member_removed {:?} after SIGKILL",
            engine.kind,
            killed.elapsed()
        );
        // A node that joins later learns the members already there.
        let c = Server::start_with(&engine.config(""));
        wait_log(&c, "is up", 1, Duration::from_secs(10));
        let mut late = Ws::connect(c.port);
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let p = late.subscribe_presence(room, r#"{"user_id":"late"}"#);
            if p["ids"]
                .as_array()
                .is_some_and(|ids| ids.iter().any(|i| i == "w"))
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the new node never learned of w: {p}"
            );
            late.unsubscribe(room);
            std::thread::sleep(Duration::from_millis(200));
        }
        watcher.expect_text(&member_added_text(room, "late", "{}"));
    });
}

/// Channel queries and trigger `info` answer for the whole cluster, the
/// same from every node; a dead node's subscribers drop out of the counts.
#[test]
fn channel_queries_answer_for_the_whole_cluster_from_every_node() {
    for_each_engine(|engine| {
        let (a, mut b) = two_nodes(engine);
        let mut keep = Vec::new();
        for (port, channel, n) in [
            (a.port, "q-news", 2),
            (b.port, "q-news", 3),
            (a.port, "q-a", 1),
            (b.port, "q-b", 1),
        ] {
            for _ in 0..n {
                let mut ws = Ws::connect(port);
                ws.subscribe(channel);
                keep.push(ws);
            }
        }
        let mut member = Ws::connect(b.port);
        member.subscribe_presence("presence-q", r#"{"user_id":"only-on-b"}"#);
        wait_users(a.port, "presence-q", &["only-on-b"]); // membership crosses nodes
        for port in [a.port, b.port] {
            let v = get_json(
                port,
                "/apps/app-id/channels",
                &[("info", "subscription_count")],
            );
            assert_eq!(
                v["channels"],
                json!({"q-news":{"subscription_count":5},"q-a":{"subscription_count":1},
                       "q-b":{"subscription_count":1},"presence-q":{"subscription_count":1}}),
                "from port {port}: {v}"
            );
            let v = get_json(
                port,
                "/apps/app-id/channels/presence-q",
                &[("info", "user_count,subscription_count")],
            );
            assert_eq!(
                v,
                json!({"occupied":true,"user_count":1,"subscription_count":1}),
                "{v}"
            );
            let v = get_json(port, "/apps/app-id/channels/presence-q/users", &[]);
            assert_eq!(v, json!({"users":[{"id":"only-on-b"}]}), "{v}");
            let v = get_json(
                port,
                "/apps/app-id/channels",
                &[("filter_by_prefix", "presence-"), ("info", "user_count")],
            );
            assert_eq!(v["channels"], json!({"presence-q":{"user_count":1}}), "{v}");
        }
        let r = Http::connect(a.port).trigger(
            &DEV,
            &json!({"name":"e","channel":"q-news","data":"d","info":"subscription_count"}),
        );
        assert_eq!(
            r.json(),
            json!({"channels":{"q-news":{"subscription_count":5}}})
        );
        // B dies: A answers with its own subscribers (after the node timeout
        // the query no longer waits for B either).
        b.kill();
        // Once A has taken B as gone (the node timeout), it answers alone.
        let expected = json!({"q-news":{"subscription_count":2},"q-a":{"subscription_count":1}});
        let mut v = json!(null);
        let alone = wait_until(Duration::from_secs(6), || {
            v = get_json(
                a.port,
                "/apps/app-id/channels",
                &[("info", "subscription_count")],
            );
            v["channels"] == expected
        });
        assert!(alone, "{v}");
    });
}

/// The node id a server's log gives ("cluster: node 0123abcd… joins").
fn node_id(server: &Server) -> u64 {
    let log = server.log_text();
    let line = log
        .lines()
        .find(|l| l.contains("cluster: node ") && l.contains(" joins through "))
        .unwrap_or_else(|| panic!("no node id in the log:\n{log}"));
    let hex = &line[line.find("cluster: node ").unwrap() + 14..][..16];
    u64::from_str_radix(hex, 16).unwrap()
}

/// Ends an absence check on a cluster's webhooks. For each channel of
/// `watched` and each node of `nodes`, a fence channel that this node
/// decides and the watched channel's owner shard owns is subscribed and
/// left by `ws`, after everything `ws` did, and its `channel_vacated` is
/// awaited. On each node the fence's webhook passes the same owner shard,
/// the same FIFO delay queue and the same sender as anything caused there
/// before it (on the other node, the cluster link carries the owner
/// shard's messages in order), so an unwanted webhook would have arrived
/// by then. Returns the events without the fences'.
fn cluster_fence(
    ws: &mut Ws,
    receiver: &crate::receiver::Receiver,
    nodes: &[u64],
    watched: &[&str],
    tag: &str,
) -> Vec<serde_json::Value> {
    use shardcast::apps::AppIdx;
    use shardcast::pusher::owned::{nodes::webhook_decider, owner_of};
    let mut names: Vec<String> = Vec::new();
    for channel in watched {
        let owner = owner_of(AppIdx(0), channel, 2);
        for &node in nodes {
            let name = (0..)
                .map(|i| format!("fence-{tag}-{i}"))
                .find(|n| {
                    owner_of(AppIdx(0), n, 2) == owner
                        && webhook_decider(nodes, AppIdx(0), n) == Some(node)
                })
                .unwrap();
            if !names.contains(&name) {
                names.push(name);
            }
        }
    }
    for name in &names {
        ws.subscribe(name);
        ws.unsubscribe(name);
    }
    for name in &names {
        receiver.wait_for(
            &format!("fence {name}"),
            WAIT,
            crate::receiver::is("channel_vacated", name),
        );
    }
    receiver
        .events()
        .into_iter()
        .filter(|e| !e["channel"].as_str().unwrap_or("").starts_with("fence-"))
        .collect()
}

/// Webhooks fire once per cluster, whichever nodes the subscribers are on:
/// `channel_occupied` / `channel_vacated` when the first subscriber anywhere
/// arrives and the last one anywhere leaves, `member_added` /
/// `member_removed` once per user; and a node killed with SIGKILL takes
/// its channels and members along (vacated and removed, once).
#[test]
fn webhooks_fire_once_per_cluster() {
    use crate::receiver::{count, is, Receiver};
    for_each_engine(|engine| {
        let receiver = Receiver::start();
        let hooks = format!(
            "[[apps.webhooks]]\nurl = \"{}\"\nevent_types = [\"channel_occupied\", \"channel_vacated\", \"member_added\", \"member_removed\"]\n\n[server.webhooks]\ndelay_ms = 200\nbatch_window_ms = 10\n",
            receiver.url("/hooks")
        );
        let a = Server::start_with(&engine.config(&hooks));
        let mut b = Server::start_with(&engine.config(&hooks));
        // Each has heard the other: its shards got the list of live nodes
        // before any message of the other node.
        wait_log(&a, "is up", 1, Duration::from_secs(10));
        wait_log(&b, "is up", 1, Duration::from_secs(10));
        let both = [node_id(&a), node_id(&b)];

        let mut on_a = Ws::connect(a.port);
        on_a.subscribe("wh-news");
        receiver.wait_for("occupied", WAIT, is("channel_occupied", "wh-news"));
        // B's owner has A's count before B's subscriber arrives.
        let known = wait_until(WAIT, || {
            get_json(b.port, "/apps/app-id/channels/wh-news", &[])["occupied"] == true
        });
        assert!(known, "B never learnt that wh-news is occupied on A");
        let mut on_b = Ws::connect(b.port);
        on_b.subscribe("wh-news");
        let room = "presence-wh";
        let mut u_a = Ws::connect(a.port);
        u_a.subscribe_presence(room, r#"{"user_id":"u"}"#);
        wait_users(b.port, room, &["u"]);
        let mut u_b = Ws::connect(b.port);
        u_b.subscribe_presence(room, r#"{"user_id":"u"}"#);
        receiver.wait_for("occupied", WAIT, is("channel_occupied", room));
        receiver.wait_for("added", WAIT, is("member_added", room));
        on_a.unsubscribe("wh-news");
        u_a.unsubscribe(room);
        // Nothing more may come: not for B's subscribers, not for A's leaving.
        cluster_fence(&mut on_b, &receiver, &both, &["wh-news", room], "b1");
        cluster_fence(&mut on_a, &receiver, &both, &["wh-news"], "a1");
        let events = cluster_fence(&mut u_a, &receiver, &both, &[room], "a2");
        assert_eq!(
            count(&events, "channel_occupied", "wh-news"),
            1,
            "{events:?}"
        );
        assert_eq!(count(&events, "channel_occupied", room), 1, "{events:?}");
        assert_eq!(count(&events, "member_added", room), 1, "{events:?}");
        assert_eq!(
            count(&events, "channel_vacated", "wh-news"),
            0,
            "{events:?}"
        );
        assert_eq!(count(&events, "member_removed", room), 0, "{events:?}");

        // The last subscribers leave on B: vacated and removed, once.
        on_b.unsubscribe("wh-news");
        u_b.close();
        receiver.wait_for("vacated", WAIT, is("channel_vacated", "wh-news"));
        receiver.wait_for("vacated", WAIT, is("channel_vacated", room));
        receiver.wait_for("removed", WAIT, is("member_removed", room));
        let events = cluster_fence(&mut on_b, &receiver, &both, &["wh-news", room], "b2");
        assert_eq!(
            count(&events, "channel_vacated", "wh-news"),
            1,
            "{events:?}"
        );
        assert_eq!(count(&events, "channel_vacated", room), 1, "{events:?}");
        assert_eq!(count(&events, "member_removed", room), 1, "{events:?}");

        // B dies holding a channel and a member: A reports both gone.
        let mut doomed = Ws::connect(b.port);
        doomed.subscribe_presence(room, r#"{"user_id":"v"}"#);
        receiver.wait_for("member_added v", WAIT, |e| {
            e["name"] == "member_added" && e["user_id"] == "v"
        });
        b.kill();
        receiver.wait_for("member_removed v", Duration::from_secs(6), |e| {
            e["name"] == "member_removed" && e["user_id"] == "v"
        });
        let vacated_twice = wait_until(WAIT, || {
            count(&receiver.events(), "channel_vacated", room) >= 2
        });
        assert!(vacated_twice, "{:?}", receiver.events());
        // A alone decides now; no third one.
        let events = cluster_fence(&mut on_a, &receiver, &both[..1], &[room], "a3");
        assert_eq!(count(&events, "channel_vacated", room), 2, "{events:?}");
        assert_eq!(count(&events, "member_removed", room), 2, "{events:?}");
        assert_eq!(count(&events, "channel_occupied", room), 2, "{events:?}");
    });
}

/// A cache channel keeps the last event triggered on any node: a new
/// subscriber on the other node gets it, and the cache query shows it there.
#[test]
fn cache_channels_keep_events_triggered_on_another_node() {
    for_each_engine(|engine| {
        let (a, b) = two_nodes(engine);
        trigger(
            a.port,
            &DEV,
            &json!({"name":"price","channel":"cache-rates","data":"42"}),
        );
        let expected = event_text("price", "cache-rates", "42");
        let ok = wait_until(Duration::from_secs(3), || {
            let mut ws = Ws::connect(b.port);
            ws.subscribe("cache-rates");
            ws.read_frame(Duration::from_millis(300))
                .is_ok_and(|f| f.text() == expected)
        });
        assert!(ok, "no cached event for a subscriber on the other node");
        let v = get_json(
            b.port,
            "/apps/app-id/channels/cache-rates",
            &[("info", "cache")],
        );
        assert_eq!(v["cache"]["data"], "42", "{v}");
    });
}

/// The metrics port reports the cluster link: messages sent (batched into
/// engine publishes) and received, and the other live nodes.
#[test]
fn metrics_report_the_cluster_link() {
    use crate::metrics::{metrics_port, scrape};
    let engine = EngineProcess::start(Kind::Redis);
    let with_metrics = format!(
        "{}\n[server.metrics]\nenabled = true\nport = 0\n",
        engine.config("")
    );
    let a = Server::start_with(&with_metrics);
    let b = Server::start_with(&with_metrics);
    wait_log(&a, "is up", 1, Duration::from_secs(10));
    wait_log(&b, "is up", 1, Duration::from_secs(10));
    let mut on_b = Ws::connect(b.port);
    on_b.subscribe("m-news");
    for i in 0..5 {
        trigger(
            a.port,
            &DEV,
            &json!({"name":format!("e{i}"),"channel":"m-news","data":"x"}),
        );
    }
    for i in 0..5 {
        on_b.expect_text(&event_text(&format!("e{i}"), "m-news", "x"));
    }
    let m_a = scrape(metrics_port(&a));
    let m_b = scrape(metrics_port(&b));
    let get = |m: &std::collections::HashMap<String, u64>, name: &str| {
        *m.get(&format!("shardcast_{name}"))
            .unwrap_or_else(|| panic!("no {name} in {m:?}"))
    };
    assert_eq!(get(&m_a, "cluster_nodes"), 1);
    assert!(get(&m_a, "cluster_messages_sent_total") >= 5);
    assert!(get(&m_a, "cluster_publishes_total") >= 1);
    assert!(get(&m_b, "cluster_messages_received_total") >= 5);
    for reason in shardcast::cluster::Refusal::ALL {
        let name = format!(
            "cluster_messages_refused_total{{reason=\"{}\"}}",
            reason.label()
        );
        assert_eq!(get(&m_a, &name), 0, "{name} on A");
        assert_eq!(get(&m_b, &name), 0, "{name} on B");
    }
    assert_eq!(get(&m_b, "cluster_envelopes_lost_total"), 0);
    assert_eq!(get(&m_a, "cluster_messages_dropped_total"), 0);
}
