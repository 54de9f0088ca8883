//! Validation: CLI, file and environment resolved into a [`Config`]. Every
//! left-out key takes the table's default and every integer is checked
//! against the table's bounds (`settings`); a bad value is an error naming
//! its key and what it accepts.

use super::defaults::{kib, mib, millis, secs};
use super::settings::{self, Setting};
use super::*;
use crate::apps::{App, AppLimits};
use crate::errors::ConfigError;
use crate::webhooks::{EventKind, KindSet, Webhook, WebhookSettings};

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
        let dev_app = file.apps.is_empty();
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
        let log_level = match &server.log_level {
            Some(level) => Some(check_log_level(level)?),
            None => None,
        };

        let apps = if dev_app {
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
        Ok(Config {
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
            cluster: resolve_cluster(&file.cluster)?,
            tls: server.tls.as_ref().map(|t| {
                // Relative paths are relative to the config file's folder.
                let base = cli.config.as_deref().and_then(std::path::Path::parent);
                let place = |p: &std::path::Path| match base {
                    Some(dir) if p.is_relative() => dir.join(p),
                    _ => p.to_path_buf(),
                };
                TlsFiles {
                    cert: place(&t.cert),
                    key: place(&t.key),
                }
            }),
            log_level,
            dev_loopback,
        })
    }
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

fn resolve_cluster(c: &ClusterSection) -> Result<ClusterSettings, ConfigError> {
    use settings::{CLUSTER_ADAPTER, CLUSTER_NODE_TIMEOUT_SECS, CLUSTER_PREFIX, CLUSTER_URL};
    let invalid = |setting: &Setting, why: String| ConfigError::Invalid {
        key: setting.key.into(),
        why,
    };
    let url = |scheme: &str, default: &str| -> Result<String, ConfigError> {
        let url = c.url.clone().unwrap_or_else(|| default.to_string());
        if !url.starts_with(scheme) {
            return Err(invalid(
                &CLUSTER_URL,
                format!(
                    "must start with {scheme} (got {:?})",
                    crate::logging::redact::url(&url)
                ),
            ));
        }
        Ok(url)
    };
    let adapter = match c.adapter.as_deref().unwrap_or(CLUSTER_ADAPTER.text(0)) {
        "local" => Adapter::Local,
        "redis" => Adapter::Redis {
            url: url("redis://", CLUSTER_URL.text(0))?,
        },
        "nats" => Adapter::Nats {
            url: url("nats://", CLUSTER_URL.text(1))?,
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
        .unwrap_or_else(|| CLUSTER_PREFIX.text(0).into());
    let prefix_ok = !prefix.is_empty()
        && prefix.len() <= 64
        && prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !prefix_ok {
        return Err(invalid(&CLUSTER_PREFIX, CLUSTER_PREFIX.allowed()));
    }
    let node_timeout = secs(integer(&CLUSTER_NODE_TIMEOUT_SECS, c.node_timeout_secs)?);
    Ok(ClusterSettings {
        adapter,
        prefix,
        node_timeout,
    })
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

fn resolve_webhook(
    key: &dyn Fn(&str) -> String,
    w: &WebhookSection,
) -> Result<Webhook, ConfigError> {
    let invalid = |field: &str, why: String| ConfigError::Invalid {
        key: key(field),
        why,
    };
    let scheme_ok = w.url.starts_with("http://") || w.url.starts_with("https://");
    if !scheme_ok || reqwest::Url::parse(&w.url).is_err() {
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
    use settings::*;
    let key_of = |field: &str| format!("apps[{index}].{field}");
    for (field, value) in [("id", &a.id), ("key", &a.key), ("secret", &a.secret)] {
        if value.is_empty() {
            return Err(ConfigError::Invalid {
                key: key_of(field),
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
    app.webhook_kinds = crate::webhooks::target::kinds_of(&app.webhooks);
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn resolve(cli: Cli, file: Option<&str>) -> Result<Config, ConfigError> {
        let mut cli = cli;
        let dir = std::env::temp_dir().join(format!("shardcast-cfg-{}", std::process::id()));
        if let Some(text) = file {
            std::fs::create_dir_all(&dir).unwrap();
            let path = dir.join(format!("{:x}.toml", text.len() ^ text.as_ptr() as usize));
            std::fs::write(&path, text).unwrap();
            cli.config = Some(path);
        }
        Config::resolve(&cli, &|_| None, &[0, 1])
    }

    #[test]
    fn defaults_serve_the_dev_app_on_every_cpu() {
        let c = resolve(Cli::default(), None).unwrap();
        assert_eq!(c.port, 6001);
        // The development app's credentials are public: loopback only.
        assert_eq!(c.host, "127.0.0.1");
        assert!(c.dev_loopback);
        assert_eq!(c.cpus, vec![0, 1]);
        assert_eq!(c.activity_timeout, 120);
        assert!(c.dev_app);
        assert_eq!(c.apps.len(), 1);
        assert_eq!(c.apps[0].id, "app-id");
        assert_eq!(c.apps[0].key, "app-key");
        assert_eq!(c.apps[0].secret, "app-secret");
        assert_eq!(c.apps[0].limits.max_event_payload_bytes, 100 * 1024);
        assert_eq!(c.apps[0].limits.max_channels_per_event, 100);
        assert_eq!(c.apps[0].limits.max_batch_size, 10);
    }

    #[test]
    fn dev_app_binds_a_given_host_and_configured_apps_every_interface() {
        let cli = Cli {
            host: Some("0.0.0.0".into()),
            ..Cli::default()
        };
        let c = resolve(cli, None).unwrap();
        assert_eq!(c.host, "0.0.0.0");
        assert!(c.dev_app && !c.dev_loopback);
        let c = resolve(Cli::default(), Some("[server]\nhost = \"::1\"\n")).unwrap();
        assert_eq!(c.host, "::1");
        assert!(c.dev_app && !c.dev_loopback);
        let c = resolve(
            Cli::default(),
            Some("[[apps]]\nid = \"1\"\nkey = \"k\"\nsecret = \"s\"\n"),
        )
        .unwrap();
        assert_eq!(c.host, DEFAULT_HOST);
        assert!(!c.dev_app && !c.dev_loopback);
    }

    #[test]
    fn env_overrides_dev_credentials() {
        let env = |k: &str| match k {
            "SHARDCAST_APP_KEY" => Some("k2".to_string()),
            _ => None,
        };
        let c = Config::resolve(&Cli::default(), &env, &[0]).unwrap();
        assert_eq!(c.apps[0].key, "k2");
        assert_eq!(c.apps[0].id, "app-id");
    }

    #[test]
    fn cpu_lists_parse_ranges_and_repeats() {
        assert_eq!(parse_cpu_list("0,2-3").unwrap(), vec![0, 2, 3]);
        assert_eq!(parse_cpu_list("1,1").unwrap(), vec![1, 1]);
        assert!(parse_cpu_list("a").unwrap_err().contains("`a`"));
        assert!(parse_cpu_list("3-1").is_err());
        assert!(parse_cpu_list("1,,2").is_err());
    }

    #[test]
    fn cli_overrides_file() {
        let cli = Cli {
            port: Some(7000),
            cpus: Some("1".into()),
            ..Cli::default()
        };
        let c = resolve(
            cli,
            Some("[server]\nport = 9000\ncpus = \"0-1\"\nhost = \"127.0.0.1\"\n"),
        )
        .unwrap();
        assert_eq!(c.port, 7000);
        assert_eq!(c.cpus, vec![1]);
        assert_eq!(c.host, "127.0.0.1");
    }

    #[test]
    fn file_apps_replace_the_dev_app() {
        let c = resolve(
            Cli::default(),
            Some(
                "[[apps]]\nid = \"1\"\nkey = \"k\"\nsecret = \"s\"\nenable_client_messages = true\nmax_connections = 5\nmax_event_payload_kb = 10\n",
            ),
        )
        .unwrap();
        assert!(!c.dev_app);
        assert_eq!(c.apps[0].id, "1");
        assert!(c.apps[0].enable_client_messages);
        assert_eq!(c.apps[0].limits.max_connections, Some(5));
        assert_eq!(c.apps[0].limits.max_event_payload_bytes, 10 * 1024);
    }

    /// `shardcast.example.toml` with every commented key switched on parses
    /// and gives the documented defaults, so the example cannot drift.
    #[test]
    fn example_config_parses_with_every_key_uncommented() {
        let example = include_str!("../../shardcast.example.toml");
        let text: String = example
            .lines()
            .map(|l| match l.strip_prefix("# ") {
                Some(rest)
                    if rest.starts_with("[[apps")
                        || rest.starts_with("[server.tls]")
                        || rest.starts_with("[cluster]")
                        || rest.contains(" = ")
                            && !rest.starts_with(' ')
                            // The local adapter takes no url.
                            && !rest.starts_with("url = \"redis://") =>
                {
                    rest
                }
                _ => l,
            })
            .collect::<Vec<_>>()
            .join("\n");
        let c = resolve(Cli::default(), Some(&text)).unwrap();
        assert_eq!(c.port, DEFAULT_PORT);
        assert_eq!(c.cpus, vec![0, 1]);
        assert_eq!(c.activity_timeout, 120);
        assert_eq!(
            c.limits.max_frame_bytes,
            ServerLimits::default().max_frame_bytes
        );
        assert_eq!(c.apps.len(), 1);
        assert_eq!(c.apps[0].limits.max_connections, Some(1000));
        assert_eq!(c.apps[0].limits.max_batch_size, 10);
        assert_eq!(c.limits.max_connections, 100_000);
        assert_eq!(c.limits.max_pending_heads, 1024);
        assert_eq!(c.limits.head_timeout, Duration::from_secs(30));
        assert_eq!(c.limits.max_subscriptions_per_connection, 200);
        assert_eq!(c.limits.max_write_queues_bytes, 1 << 30);
        assert_eq!(c.limits.max_cached_channels, 100_000);
        assert_eq!(c.limits.max_cache_bytes, 256 * 1024 * 1024);
        assert_eq!(c.limits.max_connections_per_ip, None);
        assert_eq!(ServerLimits::default().max_connections_per_ip, None);
        assert_eq!(
            c.limits.client_ip_header.as_deref(),
            Some("X-Forwarded-For")
        );
        assert_eq!(ServerLimits::default().client_ip_header, None);
        assert_eq!(c.webhooks.max_queued_events, 10_000);
        assert_eq!(c.webhooks, WebhookSettings::default());
        assert_eq!(c.metrics_port, None);
        assert_eq!(c.cluster, ClusterSettings::default());
        let redis = Adapter::Redis {
            url: "redis://user:secret@db:6379/0".into(),
        };
        assert_eq!(redis.url_for_logs().unwrap(), "redis://***@db:6379/0");
        let query = Adapter::Redis {
            url: "redis://db:6379/0?password=hunter2".into(),
        };
        assert_eq!(query.url_for_logs().unwrap(), "redis://db:6379/0");
        let nats = Adapter::Nats {
            url: "nats://127.0.0.1:4222".into(),
        };
        assert_eq!(nats.url_for_logs().unwrap(), "nats://127.0.0.1:4222");
        let tls = c.tls.as_ref().expect("[server.tls] uncommented");
        assert_eq!(tls.cert, std::path::Path::new("/etc/shardcast/cert.pem"));
        assert_eq!(tls.key, std::path::Path::new("/etc/shardcast/key.pem"));
        assert_eq!(c.log_level.as_deref(), Some("info"));
        let hook = &c.apps[0].webhooks[0];
        assert!(hook.kinds.contains(EventKind::ChannelOccupied));
        assert!(hook.kinds.contains(EventKind::CacheMiss));
        assert_eq!(hook.prefix.as_deref(), Some(""));
        assert_eq!(hook.headers.len(), 1);
        assert_eq!(c.apps[0].max_api_requests_per_second, Some(100));
    }

    #[test]
    fn webhooks_are_checked_and_named() {
        let app = "[[apps]]\nid = \"1\"\nkey = \"k\"\nsecret = \"s\"\n[[apps.webhooks]]\n";
        let err = resolve(
            Cli::default(),
            Some(&format!(
                "{app}url = \"http://x/\"\nevent_types = [\"channel_ocupied\"]\n"
            )),
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("apps[0].webhooks[0].event_types"),
            "{err}"
        );
        assert!(err.to_string().contains("channel_ocupied"), "{err}");
        let err = resolve(
            Cli::default(),
            Some(&format!(
                "{app}url = \"ftp://x/\"\nevent_types = [\"cache_miss\"]\n"
            )),
        )
        .unwrap_err();
        assert!(err.to_string().contains("webhooks[0].url"), "{err}");
        let err = resolve(
            Cli::default(),
            Some(&format!(
                "{app}url = \"http://x/\"\nevent_types = [\"cache_miss\"]\nheaders = {{ X-Pusher-Key = \"k\" }}\n"
            )),
        )
        .unwrap_err();
        assert!(err.to_string().contains("X-Pusher-Key"), "{err}");
        let err = resolve(
            Cli::default(),
            Some(&format!(
                "{app}url = \"http://x/\"\nevent_types = [\"cache_miss\"]\nretries = 3\n"
            )),
        )
        .unwrap_err();
        assert!(err.to_string().contains("retries"), "{err}");
        let err = resolve(Cli::default(), Some("[server.webhooks]\ndelay = 1\n")).unwrap_err();
        assert!(err.to_string().contains("delay"), "{err}");
        let c = resolve(
            Cli::default(),
            Some(&format!(
                "[server.metrics]\nenabled = true\n{app}url = \"https://x/h\"\nevent_types = [\"member_added\"]\nfilter = {{ prefix = \"presence-\" }}\n"
            )),
        )
        .unwrap();
        assert_eq!(c.metrics_port, Some(DEFAULT_METRICS_PORT));
        assert!(c.apps[0].webhook_kinds.contains(EventKind::MemberAdded));
        assert!(!c.apps[0].webhook_kinds.contains(EventKind::MemberRemoved));
        let err = resolve(
            Cli::default(),
            Some("[server]\nport = 7000\n[server.metrics]\nenabled = true\nport = 7000\n"),
        )
        .unwrap_err();
        assert!(err.to_string().contains("server.metrics.port"), "{err}");
        let err = resolve(Cli::default(), Some("[server]\nlog_level = \"loud\"\n")).unwrap_err();
        assert!(err.to_string().contains("server.log_level"), "{err}");
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = resolve(Cli::default(), Some("[server]\nprot = 1\n")).unwrap_err();
        assert!(err.to_string().contains("prot"), "{err}");
        let err = resolve(
            Cli::default(),
            Some("[[apps]]\nid = \"1\"\nkey = \"k\"\nsecret = \"s\"\nmax_conections = 1\n"),
        )
        .unwrap_err();
        assert!(err.to_string().contains("max_conections"), "{err}");
    }

    #[test]
    fn bad_values_are_named() {
        let err = resolve(Cli::default(), Some("[server]\nport = \"x\"\n")).unwrap_err();
        assert!(err.to_string().contains("port"), "{err}");
        let err = resolve(Cli::default(), Some("[server]\nactivity_timeout = 0\n")).unwrap_err();
        assert!(err.to_string().contains("server.activity_timeout"), "{err}");
        let err = resolve(
            Cli::default(),
            Some("[[apps]]\nid = \"1\"\nkey = \"k\"\nsecret = \"s\"\nmax_batch_size = 0\n"),
        )
        .unwrap_err();
        assert!(err.to_string().contains("apps[0].max_batch_size"), "{err}");
        let err = resolve(
            Cli::default(),
            Some("[[apps]]\nid = \"1\"\nkey = \"k\"\nsecret = \"s\"\n[[apps]]\nid = \"1\"\nkey = \"k2\"\nsecret = \"s\"\n"),
        )
        .unwrap_err();
        assert!(err.to_string().contains("apps[1].id"), "{err}");
        let err = resolve(Cli::default(), Some("[[apps]]\nid = \"1\"\nkey = \"k\"\n")).unwrap_err();
        assert!(err.to_string().contains("secret"), "{err}");
    }

    #[test]
    fn per_ip_limit_is_off_unless_set_and_the_header_must_be_a_token() {
        let c = resolve(Cli::default(), None).unwrap();
        assert_eq!(c.limits.max_connections_per_ip, None);
        assert_eq!(c.limits.client_ip_header, None);
        let text = "[server.limits]\nmax_connections_per_ip = 0\n";
        let c = resolve(Cli::default(), Some(text)).unwrap();
        assert_eq!(c.limits.max_connections_per_ip, None);
        let text =
            "[server.limits]\nmax_connections_per_ip = 3\nclient_ip_header = \"X-Real-IP\"\n";
        let c = resolve(Cli::default(), Some(text)).unwrap();
        assert_eq!(c.limits.max_connections_per_ip, Some(3));
        assert_eq!(c.limits.client_ip_header.as_deref(), Some("X-Real-IP"));
        for bad in ["", "X-Forwarded-For:", "X Real IP", "X-Forwarded-\\u00e9"] {
            let text = format!("[server.limits]\nclient_ip_header = \"{bad}\"\n");
            let err = resolve(Cli::default(), Some(&text)).unwrap_err();
            assert!(
                err.to_string().contains("server.limits.client_ip_header"),
                "{bad:?}: {err}"
            );
        }
    }

    /// A cluster url that fails the scheme check is echoed without its
    /// credentials.
    #[test]
    fn a_refused_cluster_url_is_logged_without_credentials() {
        let err = resolve(
            Cli::default(),
            Some(
                "[cluster]\nadapter = \"redis\"\nurl = \"rediss://admin:hunter2@db:6380/0?x=1\"\n",
            ),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("cluster.url"), "{err}");
        assert!(err.contains("rediss://db:6380/0"), "{err}");
        assert!(!err.contains("hunter2") && !err.contains("admin"), "{err}");
    }

    #[test]
    fn a_refused_webhook_url_is_logged_without_credentials() {
        let err = resolve(
            Cli::default(),
            Some("[[apps]]\nid = \"1\"\nkey = \"k\"\nsecret = \"s\"\n[[apps.webhooks]]\nurl = \"ftp://u:hunter2@x/h?token=t0ken\"\nevent_types = [\"cache_miss\"]\n"),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("ftp://x/h"), "{err}");
        assert!(!err.contains("hunter2") && !err.contains("t0ken"), "{err}");
    }

    /// `{:?}` of the file as written and of the resolved config keeps the
    /// app secret and webhook tokens out.
    #[test]
    fn debug_output_masks_secrets() {
        let toml = "[cluster]\nadapter = \"redis\"\nurl = \"redis://admin:pa55@db:6379\"\n[[apps]]\nid = \"1\"\nkey = \"k\"\nsecret = \"hunter2\"\n[[apps.webhooks]]\nurl = \"https://u:pw0rd@x/h?token=t0ken\"\nevent_types = [\"cache_miss\"]\nheaders = { Authorization = \"Bearer b3arer\" }\n";
        let file = format!("{:?}", parse_file(toml).unwrap());
        let config = format!("{:?}", resolve(Cli::default(), Some(toml)).unwrap());
        for text in [&file, &config] {
            for secret in ["hunter2", "pw0rd", "t0ken", "b3arer", "pa55"] {
                assert!(!text.contains(secret), "{secret} in {text}");
            }
            assert!(text.contains("***"), "{text}");
            assert!(text.contains("https://x/h"), "{text}");
        }
    }

    /// A file that names one app and nothing else resolves to exactly the
    /// table's defaults, and so do the resolved structs' `Default`s.
    #[test]
    fn an_empty_file_gives_the_tables_defaults() {
        use settings::*;
        let c = resolve(
            Cli::default(),
            Some("[[apps]]\nid = \"1\"\nkey = \"k\"\nsecret = \"s\"\n"),
        )
        .unwrap();
        assert_eq!(c.host, HOST.text(0));
        assert_eq!(u32::from(c.port), PORT.integer());
        assert_eq!(c.activity_timeout, ACTIVITY_TIMEOUT.integer());
        assert_eq!(c.pong_timeout, PONG_TIMEOUT.integer());
        assert_eq!(c.log_level, None, "RUST_LOG's fallback is LOG_LEVEL");
        let l = &c.limits;
        assert_eq!(l.max_frame_bytes, kib(MAX_FRAME_KB.integer()));
        assert_eq!(l.max_write_queue_bytes, kib(MAX_WRITE_QUEUE_KB.integer()));
        assert_eq!(l.max_request_body_bytes, kib(MAX_REQUEST_BODY_KB.integer()));
        assert_eq!(l.max_request_head_bytes, kib(MAX_REQUEST_HEAD_KB.integer()));
        assert_eq!(l.max_connections, MAX_CONNECTIONS.integer());
        assert_eq!(l.max_connections_per_ip, None);
        assert_eq!(MAX_CONNECTIONS_PER_IP.integer(), 0);
        assert_eq!(l.client_ip_header, None);
        assert_eq!(
            l.max_subscriptions_per_connection,
            MAX_SUBSCRIPTIONS_PER_CONNECTION.integer()
        );
        assert_eq!(l.max_write_queues_bytes, mib(MAX_WRITE_QUEUES_MB.integer()));
        assert_eq!(l.max_pending_heads, MAX_PENDING_HEADS.integer());
        assert_eq!(l.head_timeout, secs(HEAD_TIMEOUT_SECS.integer()));
        assert_eq!(l.max_cached_channels, MAX_CACHED_CHANNELS.integer());
        assert_eq!(l.max_cache_bytes, kib(MAX_CACHE_KB.integer()));
        assert_eq!(format!("{l:?}"), format!("{:?}", ServerLimits::default()));
        let w = &c.webhooks;
        assert_eq!(w.batch_window, millis(WEBHOOK_BATCH_WINDOW_MS.integer()));
        assert_eq!(w.batch_max, WEBHOOK_BATCH_MAX.integer() as usize);
        assert_eq!(w.delay, millis(WEBHOOK_DELAY_MS.integer()));
        assert_eq!(w.retry_for, secs(WEBHOOK_RETRY_FOR_SECS.integer()));
        assert_eq!(w.timeout, millis(WEBHOOK_TIMEOUT_MS.integer()));
        assert_eq!(
            w.max_queued_events,
            WEBHOOK_MAX_QUEUED_EVENTS.integer() as usize
        );
        assert_eq!(*w, WebhookSettings::default());
        assert!(!METRICS_ENABLED.flag());
        assert_eq!(c.metrics_port, None);
        assert_eq!(c.tls, None);
        assert_eq!(c.cluster.adapter, Adapter::Local);
        assert_eq!(CLUSTER_ADAPTER.text(0), "local");
        assert_eq!(c.cluster.prefix, CLUSTER_PREFIX.text(0));
        assert_eq!(
            c.cluster.node_timeout,
            secs(CLUSTER_NODE_TIMEOUT_SECS.integer())
        );
        assert_eq!(c.cluster, ClusterSettings::default());
        let a = &c.apps[0];
        assert_eq!(a.enabled, APP_ENABLED.flag());
        assert_eq!(a.enable_client_messages, APP_ENABLE_CLIENT_MESSAGES.flag());
        assert_eq!(
            a.enable_user_authentication,
            APP_ENABLE_USER_AUTHENTICATION.flag()
        );
        assert_eq!(
            a.user_authentication_timeout,
            APP_USER_AUTHENTICATION_TIMEOUT.integer()
        );
        assert_eq!(
            a.enable_subscription_count,
            APP_ENABLE_SUBSCRIPTION_COUNT.flag()
        );
        assert_eq!(a.cache_ttl, secs(APP_CACHE_TTL.integer()));
        assert_eq!(a.max_api_requests_per_second, None);
        assert!(a.webhooks.is_empty());
        let m = &a.limits;
        assert_eq!(m.max_connections, None);
        assert_eq!(
            m.max_event_payload_bytes,
            kib(APP_MAX_EVENT_PAYLOAD_KB.integer())
        );
        assert_eq!(
            m.max_channels_per_event,
            APP_MAX_CHANNELS_PER_EVENT.integer() as usize
        );
        assert_eq!(m.max_batch_size, APP_MAX_BATCH_SIZE.integer() as usize);
        assert_eq!(
            m.max_event_name_length,
            APP_MAX_EVENT_NAME_LENGTH.integer() as usize
        );
        assert_eq!(
            m.max_channel_name_length,
            APP_MAX_CHANNEL_NAME_LENGTH.integer() as usize
        );
        assert_eq!(
            m.max_presence_members,
            APP_MAX_PRESENCE_MEMBERS.integer() as usize
        );
        assert_eq!(
            m.max_client_events_per_second,
            APP_MAX_CLIENT_EVENTS_PER_SECOND.integer()
        );
        let new = App::new("1".into(), "k".into(), "s".into());
        assert_eq!(format!("{a:?}"), format!("{new:?}"));
        // The development app gets the same defaults, on loopback.
        let dev = resolve(Cli::default(), None).unwrap();
        assert_eq!(dev.host, HOST.text(1));
        assert_eq!(format!("{:?}", dev.apps[0].limits), format!("{m:?}"));
    }

    /// Every integer out of its bounds is refused with an error naming the
    /// key and the allowed range.
    #[test]
    fn out_of_bounds_integers_name_the_key_and_the_range() {
        let app = "[[apps]]\nid = \"1\"\nkey = \"k\"\nsecret = \"s\"\n";
        for s in settings::ALL {
            let settings::Bounds::Range { min, max } = s.bounds else {
                continue;
            };
            let bad = match (min, max) {
                (1.., _) => min - 1,
                (_, ..=65534) => max + 1,
                _ => continue,
            };
            let (section, name) = s.key.rsplit_once('.').unwrap();
            let text = match section {
                "apps[]" => format!("{app}{name} = {bad}\n"),
                _ => format!("[{section}]\n{name} = {bad}\n{app}"),
            };
            let err = resolve(Cli::default(), Some(&text))
                .unwrap_err()
                .to_string();
            let key = s.key.replace("apps[]", "apps[0]");
            assert!(err.contains(&format!("`{key}`")), "{}: {err}", s.key);
            if max > 65535 {
                assert!(err.contains(&s.allowed()), "{}: {err}", s.key);
            }
        }
    }
}
