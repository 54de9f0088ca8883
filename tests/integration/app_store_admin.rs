//! The admin API (`/admin/apps` on the metrics port, bearer
//! `server.admin.token`): off without a token, 401 with a wrong one, the
//! file store read-only (409), and with PostgreSQL and MariaDB every write
//! goes to the table and is served at once; bad input is refused naming
//! the field.

use crate::databases::*;
use crate::metrics::metrics_port;
use crate::support::*;
use serde_json::{json, Value};

const TOKEN: &str = "admin-t0ken-0123456789";

fn admin_config(extra: &str) -> String {
    format!(
        "[server.metrics]\nenabled = true\nport = 0\n[server.admin]\ntoken = \"{TOKEN}\"\n{extra}"
    )
}

/// An admin request with `token` (none: no header).
fn admin(port: u16, method: &str, path: &str, body: &str, token: Option<&str>) -> HttpResponse {
    let auth = token.map(|t| format!("Authorization: Bearer {t}"));
    let extra: Vec<&str> = auth.iter().map(String::as_str).collect();
    let mut http = Http::connect(port);
    http.send(&request_bytes(method, path, body.as_bytes(), &extra));
    http.read_response()
}

fn ok(port: u16, method: &str, path: &str, body: &str) -> HttpResponse {
    admin(port, method, path, body, Some(TOKEN))
}

fn trigger_status(port: u16, c: &Creds) -> u16 {
    Http::connect(port)
        .trigger(c, &json!({"name": "e", "channel": "room", "data": "x"}))
        .status
}

#[test]
fn the_admin_api_needs_its_token_and_the_file_store_is_read_only() {
    let off = Server::start_with("[server.metrics]\nenabled = true\nport = 0\n");
    let r = admin(metrics_port(&off), "GET", "/admin/apps", "", Some(TOKEN));
    assert!(r.expect_error(404).contains("server.admin.token"));

    let server = Server::start_with(&admin_config(""));
    let port = metrics_port(&server);
    assert!(admin(port, "GET", "/admin/apps", "", None)
        .expect_error(401)
        .contains("Bearer"));
    admin(
        port,
        "GET",
        "/admin/apps",
        "",
        Some("admin-t0ken-0123456780"),
    )
    .expect_error(401);
    let list = ok(port, "GET", "/admin/apps", "");
    assert_eq!(list.status, 200, "{}", list.text());
    let v = list.json();
    assert_eq!(v["apps"][0]["id"], "app-id");
    assert!(
        v["apps"][0].get("secret").is_none(),
        "secrets are write-only: {v}"
    );
    let one = ok(port, "GET", "/admin/apps/app-id", "").json();
    assert_eq!(one["key"], "app-key");
    ok(port, "GET", "/admin/apps/nope", "").expect_error(404);
    let r = ok(
        port,
        "POST",
        "/admin/apps",
        r#"{"id":"n","key":"kn","secret":"sn"}"#,
    );
    assert!(r.expect_error(409).contains("SIGHUP"), "{}", r.text());
    ok(port, "PUT", "/admin/apps/app-id", "{}").expect_error(405);
    assert!(
        !server.log_text().contains(TOKEN),
        "the token is never logged"
    );
}

/// Creates, reads, changes and deletes an app through the API of a
/// server on `store`'s table; `count` reads the table's rows for an id.
fn exercise(server: &Server, count: &dyn Fn(&str) -> String, secret_of: &dyn Fn(&str) -> String) {
    let port = metrics_port(server);
    let n = Creds {
        id: "n",
        key: "key-n",
        secret: "secret-n",
    };
    let r = ok(
        port,
        "POST",
        "/admin/apps",
        r#"{"id":"n","key":"key-n","secret":"secret-n","max_connections":5,"enable_client_messages":true}"#,
    );
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json()["max_connections"], 5);
    assert_eq!(count("n"), "1", "written to the table");
    // Served at once: the answer came once the change was on the shard.
    let mut ws = Ws::connect_key(server.port, n.key);
    assert_eq!(trigger_status(server.port, &n), 200);
    // Duplicates and bad fields are refused, naming what is wrong.
    let dup = ok(
        port,
        "POST",
        "/admin/apps",
        r#"{"id":"n","key":"other","secret":"s"}"#,
    );
    assert!(dup.expect_error(409).contains("exists"));
    let bad = ok(
        port,
        "POST",
        "/admin/apps",
        r#"{"id":"m","key":"has/slash","secret":"s"}"#,
    );
    assert!(bad.expect_error(400).contains("body.key"), "{}", bad.text());
    let bad = ok(
        port,
        "POST",
        "/admin/apps",
        r#"{"id":"m","key":"km","secret":"s","max_batch_size":0}"#,
    );
    assert!(bad.expect_error(400).contains("body.max_batch_size"));
    let bad = ok(
        port,
        "POST",
        "/admin/apps",
        r#"{"id":"m","key":"km","secret":"s","colour":"red"}"#,
    );
    assert!(bad.expect_error(400).contains("colour"));
    ok(port, "POST", "/admin/apps", "[1,2]").expect_error(400);
    // PATCH changes the keys given; the secret rotates at once.
    let r = ok(port, "PATCH", "/admin/apps/n", r#"{"secret":"rotated-n"}"#);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["max_connections"], 5, "other keys stay");
    assert_eq!(secret_of("n"), "rotated-n");
    let rotated = Creds {
        secret: "rotated-n",
        ..n
    };
    assert_eq!(trigger_status(server.port, &rotated), 200);
    assert_eq!(trigger_status(server.port, &n), 401);
    let bad = ok(port, "PATCH", "/admin/apps/n", r#"{"id":"other"}"#);
    assert!(bad.expect_error(400).contains("body.id"));
    // DELETE: the app's clients get 4003, its API 404, the row is gone.
    assert_eq!(ok(port, "DELETE", "/admin/apps/n", "").status, 200);
    ws.expect_pusher_close(4003);
    assert_eq!(trigger_status(server.port, &rotated), 404);
    assert_eq!(count("n"), "0");
    ok(port, "DELETE", "/admin/apps/n", "").expect_error(404);
    let list: Value = ok(port, "GET", "/admin/apps", "").json();
    assert!(list["apps"]
        .as_array()
        .unwrap()
        .iter()
        .all(|a| a["id"] != "n"));
}

#[test]
fn admin_writes_go_through_to_postgres() {
    let pg = Postgres::start();
    let toml = admin_config(&store_config("postgres", &pg.url(), ""));
    let (done, said) = run_init(&Server::write_config(&toml));
    assert!(done, "{said}");
    let server = Server::start_with(&toml);
    exercise(
        &server,
        &|id| pg.sql(&format!("SELECT count(*) FROM apps WHERE id = '{id}'")),
        &|id| pg.sql(&format!("SELECT secret FROM apps WHERE id = '{id}'")),
    );
}

#[test]
fn admin_writes_go_through_to_mariadb() {
    let db = Mariadb::start();
    let toml = admin_config(&store_config("mysql", &db.url(), ""));
    let (done, said) = run_init(&Server::write_config(&toml));
    assert!(done, "{said}");
    let server = Server::start_with(&toml);
    exercise(
        &server,
        &|id| db.sql(&format!("SELECT count(*) FROM apps WHERE id = '{id}'")),
        &|id| db.sql(&format!("SELECT secret FROM apps WHERE id = '{id}'")),
    );
}
