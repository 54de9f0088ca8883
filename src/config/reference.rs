//! Holds the written references to the table in `settings`: README.md's
//! configuration table, `shardcast.example.toml`, and the file sections
//! serde accepts. Each check fails naming the first key that disagrees.

use super::settings::{Preset, Setting, ALL};

const README: &str = include_str!("../../README.md");
const EXAMPLE: &str = include_str!("../../shardcast.example.toml");

fn setting(key: &str) -> Option<&'static Setting> {
    ALL.iter().find(|s| s.key == key)
}

/// The rows of the first table under README's `heading` whose header row
/// starts with `| {first} |`: `(first cell without backticks, second cell)`.
fn readme_rows(heading: &str, first: &str) -> Vec<(String, String)> {
    let start = README
        .find(&format!("\n## {heading}\n"))
        .unwrap_or_else(|| panic!("README has no \"## {heading}\" section"));
    let section = &README[start + 1..];
    let end = section[3..].find("\n## ").map_or(section.len(), |e| e + 3);
    let header = format!("| {first} |");
    section[..end]
        .lines()
        .skip_while(|l| !l.starts_with(&header))
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .map(|row| {
            let cells: Vec<&str> = row.split('|').map(str::trim).collect();
            let key = cells[1].trim_matches('`').to_string();
            (key, cells[2].to_string())
        })
        .collect()
}

/// README's default cell states the table's default: exactly, or followed
/// by an explanation (`0 (no limit)`, `none (plain)`).
fn states_default(cell: &str, setting: &Setting) -> bool {
    let default = setting.default_text();
    cell == default
        || cell.starts_with(&format!("{default} ("))
        || cell.starts_with(&format!("{default};"))
}

#[test]
fn readme_table_follows_the_settings() {
    let rows = readme_rows("Configuration file", "key");
    assert!(!rows.is_empty(), "README's configuration table not found");
    for (key, cell) in &rows {
        let Some(s) = setting(key) else {
            panic!("README's configuration table lists `{key}`, which is not a setting");
        };
        assert!(
            states_default(cell, s),
            "README gives `{key}` the default {cell:?}; the table says {:?}",
            s.default_text()
        );
    }
    for s in ALL {
        assert!(
            rows.iter().any(|(key, _)| key == s.key),
            "`{}` is missing from README's configuration table",
            s.key
        );
    }
}

/// The setting a README row names by its last part: the app's when the row
/// says so (`app `x``, ``x` (app)`) or no server key has that name.
fn setting_named(name: &str, app: bool) -> Option<&'static Setting> {
    let server = ALL
        .iter()
        .find(|s| !app && !s.key.starts_with("apps[]") && s.name() == name);
    server.or_else(|| ALL.iter().find(|s| s.key == format!("apps[].{name}")))
}

/// The Security section's table of limits repeats defaults; each must be
/// the table's (`off`/`none` for a limit that is off by default).
#[test]
fn readme_limits_table_follows_the_settings() {
    let start = README
        .find("**Limits a client cannot exceed**")
        .expect("README has the table of limits");
    let rows: Vec<&str> = README[start..]
        .lines()
        .skip_while(|l| !l.starts_with("| limit |"))
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .collect();
    assert!(!rows.is_empty(), "README's table of limits not found");
    for row in rows {
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let app = cells[1].contains("app");
        let names = cells[1].split('`').skip(1).step_by(2);
        let values = cells[2].split(", ");
        for (name, value) in names.zip(values) {
            let s = setting_named(name, app).unwrap_or_else(|| {
                panic!("README's table of limits names `{name}`, not a setting")
            });
            let word = value.split(' ').next().unwrap_or_default();
            let off = matches!(s.preset, Preset::Integer(0) | Preset::Absent(_));
            let ok = if off {
                word == "off" || word == "none"
            } else {
                word == s.default_text()
            };
            assert!(
                ok,
                "README's table of limits gives `{}` the default {value:?}; the table says {:?}",
                s.key,
                s.default_text()
            );
        }
    }
}

/// README's command-line table and `--help` give each flag its setting's
/// default.
#[test]
fn flags_follow_the_settings() {
    use super::settings::{CPUS, HOST, PORT};
    use clap::CommandFactory;
    let rows = readme_rows("Command line", "flag");
    let command = super::Cli::command();
    for (flag, setting) in [
        ("--host H", &HOST),
        ("--port P", &PORT),
        ("--cpus LIST", &CPUS),
    ] {
        let (_, cell) = rows
            .iter()
            .find(|(f, _)| f == flag)
            .unwrap_or_else(|| panic!("`{flag}` is missing from README's command-line table"));
        assert!(
            states_default(cell, setting),
            "README gives `{flag}` the default {cell:?}; the table says {:?}",
            setting.default_text()
        );
        let id = flag[2..].split(' ').next().unwrap_or_default();
        let arg = command.get_arguments().find(|a| a.get_id() == id);
        let help = arg.and_then(|a| a.get_help()).map(|h| h.to_string());
        let default = setting.default_text().replace('`', "");
        assert!(
            help.as_deref().is_some_and(|h| h.contains(&default)),
            "--{id}'s help {help:?} does not give the default {default:?}"
        );
    }
}

/// The section a table header names, in the table's spelling
/// (`[[apps.webhooks]]` is `apps[].webhooks[]`).
fn section_of(header: &str) -> Option<String> {
    let array = header.starts_with("[[");
    let name = header.trim_matches(|c| c == '[' || c == ']');
    let valid = header.ends_with(']')
        && !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b == b'.' || b == b'_');
    if !valid {
        return None;
    }
    Some(match (array, name) {
        (true, "apps") => "apps[]".into(),
        (true, "apps.webhooks") => "apps[].webhooks[]".into(),
        _ => name.into(),
    })
}

/// Every `key = value` line of the example, commented or not, as
/// `(line number, full key, value)`.
fn example_assignments() -> Vec<(usize, String, toml::Value)> {
    let mut section = String::new();
    let mut found = Vec::new();
    for (n, line) in EXAMPLE.lines().enumerate() {
        let text = line.trim_start_matches(['#', ' ']);
        if text.starts_with('[') {
            if let Some(name) = section_of(text.split_whitespace().next().unwrap_or("")) {
                section = name;
            }
            continue;
        }
        let starts_with_name = text
            .split_once(" = ")
            .is_some_and(|(name, _)| name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'));
        if !starts_with_name {
            continue;
        }
        // A prose line that happens to look like one does not parse.
        let Ok(table) = text.parse::<toml::Table>() else {
            continue;
        };
        for (name, value) in table {
            found.push((n + 1, format!("{section}.{name}"), value));
        }
    }
    found
}

/// Whether `value` is `setting`'s default; settings without one (`Absent`,
/// `Required`, `Computed`) take any example value within their bounds.
fn shows_default(value: &toml::Value, setting: &Setting) -> bool {
    use toml::Value;
    match (setting.preset, value) {
        (Preset::Integer(n), Value::Integer(v)) => *v == i64::from(n),
        (Preset::Bool(b), Value::Boolean(v)) => *v == b,
        (Preset::Text(t), Value::String(v)) => v == t,
        (Preset::Choice(cases), Value::String(v)) => cases.iter().any(|(_, c)| c == v),
        (Preset::Absent(_) | Preset::Required | Preset::Computed(_), Value::Integer(v)) => {
            u32::try_from(*v).is_ok_and(|v| setting.allows(v))
        }
        (Preset::Absent(_) | Preset::Required | Preset::Computed(_), _) => true,
        _ => false,
    }
}

#[test]
fn example_config_follows_the_settings() {
    let assignments = example_assignments();
    for (line, key, value) in &assignments {
        let Some(s) = setting(key) else {
            panic!("shardcast.example.toml line {line}: `{key}` is not a setting");
        };
        assert!(
            shows_default(value, s),
            "shardcast.example.toml line {line}: `{key} = {value}` is not the default {}",
            s.default_text()
        );
    }
    for s in ALL {
        assert!(
            assignments.iter().any(|(_, key, _)| key == s.key),
            "`{}` is missing from shardcast.example.toml",
            s.key
        );
    }
}

/// The names serde accepts in one section, read from its error for an
/// unknown key (``expected one of `a`, `b` ``).
fn accepted_names(toml_text: &str) -> Vec<String> {
    let err = super::parse_file(toml_text)
        .expect_err("an unknown key is refused")
        .to_string();
    let (_, list) = err
        .split_once("expected ")
        .unwrap_or_else(|| panic!("no list of keys in {err:?}"));
    // `a`, `b` or `c`: every other piece between backticks is a name.
    list.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

#[test]
fn file_sections_accept_exactly_the_settings() {
    let app = "[[apps]]\nid = \"1\"\nkey = \"k\"\nsecret = \"s\"\n";
    let sections = [
        (
            "server",
            "[server]\nzzz = 1\n".to_string(),
            &["limits", "webhooks", "metrics", "console", "tls", "admin"][..],
        ),
        ("server.limits", "[server.limits]\nzzz = 1\n".into(), &[]),
        (
            "server.webhooks",
            "[server.webhooks]\nzzz = 1\n".into(),
            &[],
        ),
        ("server.metrics", "[server.metrics]\nzzz = 1\n".into(), &[]),
        ("server.console", "[server.console]\nzzz = 1\n".into(), &[]),
        ("server.tls", "[server.tls]\nzzz = 1\n".into(), &[]),
        ("server.admin", "[server.admin]\nzzz = 1\n".into(), &[]),
        ("cluster", "[cluster]\nzzz = 1\n".into(), &[]),
        ("app_store", "[app_store]\nzzz = 1\n".into(), &[]),
        ("apps[]", "[[apps]]\nzzz = 1\n".into(), &["webhooks"]),
        (
            "apps[].webhooks[]",
            format!("{app}[[apps.webhooks]]\nzzz = 1\n"),
            &[],
        ),
    ];
    let mut accepted = Vec::new();
    for (section, text, subsections) in &sections {
        for name in accepted_names(text) {
            if !subsections.contains(&name.as_str()) {
                accepted.push(format!("{section}.{name}"));
            }
        }
    }
    for key in &accepted {
        assert!(
            setting(key).is_some(),
            "the file accepts `{key}`, which is not in the table"
        );
    }
    for s in ALL {
        assert!(
            accepted.contains(&s.key.to_string()),
            "the file does not accept `{}`",
            s.key
        );
    }
}

/// A TOML value of `setting`'s kind, within its bounds when `fits`, else of
/// another type.
fn sample(setting: &Setting, fits: bool) -> String {
    use super::settings::{Bounds, Kind};
    let value = match setting.kind {
        Kind::Integer => match setting.bounds {
            Bounds::Range { min, .. } => min.to_string(),
            _ => "1".into(),
        },
        Kind::Bool => "true".into(),
        Kind::Text | Kind::Path => "\"x\"".into(),
        Kind::List => "[\"cache_miss\"]".into(),
        Kind::Table => "{}".into(),
    };
    match (fits, setting.kind) {
        (true, _) => value,
        (false, Kind::Integer) => "\"1\"".into(),
        (false, _) => "1".into(),
    }
}

/// A file setting every key, `wrong` (if any) with a value of another type.
fn file_with_every_key(wrong: Option<&str>) -> String {
    let mut text = String::new();
    let mut section = "";
    for s in ALL {
        let (this, name) = s.key.rsplit_once('.').unwrap_or(("", s.key));
        if this != section {
            section = this;
            text += &match this {
                "apps[]" => "[[apps]]\n".to_string(),
                "apps[].webhooks[]" => "[[apps.webhooks]]\n".to_string(),
                _ => format!("[{this}]\n"),
            };
        }
        let fits = wrong != Some(s.key);
        text += &format!("{name} = {}\n", sample(s, fits));
    }
    text
}

/// Each setting's kind is the type the file accepts for it.
#[test]
fn the_file_takes_each_setting_as_its_kind() {
    let text = file_with_every_key(None);
    if let Err(e) = super::parse_file(&text) {
        panic!("{e}\nin\n{text}");
    }
    for s in ALL {
        let err = super::parse_file(&file_with_every_key(Some(s.key)))
            .err()
            .unwrap_or_else(|| panic!("`{}` accepts a value of another kind", s.key))
            .to_string();
        assert!(err.contains(s.name()), "{}: {err}", s.key);
    }
}
