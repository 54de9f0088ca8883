//! The MySQL / MariaDB store: the apps table mirrored, read again every
//! `app_store.poll_interval_ms` (MySQL has no change feed a client can
//! listen to without replication rights), so a change is on every shard
//! within one interval plus one read.
//!
//! `shardcast app-store init` ([`init_sql`]) creates the table with
//! soketi's columns if it is missing. When the database cannot be reached
//! the apps stay as last read, `/ready` says so and the log says so once;
//! the next poll that succeeds reads the whole table again as always.
//!
//! Connections are plain TCP: TLS to the database is not supported yet.

use super::admin::{AdminError, AdminOp, AdminReply, AdminRequest};
use super::health::StoreHealth;
use super::mirror::{Mirror, MAX_ROWS};
use super::row::{Kind, Row, Value, COLUMNS};
use super::thread::runtime;
use super::StopStore;
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

/// Time limit of connecting and of each query.
const QUERY_TIMEOUT: Duration = Duration::from_secs(5);

/// The SQL `init` runs: the table (if missing) with soketi's columns.
pub fn init_sql(table: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS `{table}` (
    `id` varchar(255) NOT NULL,
    `key` varchar(255) NOT NULL,
    `secret` varchar(255) NOT NULL,
    `max_connections` integer NOT NULL DEFAULT -1,
    `enable_client_messages` tinyint(1) NOT NULL DEFAULT 0,
    `enabled` tinyint(1) NOT NULL DEFAULT 1,
    `max_backend_events_per_sec` integer NOT NULL DEFAULT -1,
    `max_client_events_per_sec` integer NOT NULL DEFAULT -1,
    `max_read_req_per_sec` integer NOT NULL DEFAULT -1,
    `webhooks` json,
    `max_presence_members_per_channel` integer NULL,
    `max_presence_member_size_in_kb` integer NULL,
    `max_channel_name_length` integer NULL,
    `max_event_channels_at_once` integer NULL,
    `max_event_name_length` integer NULL,
    `max_event_payload_in_kb` integer NULL,
    `max_event_batch_size` integer NULL,
    `enable_user_authentication` tinyint(1) NOT NULL DEFAULT 0,
    PRIMARY KEY (`id`),
    UNIQUE KEY (`key`)
)"
    )
}

/// The driver's words for an error, without the URL.
fn describe(e: &mysql_async::Error) -> String {
    match e {
        mysql_async::Error::Server(s) => s.message.clone(),
        mysql_async::Error::Url(_) => "the url is not a valid mysql:// URL".into(),
        other => other.to_string(),
    }
}

async fn timed<T>(
    f: impl std::future::Future<Output = Result<T, mysql_async::Error>>,
) -> Result<T, String> {
    tokio::time::timeout(QUERY_TIMEOUT, f)
        .await
        .map_err(|_| "MySQL did not answer in time".to_string())?
        .map_err(|e| describe(&e))
}

async fn connect(url: &str) -> Result<Conn, String> {
    // `mariadb://` is accepted in the config; the driver knows `mysql://`.
    let url = match url.strip_prefix("mariadb://") {
        Some(rest) => format!("mysql://{rest}"),
        None => url.to_string(),
    };
    let opts =
        Opts::from_url(&url).map_err(|_| "the url is not a valid mysql:// URL".to_string())?;
    timed(Conn::new(opts)).await
}

/// Runs [`init_sql`] on the database at `url`.
pub fn init(url: &str, table: &str) -> Result<(), String> {
    runtime()?
        .block_on(async {
            let mut conn = connect(url).await?;
            timed(conn.query_drop(init_sql(table))).await
        })
        .map_err(|e| format!("app-store init: {e}"))
}

/// The SELECT that reads every known column the table has, as integers
/// or text; a column of the wrong type is an error naming it.
#[allow(clippy::type_complexity)]
async fn schema(
    conn: &mut Conn,
    table: &str,
) -> Result<(String, Vec<(&'static str, Kind)>, HashSet<String>), String> {
    let types: Vec<(String, String)> = timed(conn.exec(
        "SELECT CAST(column_name AS CHAR), CAST(data_type AS CHAR) FROM information_schema.columns \
         WHERE table_schema = DATABASE() AND table_name = ?",
        (table,),
    ))
    .await?;
    if types.is_empty() {
        return Err(format!(
            "table {table:?} not found; create it with `shardcast app-store init`"
        ));
    }
    let types: std::collections::HashMap<String, String> = types
        .into_iter()
        .map(|(c, t)| (c.to_ascii_lowercase(), t.to_ascii_lowercase()))
        .collect();
    let mut exprs = Vec::new();
    let mut columns = Vec::new();
    for c in COLUMNS {
        let Some(ty) = types.get(c.name) else {
            if c.required {
                return Err(format!("table {table:?} has no column {:?}", c.name));
            }
            continue;
        };
        let integer = matches!(
            ty.as_str(),
            "tinyint" | "smallint" | "mediumint" | "int" | "bigint"
        );
        let text = matches!(
            ty.as_str(),
            "varchar" | "char" | "text" | "tinytext" | "mediumtext" | "longtext"
        );
        let expr = match c.kind {
            Kind::Integer | Kind::Flag if integer || (c.kind == Kind::Flag && ty == "bit") => {
                format!("CAST(`{}` AS SIGNED)", c.name)
            }
            Kind::Text if text => format!("CAST(`{}` AS CHAR)", c.name),
            Kind::Json if text || ty == "json" => format!("CAST(`{}` AS CHAR)", c.name),
            _ => {
                let expected = match c.kind {
                    Kind::Text => "varchar, char or text",
                    Kind::Integer => "an integer type",
                    Kind::Flag => "an integer type (tinyint(1)) or bit",
                    Kind::Json => "json or text",
                };
                return Err(format!(
                    "column {table}.{} has type {ty}; expected {expected}",
                    c.name
                ));
            }
        };
        exprs.push(expr);
        columns.push((c.name, c.kind));
    }
    Ok((
        format!(
            "SELECT {} FROM `{table}` LIMIT {}",
            exprs.join(", "),
            MAX_ROWS + 1
        ),
        columns,
        types.into_keys().collect(),
    ))
}

async fn read_all(
    conn: &mut Conn,
    select: &str,
    columns: &[(&'static str, Kind)],
) -> Result<Vec<Row>, String> {
    let rows: Vec<mysql_async::Row> = timed(conn.query(select)).await?;
    Ok(rows
        .into_iter()
        .map(|mut r| {
            columns
                .iter()
                .enumerate()
                .map(|(i, (name, kind))| {
                    let value = match kind {
                        Kind::Integer | Kind::Flag => r
                            .take::<Option<i64>, _>(i)
                            .flatten()
                            .map_or(Value::Null, Value::Int),
                        Kind::Text | Kind::Json => r
                            .take::<Option<String>, _>(i)
                            .flatten()
                            .map_or(Value::Null, Value::Text),
                    };
                    (*name, value)
                })
                .collect()
        })
        .collect())
}

/// A connection with its checked SELECT.
struct Session {
    conn: Conn,
    select: String,
    columns: Vec<(&'static str, Kind)>,
    /// Every column the table has, for writes.
    all: HashSet<String>,
}

async fn open(url: &str, table: &str) -> Result<(Session, Vec<Row>), String> {
    let mut conn = connect(url).await?;
    let (select, columns, all) = schema(&mut conn, table).await?;
    let rows = read_all(&mut conn, &select, &columns).await?;
    Ok((
        Session {
            conn,
            select,
            columns,
            all,
        },
        rows,
    ))
}

/// Writes one admin change (MySQL converts the text values to each
/// column's type).
async fn write(s: &mut Session, table: &str, op: AdminOp) -> AdminReply {
    let (sql, values): (String, Vec<Option<String>>) = match op {
        AdminOp::Create(app) => {
            let row: Vec<_> = super::row::row_of(&app)
                .into_iter()
                .filter(|(c, _)| s.all.contains(*c))
                .collect();
            let names: Vec<String> = row.iter().map(|(c, _)| format!("`{c}`")).collect();
            let marks = vec!["?"; row.len()].join(", ");
            (
                format!(
                    "INSERT INTO `{table}` ({}) VALUES ({marks})",
                    names.join(", ")
                ),
                row.into_iter().map(|(_, v)| v).collect(),
            )
        }
        AdminOp::Replace(app) => {
            let mut row: Vec<_> = super::row::row_of(&app)
                .into_iter()
                .filter(|(c, _)| s.all.contains(*c) && *c != "max_read_req_per_sec")
                .collect();
            let (_, id) = row.remove(0);
            let sets: Vec<String> = row.iter().map(|(c, _)| format!("`{c}` = ?")).collect();
            let mut values: Vec<Option<String>> = row.into_iter().map(|(_, v)| v).collect();
            values.push(id);
            (
                format!("UPDATE `{table}` SET {} WHERE `id` = ?", sets.join(", ")),
                values,
            )
        }
        AdminOp::Delete(id) => (
            format!("DELETE FROM `{table}` WHERE `id` = ?"),
            vec![Some(id)],
        ),
    };
    match tokio::time::timeout(QUERY_TIMEOUT, s.conn.exec_drop(sql, values)).await {
        Err(_) => Err(AdminError::Unavailable(
            "MySQL did not answer in time".into(),
        )),
        Ok(Ok(())) => Ok(()),
        Ok(Err(mysql_async::Error::Server(e))) => Err(AdminError::Conflict(e.message)),
        Ok(Err(e)) => Err(AdminError::Unavailable(describe(&e))),
    }
}

/// Connects and reads the apps into `mirror` at start (an error stops the
/// start-up); then reads the table every `poll` on a thread of its own.
pub fn start(
    url: String,
    table: String,
    poll: Duration,
    mut mirror: Mirror,
    health: Arc<StoreHealth>,
    admin: flume::Receiver<AdminRequest>,
) -> Result<StopStore, String> {
    let runtime = runtime()?;
    let (session, rows) = runtime
        .block_on(open(&url, &table))
        .map_err(|e| format!("app store: MySQL: {e}"))?;
    mirror.replace_all(rows);
    log::info!(
        "app store: reading table {table} every {} ms",
        poll.as_millis()
    );
    super::thread::spawn(runtime, async move {
        follow(
            &url,
            &table,
            poll,
            Some(session),
            &mut mirror,
            &health,
            &admin,
        )
        .await
    })
}

/// Reads the table every `poll`, reconnecting (and checking the table
/// again) after a failure.
async fn follow(
    url: &str,
    table: &str,
    poll: Duration,
    mut session: Option<Session>,
    mirror: &mut Mirror,
    health: &StoreHealth,
    admin: &flume::Receiver<AdminRequest>,
) {
    loop {
        // An admin write is followed by an immediate read, so it is on
        // every shard at once; otherwise the table is read every `poll`.
        tokio::select! {
            _ = tokio::time::sleep(poll) => {}
            Ok(req) = admin.recv_async() => {
                let done = match session.as_mut() {
                    Some(s) => write(s, table, req.op).await,
                    None => Err(AdminError::Unavailable("the app store's database is unreachable".into())),
                };
                let _ = req.reply.send(done);
            }
        }
        let read = match session.as_mut() {
            Some(s) => read_all(&mut s.conn, &s.select, &s.columns).await,
            None => match open(url, table).await {
                Ok((s, rows)) => {
                    session = Some(s);
                    Ok(rows)
                }
                Err(e) => Err(e),
            },
        };
        match read {
            Ok(rows) => {
                mirror.replace_all(rows);
                if let Some(secs) = health.up() {
                    log::info!("app store: MySQL is back after {secs} s; table {table} read again");
                }
            }
            Err(why) => {
                session = None;
                if health.down() {
                    log::warn!(
                        "app store: MySQL unreachable ({why}); the apps stay as last read until it is back"
                    );
                }
            }
        }
    }
}
