//! A webhook receiver for the tests: a real HTTP/1.1 server on
//! 127.0.0.1:0 (std `TcpListener`, one thread per connection, keep-alive)
//! that records every request and answers the statuses it is told to.

#![allow(dead_code)]

use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;
use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The status it was answered with.
    pub status: u16,
    pub at: Instant,
}

impl Delivery {
    pub fn header(&self, name: &str) -> Option<&str> {
        crate::support::find_header(&self.headers, name)
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "webhook body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// The `events` array of the body.
    pub fn events(&self) -> Vec<Value> {
        self.json()["events"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Asserts the Pusher webhook headers and a valid signature for `key` / `secret`.
    pub fn assert_signed(&self, key: &str, secret: &str) {
        assert_eq!(self.method, "POST");
        assert_eq!(self.header("x-pusher-key"), Some(key), "{self:?}");
        assert_eq!(
            self.header("content-type"),
            Some("application/json"),
            "{self:?}"
        );
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(&self.body);
        let expected = hex::encode(mac.finalize().into_bytes());
        assert_eq!(
            self.header("x-pusher-signature"),
            Some(expected.as_str()),
            "bad signature: {self:?}"
        );
        let v = self.json();
        assert!(
            v["time_ms"].as_u64().is_some_and(|t| t > 1_600_000_000_000),
            "time_ms: {v}"
        );
    }
}

#[derive(Default)]
struct State {
    deliveries: Vec<Delivery>,
    /// Statuses to answer next, in order; then `always`, or 200.
    script: VecDeque<u16>,
    always: Option<u16>,
}

pub struct Receiver {
    pub port: u16,
    state: Arc<Mutex<State>>,
}

impl Receiver {
    pub fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind receiver");
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(State::default()));
        let s = state.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let s = s.clone();
                std::thread::spawn(move || serve(stream, s));
            }
        });
        Receiver { port, state }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// The next requests are answered with these statuses, in order.
    pub fn answer_next(&self, statuses: &[u16]) {
        self.state.lock().unwrap().script.extend(statuses);
    }

    /// Every request after the scripted ones is answered `status` (a
    /// receiver that is down), until this is called with `None`.
    pub fn answer_all(&self, status: Option<u16>) {
        self.state.lock().unwrap().always = status;
    }

    pub fn deliveries(&self) -> Vec<Delivery> {
        self.state.lock().unwrap().deliveries.clone()
    }

    /// Every event of every accepted (2xx) request, in arrival order.
    pub fn events(&self) -> Vec<Value> {
        self.deliveries()
            .iter()
            .filter(|d| (200..300).contains(&d.status))
            .flat_map(|d| d.events())
            .collect()
    }

    /// Waits until at least `n` accepted events arrived; returns them all.
    pub fn wait_events(&self, n: usize, timeout: Duration) -> Vec<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let events = self.events();
            if events.len() >= n {
                return events;
            }
            if Instant::now() > deadline {
                panic!(
                    "expected {n} webhook events within {timeout:?}, got {}: {events:?}",
                    events.len()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for an accepted event matching `pred`; returns it.
    pub fn wait_for(&self, what: &str, timeout: Duration, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(e) = self.events().into_iter().find(|e| pred(e)) {
                return e;
            }
            if Instant::now() > deadline {
                panic!(
                    "no webhook event {what} within {timeout:?}; got {:?}",
                    self.events()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// `{"name":..,"channel":..}` matcher.
pub fn is(name: &str, channel: &str) -> impl Fn(&Value) -> bool {
    let (name, channel) = (name.to_string(), channel.to_string());
    move |e: &Value| e["name"] == name.as_str() && e["channel"] == channel.as_str()
}

/// Count of events named `name` on `channel`.
pub fn count(events: &[Value], name: &str, channel: &str) -> usize {
    events.iter().filter(|e| is(name, channel)(e)).count()
}

fn serve(mut stream: TcpStream, state: Arc<Mutex<State>>) {
    let mut buf: Vec<u8> = Vec::new();
    loop {
        // Head.
        let end = loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break end;
            }
            let mut tmp = [0u8; 8192];
            match stream.read(&mut tmp) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&tmp[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        let mut lines = head.split("\r\n");
        let mut request_line = lines.next().unwrap_or("").split(' ');
        let method = request_line.next().unwrap_or("").to_string();
        let path = request_line.next().unwrap_or("").to_string();
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect();
        let len: usize = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        while buf.len() < end + 4 + len {
            let mut tmp = [0u8; 8192];
            match stream.read(&mut tmp) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&tmp[..n]),
            }
        }
        let body = buf[end + 4..end + 4 + len].to_vec();
        buf.drain(..end + 4 + len);
        let status = {
            let mut s = state.lock().unwrap();
            let status = s.script.pop_front().or(s.always).unwrap_or(200);
            s.deliveries.push(Delivery {
                method,
                path,
                headers,
                body,
                status,
                at: Instant::now(),
            });
            status
        };
        let response = format!(
            "HTTP/1.1 {status} X\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok"
        );
        if stream.write_all(response.as_bytes()).is_err() {
            return;
        }
    }
}
