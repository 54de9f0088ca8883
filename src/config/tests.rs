//! Tests of the whole module through [`Config::resolve`]: defaults,
//! precedence, the example file, and errors that name their key.

use super::defaults::{kib, mib, millis, secs};
use super::settings;
use super::*;
use crate::apps::webhook::EventKind;
use crate::apps::App;
use crate::config::WebhookSettings;
use crate::errors::ConfigError;
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
                    || rest.starts_with("[app_store]")
                    || rest.starts_with("[server.admin]")
                    || rest.contains(" = ")
                        && !rest.starts_with(' ')
                        // The local adapter and the file driver take no url.
                        && !rest.starts_with("url = \"redis://")
                        && !rest.starts_with("url = \"postgres://") =>
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
    assert_eq!(
        ClusterSettings {
            files: Default::default(),
            ..c.cluster.clone()
        },
        ClusterSettings::default()
    );
    assert_eq!(
        c.cluster.files.ca.as_deref(),
        Some(std::path::Path::new("/etc/shardcast/engine-ca.pem"))
    );
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
    let text = "[server.limits]\nmax_connections_per_ip = 3\nclient_ip_header = \"X-Real-IP\"\n";
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
        Some("[cluster]\nadapter = \"nats\"\nurl = \"rediss://admin:hunter2@db:6380/0?x=1\"\n"),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("cluster.url"), "{err}");
    assert!(err.contains("must start with nats:// or tls://"), "{err}");
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
    let toml = "[cluster]\nadapter = \"redis\"\nurl = \"redis://admin:pa55@db:6379\"\nsecret = \"cluster-s3cret-0123\"\n[[apps]]\nid = \"1\"\nkey = \"k\"\nsecret = \"hunter2\"\n[[apps.webhooks]]\nurl = \"https://u:pw0rd@x/h?token=t0ken\"\nevent_types = [\"cache_miss\"]\nheaders = { Authorization = \"Bearer b3arer\" }\n";
    let file = format!("{:?}", parse_file(toml).unwrap());
    let config = format!("{:?}", resolve(Cli::default(), Some(toml)).unwrap());
    for text in [&file, &config] {
        for secret in ["hunter2", "pw0rd", "t0ken", "b3arer", "pa55", "s3cret"] {
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
    assert_eq!(c.host, HOST.case(0));
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
    assert_eq!(CLUSTER_ADAPTER.text(), "local");
    assert_eq!(c.cluster.prefix, CLUSTER_PREFIX.text());
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
    assert_eq!(dev.host, HOST.case(1));
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

/// Every adapter the table allows resolves, and another is refused naming
/// the allowed ones.
#[test]
fn the_tables_adapters_resolve() {
    let settings::Bounds::OneOf(adapters) = settings::CLUSTER_ADAPTER.bounds else {
        panic!("cluster.adapter lists its values");
    };
    for adapter in adapters {
        let text = format!("[cluster]\nadapter = \"{adapter}\"\nsecret = \"0123456789abcdef\"\n");
        resolve(Cli::default(), Some(&text)).unwrap();
    }
    let err = resolve(Cli::default(), Some("[cluster]\nadapter = \"kafka\"\n"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("cluster.adapter"), "{err}");
    assert!(err.contains(&settings::CLUSTER_ADAPTER.allowed()), "{err}");
}

/// The cluster secret comes from the file's `secret`, a `secret_file`
/// (relative to the config file, one trailing newline dropped) or the
/// environment, which wins; TLS URLs are accepted for both engines and
/// the engine's files are placed like other paths.
#[test]
fn the_cluster_secret_and_engine_files_resolve() {
    let dir = std::env::temp_dir().join(format!("shardcast-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("cluster.secret"), "from-the-file-0123456789\n").unwrap();
    let c = resolve(
        Cli::default(),
        Some("[cluster]\nadapter = \"redis\"\nurl = \"rediss://u:p@db:6380\"\nsecret_file = \"cluster.secret\"\nca_file = \"ca.pem\"\ncert_file = \"/etc/c.pem\"\nkey_file = \"k.pem\"\n"),
    )
    .unwrap();
    let s = c.cluster.secret.as_ref().unwrap();
    assert_eq!(s.0, b"from-the-file-0123456789");
    assert_eq!(c.cluster.files.ca, Some(dir.join("ca.pem")));
    assert_eq!(c.cluster.files.cert, Some("/etc/c.pem".into()));
    assert_eq!(c.cluster.files.key, Some(dir.join("k.pem")));
    let c = resolve(
        Cli::default(),
        Some("[cluster]\nadapter = \"nats\"\nurl = \"tls://n:4222\"\nsecret = \"inline-secret-0123456789\"\ncredentials_file = \"x.creds\"\n"),
    )
    .unwrap();
    assert_eq!(c.cluster.secret.unwrap().0, b"inline-secret-0123456789");
    assert_eq!(c.cluster.files.credentials, Some(dir.join("x.creds")));
    // The environment wins, and may stand alone.
    let path = dir.join("env.toml");
    std::fs::write(
        &path,
        "[cluster]\nadapter = \"nats\"\nsecret = \"inline-secret-0123456789\"\n",
    )
    .unwrap();
    let cli = Cli {
        config: Some(path),
        ..Cli::default()
    };
    let env =
        |k: &str| (k == "SHARDCAST_CLUSTER_SECRET").then(|| "env-secret-0123456789".to_string());
    let c = Config::resolve(&cli, &env, &[0]).unwrap();
    assert_eq!(c.cluster.secret.unwrap().0, b"env-secret-0123456789");
    // The local adapter needs none.
    let c = resolve(Cli::default(), Some("[cluster]\nadapter = \"local\"\n")).unwrap();
    assert!(c.cluster.secret.is_none());
}

/// `[server.console]`: off by default; on, it needs the metrics port and a
/// token of 16 to 256 printable characters, and `{:?}` never shows it.
#[test]
fn the_console_needs_the_metrics_port_and_a_good_token() {
    let c = resolve(Cli::default(), None).unwrap();
    assert_eq!(c.console, None);
    let metrics = "[server.metrics]\nenabled = true\n";
    let token = "s3cret-console-token";
    let ok = format!("{metrics}[server.console]\nenabled = true\ntoken = \"{token}\"\n");
    let c = resolve(Cli::default(), Some(&ok)).unwrap();
    assert_eq!(c.console.as_ref().map(|c| c.token.as_str()), Some(token));
    assert!(!format!("{c:?}").contains(token));
    assert!(!format!("{:?}", parse_file(&ok).unwrap()).contains(token));
    let cases = [
        (
            format!("{metrics}[server.console]\nenabled = true\n"),
            "server.console.token",
            "required",
        ),
        (
            format!("[server.console]\nenabled = true\ntoken = \"{token}\"\n"),
            "server.console.enabled",
            "server.metrics.enabled",
        ),
        (
            format!("{metrics}[server.console]\nenabled = true\ntoken = \"short\"\n"),
            "server.console.token",
            "16 to 256",
        ),
        (
            format!(
                "{metrics}[server.console]\nenabled = true\ntoken = \"has a space in it ok\"\n"
            ),
            "server.console.token",
            "without spaces",
        ),
    ];
    for (text, key, why) in cases {
        let err = resolve(Cli::default(), Some(&text))
            .unwrap_err()
            .to_string();
        assert!(err.contains(key) && err.contains(why), "{text}: {err}");
    }
    // Off, the token is not looked at.
    let off = "[server.console]\nenabled = false\ntoken = \"x\"\n";
    assert_eq!(resolve(Cli::default(), Some(off)).unwrap().console, None);
}

#[test]
fn app_store_settings_are_checked_and_urls_never_echoed() {
    let err = |text: &str| resolve(Cli::default(), Some(text)).unwrap_err().to_string();
    let c = resolve(
        Cli::default(),
        Some("[app_store]\ndriver = \"postgres\"\nurl = \"postgres://u:pw@db/x\"\n"),
    )
    .unwrap();
    assert_eq!(
        c.app_store.driver,
        StoreDriver::Postgres {
            url: "postgres://u:pw@db/x".into()
        }
    );
    assert_eq!(c.app_store.table, "apps");
    assert!(
        c.apps.is_empty() && !c.dev_app,
        "a database serves no development app"
    );
    assert!(!format!("{c:?}").contains("pw"), "Debug hides the password");
    let e = err("[app_store]\ndriver = \"postgres\"\n");
    assert!(e.contains("app_store.url") && e.contains("required"), "{e}");
    let e = err("[app_store]\ndriver = \"postgres\"\nurl = \"mysql://u:s3cret@db/x\"\n");
    assert!(e.contains("app_store.url") && !e.contains("s3cret"), "{e}");
    let e = err("[app_store]\ndriver = \"sqlite\"\n");
    assert!(e.contains("app_store.driver"), "{e}");
    let e = err("[app_store]\nurl = \"postgres://db/x\"\n");
    assert!(e.contains("file driver takes no url"), "{e}");
    for table in ["", "1apps", "apps; DROP TABLE x", "a\"b", &"a".repeat(64)] {
        let e = err(&format!(
            "[app_store]\ndriver = \"postgres\"\nurl = \"postgres://db/x\"\ntable = {table:?}\n"
        ));
        assert!(e.contains("app_store.table"), "{table:?}: {e}");
    }
    let e = err(
        "[app_store]\ndriver = \"mysql\"\nurl = \"mysql://db/x\"\n[[apps]]\nid = \"1\"\nkey = \"k\"\nsecret = \"s\"\n",
    );
    assert!(e.contains("remove [[apps]]"), "{e}");
    let e = err("[app_store]\npoll_interval_ms = 5\n");
    assert!(e.contains("app_store.poll_interval_ms"), "{e}");
}
