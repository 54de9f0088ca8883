//! The metrics port: `GET /metrics` (Prometheus text, every shard's
//! counters gathered over the mailboxes) and `GET /usage` (memory figures),
//! and, when enabled, the debug console under `/console` ([`super::console`]).
//! It has its own listener, served by shard 0, so scraping never shares a
//! port with clients and can be firewalled apart. The admin API
//! (`/admin/apps`, with a bearer token) is served here too (`admin.rs`).

use super::console;
use super::request::Head;
use super::response::Response;
use crate::errors::ApiError;
use crate::metrics;
use crate::pusher::delivery::Publisher;
use crate::pusher::shard::Shard;

/// Answers one request on the metrics port: (route label, response).
pub async fn handle(
    shard: &Shard,
    head: &Head,
    body: &mut [u8],
    publisher: &Publisher,
) -> (&'static str, Response) {
    if head.path.starts_with("/admin/") {
        return (
            "admin",
            Box::pin(super::admin::handle(shard, head, body)).await,
        );
    }
    if console::is_console_path(&head.path) {
        return (
            "console",
            console::handle(shard, head, body, publisher).await,
        );
    }
    let route = match head.path.as_str() {
        "/metrics" => "metrics",
        "/usage" => "usage",
        "/" => "health",
        _ => {
            let e = ApiError::NotFound(format!(
                "no such path on the metrics port: {} (try /metrics or /usage)",
                head.path
            ));
            return ("not_found", Response::error(&e));
        }
    };
    if head.method != "GET" && head.method != "HEAD" {
        let e = ApiError::MethodNotAllowed(format!("{} accepts GET only", head.path));
        return (route, Response::error(&e));
    }
    let response = match route {
        "metrics" => {
            let shards = shard.gather_metrics().await;
            let mut process = Vec::new();
            if let Some(w) = &shard.webhook_stats {
                process.extend(metrics::webhook_figures(w));
            }
            if let Some(c) = &shard.cluster {
                process.extend(metrics::cluster_figures(c));
            }
            let mut r = Response::text(200, &metrics::render(&shards, &process));
            r.content_type = "text/plain; version=0.0.4; charset=utf-8";
            r
        }
        "usage" => Response::json(200, metrics::usage_json()),
        _ => Response::text(200, "OK"),
    };
    (route, response)
}
