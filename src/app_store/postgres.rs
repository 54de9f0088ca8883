//! The PostgreSQL store: the apps table mirrored, kept current through
//! LISTEN/NOTIFY.
//!
//! `shardcast app-store init` ([`init_sql`]) creates the table (soketi's
//! columns) if it is missing and installs a trigger that sends, on every
//! insert, update, delete or truncate, a notification on [`CHANNEL`] whose
//! payload is `table:id` (`table:` alone for a truncate). The store thread
//! LISTENs on its own connection: a notification makes it read those rows
//! again (a burst is read in one query), so a change is on every shard
//! within milliseconds. A table without the trigger (a soketi table not yet
//! `init`ed) is read whole every `app_store.poll_interval_ms` instead, and
//! the log says so.
//!
//! When the connection fails the apps stay as last read, `/ready` says the
//! store is unreachable and the log says so once; the store reconnects
//! every [`RETRY`] and then reads the whole table again (changes made
//! meanwhile sent notifications nobody heard).
//!
//! Connections are plain TCP (or a Unix socket): TLS to the database is
//! not supported yet.

use super::admin::{AdminError, AdminOp, AdminReply, AdminRequest};
use super::health::StoreHealth;
use super::mirror::{Mirror, MAX_ROWS};
use super::row::{Kind, Row, Value, COLUMNS};
use super::thread::runtime;
use super::StopStore;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_postgres::{AsyncMessage, Client, NoTls};

/// The notification channel of every table's trigger.
pub const CHANNEL: &str = "shardcast_apps";
/// How often a lost connection is tried again.
const RETRY: Duration = Duration::from_millis(500);
/// Notifications queued before the store reads the whole table instead.
const NOTES_QUEUE: usize = 1024;
/// Ids read by id in one go; more read the whole table.
const MAX_IDS: usize = 256;
/// Time limit of connecting and of each query.
const QUERY_TIMEOUT: Duration = Duration::from_secs(5);

/// The SQL `init` runs: the table (if missing), the notify function and
/// the trigger. `table` is a checked identifier (`config`).
pub fn init_sql(table: &str) -> String {
    format!(
        r#"CREATE TABLE IF NOT EXISTS "{table}" (
    id varchar(255) PRIMARY KEY,
    "key" varchar(255) NOT NULL UNIQUE,
    secret varchar(255) NOT NULL,
    max_connections integer NOT NULL DEFAULT -1,
    enable_client_messages smallint NOT NULL DEFAULT 0,
    "enabled" smallint NOT NULL DEFAULT 1,
    max_backend_events_per_sec integer NOT NULL DEFAULT -1,
    max_client_events_per_sec integer NOT NULL DEFAULT -1,
    max_read_req_per_sec integer NOT NULL DEFAULT -1,
    max_presence_members_per_channel integer DEFAULT NULL,
    max_presence_member_size_in_kb integer DEFAULT NULL,
    max_channel_name_length integer DEFAULT NULL,
    max_event_channels_at_once integer DEFAULT NULL,
    max_event_name_length integer DEFAULT NULL,
    max_event_payload_in_kb integer DEFAULT NULL,
    max_event_batch_size integer DEFAULT NULL,
    webhooks json,
    enable_user_authentication smallint NOT NULL DEFAULT 0
);
CREATE OR REPLACE FUNCTION shardcast_notify_apps() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        PERFORM pg_notify('{CHANNEL}', TG_TABLE_NAME || ':');
        RETURN NULL;
    END IF;
    IF TG_OP <> 'INSERT' THEN
        PERFORM pg_notify('{CHANNEL}', TG_TABLE_NAME || ':' || OLD.id::text);
    END IF;
    IF TG_OP = 'INSERT' OR (TG_OP = 'UPDATE' AND NEW.id IS DISTINCT FROM OLD.id) THEN
        PERFORM pg_notify('{CHANNEL}', TG_TABLE_NAME || ':' || NEW.id::text);
    END IF;
    RETURN NULL;
END
$$ LANGUAGE plpgsql;
DROP TRIGGER IF EXISTS shardcast_apps_changed ON "{table}";
CREATE TRIGGER shardcast_apps_changed AFTER INSERT OR UPDATE OR DELETE ON "{table}"
    FOR EACH ROW EXECUTE FUNCTION shardcast_notify_apps();
DROP TRIGGER IF EXISTS shardcast_apps_truncated ON "{table}";
CREATE TRIGGER shardcast_apps_truncated AFTER TRUNCATE ON "{table}"
    FOR EACH STATEMENT EXECUTE FUNCTION shardcast_notify_apps();
"#
    )
}

/// Runs [`init_sql`] on the database at `url`.
pub fn init(url: &str, table: &str) -> Result<(), String> {
    let runtime = runtime()?;
    runtime.block_on(async {
        let client = connect(url, None).await?;
        client
            .batch_execute(&init_sql(table))
            .await
            .map_err(|e| format!("app-store init: {}", describe(&e)))
    })
}

/// The database error's own words (the driver's `Display` of a server
/// error is only "db error").
fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => db.message().to_string(),
        None => e.to_string(),
    }
}

/// A notification, or the end of the connection (`None` from the queue).
type Notes = mpsc::Receiver<String>;

/// Connects; with `notes`, notifications go there (and `overflow` is
/// raised when it is full) and the queue closes when the connection ends.
async fn connect(
    url: &str,
    notes: Option<(mpsc::Sender<String>, Arc<AtomicBool>)>,
) -> Result<Client, String> {
    let (client, mut connection) =
        tokio::time::timeout(QUERY_TIMEOUT, tokio_postgres::connect(url, NoTls))
            .await
            .map_err(|_| "app store: PostgreSQL did not answer in time".to_string())?
            .map_err(|e| format!("app store: cannot reach PostgreSQL: {}", describe(&e)))?;
    tokio::spawn(async move {
        loop {
            match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                Some(Ok(AsyncMessage::Notification(n))) => {
                    if let Some((tx, overflow)) = &notes {
                        if tx.try_send(n.payload().to_string()).is_err() {
                            overflow.store(true, Ordering::Release);
                        }
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    log::debug!("app store: PostgreSQL connection ended: {}", describe(&e));
                    break;
                }
                None => break,
            }
        }
        // Dropping `notes` tells the store the connection is gone.
    });
    Ok(client)
}

/// The table's columns as shardcast reads them: for each known column the
/// table has, the SQL that reads it as bigint or text.
#[derive(Debug, Clone)]
struct Schema {
    select: String,
    /// (column, kind) in select order.
    columns: Vec<(&'static str, Kind)>,
    /// The notify trigger is installed.
    triggered: bool,
    /// Every column of the table and its type, for writes.
    types: std::collections::HashMap<String, String>,
}

/// Checks the table: every known column present has a type it can read,
/// the required ones are there; a wrong type is an error naming the column.
async fn schema(client: &Client, table: &str) -> Result<Schema, String> {
    let rows = query(
        client,
        "SELECT column_name::text, data_type::text FROM information_schema.columns \
         WHERE table_schema = current_schema() AND table_name = $1",
        &[&table],
    )
    .await?;
    if rows.is_empty() {
        return Err(format!(
            "app store: table {table:?} not found; create it with `shardcast app-store init`"
        ));
    }
    let types: std::collections::HashMap<String, String> =
        rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    let mut exprs = Vec::new();
    let mut columns = Vec::new();
    for c in COLUMNS {
        let Some(ty) = types.get(c.name) else {
            if c.required {
                return Err(format!(
                    "app store: table {table:?} has no column {:?}",
                    c.name
                ));
            }
            continue;
        };
        let integer = matches!(ty.as_str(), "smallint" | "integer" | "bigint");
        let text = matches!(ty.as_str(), "character varying" | "text" | "character");
        let expr = match (c.kind, ty.as_str()) {
            (Kind::Integer, _) | (Kind::Flag, _) if integer => format!(r#""{}"::bigint"#, c.name),
            (Kind::Flag, "boolean") => format!(r#""{}"::int::bigint"#, c.name),
            (Kind::Text, _) if text => format!(r#""{}"::text"#, c.name),
            (Kind::Json, "json" | "jsonb") => format!(r#""{}"::text"#, c.name),
            (Kind::Json, _) if text => format!(r#""{}"::text"#, c.name),
            _ => {
                let expected = match c.kind {
                    Kind::Text => "varchar, text or char",
                    Kind::Integer => "smallint, integer or bigint",
                    Kind::Flag => "boolean, smallint, integer or bigint",
                    Kind::Json => "json, jsonb or text",
                };
                return Err(format!(
                    "app store: column {table}.{} has type {ty}; expected {expected}",
                    c.name
                ));
            }
        };
        exprs.push(expr);
        columns.push((c.name, c.kind));
    }
    let triggered = !query(
        client,
        "SELECT 1 FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid \
         WHERE c.relname = $1 AND c.relnamespace = current_schema()::regnamespace \
         AND t.tgname = 'shardcast_apps_changed'",
        &[&table],
    )
    .await?
    .is_empty();
    Ok(Schema {
        select: format!(r#"SELECT {} FROM "{table}""#, exprs.join(", ")),
        columns,
        triggered,
        types,
    })
}

async fn query(
    client: &Client,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Result<Vec<tokio_postgres::Row>, String> {
    tokio::time::timeout(QUERY_TIMEOUT, client.query(sql, params))
        .await
        .map_err(|_| "app store: PostgreSQL did not answer in time".to_string())?
        .map_err(|e| format!("app store: PostgreSQL: {}", describe(&e)))
}

fn rows_of(schema: &Schema, rows: Vec<tokio_postgres::Row>) -> Vec<Row> {
    rows.into_iter()
        .map(|r| {
            schema
                .columns
                .iter()
                .enumerate()
                .map(|(i, (name, kind))| {
                    let value = match kind {
                        Kind::Integer | Kind::Flag => {
                            r.get::<_, Option<i64>>(i).map_or(Value::Null, Value::Int)
                        }
                        Kind::Text | Kind::Json => r
                            .get::<_, Option<String>>(i)
                            .map_or(Value::Null, Value::Text),
                    };
                    (*name, value)
                })
                .collect()
        })
        .collect()
}

async fn read_all(client: &Client, schema: &Schema) -> Result<Vec<Row>, String> {
    let sql = format!("{} LIMIT {}", schema.select, MAX_ROWS + 1);
    Ok(rows_of(schema, query(client, &sql, &[]).await?))
}

async fn read_ids(
    client: &Client,
    schema: &Schema,
    ids: &HashSet<String>,
) -> Result<Vec<Row>, String> {
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    let sql = format!(r#"{} WHERE "id"::text = ANY($1)"#, schema.select);
    Ok(rows_of(schema, query(client, &sql, &[&ids]).await?))
}

/// Writes one admin change; the types of the table's columns make each
/// text value the column's type.
async fn write(client: &Client, schema: &Schema, table: &str, op: AdminOp) -> AdminReply {
    let typed = |name: &str, n: usize| {
        let ty = schema.types.get(name).map_or("text", String::as_str);
        format!("CAST(${n}::text AS {ty})")
    };
    let (sql, values): (String, Vec<Option<String>>) = match op {
        AdminOp::Create(app) => {
            let row: Vec<_> = super::row::row_of(&app)
                .into_iter()
                .filter(|(c, _)| schema.types.contains_key(*c))
                .collect();
            let names: Vec<String> = row.iter().map(|(c, _)| format!("\"{c}\"")).collect();
            let params: Vec<String> = row
                .iter()
                .enumerate()
                .map(|(i, (c, _))| typed(c, i + 1))
                .collect();
            (
                format!(
                    r#"INSERT INTO "{table}" ({}) VALUES ({})"#,
                    names.join(", "),
                    params.join(", ")
                ),
                row.into_iter().map(|(_, v)| v).collect(),
            )
        }
        AdminOp::Replace(app) => {
            let row: Vec<_> = super::row::row_of(&app)
                .into_iter()
                .filter(|(c, _)| schema.types.contains_key(*c) && *c != "max_read_req_per_sec")
                .collect();
            let sets: Vec<String> = row
                .iter()
                .enumerate()
                .skip(1)
                .map(|(i, (c, _))| format!("\"{c}\" = {}", typed(c, i + 1)))
                .collect();
            (
                format!(
                    r#"UPDATE "{table}" SET {} WHERE "id"::text = $1::text"#,
                    sets.join(", ")
                ),
                row.into_iter().map(|(_, v)| v).collect(),
            )
        }
        AdminOp::Delete(id) => (
            format!(r#"DELETE FROM "{table}" WHERE "id"::text = $1::text"#),
            vec![Some(id)],
        ),
    };
    let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = values
        .iter()
        .map(|v| v as &(dyn tokio_postgres::types::ToSql + Sync))
        .collect();
    match tokio::time::timeout(QUERY_TIMEOUT, client.execute(&sql, &params)).await {
        Err(_) => Err(AdminError::Unavailable(
            "PostgreSQL did not answer in time".into(),
        )),
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => match e.as_db_error() {
            Some(db) => Err(AdminError::Conflict(db.message().to_string())),
            None => Err(AdminError::Unavailable(describe(&e))),
        },
    }
}

/// A live connection: the client, its schema and its notifications.
struct Session {
    client: Client,
    schema: Schema,
    notes: Notes,
    overflow: Arc<AtomicBool>,
}

/// Connects, checks the table, LISTENs, and reads the whole table.
async fn open(url: &str, table: &str) -> Result<(Session, Vec<Row>), String> {
    let (tx, notes) = mpsc::channel(NOTES_QUEUE);
    let overflow = Arc::new(AtomicBool::new(false));
    let client = connect(url, Some((tx, overflow.clone()))).await?;
    let schema = schema(&client, table).await?;
    if schema.triggered {
        client
            .batch_execute(&format!("LISTEN {CHANNEL}"))
            .await
            .map_err(|e| format!("app store: LISTEN: {}", describe(&e)))?;
    }
    let rows = read_all(&client, &schema).await?;
    Ok((
        Session {
            client,
            schema,
            notes,
            overflow,
        },
        rows,
    ))
}

/// Connects and reads the apps into `mirror` at start (an error stops the
/// start-up); then follows the table on a thread of its own. Returns what
/// stops the thread.
pub fn start(
    url: String,
    table: String,
    poll: Duration,
    mut mirror: Mirror,
    health: Arc<StoreHealth>,
    admin: flume::Receiver<AdminRequest>,
) -> Result<StopStore, String> {
    let runtime = runtime()?;
    let (session, rows) = runtime.block_on(open(&url, &table))?;
    mirror.replace_all(rows);
    if session.schema.triggered {
        log::info!("app store: following table {table} through LISTEN/NOTIFY");
    } else {
        log::warn!(
            "app store: table {table} has no shardcast trigger; reading it every {} ms \
             (run `shardcast app-store init` to see changes at once)",
            poll.as_millis()
        );
    }
    super::thread::spawn(runtime, async move {
        follow(&url, &table, poll, session, &mut mirror, &health, &admin).await
    })
}

/// Follows the table for ever: notifications (or polls), and reconnects.
async fn follow(
    url: &str,
    table: &str,
    poll: Duration,
    mut session: Session,
    mirror: &mut Mirror,
    health: &StoreHealth,
    admin: &flume::Receiver<AdminRequest>,
) {
    loop {
        let why = run(table, poll, &mut session, mirror, admin).await;
        if health.down() {
            log::warn!(
                "app store: PostgreSQL unreachable ({why}); the apps stay as last read until it is back"
            );
        }
        session = loop {
            // Admin writes meanwhile are refused, not held.
            let pause = tokio::time::sleep(RETRY);
            tokio::pin!(pause);
            loop {
                tokio::select! {
                    _ = &mut pause => break,
                    Ok(req) = admin.recv_async() => {
                        let _ = req.reply.send(Err(AdminError::Unavailable(
                            "the app store's database is unreachable".into(),
                        )));
                    }
                }
            }
            match open(url, table).await {
                Ok((session, rows)) => {
                    mirror.replace_all(rows);
                    break session;
                }
                Err(e) => log::debug!("{e}"),
            }
        };
        if let Some(secs) = health.up() {
            log::info!("app store: PostgreSQL is back after {secs} s; table {table} read again");
        }
    }
}

/// Serves one connection until it fails; returns why.
async fn run(
    table: &str,
    poll: Duration,
    s: &mut Session,
    mirror: &mut Mirror,
    admin: &flume::Receiver<AdminRequest>,
) -> String {
    let prefix = format!("{table}:");
    loop {
        let triggered = s.schema.triggered;
        let first = tokio::select! {
            note = s.notes.recv(), if triggered => match note {
                Some(note) => Some(note),
                None => return "the connection ended".into(),
            },
            _ = tokio::time::sleep(poll), if !triggered => None,
            Ok(req) = admin.recv_async() => {
                let done = write(&s.client, &s.schema, table, req.op).await;
                let failed = matches!(done, Err(AdminError::Unavailable(_)));
                let _ = req.reply.send(done);
                if failed || triggered {
                    // Triggered: the change comes back as a notification.
                    continue;
                }
                None
            }
        };
        let mut ids = HashSet::new();
        let mut all = !s.schema.triggered || s.overflow.swap(false, Ordering::AcqRel);
        let mut note = first;
        while let Some(n) = note {
            if let Some(id) = n.strip_prefix(&prefix) {
                if id.is_empty() {
                    all = true; // truncated
                } else {
                    ids.insert(id.to_string());
                }
            }
            note = s.notes.try_recv().ok();
        }
        all |= ids.len() > MAX_IDS;
        let read = if all {
            read_all(&s.client, &s.schema)
                .await
                .map(|rows| mirror.replace_all(rows))
        } else if !ids.is_empty() {
            read_ids(&s.client, &s.schema, &ids)
                .await
                .map(|rows| mirror.update(&ids, rows))
        } else {
            Ok(())
        };
        if let Err(why) = read {
            return why;
        }
    }
}
