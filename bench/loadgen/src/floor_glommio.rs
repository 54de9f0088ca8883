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

mod floor_api;

use clap::Parser;
use floor_api::Event;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::{TcpListener, TcpStream};
use glommio::LocalExecutorBuilder;
use std::os::unix::io::{FromRawFd, IntoRawFd};

#[derive(Parser)]
#[command(
    name = "floor-glommio",
    about = "HTTP trigger floor on glommio sockets"
)]
struct Cli {
    #[command(flatten)]
    listen: floor_api::Listen,
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

const OK: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}";
const BAD: &[u8] =
    b"HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}";

/// What the bytes at the start of the read buffer hold.
enum Request {
    /// A whole request of `len` bytes; `event` says whether its body parsed.
    Complete { len: usize, event: bool },
    /// Not all of it yet.
    Partial,
    /// Not HTTP: close.
    Bad,
}

fn parse(b: &[u8]) -> Request {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(b) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Request::Partial,
        Err(_) => return Request::Bad,
    };
    let mut content_length = 0usize;
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            match std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse().ok())
            {
                Some(n) => content_length = n,
                None => return Request::Bad,
            }
        }
    }
    let len = head_len + content_length;
    if b.len() < len {
        return Request::Partial;
    }
    let event = serde_json::from_slice::<Event>(&b[head_len..len]).is_ok();
    Request::Complete { len, event }
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
                Request::Bad => return,
                Request::Partial => break,
                Request::Complete { len, event } => {
                    if stream
                        .write_all(if event { OK } else { BAD })
                        .await
                        .is_err()
                    {
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
    let addr = cli
        .listen
        .addr()
        .expect("--host and --port make an address");
    HAND_OVER.store(cli.hand_over, std::sync::atomic::Ordering::Relaxed);
    // Every listener is bound before any accepts, so the kernel spreads
    // connections over all of them from the first one.
    let listeners: Vec<std::net::TcpListener> = (0..cli.executors.max(1))
        .map(|_| {
            let socket = socket2::Socket::new(
                socket2::Domain::for_address(addr),
                socket2::Type::STREAM,
                None,
            )
            .expect("socket");
            socket.set_reuse_port(true).expect("SO_REUSEPORT");
            socket.set_reuse_address(true).expect("SO_REUSEADDR");
            socket.bind(&addr.into()).expect("bind");
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
