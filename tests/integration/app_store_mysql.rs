//! Apps from a MySQL/MariaDB table (issue 15): a table made with soketi's
//! documented SQL, read every `poll_interval_ms`; every live change seen
//! on both shards within one interval plus 1 s; the database stopped and
//! restarted mid-test; `app-store init` and a wrongly typed table.
//!
//! Needs MariaDB (Debian package `mariadb-server`; scripts/test.sh installs it).

use crate::databases::*;
use crate::store_support::*;
use crate::support::*;
use std::time::{Duration, Instant};

const POLL_MS: u64 = 300;

/// One poll interval plus 1 s.
fn bound() -> Duration {
    Duration::from_millis(POLL_MS) + Duration::from_secs(1)
}

/// soketi's documented MySQL table (docs: App Management, SQL drivers,
/// MySQL, with the app-level limit columns of its 0.29 release notes).
const SOKETI_TABLE: &str = "CREATE TABLE IF NOT EXISTS `apps` (
    `id` varchar(255) NOT NULL,
    `key` varchar(255) NOT NULL,
    `secret` varchar(255) NOT NULL,
    `max_connections` integer(10) NOT NULL,
    `enable_client_messages` tinyint(1) NOT NULL,
    `enabled` tinyint(1) NOT NULL,
    `max_backend_events_per_sec` integer(10) NOT NULL,
    `max_client_events_per_sec` integer(10) NOT NULL,
    `max_read_req_per_sec` integer(10) NOT NULL,
    `webhooks` json,
    `max_presence_members_per_channel` tinyint(1) NULL,
    `max_presence_member_size_in_kb` tinyint(1) NULL,
    `max_channel_name_length` tinyint(1) NULL,
    `max_event_channels_at_once` tinyint(1) NULL,
    `max_event_name_length` tinyint(1) NULL,
    `max_event_payload_in_kb` tinyint(1) NULL,
    `max_event_batch_size` tinyint(1) NULL,
    `enable_user_authentication` tinyint(1) NOT NULL,
    PRIMARY KEY (`id`)
);";

fn insert(id: &str, key: &str, secret: &str) -> String {
    format!(
        "INSERT INTO apps (`id`, `key`, `secret`, `max_connections`, `enable_client_messages`, `enabled`, \
         `max_backend_events_per_sec`, `max_client_events_per_sec`, `max_read_req_per_sec`, `webhooks`, \
         `enable_user_authentication`) VALUES ('{id}', '{key}', '{secret}', -1, 1, 1, -1, -1, -1, '[]', 0)"
    )
}

#[test]
fn a_soketi_mysql_table_is_polled_and_survives_a_database_restart() {
    let mut db = Mariadb::start();
    db.sql(SOKETI_TABLE);
    db.sql(&insert("a", "key-a", "secret-a"));
    db.sql(&insert("b", "key-b", "secret-b"));
    let server = Server::start_with(&store_config(
        "mysql",
        &db.url(),
        &format!("poll_interval_ms = {POLL_MS}"),
    ));
    let port = server.port;
    let a = creds("a", "key-a", "secret-a");
    let b = creds("b", "key-b", "secret-b");
    let c = creds("c", "key-c", "secret-c");
    let mut a_conn = Ws::connect_key(port, a.key);
    a_conn.subscribe("room");
    let mut b_conns: Vec<Ws> = (0..4).map(|_| Ws::connect_key(port, b.key)).collect();

    let t = Instant::now();
    db.sql(&insert("c", "key-c", "secret-c"));
    within(t, bound(), "a new app", || admitted(port, c.key));

    let a2 = creds("a", "key-a", "rotated");
    let t = Instant::now();
    db.sql("UPDATE apps SET `secret` = 'rotated' WHERE `id` = 'a'");
    within(t, bound(), "the rotated secret", || {
        trigger_status(port, &a2, "room", "new") == 200
    });
    assert_eq!(trigger_status(port, &a, "room", "old"), 401);
    assert_eq!(a_conn.expect_event("e")["data"], "new");

    let t = Instant::now();
    db.sql("UPDATE apps SET `enabled` = 0 WHERE `id` = 'b'");
    for ws in &mut b_conns {
        ws.expect_pusher_close(4003);
        assert!(t.elapsed() < bound(), "4003 after {:?}", t.elapsed());
    }
    assert_eq!(trigger_status(port, &b, "room", "x"), 403);

    let t = Instant::now();
    db.sql("DELETE FROM apps WHERE `id` = 'c'");
    within(t, bound(), "a deleted app", || {
        trigger_status(port, &c, "room", "x") == 404
    });
    expect_refused(port, &app_path(c.key), 4001);

    // The database goes away: known apps keep working, /ready says so.
    db.stop();
    let t = Instant::now();
    within(
        t,
        Duration::from_secs(10),
        "/ready reports the store",
        || ready_text(port).contains("app store (mysql) unreachable"),
    );
    assert_eq!(trigger_status(port, &a2, "room", "during"), 200);
    assert_eq!(a_conn.expect_event("e")["data"], "during");
    expect_refused(port, &app_path("random-key"), 4001);

    db.resume();
    db.sql("UPDATE apps SET `enabled` = 1 WHERE `id` = 'b'");
    let t = Instant::now();
    within(t, Duration::from_secs(10), "the store reads again", || {
        ready_text(port) == "OK"
    });
    within(
        t,
        Duration::from_secs(10),
        "the change made meanwhile",
        || trigger_status(port, &b, "room", "back") == 200,
    );
    // The "is back" line is written by the log thread, maybe after the
    // change it announces was already applied: wait for it.
    assert!(
        wait_until(Duration::from_secs(5), || server
            .log_text()
            .contains("MySQL is back")),
        "no \"MySQL is back\" line: {}",
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
fn mysql_init_creates_a_missing_table_and_a_wrong_type_is_refused() {
    let db = Mariadb::start();
    let toml = store_config("mysql", &db.url(), "");
    let config = Server::write_config(&toml);
    let (code, log) = run_config_to_exit(&config);
    assert_eq!(code, Some(1), "{log}");
    assert!(
        log.contains("app-store init") && !log.contains(DB_PASSWORD),
        "{log}"
    );
    let (ok, said) = run_init(&config);
    assert!(ok, "{said}");
    db.sql("INSERT INTO apps (`id`, `key`, `secret`) VALUES ('z', 'key-z', 'secret-z')");
    let server = Server::start_with(&toml);
    assert!(admitted(server.port, "key-z"));
    drop(server);

    db.sql(
        "CREATE TABLE wrong (`id` varchar(255), `key` text, `secret` text, `enabled` varchar(5))",
    );
    let (code, log) = run_config_to_exit(&Server::write_config(&store_config(
        "mysql",
        &db.url(),
        "table = \"wrong\"",
    )));
    assert_eq!(code, Some(1), "{log}");
    assert!(log.contains("wrong.enabled has type varchar"), "{log}");
}
