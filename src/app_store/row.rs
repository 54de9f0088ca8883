//! One row of the apps table (soketi's columns) turned into an [`App`],
//! with the validation the config file gets (`config::app_from_section`).
//!
//! A row is hostile until checked: every value is range-checked, the
//! webhooks JSON is parsed into a fixed shape, and a row that does not
//! validate is left out (the log names the app id and the field) while the
//! other rows are served.
//!
//! soketi's conventions are kept: `-1` (any negative number), NULL or an
//! empty value means "no limit" or "the server default"; flags are any
//! integer type (0 is false) or booleans.

use crate::apps::App;
use crate::config::{AppSection, FilterSection, WebhookSection};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};

/// How a column is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Text (varchar, text, char).
    Text,
    /// Any integer type.
    Integer,
    /// An integer type (0 is false) or boolean.
    Flag,
    /// JSON, or text holding JSON.
    Json,
}

/// One column shardcast reads.
#[derive(Debug, Clone, Copy)]
pub struct Column {
    pub name: &'static str,
    pub kind: Kind,
    /// The table must have it.
    pub required: bool,
}

const fn col(name: &'static str, kind: Kind, required: bool) -> Column {
    Column {
        name,
        kind,
        required,
    }
}

/// The columns read, soketi's first, then shardcast's own (optional).
/// `max_presence_member_size_in_kb` and `max_read_req_per_sec` are
/// soketi's but have no counterpart here, so they are not read.
pub const COLUMNS: &[Column] = &[
    col("id", Kind::Text, true),
    col("key", Kind::Text, true),
    col("secret", Kind::Text, true),
    col("max_connections", Kind::Integer, false),
    col("enable_client_messages", Kind::Flag, false),
    col("enabled", Kind::Flag, false),
    col("max_backend_events_per_sec", Kind::Integer, false),
    col("max_client_events_per_sec", Kind::Integer, false),
    col("webhooks", Kind::Json, false),
    col("max_presence_members_per_channel", Kind::Integer, false),
    col("max_channel_name_length", Kind::Integer, false),
    col("max_event_channels_at_once", Kind::Integer, false),
    col("max_event_name_length", Kind::Integer, false),
    col("max_event_payload_in_kb", Kind::Integer, false),
    col("max_event_batch_size", Kind::Integer, false),
    col("enable_user_authentication", Kind::Flag, false),
    col("user_authentication_timeout", Kind::Integer, false),
    col("enable_subscription_count", Kind::Flag, false),
    col("cache_ttl", Kind::Integer, false),
];

/// A value as the database gave it (integers and flags as integers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Null,
    Int(i64),
    Text(String),
}

/// A row: column name to value (columns the table lacks are absent).
pub type Row = HashMap<&'static str, Value>;

/// soketi's shape of one webhook in the `webhooks` JSON.
#[derive(Deserialize)]
struct RowWebhook {
    url: Option<String>,
    #[serde(default)]
    event_types: Vec<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    filter: Option<RowFilter>,
}

#[derive(Deserialize)]
struct RowFilter {
    channel_name_starts_with: Option<String>,
    channel_name_ends_with: Option<String>,
}

/// Most bytes of a row's `webhooks` JSON.
const MAX_WEBHOOKS_JSON: usize = 64 * 1024;

/// The app a row describes, or why it is refused (naming the field).
pub fn app_of(table: &str, row: &Row) -> Result<App, String> {
    let text = |name: &str| match row.get(name) {
        Some(Value::Text(t)) => t.clone(),
        _ => String::new(),
    };
    let id = text("id");
    let label = format!("{table}[id={id:?}]");
    // Negative, NULL or absent: unset (the default, or no limit).
    let int = |name: &str| -> Result<Option<u32>, String> {
        match row.get(name) {
            Some(Value::Int(v)) if *v < 0 => Ok(None),
            Some(Value::Int(v)) => u32::try_from(*v)
                .map(Some)
                .map_err(|_| format!("{label}.{name}: {v} is too large")),
            _ => Ok(None),
        }
    };
    let flag = |name: &str| match row.get(name) {
        Some(Value::Int(v)) => Some(*v != 0),
        _ => None,
    };
    let webhooks = match row.get("webhooks") {
        Some(Value::Text(json)) if !json.trim().is_empty() => webhooks_of(&label, json)?,
        _ => Vec::new(),
    };
    let section = AppSection {
        id,
        key: text("key"),
        secret: text("secret"),
        enabled: flag("enabled"),
        enable_client_messages: flag("enable_client_messages"),
        enable_user_authentication: flag("enable_user_authentication"),
        max_connections: int("max_connections")?,
        max_event_payload_kb: int("max_event_payload_in_kb")?,
        max_channels_per_event: int("max_event_channels_at_once")?,
        max_batch_size: int("max_event_batch_size")?,
        max_event_name_length: int("max_event_name_length")?,
        max_channel_name_length: int("max_channel_name_length")?,
        max_presence_members: int("max_presence_members_per_channel")?,
        max_client_events_per_second: int("max_client_events_per_sec")?,
        user_authentication_timeout: int("user_authentication_timeout")?,
        enable_subscription_count: flag("enable_subscription_count"),
        cache_ttl: int("cache_ttl")?,
        max_api_requests_per_second: int("max_backend_events_per_sec")?,
        webhooks,
    };
    crate::config::app_from_section(&label, &section).map_err(|e| e.to_string())
}

fn webhooks_of(label: &str, json: &str) -> Result<Vec<WebhookSection>, String> {
    if json.len() > MAX_WEBHOOKS_JSON {
        return Err(format!(
            "{label}.webhooks: {} bytes of JSON, more than {MAX_WEBHOOKS_JSON}",
            json.len()
        ));
    }
    let mut bytes = json.as_bytes().to_vec();
    let hooks: Vec<RowWebhook> = simd_json::from_slice(&mut bytes).map_err(|e| {
        format!("{label}.webhooks: not a JSON list of {{url, event_types, filter, headers}}: {e}")
    })?;
    hooks
        .into_iter()
        .enumerate()
        .map(|(i, h)| {
            let url = h.url.ok_or_else(|| {
                format!("{label}.webhooks[{i}].url: missing (only URL webhooks are delivered)")
            })?;
            Ok(WebhookSection {
                url,
                event_types: h.event_types,
                filter: h.filter.map(|f| FilterSection {
                    prefix: f.channel_name_starts_with,
                    suffix: f.channel_name_ends_with,
                }),
                headers: h.headers,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(pairs: &[(&'static str, Value)]) -> Row {
        pairs.iter().cloned().collect()
    }

    fn soketi_row() -> Row {
        row(&[
            ("id", Value::Text("1".into())),
            ("key", Value::Text("k".into())),
            ("secret", Value::Text("s".into())),
            ("max_connections", Value::Int(-1)),
            ("enable_client_messages", Value::Int(1)),
            ("enabled", Value::Int(1)),
            ("max_backend_events_per_sec", Value::Int(-1)),
            ("max_client_events_per_sec", Value::Int(-1)),
            ("max_event_payload_in_kb", Value::Null),
            ("max_event_batch_size", Value::Int(5)),
            ("enable_user_authentication", Value::Int(0)),
            (
                "webhooks",
                Value::Text(
                    r#"[{"url":"https://h.example/w","event_types":["channel_occupied"],"filter":{"channel_name_starts_with":"pre-"}}]"#
                        .into(),
                ),
            ),
        ])
    }

    #[test]
    fn soketi_values_map_to_the_app_settings() {
        let app = app_of("apps", &soketi_row()).unwrap();
        assert_eq!(
            (app.id.as_str(), app.key.as_str(), app.secret.as_str()),
            ("1", "k", "s")
        );
        assert!(app.enabled && app.enable_client_messages && !app.enable_user_authentication);
        assert_eq!(app.limits.max_connections, None, "-1 is no limit");
        assert_eq!(app.max_api_requests_per_second, None);
        assert_eq!(app.limits.max_batch_size, 5);
        let defaults = App::new("x".into(), "y".into(), "z".into());
        assert_eq!(
            app.limits.max_event_payload_bytes,
            defaults.limits.max_event_payload_bytes
        );
        assert_eq!(app.webhooks.len(), 1);
        assert_eq!(app.webhooks[0].prefix.as_deref(), Some("pre-"));
    }

    #[test]
    fn a_bad_row_is_refused_naming_the_app_and_field() {
        let mut r = soketi_row();
        r.insert("key", Value::Text("has/slash".into()));
        let why = app_of("apps", &r).unwrap_err();
        assert!(why.contains("apps[id=\"1\"].key"), "{why}");
        let mut r = soketi_row();
        r.insert("webhooks", Value::Text("{not json".into()));
        let why = app_of("apps", &r).unwrap_err();
        assert!(why.contains("apps[id=\"1\"].webhooks"), "{why}");
        let mut r = soketi_row();
        r.insert(
            "webhooks",
            Value::Text(r#"[{"url":"ftp://x","event_types":["channel_occupied"]}]"#.into()),
        );
        assert!(app_of("apps", &r).unwrap_err().contains("webhooks[0].url"));
        let mut r = soketi_row();
        r.insert("max_connections", Value::Int(1 << 40));
        assert!(app_of("apps", &r).unwrap_err().contains("max_connections"));
        let mut r = soketi_row();
        r.insert("secret", Value::Null);
        assert!(app_of("apps", &r).unwrap_err().contains("secret"));
    }
}

/// The soketi webhooks JSON of an app (what [`app_of`] reads back).
pub fn webhooks_json(app: &App) -> String {
    use crate::json::json_str;
    let hooks: Vec<String> = app
        .webhooks
        .iter()
        .map(|w| {
            let mut filter = Vec::new();
            if let Some(p) = &w.prefix {
                filter.push(format!("\"channel_name_starts_with\":{}", json_str(p)));
            }
            if let Some(s) = &w.suffix {
                filter.push(format!("\"channel_name_ends_with\":{}", json_str(s)));
            }
            format!(
                "{{{},\"filter\":{{{}}}}}",
                w.common_json(),
                filter.join(",")
            )
        })
        .collect();
    format!("[{}]", hooks.join(","))
}

/// The values of an app's row, by column, as text (`None`: SQL NULL);
/// [`app_of`] of them gives the app back. `max_read_req_per_sec`, which
/// soketi's table requires and shardcast does not read, is written as -1.
pub fn row_of(app: &App) -> Vec<(&'static str, Option<String>)> {
    let n = |v: Option<u32>| Some(v.map_or("-1".to_string(), |v| v.to_string()));
    let flag = |b: bool| Some(if b { "1" } else { "0" }.to_string());
    let l = &app.limits;
    vec![
        ("id", Some(app.id.clone())),
        ("key", Some(app.key.clone())),
        ("secret", Some(app.secret.clone())),
        ("max_connections", n(l.max_connections)),
        ("enable_client_messages", flag(app.enable_client_messages)),
        ("enabled", flag(app.enabled)),
        (
            "max_backend_events_per_sec",
            n(app.max_api_requests_per_second),
        ),
        (
            "max_client_events_per_sec",
            n(Some(l.max_client_events_per_second)),
        ),
        ("max_read_req_per_sec", Some("-1".into())),
        ("webhooks", Some(webhooks_json(app))),
        (
            "max_presence_members_per_channel",
            n(Some(l.max_presence_members as u32)),
        ),
        (
            "max_channel_name_length",
            n(Some(l.max_channel_name_length as u32)),
        ),
        (
            "max_event_channels_at_once",
            n(Some(l.max_channels_per_event as u32)),
        ),
        (
            "max_event_name_length",
            n(Some(l.max_event_name_length as u32)),
        ),
        (
            "max_event_payload_in_kb",
            n(Some((l.max_event_payload_bytes / 1024) as u32)),
        ),
        ("max_event_batch_size", n(Some(l.max_batch_size as u32))),
        (
            "enable_user_authentication",
            flag(app.enable_user_authentication),
        ),
        (
            "user_authentication_timeout",
            n(Some(app.user_authentication_timeout)),
        ),
        (
            "enable_subscription_count",
            flag(app.enable_subscription_count),
        ),
        ("cache_ttl", n(Some(app.cache_ttl.as_secs() as u32))),
    ]
}

#[cfg(test)]
mod round_trip {
    use super::*;

    #[test]
    fn an_app_written_as_a_row_reads_back_the_same() {
        let mut section_row = Row::new();
        let mut app = App::new("r".into(), "kr".into(), "sr".into());
        app.limits.max_connections = Some(7);
        app.max_api_requests_per_second = Some(9);
        app.enable_client_messages = true;
        app.webhooks = vec![crate::apps::webhook::Webhook {
            url: "https://h.example/w".into(),
            kinds: {
                let mut k = crate::apps::webhook::KindSet::default();
                k.insert(crate::apps::webhook::EventKind::ALL[0]);
                k
            },
            prefix: Some("p-".into()),
            suffix: None,
            headers: vec![("X-Token".into(), "t\"q".into())],
        }];
        app.webhook_kinds = crate::apps::webhook::kinds_of(&app.webhooks);
        for (name, value) in row_of(&app) {
            let Some(column) = COLUMNS.iter().find(|c| c.name == name) else {
                continue;
            };
            let v = match (column.kind, value) {
                (_, None) => Value::Null,
                (Kind::Integer | Kind::Flag, Some(t)) => Value::Int(t.parse().unwrap()),
                (_, Some(t)) => Value::Text(t),
            };
            section_row.insert(column.name, v);
        }
        assert_eq!(app_of("apps", &section_row).unwrap(), app);
    }
}
