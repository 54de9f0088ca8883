//! The Pusher HTTP API routes and health checks.
//!
//! Order of checks for `/apps/{id}/...`: path (404), method (405), app (404),
//! signature (401), app enabled (403), body (400/413), then the action.

use super::request::{parse_query, percent_decode, Head};
use super::response::Response;
use super::trigger::{parse_batch, parse_event, TriggerEvent};
use crate::apps::AppIdx;
use crate::auth;
use crate::errors::ApiError;
use crate::pusher::broadcast::{self, Publication};
use crate::pusher::messages;
use crate::runtime::Shard;

/// Answers one request; never fails (refusals become error responses).
pub async fn handle(shard: &Shard, head: &Head, body: &mut [u8]) -> Response {
    match route(shard, head, body).await {
        Ok(response) => response,
        Err(e) => Response::error(&e),
    }
}

enum Action {
    Events,
    BatchEvents,
}

async fn route(shard: &Shard, head: &Head, body: &mut [u8]) -> Result<Response, ApiError> {
    let get = head.method == "GET" || head.method == "HEAD";
    match head.path.as_str() {
        "/" | "/ready" if !get => {
            return Err(ApiError::MethodNotAllowed(format!(
                "{} accepts GET only",
                head.path
            )))
        }
        "/ready" if shard.draining.is_raised() => {
            return Err(ApiError::Unavailable("shutting down".into()))
        }
        "/" | "/ready" => return Ok(Response::text(200, "OK")),
        _ => {}
    }
    let not_found = || ApiError::NotFound(format!("no such path: {}", head.path));
    let rest = head.path.strip_prefix("/apps/").ok_or_else(not_found)?;
    let (app_id, tail) = rest.split_once('/').ok_or_else(not_found)?;
    let action = match tail {
        "events" => Action::Events,
        "batch_events" => Action::BatchEvents,
        _ => return Err(not_found()),
    };
    if head.method != "POST" {
        return Err(ApiError::MethodNotAllowed(format!(
            "{} accepts POST only, not {}",
            head.path, head.method
        )));
    }
    let app_id = percent_decode(app_id);
    let idx = shard
        .apps
        .by_id(&app_id)
        .ok_or_else(|| ApiError::NotFound(format!("unknown app id {app_id:?}")))?;
    let app = shard.apps.get(idx);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let query = parse_query(&head.query);
    auth::verify_api_request(app, &head.method, &head.path, &query, body, now)?;
    if !app.enabled {
        return Err(ApiError::Forbidden("app is disabled".into()));
    }
    let events = match action {
        Action::Events => vec![parse_event(body, &app.limits)?],
        Action::BatchEvents => parse_batch(body, &app.limits)?,
    };
    for event in events {
        broadcast::publish(shard, publication_of(idx, event)).await;
    }
    Ok(Response::json(200, "{}"))
}

/// Encodes each (event, channel) frame once.
fn publication_of(app: AppIdx, event: TriggerEvent) -> Publication {
    let frames = event
        .channels
        .into_iter()
        .map(|channel| {
            let frame = messages::channel_event(&event.name, &channel, &event.data);
            (channel.into_boxed_str(), frame)
        })
        .collect();
    Publication {
        app,
        except: event.socket_id,
        frames,
    }
}
