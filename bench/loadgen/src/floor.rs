//! `floor`: the raw floor for benchmarks, the best this kernel allows for the
//! same workload.
//!
//! A minimal single-threaded epoll (mio) server with no protocol logic
//! beyond what the load generator needs: it upgrades `GET /app/{key}` to a
//! WebSocket, sends `pusher:connection_established`, answers
//! `pusher:subscribe` with `pusher_internal:subscription_succeeded`, answers
//! `pusher:ping`, and on `POST /apps/{id}/events` (or `/batch_events`; no
//! signature check, keep-alive) builds each event's frame once and writes it
//! to every subscriber of the channel with one `send` per delivery (no
//! coalescing), then answers `{}`.
//!
//! `floor --host 127.0.0.1 --port P` logs `listening on HOST:PORT` on stderr.

mod floor_api;
mod sys;
mod wsframe;

use base64::Engine as _;
use clap::Parser;
use floor_api::{Batch, Event};
use memchr::memmem;
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use sha1::{Digest, Sha1};
use slab::Slab;
use std::collections::HashMap;
use std::io::{self, Read, Write};

#[derive(Parser)]
#[command(
    name = "floor",
    about = "Raw-socket floor server for Pusher benchmarks"
)]
struct Cli {
    #[command(flatten)]
    listen: floor_api::Listen,
}

const LISTENER: Token = Token(usize::MAX - 1);
const SCRATCH: usize = 64 * 1024;

struct Client {
    sock: TcpStream,
    ws: bool,
    inbuf: Vec<u8>,
    out: Vec<u8>,
    channels: Vec<u32>,
}

struct Server {
    poll: Poll,
    clients: Slab<Client>,
    channel_ids: HashMap<String, u32>,
    members: Vec<Vec<usize>>,
    scratch: Vec<u8>,
}

fn main() -> io::Result<()> {
    let cli = Cli::parse();
    sys::raise_nofile();
    let addr = cli.listen.addr()?;
    let raw = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        None,
    )?;
    raw.set_reuse_address(true)?;
    raw.bind(&addr.into())?;
    raw.listen(4096)?;
    raw.set_nonblocking(true)?;
    let mut listener = TcpListener::from_std(raw.into());
    let local = listener.local_addr()?;
    let mut server = Server {
        poll: Poll::new()?,
        clients: Slab::with_capacity(1024),
        channel_ids: HashMap::new(),
        members: Vec::new(),
        scratch: vec![0; SCRATCH],
    };
    server
        .poll
        .registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    eprintln!("listening on {local}");
    let mut events = Events::with_capacity(4096);
    loop {
        if let Err(e) = server.poll.poll(&mut events, None) {
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        for ev in events.iter() {
            if ev.token() == LISTENER {
                server.accept(&listener);
                continue;
            }
            let tok = ev.token().0;
            if ev.is_writable() {
                server.flush(tok);
            }
            if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                server.read(tok);
            }
        }
    }
}

impl Server {
    fn accept(&mut self, listener: &TcpListener) {
        loop {
            match listener.accept() {
                Ok((mut sock, _)) => {
                    let _ = sock.set_nodelay(true);
                    let entry = self.clients.vacant_entry();
                    if self
                        .poll
                        .registry()
                        .register(
                            &mut sock,
                            Token(entry.key()),
                            Interest::READABLE | Interest::WRITABLE,
                        )
                        .is_ok()
                    {
                        entry.insert(Client {
                            sock,
                            ws: false,
                            inbuf: Vec::new(),
                            out: Vec::new(),
                            channels: Vec::new(),
                        });
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return, // EMFILE and the like: try again on the next event
            }
        }
    }

    fn close(&mut self, tok: usize) {
        if let Some(c) = self.clients.try_remove(tok) {
            for ch in c.channels {
                let m = &mut self.members[ch as usize];
                if let Some(i) = m.iter().position(|&t| t == tok) {
                    m.swap_remove(i);
                }
            }
        }
    }

    /// Writes `data` to client `tok` with one send (queueing what the socket
    /// does not take); false if the connection broke.
    fn send(&mut self, tok: usize, data: &[u8]) -> bool {
        let Some(c) = self.clients.get_mut(tok) else {
            return false;
        };
        if !c.out.is_empty() {
            c.out.extend_from_slice(data);
            return true;
        }
        match c.sock.write(data) {
            Ok(n) if n == data.len() => true,
            Ok(n) => {
                c.out.extend_from_slice(&data[n..]);
                true
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                c.out.extend_from_slice(data);
                true
            }
            Err(_) => false,
        }
    }

    fn flush(&mut self, tok: usize) {
        let Some(c) = self.clients.get_mut(tok) else {
            return;
        };
        let mut done = 0;
        while done < c.out.len() {
            match c.sock.write(&c.out[done..]) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.close(tok);
                    return;
                }
            }
        }
        c.out.drain(..done);
        if c.out.is_empty() {
            c.out = Vec::new();
        }
    }

    fn read(&mut self, tok: usize) {
        loop {
            let Some(c) = self.clients.get_mut(tok) else {
                return;
            };
            match c.sock.read(&mut self.scratch) {
                Ok(0) => return self.close(tok),
                Ok(n) => {
                    c.inbuf.extend_from_slice(&self.scratch[..n]);
                    if !self.handle_input(tok) {
                        return self.close(tok);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return self.close(tok),
            }
        }
    }

    /// Handles everything complete in the client's input; false to close.
    fn handle_input(&mut self, tok: usize) -> bool {
        let mut buf = std::mem::take(&mut self.clients[tok].inbuf);
        let mut pos = 0;
        let mut ok = true;
        while ok {
            let ws = match self.clients.get(tok) {
                Some(c) => c.ws,
                None => return false,
            };
            if ws {
                let Some(f) = wsframe::parse(&buf[pos..]) else {
                    break;
                };
                let (start, end) = (pos + f.start, pos + f.end);
                if let Some(m) = f.mask {
                    wsframe::unmask(&mut buf[start..end], m);
                }
                pos = end;
                ok = self.ws_message(tok, f.opcode(), &buf[start..end]);
            } else {
                match self.http_request(tok, &buf[pos..]) {
                    Some(0) => break,
                    Some(used) => pos += used,
                    None => ok = false,
                }
            }
        }
        if let Some(c) = self.clients.get_mut(tok) {
            buf.drain(..pos);
            if buf.is_empty() {
                buf = Vec::new();
            }
            c.inbuf = buf;
        }
        ok
    }

    fn ws_message(&mut self, tok: usize, opcode: u8, payload: &[u8]) -> bool {
        match opcode {
            1 => {
                if memmem::find(payload, b"pusher:subscribe").is_some() {
                    let Some(ch) = channel_of(payload) else {
                        return true;
                    };
                    let id = self.channel_id(ch);
                    self.members[id as usize].push(tok);
                    self.clients[tok].channels.push(id);
                    let msg = format!(
                        "{{\"event\":\"pusher_internal:subscription_succeeded\",\"channel\":\"{ch}\",\"data\":\"{{}}\"}}"
                    );
                    let mut f = Vec::new();
                    wsframe::encode(&mut f, 1, msg.as_bytes(), None);
                    self.send(tok, &f)
                } else if memmem::find(payload, b"pusher:unsubscribe").is_some() {
                    if let Some(&id) = channel_of(payload).and_then(|ch| self.channel_ids.get(ch)) {
                        let m = &mut self.members[id as usize];
                        if let Some(i) = m.iter().position(|&t| t == tok) {
                            m.swap_remove(i);
                        }
                        let c = &mut self.clients[tok].channels;
                        if let Some(i) = c.iter().position(|&x| x == id) {
                            c.swap_remove(i);
                        }
                    }
                    true
                } else if memmem::find(payload, b"pusher:ping").is_some() {
                    let mut f = Vec::new();
                    wsframe::encode(&mut f, 1, b"{\"event\":\"pusher:pong\",\"data\":{}}", None);
                    self.send(tok, &f)
                } else {
                    true
                }
            }
            8 => {
                let mut f = Vec::new();
                let code = if payload.len() >= 2 {
                    &payload[..2]
                } else {
                    &[]
                };
                wsframe::encode(&mut f, 8, code, None);
                self.send(tok, &f);
                false
            }
            9 => {
                let mut f = Vec::new();
                wsframe::encode(&mut f, 10, payload, None);
                self.send(tok, &f)
            }
            _ => true,
        }
    }

    fn channel_id(&mut self, name: &str) -> u32 {
        if let Some(&id) = self.channel_ids.get(name) {
            return id;
        }
        let id = self.members.len() as u32;
        self.members.push(Vec::new());
        self.channel_ids.insert(name.to_string(), id);
        id
    }

    /// Handles one HTTP request at the start of `b`: Some(bytes used),
    /// Some(0) when incomplete, None to close.
    fn http_request(&mut self, tok: usize, b: &[u8]) -> Option<usize> {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut headers);
        let head_len = match req.parse(b) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => return Some(0),
            Err(_) => return None,
        };
        let method = req.method.unwrap_or("");
        let path = req.path.unwrap_or("");
        let mut ws_key = None;
        let mut content_length = 0usize;
        for h in req.headers.iter() {
            if h.name.eq_ignore_ascii_case("sec-websocket-key") {
                ws_key = Some(h.value);
            } else if h.name.eq_ignore_ascii_case("content-length") {
                content_length = std::str::from_utf8(h.value).ok()?.trim().parse().ok()?;
            }
        }
        if method == "GET" && path.starts_with("/app/") {
            let key = ws_key?;
            let mut sha = Sha1::new();
            sha.update(key);
            sha.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
            let accept = base64::engine::general_purpose::STANDARD.encode(sha.finalize());
            let mut out = format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
            )
            .into_bytes();
            let msg = format!(
                "{{\"event\":\"pusher:connection_established\",\"data\":\"{{\\\"socket_id\\\":\\\"1.{tok}\\\",\\\"activity_timeout\\\":120}}\"}}"
            );
            wsframe::encode(&mut out, 1, msg.as_bytes(), None);
            self.clients[tok].ws = true;
            return if self.send(tok, &out) {
                Some(head_len)
            } else {
                None
            };
        }
        if b.len() < head_len + content_length {
            return Some(0);
        }
        let body = &b[head_len..head_len + content_length];
        let status = if method == "POST" && path.starts_with("/apps/") {
            let route = path.split('?').next().unwrap_or("");
            if route.ends_with("/batch_events") {
                match serde_json::from_slice::<Batch>(body) {
                    Ok(batch) => {
                        for ev in &batch.batch {
                            self.publish(ev);
                        }
                        "200 OK"
                    }
                    Err(_) => "400 Bad Request",
                }
            } else if route.ends_with("/events") {
                match serde_json::from_slice::<Event>(body) {
                    Ok(ev) => {
                        self.publish(&ev);
                        "200 OK"
                    }
                    Err(_) => "400 Bad Request",
                }
            } else {
                "404 Not Found"
            }
        } else if method == "GET" {
            "200 OK"
        } else {
            "404 Not Found"
        };
        let resp = format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{{}}"
        );
        if self.send(tok, resp.as_bytes()) {
            Some(head_len + content_length)
        } else {
            None
        }
    }

    /// Builds the event's frame once per channel and sends it to every subscriber.
    fn publish(&mut self, ev: &Event) {
        let mut targets: Vec<&str> = Vec::new();
        if let Some(c) = &ev.channel {
            targets.push(c);
        }
        if let Some(cs) = &ev.channels {
            targets.extend(cs.iter().map(|c| c.as_ref()));
        }
        for ch in targets {
            let Some(&id) = self.channel_ids.get(ch) else {
                continue;
            };
            let mut payload = Vec::with_capacity(ev.data.len() + ch.len() + ev.name.len() + 48);
            payload.extend_from_slice(b"{\"event\":");
            let _ = serde_json::to_writer(&mut payload, ev.name.as_ref());
            payload.extend_from_slice(b",\"channel\":");
            let _ = serde_json::to_writer(&mut payload, ch);
            payload.extend_from_slice(b",\"data\":");
            let _ = serde_json::to_writer(&mut payload, ev.data.as_ref());
            payload.push(b'}');
            let mut frame = Vec::with_capacity(payload.len() + 10);
            wsframe::encode(&mut frame, 1, &payload, None);
            let members = std::mem::take(&mut self.members[id as usize]);
            let mut broken = Vec::new();
            for &t in &members {
                if !self.send(t, &frame) {
                    broken.push(t);
                }
            }
            self.members[id as usize] = members;
            for t in broken {
                self.close(t);
            }
        }
    }
}

/// The `"channel":"..."` value of a subscribe/unsubscribe message.
fn channel_of(payload: &[u8]) -> Option<&str> {
    let i = memmem::find(payload, b"\"channel\":\"")? + 11;
    let len = memchr::memchr(b'"', &payload[i..])?;
    std::str::from_utf8(&payload[i..i + len]).ok()
}
