//! The load generator's single-threaded event loop (mio, edge-triggered epoll).
//!
//! It owns every client socket: WebSocket subscribers (hand-written
//! handshake and framing, pings answered) and keep-alive HTTP publishers
//! (reconnecting transparently when the server closes after a response).
//! Deliveries of benchmark events are counted and timed inline, without
//! allocation; everything else a scenario needs to react to is reported as a
//! [`Note`] after each [`Engine::poll`].

use crate::tls::Wire;
use crate::wsframe;
use hdrhistogram::Histogram;
use memchr::memmem;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use slab::Slab;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

const SCRATCH: usize = 256 * 1024;

/// What happened that a scenario may care about.
#[derive(Debug, Clone, Copy)]
pub enum Note {
    /// `pusher:connection_established` arrived.
    WsReady { tok: usize, tag: u32 },
    /// `pusher_internal:subscription_succeeded` arrived.
    WsSubscribed { tok: usize, tag: u32 },
    /// The connection is gone (and removed from the engine).
    WsClosed {
        tag: u32,
        was_ready: bool,
        why: &'static str,
    },
    /// An HTTP connection finished connecting with nothing to send.
    HttpReady,
    /// A response arrived (status 0: the request failed without one).
    HttpDone {
        tok: usize,
        status: u16,
        sent_ns: u64,
    },
}

/// Counters updated inline on the hot path.
pub struct Stats {
    /// Benchmark events received by steady subscribers.
    pub deliveries: u64,
    /// Benchmark events received by other (churning) connections.
    pub other_deliveries: u64,
    /// Steady deliveries per WebSocket server (see [`Engine::new`]).
    pub deliveries_by_server: Vec<u64>,
    /// End-to-end latency of steady deliveries, microseconds.
    pub latency_us: Histogram<u64>,
    /// The same per WebSocket server (kept only when there are several).
    pub latency_by_server: Vec<Histogram<u64>>,
    pub last_delivery_ns: u64,
    pub pusher_errors: u64,
    pub first_pusher_error: Option<String>,
    pub pings_answered: u64,
    pub http_reconnects: u64,
    pub http_retries: u64,
}

#[derive(PartialEq, Eq, Clone, Copy, Debug)]
enum WsState {
    Connecting,
    Handshake,
    Open,
    Ready,
    Closing,
}

struct Ws {
    /// Plain, or TLS when the engine has a TLS configuration.
    sock: Wire,
    tag: u32,
    /// Index of the WebSocket server it is connected to.
    server: usize,
    steady: bool,
    state: WsState,
    inbuf: Vec<u8>,
    out: Vec<u8>,
    frag: Vec<u8>,
    received: u64,
}

#[derive(PartialEq, Eq, Clone, Copy, Debug)]
enum HttpState {
    Connecting,
    Idle,
    Busy,
}

struct Http {
    sock: TcpStream,
    state: HttpState,
    inbuf: Vec<u8>,
    out: Vec<u8>,
    /// The request in flight, kept to retry once on a stale keep-alive connection.
    req: Vec<u8>,
    sent_ns: u64,
    /// This connection already carried a response.
    reused: bool,
    retried: bool,
}

enum Conn {
    Ws(Ws),
    Http(Http),
}

/// What the HTTP parser found in the input buffer.
enum Parsed {
    Incomplete,
    Done {
        status: u16,
        consumed: usize,
        close: bool,
    },
    /// Head parsed, no length: the body runs to EOF.
    UntilEof {
        status: u16,
    },
    Bad,
}

pub struct Engine {
    poll: Poll,
    events: Option<Events>,
    conns: Slab<Conn>,
    scratch: Vec<u8>,
    base: Instant,
    /// The HTTP API's address (publishers).
    pub target: SocketAddr,
    /// WebSocket servers and their handshake requests.
    ws_servers: Vec<(SocketAddr, Vec<u8>)>,
    rng: u64,
    pub notes: Vec<Note>,
    pub stats: Stats,
    /// Loopback source addresses to spread connections over (index 0 = default route).
    pub sources: u32,
    next_source: u32,
    pub record_latency: bool,
    /// WebSocket connections speak TLS with this (`wss://`); publishers stay plain.
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

impl Engine {
    /// Publishers go to `target`; WebSocket connection `tag` goes to
    /// `ws_servers[tag % len]` (`target` alone when empty).
    pub fn new(target: SocketAddr, ws_servers: &[SocketAddr], key: &str) -> io::Result<Engine> {
        let handshake = |addr: SocketAddr| {
            format!(
                "GET /app/{key}?protocol=7&client=shardcast-loadgen&version=0.1 HTTP/1.1\r\n\
                 Host: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
            )
            .into_bytes()
        };
        let ws_servers: Vec<_> = if ws_servers.is_empty() {
            vec![target]
        } else {
            ws_servers.to_vec()
        }
        .into_iter()
        .map(|a| (a, handshake(a)))
        .collect();
        let histogram = || Histogram::new_with_bounds(1, 120_000_000, 3).unwrap();
        let n = ws_servers.len();
        Ok(Engine {
            poll: Poll::new()?,
            events: Some(Events::with_capacity(4096)),
            conns: Slab::with_capacity(1024),
            scratch: vec![0; SCRATCH],
            base: Instant::now(),
            target,
            stats: Stats {
                deliveries: 0,
                other_deliveries: 0,
                deliveries_by_server: vec![0; n],
                latency_us: histogram(),
                latency_by_server: if n > 1 {
                    (0..n).map(|_| histogram()).collect()
                } else {
                    Vec::new()
                },
                last_delivery_ns: 0,
                pusher_errors: 0,
                first_pusher_error: None,
                pings_answered: 0,
                http_reconnects: 0,
                http_retries: 0,
            },
            ws_servers,
            rng: 0x9e37_79b9_7f4a_7c15,
            notes: Vec::new(),
            sources: 1,
            next_source: 0,
            record_latency: true,
            tls: None,
        })
    }

    /// Nanoseconds since the engine started (the clock carried in payloads).
    #[inline]
    pub fn now_ns(&self) -> u64 {
        self.base.elapsed().as_nanos() as u64
    }

    fn mask(&mut self) -> [u8; 4] {
        // xorshift64
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        (x as u32).to_le_bytes()
    }

    /// How many WebSocket servers connections are spread over.
    pub fn ws_servers(&self) -> usize {
        self.ws_servers.len()
    }

    /// The WebSocket server connection `tag` goes to.
    pub fn ws_server_of(&self, tag: u32) -> usize {
        tag as usize % self.ws_servers.len()
    }

    /// Starts a WebSocket connection to server [`Engine::ws_server_of`]`(tag)`
    /// (source address chosen round-robin).
    pub fn ws_connect(&mut self, tag: u32, steady: bool) -> io::Result<usize> {
        let server = self.ws_server_of(tag);
        let src = self.next_source % self.sources.max(1);
        self.next_source = self.next_source.wrapping_add(1);
        let mut sock = connect_from(self.ws_servers[server].0, src)?;
        let entry = self.conns.vacant_entry();
        let tok = entry.key();
        self.poll.registry().register(
            &mut sock,
            Token(tok),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        let sock = match &self.tls {
            Some(config) => Wire::tls(sock, config)?,
            None => Wire::plain(sock),
        };
        entry.insert(Conn::Ws(Ws {
            sock,
            tag,
            server,
            steady,
            state: WsState::Connecting,
            inbuf: Vec::new(),
            out: Vec::new(),
            frag: Vec::new(),
            received: 0,
        }));
        Ok(tok)
    }

    /// Sends a masked text frame.
    pub fn ws_send_text(&mut self, tok: usize, text: &[u8]) {
        let mask = self.mask();
        let mut frame = Vec::with_capacity(text.len() + 14);
        wsframe::encode(&mut frame, 1, text, Some(mask));
        if let Some(Conn::Ws(ws)) = self.conns.get_mut(tok) {
            if ws.state != WsState::Closing {
                let _ = send(&mut ws.sock, &mut ws.out, &frame);
            }
        }
    }

    pub fn ws_subscribe(&mut self, tok: usize, channel: &str) {
        let msg =
            format!("{{\"event\":\"pusher:subscribe\",\"data\":{{\"channel\":\"{channel}\"}}}}");
        self.ws_send_text(tok, msg.as_bytes());
    }

    pub fn ws_unsubscribe(&mut self, tok: usize, channel: &str) {
        let msg =
            format!("{{\"event\":\"pusher:unsubscribe\",\"data\":{{\"channel\":\"{channel}\"}}}}");
        self.ws_send_text(tok, msg.as_bytes());
    }

    /// Sends a close frame (1000) and stops writing; the connection is
    /// reported closed when the server's close or EOF arrives.
    pub fn ws_close(&mut self, tok: usize) {
        let mask = self.mask();
        let mut frame = Vec::new();
        wsframe::encode(&mut frame, 8, &1000u16.to_be_bytes(), Some(mask));
        if let Some(Conn::Ws(ws)) = self.conns.get_mut(tok) {
            if ws.state != WsState::Closing {
                let _ = send(&mut ws.sock, &mut ws.out, &frame);
                ws.state = WsState::Closing;
                if ws.out.is_empty() {
                    ws.sock.shutdown_write();
                }
            }
        }
    }

    /// Opens a keep-alive HTTP connection; `HttpReady` follows.
    pub fn http_open(&mut self) -> io::Result<usize> {
        if self.tls.is_some() {
            return Err(io::Error::other(
                "publishers do not speak TLS: wss:// URLs are for the connections case",
            ));
        }
        let mut sock = connect_from(self.target, 0)?;
        let entry = self.conns.vacant_entry();
        let tok = entry.key();
        self.poll.registry().register(
            &mut sock,
            Token(tok),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        entry.insert(Conn::Http(Http {
            sock,
            state: HttpState::Connecting,
            inbuf: Vec::new(),
            out: Vec::new(),
            req: Vec::new(),
            sent_ns: 0,
            reused: false,
            retried: false,
        }));
        Ok(tok)
    }

    /// Sends one request (a full HTTP/1.1 request); false if one is in flight.
    pub fn http_send(&mut self, tok: usize, req: Vec<u8>) -> bool {
        let now = self.now_ns();
        let Some(Conn::Http(h)) = self.conns.get_mut(tok) else {
            return false;
        };
        match h.state {
            HttpState::Busy => false,
            HttpState::Connecting => {
                h.out.extend_from_slice(&req);
                h.req = req;
                h.sent_ns = now;
                h.retried = false;
                h.state = HttpState::Busy;
                true
            }
            HttpState::Idle => {
                h.sent_ns = now;
                h.retried = false;
                h.state = HttpState::Busy;
                let r = send(&mut h.sock, &mut h.out, &req);
                h.req = req;
                if r.is_err() {
                    self.http_broken(tok);
                }
                true
            }
        }
    }

    /// Waits for readiness (up to `timeout`) and handles it; notes are
    /// appended to `self.notes`.
    pub fn poll(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        let mut events = self.events.take().unwrap();
        let res = self.poll.poll(&mut events, timeout);
        if let Err(e) = res {
            self.events = Some(events);
            if e.kind() == io::ErrorKind::Interrupted {
                return Ok(());
            }
            return Err(e);
        }
        for ev in events.iter() {
            let tok = ev.token().0;
            let readable = ev.is_readable() || ev.is_error();
            let closed = ev.is_read_closed() || ev.is_error();
            let writable = ev.is_writable();
            match self.conns.get(tok) {
                Some(Conn::Ws(_)) => self.on_ws(tok, readable || closed, writable, closed),
                Some(Conn::Http(_)) => self.on_http(tok, readable || closed, writable, closed),
                None => {}
            }
        }
        self.events = Some(events);
        Ok(())
    }

    // ---- WebSocket ----

    fn ws_gone(&mut self, tok: usize, why: &'static str) {
        if let Some(Conn::Ws(ws)) = self.conns.try_remove(tok) {
            self.notes.push(Note::WsClosed {
                tag: ws.tag,
                was_ready: ws.state == WsState::Ready || ws.state == WsState::Closing,
                why,
            });
        }
    }

    fn on_ws(&mut self, tok: usize, readable: bool, writable: bool, closed: bool) {
        {
            let Some(Conn::Ws(ws)) = self.conns.get_mut(tok) else {
                return;
            };
            if ws.state == WsState::Connecting {
                match connected(&ws.sock.sock) {
                    Ok(true) => {
                        ws.state = WsState::Handshake;
                        let hs = &self.ws_servers[ws.server].1;
                        if send(&mut ws.sock, &mut ws.out, hs).is_err() {
                            return self.ws_gone(tok, "write failed");
                        }
                    }
                    Ok(false) => return,
                    Err(_) => return self.ws_gone(tok, "connect failed"),
                }
            }
            if writable && ws.sock.flush_tls().is_err() {
                return self.ws_gone(tok, "write failed");
            }
            if writable && !ws.out.is_empty() {
                if flush(&mut ws.sock, &mut ws.out).is_err() {
                    return self.ws_gone(tok, "write failed");
                }
                if ws.out.is_empty() && ws.state == WsState::Closing {
                    ws.sock.shutdown_write();
                }
            }
        }
        if !readable {
            return;
        }
        loop {
            let Some(Conn::Ws(ws)) = self.conns.get_mut(tok) else {
                return;
            };
            match ws.sock.read(&mut self.scratch) {
                Ok(0) => return self.ws_gone(tok, "server closed"),
                Ok(n) => {
                    // A short read drains a plain socket; with TLS, a
                    // record may leave more in the socket (edge-triggered).
                    let short = n < self.scratch.len() && !ws.sock.is_tls();
                    if let Err(why) = self.ws_input(tok, n) {
                        return self.ws_gone(tok, why);
                    }
                    if short && !closed {
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return self.ws_gone(tok, "read failed"),
            }
        }
    }

    /// Handles `self.scratch[..n]` for connection `tok`.
    fn ws_input(&mut self, tok: usize, n: usize) -> Result<(), &'static str> {
        let now = self.now_ns();
        let Engine {
            conns,
            scratch,
            notes,
            stats,
            rng,
            record_latency,
            ..
        } = self;
        let Some(Conn::Ws(ws)) = conns.get_mut(tok) else {
            return Ok(());
        };
        let fresh = &scratch[..n];
        let mut kept = std::mem::take(&mut ws.inbuf);
        let use_kept = if ws.state == WsState::Handshake {
            kept.extend_from_slice(fresh);
            let Some(end) = memmem::find(&kept, b"\r\n\r\n") else {
                if kept.len() > 16384 {
                    return Err("handshake response too large");
                }
                ws.inbuf = kept;
                return Ok(());
            };
            if !kept.starts_with(b"HTTP/1.1 101") {
                return Err("handshake refused");
            }
            kept.drain(..end + 4);
            ws.state = WsState::Open;
            true
        } else if !kept.is_empty() {
            kept.extend_from_slice(fresh);
            true
        } else {
            false
        };
        let buf: &[u8] = if use_kept { &kept } else { fresh };
        let mut pos = 0;
        let mut result = Ok(());
        while let Some(f) = wsframe::parse(&buf[pos..]) {
            let payload = &buf[pos + f.start..pos + f.end];
            let op = f.opcode();
            pos += f.end;
            match op {
                0..=2 => {
                    let complete: Option<&[u8]>;
                    let joined;
                    if op == 0 || !f.fin() || !ws.frag.is_empty() {
                        ws.frag.extend_from_slice(payload);
                        if !f.fin() {
                            continue;
                        }
                        joined = std::mem::take(&mut ws.frag);
                        complete = Some(&joined);
                    } else {
                        complete = Some(payload);
                    }
                    let msg = complete.unwrap();
                    match classify(msg) {
                        Msg::Bench { ts, .. } => {
                            ws.received += 1;
                            if ws.steady {
                                stats.deliveries += 1;
                                stats.deliveries_by_server[ws.server] += 1;
                                stats.last_delivery_ns = now;
                                if *record_latency {
                                    let us = (now.saturating_sub(ts) / 1000).max(1);
                                    let _ = stats.latency_us.record(us);
                                    if let Some(h) = stats.latency_by_server.get_mut(ws.server) {
                                        let _ = h.record(us);
                                    }
                                }
                            } else {
                                stats.other_deliveries += 1;
                            }
                        }
                        Msg::Ping => {
                            stats.pings_answered += 1;
                            let m = next_mask(rng);
                            let mut out = Vec::with_capacity(48);
                            wsframe::encode(
                                &mut out,
                                1,
                                b"{\"event\":\"pusher:pong\",\"data\":{}}",
                                Some(m),
                            );
                            if ws.state != WsState::Closing
                                && send(&mut ws.sock, &mut ws.out, &out).is_err()
                            {
                                result = Err("write failed");
                            }
                        }
                        Msg::Established => {
                            if ws.state == WsState::Open {
                                ws.state = WsState::Ready;
                                notes.push(Note::WsReady { tok, tag: ws.tag });
                            }
                        }
                        Msg::Subscribed => notes.push(Note::WsSubscribed { tok, tag: ws.tag }),
                        Msg::Error => {
                            stats.pusher_errors += 1;
                            if stats.first_pusher_error.is_none() {
                                stats.first_pusher_error =
                                    Some(String::from_utf8_lossy(msg).into_owned());
                            }
                        }
                        Msg::Other => {}
                    }
                }
                8 => {
                    // Server close: answer it (unless we started the close) and wait for EOF.
                    if ws.state != WsState::Closing {
                        let m = next_mask(rng);
                        let mut out = Vec::new();
                        let code = if payload.len() >= 2 {
                            &payload[..2]
                        } else {
                            &[]
                        };
                        wsframe::encode(&mut out, 8, code, Some(m));
                        let _ = send(&mut ws.sock, &mut ws.out, &out);
                        ws.state = WsState::Closing;
                    }
                    if ws.out.is_empty() {
                        ws.sock.shutdown_write();
                    }
                }
                9 => {
                    let m = next_mask(rng);
                    let mut out = Vec::new();
                    wsframe::encode(&mut out, 10, payload, Some(m));
                    if ws.state != WsState::Closing {
                        let _ = send(&mut ws.sock, &mut ws.out, &out);
                    }
                }
                _ => {}
            }
        }
        if pos < buf.len() {
            if !use_kept {
                ws.inbuf = buf[pos..].to_vec();
            } else {
                kept.drain(..pos);
                ws.inbuf = kept;
            }
        } else if use_kept && kept.capacity() <= 4096 {
            // Keep a small buffer around for the next partial frame.
            kept.clear();
            ws.inbuf = kept;
        }
        result
    }

    // ---- HTTP ----

    /// The connection broke: fail or retry the request in flight, then reconnect.
    fn http_broken(&mut self, tok: usize) {
        let Some(Conn::Http(h)) = self.conns.get_mut(tok) else {
            return;
        };
        let mut resend = None;
        if h.state == HttpState::Busy {
            if let Parsed::UntilEof { status } = parse_response(&h.inbuf) {
                self.notes.push(Note::HttpDone {
                    tok,
                    status,
                    sent_ns: h.sent_ns,
                });
            } else if h.inbuf.is_empty() && h.reused && !h.retried {
                // A keep-alive connection the server had already closed: resend once.
                resend = Some(std::mem::take(&mut h.req));
                self.stats.http_retries += 1;
            } else {
                self.notes.push(Note::HttpDone {
                    tok,
                    status: 0,
                    sent_ns: h.sent_ns,
                });
            }
        }
        if !self.http_new_socket(tok) {
            return;
        }
        let Some(Conn::Http(h)) = self.conns.get_mut(tok) else {
            return;
        };
        if let Some(req) = resend {
            // Busy while connecting: `out` is flushed once connected.
            h.out.extend_from_slice(&req);
            h.req = req;
            h.retried = true;
            h.state = HttpState::Busy;
        } else {
            h.state = HttpState::Connecting;
        }
    }

    fn on_http(&mut self, tok: usize, readable: bool, writable: bool, closed: bool) {
        {
            let Some(Conn::Http(h)) = self.conns.get_mut(tok) else {
                return;
            };
            let connecting = h.state == HttpState::Connecting
                || (h.state == HttpState::Busy
                    && !h.out.is_empty()
                    && !h.reused
                    && h.inbuf.is_empty());
            if connecting && (writable || readable) {
                match connected(&h.sock) {
                    Ok(true) => {
                        if h.state == HttpState::Connecting {
                            h.state = HttpState::Idle;
                            self.notes.push(Note::HttpReady);
                        }
                    }
                    Ok(false) => return,
                    Err(_) => {
                        // Could not connect at all: report the request failed.
                        if h.state == HttpState::Busy {
                            self.notes.push(Note::HttpDone {
                                tok,
                                status: 0,
                                sent_ns: h.sent_ns,
                            });
                        }
                        self.conns.remove(tok);
                        return;
                    }
                }
            }
            if (writable || connecting)
                && !h.out.is_empty()
                && flush(&mut h.sock, &mut h.out).is_err()
            {
                return self.http_broken(tok);
            }
        }
        if !readable {
            return;
        }
        loop {
            let Some(Conn::Http(h)) = self.conns.get_mut(tok) else {
                return;
            };
            match h.sock.read(&mut self.scratch) {
                Ok(0) => return self.http_broken(tok),
                Ok(n) => {
                    let short = n < self.scratch.len();
                    h.inbuf.extend_from_slice(&self.scratch[..n]);
                    loop {
                        match parse_response(&h.inbuf) {
                            Parsed::Done {
                                status,
                                consumed,
                                close,
                            } => {
                                h.inbuf.drain(..consumed);
                                if h.state == HttpState::Busy {
                                    h.state = HttpState::Idle;
                                    h.reused = true;
                                    self.notes.push(Note::HttpDone {
                                        tok,
                                        status,
                                        sent_ns: h.sent_ns,
                                    });
                                }
                                if close {
                                    // Reconnect now; any request the scenario sends
                                    // in the meantime waits for the new connection.
                                    h.inbuf.clear();
                                    h.state = HttpState::Idle;
                                    h.reused = false;
                                    return self.http_reconnect_idle(tok);
                                }
                            }
                            Parsed::Bad => return self.http_broken(tok),
                            Parsed::Incomplete | Parsed::UntilEof { .. } => break,
                        }
                    }
                    if short && !closed {
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return self.http_broken(tok),
            }
        }
    }

    /// Replaces an idle connection the server is closing with a new one.
    fn http_reconnect_idle(&mut self, tok: usize) {
        if !self.http_new_socket(tok) {
            return;
        }
        if let Some(Conn::Http(h)) = self.conns.get_mut(tok) {
            h.state = HttpState::Connecting;
        }
    }

    /// Connects a fresh socket in place of `tok`'s and clears its buffers;
    /// false (and the connection dropped) when that fails.
    fn http_new_socket(&mut self, tok: usize) -> bool {
        let target = self.target;
        let Some(Conn::Http(h)) = self.conns.get_mut(tok) else {
            return false;
        };
        self.stats.http_reconnects += 1;
        let registered = connect_from(target, 0).ok().and_then(|mut sock| {
            let _ = self.poll.registry().deregister(&mut h.sock);
            self.poll
                .registry()
                .register(
                    &mut sock,
                    Token(tok),
                    Interest::READABLE | Interest::WRITABLE,
                )
                .ok()
                .map(|()| sock)
        });
        match registered {
            Some(sock) => {
                h.sock = sock;
                h.inbuf.clear();
                h.out.clear();
                h.reused = false;
                true
            }
            None => {
                self.conns.remove(tok);
                false
            }
        }
    }
}

fn next_mask(rng: &mut u64) -> [u8; 4] {
    let mut x = *rng;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *rng = x;
    (x as u32).to_le_bytes()
}

/// Whether a non-blocking connect finished: Ok(false) while in progress.
fn connected(sock: &TcpStream) -> io::Result<bool> {
    if let Some(e) = sock.take_error()? {
        return Err(e);
    }
    match sock.peer_addr() {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(false),
        Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Writes `data` (after anything already queued); queues what the socket did not take.
fn send(sock: &mut impl Write, out: &mut Vec<u8>, data: &[u8]) -> io::Result<()> {
    if !out.is_empty() {
        out.extend_from_slice(data);
        return flush(sock, out);
    }
    let mut done = 0;
    while done < data.len() {
        match sock.write(&data[done..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::NotConnected => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    if done < data.len() {
        out.extend_from_slice(&data[done..]);
    }
    Ok(())
}

fn flush(sock: &mut impl Write, out: &mut Vec<u8>) -> io::Result<()> {
    let mut done = 0;
    while done < out.len() {
        match sock.write(&out[done..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::NotConnected => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    out.drain(..done);
    Ok(())
}

/// Non-blocking connect to `target` from loopback source address 127.0.0.(1+src)
/// (src 0: let the kernel pick). Beyond ~28k connections one source address
/// runs out of ephemeral ports.
pub fn connect_from(target: SocketAddr, src: u32) -> io::Result<TcpStream> {
    use socket2::{Domain, Protocol, Socket, Type};
    let sock = Socket::new(
        Domain::for_address(target),
        Type::STREAM,
        Some(Protocol::TCP),
    )?;
    sock.set_nonblocking(true)?;
    sock.set_nodelay(true)?;
    if src > 0 && target.ip().is_ipv4() {
        // IP_BIND_ADDRESS_NO_PORT: pick the port at connect() time, by 4-tuple.
        let one: libc::c_int = 1;
        // SAFETY: setsockopt on a socket we own with a valid int option.
        unsafe {
            libc::setsockopt(
                std::os::fd::AsRawFd::as_raw_fd(&sock),
                libc::IPPROTO_IP,
                24,
                &one as *const _ as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
        let ip = Ipv4Addr::new(127, 0, 0, 1 + src.min(253) as u8);
        sock.bind(&SocketAddr::new(IpAddr::V4(ip), 0).into())?;
    }
    match sock.connect(&target.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    Ok(TcpStream::from_std(sock.into()))
}

enum Msg {
    /// A benchmark event and the send time it carries.
    Bench {
        ts: u64,
    },
    Ping,
    Established,
    Subscribed,
    Error,
    Other,
}

fn parse_u64(b: &[u8]) -> (u64, usize) {
    let mut v = 0u64;
    let mut i = 0;
    while i < b.len() && b[i].is_ascii_digit() {
        v = v.wrapping_mul(10).wrapping_add((b[i] - b'0') as u64);
        i += 1;
    }
    (v, i)
}

/// Classifies a server text message. Benchmark events carry
/// `"data":"<seq> <send-time-ns> <padding>"`.
fn classify(p: &[u8]) -> Msg {
    static DATA: std::sync::OnceLock<memmem::Finder<'static>> = std::sync::OnceLock::new();
    let data = DATA.get_or_init(|| memmem::Finder::new(b"\"data\":\""));
    if let Some(i) = data.find(p) {
        let d = &p[i + 8..];
        if d.first().is_some_and(|c| c.is_ascii_digit()) {
            let (_seq, n) = parse_u64(d);
            let (ts, _) = parse_u64(&d[(n + 1).min(d.len())..]);
            return Msg::Bench { ts };
        }
    }
    if memmem::find(p, b"pusher:ping").is_some() {
        Msg::Ping
    } else if memmem::find(p, b"pusher:connection_established").is_some() {
        Msg::Established
    } else if memmem::find(p, b"pusher_internal:subscription_succeeded").is_some() {
        Msg::Subscribed
    } else if memmem::find(p, b"pusher:error").is_some()
        || memmem::find(p, b"pusher:subscription_error").is_some()
    {
        Msg::Error
    } else {
        Msg::Other
    }
}

/// Parses one HTTP response at the start of `b`.
fn parse_response(b: &[u8]) -> Parsed {
    if b.is_empty() {
        return Parsed::Incomplete;
    }
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut resp = httparse::Response::new(&mut headers);
    let head_len = match resp.parse(b) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Parsed::Incomplete,
        Err(_) => return Parsed::Bad,
    };
    let status = resp.code.unwrap_or(0);
    let mut content_length = None;
    let mut chunked = false;
    let mut close = resp.version == Some(0);
    for h in resp.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            content_length = std::str::from_utf8(h.value)
                .ok()
                .and_then(|s| s.trim().parse::<usize>().ok());
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = memmem::find(&h.value.to_ascii_lowercase(), b"chunked").is_some();
        } else if h.name.eq_ignore_ascii_case("connection") {
            let v = h.value.to_ascii_lowercase();
            if memmem::find(&v, b"close").is_some() {
                close = true;
            } else if memmem::find(&v, b"keep-alive").is_some() {
                close = false;
            }
        }
    }
    if chunked {
        let mut pos = head_len;
        loop {
            let Some(eol) = memmem::find(&b[pos..], b"\r\n") else {
                return Parsed::Incomplete;
            };
            let line = &b[pos..pos + eol];
            let hex = line.split(|&c| c == b';').next().unwrap_or(b"");
            let Ok(size) =
                usize::from_str_radix(std::str::from_utf8(hex).unwrap_or("x").trim(), 16)
            else {
                return Parsed::Bad;
            };
            pos += eol + 2;
            if size == 0 {
                // Trailers end with an empty line.
                let Some(end) = memmem::find(&b[pos..], b"\r\n") else {
                    return Parsed::Incomplete;
                };
                if end == 0 {
                    return Parsed::Done {
                        status,
                        consumed: pos + 2,
                        close,
                    };
                }
                let Some(end) = memmem::find(&b[pos..], b"\r\n\r\n") else {
                    return Parsed::Incomplete;
                };
                return Parsed::Done {
                    status,
                    consumed: pos + end + 4,
                    close,
                };
            }
            if b.len() < pos + size + 2 {
                return Parsed::Incomplete;
            }
            pos += size + 2;
        }
    }
    match content_length {
        Some(n) if b.len() >= head_len + n => Parsed::Done {
            status,
            consumed: head_len + n,
            close,
        },
        Some(_) => Parsed::Incomplete,
        None if status == 204 || status == 304 || (100..200).contains(&status) => Parsed::Done {
            status,
            consumed: head_len,
            close,
        },
        None => Parsed::UntilEof { status },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify_bench() {
        let m = br#"{"event":"bench","channel":"c0","data":"12 345678 xxxx"}"#;
        match classify(m) {
            Msg::Bench { ts } => assert_eq!(ts, 345678),
            _ => panic!(),
        }
        assert!(matches!(
            classify(br#"{"event":"pusher:ping","data":{}}"#),
            Msg::Ping
        ));
        assert!(matches!(
            classify(
                br#"{"event":"pusher:connection_established","data":"{\"socket_id\":\"1.2\"}"}"#
            ),
            Msg::Established
        ));
    }

    #[test]
    fn responses() {
        let r = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}HTTP/1.1";
        assert!(matches!(
            parse_response(r),
            Parsed::Done {
                status: 200,
                consumed: 40,
                close: false
            }
        ));
        let r = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n2\r\n{}\r\n0\r\n\r\n";
        assert!(matches!(
            parse_response(r),
            Parsed::Done {
                status: 200,
                close: true,
                ..
            }
        ));
        let r = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n{}";
        assert!(matches!(parse_response(r), Parsed::Incomplete));
    }
}
