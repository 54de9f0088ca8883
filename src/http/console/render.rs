//! The console stream's JSON lines: events (from the taps and the webhook
//! log), the stats line behind the charts and the busiest channels, and
//! the app list. Strings are JSON-escaped here; the page shows them as
//! text (never as HTML).

use super::hub::{Item, Rates};
use crate::apps::AppIdx;
use crate::json::push_json_str;
use crate::metrics::Snapshot;
use crate::pusher::shard::Shard;
use crate::pusher::tap::{TapEvent, TapPart, What};
use crate::webhooks::DeliveryNote;
use std::fmt::Write as _;
use std::time::Instant;

/// `{"apps":["id",...]}`.
pub fn apps(shard: &Shard) -> Vec<u8> {
    let mut out = b"{\"apps\":[".to_vec();
    for i in 0..shard.apps.len() {
        if i > 0 {
            out.push(b',');
        }
        push_json_str(&mut out, &shard.apps.get(AppIdx(i as u32)).id);
    }
    out.extend_from_slice(b"]}");
    out
}

/// A JSON object written field by field.
struct Object(Vec<u8>);

impl Object {
    fn new() -> Object {
        Object(b"{".to_vec())
    }

    fn key(&mut self, key: &str) -> &mut Vec<u8> {
        if self.0.len() > 1 {
            self.0.push(b',');
        }
        push_json_str(&mut self.0, key);
        self.0.push(b':');
        &mut self.0
    }

    fn str(&mut self, key: &str, value: &str) {
        let out = self.key(key);
        push_json_str(out, value);
    }

    fn num(&mut self, key: &str, value: impl std::fmt::Display) {
        let out = self.key(key);
        out.extend_from_slice(value.to_string().as_bytes());
    }

    fn raw(&mut self, key: &str, json: &[u8]) {
        let out = self.key(key);
        out.extend_from_slice(json);
    }

    fn strs<'a>(&mut self, key: &str, values: impl Iterator<Item = &'a str>) {
        let out = self.key(key);
        out.push(b'[');
        for (i, v) in values.enumerate() {
            if i > 0 {
                out.push(b',');
            }
            push_json_str(out, v);
        }
        out.push(b']');
    }

    fn end(mut self) -> Vec<u8> {
        self.0.push(b'}');
        self.0
    }
}

/// A tap event as a stream item.
pub fn tap_item(shard: &Shard, e: &TapEvent) -> Item {
    let kind = e.what.kind();
    let mut o = Object::new();
    o.str("type", "event");
    o.str("kind", kind);
    o.num("t", e.at_us / 1000);
    o.str("app", &shard.apps.get(e.app).id);
    o.num("shard", e.shard);
    match &e.channel {
        Some(c) => o.str("channel", c),
        None => o.raw("channel", b"null"),
    }
    if let Some(s) = e.socket {
        o.str("socket_id", &s.to_string());
    }
    match &e.what {
        What::ConnectionClosed { code } => o.num("code", code),
        What::MemberAdded { user_id } | What::MemberRemoved { user_id } => {
            o.str("user_id", user_id)
        }
        What::ApiMessage {
            event,
            channels,
            bytes,
            data,
        } => {
            o.str("event", event);
            o.strs("channels", channels.iter().map(|c| &**c));
            o.num("bytes", bytes);
            o.str("data", data);
        }
        What::ClientEvent {
            event,
            bytes,
            data,
            user_id,
        } => {
            o.str("event", event);
            o.num("bytes", bytes);
            o.str("data", data);
            if let Some(u) = user_id {
                o.str("user_id", u);
            }
        }
        _ => {}
    }
    Item {
        kind,
        app: Some(e.app),
        event: e.event_name().map(Into::into),
        channels: e.channels().map(Into::into).collect(),
        line: o.end().into(),
    }
}

/// A webhook request's outcome as a stream item.
pub fn note_item(shard: &Shard, n: &DeliveryNote) -> Item {
    let kind = match n.failure {
        None => "webhook_sent",
        Some(_) => "webhook_failed",
    };
    let app = shard.apps.by_key(&n.app_key);
    let mut o = Object::new();
    o.str("type", "event");
    o.str("kind", kind);
    o.num("t", n.at_ms);
    match app {
        Some(app) => o.str("app", &shard.apps.get(app).id),
        None => o.raw("app", b"null"),
    }
    o.raw("shard", b"null");
    match n.events.first() {
        Some((_, c)) => o.str("channel", c),
        None => o.raw("channel", b"null"),
    }
    o.str("url", &n.url);
    o.strs("events", n.events.iter().map(|(k, _)| *k));
    o.strs("channels", n.events.iter().map(|(_, c)| &**c));
    if let Some(why) = &n.failure {
        o.str("error", why);
    }
    Item {
        kind,
        app,
        event: None,
        channels: n.events.iter().map(|(_, c)| c.clone()).collect(),
        line: o.end().into(),
    }
}

/// The counters a chart shows: client messages in, API events (HTTP
/// trigger requests) and frames delivered to clients.
fn counters(s: &Snapshot) -> [u64; 3] {
    let api = s
        .http_requests
        .iter()
        .filter(|((route, _), _)| *route == "events" || *route == "batch_events")
        .map(|(_, n)| n)
        .sum();
    [s.messages_in, api, s.messages_out]
}

/// The stats line: per shard, connections and per-second rates since the
/// last line; the busiest channels; events dropped at the buffers.
pub fn stats(
    shard: &Shard,
    parts: &[Option<TapPart>],
    rates: &mut Rates,
    busiest: &[(AppIdx, Box<str>, u32)],
    dropped: u64,
) -> Vec<u8> {
    let now = Instant::now();
    rates.previous.resize(parts.len(), None);
    let mut shards = String::from("[");
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            shards.push(',');
        }
        let Some(part) = part else {
            shards.push_str("null");
            continue;
        };
        let c = counters(&part.snapshot);
        let rate = |k: usize| match rates.previous[i] {
            Some((then, before)) => {
                let secs = now.duration_since(then).as_secs_f64().max(0.001);
                c[k].saturating_sub(before[k]) as f64 / secs
            }
            None => 0.0,
        };
        let _ = write!(
            shards,
            "{{\"shard\":{i},\"connections\":{},\"messages_in\":{:.1},\"api_messages\":{:.1},\"deliveries\":{:.1}}}",
            part.snapshot.connections_current,
            rate(0),
            rate(1),
            rate(2)
        );
        rates.previous[i] = Some((now, c));
    }
    shards.push(']');
    let mut list = b"[".to_vec();
    for (i, (app, name, n)) in busiest.iter().enumerate() {
        if i > 0 {
            list.push(b',');
        }
        let mut o = Object::new();
        o.str("app", &shard.apps.get(*app).id);
        o.str("channel", name);
        o.num("subscribers", n);
        list.extend_from_slice(&o.end());
    }
    list.push(b']');
    let mut o = Object::new();
    o.str("type", "stats");
    o.num("t", crate::pusher::tap::now_us() / 1000);
    o.raw("shards", shards.as_bytes());
    o.raw("busiest", &list);
    o.num("dropped", dropped);
    o.end()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_escape_their_strings() {
        let mut o = Object::new();
        o.str("data", "<script>\"x\"</script>\n");
        o.num("n", 3);
        o.strs("list", ["a", "\"b"].into_iter());
        let text = String::from_utf8(o.end()).unwrap();
        assert_eq!(
            text,
            r#"{"data":"<script>\"x\"</script>\n","n":3,"list":["a","\"b"]}"#
        );
    }
}
