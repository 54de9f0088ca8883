//! Channel queries (`GET /channels`, `/channels/{name}`, `/channels/{name}/users`),
//! the connection count (`GET /connections`) and the `info` attributes of
//! triggers, answered from every shard's part (and every node's, in a cluster).

use super::response::Response;
use crate::apps::AppIdx;
use crate::channel_name::{validate_name, ChannelClass, ChannelKind};
use crate::errors::ApiError;
use crate::json::push_json_str;
use crate::pusher::owned::owner_of;
use crate::pusher::query::{ask_cluster, connections as open_connections, merge, QueryAsk};
use crate::pusher::shard::Shard;

/// Which attributes an `info` parameter asks for.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Attributes {
    pub user_count: bool,
    pub subscription_count: bool,
    pub cache: bool,
}

impl Attributes {
    /// Parses `info=user_count,subscription_count[,cache]`.
    pub fn parse(info: Option<&str>, allow_cache: bool) -> Result<Attributes, ApiError> {
        let mut a = Attributes::default();
        for attr in info
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            match attr {
                "user_count" => a.user_count = true,
                "subscription_count" => a.subscription_count = true,
                "cache" if allow_cache => a.cache = true,
                other => {
                    return Err(ApiError::BadRequest(format!(
                        "unknown info attribute {other:?}: use user_count, subscription_count{}",
                        if allow_cache { " or cache" } else { "" }
                    )))
                }
            }
        }
        Ok(a)
    }

    pub fn is_empty(&self) -> bool {
        !self.user_count && !self.subscription_count && !self.cache
    }
}

fn is_presence(name: &str) -> bool {
    ChannelClass::of(name).kind == ChannelKind::Presence
}

fn check_channel(shard: &Shard, app: AppIdx, name: &str) -> Result<(), ApiError> {
    let max = shard.apps.get(app).limits.max_channel_name_length;
    validate_name(name, max)
        .map_err(|e| ApiError::BadRequest(format!("invalid channel {name:?}: {e}")))
}

/// `GET /apps/{id}/channels`: occupied channels, optionally by prefix.
pub async fn channels(
    shard: &Shard,
    app: AppIdx,
    prefix: Option<&str>,
    info: Option<&str>,
) -> Result<Response, ApiError> {
    let attrs = Attributes::parse(info, false)?;
    let prefix = prefix.unwrap_or("");
    if attrs.user_count && !prefix.starts_with("presence-") {
        return Err(ApiError::BadRequest(
            "info=user_count needs filter_by_prefix=presence- (it applies to presence channels only)".into(),
        ));
    }
    let answers = ask_cluster(
        shard,
        QueryAsk::Channels {
            app,
            prefix: prefix.into(),
        },
    )
    .await?;
    let mut out = b"{\"channels\":{".to_vec();
    let mut first = true;
    for (name, totals) in merge(&answers) {
        if totals.subscription_count == 0 {
            continue;
        }
        if !first {
            out.push(b',');
        }
        first = false;
        push_json_str(&mut out, &name);
        out.push(b':');
        let mut fields = Vec::new();
        if attrs.user_count {
            fields.push(format!("\"user_count\":{}", totals.user_count.unwrap_or(0)));
        }
        if attrs.subscription_count {
            fields.push(format!(
                "\"subscription_count\":{}",
                totals.subscription_count
            ));
        }
        out.extend_from_slice(format!("{{{}}}", fields.join(",")).as_bytes());
    }
    out.extend_from_slice(b"}}");
    Ok(Response::json(200, out))
}

/// `GET /apps/{id}/channels/{name}`.
pub async fn channel(
    shard: &Shard,
    app: AppIdx,
    name: &str,
    info: Option<&str>,
) -> Result<Response, ApiError> {
    check_channel(shard, app, name)?;
    let attrs = Attributes::parse(info, true)?;
    if attrs.user_count && !is_presence(name) {
        return Err(ApiError::BadRequest(format!(
            "user_count applies to presence channels only, not {name}"
        )));
    }
    if attrs.cache && !ChannelClass::of(name).cache {
        return Err(ApiError::BadRequest(format!(
            "cache applies to cache channels only, not {name}"
        )));
    }
    let answers = ask_cluster(
        shard,
        QueryAsk::Channel {
            app,
            channel: name.into(),
        },
    )
    .await?;
    let totals = merge(&answers).remove(name).unwrap_or_default();
    let mut out = format!("{{\"occupied\":{}", totals.subscription_count > 0).into_bytes();
    if attrs.user_count {
        out.extend_from_slice(
            format!(",\"user_count\":{}", totals.user_count.unwrap_or(0)).as_bytes(),
        );
    }
    if attrs.subscription_count {
        out.extend_from_slice(
            format!(",\"subscription_count\":{}", totals.subscription_count).as_bytes(),
        );
    }
    if attrs.cache {
        if let Some((data, ttl)) = answers.iter().find_map(|a| a.cache.clone()) {
            out.extend_from_slice(b",\"cache\":{\"data\":");
            push_json_str(&mut out, &data);
            out.extend_from_slice(format!(",\"ttl\":{ttl}}}").as_bytes());
        }
    }
    out.push(b'}');
    Ok(Response::json(200, out))
}

/// `GET /apps/{id}/channels/{name}/users` (presence channels only).
pub async fn users(shard: &Shard, app: AppIdx, name: &str) -> Result<Response, ApiError> {
    check_channel(shard, app, name)?;
    if !is_presence(name) {
        return Err(ApiError::BadRequest(format!(
            "{name} is not a presence channel: users are listed for presence channels only"
        )));
    }
    let owner = owner_of(app, name, shard.count);
    let answer = shard
        .ask(
            owner,
            QueryAsk::Users {
                app,
                channel: name.into(),
            },
        )
        .await?;
    let mut out = b"{\"users\":[".to_vec();
    for (i, id) in answer.user_ids.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"id\":");
        push_json_str(&mut out, id);
        out.push(b'}');
    }
    out.extend_from_slice(b"]}");
    Ok(Response::json(200, out))
}

/// `GET /apps/{id}/connections`: `{"connections":N}`, the app's open
/// connections on every shard of this node and every live node of the
/// cluster (a node that does not answer within 1 s is left out; a shard
/// of this node that does not makes it 503).
pub async fn connections(shard: &Shard, app: AppIdx) -> Result<Response, ApiError> {
    let answers = ask_cluster(shard, QueryAsk::Connections { app }).await?;
    let n = open_connections(&answers);
    Ok(Response::json(200, format!("{{\"connections\":{n}}}")))
}

/// The attributes of one channel, as an object (for trigger `info`). The
/// event is published by then, so a shard that does not answer in time
/// leaves the object empty rather than failing the trigger (a client
/// would send the event again) or giving a wrong count.
async fn attributes_of(shard: &Shard, app: AppIdx, channel: &str, attrs: &Attributes) -> String {
    let query = QueryAsk::Channel {
        app,
        channel: channel.into(),
    };
    let Ok(answers) = ask_cluster(shard, query).await else {
        return "{}".into();
    };
    let totals = merge(&answers).remove(channel).unwrap_or_default();
    let mut fields = Vec::new();
    if attrs.user_count && is_presence(channel) {
        fields.push(format!("\"user_count\":{}", totals.user_count.unwrap_or(0)));
    }
    if attrs.subscription_count {
        fields.push(format!(
            "\"subscription_count\":{}",
            totals.subscription_count
        ));
    }
    format!("{{{}}}", fields.join(","))
}

/// `{"channels":{"c":{...}}}` for `/events` with `info`.
pub async fn events_info(
    shard: &Shard,
    app: AppIdx,
    channels: &[String],
    attrs: &Attributes,
) -> Vec<u8> {
    let mut out = b"{\"channels\":{".to_vec();
    for (i, channel) in channels.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        push_json_str(&mut out, channel);
        out.push(b':');
        out.extend_from_slice(attributes_of(shard, app, channel, attrs).await.as_bytes());
    }
    out.extend_from_slice(b"}}");
    out
}

/// `{"batch":[{...},{}]}` for `/batch_events` with `info`, in request order.
pub async fn batch_info(
    shard: &Shard,
    app: AppIdx,
    channels: &[String],
    attrs: &[Attributes],
) -> Vec<u8> {
    let mut out = b"{\"batch\":[".to_vec();
    for (i, (channel, attrs)) in channels.iter().zip(attrs).enumerate() {
        if i > 0 {
            out.push(b',');
        }
        if attrs.is_empty() {
            out.extend_from_slice(b"{}");
        } else {
            out.extend_from_slice(attributes_of(shard, app, channel, attrs).await.as_bytes());
        }
    }
    out.extend_from_slice(b"]}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_attributes() {
        assert!(Attributes::parse(None, false).unwrap().is_empty());
        let a = Attributes::parse(Some("user_count,subscription_count"), false).unwrap();
        assert!(a.user_count && a.subscription_count && !a.cache);
        assert!(Attributes::parse(Some("cache"), true).unwrap().cache);
        assert!(Attributes::parse(Some("cache"), false).is_err());
        assert!(Attributes::parse(Some("bogus"), true).is_err());
    }
}
