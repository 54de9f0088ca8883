//! Signed HTTP publishers: build `/events` and `/batch_events` requests with
//! Pusher's auth (HMAC-SHA256 over method, path and sorted query, with the
//! body's MD5), pace them (fixed rate or as fast as responses come back) and
//! account for what was accepted per channel.

use crate::engine::Engine;
use hdrhistogram::Histogram;
use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use sha2::Sha256;
use std::collections::BTreeMap;
use std::fmt::Write as _;

pub struct Signer {
    app_id: String,
    key: String,
    mac: Hmac<Sha256>,
    host: String,
}

impl Signer {
    pub fn new(app_id: &str, key: &str, secret: &str, host: &str) -> Signer {
        Signer {
            app_id: app_id.into(),
            key: key.into(),
            mac: Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length"),
            host: host.into(),
        }
    }

    /// A complete signed `POST` request for `body`.
    pub fn request(&self, batch: bool, body: &[u8]) -> Vec<u8> {
        let path = if batch {
            format!("/apps/{}/batch_events", self.app_id)
        } else {
            format!("/apps/{}/events", self.app_id)
        };
        let md5 = hex::encode(Md5::digest(body));
        let query = format!(
            "auth_key={}&auth_timestamp={}&auth_version=1.0&body_md5={}",
            self.key,
            crate::sys::unix_secs(),
            md5
        );
        let mut mac = self.mac.clone();
        mac.update(b"POST\n");
        mac.update(path.as_bytes());
        mac.update(b"\n");
        mac.update(query.as_bytes());
        let sig = hex::encode(mac.finalize().into_bytes());
        let mut req = Vec::with_capacity(body.len() + 400);
        let _ = write!(
            Bytes(&mut req),
            "POST {path}?{query}&auth_signature={sig} HTTP/1.1\r\nHost: {}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            self.host,
            body.len()
        );
        req.extend_from_slice(body);
        req
    }
}

struct Bytes<'a>(&'a mut Vec<u8>);
impl std::fmt::Write for Bytes<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

/// Publishing configuration.
pub struct PubConfig {
    pub publishers: usize,
    /// Events per second over all publishers; None = as fast as possible.
    pub rate: Option<f64>,
    /// Events per request (1: `/events`; more: `/batch_events`).
    pub batch: usize,
    /// Size of each event's `data` string.
    pub payload: usize,
    pub channels: Vec<String>,
    pub event_name: String,
}

/// A pool of keep-alive publishers and what they achieved.
pub struct Publishers {
    cfg: PubConfig,
    signer: Signer,
    toks: Vec<usize>,
    /// Channel indices of the events in each publisher's request in flight.
    inflight: Vec<Option<Vec<u32>>>,
    ch_seq: Vec<u64>,
    next_channel: usize,
    /// Events issued (sent) so far, for pacing.
    pub issued: u64,
    start_ns: u64,
    /// Events the server accepted (2xx), per channel.
    pub acked: Vec<u64>,
    pub events_failed: u64,
    pub requests_ok: u64,
    pub requests_failed: u64,
    pub statuses: BTreeMap<u16, u64>,
    pub latency_us: Histogram<u64>,
    pub last_ack_ns: u64,
    pad: String,
}

impl Publishers {
    pub fn new(eng: &mut Engine, cfg: PubConfig, signer: Signer) -> std::io::Result<Publishers> {
        let mut toks = Vec::new();
        for _ in 0..cfg.publishers {
            toks.push(eng.http_open()?);
        }
        let n = cfg.channels.len();
        Ok(Publishers {
            inflight: vec![None; toks.len()],
            toks,
            ch_seq: vec![0; n],
            next_channel: 0,
            issued: 0,
            start_ns: 0,
            acked: vec![0; n],
            events_failed: 0,
            requests_ok: 0,
            requests_failed: 0,
            statuses: BTreeMap::new(),
            latency_us: Histogram::new_with_bounds(1, 120_000_000, 3).unwrap(),
            last_ack_ns: 0,
            pad: "x".repeat(cfg.payload),
            cfg,
            signer,
        })
    }

    pub fn start(&mut self, now_ns: u64) {
        self.start_ns = now_ns;
    }

    pub fn in_flight(&self) -> usize {
        self.inflight.iter().filter(|f| f.is_some()).count()
    }

    pub fn events_acked(&self) -> u64 {
        self.acked.iter().sum()
    }

    /// Events that should have been issued by `now_ns` (pacing); u64::MAX when unpaced.
    fn due(&self, now_ns: u64) -> u64 {
        match self.cfg.rate {
            None => u64::MAX,
            Some(r) => ((now_ns - self.start_ns) as f64 * r / 1e9) as u64 + 1,
        }
    }

    /// How long the event loop may sleep before the next request is due:
    /// until the next paced event, or `idle_ns` when unpaced or when every
    /// publisher has a request in flight (a response wakes the loop).
    pub fn wait_ns(&self, now_ns: u64, idle_ns: u64) -> u64 {
        let Some(r) = self.cfg.rate else {
            return idle_ns;
        };
        if self.inflight.iter().all(|f| f.is_some()) {
            return idle_ns;
        }
        let next_at = self.start_ns + ((self.issued as f64) * 1e9 / r) as u64;
        next_at.saturating_sub(now_ns).min(idle_ns)
    }

    /// Sends requests on free publishers while events are due.
    pub fn pump(&mut self, eng: &mut Engine) {
        for i in 0..self.toks.len() {
            if self.inflight[i].is_some() {
                continue;
            }
            let now = eng.now_ns();
            let due = self.due(now);
            if self.issued >= due {
                return;
            }
            let n = (self.cfg.batch as u64).min(due - self.issued).max(1) as usize;
            let n = if self.cfg.rate.is_none() {
                self.cfg.batch
            } else {
                n
            };
            let (req, chans) = self.build(n, now);
            if eng.http_send(self.toks[i], req) {
                self.issued += n as u64;
                self.inflight[i] = Some(chans);
            }
        }
    }

    fn build(&mut self, n: usize, now_ns: u64) -> (Vec<u8>, Vec<u32>) {
        let mut body = Vec::with_capacity(n * (self.cfg.payload + 96) + 16);
        let mut chans = Vec::with_capacity(n);
        let batch = self.cfg.batch > 1;
        if batch {
            body.extend_from_slice(b"{\"batch\":[");
        }
        for k in 0..n {
            let ch = self.next_channel;
            self.next_channel = (self.next_channel + 1) % self.cfg.channels.len();
            let seq = self.ch_seq[ch];
            self.ch_seq[ch] += 1;
            chans.push(ch as u32);
            if k > 0 {
                body.push(b',');
            }
            let mut data = format!("{seq} {now_ns} ");
            if data.len() < self.cfg.payload {
                data.push_str(&self.pad[..self.cfg.payload - data.len()]);
            }
            let _ = write!(
                Bytes(&mut body),
                "{{\"name\":\"{}\",\"channel\":\"{}\",\"data\":\"{}\"}}",
                self.cfg.event_name,
                self.cfg.channels[ch],
                data
            );
        }
        if batch {
            body.extend_from_slice(b"]}");
        }
        (self.signer.request(batch, &body), chans)
    }

    /// Accounts for a response on `tok`; false if it is not one of ours.
    pub fn on_done(&mut self, tok: usize, status: u16, sent_ns: u64, now_ns: u64) -> bool {
        let Some(i) = self.toks.iter().position(|&t| t == tok) else {
            return false;
        };
        let Some(chans) = self.inflight[i].take() else {
            return true;
        };
        *self.statuses.entry(status).or_default() += 1;
        if (200..300).contains(&status) {
            self.requests_ok += 1;
            for c in chans {
                self.acked[c as usize] += 1;
            }
            self.last_ack_ns = now_ns;
            let _ = self
                .latency_us
                .record((now_ns.saturating_sub(sent_ns) / 1000).max(1));
        } else {
            self.requests_failed += 1;
            self.events_failed += chans.len() as u64;
        }
        true
    }
}
