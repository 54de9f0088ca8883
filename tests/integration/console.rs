//! The debug console on the metrics port, over raw HTTP: the token on every
//! endpoint (401 without it or with another), the event stream's kinds for
//! a Pusher flow, its filters, HTML payloads carried as data, and the Event
//! Creator publishing through the trigger path (exclusion included).

use crate::metrics::metrics_port;
use crate::support::*;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

const TOKEN: &str = "console-token-0123456789";

fn console_toml(extra: &str) -> String {
    format!(
        "[server.metrics]\nenabled = true\nport = 0\n[server.console]\nenabled = true\ntoken = \"{TOKEN}\"\n{}",
        dev_app_with(&format!("enable_client_messages = true\n{extra}"))
    )
}

fn auth() -> String {
    format!("Authorization: Bearer {TOKEN}")
}

/// One request on a fresh connection to the metrics port, with `headers`.
fn request(port: u16, method: &str, target: &str, body: &[u8], headers: &[&str]) -> HttpResponse {
    let mut http = Http::connect(port);
    http.send(&request_bytes(method, target, body, headers));
    http.read_response()
}

/// A live `GET /console/stream`, decoded from its chunks into JSON lines.
struct Stream {
    socket: TcpStream,
    raw: Vec<u8>,
    lines: Vec<u8>,
    /// The last lines passed over, for failure messages.
    history: Vec<String>,
}

impl Stream {
    fn open(port: u16, query: &str) -> Stream {
        let mut socket = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let head = format!(
            "GET /console/stream{query} HTTP/1.1\r\nHost: x\r\n{}\r\n\r\n",
            auth()
        );
        socket.write_all(head.as_bytes()).unwrap();
        let mut s = Stream {
            socket,
            raw: Vec::new(),
            lines: Vec::new(),
            history: Vec::new(),
        };
        let end = loop {
            if let Some(at) = s.raw.windows(4).position(|w| w == b"\r\n\r\n") {
                break at;
            }
            s.fill(Instant::now() + WAIT);
        };
        let head = String::from_utf8_lossy(&s.raw[..end]).into_owned();
        assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
        assert!(head.contains("Transfer-Encoding: chunked"), "{head}");
        assert!(head.contains("application/x-ndjson"), "{head}");
        s.raw.drain(..end + 4);
        let hello = s.next(|_| true);
        assert_eq!(hello["type"], "hello", "{hello}");
        s
    }

    fn fill(&mut self, deadline: Instant) {
        let left = deadline.saturating_duration_since(Instant::now());
        let mut tmp = [0u8; 65536];
        self.socket
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .unwrap();
        let read = if left.is_zero() {
            Err(std::io::ErrorKind::TimedOut.into())
        } else {
            self.socket.read(&mut tmp)
        };
        match read {
            Ok(0) => panic!("stream ended; last lines:\n{}", self.history.join("\n")),
            Ok(n) => self.raw.extend_from_slice(&tmp[..n]),
            Err(e) => panic!(
                "stream: nothing wanted in time ({e}); last lines:\n{}",
                self.history.join("\n")
            ),
        }
    }

    /// Moves complete chunks from `raw` to `lines`.
    fn dechunk(&mut self) {
        loop {
            let Some(eol) = self.raw.windows(2).position(|w| w == b"\r\n") else {
                return;
            };
            let size = usize::from_str_radix(std::str::from_utf8(&self.raw[..eol]).unwrap(), 16)
                .expect("chunk size");
            if self.raw.len() < eol + 2 + size + 2 {
                return;
            }
            let data = self.raw[eol + 2..eol + 2 + size].to_vec();
            self.lines.extend_from_slice(&data);
            self.raw.drain(..eol + 2 + size + 2);
        }
    }

    /// The next line (in order) for which `pick` holds; lines before it
    /// are passed to `pick` and dropped.
    fn next(&mut self, mut pick: impl FnMut(&Value) -> bool) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            self.dechunk();
            while let Some(nl) = self.lines.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.lines.drain(..=nl).collect();
                let text = String::from_utf8_lossy(&line[..line.len() - 1]).into_owned();
                let v: Value = serde_json::from_str(&text)
                    .unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
                if self.history.len() == 30 {
                    self.history.remove(0);
                }
                self.history.push(text);
                if pick(&v) {
                    return v;
                }
            }
            self.fill(deadline);
        }
    }

    /// The next event line of `kind` whose fields include `fields`.
    fn event(&mut self, kind: &str, fields: &Value) -> Value {
        self.next(|v| {
            v["type"] == "event"
                && v["kind"] == kind
                && fields
                    .as_object()
                    .unwrap()
                    .iter()
                    .all(|(k, want)| &v[k] == want)
        })
    }

    /// Reads events until each `(kind, fields)` has been seen, in any
    /// order (events of different shards may share a moment).
    fn all(&mut self, wanted: &[(&str, Value)]) {
        let mut left: Vec<&(&str, Value)> = wanted.iter().collect();
        while !left.is_empty() {
            let v = self.next(|v| v["type"] == "event");
            left.retain(|(kind, fields)| {
                let hit = v["kind"] == *kind
                    && fields
                        .as_object()
                        .unwrap()
                        .iter()
                        .all(|(k, want)| &v[k] == want);
                !hit
            });
        }
    }

    /// Every event line up to and including the first one `last` picks.
    fn events_until(&mut self, last: impl Fn(&Value) -> bool) -> Vec<Value> {
        let mut seen = Vec::new();
        let end = self.next(|v| {
            if v["type"] != "event" {
                return false;
            }
            if last(v) {
                return true;
            }
            seen.push(v.clone());
            false
        });
        seen.push(end);
        seen
    }
}

#[test]
fn every_console_endpoint_wants_the_token() {
    let server = Server::start_with(&console_toml(""));
    let port = metrics_port(&server);
    let page = request(port, "GET", "/console", b"", &[]);
    assert_eq!(page.status, 200);
    assert!(page
        .header("content-type")
        .unwrap()
        .starts_with("text/html"));
    let csp = page.header("content-security-policy").unwrap_or_default();
    assert!(csp.contains("script-src 'self'"), "{csp}");
    assert!(!page.text().contains(TOKEN));
    let trigger = br#"{"name":"e","channel":"c","data":"{}"}"#;
    let endpoints: [(&str, &str, &[u8]); 3] = [
        ("GET", "/console/apps", b""),
        ("GET", "/console/stream", b""),
        ("POST", "/console/apps/app-id/events", trigger),
    ];
    for (method, path, body) in endpoints {
        for headers in [
            vec![],
            vec!["Authorization: Bearer wrong-token-0123456789".to_string()],
            vec![format!("Authorization: Basic {TOKEN}")],
            vec![format!("Authorization: Bearer {TOKEN}x")],
        ] {
            let h: Vec<&str> = headers.iter().map(String::as_str).collect();
            let r = request(port, method, path, body, &h);
            assert_eq!(r.status, 401, "{method} {path} {headers:?}: {}", r.text());
            assert!(r.header("www-authenticate").is_some(), "{r:?}");
        }
    }
    let apps = request(port, "GET", "/console/apps", b"", &[&auth()]);
    assert_eq!(apps.json(), json!({"apps": ["app-id"]}));
    // The token never reaches the log, refused or accepted.
    assert!(!server.log_text().contains(TOKEN));
    assert!(!server.log_text().contains("wrong-token"));
}

#[test]
fn the_console_is_absent_unless_enabled() {
    let server = Server::start_with("[server.metrics]\nenabled = true\nport = 0\n");
    let port = metrics_port(&server);
    for path in ["/console", "/console/apps", "/console/stream"] {
        request(port, "GET", path, b"", &[&auth()]).expect_error(404);
    }
}

#[test]
fn the_stream_shows_a_pusher_flow() {
    let server = Server::start_with(&console_toml(""));
    let port = metrics_port(&server);
    let mut stream = Stream::open(port, "");

    let mut a = Ws::connect(server.port);
    let a_id = a.socket_id.clone();
    stream.event(
        "connection_opened",
        &json!({"app": "app-id", "socket_id": a_id, "shard": a.shard()}),
    );
    a.subscribe_private("private-room");
    stream.all(&[
        (
            "subscribed",
            json!({"channel": "private-room", "socket_id": a_id}),
        ),
        ("channel_occupied", json!({"channel": "private-room"})),
    ]);

    let mut b = Ws::connect(server.port);
    b.subscribe_private("private-room");
    let data = r#"{"msg":"hi"}"#;
    a.send_json(&json!({"event":"client-typing","channel":"private-room","data":{"msg":"hi"}}));
    b.expect_event("client-typing");
    stream.event(
        "client_event",
        &json!({"channel": "private-room", "event": "client-typing", "socket_id": a_id,
                "data": data, "bytes": data.len()}),
    );

    let mut http = Http::connect(server.port);
    http.trigger(
        &DEV,
        &json!({"name":"news","channels":["private-room","other"],"data":"x","socket_id": b.socket_id}),
    )
    .expect_ok_json();
    a.expect_event("news");
    stream.event(
        "api_message",
        &json!({"event": "news", "channels": ["private-room", "other"], "bytes": 1,
                "data": "x", "socket_id": b.socket_id}),
    );

    let member = r#"{"user_id":"u1","user_info":{}}"#;
    a.subscribe_presence("presence-lobby", member);
    stream.all(&[
        (
            "member_added",
            json!({"channel": "presence-lobby", "user_id": "u1"}),
        ),
        (
            "subscribed",
            json!({"channel": "presence-lobby", "socket_id": a_id}),
        ),
        ("channel_occupied", json!({"channel": "presence-lobby"})),
    ]);
    a.unsubscribe("presence-lobby");
    stream.all(&[
        (
            "unsubscribed",
            json!({"channel": "presence-lobby", "socket_id": a_id}),
        ),
        (
            "member_removed",
            json!({"channel": "presence-lobby", "user_id": "u1"}),
        ),
        ("channel_vacated", json!({"channel": "presence-lobby"})),
    ]);

    a.send_close(4000 - 1); // 3999: an application close code
    a.expect_close(3999);
    stream.event(
        "connection_closed",
        &json!({"socket_id": a_id, "code": 3999}),
    );
    b.shutdown();
    stream.all(&[
        (
            "connection_closed",
            json!({"socket_id": b.socket_id, "code": 1006}),
        ),
        ("unsubscribed", json!({"channel": "private-room"})),
        ("channel_vacated", json!({"channel": "private-room"})),
    ]);
    // The stats line counts per shard.
    let stats = stream.next(|v| v["type"] == "stats");
    assert_eq!(stats["shards"].as_array().unwrap().len(), 2, "{stats}");
}

#[test]
fn the_stream_filters_by_app_channel_event_and_kind() {
    let server = Server::start_with(&console_toml(""));
    let port = metrics_port(&server);
    let mut by_channel = Stream::open(port, "?channel=foo-");
    let mut by_event = Stream::open(port, "?event=wanted&app=app-id");
    let mut by_kind = Stream::open(port, "?kind=subscribed,unsubscribed");
    let mut ws = Ws::connect(server.port);
    ws.subscribe("foo-sub");
    let mut http = Http::connect(server.port);
    for (name, channel) in [("other", "bar-1"), ("wanted", "bar-2"), ("other", "foo-1")] {
        http.trigger(
            &DEV,
            &json!({"name": name, "channel": channel, "data": "d"}),
        )
        .expect_ok_json();
    }
    // A marker on the same HTTP connection: once a stream shows it, every
    // earlier trigger would have been shown before it.
    http.trigger(
        &DEV,
        &json!({"name": "wanted", "channel": "foo-end", "data": "end"}),
    )
    .expect_ok_json();
    let is_end = |v: &Value| v["kind"] == "api_message" && v["channels"] == json!(["foo-end"]);

    // Events of different shards come in no set order (the occupancy is
    // decided on the channel's owner shard): read until each expected one
    // is in, then nothing else may have come. No `bar-` event can come
    // after `foo-end`, published later on the same HTTP connection.
    let mut expected = vec![
        "api_message null [\"foo-1\"]",
        "api_message null [\"foo-end\"]",
        "channel_occupied \"foo-sub\" null",
        "subscribed \"foo-sub\" null",
    ];
    let mut seen = Vec::new();
    while seen.len() < expected.len() || !expected.iter().all(|e| seen.contains(&e.to_string())) {
        let v = by_channel.next(|v| v["type"] == "event");
        seen.push(format!(
            "{} {} {}",
            v["kind"].as_str().unwrap(),
            v["channel"],
            v["channels"]
        ));
        assert!(seen.len() <= expected.len(), "unexpected events: {seen:?}");
    }
    seen.sort();
    expected.sort();
    assert_eq!(seen, expected);

    let seen = by_event.events_until(is_end);
    let channels: Vec<&Value> = seen.iter().map(|v| &v["channels"]).collect();
    assert_eq!(
        channels,
        [&json!(["bar-2"]), &json!(["foo-end"])],
        "{seen:?}"
    );

    by_kind.event("subscribed", &json!({"channel": "foo-sub"}));
    ws.unsubscribe("foo-sub");
    let next = by_kind.next(|v| v["type"] == "event");
    assert_eq!(next["kind"], "unsubscribed", "{next}");

    for (query, why) in [
        ("?app=nope", "unknown app id"),
        ("?kind=bogus", "unknown kind"),
        ("?colour=red", "unknown parameter"),
    ] {
        let r = request(
            port,
            "GET",
            &format!("/console/stream{query}"),
            b"",
            &[&auth()],
        );
        assert!(r.expect_error(400).contains(why), "{query}: {}", r.text());
    }
}

#[test]
fn the_event_creator_publishes_like_a_trigger_and_html_stays_data() {
    let server = Server::start_with(&console_toml(""));
    let port = metrics_port(&server);
    let mut stream = Stream::open(port, "?kind=api_message");
    let mut a = Ws::connect(server.port);
    let mut b = Ws::connect(server.port);
    a.subscribe("news");
    b.subscribe("news");
    let html = r#"<img src=x onerror="alert(1)"><script>alert('x')</script>"#;
    let create = |body: Value| {
        request(
            port,
            "POST",
            "/console/apps/app-id/events",
            body.to_string().as_bytes(),
            &[&auth()],
        )
    };
    let r = create(json!({"name":"html","channel":"news","data":html,"socket_id":a.socket_id}));
    assert_eq!(r.status, 200, "{}", r.text());
    // `b` gets it; `a` was excluded: its next frame is the marker.
    b.expect_text(&event_text("html", "news", html));
    let r = create(json!({"name":"marker","channel":"news","data":"m"}));
    assert_eq!(r.status, 200, "{}", r.text());
    a.expect_text(&event_text("marker", "news", "m"));
    b.expect_text(&event_text("marker", "news", "m"));
    // The stream carries the HTML as a JSON string, byte for byte.
    let shown = stream.event("api_message", &json!({"event": "html"}));
    assert_eq!(shown["data"], html);
    assert_eq!(shown["socket_id"], a.socket_id.as_str());

    // The trigger's checks apply.
    let bad = create(json!({"name":"pusher:x","channel":"news","data":"{}"}));
    assert!(bad.expect_error(400).contains("reserved prefix"));
    let bad = create(json!({"channel":"news","data":"{}"}));
    assert!(bad.expect_error(400).contains("name"));
    let bad = create(json!({"name":"e","channel":"bad channel!","data":"{}"}));
    bad.expect_error(400);
    let unknown = request(port, "POST", "/console/apps/nope/events", b"{}", &[&auth()]);
    unknown.expect_error(404);
    let get = request(port, "GET", "/console/apps/app-id/events", b"", &[&auth()]);
    get.expect_error(405);
}

#[test]
fn the_page_never_writes_data_as_html() {
    let server = Server::start_with(&console_toml(""));
    let port = metrics_port(&server);
    let script = request(port, "GET", "/console/console.js", b"", &[]).text();
    assert!(script.contains("textContent"));
    for sink in [
        "innerHTML",
        "outerHTML",
        "insertAdjacentHTML",
        "document.write",
        "eval(",
    ] {
        assert!(!script.contains(sink), "console.js uses {sink}");
    }
    let uplot = request(port, "GET", "/console/uPlot.iife.min.js", b"", &[]);
    assert_eq!(uplot.status, 200);
    assert!(uplot.text().contains("uPlot"));
}

/// Every event a stream's filter passes is either sent or counted on the
/// `dropped` line (`skipped` beyond the stream's rate, `at_buffers` beyond
/// a shard's buffer): a burst larger than one second's allowance adds up
/// exactly.
#[test]
fn every_event_is_shown_or_counted() {
    let toml = format!(
        "[server.limits]\nmax_subscriptions_per_connection = 2000\n{}",
        console_toml("")
    );
    let server = Server::start_with(&toml);
    let port = metrics_port(&server);
    let mut stream = Stream::open(port, "?kind=subscribed");
    let mut ws = Ws::connect(server.port);
    let channels = 1500;
    for i in 0..channels {
        ws.send_json(&json!({"event":"pusher:subscribe","data":{"channel": format!("c{i}")}}));
    }
    for _ in 0..channels {
        ws.expect_event("pusher_internal:subscription_succeeded");
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut shown = 0;
    loop {
        let v = stream.next(|v| v["type"] == "event" || v["type"] == "dropped");
        if v["type"] == "event" {
            shown += 1;
            continue;
        }
        let lost = v["skipped"].as_u64().unwrap() + v["at_buffers"].as_u64().unwrap();
        if shown + lost >= channels {
            assert_eq!(shown + lost, channels, "shown {shown}: {v}");
            break;
        }
        assert!(Instant::now() < deadline, "shown {shown}, last {v}");
    }
}

/// The webhook sender's requests show up: a refused one as
/// `webhook_failed` (with the status and "retrying"), the retry as
/// `webhook_sent`.
#[test]
fn webhook_requests_show_as_sent_or_failed() {
    let receiver = crate::receiver::Receiver::start();
    receiver.answer_next(&[500]);
    let hook = format!(
        "[[apps.webhooks]]\nurl = \"{}\"\nevent_types = [\"channel_occupied\"]\n",
        receiver.url("/hook?token=s3cr3t")
    );
    let server = Server::start_with(&console_toml(&hook));
    let port = metrics_port(&server);
    let mut stream = Stream::open(port, "?kind=webhook_sent,webhook_failed");
    let mut ws = Ws::connect(server.port);
    ws.subscribe("watched");
    let failed = stream.event(
        "webhook_failed",
        &json!({"app": "app-id", "channel": "watched"}),
    );
    assert_eq!(failed["events"], json!(["channel_occupied"]), "{failed}");
    let why = failed["error"].as_str().unwrap();
    assert!(why.contains("500") && why.contains("retrying"), "{why}");
    let url = failed["url"].as_str().unwrap();
    assert!(url.contains("/hook") && !url.contains("s3cr3t"), "{url}");
    stream.event(
        "webhook_sent",
        &json!({"channel": "watched", "channels": ["watched"]}),
    );
}

/// At most 8 streams at once: the 9th is a 503; closing one makes room.
#[test]
fn streams_are_capped() {
    let server = Server::start_with(&console_toml(""));
    let port = metrics_port(&server);
    let mut open: Vec<Stream> = (0..8).map(|_| Stream::open(port, "")).collect();
    let refused = request(port, "GET", "/console/stream", b"", &[&auth()]);
    assert!(refused.expect_error(503).contains("8 console streams"));
    // A closed stream is noticed at its next write (within a second).
    drop(open.pop());
    let deadline = Instant::now() + WAIT;
    loop {
        let mut http = Http::connect(port);
        let target = "/console/stream";
        http.send(&request_bytes("GET", target, b"", &[&auth()]));
        let mut head = [0u8; 12];
        http.stream.read_exact(&mut head).unwrap();
        if &head == b"HTTP/1.1 200" {
            break;
        }
        assert!(Instant::now() < deadline, "no room after a stream closed");
        std::thread::sleep(Duration::from_millis(100));
    }
}
