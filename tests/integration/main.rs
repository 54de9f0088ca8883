//! Integration tests: start the real `shardcast` binary and speak raw
//! WebSocket and raw HTTP/1.1 bytes to it.

mod receiver;
mod support;

mod broadcast;
mod connection;
mod framing;
mod http_api;
mod lifecycle;
mod limits;
mod metrics;
mod protocol;
mod webhooks;
