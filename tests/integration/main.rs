//! Integration tests: start the real `shardcast` binary and speak raw
//! WebSocket and raw HTTP/1.1 bytes to it.

mod databases;
mod receiver;
mod store_support;
mod support;

mod app_store;
mod app_store_admin;
mod app_store_mysql;
mod app_store_pg;
mod broadcast;
mod cache;
mod client_events;
mod cluster;
mod cluster_counts;
mod cluster_loss;
mod cluster_routing;
mod cluster_trust;
mod connection;
mod console;
mod count_webhooks;
mod framing;
mod http_api;
mod http_framing;
mod layering;
mod lifecycle;
mod limits;
mod log_limits;
mod metrics;
mod per_ip;
mod presence;
mod private;
mod protocol;
mod queries;
mod signin;
mod sparse_routing;
mod startup;
mod tls;
mod webhooks;

mod abuse;
mod fuzz_regressions;
mod hostile;
mod memory;
