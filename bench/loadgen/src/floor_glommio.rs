//! `floor-glommio`: the HTTP trigger floor on glommio's own sockets.
//!
//! The `floor` binary answers triggers from a mio (epoll) loop; shardcast
//! answers them from glommio, whose `TcpStream` waits for each keep-alive
//! read with a one-shot io_uring poll. This binary does what `floor` does for
//! a trigger (parse the head with httparse, the body with serde_json, answer
//! `{}`) and nothing else, on one glommio executor with the same stream
//! calls shardcast makes, so `bench.sh --targets "shardcast floor
//! floor-glommio" --cases trigger` splits shardcast's distance from the floor
//! into glommio's I/O model (floor -> floor-glommio) and shardcast's own work
//! (floor-glommio -> shardcast). It serves HTTP only (no WebSocket).
//! `--executors 2` under `taskset -c 0` is the same for `shardcast --cpus
//! 0,0`: two executors on one CPU, with no mesh and no Pusher work between
//! them. `--hand-over` makes each yield the CPU after every response (an
//! experiment README's Scaling section reports; shardcast does not do it).
//!
//! `floor-glommio --host 127.0.0.1 --port P` logs `listening on HOST:PORT`.

use clap::Parser;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::{TcpListener, TcpStream};
use glommio::LocalExecutorBuilder;
use serde::Deserialize;
use std::borrow::Cow;
use std::os::unix::io::{FromRawFd, IntoRawFd};

#[derive(Parser)]
#[command(
    name = "floor-glommio",
    about = "HTTP trigger floor on glommio sockets"
)]
struct Cli {
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    #[arg(long, default_value_t = 6001)]
    port: u16,
    /// Executors (threads) sharing the port (SO_REUSEPORT), all on the CPUs
    /// the process may use: with `taskset -c 0 ... --executors 2` the same
    /// two-threads-on-one-CPU shape as `shardcast --cpus 0,0`.
    #[arg(long, default_value_t = 1)]
    executors: usize,
    /// Yield the CPU (`sched_yield`) after each response, so executors
    /// sharing a CPU take turns per request rather than per scheduler tick.
    #[arg(long)]
    hand_over: bool,
}

#[derive(Deserialize)]
struct Event<'a> {
    #[serde(borrow)]
    #[allow(dead_code)]
    name: Cow<'a, str>,
    #[serde(borrow, default)]
    #[allow(dead_code)]
    channel: Option<Cow<'a, str>>,
    #[serde(borrow)]
    #[allow(dead_code)]
    data: Cow<'a, str>,
}

const OK: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}";
const BAD: &[u8] =
    b"HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}";

/// Parses one request at the start of `b`: Some(Some((used, ok))) when
/// complete, Some(None) when more bytes are needed, None to close.
fn parse(b: &[u8]) -> Option<Option<(usize, bool)>> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(b) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Some(None),
        Err(_) => return None,
    };
    let mut content_length = 0usize;
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            content_length = std::str::from_utf8(h.value).ok()?.trim().parse().ok()?;
        }
    }
    if b.len() < head_len + content_length {
        return Some(None);
    }
    let body = &b[head_len..head_len + content_length];
    let ok = serde_json::from_slice::<Event>(body).is_ok();
    Some(Some((head_len + content_length, ok)))
}

/// Set by `--hand-over`: yield the CPU after each response.
static HAND_OVER: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn hand_over() {
    if HAND_OVER.load(std::sync::atomic::Ordering::Relaxed) {
        // SAFETY: sched_yield takes no arguments.
        unsafe {
            libc::sched_yield();
        }
    }
}

async fn serve(mut stream: TcpStream) {
    let mut buf = vec![0u8; 16 * 1024];
    let mut filled = 0;
    loop {
        let n = match stream.read(&mut buf[filled..]).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        filled += n;
        let mut used = 0;
        loop {
            match parse(&buf[used..filled]) {
                None => return,
                Some(None) => break,
                Some(Some((len, ok))) => {
                    if stream.write_all(if ok { OK } else { BAD }).await.is_err() {
                        return;
                    }
                    used += len;
                    hand_over();
                }
            }
        }
        buf.copy_within(used..filled, 0);
        filled -= used;
        if filled == buf.len() {
            return;
        }
    }
}

fn main() {
    let cli = Cli::parse();
    let addr = format!("{}:{}", cli.host, cli.port);
    HAND_OVER.store(cli.hand_over, std::sync::atomic::Ordering::Relaxed);
    // Every listener is bound before any accepts, so the kernel spreads
    // connections over all of them from the first one.
    let listeners: Vec<std::net::TcpListener> = (0..cli.executors.max(1))
        .map(|_| {
            let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
                .expect("socket");
            socket.set_reuse_port(true).expect("SO_REUSEPORT");
            socket.set_reuse_address(true).expect("SO_REUSEADDR");
            let sa: std::net::SocketAddr = addr.parse().expect("address");
            socket.bind(&sa.into()).expect("bind");
            socket.listen(1024).expect("listen");
            socket.into()
        })
        .collect();
    eprintln!("listening on {addr}");
    let executors: Vec<_> = listeners
        .into_iter()
        .map(|std_listener| {
            LocalExecutorBuilder::default()
                .spawn(move || async move {
                    // SAFETY: the descriptor is a bound, listening socket this
                    // executor now owns alone.
                    let listener = unsafe { TcpListener::from_raw_fd(std_listener.into_raw_fd()) };
                    loop {
                        match listener.accept().await {
                            Ok(stream) => {
                                let _ = stream.set_nodelay(true);
                                glommio::spawn_local(serve(stream)).detach();
                            }
                            Err(e) => eprintln!("accept: {e}"),
                        }
                    }
                })
                .expect("executor")
        })
        .collect();
    for executor in executors {
        executor.join().expect("join");
    }
}
