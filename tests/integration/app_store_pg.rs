//! Apps from a PostgreSQL table (issue 15): a table made with soketi's
//! documented SQL, `shardcast app-store init`, every live change seen on
//! both shards within 1 s, the database stopped and restarted mid-test,
//! and a table with a wrong type refused at start naming the column.
//!
//! Needs PostgreSQL (Debian package `postgresql`; scripts/test.sh installs it).

use crate::databases::*;
use crate::store_support::*;
use crate::support::*;
use std::time::{Duration, Instant};

/// How soon a committed change must be visible on every shard.
const BOUND: Duration = Duration::from_secs(1);

/// soketi's documented PostgreSQL table (docs: App Management, SQL
/// drivers, PostgreSQL), unchanged.
const SOKETI_TABLE: &str = r#"CREATE TABLE IF NOT EXISTS apps (
    id varchar(255) PRIMARY KEY,
    "key" varchar(255) NOT NULL,
    secret varchar(255) NOT NULL,
    max_connections integer NOT NULL,
    enable_client_messages smallint NOT NULL,
    "enabled" smallint NOT NULL,
    max_backend_events_per_sec integer NOT NULL,
    max_client_events_per_sec integer NOT NULL,
    max_read_req_per_sec integer NOT NULL,
    max_presence_members_per_channel integer DEFAULT NULL,
    max_presence_member_size_in_kb integer DEFAULT NULL,
    max_channel_name_length integer DEFAULT NULL,
    max_event_channels_at_once integer DEFAULT NULL,
    max_event_name_length integer DEFAULT NULL,
    max_event_payload_in_kb integer DEFAULT NULL,
    max_event_batch_size integer DEFAULT NULL,
    webhooks json,
    enable_user_authentication smallint NOT NULL
);"#;

/// A row as soketi's docs insert one.
fn insert(id: &str, key: &str, secret: &str) -> String {
    format!(
        "INSERT INTO apps (id, \"key\", secret, max_connections, enable_client_messages, \"enabled\", \
         max_backend_events_per_sec, max_client_events_per_sec, max_read_req_per_sec, webhooks, \
         enable_user_authentication) VALUES ('{id}', '{key}', '{secret}', -1, 1, 1, -1, -1, -1, '[]', 0)"
    )
}

#[test]
fn a_soketi_table_is_followed_live_and_survives_a_database_restart() {
    let mut pg = Postgres::start();
    pg.sql(SOKETI_TABLE);
    pg.sql(&insert("a", "key-a", "secret-a"));
    pg.sql(&insert("b", "key-b", "secret-b"));
    let toml = store_config("postgres", &pg.url(), "");
    let (ok, said) = run_init(&Server::write_config(&toml));
    assert!(ok, "app-store init failed: {said}");
    assert!(
        said.contains("ready") && !said.contains(DB_PASSWORD),
        "{said}"
    );
    let server = Server::start_with(&toml);
    let port = server.port;
    let a = creds("a", "key-a", "secret-a");
    let b = creds("b", "key-b", "secret-b");
    let c = creds("c", "key-c", "secret-c");
    let mut a_conns = one_per_shard(port, a.key);
    for ws in &mut a_conns {
        ws.subscribe("room");
    }
    let mut b_conns = one_per_shard(port, b.key);
    assert_eq!(trigger_status(port, &b, "room", "x"), 200);
    expect_refused(port, &app_path(c.key), 4001);

    // A new app is served.
    let t = Instant::now();
    pg.sql(&insert("c", "key-c", "secret-c"));
    within(t, BOUND, "a new app connects", || admitted(port, c.key));
    within(t, BOUND, "a new app's API", || {
        trigger_status(port, &c, "x", "1") == 200
    });

    // A rotated secret is used for the next request.
    let a2 = creds("a", "key-a", "rotated");
    let t = Instant::now();
    pg.sql("UPDATE apps SET secret = 'rotated' WHERE id = 'a'");
    within(t, BOUND, "the rotated secret", || {
        trigger_status(port, &a2, "room", "new") == 200
    });
    assert_eq!(trigger_status(port, &a, "room", "old"), 401);
    for ws in &mut a_conns {
        assert_eq!(ws.expect_event("e")["data"], "new");
    }

    // A disabled app's connections are closed on both shards, its API is 403.
    let t = Instant::now();
    pg.sql("UPDATE apps SET \"enabled\" = 0 WHERE id = 'b'");
    for ws in &mut b_conns {
        ws.expect_pusher_close(4003);
        assert!(t.elapsed() < BOUND, "4003 after {:?}", t.elapsed());
    }
    assert_eq!(trigger_status(port, &b, "room", "x"), 403);

    // A deleted app is unknown.
    let mut c_conn = Ws::connect_key(port, c.key);
    let t = Instant::now();
    pg.sql("DELETE FROM apps WHERE id = 'c'");
    c_conn.expect_pusher_close(4003);
    assert!(t.elapsed() < BOUND);
    assert_eq!(trigger_status(port, &c, "room", "x"), 404);
    expect_refused(port, &app_path(c.key), 4001);

    // The database goes away: known apps keep working, /ready says so.
    assert_eq!(ready_text(port), "OK");
    pg.stop();
    let t = Instant::now();
    within(
        t,
        Duration::from_secs(5),
        "/ready reports the store",
        || ready_text(port).contains("app store (postgres) unreachable"),
    );
    assert_eq!(trigger_status(port, &a2, "room", "during"), 200);
    for ws in &mut a_conns {
        assert_eq!(ws.expect_event("e")["data"], "during");
    }
    assert!(admitted(port, a.key));
    // Random keys cost the database nothing: they are answered from the mirror.
    expect_refused(port, &app_path("random-key"), 4001);

    // Back again: a change made while the store was away, and one after,
    // are both seen.
    pg.resume();
    pg.sql("UPDATE apps SET \"enabled\" = 1 WHERE id = 'b'");
    let t = Instant::now();
    within(t, Duration::from_secs(5), "the store reconnects", || {
        ready_text(port) == "OK"
    });
    within(
        t,
        Duration::from_secs(5),
        "the change made meanwhile",
        || trigger_status(port, &b, "room", "back") == 200,
    );
    let t = Instant::now();
    pg.sql("UPDATE apps SET secret = 'again' WHERE id = 'a'");
    let a3 = creds("a", "key-a", "again");
    within(t, BOUND, "a change after the restart", || {
        trigger_status(port, &a3, "room", "x") == 200
    });

    // The "is back" line is written by the log thread, maybe after the
    // change it announces was already applied: wait for it.
    assert!(
        wait_until(Duration::from_secs(5), || server
            .log_text()
            .contains("PostgreSQL is back")),
        "no \"PostgreSQL is back\" line: {}",
        server.log_text()
    );
    let log = server.log_text();
    assert_eq!(
        log.matches("unreachable").count(),
        1,
        "logged once per outage: {log}"
    );
    assert!(
        !log.contains(DB_PASSWORD),
        "the password is never logged: {log}"
    );
}

#[test]
fn a_table_without_the_trigger_is_read_every_poll_interval() {
    let pg = Postgres::start();
    pg.sql(SOKETI_TABLE);
    pg.sql(&insert("a", "key-a", "secret-a"));
    let server = Server::start_with(&store_config(
        "postgres",
        &pg.url(),
        "poll_interval_ms = 300",
    ));
    assert!(
        server.log_text().contains("has no shardcast trigger"),
        "{}",
        server.log_text()
    );
    assert!(admitted(server.port, "key-a"));
    let t = Instant::now();
    pg.sql(&insert("n", "key-n", "secret-n"));
    within(
        t,
        Duration::from_millis(300) + BOUND,
        "a new app within a poll",
        || admitted(server.port, "key-n"),
    );
    // SIGHUP does not end a server whose apps come from a database: sent
    // before SIGTERM, it is handled first, and the exit is the graceful one.
    let mut server = server;
    server.send_sighup();
    let status = server
        .stop_gracefully(Duration::from_secs(10))
        .expect("the server exits after SIGTERM");
    assert_eq!(
        status.code(),
        Some(0),
        "{status:?}: SIGHUP must not kill it"
    );
}

#[test]
fn init_creates_a_missing_table_and_bad_tables_are_refused_naming_the_column() {
    let pg = Postgres::start();
    let toml = store_config("postgres", &pg.url(), "table = \"my_apps\"");
    let config = Server::write_config(&toml);
    let (code, log) = run_config_to_exit(&config);
    assert_eq!(code, Some(1), "{log}");
    assert!(
        log.contains("my_apps") && log.contains("app-store init"),
        "{log}"
    );
    let (ok, said) = run_init(&config);
    assert!(ok, "{said}");
    pg.sql("INSERT INTO my_apps (id, \"key\", secret) VALUES ('z', 'key-z', 'secret-z')");
    let server = Server::start_with(&toml);
    assert!(admitted(server.port, "key-z"));
    drop(server);

    pg.sql("CREATE TABLE wrong (id varchar(255) PRIMARY KEY, \"key\" text, secret text, max_connections text)");
    let (code, log) = run_config_to_exit(&Server::write_config(&store_config(
        "postgres",
        &pg.url(),
        "table = \"wrong\"",
    )));
    assert_eq!(code, Some(1), "{log}");
    assert!(log.contains("wrong.max_connections has type text"), "{log}");
    assert!(!log.contains(DB_PASSWORD), "{log}");

    // A row that does not validate is refused by name; the others are served.
    pg.sql("INSERT INTO my_apps (id, \"key\", secret) VALUES ('bad', 'has/slash', 's')");
    let server = Server::start_with(&toml);
    assert!(admitted(server.port, "key-z"));
    let log = server.log_text();
    assert!(log.contains("my_apps[id=\"bad\"].key"), "{log}");
}

#[test]
fn every_node_on_the_table_sees_a_change_within_the_bound() {
    let pg = Postgres::start();
    let toml = store_config("postgres", &pg.url(), "");
    let (ok, said) = run_init(&Server::write_config(&toml));
    assert!(ok, "{said}");
    // Two nodes (processes) reading the same table.
    let nodes = [Server::start_with(&toml), Server::start_with(&toml)];
    for node in &nodes {
        expect_refused(node.port, &app_path("key-x"), 4001);
    }
    let t = Instant::now();
    pg.sql("INSERT INTO apps (id, \"key\", secret) VALUES ('x', 'key-x', 'secret-x')");
    for node in &nodes {
        within(t, BOUND, "a new app on every node", || {
            admitted(node.port, "key-x")
        });
    }
    let mut conns: Vec<Ws> = nodes
        .iter()
        .map(|n| Ws::connect_key(n.port, "key-x"))
        .collect();
    let t = Instant::now();
    pg.sql("UPDATE apps SET \"enabled\" = 0 WHERE id = 'x'");
    for ws in &mut conns {
        ws.expect_pusher_close(4003);
        assert!(t.elapsed() < BOUND, "4003 after {:?}", t.elapsed());
    }
}
