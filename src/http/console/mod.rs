//! The live debug console and dashboard, on the metrics port under
//! `/console` when `[server.console] enabled` (README, "Debug console").
//!
//! - `GET /console` and its assets: the page (built into the binary:
//!   [`assets`]); it holds no data and asks for the token.
//! - `GET /console/apps`: the app ids, for the page's menus.
//! - `GET /console/stream`: the live stream, one JSON object per line
//!   (chunked), filtered by the query ([`filter`], [`stream`]).
//! - `POST /console/apps/{app_id}/events`: the Event Creator; the body is a
//!   trigger body (`name`, `channel`/`channels`, `data`, `socket_id`) and goes
//!   through the same checks and publish path as a signed trigger.
//!
//! Every route except the page and its assets needs `Authorization: Bearer
//! <token>` (401 without it or with another token; compared in constant
//! time). The token travels only in that header: never in a URL, and
//! [`Bearer`](super::request::Bearer) keeps it out of `Debug` and logs.
//!
//! Where the events come from: each shard's taps ([`crate::pusher::tap`])
//! while watched, and the webhook sender's log; the [`hub`] on the serving
//! shard collects them over the mesh and keeps a bounded ring the streams
//! read from.

mod assets;
mod filter;
mod hub;
mod render;
mod stream;

pub use stream::serve_stream;

use super::api;
use super::request::{percent_decode, Head};
use super::response::Response;
use super::trigger::parse_event;
use crate::errors::ApiError;
use crate::pusher::delivery::Publisher;
use crate::pusher::shard::Shard;

/// The path of the event stream (served by [`serve_stream`]).
pub const STREAM_PATH: &str = "/console/stream";

/// Whether a metrics-port path belongs to the console.
pub fn is_console_path(path: &str) -> bool {
    path == "/console" || path.starts_with("/console/")
}

/// Checks the console is on and the request carries its token.
fn authorize(shard: &Shard, head: &Head) -> Result<(), ApiError> {
    let console = enabled(shard)?;
    let Some(given) = &head.bearer else {
        return Err(ApiError::Unauthorized(
            "the console needs its token: send `Authorization: Bearer <token>`".into(),
        ));
    };
    if !crate::auth::constant_time_eq(given.0.as_bytes(), console.token.as_bytes()) {
        return Err(ApiError::Unauthorized("wrong console token".into()));
    }
    Ok(())
}

fn enabled(shard: &Shard) -> Result<&crate::config::ConsoleSettings, ApiError> {
    shard.config.console.as_ref().ok_or_else(|| {
        ApiError::NotFound("the console is off: set [server.console] enabled and token".into())
    })
}

/// Answers a console request other than the stream.
pub async fn handle(
    shard: &Shard,
    head: &Head,
    body: &mut [u8],
    publisher: &Publisher,
) -> Response {
    match route(shard, head, body, publisher).await {
        Ok(r) => r,
        Err(e) => {
            let mut r = Response::error(&e);
            if e.status() == 401 {
                r.headers = "WWW-Authenticate: Bearer realm=\"shardcast console\"\r\n";
            }
            r
        }
    }
}

async fn route(
    shard: &Shard,
    head: &Head,
    body: &mut [u8],
    publisher: &Publisher,
) -> Result<Response, ApiError> {
    enabled(shard)?;
    let get = head.method == "GET" || head.method == "HEAD";
    if let Some(asset) = assets::find(&head.path) {
        if !get {
            return Err(only("GET", head));
        }
        return Ok(asset);
    }
    if head.path == "/console/apps" {
        authorize(shard, head)?;
        if !get {
            return Err(only("GET", head));
        }
        return Ok(Response::json(200, render::apps(shard)));
    }
    let creator = head
        .path
        .strip_prefix("/console/apps/")
        .and_then(|rest| rest.strip_suffix("/events"))
        .filter(|id| !id.is_empty() && !id.contains('/'));
    if let Some(app_id) = creator {
        authorize(shard, head)?;
        if head.method != "POST" {
            return Err(only("POST", head));
        }
        return create_event(shard, &percent_decode(app_id), body, publisher).await;
    }
    Err(ApiError::NotFound(format!(
        "no such console path: {} (the page is /console)",
        head.path
    )))
}

fn only(method: &str, head: &Head) -> ApiError {
    ApiError::MethodNotAllowed(format!("{} accepts {method} only", head.path))
}

/// The Event Creator: the checks of a signed trigger after its signature
/// (app enabled, the app's request rate, the body against the app's
/// limits), then the same publish.
async fn create_event(
    shard: &Shard,
    app_id: &str,
    body: &mut [u8],
    publisher: &Publisher,
) -> Result<Response, ApiError> {
    let idx = shard
        .apps
        .by_id(app_id)
        .ok_or_else(|| ApiError::NotFound(format!("unknown app id {app_id:?}")))?;
    let app = shard.apps.get(idx);
    if !app.enabled {
        return Err(ApiError::Forbidden("app is disabled".into()));
    }
    if !shard.admit_api_request(idx).await {
        return Err(ApiError::TooManyRequests(format!(
            "too many requests: app {app_id} is at its API request rate; retry in a second"
        )));
    }
    let event = parse_event(body, &app.limits)?;
    api::trigger(shard, idx, event, publisher).await;
    Ok(Response::json(200, "{}"))
}
