//! The task that drives one WebSocket connection.
//!
//! `ConnTask` is a hand-written future, one per connection, that does both
//! jobs on its socket: it reads into the shard's shared scratch buffer and
//! decodes frames (keeping only an incomplete frame's bytes, so an idle
//! socket owns no buffer), and it writes the connection's queue with one
//! vectored `sendmsg` per drain, so frames that piled up go out together.
//! Other code reaches the connection only through its queue and waker in
//! the shard's `ConnTable`.

use super::conns::{ConnKey, Phase};
use super::delivery::Source;
use super::session;
use super::shard::Shard;
use crate::errors::ClientError;
use crate::net::Stream;
use crate::socket_id::SocketId;
use crate::ws::frame::{Decoder, Frame, Inbound};
use crate::ws::handshake;
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

/// Reads (or backlog slices) handled per poll before yielding to other tasks.
const READ_BUDGET: usize = 16;
/// Client messages handled per read before the rest waits for the next
/// step: one read can hold a thousand small frames, and a burst of them
/// must not keep the shard from its other connections.
const MESSAGE_BUDGET: usize = 32;

/// Answers an accepted upgrade and runs the connection until it closes.
/// `leftover` holds bytes the client sent right after its request head;
/// `client` is the address counted against `server.limits.max_connections_per_ip`
/// (`None` when that limit is off).
pub async fn serve(
    shard: Rc<Shard>,
    mut socket: Stream,
    upgrade: handshake::Upgrade,
    leftover: Vec<u8>,
    client: Option<IpAddr>,
) {
    // The registry is borrowed for this line only, never across the awaits.
    let decided = handshake::admit(&shard.apps.registry(), &upgrade);
    let admitted = match decided {
        Ok(_) if shard.is_draining() => Err(ClientError::ShuttingDown),
        Ok(app) => shard
            .admit_connection(app, client)
            .await
            .map(|ip| (app, ip)),
        Err(e) => Err(e),
    };
    let response = handshake::accept_response(&upgrade.ws_key);
    let (app, ip) = match admitted {
        Ok(admitted) => admitted,
        Err(why) => {
            shard.counters.refused(why.code());
            if !matches!(
                why,
                ClientError::ShuttingDown
                    | ClientError::OverCapacity
                    | ClientError::OverQuota
                    | ClientError::OverIpLimit(_)
            ) {
                // Quota refusals are logged where they are decided.
                crate::warn_limited!(
                    "shard {}: connection refused ({}): {why}",
                    shard.id,
                    why.code()
                );
            }
            return refuse(socket, response, why).await;
        }
    };
    if socket.write_all(&response).await.is_err() {
        shard.release_connection(app, ip);
        return;
    }
    // A signal may have come during the awaits above, and this shard's
    // drain may already have closed everyone it had: refuse here, with no
    // await before `session::open`, so no connection is ever admitted
    // after the drain began (one admitted before it is closed by the drain).
    if shard.is_draining() {
        shard.release_connection(app, ip);
        shard.counters.refused(ClientError::ShuttingDown.code());
        return refuse(socket, Vec::new(), ClientError::ShuttingDown).await;
    }
    // The app may have been disabled or deleted during the awaits above,
    // after its connections were closed (`pusher::apps`): refuse here too.
    if !shard.apps.serves(app) {
        shard.release_connection(app, ip);
        shard.counters.refused(ClientError::AppDisabled.code());
        return refuse(socket, Vec::new(), ClientError::AppDisabled).await;
    }
    let (key, _) = session::open(&shard, app, socket.direct_fd(), ip);
    let mut task = ConnTask {
        shard,
        socket,
        key,
        partial: Vec::new(),
        partial_start: 0,
        backlog: false,
        decoder: Decoder::default(),
        write_closed: false,
        peer_closed: false,
    };
    if !leftover.is_empty() {
        task.take_input(leftover.len(), Some(leftover));
    }
    // The connection runs as a task of its own, so the (much larger) state
    // of the HTTP code that accepted it is freed now.
    crate::runtime::spawn_in(crate::runtime::Queue::Connections, task);
}

/// Completes the handshake (`response`; empty when it was already sent)
/// only to say why the connection is refused: `pusher:error` with the
/// code, then a close frame with the same code.
async fn refuse(mut socket: Stream, mut response: Vec<u8>, why: ClientError) {
    let message = why.to_string();
    response.extend_from_slice(crate::pusher::messages::error(Some(why.code()), &message).bytes());
    response.extend_from_slice(Frame::close(why.code(), &message).bytes());
    if socket.write_all(&response).await.is_ok() {
        socket.shutdown_write();
        // Wait briefly for the client's close so it reads our frames before
        // the socket goes away.
        let mut sink = [0u8; 512];
        let linger = async { while matches!(socket.read(&mut sink).await, Ok(n) if n > 0) {} };
        futures_lite::future::or(linger, crate::runtime::sleep(Duration::from_secs(2))).await;
    }
}

struct ConnTask {
    shard: Rc<Shard>,
    socket: Stream,
    key: ConnKey,
    /// Bytes kept between reads: an incomplete frame, or complete frames
    /// not yet handled (a burst beyond [`MESSAGE_BUDGET`]); usually empty.
    partial: Vec<u8>,
    /// Where the unhandled bytes of `partial` start.
    partial_start: u32,
    /// `partial` may hold complete frames to handle before reading more.
    backlog: bool,
    decoder: Decoder,
    /// The close frame went out and FIN was sent; only waiting for the peer.
    write_closed: bool,
    /// The client's close frame arrived: once our queue (with the echo or
    /// our own close frame) is written, the close handshake is complete.
    peer_closed: bool,
}

enum Step {
    Continue,
    Pending,
    Done,
}

impl Future for ConnTask {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        // The source of this client's own publications (client events),
        // worked out here rather than kept: an idle task stays small.
        let source = {
            let mut conns = this.shard.conns.borrow_mut();
            let Some(conn) = conns.get_mut(this.key) else {
                return Poll::Ready(());
            };
            if conn.phase == Phase::Abort {
                return Poll::Ready(());
            }
            if !conn.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                conn.waker = Some(cx.waker().clone());
            }
            Source::client(SocketId {
                nonce: this.shard.nonce,
                shard: this.shard.id,
                slot: this.key,
                serial: conn.serial,
            })
        };
        for _ in 0..READ_BUDGET {
            if this.flush(cx).is_err() {
                return Poll::Ready(());
            }
            if !this.write_closed && this.closing_and_flushed() {
                this.socket.shutdown_write();
                this.write_closed = true;
            }
            if this.write_closed && this.peer_closed {
                return Poll::Ready(());
            }
            if this.shard.poll_room(cx, source).is_pending() {
                // The shard's mailboxes are backed up: read nothing more
                // until they drain (TCP slows the client down).
                return Poll::Pending;
            }
            let step = if this.backlog {
                this.take_input_from(&mut []);
                Step::Continue
            } else {
                this.read(cx)
            };
            match step {
                Step::Continue => {}
                Step::Pending => return Poll::Pending,
                Step::Done => return Poll::Ready(()),
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

/// The connection's task has ended: mark it gone at once (nothing more is
/// queued to it) and hand its teardown to the shard's reaper, so a crowd
/// dropping at once is torn down in slices. The socket closes as the task's
/// fields drop. (A `Drop` rather than an async wrapper keeps the task's
/// future as small as `ConnTask` itself.)
impl Drop for ConnTask {
    fn drop(&mut self) {
        let (shard, key) = (self.shard.clone(), self.key);
        self.shard.conns.borrow_mut().retire(key);
        self.shard.reaper.defer(move || session::close(&shard, key));
    }
}

impl ConnTask {
    fn closing_and_flushed(&self) -> bool {
        let conns = self.shard.conns.borrow();
        !self.socket.has_pending_output()
            && conns
                .get(self.key)
                .is_some_and(|c| matches!(c.phase, Phase::Closing { .. }) && c.out.is_empty())
    }

    /// Writes as much of the queue as the socket takes; when it is full,
    /// registers for room so the task is woken to continue.
    fn flush(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        let socket = &mut self.socket;
        self.shard
            .conns
            .borrow_mut()
            .flush_with(self.key, |slices| match socket.try_write_vectored(slices) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    match socket.poll_write_vectored(cx, slices) {
                        Poll::Ready(result) => result,
                        Poll::Pending => Err(e),
                    }
                }
                other => other,
            })?;
        // TLS records encrypted but not yet taken by the socket.
        if let Poll::Ready(Err(e)) = socket.poll_write_pending(cx) {
            return Err(e);
        }
        Ok(())
    }

    /// Reads once and handles what arrived.
    fn read(&mut self, cx: &mut Context<'_>) -> Step {
        let shard = self.shard.clone();
        let mut scratch = shard.scratch.borrow_mut();
        match self.socket.poll_read(cx, &mut scratch) {
            Poll::Pending => Step::Pending,
            Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => Step::Done,
            Poll::Ready(Ok(_)) if self.peer_closed => Step::Continue,
            Poll::Ready(Ok(n)) => {
                shard.counters.read_bytes(n);
                self.take_input_from(&mut scratch[..n]);
                Step::Continue
            }
        }
    }

    fn take_input(&mut self, n: usize, owned: Option<Vec<u8>>) {
        let mut owned = owned.unwrap_or_default();
        self.take_input_from(&mut owned[..n]);
    }

    /// Decodes and handles up to [`MESSAGE_BUDGET`] frames from the kept
    /// bytes followed by `fresh`; keeps the rest (an incomplete frame, or
    /// frames over the budget, which make a backlog) for the next step.
    fn take_input_from(&mut self, fresh: &mut [u8]) {
        let start = self.partial_start as usize;
        if start == self.partial.len() {
            // Nothing kept: decode straight from the read buffer.
            self.partial.clear();
            self.partial_start = 0;
            let used = self.decode_some(fresh);
            if used < fresh.len() {
                self.partial.extend_from_slice(&fresh[used..]);
            }
            return;
        }
        let start = if fresh.is_empty() {
            start
        } else {
            // Only an incomplete frame is kept when reading: compact it first.
            self.partial.drain(..start);
            self.partial.extend_from_slice(fresh);
            0
        };
        let mut kept = std::mem::take(&mut self.partial);
        let used = self.decode_some(&mut kept[start..]);
        self.partial = kept;
        // Kept bytes stay under the read buffer plus one frame (u32 is ample).
        let start = start + used;
        if start == self.partial.len() {
            self.partial = Vec::new();
            self.partial_start = 0;
        } else {
            self.partial_start = start as u32;
        }
    }

    /// Handles complete frames at the start of `buf`, at most
    /// [`MESSAGE_BUDGET`]; returns the bytes used and sets `backlog` when
    /// it stopped at the budget.
    fn decode_some(&mut self, buf: &mut [u8]) -> usize {
        let max = self.shard.config.limits.max_frame_bytes;
        let mut pos = 0;
        self.backlog = false;
        for _ in 0..MESSAGE_BUDGET {
            match self.decoder.decode(&mut buf[pos..], max) {
                Ok(None) => return pos,
                Ok(Some((message, used))) => {
                    pos += used;
                    self.shard.counters.message_in();
                    if handle(&self.shard, self.key, message) {
                        self.peer_closed = true;
                        return buf.len();
                    }
                }
                Err(e) => {
                    let now = self.shard.now();
                    self.shard
                        .conns
                        .borrow_mut()
                        .close_ws(self.key, e.code, e.reason, now);
                    return buf.len();
                }
            }
        }
        self.backlog = pos < buf.len();
        pos
    }
}

/// Handles one decoded message; true when it was the client's close frame.
/// Once the connection is closing, other messages are read and ignored.
fn handle(shard: &Rc<Shard>, key: ConnKey, message: Inbound<'_>) -> bool {
    let now = shard.now();
    let open = {
        let mut conns = shard.conns.borrow_mut();
        conns.touch(key, now);
        conns.get(key).is_some_and(|c| c.phase == Phase::Open)
    };
    match message {
        Inbound::Close(code) => {
            // Echo the client's code (RFC 6455 5.5.1) unless we closed first.
            if open {
                shard
                    .conns
                    .borrow_mut()
                    .close_ws(key, code.unwrap_or(1000), "", now);
            }
            return true;
        }
        _ if !open => {}
        Inbound::Text(text) => session::handle_text(shard, key, text),
        Inbound::Ping(payload) => shard.conns.borrow_mut().reply(key, &Frame::pong(payload)),
        Inbound::Pong | Inbound::Fragment => {}
    }
    false
}
