//! Parsing client messages: `{"event": ..., "data": ..., "channel": ...}`.
//!
//! Parsed in place with simd-json, whose parser is iterative, so deep nesting
//! cannot overflow the stack. Field types are checked here, so the session
//! logic only sees well-typed messages, or an error that says what was wrong.

use simd_json::prelude::*;
use simd_json::BorrowedValue;

/// A client message with its fields checked for type.
#[derive(Debug, PartialEq)]
pub enum ClientMessage {
    Ping,
    Pong,
    Subscribe {
        channel: String,
        auth: Option<String>,
        channel_data: Option<String>,
    },
    Unsubscribe {
        channel: String,
    },
    Signin {
        auth: Option<String>,
        user_data: Option<String>,
    },
    /// A `client-` event; `data` is kept as JSON text (a string stays a
    /// JSON string literal).
    ClientEvent {
        event: String,
        channel: Option<String>,
        data: String,
    },
    /// Any other event name.
    Unknown {
        event: String,
    },
}

/// Parses a text frame's payload. `Err` says what was wrong, for `pusher:error`.
pub fn parse(text: &mut [u8]) -> Result<ClientMessage, String> {
    let value = crate::json::parse(text).map_err(|e| format!("Invalid JSON: {e}"))?;
    let BorrowedValue::Object(obj) = value else {
        return Err("Invalid message: expected a JSON object".into());
    };
    let event = match obj.get("event") {
        Some(BorrowedValue::String(s)) => s.to_string(),
        Some(_) => return Err("Invalid message: `event` must be a string".into()),
        None => return Err("Invalid message: `event` is missing".into()),
    };
    let data = obj.get("data");
    Ok(match event.as_str() {
        "pusher:ping" => ClientMessage::Ping,
        "pusher:pong" => ClientMessage::Pong,
        "pusher:subscribe" | "pusher:unsubscribe" => {
            let Some(BorrowedValue::Object(d)) = data else {
                return Err(format!("Invalid {event}: `data` must be an object"));
            };
            let channel = string_field(d.get("channel"), &event, "data.channel")?
                .ok_or_else(|| format!("Invalid {event}: `data.channel` is missing"))?;
            if event == "pusher:unsubscribe" {
                ClientMessage::Unsubscribe { channel }
            } else {
                ClientMessage::Subscribe {
                    channel,
                    auth: string_field(d.get("auth"), &event, "data.auth")?,
                    channel_data: string_field(d.get("channel_data"), &event, "data.channel_data")?,
                }
            }
        }
        "pusher:signin" => {
            let Some(BorrowedValue::Object(d)) = data else {
                return Err(format!("Invalid {event}: `data` must be an object"));
            };
            ClientMessage::Signin {
                auth: string_field(d.get("auth"), &event, "data.auth")?,
                user_data: string_field(d.get("user_data"), &event, "data.user_data")?,
            }
        }
        _ if event.starts_with("client-") => ClientMessage::ClientEvent {
            channel: string_field(obj.get("channel"), &event, "channel")?,
            data: match data {
                Some(v) => v.encode(),
                None => "null".into(),
            },
            event,
        },
        _ => ClientMessage::Unknown { event },
    })
}

fn string_field(
    value: Option<&BorrowedValue<'_>>,
    event: &str,
    name: &str,
) -> Result<Option<String>, String> {
    match value {
        None | Some(BorrowedValue::Static(simd_json::StaticNode::Null)) => Ok(None),
        Some(BorrowedValue::String(s)) => Ok(Some(s.to_string())),
        Some(_) => Err(format!("Invalid {event}: `{name}` must be a string")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<ClientMessage, String> {
        parse(&mut s.as_bytes().to_vec())
    }

    #[test]
    fn parses_protocol_messages() {
        assert_eq!(
            p(r#"{"event":"pusher:ping","data":{}}"#),
            Ok(ClientMessage::Ping)
        );
        assert_eq!(
            p(r#"{"event":"pusher:subscribe","data":{"channel":"a","auth":"k:s"}}"#),
            Ok(ClientMessage::Subscribe {
                channel: "a".into(),
                auth: Some("k:s".into()),
                channel_data: None
            })
        );
        assert_eq!(
            p(r#"{"event":"pusher:unsubscribe","data":{"channel":"a\u0062"}}"#),
            Ok(ClientMessage::Unsubscribe {
                channel: "ab".into()
            })
        );
        assert_eq!(
            p(r#"{"event":"client-x","channel":"private-a","data":{"k":[1,2]}}"#),
            Ok(ClientMessage::ClientEvent {
                event: "client-x".into(),
                channel: Some("private-a".into()),
                data: r#"{"k":[1,2]}"#.into()
            })
        );
        assert_eq!(
            p(r#"{"event":"whatever"}"#),
            Ok(ClientMessage::Unknown {
                event: "whatever".into()
            })
        );
    }

    #[test]
    fn says_what_is_wrong() {
        assert!(p("not json").unwrap_err().starts_with("Invalid JSON"));
        assert!(p("[1]").unwrap_err().contains("object"));
        assert!(p(r#"{"data":{}}"#)
            .unwrap_err()
            .contains("`event` is missing"));
        assert!(p(r#"{"event":5}"#)
            .unwrap_err()
            .contains("`event` must be a string"));
        assert!(p(r#"{"event":"pusher:subscribe","data":"x"}"#)
            .unwrap_err()
            .contains("`data` must be an object"));
        assert!(p(r#"{"event":"pusher:subscribe","data":{}}"#)
            .unwrap_err()
            .contains("data.channel"));
        assert!(
            p(r#"{"event":"pusher:subscribe","data":{"channel":["a"]}}"#)
                .unwrap_err()
                .contains("`data.channel` must be a string")
        );
    }

    #[test]
    fn deep_nesting_does_not_crash() {
        let deep = format!(
            "{{\"event\":\"x\",\"data\":{}{}}}",
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        let _ = p(&deep);
    }
}
