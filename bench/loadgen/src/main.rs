//! `loadgen`: the load generator for benchmarking Pusher Channels servers
//! (shardcast, soketi, sockudo, the raw floor).
//!
//! One thread, one mio event loop (see `engine.rs`), pinned by the caller
//! (`taskset -c 1`). Every scenario bounds its own counts and time, prints a
//! readable summary on stderr and exactly one JSON line on stdout.
//!
//! Scenarios:
//! - `fanout`: subscribers over channels, signed HTTP publishers at a fixed
//!   rate or as fast as possible; loss and end-to-end latency (the send time
//!   travels in the event's data). The subscribers may be spread over the
//!   nodes of a cluster (`--sub-url`), with loss and latency per node.
//! - `connections`: idle connections held open; time to open, failures and
//!   the server's resident memory per connection.
//! - `trigger`: HTTP trigger throughput and latency with nobody subscribed.
//! - `churn`: connect/subscribe/unsubscribe/disconnect loops while events
//!   flow to steady subscribers; connections per second and their loss.
//!
//! A `wss://` URL opens the WebSocket connections over TLS (`tls.rs`), for
//! the memory of idle TLS connections (`connections-tls` in bench/cases.sh).

mod engine;
mod publish;
mod summary;
mod sys;
mod tls;
mod wsframe;

use clap::{Args, Parser, Subcommand};
use engine::{Engine, Note};
use hdrhistogram::Histogram;
use publish::{PubConfig, Publishers, Signer};
use serde_json::{json, Value};
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

#[derive(Parser)]
#[command(name = "loadgen", about = "Load generator for Pusher Channels servers")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// N subscribers over C channels, publishers over the signed HTTP API.
    Fanout(FanoutArgs),
    /// N idle connections held open; memory per connection.
    Connections(ConnArgs),
    /// HTTP trigger throughput and latency with nobody subscribed.
    Trigger(TriggerArgs),
    /// Connect/subscribe/unsubscribe/disconnect loops while events flow.
    Churn(ChurnArgs),
    /// Prints a free loopback TCP port (for scripts).
    FreePort,
    /// Writes a self-signed certificate for localhost and 127.0.0.1
    /// (cert.pem, key.pem; ECDSA P-256) into DIR, for a TLS server under test.
    TlsCert { dir: std::path::PathBuf },
    /// Turns raw.jsonl (one JSON result per line) into a Markdown summary:
    /// medians per case and target, and per-run ratios to the floor and peers.
    Summarize {
        /// The raw results file.
        raw: std::path::PathBuf,
        /// Free text put under the title (machine, sizes).
        #[arg(long, default_value = "")]
        note: String,
    },
}

#[derive(Args, Clone)]
struct Common {
    /// Server address: ws://HOST:PORT (the HTTP API is on the same port);
    /// wss://HOST:PORT opens the WebSocket connections over TLS (without
    /// checking the certificate; publishers do not speak TLS).
    #[arg(long, default_value = "ws://127.0.0.1:6001")]
    url: String,
    /// WebSocket servers for the connections, repeatable: connection i goes
    /// to the (i mod n)th (default: --url). Publishers always use --url.
    #[arg(long = "sub-url", value_name = "URL")]
    sub_urls: Vec<String>,
    #[arg(long, default_value = "app-id")]
    app_id: String,
    #[arg(long, default_value = "app-key")]
    key: String,
    #[arg(long, default_value = "app-secret")]
    secret: String,
    /// The server's process id: its CPU time and resident memory are reported.
    /// Repeatable or comma-separated: the sums over all of them are reported.
    #[arg(long = "server-pid", value_name = "PID", value_delimiter = ',')]
    server_pids: Vec<u32>,
    /// WebSocket handshakes in progress at once while opening connections.
    #[arg(long, default_value_t = 200)]
    connect_concurrency: usize,
    /// Loopback source addresses to spread connections over (0: one per 25,000).
    #[arg(long, default_value_t = 0)]
    sources: u32,
    /// A name for the server under test, copied into the JSON.
    #[arg(long, default_value = "")]
    label: String,
    /// A name for this case (e.g. fanout-1ch), copied into the JSON.
    #[arg(long, default_value = "")]
    case: String,
    /// Run number, copied into the JSON.
    #[arg(long, default_value_t = 0)]
    run: u32,
    /// Give up opening connections after this many seconds.
    #[arg(long, default_value_t = 120.0)]
    open_timeout: f64,
}

#[derive(Args)]
struct FanoutArgs {
    #[command(flatten)]
    common: Common,
    #[arg(long, default_value_t = 1000)]
    subscribers: usize,
    #[arg(long, default_value_t = 1)]
    channels: usize,
    #[arg(long, default_value_t = 4)]
    publishers: usize,
    /// Events per second over all publishers, or `max`.
    #[arg(long, default_value = "max")]
    rate: String,
    /// Seconds of publishing.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Bytes of each event's data.
    #[arg(long, default_value_t = 100)]
    payload: usize,
    /// Events per request (more than 1 uses /batch_events).
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Channel names are PREFIX-0, PREFIX-1, ... (several load generators
    /// on one server each need their own).
    #[arg(long, default_value = "bench")]
    channel_prefix: String,
    /// Longest wait for outstanding deliveries after publishing stops.
    #[arg(long, default_value_t = 10.0)]
    drain: f64,
}

#[derive(Args)]
struct ConnArgs {
    #[command(flatten)]
    common: Common,
    #[arg(long, default_value_t = 19_500)]
    count: usize,
    /// Seconds to hold the connections open after they are all up (pings answered).
    #[arg(long, default_value_t = 5.0)]
    hold: f64,
    /// Seconds to wait before reading memory (before and after opening).
    #[arg(long, default_value_t = 1.0)]
    settle: f64,
}

#[derive(Args)]
struct TriggerArgs {
    #[command(flatten)]
    common: Common,
    #[arg(long, default_value_t = 4)]
    publishers: usize,
    #[arg(long, default_value = "max")]
    rate: String,
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    #[arg(long, default_value_t = 100)]
    payload: usize,
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Distinct (empty) channels the events go to.
    #[arg(long, default_value_t = 1)]
    channels: usize,
    /// Channel names are PREFIX-0, PREFIX-1, ...
    #[arg(long, default_value = "nobody")]
    channel_prefix: String,
}

#[derive(Args)]
struct ChurnArgs {
    #[command(flatten)]
    common: Common,
    /// Subscribers that stay for the whole run (their loss is reported).
    #[arg(long, default_value_t = 500)]
    subscribers: usize,
    #[arg(long, default_value_t = 10)]
    channels: usize,
    /// Connections cycling connect/subscribe/unsubscribe/disconnect at once.
    #[arg(long, default_value_t = 100)]
    churners: usize,
    #[arg(long, default_value_t = 2)]
    publishers: usize,
    /// Events per second to the steady subscribers' channels.
    #[arg(long, default_value = "100")]
    rate: String,
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    #[arg(long, default_value_t = 100)]
    payload: usize,
    #[arg(long, default_value_t = 10.0)]
    drain: f64,
}

fn main() {
    let cli = Cli::parse();
    let nofile = sys::raise_nofile();
    let ident = match &cli.cmd {
        Cmd::Fanout(a) => Some(&a.common),
        Cmd::Connections(a) => Some(&a.common),
        Cmd::Trigger(a) => Some(&a.common),
        Cmd::Churn(a) => Some(&a.common),
        _ => None,
    }
    .map(|c| json!({ "case": c.case, "target": c.label, "run": c.run }));
    let result = match cli.cmd {
        Cmd::Fanout(a) => fanout(a, nofile),
        Cmd::Connections(a) => connections(a, nofile),
        Cmd::Trigger(a) => trigger(a),
        Cmd::Churn(a) => churn(a),
        Cmd::FreePort => match free_port() {
            Some(p) => {
                println!("{p}");
                return;
            }
            None => Err("no free port found".to_string()),
        },
        Cmd::TlsCert { dir } => match tls::write_self_signed(&dir) {
            Ok(()) => return,
            Err(e) => Err(e),
        },
        Cmd::Summarize { raw, note } => match summary::summarize(&raw, &note) {
            Ok(md) => {
                print!("{md}");
                return;
            }
            Err(e) => Err(e),
        },
    };
    match result {
        Ok(v) => println!("{}", serde_json::to_string(&v).unwrap()),
        Err(e) => {
            eprintln!("loadgen: {e}");
            let mut v = ident.unwrap_or_else(|| json!({}));
            v["error"] = json!(e);
            println!("{v}");
            std::process::exit(1);
        }
    }
}

type Res = Result<Value, String>;

/// A loopback port below the ephemeral range (so the load generator's own
/// outgoing connections, and their TIME_WAIT leftovers, never hold it) that
/// binds without SO_REUSEADDR, as a server that does not set it would.
fn free_port() -> Option<u16> {
    let low: u32 = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(32768);
    let (from, to) = if low > 12_000 {
        (10_000, low - 1)
    } else {
        (low / 2, low - 1)
    };
    let span = to.saturating_sub(from).max(1);
    let mut x = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1)
        ^ (std::process::id() as u64) << 32;
    for _ in 0..200 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let port = (from + (x % span as u64) as u32) as u16;
        let Ok(sock) = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
        else {
            continue;
        };
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        if sock.bind(&addr.into()).is_ok() {
            return Some(port);
        }
    }
    None
}

fn target_of(url: &str) -> Result<(SocketAddr, String), String> {
    let hostport = url
        .trim_start_matches("wss://")
        .trim_start_matches("ws://")
        .trim_start_matches("http://")
        .trim_end_matches('/');
    let addr = hostport
        .to_socket_addrs()
        .map_err(|e| format!("bad --url {url}: {e}"))?
        .next()
        .ok_or_else(|| format!("no address for {url}"))?;
    Ok((addr, hostport.to_string()))
}

fn parse_rate(s: &str) -> Result<Option<f64>, String> {
    if s == "max" {
        Ok(None)
    } else {
        s.parse::<f64>()
            .ok()
            .filter(|r| *r > 0.0)
            .map(Some)
            .ok_or_else(|| format!("--rate must be `max` or a positive number, not {s}"))
    }
}

fn new_engine(c: &Common, conns: usize) -> Result<(Engine, String), String> {
    let (addr, host) = target_of(&c.url)?;
    let ws_servers = c
        .sub_urls
        .iter()
        .map(|u| target_of(u).map(|(a, _)| a))
        .collect::<Result<Vec<_>, _>>()?;
    let mut eng = Engine::new(addr, &ws_servers, &c.key).map_err(|e| e.to_string())?;
    let tls = |u: &String| u.starts_with("wss://");
    if tls(&c.url) || c.sub_urls.iter().any(tls) {
        if !(tls(&c.url) && c.sub_urls.iter().all(tls)) {
            return Err("--url and every --sub-url must all be wss:// or all ws://".into());
        }
        eng.tls = Some(tls::client_config());
    }
    eng.sources = if c.sources > 0 {
        c.sources
    } else {
        (conns / 25_000 + 1) as u32
    };
    Ok((eng, host))
}

fn ms(us: u64) -> f64 {
    (us as f64 / 1000.0 * 1000.0).round() / 1000.0
}

fn latency_json(h: &Histogram<u64>) -> Value {
    if h.is_empty() {
        return json!(null);
    }
    json!({
        "p50": ms(h.value_at_quantile(0.50)),
        "p90": ms(h.value_at_quantile(0.90)),
        "p99": ms(h.value_at_quantile(0.99)),
        "p999": ms(h.value_at_quantile(0.999)),
        "max": ms(h.max()),
        "mean": (h.mean() / 10.0).round() / 100.0,
        "count": h.len(),
    })
}

fn latency_line(h: &Histogram<u64>) -> String {
    if h.is_empty() {
        return "no samples".into();
    }
    format!(
        "p50 {:.2} ms  p90 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}",
        ms(h.value_at_quantile(0.5)),
        ms(h.value_at_quantile(0.9)),
        ms(h.value_at_quantile(0.99)),
        ms(h.value_at_quantile(0.999)),
        ms(h.max())
    )
}

/// The sum of `f` over the server processes (None without any, or when one
/// cannot be read).
fn servers_sum<T: std::iter::Sum>(pids: &[u32], f: fn(u32) -> Option<T>) -> Option<T> {
    if pids.is_empty() {
        return None;
    }
    pids.iter().map(|&p| f(p)).sum()
}

/// Resident KiB of the server processes together.
fn servers_rss_kib(pids: &[u32]) -> Option<u64> {
    servers_sum(pids, sys::rss_kib)
}

/// CPU use of this process and the server(s) over a window.
struct CpuWindow {
    wall0: u64,
    self0: f64,
    server0: Option<f64>,
    pids: Vec<u32>,
}

impl CpuWindow {
    fn start(eng: &Engine, pids: &[u32]) -> CpuWindow {
        CpuWindow {
            wall0: eng.now_ns(),
            self0: sys::self_cpu_seconds(),
            server0: servers_sum(pids, sys::cpu_seconds),
            pids: pids.to_vec(),
        }
    }
    /// (loadgen %, server %) of one CPU; the servers' CPU time is summed.
    fn stop(&self, eng: &Engine) -> (f64, Option<f64>) {
        let wall = (eng.now_ns() - self.wall0) as f64 / 1e9;
        let me = (sys::self_cpu_seconds() - self.self0) / wall * 100.0;
        let server = match (servers_sum(&self.pids, sys::cpu_seconds), self.server0) {
            (Some(b), Some(a)) => Some(((b - a) / wall * 100.0 * 10.0).round() / 10.0),
            _ => None,
        };
        ((me * 10.0).round() / 10.0, server)
    }
}

/// Steady subscribers, opened and subscribed.
struct Subscribers {
    toks: Vec<Option<usize>>,
    /// Subscribers confirmed on each channel, per WebSocket server: [server][channel].
    per_channel: Vec<Vec<u64>>,
    subscribed: usize,
    failed: usize,
    open_secs: f64,
    /// Steady subscribers that disconnected later.
    dropped: usize,
}

/// Opens `n` connections (tags 0..n) and subscribes connection i to channel i % C.
fn open_subscribers(
    eng: &mut Engine,
    c: &Common,
    n: usize,
    channels: &[String],
) -> Result<Subscribers, String> {
    let t0 = eng.now_ns();
    let deadline = t0 + (c.open_timeout * 1e9) as u64;
    let mut s = Subscribers {
        toks: vec![None; n],
        per_channel: vec![vec![0; channels.len().max(1)]; eng.ws_servers()],
        subscribed: 0,
        failed: 0,
        open_secs: 0.0,
        dropped: 0,
    };
    let mut started = 0usize;
    let mut first_failure: Option<&'static str> = None;
    while s.subscribed + s.failed < n {
        while started < n && started - s.subscribed - s.failed < c.connect_concurrency {
            match eng.ws_connect(started as u32, true) {
                Ok(tok) => s.toks[started] = Some(tok),
                Err(e) => {
                    s.failed += 1;
                    if first_failure.is_none() {
                        eprintln!("connect failed: {e}");
                        first_failure = Some("connect");
                    }
                }
            }
            started += 1;
        }
        if eng.now_ns() > deadline {
            eprintln!(
                "gave up opening after {:.0} s: {} subscribed, {} failed, {} pending",
                c.open_timeout,
                s.subscribed,
                s.failed,
                n - s.subscribed - s.failed
            );
            s.failed = n - s.subscribed;
            break;
        }
        eng.poll(Some(Duration::from_millis(50)))
            .map_err(|e| e.to_string())?;
        for note in std::mem::take(&mut eng.notes) {
            match note {
                Note::WsReady { tok, tag } => {
                    eng.ws_subscribe(tok, &channels[tag as usize % channels.len()])
                }
                Note::WsSubscribed { tag, .. } => {
                    s.subscribed += 1;
                    s.per_channel[eng.ws_server_of(tag)][tag as usize % channels.len()] += 1;
                }
                Note::WsClosed { tag, why, .. } => {
                    s.toks[tag as usize] = None;
                    s.failed += 1;
                    if first_failure.is_none() {
                        eprintln!("connection {tag} failed while opening: {why}");
                        first_failure = Some(why);
                    }
                }
                _ => {}
            }
        }
    }
    s.open_secs = (eng.now_ns() - t0) as f64 / 1e9;
    Ok(s)
}

fn common_json(c: &Common, scenario: &str) -> serde_json::Map<String, Value> {
    let mut m = serde_json::Map::new();
    m.insert("scenario".into(), json!(scenario));
    m.insert("target".into(), json!(c.label));
    m.insert("url".into(), json!(c.url));
    if !c.sub_urls.is_empty() {
        m.insert("sub_urls".into(), json!(c.sub_urls));
    }
    if !c.case.is_empty() {
        m.insert("case".into(), json!(c.case));
    }
    m.insert("run".into(), json!(c.run));
    m
}

// ---------------------------------------------------------------- fanout

fn fanout(a: FanoutArgs, nofile: u64) -> Res {
    let c = &a.common;
    let rate = parse_rate(&a.rate)?;
    if a.channels == 0 || a.subscribers == 0 || a.publishers == 0 || a.batch == 0 {
        return Err("subscribers, channels, publishers and batch must be at least 1".into());
    }
    let need = a.subscribers + a.publishers + 16;
    if need as u64 > nofile {
        return Err(format!(
            "{need} sockets needed but the open-files limit is {nofile}"
        ));
    }
    let (mut eng, host) = new_engine(c, a.subscribers)?;
    let channels: Vec<String> = (0..a.channels)
        .map(|i| format!("{}-{i}", a.channel_prefix))
        .collect();
    let on = if c.sub_urls.is_empty() {
        c.url.clone()
    } else {
        c.sub_urls.join(" ")
    };
    eprintln!(
        "fanout: opening {} subscribers over {} channel(s) on {on}",
        a.subscribers, a.channels
    );
    let mut subs = open_subscribers(&mut eng, c, a.subscribers, &channels)?;
    eprintln!(
        "  {} subscribed, {} failed in {:.2} s",
        subs.subscribed, subs.failed, subs.open_secs
    );
    if subs.subscribed == 0 {
        return Err("no subscriber could subscribe".into());
    }
    let signer = Signer::new(&c.app_id, &c.key, &c.secret, &host);
    let cfg = PubConfig {
        publishers: a.publishers,
        rate,
        batch: a.batch,
        payload: a.payload,
        channels: channels.clone(),
        event_name: "bench".into(),
    };
    let mut pubs = Publishers::new(&mut eng, cfg, signer).map_err(|e| e.to_string())?;
    let rss_before = servers_rss_kib(&c.server_pids);

    let cpu = CpuWindow::start(&eng, &c.server_pids);
    let t0 = eng.now_ns();
    pubs.start(t0);
    let pub_end = t0 + (a.duration * 1e9) as u64;
    // Publish.
    loop {
        let now = eng.now_ns();
        if now >= pub_end {
            break;
        }
        pubs.pump(&mut eng);
        let wait = pubs
            .wait_ns(eng.now_ns(), 10_000_000)
            .min(pub_end.saturating_sub(now));
        eng.poll(Some(Duration::from_nanos(wait)))
            .map_err(|e| e.to_string())?;
        handle_fanout_notes(&mut eng, &mut pubs, &mut subs);
    }
    let published_at = eng.now_ns();
    // Wait for the responses in flight, then for the deliveries.
    let resp_deadline = published_at + 10_000_000_000;
    while pubs.in_flight() > 0 && eng.now_ns() < resp_deadline {
        eng.poll(Some(Duration::from_millis(10)))
            .map_err(|e| e.to_string())?;
        handle_fanout_notes(&mut eng, &mut pubs, &mut subs);
    }
    let drain_deadline = eng.now_ns() + (a.drain * 1e9) as u64;
    let mut last_progress = (eng.stats.deliveries, eng.now_ns());
    loop {
        let expected = expected_deliveries(&pubs, &subs);
        let now = eng.now_ns();
        if eng.stats.deliveries >= expected || now >= drain_deadline {
            break;
        }
        if eng.stats.deliveries != last_progress.0 {
            last_progress = (eng.stats.deliveries, now);
        } else if now - last_progress.1 > 3_000_000_000 {
            break; // nothing arrived for 3 s: the rest is lost
        }
        eng.poll(Some(Duration::from_millis(10)))
            .map_err(|e| e.to_string())?;
        handle_fanout_notes(&mut eng, &mut pubs, &mut subs);
    }
    let (gen_cpu, server_cpu) = cpu.stop(&eng);
    let rss_after = servers_rss_kib(&c.server_pids);

    let expected = expected_deliveries(&pubs, &subs);
    let received = eng.stats.deliveries;
    let lost = expected.saturating_sub(received);
    let last = eng.stats.last_delivery_ns.max(t0 + 1);
    let window = (last - t0) as f64 / 1e9;
    let pub_window = (published_at - t0) as f64 / 1e9;
    let events = pubs.events_acked();
    let dps = received as f64 / window;
    let loss_pct = if expected > 0 {
        lost as f64 * 100.0 / expected as f64
    } else {
        0.0
    };
    let lat = &eng.stats.latency_us;

    eprintln!(
        "  published {} events ({} failed) in {:.2} s: {:.0} events/s, {} requests ok",
        events,
        pubs.events_failed,
        pub_window,
        events as f64 / pub_window,
        pubs.requests_ok
    );
    eprintln!(
        "  deliveries: expected {}, received {}, lost {} ({:.3}%), {:.0} deliveries/s over {:.2} s",
        expected, received, lost, loss_pct, dps, window
    );
    if received > expected {
        eprintln!(
            "  !! {} deliveries more than expected (duplicates?)",
            received - expected
        );
    }
    eprintln!("  end-to-end latency: {}", latency_line(lat));
    let servers = per_server(&eng, c, &pubs, &subs);
    eprintln!(
        "  HTTP latency: {}   statuses {:?}",
        latency_line(&pubs.latency_us),
        pubs.statuses
    );
    eprintln!(
        "  CPU: loadgen {:.1}%, server {}   subscribers dropped {}  pusher errors {}",
        gen_cpu,
        server_cpu.map_or("?".into(), |v| format!("{v:.1}%")),
        subs.dropped,
        eng.stats.pusher_errors
    );
    if let Some(e) = &eng.stats.first_pusher_error {
        eprintln!("  first pusher error: {e}");
    }

    let mut m = common_json(c, "fanout");
    m.insert(
        "params".into(),
        json!({
            "subscribers": a.subscribers, "channels": a.channels, "publishers": a.publishers,
            "rate": rate.map_or(json!("max"), |r| json!(r)), "duration_s": a.duration,
            "payload": a.payload, "batch": a.batch,
        }),
    );
    m.insert("subscribed".into(), json!(subs.subscribed));
    m.insert("subscribe_failed".into(), json!(subs.failed));
    m.insert("open_s".into(), json!(round3(subs.open_secs)));
    m.insert("events_published".into(), json!(events));
    m.insert("events_failed".into(), json!(pubs.events_failed));
    m.insert("publish_s".into(), json!(round3(pub_window)));
    m.insert(
        "events_per_s".into(),
        json!(round1(events as f64 / pub_window)),
    );
    m.insert("deliveries_expected".into(), json!(expected));
    m.insert("deliveries_received".into(), json!(received));
    m.insert("deliveries_lost".into(), json!(lost));
    m.insert("loss_pct".into(), json!(round3(loss_pct)));
    m.insert("deliveries_per_s".into(), json!(dps.round()));
    m.insert("delivery_window_s".into(), json!(round3(window)));
    m.insert("latency_ms".into(), latency_json(lat));
    m.insert("http_latency_ms".into(), latency_json(&pubs.latency_us));
    m.insert("http_statuses".into(), json!(pubs.statuses));
    m.insert("http_reconnects".into(), json!(eng.stats.http_reconnects));
    m.insert("subscribers_dropped".into(), json!(subs.dropped));
    m.insert("pusher_errors".into(), json!(eng.stats.pusher_errors));
    m.insert("loadgen_cpu_pct".into(), json!(gen_cpu));
    m.insert("server_cpu_pct".into(), json!(server_cpu));
    m.insert("server_rss_kib_before".into(), json!(rss_before));
    m.insert("server_rss_kib_after".into(), json!(rss_after));
    if let Some(servers) = servers {
        m.insert("servers".into(), servers);
    }
    Ok(Value::Object(m))
}

/// With several WebSocket servers (`--sub-url`): subscribers, deliveries
/// expected and received, and latency on each, printed and as JSON.
fn per_server(eng: &Engine, c: &Common, pubs: &Publishers, subs: &Subscribers) -> Option<Value> {
    if eng.ws_servers() < 2 {
        return None;
    }
    let mut out = Vec::new();
    for (i, url) in c.sub_urls.iter().enumerate() {
        let subscribed: u64 = subs.per_channel[i].iter().sum();
        let expected = expected_on(pubs, subs, i);
        let received = eng.stats.deliveries_by_server[i];
        let lat = &eng.stats.latency_by_server[i];
        let diff = if received > expected {
            format!("{} MORE than expected", received - expected)
        } else {
            format!("lost {}", expected - received)
        };
        eprintln!(
            "    {url}: {subscribed} subscribed, deliveries expected {expected}, received {received}, \
             {diff}; latency {}",
            latency_line(lat)
        );
        out.push(json!({
            "url": url, "subscribed": subscribed, "deliveries_expected": expected,
            "deliveries_received": received, "latency_ms": latency_json(lat),
        }));
    }
    Some(Value::Array(out))
}

fn expected_deliveries(pubs: &Publishers, subs: &Subscribers) -> u64 {
    (0..subs.per_channel.len())
        .map(|server| expected_on(pubs, subs, server))
        .sum()
}

/// Deliveries expected by the subscribers on one WebSocket server.
fn expected_on(pubs: &Publishers, subs: &Subscribers, server: usize) -> u64 {
    pubs.acked
        .iter()
        .zip(&subs.per_channel[server])
        .map(|(e, s)| e * s)
        .sum()
}

fn handle_fanout_notes(eng: &mut Engine, pubs: &mut Publishers, subs: &mut Subscribers) {
    if eng.notes.is_empty() {
        return;
    }
    let now = eng.now_ns();
    for note in std::mem::take(&mut eng.notes) {
        match note {
            Note::HttpDone {
                tok,
                status,
                sent_ns,
            } => {
                pubs.on_done(tok, status, sent_ns, now);
            }
            Note::WsClosed { tag, why, .. } => {
                subs.dropped += 1;
                if subs.dropped <= 3 {
                    eprintln!("  subscriber {tag} disconnected: {why}");
                }
            }
            _ => {}
        }
    }
}

fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}
fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

// ---------------------------------------------------------------- connections

fn connections(a: ConnArgs, nofile: u64) -> Res {
    let c = &a.common;
    if a.count + 16 > nofile as usize {
        return Err(format!(
            "{} connections need more than the open-files limit {nofile}: run several loadgen processes",
            a.count
        ));
    }
    let (mut eng, _) = new_engine(c, a.count)?;
    let pids = &c.server_pids;
    eprintln!(
        "connections: opening {} idle connections on {}",
        a.count, c.url
    );
    let settle = Duration::from_secs_f64(a.settle);
    std::thread::sleep(settle);
    let rss_before = servers_rss_kib(pids);
    let cpu = CpuWindow::start(&eng, pids);
    let t0 = eng.now_ns();
    let deadline = t0 + (c.open_timeout * 1e9) as u64;
    let mut started = 0usize;
    let mut ready = 0usize;
    let mut failed = 0usize;
    let mut connect_errors = 0usize;
    let mut first_failure: Option<String> = None;
    let mut open_lat = Histogram::<u64>::new_with_bounds(1, 120_000_000, 3).unwrap();
    let mut started_at = vec![0u64; a.count];
    while ready + failed < a.count {
        while started < a.count && started - ready - failed < c.connect_concurrency {
            match eng.ws_connect(started as u32, true) {
                Ok(_) => started_at[started] = eng.now_ns(),
                Err(e) => {
                    failed += 1;
                    connect_errors += 1;
                    first_failure.get_or_insert_with(|| format!("connect: {e}"));
                }
            }
            started += 1;
        }
        if eng.now_ns() > deadline {
            failed = a.count - ready;
            first_failure.get_or_insert_with(|| "timed out".into());
            break;
        }
        eng.poll(Some(Duration::from_millis(50)))
            .map_err(|e| e.to_string())?;
        let now = eng.now_ns();
        for note in std::mem::take(&mut eng.notes) {
            match note {
                Note::WsReady { tag, .. } => {
                    ready += 1;
                    let _ = open_lat.record(((now - started_at[tag as usize]) / 1000).max(1));
                }
                Note::WsClosed { was_ready, why, .. } => {
                    if was_ready {
                        ready -= 1;
                    }
                    failed += 1;
                    first_failure.get_or_insert_with(|| why.to_string());
                }
                _ => {}
            }
        }
    }
    let open_secs = (eng.now_ns() - t0) as f64 / 1e9;
    eprintln!(
        "  {} open, {} failed in {:.2} s ({:.0} connections/s)",
        ready,
        failed,
        open_secs,
        ready as f64 / open_secs
    );
    // Let the server settle, then read its memory; hold (answering pings).
    let mut dropped = 0usize;
    let mut hold = |eng: &mut Engine, secs: f64| -> Result<(), String> {
        let until = eng.now_ns() + (secs * 1e9) as u64;
        while eng.now_ns() < until {
            eng.poll(Some(Duration::from_millis(100)))
                .map_err(|e| e.to_string())?;
            for note in std::mem::take(&mut eng.notes) {
                if let Note::WsClosed { .. } = note {
                    dropped += 1;
                }
            }
        }
        Ok(())
    };
    hold(&mut eng, a.settle)?;
    let rss_after = servers_rss_kib(pids);
    let (gen_cpu, server_cpu) = cpu.stop(&eng);
    hold(&mut eng, a.hold)?;
    let still_open = ready - dropped;
    let per_conn = match (rss_before, rss_after) {
        (Some(b), Some(af)) if ready > 0 => Some(round3((af as f64 - b as f64) / ready as f64)),
        _ => None,
    };
    eprintln!(
        "  server RSS {} KiB -> {} KiB: {} KiB per connection; {} still open after {:.0} s hold, {} pings answered",
        rss_before.map_or("?".into(), |v| v.to_string()),
        rss_after.map_or("?".into(), |v| v.to_string()),
        per_conn.map_or("?".into(), |v| format!("{v:.2}")),
        still_open,
        a.hold,
        eng.stats.pings_answered
    );
    eprintln!("  time to open one connection: {}", latency_line(&open_lat));
    if let Some(f) = &first_failure {
        eprintln!("  first failure: {f}");
    }
    let mut m = common_json(c, "connections");
    m.insert(
        "params".into(),
        json!({ "count": a.count, "hold_s": a.hold, "concurrency": c.connect_concurrency, "sources": eng.sources }),
    );
    m.insert("opened".into(), json!(ready));
    m.insert("failed".into(), json!(failed));
    m.insert("connect_errors".into(), json!(connect_errors));
    m.insert("first_failure".into(), json!(first_failure));
    m.insert("open_s".into(), json!(round3(open_secs)));
    m.insert(
        "connections_per_s".into(),
        json!((ready as f64 / open_secs).round()),
    );
    m.insert("open_latency_ms".into(), latency_json(&open_lat));
    m.insert("still_open_after_hold".into(), json!(still_open));
    m.insert("pings_answered".into(), json!(eng.stats.pings_answered));
    m.insert("server_rss_kib_before".into(), json!(rss_before));
    m.insert("server_rss_kib_after".into(), json!(rss_after));
    m.insert("rss_kib_per_connection".into(), json!(per_conn));
    m.insert("loadgen_cpu_pct".into(), json!(gen_cpu));
    m.insert("server_cpu_pct".into(), json!(server_cpu));
    Ok(Value::Object(m))
}

// ---------------------------------------------------------------- trigger

fn trigger(a: TriggerArgs) -> Res {
    let c = &a.common;
    let rate = parse_rate(&a.rate)?;
    if a.publishers == 0 || a.batch == 0 || a.channels == 0 {
        return Err("publishers, batch and channels must be at least 1".into());
    }
    let (mut eng, host) = new_engine(c, 0)?;
    let channels: Vec<String> = (0..a.channels)
        .map(|i| format!("{}-{i}", a.channel_prefix))
        .collect();
    let signer = Signer::new(&c.app_id, &c.key, &c.secret, &host);
    let cfg = PubConfig {
        publishers: a.publishers,
        rate,
        batch: a.batch,
        payload: a.payload,
        channels,
        event_name: "bench".into(),
    };
    let mut pubs = Publishers::new(&mut eng, cfg, signer).map_err(|e| e.to_string())?;
    eprintln!(
        "trigger: {} publishers, rate {}, {} s on {}",
        a.publishers, a.rate, a.duration, c.url
    );
    let cpu = CpuWindow::start(&eng, &c.server_pids);
    let t0 = eng.now_ns();
    pubs.start(t0);
    let end = t0 + (a.duration * 1e9) as u64;
    let on_notes = |eng: &mut Engine, pubs: &mut Publishers| {
        let now = eng.now_ns();
        for note in std::mem::take(&mut eng.notes) {
            if let Note::HttpDone {
                tok,
                status,
                sent_ns,
            } = note
            {
                pubs.on_done(tok, status, sent_ns, now);
            }
        }
    };
    loop {
        let now = eng.now_ns();
        if now >= end {
            break;
        }
        pubs.pump(&mut eng);
        let wait = pubs.wait_ns(now, 10_000_000).min(end - now);
        eng.poll(Some(Duration::from_nanos(wait)))
            .map_err(|e| e.to_string())?;
        on_notes(&mut eng, &mut pubs);
    }
    let stop = eng.now_ns();
    while pubs.in_flight() > 0 && eng.now_ns() < stop + 5_000_000_000 {
        eng.poll(Some(Duration::from_millis(10)))
            .map_err(|e| e.to_string())?;
        on_notes(&mut eng, &mut pubs);
    }
    let (gen_cpu, server_cpu) = cpu.stop(&eng);
    let window = (pubs.last_ack_ns.max(stop) - t0) as f64 / 1e9;
    let rps = pubs.requests_ok as f64 / window;
    eprintln!(
        "  {} requests ok, {} failed: {:.0} requests/s, {:.0} events/s",
        pubs.requests_ok,
        pubs.requests_failed,
        rps,
        pubs.events_acked() as f64 / window
    );
    eprintln!("  latency: {}", latency_line(&pubs.latency_us));
    eprintln!(
        "  statuses {:?}, reconnects {}, CPU: loadgen {:.1}%, server {}",
        pubs.statuses,
        eng.stats.http_reconnects,
        gen_cpu,
        server_cpu.map_or("?".into(), |v| format!("{v:.1}%"))
    );
    let mut m = common_json(c, "trigger");
    m.insert(
        "params".into(),
        json!({ "publishers": a.publishers, "rate": rate.map_or(json!("max"), |r| json!(r)),
                "duration_s": a.duration, "payload": a.payload, "batch": a.batch, "channels": a.channels }),
    );
    m.insert("requests_ok".into(), json!(pubs.requests_ok));
    m.insert("requests_failed".into(), json!(pubs.requests_failed));
    m.insert("requests_per_s".into(), json!(rps.round()));
    m.insert(
        "events_per_s".into(),
        json!((pubs.events_acked() as f64 / window).round()),
    );
    m.insert("latency_ms".into(), latency_json(&pubs.latency_us));
    m.insert("http_statuses".into(), json!(pubs.statuses));
    m.insert("http_reconnects".into(), json!(eng.stats.http_reconnects));
    m.insert("loadgen_cpu_pct".into(), json!(gen_cpu));
    m.insert("server_cpu_pct".into(), json!(server_cpu));
    Ok(Value::Object(m))
}

// ---------------------------------------------------------------- churn

#[derive(Clone, Copy, PartialEq)]
enum Stage {
    Connecting,
    Subscribing,
    Closing,
}

fn churn(a: ChurnArgs) -> Res {
    let c = &a.common;
    let rate = parse_rate(&a.rate)?;
    if a.channels == 0 || a.subscribers == 0 || a.publishers == 0 {
        return Err("subscribers, channels and publishers must be at least 1".into());
    }
    let (mut eng, host) = new_engine(c, a.subscribers)?;
    if c.sources == 0 {
        // Closed connections linger in TIME_WAIT; spread the ports.
        eng.sources = 4;
    }
    let channels: Vec<String> = (0..a.channels).map(|i| format!("churn-{i}")).collect();
    eprintln!(
        "churn: {} steady subscribers over {} channels, {} churning connections, rate {} on {}",
        a.subscribers, a.channels, a.churners, a.rate, c.url
    );
    let mut subs = open_subscribers(&mut eng, c, a.subscribers, &channels)?;
    eprintln!(
        "  {} subscribed, {} failed in {:.2} s",
        subs.subscribed, subs.failed, subs.open_secs
    );
    let signer = Signer::new(&c.app_id, &c.key, &c.secret, &host);
    let cfg = PubConfig {
        publishers: a.publishers,
        rate,
        batch: 1,
        payload: a.payload,
        channels: channels.clone(),
        event_name: "bench".into(),
    };
    let mut pubs = Publishers::new(&mut eng, cfg, signer).map_err(|e| e.to_string())?;
    let base_tag = a.subscribers as u32;
    let mut stage = vec![Stage::Connecting; a.churners];
    let mut cycles = 0u64;
    let mut cycle_failures = 0u64;
    let mut first_failure: Option<&'static str> = None;
    let mut cycle_lat = Histogram::<u64>::new_with_bounds(1, 120_000_000, 3).unwrap();
    let mut cycle_start = vec![0u64; a.churners];
    let cpu = CpuWindow::start(&eng, &c.server_pids);
    let t0 = eng.now_ns();
    pubs.start(t0);
    for (i, start) in cycle_start.iter_mut().enumerate() {
        *start = eng.now_ns();
        if eng.ws_connect(base_tag + i as u32, false).is_err() {
            cycle_failures += 1;
        }
    }
    let end = t0 + (a.duration * 1e9) as u64;
    let mut running = true;
    let mut churn_open = a.churners;
    let mut churn_stop_ns = end;
    loop {
        let now = eng.now_ns();
        if running && now >= end {
            running = false;
            churn_stop_ns = now;
        }
        if !running && (churn_open == 0 || now > end + 5_000_000_000) {
            break;
        }
        if running {
            pubs.pump(&mut eng);
        }
        let wait = if running {
            pubs.wait_ns(now, 10_000_000)
        } else {
            10_000_000
        };
        eng.poll(Some(Duration::from_nanos(wait)))
            .map_err(|e| e.to_string())?;
        let now = eng.now_ns();
        for note in std::mem::take(&mut eng.notes) {
            match note {
                Note::HttpDone {
                    tok,
                    status,
                    sent_ns,
                } => {
                    pubs.on_done(tok, status, sent_ns, now);
                }
                Note::WsReady { tok, tag } if tag >= base_tag => {
                    let slot = (tag - base_tag) as usize;
                    stage[slot] = Stage::Subscribing;
                    eng.ws_subscribe(tok, &channels[slot % channels.len()]);
                }
                Note::WsSubscribed { tok, tag } if tag >= base_tag => {
                    let slot = (tag - base_tag) as usize;
                    eng.ws_unsubscribe(tok, &channels[slot % channels.len()]);
                    eng.ws_close(tok);
                    stage[slot] = Stage::Closing;
                }
                Note::WsClosed { tag, why, .. } if tag >= base_tag => {
                    let slot = (tag - base_tag) as usize;
                    if stage[slot] == Stage::Closing {
                        cycles += 1;
                        let _ = cycle_lat.record(((now - cycle_start[slot]) / 1000).max(1));
                    } else {
                        cycle_failures += 1;
                        if first_failure.is_none() {
                            eprintln!("  churn connection failed: {why}");
                            first_failure = Some(why);
                        }
                    }
                    stage[slot] = Stage::Connecting;
                    if running {
                        cycle_start[slot] = now;
                        if eng.ws_connect(tag, false).is_err() {
                            cycle_failures += 1;
                            churn_open -= 1;
                        }
                    } else {
                        churn_open -= 1;
                    }
                }
                Note::WsClosed { tag, why, .. } => {
                    subs.dropped += 1;
                    if subs.dropped <= 3 {
                        eprintln!("  steady subscriber {tag} disconnected: {why}");
                    }
                }
                _ => {}
            }
        }
        if !running && churn_open > 0 {
            // Stop cycling: connections still being set up are simply dropped
            // once publishing has finished (below).
        }
    }
    let churn_secs = (churn_stop_ns - t0) as f64 / 1e9;
    // Wait for deliveries to the steady subscribers.
    let drain_deadline = eng.now_ns() + (a.drain * 1e9) as u64;
    let mut last_progress = (eng.stats.deliveries, eng.now_ns());
    loop {
        let now = eng.now_ns();
        if eng.stats.deliveries >= expected_deliveries(&pubs, &subs) || now >= drain_deadline {
            break;
        }
        if eng.stats.deliveries != last_progress.0 {
            last_progress = (eng.stats.deliveries, now);
        } else if now - last_progress.1 > 3_000_000_000 {
            break;
        }
        eng.poll(Some(Duration::from_millis(10)))
            .map_err(|e| e.to_string())?;
        let now = eng.now_ns();
        for note in std::mem::take(&mut eng.notes) {
            if let Note::HttpDone {
                tok,
                status,
                sent_ns,
            } = note
            {
                pubs.on_done(tok, status, sent_ns, now);
            }
        }
    }
    let (gen_cpu, server_cpu) = cpu.stop(&eng);
    let expected = expected_deliveries(&pubs, &subs);
    let received = eng.stats.deliveries;
    let lost = expected.saturating_sub(received);
    let loss_pct = if expected > 0 {
        lost as f64 * 100.0 / expected as f64
    } else {
        0.0
    };
    let cps = cycles as f64 / churn_secs;
    eprintln!(
        "  {} connect/subscribe/unsubscribe/disconnect cycles in {:.2} s: {:.0} connections/s, {} failed",
        cycles, churn_secs, cps, cycle_failures
    );
    eprintln!("  cycle time: {}", latency_line(&cycle_lat));
    eprintln!(
        "  steady subscribers: {} events published, deliveries expected {}, received {}, lost {} ({:.3}%)",
        pubs.events_acked(),
        expected,
        received,
        lost,
        loss_pct
    );
    eprintln!("  steady latency: {}", latency_line(&eng.stats.latency_us));
    eprintln!(
        "  CPU: loadgen {:.1}%, server {}",
        gen_cpu,
        server_cpu.map_or("?".into(), |v| format!("{v:.1}%"))
    );
    let mut m = common_json(c, "churn");
    m.insert(
        "params".into(),
        json!({ "subscribers": a.subscribers, "channels": a.channels, "churners": a.churners,
                "publishers": a.publishers, "rate": rate.map_or(json!("max"), |r| json!(r)),
                "duration_s": a.duration, "payload": a.payload }),
    );
    m.insert("cycles".into(), json!(cycles));
    m.insert("cycle_failures".into(), json!(cycle_failures));
    m.insert("connections_per_s".into(), json!(cps.round()));
    m.insert("cycle_ms".into(), latency_json(&cycle_lat));
    m.insert("events_published".into(), json!(pubs.events_acked()));
    m.insert("deliveries_expected".into(), json!(expected));
    m.insert("deliveries_received".into(), json!(received));
    m.insert("deliveries_lost".into(), json!(lost));
    m.insert("loss_pct".into(), json!(round3(loss_pct)));
    m.insert("latency_ms".into(), latency_json(&eng.stats.latency_us));
    m.insert("subscribers_dropped".into(), json!(subs.dropped));
    m.insert("loadgen_cpu_pct".into(), json!(gen_cpu));
    m.insert("server_cpu_pct".into(), json!(server_cpu));
    Ok(Value::Object(m))
}
