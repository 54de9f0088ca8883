//! The Pusher HTTP API routes and health checks.
//!
//! Order of checks for `/apps/{id}/...`: path (404), method (405), app (404),
//! signature (401), app enabled (403), the app's request rate (429), body
//! or parameters (400/413), then the action.

use super::queries;
use super::request::{parse_query, percent_decode, Head};
use super::response::Response;
use super::trigger::{parse_batch, parse_event, TriggerEvent};
use crate::apps::AppIdx;
use crate::auth;
use crate::channel_name::ChannelClass;
use crate::errors::ApiError;
use crate::pusher::broadcast::{self, Publication};
use crate::pusher::delivery::Publisher;
use crate::pusher::messages;
use crate::pusher::owned::owner_of;
use crate::pusher::shard::Shard;
use crate::pusher::shard_msg::ShardMsg;
use crate::pusher::tap::{excerpt, TapEvent, What};

/// Answers one request; never fails (refusals become error responses).
/// `publisher` is the HTTP connection, whose events keep their order.
pub async fn handle(
    shard: &Shard,
    head: &Head,
    body: &mut [u8],
    publisher: &Publisher,
) -> Response {
    match route(shard, head, body, publisher).await {
        Ok(response) => response,
        Err(e) => Response::error(&e),
    }
}

/// The route's name for metrics (`route` label).
pub fn route_label(path: &str) -> &'static str {
    if path == "/" || path == "/ready" {
        return "health";
    }
    let route = path
        .strip_prefix("/apps/")
        .and_then(|rest| rest.split_once('/'))
        .and_then(|(_, tail)| Route::parse(tail));
    match route {
        Some(Route::Events) => "events",
        Some(Route::BatchEvents) => "batch_events",
        Some(Route::Channels) => "channels",
        Some(Route::Channel(_)) => "channel",
        Some(Route::ChannelUsers(_)) => "channel_users",
        Some(Route::TerminateUser(_)) => "terminate_user",
        Some(Route::Connections) => "connections",
        None => "not_found",
    }
}

/// The API endpoints under `/apps/{id}/`.
enum Route {
    Events,
    BatchEvents,
    Channels,
    Channel(String),
    ChannelUsers(String),
    TerminateUser(String),
    Connections,
}

impl Route {
    fn parse(tail: &str) -> Option<Route> {
        // At most four parts are looked at: a longer path matches nothing.
        let mut split = tail.split('/');
        let mut parts: [&str; 4] = [""; 4];
        let mut n = 0;
        for part in split.by_ref().take(4) {
            parts[n] = part;
            n += 1;
        }
        if split.next().is_some() {
            return None;
        }
        Some(match &parts[..n] {
            ["events"] => Route::Events,
            ["batch_events"] => Route::BatchEvents,
            ["channels"] => Route::Channels,
            ["connections"] => Route::Connections,
            ["channels", name] if !name.is_empty() => {
                Route::Channel(percent_decode(name).into_owned())
            }
            ["channels", name, "users"] if !name.is_empty() => {
                Route::ChannelUsers(percent_decode(name).into_owned())
            }
            ["users", user, "terminate_connections"] if !user.is_empty() => {
                Route::TerminateUser(percent_decode(user).into_owned())
            }
            _ => return None,
        })
    }

    fn method(&self) -> &'static str {
        match self {
            Route::Events | Route::BatchEvents | Route::TerminateUser(_) => "POST",
            Route::Channels | Route::Channel(_) | Route::ChannelUsers(_) | Route::Connections => {
                "GET"
            }
        }
    }
}

async fn route(
    shard: &Shard,
    head: &Head,
    body: &mut [u8],
    publisher: &Publisher,
) -> Result<Response, ApiError> {
    let get = head.method == "GET" || head.method == "HEAD";
    match head.path.as_str() {
        "/" | "/ready" if !get => {
            return Err(ApiError::MethodNotAllowed(format!(
                "{} accepts GET only",
                head.path
            )))
        }
        "/ready" if shard.is_draining() => {
            return Err(ApiError::Unavailable("shutting down".into()))
        }
        "/ready" if cut_off(shard).is_some() => {
            let silent = cut_off(shard).unwrap_or_default();
            return Err(ApiError::Unavailable(format!(
                "cut off from the cluster: none of this node's messages came back through the \
                 engine for {} s (cluster.engine_timeout_secs); its own clients are still served",
                silent.as_secs()
            )));
        }
        // Known apps keep working while the app store's database is away:
        // still ready, and the body says so.
        "/ready" => {
            return Ok(match shard.app_store.as_ref().and_then(|h| h.outage()) {
                Some(outage) => Response::text(200, &format!("OK; {outage}")),
                None => Response::text(200, "OK"),
            })
        }
        "/" => return Ok(Response::text(200, "OK")),
        _ => {}
    }
    let not_found = || ApiError::NotFound(format!("no such path: {}", head.path));
    let rest = head.path.strip_prefix("/apps/").ok_or_else(not_found)?;
    let (app_id, tail) = rest.split_once('/').ok_or_else(not_found)?;
    let route = Route::parse(tail).ok_or_else(not_found)?;
    let method_ok =
        head.method == route.method() || (route.method() == "GET" && head.method == "HEAD");
    if !method_ok {
        return Err(ApiError::MethodNotAllowed(format!(
            "{} accepts {} only, not {}",
            head.path,
            route.method(),
            head.method
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
    auth::verify_api_request(&app, &head.method, &head.path, &query[..], body, now)?;
    if !app.enabled {
        return Err(ApiError::Forbidden("app is disabled".into()));
    }
    if !shard.admit_api_request(idx).await {
        let max = app.max_api_requests_per_second.unwrap_or(0);
        return Err(ApiError::TooManyRequests(format!(
            "too many requests: app {app_id} may make {max} API requests per second; retry in a second"
        )));
    }
    let param = |name: &str| {
        query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_ref())
    };
    match route {
        Route::Events => {
            let event = parse_event(body, &app.limits)?;
            let info = queries::Attributes::parse(event.info.as_deref(), false)?;
            if info.is_empty() {
                trigger(shard, idx, event, publisher).await;
                return Ok(Response::json(200, "{}"));
            }
            let channels: Vec<String> = event.channels.iter().map(|c| c.to_string()).collect();
            trigger(shard, idx, event, publisher).await;
            let body = queries::events_info(shard, idx, &channels, &info).await;
            Ok(Response::json(200, body))
        }
        Route::BatchEvents => {
            let events = parse_batch(body, &app.limits)?;
            let infos = events
                .iter()
                .map(|e| queries::Attributes::parse(e.info.as_deref(), false))
                .collect::<Result<Vec<_>, _>>()?;
            let channels: Vec<String> = events.iter().map(|e| e.channels[0].to_string()).collect();
            for event in events {
                trigger(shard, idx, event, publisher).await;
            }
            if infos.iter().all(|i| i.is_empty()) {
                return Ok(Response::json(200, "{}"));
            }
            Ok(Response::json(
                200,
                queries::batch_info(shard, idx, &channels, &infos).await,
            ))
        }
        Route::Channels => {
            queries::channels(shard, idx, param("filter_by_prefix"), param("info")).await
        }
        Route::Channel(name) => queries::channel(shard, idx, &name, param("info")).await,
        Route::ChannelUsers(name) => queries::users(shard, idx, &name).await,
        Route::Connections => queries::connections(shard, idx).await,
        Route::TerminateUser(user_id) => {
            for peer in 0..shard.count as usize {
                shard.post(
                    peer,
                    ShardMsg::TerminateUser {
                        app: idx,
                        user_id: user_id.as_str().into(),
                    },
                );
            }
            if let Some(cluster) = &shard.cluster {
                let msg = crate::cluster::NodeMsg::TerminateUser {
                    app: shard.apps.get(idx).id.as_str().into(),
                    user_id: user_id.as_str().into(),
                };
                cluster.send(&msg).await;
            }
            Ok(Response::json(200, "{}"))
        }
    }
}

/// Publishes one event: each (event, channel) frame is encoded once; cache
/// channels also hand their frame to the channel's owner to keep.
pub(super) async fn trigger(
    shard: &Shard,
    app: AppIdx,
    event: TriggerEvent<'_>,
    publisher: &Publisher,
) {
    shard.tap.note(|| {
        let channels = event.channels.iter().map(|c| c.as_ref().into()).collect();
        let what = What::ApiMessage {
            event: event.name.as_ref().into(),
            channels,
            bytes: event.data.len(),
            data: excerpt(&event.data),
        };
        TapEvent::new(app, what).socket(event.socket_id)
    });
    let mut frames = Vec::with_capacity(event.channels.len());
    for channel in event.channels {
        let frame = messages::channel_event(&event.name, &channel, &event.data);
        if ChannelClass::of(&channel).cache {
            let owner = owner_of(app, &channel, shard.count);
            shard.post(
                owner,
                ShardMsg::CacheStore {
                    app,
                    channel: channel.as_ref().into(),
                    frame: frame.clone(),
                    data: event.data.as_ref().into(),
                },
            );
        }
        frames.push((channel.as_ref().into(), frame));
    }
    broadcast::publish(
        shard,
        Publication {
            app,
            except: event.socket_id,
            frames,
            source: publisher.source,
            ticket: None,
        },
        publisher,
    )
    .await;
}

/// How long this node has been cut off from its cluster's engine, when
/// that is longer than `cluster.engine_timeout_secs`.
fn cut_off(shard: &Shard) -> Option<std::time::Duration> {
    let silence = shard.cluster.as_ref()?.engine_silence();
    (silence > shard.config.cluster.engine_timeout).then_some(silence)
}
