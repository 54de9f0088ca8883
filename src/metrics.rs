//! Counters for the Prometheus endpoint.
//!
//! Each shard owns one [`Counters`] (plain `Cell`s, touched only by its own
//! thread). The metrics endpoint gathers a [`Snapshot`] from every shard
//! over the mailboxes, like channel queries, and [`render`]s them per shard
//! (label `shard`) and in total, with the process-wide webhook counters.
//!
//! The text is written by hand, on purpose. A crate such as
//! `prometheus-client` keeps its values in its own metric types (`Arc`ed
//! atomics, and a lock and hash lookup per labelled increment), which would
//! turn each shard's plain `Cell` increment into shared atomic work on the
//! hot path. Using it only to print gathered snapshots (its `Collector`
//! with constant metrics) keeps that cost away but replaces just the two
//! formatting helpers below, adds a dependency, and prints OpenMetrics
//! (`# EOF`, its own `_total` suffixes) instead of the names and format
//! scraped today. Every label value here is a number or a fixed route name,
//! so the text needs no escaping.

use crate::cluster::{ClusterHandle, Refusal};
use crate::webhooks::DeliveryStats;
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::Ordering;

/// A shard's counters; only its own thread touches them.
#[derive(Default)]
pub struct Counters {
    pub connections_opened: Cell<u64>,
    /// Closed connections by the close code the server sent or echoed
    /// (1006 when the socket just went away).
    pub connections_closed: RefCell<BTreeMap<u16, u64>>,
    /// Upgrades refused before the connection opened, by Pusher code.
    pub connections_refused: RefCell<BTreeMap<u16, u64>>,
    pub messages_in: Cell<u64>,
    pub bytes_in: Cell<u64>,
    /// HTTP requests by (route, status).
    pub http_requests: RefCell<BTreeMap<(&'static str, u16), u64>>,
    /// Questions to other shards that got no answer in time.
    pub requests_timed_out: Cell<u64>,
    /// Cached events evicted before their TTL because the cache was full.
    pub cache_evictions: Cell<u64>,
    /// Publications another shard of this node posted here.
    pub publications_received: Cell<u64>,
    /// Publications not posted to another shard, one per shard left out,
    /// because it had no subscribers of their channels (sparse routing).
    pub publications_skipped: Cell<u64>,
}

fn bump(cell: &Cell<u64>, by: u64) {
    cell.set(cell.get().wrapping_add(by));
}

impl Counters {
    pub fn opened(&self) {
        bump(&self.connections_opened, 1);
    }

    pub fn closed(&self, code: u16) {
        *self
            .connections_closed
            .borrow_mut()
            .entry(code)
            .or_default() += 1;
    }

    pub fn refused(&self, code: u16) {
        *self
            .connections_refused
            .borrow_mut()
            .entry(code)
            .or_default() += 1;
    }

    pub fn message_in(&self) {
        bump(&self.messages_in, 1);
    }

    pub fn request_timed_out(&self) {
        bump(&self.requests_timed_out, 1);
    }

    pub fn read_bytes(&self, bytes: usize) {
        bump(&self.bytes_in, bytes as u64);
    }

    pub fn publication_received(&self) {
        bump(&self.publications_received, 1);
    }

    pub fn publications_skipped(&self, shards: u64) {
        bump(&self.publications_skipped, shards);
    }

    pub fn cache_evicted(&self, entries: usize) {
        bump(&self.cache_evictions, entries as u64);
    }

    pub fn http_request(&self, route: &'static str, status: u16) {
        *self
            .http_requests
            .borrow_mut()
            .entry((route, status))
            .or_default() += 1;
    }

    /// A copy of these counters to send to the shard serving the metrics
    /// endpoint; the figures of the connection table and the mailboxes are
    /// the shard's to fill in (they are counted there, not here).
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            connections_opened: self.connections_opened.get(),
            connections_closed: self.connections_closed.borrow().clone(),
            connections_refused: self.connections_refused.borrow().clone(),
            messages_in: self.messages_in.get(),
            bytes_in: self.bytes_in.get(),
            http_requests: self.http_requests.borrow().clone(),
            shard_requests_timed_out: self.requests_timed_out.get(),
            cache_evictions: self.cache_evictions.get(),
            shard_publications_received: self.publications_received.get(),
            shard_publications_skipped: self.publications_skipped.get(),
            ..Snapshot::default()
        }
    }
}

/// One shard's counters at one moment; plain data that may cross cores.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub connections_current: u64,
    pub connections_opened: u64,
    pub connections_closed: BTreeMap<u16, u64>,
    pub connections_refused: BTreeMap<u16, u64>,
    pub messages_in: u64,
    pub bytes_in: u64,
    pub messages_out: u64,
    pub bytes_out: u64,
    pub http_requests: BTreeMap<(&'static str, u16), u64>,
    pub slow_consumer_closes: u64,
    pub shard_requests_timed_out: u64,
    pub write_queue_bytes: u64,
    pub over_budget_closes: u64,
    /// Messages waiting in the shard's outboxes to other shards.
    pub outbox_messages: u64,
    pub cache_evictions: u64,
    pub shard_publications_received: u64,
    pub shard_publications_skipped: u64,
}

impl Snapshot {
    fn add(&mut self, other: &Snapshot) {
        self.connections_current += other.connections_current;
        self.connections_opened += other.connections_opened;
        for (k, v) in &other.connections_closed {
            *self.connections_closed.entry(*k).or_default() += v;
        }
        for (k, v) in &other.connections_refused {
            *self.connections_refused.entry(*k).or_default() += v;
        }
        self.messages_in += other.messages_in;
        self.bytes_in += other.bytes_in;
        self.messages_out += other.messages_out;
        self.bytes_out += other.bytes_out;
        for (k, v) in &other.http_requests {
            *self.http_requests.entry(*k).or_default() += v;
        }
        self.slow_consumer_closes += other.slow_consumer_closes;
        self.shard_requests_timed_out += other.shard_requests_timed_out;
        self.write_queue_bytes += other.write_queue_bytes;
        self.over_budget_closes += other.over_budget_closes;
        self.outbox_messages += other.outbox_messages;
        self.cache_evictions += other.cache_evictions;
        self.shard_publications_received += other.shard_publications_received;
        self.shard_publications_skipped += other.shard_publications_skipped;
    }
}

/// Reads one value of a [`Snapshot`].
type Getter = fn(&Snapshot) -> u64;

/// One metric family: its name, help, type and one line per labelled value.
struct Family<'a> {
    out: &'a mut String,
}

impl Family<'_> {
    fn header(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP shardcast_{name} {help}");
        let _ = writeln!(self.out, "# TYPE shardcast_{name} {kind}");
    }

    fn line(&mut self, name: &str, labels: &str, value: u64) {
        if labels.is_empty() {
            let _ = writeln!(self.out, "shardcast_{name} {value}");
        } else {
            let _ = writeln!(self.out, "shardcast_{name}{{{labels}}} {value}");
        }
    }
}

/// The Prometheus text exposition: every shard's values (label `shard`)
/// and the totals (without it).
pub fn render(shards: &[Snapshot], process: &[Figure]) -> String {
    let mut total = Snapshot::default();
    shards.iter().for_each(|s| total.add(s));
    let mut out = String::new();
    let mut f = Family { out: &mut out };
    let rows: Vec<(String, &Snapshot)> = shards
        .iter()
        .enumerate()
        .map(|(i, s)| (format!("shard=\"{i}\""), s))
        .chain(std::iter::once((String::new(), &total)))
        .collect();
    let join = |a: &str, b: String| {
        if a.is_empty() {
            b
        } else {
            format!("{a},{b}")
        }
    };
    let plain: [(&str, &str, &str, Getter); 15] = [
        ("connections", "gauge", "Open WebSocket connections.", |s| {
            s.connections_current
        }),
        (
            "connections_opened_total",
            "counter",
            "WebSocket connections opened.",
            |s| s.connections_opened,
        ),
        (
            "messages_in_total",
            "counter",
            "WebSocket messages received from clients.",
            |s| s.messages_in,
        ),
        (
            "bytes_in_total",
            "counter",
            "Bytes received on WebSocket connections.",
            |s| s.bytes_in,
        ),
        (
            "messages_out_total",
            "counter",
            "WebSocket frames sent to clients.",
            |s| s.messages_out,
        ),
        (
            "bytes_out_total",
            "counter",
            "Bytes sent on WebSocket connections.",
            |s| s.bytes_out,
        ),
        (
            "slow_consumer_closes_total",
            "counter",
            "Connections closed with 4100 because their queue overflowed.",
            |s| s.slow_consumer_closes,
        ),
        (
            "write_queue_bytes",
            "gauge",
            "Bytes queued for clients, all connections together (budget: max_write_queues_mb).",
            |s| s.write_queue_bytes,
        ),
        (
            "outbox_messages",
            "gauge",
            "Messages waiting to cross to other shards (clients pause reading above 4096).",
            |s| s.outbox_messages,
        ),
        (
            "over_budget_closes_total",
            "counter",
            "Connections closed with 4100 because the write queues' budget was spent and theirs was large.",
            |s| s.over_budget_closes,
        ),
        (
            "shard_requests_timed_out_total",
            "counter",
            "Questions to another shard (quota leases, queries, metrics) not answered in time.",
            |s| s.shard_requests_timed_out,
        ),
        (
            "connections_refused_all_total",
            "counter",
            "WebSocket upgrades refused, all codes.",
            |s| s.connections_refused.values().sum(),
        ),
        (
            "cache_evictions_total",
            "counter",
            "Cached events evicted before their TTL because the cache was at its limits.",
            |s| s.cache_evictions,
        ),
        (
            "shard_publications_received_total",
            "counter",
            "Publications another shard of this node posted to this one.",
            |s| s.shard_publications_received,
        ),
        (
            "shard_publications_skipped_total",
            "counter",
            "Publications not posted to another shard (counted once per shard left out) because it had no subscribers of their channels.",
            |s| s.shard_publications_skipped,
        ),
    ];
    for (name, kind, help, get) in plain {
        f.header(name, kind, help);
        for (labels, s) in &rows {
            f.line(name, labels, get(s));
        }
    }
    f.header(
        "connections_closed_total",
        "counter",
        "WebSocket connections closed, by close code.",
    );
    for (labels, s) in &rows {
        for (code, n) in &s.connections_closed {
            f.line(
                "connections_closed_total",
                &join(labels, format!("code=\"{code}\"")),
                *n,
            );
        }
    }
    f.header(
        "connections_refused_total",
        "counter",
        "WebSocket upgrades refused, by Pusher error code.",
    );
    for (labels, s) in &rows {
        for (code, n) in &s.connections_refused {
            f.line(
                "connections_refused_total",
                &join(labels, format!("code=\"{code}\"")),
                *n,
            );
        }
    }
    f.header(
        "http_requests_total",
        "counter",
        "HTTP requests, by route and status.",
    );
    for (labels, s) in &rows {
        for ((route, status), n) in &s.http_requests {
            f.line(
                "http_requests_total",
                &join(labels, format!("route=\"{route}\",status=\"{status}\"")),
                *n,
            );
        }
    }
    let mut last = "";
    for (name, help, labels, value) in process {
        let (name, value) = (*name, *value);
        let kind = if name.ends_with("_total") {
            "counter"
        } else {
            "gauge"
        };
        // Figures of one name (different labels) come together, one header.
        if name != last {
            f.header(name, kind, help);
            last = name;
        }
        f.line(name, labels, value);
    }
    out
}

/// A process-wide figure (not per shard): name, help text, labels
/// (`key="value"`, or empty), value. Figures of one name are listed
/// together.
pub type Figure = (&'static str, &'static str, String, u64);

/// The webhook sender's counters.
pub fn webhook_figures(w: &DeliveryStats) -> Vec<Figure> {
    vec![
        (
            "webhook_deliveries_total",
            "Webhook requests answered with a 2xx.",
            String::new(),
            w.deliveries.load(Ordering::Relaxed),
        ),
        (
            "webhook_retries_total",
            "Webhook requests that failed and were retried.",
            String::new(),
            w.retries.load(Ordering::Relaxed),
        ),
        (
            "webhook_failures_total",
            "Webhook batches given up after retrying.",
            String::new(),
            w.failures.load(Ordering::Relaxed),
        ),
        (
            "webhook_dropped_total",
            "Webhook events dropped because the sender's queue was full.",
            String::new(),
            w.dropped.load(Ordering::Relaxed),
        ),
        (
            "webhook_pending_events",
            "Webhook events not yet delivered.",
            String::new(),
            w.pending.load(Ordering::Relaxed),
        ),
        (
            "webhook_events_dropped_total",
            "Webhook events dropped, oldest first, because their webhook's queue was at max_queued_events.",
            String::new(),
            w.dropped_oldest.load(Ordering::Relaxed),
        ),
        (
            "webhook_queue_depth",
            "Webhook events waiting in the webhooks' queues (all webhooks together).",
            String::new(),
            w.queued.load(Ordering::Relaxed),
        ),
    ]
}

/// The cluster link's counters.
pub fn cluster_figures(c: &ClusterHandle) -> Vec<Figure> {
    let s = &c.stats;
    let mut figures = vec![
        (
            "cluster_messages_sent_total",
            "Node messages published to the other nodes.",
            String::new(),
            s.sent.load(Ordering::Relaxed),
        ),
        (
            "cluster_publishes_total",
            "Engine publishes (node messages are batched into them).",
            String::new(),
            s.publishes.load(Ordering::Relaxed),
        ),
        (
            "cluster_messages_received_total",
            "Node messages from other nodes handed to the shards.",
            String::new(),
            s.received.load(Ordering::Relaxed),
        ),
        (
            "cluster_messages_dropped_total",
            "Node messages dropped because the link's queue was full.",
            String::new(),
            s.dropped.load(Ordering::Relaxed),
        ),
        (
            "cluster_nodes",
            "Other nodes heard from within the node timeout.",
            String::new(),
            c.live_nodes.load(Ordering::Relaxed) as u64,
        ),
        (
            "cluster_envelopes_lost_total",
            "Envelopes of other nodes that never arrived (gaps in their sequence numbers).",
            String::new(),
            s.lost.load(Ordering::Relaxed),
        ),
        (
            "cluster_event_subjects",
            "Event subjects (channel buckets) this node subscribes to on the engine.",
            String::new(),
            s.event_subjects.load(Ordering::Relaxed),
        ),
    ];
    for reason in Refusal::ALL {
        figures.push((
            "cluster_messages_refused_total",
            "Engine messages not acted on, by reason: signature, malformed, replayed, spoofed, stale, unknown_app, invalid, misrouted.",
            format!("reason=\"{}\"", reason.label()),
            s.refused[reason.index()].load(Ordering::Relaxed),
        ));
    }
    figures
}

/// Memory figures of this process from `/proc/self/status`, as JSON for `/usage`.
pub fn usage_json() -> String {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib = |field: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    format!(
        "{{\"memory\":{{\"rss_bytes\":{},\"rss_peak_bytes\":{},\"virtual_bytes\":{},\"rss_anon_bytes\":{}}}}}",
        kib("VmRSS:") * 1024,
        kib("VmHWM:") * 1024,
        kib("VmSize:") * 1024,
        kib("RssAnon:") * 1024
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_per_shard_and_total() {
        let a = Counters::default();
        a.opened();
        a.closed(1000);
        a.http_request("events", 200);
        let b = Counters::default();
        b.opened();
        b.message_in();
        b.read_bytes(10);
        let mut busy = b.snapshot();
        busy.connections_current = 1;
        busy.slow_consumer_closes = 2;
        let text = render(&[a.snapshot(), busy], &[]);
        assert!(text.contains("shardcast_connections_opened_total{shard=\"0\"} 1\n"));
        assert!(text.contains("shardcast_connections_opened_total 2\n"));
        assert!(text.contains("shardcast_connections 1\n"));
        assert!(text.contains("shardcast_connections_closed_total{shard=\"0\",code=\"1000\"} 1\n"));
        assert!(text.contains("shardcast_http_requests_total{route=\"events\",status=\"200\"} 1\n"));
        assert!(text.contains("shardcast_bytes_in_total{shard=\"1\"} 10\n"));
        assert!(text.contains("shardcast_slow_consumer_closes_total 2\n"));
    }

    #[test]
    fn usage_reports_rss() {
        let json = usage_json();
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert!(v["memory"]["rss_bytes"].as_u64().unwrap() > 0, "{json}");
    }
}
