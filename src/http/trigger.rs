//! The bodies of `POST /apps/{id}/events` and `/batch_events`: parsed with
//! simd-json and checked against the app's limits. Each refusal names the
//! field that was wrong.
//!
//! simd-json parses in place: a [`TriggerEvent`] borrows its strings from
//! the request's body buffer (a string with escapes is unescaped there too),
//! so an event is not copied out of the body before its frame is built.

use crate::apps::AppLimits;
use crate::channel_name::validate_name;
use crate::errors::ApiError;
use crate::socket_id::SocketId;
use simd_json::prelude::*;
use simd_json::BorrowedValue;
use std::borrow::Cow;

/// One event to publish, validated, borrowing from the body it was parsed
/// from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TriggerEvent<'a> {
    pub name: Cow<'a, str>,
    /// The `data` string as clients will receive it.
    pub data: Cow<'a, str>,
    pub channels: Vec<Cow<'a, str>>,
    /// The connection to leave out, when given and well-formed.
    pub socket_id: Option<SocketId>,
    /// Attributes to return (`info`, e.g. `subscription_count,user_count`).
    pub info: Option<Cow<'a, str>>,
}

fn bad(why: String) -> ApiError {
    ApiError::BadRequest(why)
}

fn parse_json(body: &mut [u8]) -> Result<BorrowedValue<'_>, ApiError> {
    if body.is_empty() {
        return Err(bad("request body is empty: expected a JSON object".into()));
    }
    crate::json::parse(body).map_err(|e| bad(format!("request body is not valid JSON: {e}")))
}

/// Parses the body of `POST /apps/{id}/events`.
pub fn parse_event<'a>(
    body: &'a mut [u8],
    limits: &AppLimits,
) -> Result<TriggerEvent<'a>, ApiError> {
    let value = parse_json(body)?;
    event_from(&value, limits, "", true)
}

/// Parses the body of `POST /apps/{id}/batch_events`: `{"batch": [...]}`.
pub fn parse_batch<'a>(
    body: &'a mut [u8],
    limits: &AppLimits,
) -> Result<Vec<TriggerEvent<'a>>, ApiError> {
    let value = parse_json(body)?;
    let Some(batch) = value.get("batch") else {
        return Err(bad("`batch` is required: an array of events".into()));
    };
    let Some(items) = batch.as_array() else {
        return Err(bad("`batch` must be an array of events".into()));
    };
    if items.is_empty() {
        return Err(bad("`batch` is empty".into()));
    }
    if items.len() > limits.max_batch_size {
        return Err(bad(format!(
            "`batch` has {} events; at most {} are allowed",
            items.len(),
            limits.max_batch_size
        )));
    }
    items
        .iter()
        .enumerate()
        .map(|(i, item)| event_from(item, limits, &format!("batch[{i}]."), false))
        .collect()
}

/// The string `value` holds, borrowed from the body when it had no escapes.
fn text<'a>(value: &BorrowedValue<'a>) -> Option<Cow<'a, str>> {
    match value {
        BorrowedValue::String(s) => Some(s.clone()),
        _ => None,
    }
}

fn event_from<'a>(
    value: &BorrowedValue<'a>,
    limits: &AppLimits,
    at: &str,
    allow_many_channels: bool,
) -> Result<TriggerEvent<'a>, ApiError> {
    if value.as_object().is_none() {
        return Err(bad(format!(
            "{} must be a JSON object",
            if at.is_empty() {
                "body"
            } else {
                at.trim_end_matches('.')
            }
        )));
    }
    let name = match value.get("name") {
        Some(v) => text(v).ok_or_else(|| bad(format!("`{at}name` must be a string")))?,
        None => return Err(bad(format!("`{at}name` is required"))),
    };
    if name.is_empty() {
        return Err(bad(format!("`{at}name` is empty")));
    }
    if name.len() > limits.max_event_name_length {
        return Err(bad(format!(
            "`{at}name` is longer than {} characters",
            limits.max_event_name_length
        )));
    }
    if name.starts_with("pusher:") || name.starts_with("pusher_internal:") {
        return Err(bad(format!(
            "`{at}name` {name:?} uses a reserved prefix (pusher: and pusher_internal: are Pusher's own)"
        )));
    }
    let data = match value.get("data") {
        Some(BorrowedValue::String(s)) => s.clone(),
        Some(other) => Cow::Owned(other.encode()),
        None => return Err(bad(format!("`{at}data` is required"))),
    };
    if data.len() > limits.max_event_payload_bytes {
        return Err(ApiError::PayloadTooLarge(format!(
            "`{at}data` is {} bytes; the limit is {} KB",
            data.len(),
            limits.max_event_payload_bytes / 1024
        )));
    }
    let channels = channels_of(value, limits, at, allow_many_channels)?;
    let socket_id = match value.get("socket_id") {
        None | Some(BorrowedValue::Static(simd_json::StaticNode::Null)) => None,
        Some(v) => {
            let text = v
                .as_str()
                .ok_or_else(|| bad(format!("`{at}socket_id` must be a string")))?;
            if !SocketId::is_well_formed(text) {
                return Err(bad(format!(
                    "`{at}socket_id` {text:?} is not a socket id (expected digits.digits, like 123.456)"
                )));
            }
            // Well-formed ids this server never issued simply exclude nobody.
            SocketId::parse(text)
        }
    };
    let info = match value.get("info") {
        None | Some(BorrowedValue::Static(simd_json::StaticNode::Null)) => None,
        Some(v) => Some(text(v).ok_or_else(|| {
            bad(format!(
                "`{at}info` must be a string like \"subscription_count,user_count\""
            ))
        })?),
    };
    Ok(TriggerEvent {
        name,
        data,
        channels,
        socket_id,
        info,
    })
}

fn channels_of<'a>(
    value: &BorrowedValue<'a>,
    limits: &AppLimits,
    at: &str,
    allow_many: bool,
) -> Result<Vec<Cow<'a, str>>, ApiError> {
    let mut channels = Vec::new();
    match (value.get("channels"), value.get("channel")) {
        (Some(_), Some(_)) => {
            return Err(bad(format!(
                "give either `{at}channel` or `{at}channels`, not both"
            )))
        }
        (Some(list), None) if allow_many => {
            let list = list
                .as_array()
                .ok_or_else(|| bad(format!("`{at}channels` must be an array of strings")))?;
            channels.reserve_exact(list.len().min(limits.max_channels_per_event + 1));
            for (i, c) in list.iter().enumerate() {
                let c =
                    text(c).ok_or_else(|| bad(format!("`{at}channels[{i}]` must be a string")))?;
                channels.push(c);
            }
        }
        (Some(_), None) => {
            return Err(bad(format!(
                "`{at}channels` is not allowed in a batch: use `channel`"
            )))
        }
        (None, Some(c)) => {
            let c = text(c).ok_or_else(|| bad(format!("`{at}channel` must be a string")))?;
            channels = vec![c];
        }
        (None, None) => return Err(bad(format!("`{at}channel` or `{at}channels` is required"))),
    }
    if channels.is_empty() {
        return Err(bad(format!("`{at}channels` is empty")));
    }
    if channels.len() > limits.max_channels_per_event {
        return Err(bad(format!(
            "`{at}channels` has {} channels; at most {} are allowed",
            channels.len(),
            limits.max_channels_per_event
        )));
    }
    for c in &channels {
        validate_name(c, limits.max_channel_name_length)
            .map_err(|e| bad(format!("`{at}channels` has an invalid channel {c:?}: {e}")))?;
    }
    let encrypted = channels.iter().any(|c| c.starts_with("private-encrypted-"));
    if encrypted && channels.len() > 1 {
        return Err(bad(format!(
            "`{at}channels`: an event to an encrypted channel must name that one channel only"
        )));
    }
    Ok(channels)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(body: &str) -> Result<TriggerEvent<'static>, ApiError> {
        let body = body.as_bytes().to_vec().leak();
        parse_event(body, &AppLimits::default())
    }

    fn message(r: Result<TriggerEvent<'_>, ApiError>) -> String {
        match r.unwrap_err() {
            ApiError::BadRequest(m) => m,
            other => panic!("expected 400, got {other:?}"),
        }
    }

    #[test]
    fn parses_single_and_many_channels() {
        let e = event(r#"{"name":"e","channel":"c","data":"hi"}"#).unwrap();
        assert_eq!(e.channels, vec!["c"]);
        assert_eq!(e.data, "hi");
        let e = event(r#"{"name":"e","channels":["a","b"],"data":{"x":1},"socket_id":"1024.5"}"#)
            .unwrap();
        assert_eq!(e.channels, vec!["a", "b"]);
        assert_eq!(e.data, r#"{"x":1}"#);
        assert_eq!(e.socket_id.unwrap().to_string(), "1024.5");
    }

    #[test]
    fn names_the_bad_field() {
        assert!(message(event("nope")).contains("not valid JSON"));
        assert!(message(event("")).contains("empty"));
        assert!(message(event(r#"{"channel":"c","data":"x"}"#)).contains("`name` is required"));
        assert!(message(event(r#"{"name":1,"channel":"c","data":"x"}"#))
            .contains("`name` must be a string"));
        assert!(message(event(r#"{"name":"e","data":"x"}"#))
            .contains("`channel` or `channels` is required"));
        assert!(message(event(r#"{"name":"e","channel":"c"}"#)).contains("`data` is required"));
        assert!(message(event(r#"{"name":"e","channel":"a b","data":"x"}"#))
            .contains("invalid channel"));
        assert!(message(event(r#"{"name":"e","channels":[],"data":"x"}"#)).contains("empty"));
        assert!(message(event(
            r#"{"name":"e","channel":"c","data":"x","socket_id":"abc"}"#
        ))
        .contains("socket_id"));
        assert!(
            message(event(r#"{"name":"pusher:x","channel":"c","data":"x"}"#)).contains("reserved")
        );
        let long = format!(
            r#"{{"name":"{}","channel":"c","data":"x"}}"#,
            "e".repeat(201)
        );
        assert!(message(event(&long)).contains("longer than 200"));
        let many: Vec<String> = (0..101).map(|i| format!("\"c{i}\"")).collect();
        let body = format!(
            r#"{{"name":"e","channels":[{}],"data":"x"}}"#,
            many.join(",")
        );
        assert!(message(event(&body)).contains("at most 100"));
    }

    #[test]
    fn oversized_data_is_413() {
        let body = format!(
            r#"{{"name":"e","channel":"c","data":"{}"}}"#,
            "x".repeat(100 * 1024 + 1)
        );
        assert!(matches!(event(&body), Err(ApiError::PayloadTooLarge(_))));
        let body = format!(
            r#"{{"name":"e","channel":"c","data":"{}"}}"#,
            "x".repeat(100 * 1024)
        );
        assert!(event(&body).is_ok());
    }

    #[test]
    fn batches() {
        let limits = AppLimits::default();
        let mut body = br#"{"batch":[{"name":"a","channel":"c","data":"1"},{"name":"b","channel":"d","data":"2","socket_id":"1.2"}]}"#.to_vec();
        let b = parse_batch(&mut body, &limits).unwrap();
        assert_eq!(b.len(), 2);
        assert_eq!(b[1].channels, vec!["d"]);
        let items: Vec<String> = (0..11)
            .map(|_| r#"{"name":"a","channel":"c","data":"1"}"#.to_string())
            .collect();
        let mut body = format!(r#"{{"batch":[{}]}}"#, items.join(",")).into_bytes();
        assert!(
            matches!(parse_batch(&mut body, &limits), Err(ApiError::BadRequest(m)) if m.contains("at most 10"))
        );
        let mut body = br#"{"batch":[{"name":"a","data":"1"}]}"#.to_vec();
        assert!(
            matches!(parse_batch(&mut body, &limits), Err(ApiError::BadRequest(m)) if m.contains("batch[0].channel"))
        );
    }
}
