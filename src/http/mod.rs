//! HTTP on the main port: request heads parsed with httparse, the signed
//! Pusher HTTP API, health checks, and the hand-off of WebSocket upgrades;
//! and the metrics port, served by the same code.

mod admin;
mod api;
mod client_ip;
mod console;
pub mod framing;
mod metrics_port;
mod queries;
mod request;
mod response;
mod server;
mod trigger;

pub use client_ip::{canonical, resolve_client_ip};
pub use request::{parse_head, parse_head_with, parse_query, percent_decode, Head};
pub use server::{serve, Site};
pub use trigger::{parse_batch, parse_event, TriggerEvent};
