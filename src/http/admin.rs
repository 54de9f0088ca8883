//! The admin API on the metrics port: the apps, read and written over
//! HTTP with a bearer token (`server.admin.token`; off without one).
//!
//! - `GET /admin/apps`: every app; `GET /admin/apps/{id}`: one.
//! - `POST /admin/apps`: create an app (a JSON object with the keys of an
//!   `[[apps]]` table); 201.
//! - `PATCH /admin/apps/{id}`: change the keys given (the others stay).
//! - `DELETE /admin/apps/{id}`.
//!
//! Apps are shown with the keys of `[[apps]]`, without `secret` (write
//! only). A write is checked like the config file (errors name the field,
//! 400) and goes to the store's database (`app_store::admin`); the file
//! store refuses writes (409). The answer comes once the change is on this
//! shard (at most [`VISIBLE_WITHIN`] after the database accepted it), so a
//! client reads its own writes.

use super::request::{percent_decode, Head};
use super::response::Response;
use crate::app_store::{AdminError, AdminOp};
use crate::apps::App;
use crate::errors::ApiError;
use crate::json::json_str;
use crate::pusher::shard::Shard;
use simd_json::prelude::*;
use std::time::{Duration, Instant};
use subtle::ConstantTimeEq;

/// How long the store may take to answer a write.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a written change may take to show on this shard.
const VISIBLE_WITHIN: Duration = Duration::from_secs(2);

/// Answers one admin request (the path starts with `/admin/`).
pub async fn handle(shard: &Shard, head: &Head, body: &mut [u8]) -> Response {
    match route(shard, head, body).await {
        Ok(r) => r,
        Err(e) => Response::error(&e),
    }
}

fn authorized(shard: &Shard, head: &Head) -> Result<(), ApiError> {
    let Some(token) = &shard.config.admin_token else {
        return Err(ApiError::NotFound(
            "the admin API is off: set server.admin.token".into(),
        ));
    };
    let given = head.bearer.as_ref().map_or("", |b| b.0.as_str());
    if bool::from(given.as_bytes().ct_eq(token.0.as_bytes())) {
        Ok(())
    } else {
        Err(ApiError::Unauthorized(
            "missing or wrong `Authorization: Bearer <server.admin.token>`".into(),
        ))
    }
}

async fn route(shard: &Shard, head: &Head, body: &mut [u8]) -> Result<Response, ApiError> {
    authorized(shard, head)?;
    let rest = head.path.strip_prefix("/admin/apps").unwrap_or("-");
    let method = head.method.as_str();
    match rest {
        "" | "/" => match method {
            "GET" | "HEAD" => Ok(list(shard)),
            "POST" => create(shard, body).await,
            _ => Err(not_allowed(head, "GET or POST")),
        },
        _ if rest.starts_with('/') => {
            let id = percent_decode(&rest[1..]).into_owned();
            match method {
                "GET" | "HEAD" => {
                    let app = current(shard, &id)?;
                    Ok(Response::json(200, app_json(&app, false)))
                }
                "PATCH" => update(shard, &id, body).await,
                "DELETE" => delete(shard, &id).await,
                _ => Err(not_allowed(head, "GET, PATCH or DELETE")),
            }
        }
        _ => Err(ApiError::NotFound(format!(
            "no such admin path: {} (try /admin/apps)",
            head.path
        ))),
    }
}

fn not_allowed(head: &Head, allowed: &str) -> ApiError {
    ApiError::MethodNotAllowed(format!(
        "{} accepts {allowed}, not {}",
        head.path, head.method
    ))
}

fn current(shard: &Shard, id: &str) -> Result<std::rc::Rc<App>, ApiError> {
    let idx = shard
        .apps
        .by_id(id)
        .ok_or_else(|| ApiError::NotFound(format!("unknown app id {id:?}")))?;
    Ok(shard.apps.get(idx))
}

fn list(shard: &Shard) -> Response {
    let registry = shard.apps.registry().clone();
    let apps: Vec<String> = registry.live().map(|(_, a)| app_json(a, false)).collect();
    Response::json(200, format!("{{\"apps\":[{}]}}", apps.join(",")))
}

/// An app as a JSON object with the keys of `[[apps]]` (`secret` only
/// when `with_secret`, for merging a PATCH).
fn app_json(app: &App, with_secret: bool) -> String {
    let opt = |v: Option<u32>| v.map_or("null".to_string(), |v| v.to_string());
    let l = &app.limits;
    let hooks: Vec<String> = app
        .webhooks
        .iter()
        .map(|w| {
            let text = |v: &Option<String>| v.as_deref().map_or("null".to_string(), json_str);
            format!(
                "{{{},\"filter\":{{\"prefix\":{},\"suffix\":{}}}}}",
                w.common_json(),
                text(&w.prefix),
                text(&w.suffix)
            )
        })
        .collect();
    let secret = if with_secret {
        format!("\"secret\":{},", json_str(&app.secret))
    } else {
        String::new()
    };
    format!(
        "{{\"id\":{},\"key\":{},{secret}\"enabled\":{},\"enable_client_messages\":{},\
         \"enable_user_authentication\":{},\"user_authentication_timeout\":{},\
         \"enable_subscription_count\":{},\"cache_ttl\":{},\"max_api_requests_per_second\":{},\
         \"max_connections\":{},\"max_event_payload_kb\":{},\"max_channels_per_event\":{},\
         \"max_batch_size\":{},\"max_event_name_length\":{},\"max_channel_name_length\":{},\
         \"max_presence_members\":{},\"max_client_events_per_second\":{},\"webhooks\":[{}]}}",
        json_str(&app.id),
        json_str(&app.key),
        app.enabled,
        app.enable_client_messages,
        app.enable_user_authentication,
        app.user_authentication_timeout,
        app.enable_subscription_count,
        app.cache_ttl.as_secs(),
        opt(app.max_api_requests_per_second),
        opt(l.max_connections),
        l.max_event_payload_bytes / 1024,
        l.max_channels_per_event,
        l.max_batch_size,
        l.max_event_name_length,
        l.max_channel_name_length,
        l.max_presence_members,
        l.max_client_events_per_second,
        hooks.join(",")
    )
}

/// The body as a JSON object (nesting bounded by `json::parse`).
fn object(body: &mut [u8]) -> Result<simd_json::BorrowedValue<'_>, ApiError> {
    let value = crate::json::parse(body)
        .map_err(|e| ApiError::BadRequest(format!("the body is not JSON: {e}")))?;
    if !matches!(value, simd_json::BorrowedValue::Object(_)) {
        return Err(ApiError::BadRequest(
            "the body must be a JSON object".into(),
        ));
    }
    Ok(value)
}

/// An app from a JSON object with the keys of `[[apps]]`, checked like the
/// config file (errors name the field as `body.{field}`).
fn app_of(json: &[u8]) -> Result<App, ApiError> {
    let mut bytes = json.to_vec();
    let section: crate::config::AppSection = simd_json::serde::from_slice(&mut bytes)
        .map_err(|e| ApiError::BadRequest(format!("body: {e}")))?;
    crate::config::app_from_section("body", &section)
        .map_err(|e| ApiError::BadRequest(e.to_string()))
}

async fn create(shard: &Shard, body: &mut [u8]) -> Result<Response, ApiError> {
    let json = body.to_vec();
    object(body)?;
    let app = app_of(&json)?;
    if shard.apps.by_id(&app.id).is_some() {
        return Err(ApiError::Conflict(format!("app id {:?} exists", app.id)));
    }
    if let Some(other) = shard.apps.by_key(&app.key) {
        return Err(ApiError::Conflict(format!(
            "key {:?} is used by app {:?}",
            app.key,
            shard.apps.get(other).id
        )));
    }
    write(shard, AdminOp::Create(app.clone())).await?;
    visible(shard, &app.id, Some(&app)).await;
    Ok(Response::json(201, app_json(&app, false)))
}

async fn update(shard: &Shard, id: &str, body: &mut [u8]) -> Result<Response, ApiError> {
    let old = current(shard, id)?;
    // The current app with the body's keys over it.
    let mut merged = app_json(&old, true).into_bytes();
    let mut merged_value = crate::json::parse(&mut merged)
        .map_err(|e| ApiError::BadRequest(format!("internal: {e}")))?
        .into_static();
    let patch = object(body)?;
    if let (simd_json::BorrowedValue::Object(target), simd_json::BorrowedValue::Object(given)) =
        (&mut merged_value, patch)
    {
        for (k, v) in given.into_iter() {
            if k == "id" && v.as_str() != Some(id) {
                return Err(ApiError::BadRequest(
                    "body.id: an app's id cannot change (create another app)".into(),
                ));
            }
            target.insert(k.into_owned().into(), v.into_static());
        }
    }
    let text = simd_json::to_string(&merged_value)
        .map_err(|e| ApiError::BadRequest(format!("internal: {e}")))?;
    let app = app_of(text.as_bytes())?;
    if let Some(other) = shard.apps.by_key(&app.key) {
        if shard.apps.get(other).id != app.id {
            return Err(ApiError::Conflict(format!(
                "key {:?} is used by app {:?}",
                app.key,
                shard.apps.get(other).id
            )));
        }
    }
    write(shard, AdminOp::Replace(app.clone())).await?;
    visible(shard, id, Some(&app)).await;
    Ok(Response::json(200, app_json(&app, false)))
}

async fn delete(shard: &Shard, id: &str) -> Result<Response, ApiError> {
    current(shard, id)?;
    write(shard, AdminOp::Delete(id.to_string())).await?;
    visible(shard, id, None).await;
    Ok(Response::json(200, "{}"))
}

/// Hands a write to the store and waits for its answer.
async fn write(shard: &Shard, op: AdminOp) -> Result<(), ApiError> {
    let store = shard
        .app_admin
        .as_ref()
        .ok_or_else(|| ApiError::Unavailable("no app store".into()))?;
    let answer = store.send(op).map_err(refusal)?;
    let timed_out = async {
        crate::runtime::sleep(WRITE_TIMEOUT).await;
        Err(AdminError::Unavailable(
            "the app store did not answer in time".into(),
        ))
    };
    let done = futures_lite::future::or(
        async {
            answer.recv_async().await.unwrap_or_else(|_| {
                Err(AdminError::Unavailable("the app store has stopped".into()))
            })
        },
        timed_out,
    )
    .await;
    done.map_err(refusal)
}

fn refusal(e: AdminError) -> ApiError {
    match e {
        AdminError::ReadOnly(why) | AdminError::Conflict(why) => ApiError::Conflict(why),
        AdminError::Unavailable(why) => ApiError::Unavailable(why),
    }
}

/// Waits until this shard has the written app (`None`: until it is gone).
async fn visible(shard: &Shard, id: &str, app: Option<&App>) {
    let until = Instant::now() + VISIBLE_WITHIN;
    while Instant::now() < until {
        let there = shard.apps.by_id(id).map(|i| shard.apps.get(i));
        let done = match (app, there) {
            (None, None) => true,
            (Some(want), Some(have)) => *have == *want,
            _ => false,
        };
        if done {
            return;
        }
        crate::runtime::sleep(Duration::from_millis(5)).await;
    }
}
