//! Server-to-client Pusher messages, encoded straight into WebSocket [`Frame`]s.
//!
//! Pusher double-encodes the `data` of its own events (a JSON string holding
//! JSON); `pusher:error` and `pusher:subscription_error` carry an object, as
//! Pusher and pusher-js do (reference section 2.3).

use crate::socket_id::SocketId;
use crate::ws::frame::Frame;

use crate::json::push_json_str;

/// `{"event":E,"channel":C,"data":D}` for a channel event; `data` is a string.
pub fn channel_event(event: &str, channel: &str, data: &str) -> Frame {
    Frame::text_with(|b| {
        b.reserve(event.len() + channel.len() + data.len() + 40);
        b.extend_from_slice(b"{\"event\":");
        push_json_str(b, event);
        b.extend_from_slice(b",\"channel\":");
        push_json_str(b, channel);
        b.extend_from_slice(b",\"data\":");
        push_json_str(b, data);
        b.push(b'}');
    })
}

pub fn connection_established(socket_id: SocketId, activity_timeout: u32) -> Frame {
    let data = format!("{{\"socket_id\":\"{socket_id}\",\"activity_timeout\":{activity_timeout}}}");
    internal_event("pusher:connection_established", None, &data)
}

/// An event whose `data` is double-encoded JSON, with an optional channel.
pub fn internal_event(event: &str, channel: Option<&str>, data_json: &str) -> Frame {
    Frame::text_with(|b| {
        b.extend_from_slice(b"{\"event\":");
        push_json_str(b, event);
        if let Some(channel) = channel {
            b.extend_from_slice(b",\"channel\":");
            push_json_str(b, channel);
        }
        b.extend_from_slice(b",\"data\":");
        push_json_str(b, data_json);
        b.push(b'}');
    })
}

pub fn subscription_succeeded(channel: &str) -> Frame {
    internal_event(
        "pusher_internal:subscription_succeeded",
        Some(channel),
        "{}",
    )
}

/// `pusher:cache_miss`: nothing is cached on a cache channel.
pub fn cache_miss(channel: &str) -> Frame {
    Frame::text_with(|b| {
        b.extend_from_slice(b"{\"event\":\"pusher:cache_miss\",\"channel\":");
        push_json_str(b, channel);
        b.push(b'}');
    })
}

/// A client event as relayed to the other subscribers: `data` is the JSON
/// the client sent, and presence channels name the sender's `user_id`.
pub fn client_event(event: &str, channel: &str, data_json: &str, user_id: Option<&str>) -> Frame {
    Frame::text_with(|b| {
        b.reserve(event.len() + channel.len() + data_json.len() + 48);
        b.extend_from_slice(b"{\"event\":");
        push_json_str(b, event);
        b.extend_from_slice(b",\"channel\":");
        push_json_str(b, channel);
        b.extend_from_slice(b",\"data\":");
        b.extend_from_slice(data_json.as_bytes());
        if let Some(user_id) = user_id {
            b.extend_from_slice(b",\"user_id\":");
            push_json_str(b, user_id);
        }
        b.push(b'}');
    })
}

/// `pusher:signin_success` echoing the signed `user_data` string.
pub fn signin_success(user_data: &str) -> Frame {
    Frame::text_with(|b| {
        b.extend_from_slice(b"{\"event\":\"pusher:signin_success\",\"data\":{\"user_data\":");
        push_json_str(b, user_data);
        b.extend_from_slice(b"}}");
    })
}

pub fn pong() -> Frame {
    internal_event("pusher:pong", None, "{}")
}

pub fn ping() -> Frame {
    internal_event("pusher:ping", None, "{}")
}

/// `pusher:error` with `{"code":N,"message":M}` as an object.
pub fn error(code: Option<u16>, message: &str) -> Frame {
    Frame::text_with(|b| {
        b.extend_from_slice(b"{\"event\":\"pusher:error\",\"data\":{");
        if let Some(code) = code {
            b.extend_from_slice(format!("\"code\":{code},").as_bytes());
        }
        b.extend_from_slice(b"\"message\":");
        push_json_str(b, message);
        b.extend_from_slice(b"}}");
    })
}

/// `pusher:subscription_error` for one channel: `{"type","error","status"}`.
pub fn subscription_error(channel: &str, kind: &str, message: &str, status: u16) -> Frame {
    Frame::text_with(|b| {
        b.extend_from_slice(b"{\"event\":\"pusher:subscription_error\",\"channel\":");
        push_json_str(b, channel);
        b.extend_from_slice(b",\"data\":{\"type\":");
        push_json_str(b, kind);
        b.extend_from_slice(b",\"error\":");
        push_json_str(b, message);
        b.extend_from_slice(format!(",\"status\":{status}}}}}").as_bytes());
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(f: &Frame) -> &str {
        std::str::from_utf8(f.payload()).unwrap()
    }

    #[test]
    fn builds_pusher_messages() {
        let id = SocketId {
            nonce: 1,
            shard: 0,
            slot: 2,
            serial: 0,
        };
        assert_eq!(
            text(&connection_established(id, 120)),
            r#"{"event":"pusher:connection_established","data":"{\"socket_id\":\"1024.2\",\"activity_timeout\":120}"}"#
        );
        assert_eq!(
            text(&channel_event("my-event", "c", "{\"a\":1}")),
            r#"{"event":"my-event","channel":"c","data":"{\"a\":1}"}"#
        );
        assert_eq!(
            text(&subscription_succeeded("c")),
            r#"{"event":"pusher_internal:subscription_succeeded","channel":"c","data":"{}"}"#
        );
        assert_eq!(text(&pong()), r#"{"event":"pusher:pong","data":"{}"}"#);
        assert_eq!(
            text(&error(Some(4001), "App key x does not exist")),
            r#"{"event":"pusher:error","data":{"code":4001,"message":"App key x does not exist"}}"#
        );
        assert_eq!(
            text(&subscription_error("private-a", "AuthError", "bad", 401)),
            r#"{"event":"pusher:subscription_error","channel":"private-a","data":{"type":"AuthError","error":"bad","status":401}}"#
        );
    }
}
