//! Validation: CLI, file and environment resolved into a [`Config`]. Every
//! left-out key takes the table's default and every integer is checked
//! against the table's bounds (`settings`); a bad value is an error naming
//! its key and what it accepts.

use super::defaults::{kib, mib, millis, secs};
use super::settings::{self, Setting};
use super::*;
use crate::apps::webhook::{EventKind, KindSet, Webhook};
use crate::apps::{App, AppLimits};
use crate::config::WebhookSettings;
use crate::errors::ConfigError;

impl Config {
    /// Resolves CLI, file and environment into a validated configuration.
    /// `allowed_cpus` is the process affinity, used when no CPU list is given.
    pub fn resolve(
        cli: &Cli,
        env: &dyn Fn(&str) -> Option<String>,
        allowed_cpus: &[usize],
    ) -> Result<Config, ConfigError> {
        let file = match &cli.config {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
                    path: path.display().to_string(),
                    source: e,
                })?;
                parse_file(&text)?
            }
            None => FileConfig::default(),
        };
        let server = &file.server;
        let app_store = resolve_app_store(&file.app_store)?;
        let from_file = app_store.driver == StoreDriver::File;
        let dev_app = from_file && file.apps.is_empty();
        let given_host = cli.host.clone().or_else(|| server.host.clone());
        let dev_loopback = dev_app && given_host.is_none();
        let host =
            given_host.unwrap_or_else(|| if dev_app { DEV_HOST } else { DEFAULT_HOST }.to_string());
        let port = cli.port.or(server.port).unwrap_or(DEFAULT_PORT);
        let cpus = match cli.cpus.as_deref().or(server.cpus.as_deref()) {
            Some(list) => {
                let key = if cli.cpus.is_some() {
                    "--cpus"
                } else {
                    settings::CPUS.key
                };
                parse_cpu_list(list).map_err(|why| ConfigError::Invalid {
                    key: key.into(),
                    why,
                })?
            }
            None => allowed_cpus.to_vec(),
        };
        if cpus.is_empty() {
            return Err(ConfigError::Invalid {
                key: "cpus".into(),
                why: "no CPU to run on".into(),
            });
        }
        let activity_timeout = integer(&settings::ACTIVITY_TIMEOUT, server.activity_timeout)?;
        let pong_timeout = integer(&settings::PONG_TIMEOUT, server.pong_timeout)?;
        let limits = resolve_limits(&server.limits)?;
        let webhooks = resolve_webhook_settings(&server.webhooks)?;
        let metrics_port = match server
            .metrics
            .enabled
            .unwrap_or(settings::METRICS_ENABLED.flag())
        {
            true => Some(server.metrics.port.unwrap_or(DEFAULT_METRICS_PORT)),
            false => None,
        };
        if metrics_port.is_some_and(|p| p != 0 && p == port) {
            return Err(ConfigError::Invalid {
                key: settings::METRICS_PORT.key.into(),
                why: format!("must differ from the main port {port}"),
            });
        }
        let console = resolve_console(&server.console, metrics_port.is_some())?;
        let admin_token = match &server.admin.token {
            None => None,
            Some(t) if (16..=256).contains(&t.len()) && t.bytes().all(|b| b.is_ascii_graphic()) => {
                Some(AdminToken(t.clone()))
            }
            Some(_) => {
                return Err(ConfigError::Invalid {
                    key: settings::ADMIN_TOKEN.key.into(),
                    why: settings::ADMIN_TOKEN.allowed(),
                })
            }
        };
        let log_level = match &server.log_level {
            Some(level) => Some(check_log_level(level)?),
            None => None,
        };

        let apps = if from_file {
            resolve_apps(&file, env)?
        } else if !file.apps.is_empty() {
            return Err(ConfigError::Invalid {
                key: "apps".into(),
                why: format!(
                    "{} = \"{}\" reads the apps from the database; remove [[apps]]",
                    settings::APP_STORE_DRIVER.key,
                    app_store.driver.name()
                ),
            });
        } else {
            Vec::new()
        };
        // Relative paths are relative to the config file's folder.
        let base = cli.config.as_deref().and_then(std::path::Path::parent);
        let place = |p: &std::path::Path| match base {
            Some(dir) if p.is_relative() => dir.join(p),
            _ => p.to_path_buf(),
        };
        Ok(Config {
            config_file: cli.config.clone(),
            host,
            port,
            cpus,
            activity_timeout,
            pong_timeout,
            limits,
            apps,
            dev_app,
            webhooks,
            metrics_port,
            console,
            admin_token,
            cluster: resolve_cluster(&file.cluster, env, &place)?,
            app_store,
            tls: server.tls.as_ref().map(|t| TlsFiles {
                cert: place(&t.cert),
                key: place(&t.key),
            }),
            log_level,
            dev_loopback,
        })
    }
}

/// `[server.console]`: off unless enabled; enabled needs the metrics port
/// (it serves the console) and a token that is hard to guess and safe in a
/// header.
fn resolve_console(
    section: &ConsoleSection,
    metrics: bool,
) -> Result<Option<ConsoleSettings>, ConfigError> {
    if !section.enabled.unwrap_or(settings::CONSOLE_ENABLED.flag()) {
        return Ok(None);
    }
    let invalid = |key: &Setting, why: &str| ConfigError::Invalid {
        key: key.key.into(),
        why: why.into(),
    };
    if !metrics {
        return Err(invalid(
            &settings::CONSOLE_ENABLED,
            "the console is served on the metrics port: set server.metrics.enabled = true",
        ));
    }
    let Some(token) = &section.token else {
        return Err(invalid(
            &settings::CONSOLE_TOKEN,
            "is required when the console is enabled",
        ));
    };
    let printable = token.bytes().all(|b| b.is_ascii_graphic());
    if !(16..=256).contains(&token.len()) || !printable {
        return Err(invalid(
            &settings::CONSOLE_TOKEN,
            settings::CONSOLE_TOKEN.allowed().as_str(),
        ));
    }
    Ok(Some(ConsoleSettings {
        token: token.clone(),
    }))
}

/// The `[[apps]]` of a config file, read again (SIGHUP, `app_store`), with
/// the same validation as at start; the development app when it has none.
/// Only the apps are read: other settings need a restart.
pub fn apps_from_file(
    path: &std::path::Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<App>, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
        path: path.display().to_string(),
        source: e,
    })?;
    resolve_apps(&parse_file(&text)?, env)
}

fn resolve_apps(
    file: &FileConfig,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<App>, ConfigError> {
    let apps = if file.apps.is_empty() {
        vec![App::new(
            env("SHARDCAST_APP_ID").unwrap_or_else(|| "app-id".into()),
            env("SHARDCAST_APP_KEY").unwrap_or_else(|| "app-key".into()),
            env("SHARDCAST_APP_SECRET").unwrap_or_else(|| "app-secret".into()),
        )]
    } else {
        file.apps
            .iter()
            .enumerate()
            .map(|(i, a)| resolve_app(i, a))
            .collect::<Result<Vec<_>, _>>()?
    };
    check_unique(&apps)?;
    Ok(apps)
}

/// Parses `0,2-3` into `[0, 2, 3]`; order is kept and repeats are allowed.
pub fn parse_cpu_list(list: &str) -> Result<Vec<usize>, String> {
    let mut cpus = Vec::new();
    for part in list.split(',').map(str::trim) {
        if part.is_empty() {
            return Err(format!("empty entry in CPU list `{list}`"));
        }
        let num = |s: &str| {
            s.trim()
                .parse::<usize>()
                .map_err(|_| format!("`{s}` is not a CPU number (in `{list}`)"))
        };
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (num(a)?, num(b)?);
                if a > b {
                    return Err(format!("range `{part}` runs backwards"));
                }
                if b - a >= 4096 {
                    return Err(format!("range `{part}` is too large"));
                }
                cpus.extend(a..=b);
            }
            None => cpus.push(num(part)?),
        }
    }
    Ok(cpus)
}

/// `value` checked against `setting`'s bounds, or its default when left
/// out; errors name `key` (the setting's key, or an app's `apps[N].name`).
fn integer_at(setting: &Setting, value: Option<u32>, key: &str) -> Result<u32, ConfigError> {
    match value {
        Some(v) if setting.allows(v) => Ok(v),
        Some(v) => {
            let absent = match setting.preset {
                settings::Preset::Absent(words) => format!("; leave it out for {words}"),
                _ => String::new(),
            };
            Err(ConfigError::Invalid {
                key: key.into(),
                why: format!(
                    "{v} is out of range (allowed: {}{absent})",
                    setting.allowed()
                ),
            })
        }
        None => Ok(setting.integer()),
    }
}

/// [`integer_at`] for a key named as in the table.
fn integer(setting: &Setting, value: Option<u32>) -> Result<u32, ConfigError> {
    integer_at(setting, value, setting.key)
}

/// A setting without a default (`Absent`): `None` when left out, else the
/// value checked against the bounds.
fn optional_at(
    setting: &Setting,
    value: Option<u32>,
    key: &str,
) -> Result<Option<u32>, ConfigError> {
    match value {
        Some(v) => integer_at(setting, Some(v), key).map(Some),
        None => Ok(None),
    }
}

fn resolve_limits(l: &LimitsSection) -> Result<ServerLimits, ConfigError> {
    use settings::*;
    Ok(ServerLimits {
        max_frame_bytes: kib(integer(&MAX_FRAME_KB, l.max_frame_kb)?),
        max_write_queue_bytes: kib(integer(&MAX_WRITE_QUEUE_KB, l.max_write_queue_kb)?),
        max_request_body_bytes: kib(integer(&MAX_REQUEST_BODY_KB, l.max_request_body_kb)?),
        max_request_head_bytes: kib(integer(&MAX_REQUEST_HEAD_KB, l.max_request_head_kb)?),
        max_connections: integer(&MAX_CONNECTIONS, l.max_connections)?,
        max_pending_heads: integer(&MAX_PENDING_HEADS, l.max_pending_heads)?,
        head_timeout: secs(integer(&HEAD_TIMEOUT_SECS, l.head_timeout_secs)?),
        max_subscriptions_per_connection: integer(
            &MAX_SUBSCRIPTIONS_PER_CONNECTION,
            l.max_subscriptions_per_connection,
        )?,
        max_write_queues_bytes: mib(integer(&MAX_WRITE_QUEUES_MB, l.max_write_queues_mb)?),
        max_cached_channels: integer(&MAX_CACHED_CHANNELS, l.max_cached_channels)?,
        max_cache_bytes: kib(integer(&MAX_CACHE_KB, l.max_cache_kb)?),
        // 0 is "no limit", held as `None`.
        max_connections_per_ip: Some(integer(&MAX_CONNECTIONS_PER_IP, l.max_connections_per_ip)?)
            .filter(|&n| n > 0),
        client_ip_header: match &l.client_ip_header {
            Some(name) => Some(check_header_name(name, CLIENT_IP_HEADER.key)?),
            None => None,
        },
    })
}

/// A header name as configured: an HTTP token (RFC 9110 5.1), so it can
/// match a request header at all.
fn check_header_name(name: &str, key: &str) -> Result<String, ConfigError> {
    let tchar = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if name.is_empty() || !name.bytes().all(tchar) {
        return Err(ConfigError::Invalid {
            key: key.into(),
            why: format!(
                "`{}` is not an HTTP header name (letters, digits and !#$%&'*+-.^_`|~ only)",
                name.escape_default()
            ),
        });
    }
    Ok(name.to_string())
}

fn resolve_webhook_settings(w: &WebhooksSection) -> Result<WebhookSettings, ConfigError> {
    use settings::*;
    Ok(WebhookSettings {
        batch_window: millis(integer(&WEBHOOK_BATCH_WINDOW_MS, w.batch_window_ms)?),
        batch_max: integer(&WEBHOOK_BATCH_MAX, w.batch_max)? as usize,
        delay: millis(integer(&WEBHOOK_DELAY_MS, w.delay_ms)?),
        retry_for: secs(integer(&WEBHOOK_RETRY_FOR_SECS, w.retry_for_secs)?),
        timeout: millis(integer(&WEBHOOK_TIMEOUT_MS, w.timeout_ms)?),
        max_queued_events: integer(&WEBHOOK_MAX_QUEUED_EVENTS, w.max_queued_events)? as usize,
    })
}

fn resolve_app_store(s: &AppStoreSection) -> Result<AppStoreSettings, ConfigError> {
    use settings::{APP_STORE_DRIVER, APP_STORE_POLL_INTERVAL_MS, APP_STORE_TABLE, APP_STORE_URL};
    let invalid = |setting: &Setting, why: String| ConfigError::Invalid {
        key: setting.key.into(),
        why,
    };
    let url = |schemes: &[&str]| -> Result<String, ConfigError> {
        let Some(url) = s.url.clone() else {
            return Err(invalid(&APP_STORE_URL, "required for this driver".into()));
        };
        if !schemes.iter().any(|scheme| url.starts_with(scheme)) {
            return Err(invalid(
                &APP_STORE_URL,
                format!(
                    "must start with {} (got {:?})",
                    schemes.join(" or "),
                    crate::logging::redact::url(&url)
                ),
            ));
        }
        Ok(url)
    };
    let driver = match s.driver.as_deref().unwrap_or(APP_STORE_DRIVER.text()) {
        "file" => StoreDriver::File,
        "postgres" => StoreDriver::Postgres {
            url: url(&["postgres://", "postgresql://"])?,
        },
        "mysql" => StoreDriver::Mysql {
            url: url(&["mysql://", "mariadb://"])?,
        },
        other => {
            return Err(invalid(
                &APP_STORE_DRIVER,
                format!("expected {}, got {other:?}", APP_STORE_DRIVER.allowed()),
            ))
        }
    };
    if driver == StoreDriver::File && s.url.is_some() {
        return Err(invalid(
            &APP_STORE_URL,
            "the file driver takes no url".into(),
        ));
    }
    let table = s
        .table
        .clone()
        .unwrap_or_else(|| APP_STORE_TABLE.text().into());
    let table_ok = !table.is_empty()
        && table.len() <= 63
        && !table.as_bytes()[0].is_ascii_digit()
        && table
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if !table_ok {
        return Err(invalid(&APP_STORE_TABLE, APP_STORE_TABLE.allowed()));
    }
    Ok(AppStoreSettings {
        driver,
        table,
        poll_interval: millis(integer(&APP_STORE_POLL_INTERVAL_MS, s.poll_interval_ms)?),
    })
}

/// The environment variable that overrides `cluster.secret`.
pub const CLUSTER_SECRET_ENV: &str = "SHARDCAST_CLUSTER_SECRET";
/// Fewest bytes a cluster secret may have.
const MIN_SECRET_BYTES: usize = 16;

fn resolve_cluster(
    c: &ClusterSection,
    env: &dyn Fn(&str) -> Option<String>,
    place: &dyn Fn(&std::path::Path) -> std::path::PathBuf,
) -> Result<ClusterSettings, ConfigError> {
    use settings::{
        CLUSTER_ADAPTER, CLUSTER_CERT_FILE, CLUSTER_CREDENTIALS_FILE, CLUSTER_KEY_FILE,
        CLUSTER_NODE_TIMEOUT_SECS, CLUSTER_PREFIX, CLUSTER_URL,
    };
    let invalid = |setting: &Setting, why: String| ConfigError::Invalid {
        key: setting.key.into(),
        why,
    };
    let url = |schemes: &[&str], default: &str| -> Result<String, ConfigError> {
        let url = c.url.clone().unwrap_or_else(|| default.to_string());
        if !schemes.iter().any(|s| url.starts_with(s)) {
            return Err(invalid(
                &CLUSTER_URL,
                format!(
                    "must start with {} (got {:?})",
                    schemes.join(" or "),
                    crate::logging::redact::url(&url)
                ),
            ));
        }
        Ok(url)
    };
    let adapter = match c.adapter.as_deref().unwrap_or(CLUSTER_ADAPTER.text()) {
        "local" => Adapter::Local,
        "redis" => Adapter::Redis {
            url: url(&["redis://", "rediss://"], CLUSTER_URL.case(0))?,
        },
        "nats" => Adapter::Nats {
            url: url(&["nats://", "tls://"], CLUSTER_URL.case(1))?,
        },
        other => {
            return Err(invalid(
                &CLUSTER_ADAPTER,
                format!("expected {}, got {other:?}", CLUSTER_ADAPTER.allowed()),
            ))
        }
    };
    if adapter == Adapter::Local && c.url.is_some() {
        return Err(invalid(
            &CLUSTER_URL,
            "the local adapter takes no url".into(),
        ));
    }
    let prefix = c
        .prefix
        .clone()
        .unwrap_or_else(|| CLUSTER_PREFIX.text().into());
    let prefix_ok = !prefix.is_empty()
        && prefix.len() <= 64
        && prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !prefix_ok {
        return Err(invalid(&CLUSTER_PREFIX, CLUSTER_PREFIX.allowed()));
    }
    let node_timeout = secs(integer(&CLUSTER_NODE_TIMEOUT_SECS, c.node_timeout_secs)?);
    let engine_timeout = secs(integer(
        &settings::CLUSTER_ENGINE_TIMEOUT_SECS,
        c.engine_timeout_secs,
    )?);
    let link_queue = integer(&settings::CLUSTER_LINK_QUEUE, c.link_queue)? as usize;
    let unsubscribe_linger = millis(integer(
        &settings::CLUSTER_UNSUBSCRIBE_LINGER_MS,
        c.unsubscribe_linger_ms,
    )?);
    let files = EngineFiles {
        ca: c.ca_file.as_deref().map(place),
        cert: c.cert_file.as_deref().map(place),
        key: c.key_file.as_deref().map(place),
        credentials: c.credentials_file.as_deref().map(place),
    };
    if files.cert.is_some() != files.key.is_some() {
        let (missing, given) = match files.cert {
            Some(_) => (&CLUSTER_KEY_FILE, &CLUSTER_CERT_FILE),
            None => (&CLUSTER_CERT_FILE, &CLUSTER_KEY_FILE),
        };
        return Err(invalid(missing, format!("required with {}", given.key)));
    }
    if files.credentials.is_some() && matches!(adapter, Adapter::Redis { .. }) {
        return Err(invalid(
            &CLUSTER_CREDENTIALS_FILE,
            "for the nats adapter only".into(),
        ));
    }
    let secret = match &adapter {
        Adapter::Local => None,
        _ => Some(cluster_secret(c, env, place, &adapter)?),
    };
    Ok(ClusterSettings {
        adapter,
        prefix,
        node_timeout,
        engine_timeout,
        link_queue,
        unsubscribe_linger,
        secret,
        files,
    })
}

/// The cluster secret from the environment, `secret` or `secret_file`
/// (one of the two in the file; the environment wins over both).
fn cluster_secret(
    c: &ClusterSection,
    env: &dyn Fn(&str) -> Option<String>,
    place: &dyn Fn(&std::path::Path) -> std::path::PathBuf,
    adapter: &Adapter,
) -> Result<ClusterSecret, ConfigError> {
    use settings::{CLUSTER_ADAPTER, CLUSTER_SECRET, CLUSTER_SECRET_FILE};
    let invalid = |key: &str, why: String| ConfigError::Invalid {
        key: key.into(),
        why,
    };
    if c.secret.is_some() && c.secret_file.is_some() {
        return Err(invalid(
            CLUSTER_SECRET_FILE.key,
            format!(
                "set {} or {}, not both",
                CLUSTER_SECRET.key, CLUSTER_SECRET_FILE.key
            ),
        ));
    }
    let (bytes, from) = if let Some(s) = env(CLUSTER_SECRET_ENV).filter(|s| !s.is_empty()) {
        (s.into_bytes(), CLUSTER_SECRET_ENV)
    } else if let Some(s) = &c.secret {
        (s.clone().into_bytes(), CLUSTER_SECRET.key)
    } else if let Some(path) = &c.secret_file {
        let path = place(path);
        let mut bytes = std::fs::read(&path).map_err(|e| {
            invalid(
                CLUSTER_SECRET_FILE.key,
                format!("cannot read {}: {e}", path.display()),
            )
        })?;
        if bytes.ends_with(b"\n") {
            bytes.pop();
            if bytes.ends_with(b"\r") {
                bytes.pop();
            }
        }
        (bytes, CLUSTER_SECRET_FILE.key)
    } else {
        let name = match adapter {
            Adapter::Redis { .. } => "redis",
            _ => "nats",
        };
        return Err(invalid(
            CLUSTER_SECRET.key,
            format!(
                "required with {} = \"{name}\": every node of the cluster signs its messages \
                 with one shared secret of {MIN_SECRET_BYTES} or more bytes. Set {} in [cluster], \
                 {} (a file holding it) or the {CLUSTER_SECRET_ENV} environment variable, the \
                 same on every node (for example the output of `openssl rand -hex 32`)",
                CLUSTER_ADAPTER.key, CLUSTER_SECRET.key, CLUSTER_SECRET_FILE.key
            ),
        ));
    };
    if bytes.len() < MIN_SECRET_BYTES {
        return Err(invalid(
            from,
            format!(
                "{} bytes; a cluster secret needs {MIN_SECRET_BYTES} or more",
                bytes.len()
            ),
        ));
    }
    Ok(ClusterSecret(bytes))
}

/// Accepts a level (`info`) or an env_logger filter of levels and
/// `target=level` pairs (`shardcast=debug,warn`).
fn check_log_level(level: &str) -> Result<String, ConfigError> {
    let known = |l: &str| {
        ["off", "error", "warn", "info", "debug", "trace"]
            .contains(&l.trim().to_lowercase().as_str())
    };
    let ok = !level.trim().is_empty()
        && level.split(',').all(|part| match part.split_once('=') {
            Some((target, l)) => !target.trim().is_empty() && known(l),
            None => known(part),
        });
    if ok {
        Ok(level.to_string())
    } else {
        Err(ConfigError::Invalid {
            key: settings::LOG_LEVEL.key.into(),
            why: format!("`{level}` is not {}", settings::LOG_LEVEL.allowed()),
        })
    }
}

/// Whether `url` parses as a URL (the HTTP client's parser). A build
/// without the `webhooks` feature has no parser, and refuses an app with
/// webhooks at start-up anyway (`webhooks::sender`): the scheme check stands.
#[cfg(feature = "webhooks")]
fn parses_as_url(url: &str) -> bool {
    reqwest::Url::parse(url).is_ok()
}

#[cfg(not(feature = "webhooks"))]
fn parses_as_url(_url: &str) -> bool {
    true
}

fn resolve_webhook(
    key: &dyn Fn(&str) -> String,
    w: &WebhookSection,
) -> Result<Webhook, ConfigError> {
    let invalid = |field: &str, why: String| ConfigError::Invalid {
        key: key(field),
        why,
    };
    let scheme_ok = w.url.starts_with("http://") || w.url.starts_with("https://");
    if !scheme_ok || !parses_as_url(&w.url) {
        return Err(invalid(
            settings::WEBHOOK_URL.name(),
            format!(
                "`{}` is not an http:// or https:// URL",
                crate::logging::redact::url(&w.url)
            ),
        ));
    }
    let mut kinds = KindSet::default();
    for name in &w.event_types {
        let kind = EventKind::parse(name).ok_or_else(|| {
            let all: Vec<&str> = EventKind::ALL.iter().map(|k| k.name()).collect();
            invalid(
                settings::WEBHOOK_EVENT_TYPES.name(),
                format!("unknown event type `{name}` (known: {})", all.join(", ")),
            )
        })?;
        kinds.insert(kind);
    }
    if kinds.is_empty() {
        return Err(invalid(
            settings::WEBHOOK_EVENT_TYPES.name(),
            "must name at least one event type".into(),
        ));
    }
    let mut headers = Vec::new();
    for (name, value) in &w.headers {
        let token = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
        if !token {
            return Err(invalid(
                settings::WEBHOOK_HEADERS.name(),
                format!("`{name}` is not a header name"),
            ));
        }
        if name.to_ascii_lowercase().starts_with("x-pusher-")
            || name.eq_ignore_ascii_case("content-type")
            || name.eq_ignore_ascii_case("content-length")
        {
            return Err(invalid(
                settings::WEBHOOK_HEADERS.name(),
                format!("`{name}` is set by the server and may not be overridden"),
            ));
        }
        if value.bytes().any(|b| b < 0x20 && b != b'\t' || b == 0x7f) {
            return Err(invalid(
                settings::WEBHOOK_HEADERS.name(),
                format!("the value of `{name}` has control characters"),
            ));
        }
        headers.push((name.clone(), value.clone()));
    }
    let (prefix, suffix) = match &w.filter {
        Some(f) => (f.prefix.clone(), f.suffix.clone()),
        None => (None, None),
    };
    Ok(Webhook {
        url: w.url.clone(),
        kinds,
        prefix,
        suffix,
        headers,
    })
}

fn resolve_app(index: usize, a: &AppSection) -> Result<App, ConfigError> {
    app_from_section(&format!("apps[{index}]"), a)
}

/// One app validated as `[[apps]]` is at start; errors name the field as
/// `{label}.{field}` (`apps[0].key`, or a database row's label).
pub fn app_from_section(label: &str, a: &AppSection) -> Result<App, ConfigError> {
    use settings::*;
    let key_of = |field: &str| format!("{label}.{field}");
    for (setting, value) in [
        (&APP_ID, &a.id),
        (&APP_KEY, &a.key),
        (&APP_SECRET, &a.secret),
    ] {
        if value.is_empty() {
            return Err(ConfigError::Invalid {
                key: key_of(setting.name()),
                why: "must not be empty".into(),
            });
        }
    }
    for (setting, value) in [(&APP_KEY, &a.key), (&APP_ID, &a.id)] {
        if !value
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'/' && b != b'?')
        {
            return Err(ConfigError::Invalid {
                key: key_of(setting.name()),
                why: "must be printable ASCII without `/` or `?`".into(),
            });
        }
    }
    let int =
        |setting: &Setting, value: Option<u32>| integer_at(setting, value, &key_of(setting.name()));
    let optional = |setting: &Setting, value: Option<u32>| {
        optional_at(setting, value, &key_of(setting.name()))
    };
    let flag = |setting: &Setting, value: Option<bool>| value.unwrap_or(setting.flag());
    let mut app = App::new(a.id.clone(), a.key.clone(), a.secret.clone());
    app.enabled = flag(&APP_ENABLED, a.enabled);
    app.enable_client_messages = flag(&APP_ENABLE_CLIENT_MESSAGES, a.enable_client_messages);
    app.enable_user_authentication = flag(
        &APP_ENABLE_USER_AUTHENTICATION,
        a.enable_user_authentication,
    );
    app.user_authentication_timeout = int(
        &APP_USER_AUTHENTICATION_TIMEOUT,
        a.user_authentication_timeout,
    )?;
    app.enable_subscription_count =
        flag(&APP_ENABLE_SUBSCRIPTION_COUNT, a.enable_subscription_count);
    app.cache_ttl = secs(int(&APP_CACHE_TTL, a.cache_ttl)?);
    app.max_api_requests_per_second = optional(
        &APP_MAX_API_REQUESTS_PER_SECOND,
        a.max_api_requests_per_second,
    )?;
    app.webhooks = a
        .webhooks
        .iter()
        .enumerate()
        .map(|(i, w)| resolve_webhook(&|field| key_of(&format!("webhooks[{i}].{field}")), w))
        .collect::<Result<Vec<_>, _>>()?;
    app.webhook_kinds = crate::apps::webhook::kinds_of(&app.webhooks);
    app.limits = AppLimits {
        max_connections: optional(&APP_MAX_CONNECTIONS, a.max_connections)?,
        max_event_payload_bytes: kib(int(&APP_MAX_EVENT_PAYLOAD_KB, a.max_event_payload_kb)?),
        max_channels_per_event: int(&APP_MAX_CHANNELS_PER_EVENT, a.max_channels_per_event)?
            as usize,
        max_batch_size: int(&APP_MAX_BATCH_SIZE, a.max_batch_size)? as usize,
        max_event_name_length: int(&APP_MAX_EVENT_NAME_LENGTH, a.max_event_name_length)? as usize,
        max_channel_name_length: int(&APP_MAX_CHANNEL_NAME_LENGTH, a.max_channel_name_length)?
            as usize,
        max_presence_members: int(&APP_MAX_PRESENCE_MEMBERS, a.max_presence_members)? as usize,
        max_client_events_per_second: int(
            &APP_MAX_CLIENT_EVENTS_PER_SECOND,
            a.max_client_events_per_second,
        )?,
    };
    Ok(app)
}

fn check_unique(apps: &[App]) -> Result<(), ConfigError> {
    for (i, a) in apps.iter().enumerate() {
        for b in &apps[..i] {
            if a.id == b.id {
                return Err(ConfigError::Invalid {
                    key: format!("apps[{i}].id"),
                    why: format!("`{}` is used by another app", a.id),
                });
            }
            if a.key == b.key {
                return Err(ConfigError::Invalid {
                    key: format!("apps[{i}].key"),
                    why: format!("`{}` is used by another app", a.key),
                });
            }
        }
    }
    Ok(())
}
