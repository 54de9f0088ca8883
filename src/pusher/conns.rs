//! `ConnTable`: a shard's WebSocket connections, indexed by slab slot.
//!
//! A [`Conn`] holds what other code on the shard needs to reach a socket
//! without owning it: its app and subscriptions, its outbound queue of
//! shared [`Frame`]s, the waker of the task that writes them, and its
//! activity clock. The socket itself belongs to that task (`pusher::connection`).
//! An idle connection owns no buffers: an empty `VecDeque` allocates nothing.

use crate::apps::AppIdx;
use crate::errors::ClientError;
use crate::pusher::channels::SubList;
use crate::pusher::messages;
use crate::socket_id::SocketId;
use crate::ws::frame::Frame;
use bytes::Bytes;
use slab::Slab;
use smallvec::SmallVec;
use std::collections::{HashMap, VecDeque};
use std::io::{self, IoSlice};
use std::task::Waker;

/// Frames gathered into one `sendmsg`.
const MAX_IOVECS: usize = 64;
/// Once the shard's write queues together pass their budget, a connection
/// with more than this queued is closed as a slow consumer on its next
/// frame; connections that keep up (less queued) still get theirs.
pub const FAIR_QUEUE_BYTES: usize = 64 * 1024;

/// Slot of a connection in its shard's [`ConnTable`].
pub type ConnKey = u32;
/// Slot of a channel in its shard's `ChannelTable`.
pub type ChannelId = u32;

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Open,
    /// A close frame is queued; nothing more is accepted. `since` is the
    /// shard clock when closing began, to bound how long it may take.
    Closing {
        since: u32,
    },
    /// Give up on a clean close and drop the socket now.
    Abort,
    /// The socket is gone; the connection still holds its slot while it
    /// leaves its channels in slices (`session::close`). Nothing is queued
    /// to it and no socket id finds it.
    Gone,
}

/// `Conn::fd` of a connection the flusher must not write to directly.
pub const NO_FD: i32 = -1;

pub struct Conn {
    /// This connection's own slot (so a queue can name it in the flush list).
    pub key: ConnKey,
    /// The socket's file descriptor, for writes by the shard's flusher. Valid
    /// while the connection is in the table: its task removes it before
    /// closing the socket. [`NO_FD`] when the connection's own task writes
    /// its frames (TLS encrypts per connection).
    pub fd: i32,
    /// The socket buffer was full: the connection's task waits for room and
    /// writes the queue itself until it drains.
    pub blocked: bool,
    /// The connection holds a slot of its app's `max_connections`
    /// (`admission::Admitted::app_slot`).
    pub app_slot: bool,
    pub serial: u32,
    pub app: AppIdx,
    /// The channels this connection is subscribed to on this shard (the
    /// connection's side of the `ChannelTable` index).
    pub subs: SubList,
    /// Frames waiting to be written, oldest first.
    pub out: VecDeque<Bytes>,
    /// Bytes in `out` not yet written.
    pub out_bytes: u32,
    /// How much of the front frame is already written.
    pub out_offset: u32,
    pub waker: Option<Waker>,
    /// Shard clock (seconds) of the last frame from the client.
    pub last_seen: u32,
    /// Shard clock when the server pinged and still awaits an answer.
    pub ping_sent: Option<u32>,
    pub phase: Phase,
    /// The close code the server sent (or echoed), for metrics.
    pub close_code: Option<u16>,
    /// What only some connections need; `None` keeps idle ones small.
    pub extra: Option<Box<ConnExtra>>,
}

/// Per-connection state beyond plain subscriptions.
#[derive(Default)]
pub struct ConnExtra {
    /// The user this connection signed in as (`pusher:signin`).
    pub user_id: Option<Box<str>>,
    /// Users this connection watches (from its sign-in `user_data`).
    pub watchlist: Vec<Box<str>>,
    /// Channels whose owner has not answered the join yet.
    pub pending: Vec<Box<str>>,
    /// Client events rate limit: the current second and the count in it.
    pub events_second: u32,
    pub events_in_second: u32,
    /// Shard clock by which the connection must sign in (app setting).
    pub sign_in_by: Option<u32>,
    /// The count this connection's client address holds at its owner
    /// (`server.limits.max_connections_per_ip`), given back when it closes.
    pub ip: Option<super::admission::IpSlot>,
}

impl Conn {
    pub fn extra_mut(&mut self) -> &mut ConnExtra {
        self.extra.get_or_insert_with(Default::default)
    }

    pub fn user_id(&self) -> Option<&str> {
        self.extra.as_ref()?.user_id.as_deref()
    }

    fn wake(&mut self) {
        if let Some(w) = &self.waker {
            w.wake_by_ref();
        }
    }
}

/// Connections whose queue went from empty to not empty, for the shard's
/// flusher task to write in one pass: frames queued between two passes go
/// out in one `sendmsg` per connection, and no per-connection task is woken.
///
/// Connections marked by bulk delivery (huge channels, see
/// `pusher::delivery`) go to a list of their own, written by a flusher in
/// the bulk task queue, so frames for everyone else never wait behind
/// thousands of a huge channel's sockets.
#[derive(Default)]
pub struct FlushList {
    pub keys: Vec<ConnKey>,
    pub waker: Option<Waker>,
    pub bulk: Vec<ConnKey>,
    pub bulk_waker: Option<Waker>,
    /// Bytes waiting on every connection together (the sum of `out_bytes`),
    /// judged against the shard's write budget.
    pub queued_bytes: usize,
}

impl FlushList {
    fn mark(&mut self, key: ConnKey, bulk: bool) {
        let (keys, waker) = if bulk {
            (&mut self.bulk, &self.bulk_waker)
        } else {
            (&mut self.keys, &self.waker)
        };
        if keys.is_empty() {
            if let Some(w) = waker {
                w.wake_by_ref();
            }
        }
        keys.push(key);
    }
}

pub struct ConnTable {
    slab: Slab<Conn>,
    /// Signed-in connections by (app, user id), so terminating a user's
    /// connections touches only theirs. User ids come from clients (signed
    /// by the app's backend), so the map keeps std's keyed hash.
    users: HashMap<(AppIdx, Box<str>), SmallVec<[ConnKey; 2]>>,
    pub flush: FlushList,
    next_serial: u32,
    /// Connections closed with 4100 because their queue overflowed (metrics).
    pub slow_consumer_closes: u64,
    /// The queue cap applied to replies (the server's `max_write_queue_kb`).
    pub reply_cap: usize,
    /// The budget for `flush.queued_bytes` (`max_write_queues_total_mb`).
    queue_budget: usize,
    /// Connections closed with 4100 because the shard's budget was spent
    /// and theirs was among the large queues (metrics).
    pub over_budget_closes: u64,
    /// Frames and bytes written to sockets (metrics).
    pub frames_out: u64,
    pub bytes_out: u64,
}

/// An empty table with no reply cap beyond the 1 GiB queue limit and no
/// shard-wide budget.
impl Default for ConnTable {
    fn default() -> Self {
        ConnTable::with_capacity(0, usize::MAX, usize::MAX)
    }
}

impl ConnTable {
    /// A table with room for `connections`, each queue capped at
    /// `queue_cap` bytes and all of them together at `queue_budget`.
    pub fn with_capacity(connections: usize, queue_cap: usize, queue_budget: usize) -> ConnTable {
        ConnTable {
            slab: Slab::with_capacity(connections),
            users: HashMap::new(),
            flush: FlushList::default(),
            next_serial: 0,
            slow_consumer_closes: 0,
            reply_cap: queue_cap.min(1 << 30),
            queue_budget,
            over_budget_closes: 0,
            frames_out: 0,
            bytes_out: 0,
        }
    }

    /// Adds a connection and returns its slot and serial.
    pub fn insert(&mut self, app: AppIdx, fd: i32, now: u32) -> (ConnKey, u32) {
        let serial = self.next_serial;
        self.next_serial = self.next_serial.wrapping_add(1);
        let entry = self.slab.vacant_entry();
        let key = entry.key();
        entry.insert(Conn {
            key: key as ConnKey,
            fd,
            blocked: false,
            app_slot: false,
            serial,
            app,
            subs: SubList::new(),
            out: VecDeque::new(),
            out_bytes: 0,
            out_offset: 0,
            waker: None,
            last_seen: now,
            ping_sent: None,
            phase: Phase::Open,
            close_code: None,
            extra: None,
        });
        (key as ConnKey, serial)
    }

    pub fn remove(&mut self, key: ConnKey) -> Option<Conn> {
        let conn = self.slab.try_remove(key as usize)?;
        self.flush.queued_bytes -= conn.out_bytes as usize;
        if let Some(user) = conn.user_id() {
            let id = (conn.app, Box::<str>::from(user));
            if let Some(keys) = self.users.get_mut(&id) {
                keys.retain(|k| *k != key);
                if keys.is_empty() {
                    self.users.remove(&id);
                }
            }
        }
        Some(conn)
    }

    /// Records that connection `key` signed in as `user` (once per
    /// connection: a second sign-in is refused before this).
    pub fn sign_in(&mut self, key: ConnKey, user: &str) {
        let Some(conn) = self.slab.get_mut(key as usize) else {
            return;
        };
        conn.extra_mut().user_id = Some(user.into());
        self.users
            .entry((conn.app, user.into()))
            .or_default()
            .push(key);
    }

    /// The connections signed in as `user` of `app`.
    pub fn of_user(&self, app: AppIdx, user: &str) -> &[ConnKey] {
        self.users
            .get(&(app, Box::<str>::from(user)))
            .map_or(&[], |keys| keys.as_slice())
    }

    pub fn get(&self, key: ConnKey) -> Option<&Conn> {
        self.slab.get(key as usize)
    }

    pub fn get_mut(&mut self, key: ConnKey) -> Option<&mut Conn> {
        self.slab.get_mut(key as usize)
    }

    /// The local connection a socket id names, if it is one of this shard's.
    pub fn find(&self, socket: SocketId, nonce: u32, shard: u16) -> Option<ConnKey> {
        if socket.nonce != nonce || socket.shard != shard {
            return None;
        }
        let conn = self.slab.get(socket.slot as usize)?;
        (conn.serial == socket.serial && conn.phase != Phase::Gone).then_some(socket.slot)
    }

    pub fn len(&self) -> usize {
        self.slab.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slab.is_empty()
    }

    /// Connections of `app` this table holds (a closing one counts until
    /// it is removed, when its socket is closed).
    pub fn count_of(&self, app: AppIdx) -> usize {
        self.slab.iter().filter(|(_, c)| c.app == app).count()
    }

    pub fn keys(&self) -> Vec<ConnKey> {
        self.slab.iter().map(|(k, _)| k as ConnKey).collect()
    }

    /// Queues a frame for a connection. A connection whose queue passes
    /// `cap` bytes is a slow consumer: its queue is dropped and it is closed
    /// with 4100, so it never holds up anyone else.
    pub fn enqueue(&mut self, key: ConnKey, frame: &Frame, cap: usize, now: u32) {
        // Queue sizes are counted in u32: no queue may pass 1 GiB.
        self.push_within(key, frame, cap.min(1 << 30), Some(now), false);
    }

    /// Like [`ConnTable::enqueue`], for bulk delivery: the connection is
    /// written by the bulk flusher (see [`FlushList`]).
    pub fn enqueue_bulk(&mut self, key: ConnKey, frame: &Frame, cap: usize, now: u32) {
        self.push_within(key, frame, cap.min(1 << 30), Some(now), true);
    }

    /// Queues a reply to the connection's own message (pong, error,
    /// subscription answers). Replies count against the same cap as
    /// broadcasts, so a client that sends without ever reading is closed
    /// with 4100 instead of growing its queue.
    pub fn reply(&mut self, key: ConnKey, frame: &Frame) {
        self.push_within(key, frame, self.reply_cap, None, false);
    }

    /// Queues `frame` on an open connection, or closes it as a slow consumer
    /// when its queue would pass `cap`. Without `now` (replies), the clock
    /// is the connection's last message, which the reply answers.
    fn push_within(
        &mut self,
        key: ConnKey,
        frame: &Frame,
        cap: usize,
        now: Option<u32>,
        bulk: bool,
    ) {
        let Some(conn) = self.slab.get_mut(key as usize) else {
            return;
        };
        if conn.phase != Phase::Open {
            return;
        }
        let queued = conn.out_bytes as usize;
        let why = if queued + frame.len() > cap {
            ClientError::SlowConsumer(cap)
        } else if self.flush.queued_bytes + frame.len() > self.queue_budget
            && queued > FAIR_QUEUE_BYTES
        {
            self.over_budget_closes += 1;
            ClientError::SlowConsumerOverBudget(FAIR_QUEUE_BYTES)
        } else {
            Self::push_to(conn, frame.bytes().clone(), &mut self.flush, bulk);
            return;
        };
        crate::info_limited!(
            "slow consumer closed (4100): app {}, slot {key}, {} bytes queued, {} bytes on the shard",
            conn.app.0,
            conn.out_bytes,
            self.flush.queued_bytes
        );
        self.slow_consumer_closes += 1;
        self.flush.queued_bytes -= Self::drop_queue(conn);
        let now = now.unwrap_or(conn.last_seen);
        Self::begin_close(conn, &why, now, &mut self.flush);
    }

    fn push(conn: &mut Conn, bytes: Bytes, flush: &mut FlushList) {
        Self::push_to(conn, bytes, flush, false)
    }

    fn push_to(conn: &mut Conn, bytes: Bytes, flush: &mut FlushList, bulk: bool) {
        let was_empty = conn.out.is_empty();
        conn.out_bytes += bytes.len() as u32;
        flush.queued_bytes += bytes.len();
        conn.out.push_back(bytes);
        if was_empty && !conn.blocked {
            flush.mark(conn.key, bulk);
        }
    }

    /// Drops what is queued, keeping a partly written front frame so the
    /// stream stays well-formed; returns the bytes dropped.
    fn drop_queue(conn: &mut Conn) -> usize {
        let before = conn.out_bytes;
        let keep = if conn.out_offset > 0 { 1 } else { 0 };
        while conn.out.len() > keep {
            let b = conn.out.pop_back().expect("len checked");
            conn.out_bytes -= b.len() as u32;
        }
        if keep == 0 {
            conn.out = VecDeque::new();
        }
        (before - conn.out_bytes) as usize
    }

    /// Marks a connection whose socket is gone ([`Phase::Gone`]): nothing is
    /// queued to it or written any more, and its queue's memory goes now.
    pub fn retire(&mut self, key: ConnKey) {
        let Some(conn) = self.slab.get_mut(key as usize) else {
            return;
        };
        conn.phase = Phase::Gone;
        conn.fd = NO_FD;
        conn.waker = None;
        self.flush.queued_bytes -= conn.out_bytes as usize;
        conn.out = VecDeque::new();
        conn.out_bytes = 0;
        conn.out_offset = 0;
    }

    /// Refuses or ends a connection: `pusher:error` with the code, then a
    /// close frame with the same code; the connection's task finishes the close.
    pub fn close(&mut self, key: ConnKey, why: &ClientError, now: u32) {
        if let Some(conn) = self.slab.get_mut(key as usize) {
            if conn.phase == Phase::Open {
                Self::begin_close(conn, why, now, &mut self.flush);
            }
        }
    }

    fn begin_close(conn: &mut Conn, why: &ClientError, now: u32, flush: &mut FlushList) {
        let message = why.to_string();
        let code = why.code();
        Self::push(
            conn,
            messages::error(Some(code), &message).bytes().clone(),
            flush,
        );
        Self::push(conn, Frame::close(code, &message).bytes().clone(), flush);
        conn.phase = Phase::Closing { since: now };
        conn.close_code = Some(code);
        conn.wake();
    }

    /// Closes with a bare WebSocket close frame (RFC 6455 protocol errors).
    pub fn close_ws(&mut self, key: ConnKey, code: u16, reason: &str, now: u32) {
        if let Some(conn) = self.slab.get_mut(key as usize) {
            if conn.phase == Phase::Open {
                Self::push(
                    conn,
                    Frame::close(code, reason).bytes().clone(),
                    &mut self.flush,
                );
                conn.phase = Phase::Closing { since: now };
                conn.close_code = Some(code);
                conn.wake();
            }
        }
    }

    /// The periodic sweep of every connection (see [`ConnTable::sweep_slots`]).
    pub fn sweep(
        &mut self,
        now: u32,
        activity_timeout: u32,
        pong_timeout: u32,
        close_timeout: u32,
    ) {
        let all = 0..self.slots();
        self.sweep_slots(all, now, activity_timeout, pong_timeout, close_timeout);
    }

    /// Slots the table has room for: the range a sweep walks.
    pub fn slots(&self) -> usize {
        self.slab.capacity()
    }

    /// The periodic sweep over the slots in `range`: ping connections silent
    /// for `activity_timeout`, close with 4201 those that did not answer
    /// within `pong_timeout`, close with 4009 those that had to sign in by
    /// now, and abort closes that take longer than `close_timeout`. The
    /// shard sweeps in slices of slots, yielding between them.
    pub fn sweep_slots(
        &mut self,
        range: std::ops::Range<usize>,
        now: u32,
        activity_timeout: u32,
        pong_timeout: u32,
        close_timeout: u32,
    ) {
        let ping = messages::ping();
        let flush = &mut self.flush;
        for key in range {
            let Some(conn) = self.slab.get_mut(key) else {
                continue;
            };
            match conn.phase {
                Phase::Open
                    if conn
                        .extra
                        .as_ref()
                        .and_then(|e| e.sign_in_by)
                        .is_some_and(|by| now >= by) =>
                {
                    let why = ClientError::Unauthorized(
                        "Connection not signed in within the time the app requires".into(),
                    );
                    Self::begin_close(conn, &why, now, flush);
                }
                Phase::Open => match conn.ping_sent {
                    Some(at) if now.saturating_sub(at) >= pong_timeout => {
                        Self::begin_close(
                            conn,
                            &ClientError::PongTimeout(pong_timeout),
                            now,
                            flush,
                        );
                    }
                    None if now.saturating_sub(conn.last_seen) >= activity_timeout => {
                        conn.ping_sent = Some(now);
                        Self::push(conn, ping.bytes().clone(), flush);
                    }
                    _ => {}
                },
                Phase::Closing { since } if now.saturating_sub(since) >= close_timeout => {
                    conn.phase = Phase::Abort;
                    conn.wake();
                }
                _ => {}
            }
        }
    }

    /// Writes as much of a connection's queue as `send` takes, oldest first.
    /// Returns `Ok(true)` when the queue drained (its memory is given back),
    /// `Ok(false)` when the socket is full (the connection is then `blocked`).
    pub fn flush_with(
        &mut self,
        key: ConnKey,
        mut send: impl FnMut(&[IoSlice<'_>]) -> io::Result<usize>,
    ) -> io::Result<bool> {
        let Some(conn) = self.slab.get_mut(key as usize) else {
            return Ok(true);
        };
        let (bytes_out, frames_out) = (&mut self.bytes_out, &mut self.frames_out);
        let queued = &mut self.flush.queued_bytes;
        while !conn.out.is_empty() {
            let result = {
                let mut slices: SmallVec<[IoSlice<'_>; MAX_IOVECS]> = SmallVec::new();
                for (i, bytes) in conn.out.iter().take(MAX_IOVECS).enumerate() {
                    let skip = if i == 0 { conn.out_offset as usize } else { 0 };
                    slices.push(IoSlice::new(&bytes[skip..]));
                }
                send(&slices)
            };
            let written = match result {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    conn.blocked = true;
                    return Ok(false);
                }
                Err(e) => return Err(e),
            };
            conn.out_bytes -= written as u32;
            *queued -= written;
            *bytes_out += written as u64;
            let mut done = conn.out_offset as usize + written;
            while let Some(front) = conn.out.front() {
                if done < front.len() {
                    break;
                }
                done -= front.len();
                conn.out.pop_front();
                *frames_out += 1;
            }
            conn.out_offset = done as u32;
        }
        conn.blocked = false;
        // Give the queue's memory back while the connection is idle.
        conn.out = VecDeque::new();
        Ok(true)
    }

    /// The flusher's write of one connection, straight to its socket. A full
    /// socket, a closing connection or one without a direct fd (TLS) hands
    /// over to the connection's task.
    pub fn flush_direct(&mut self, key: ConnKey) {
        let Some(fd) = self
            .slab
            .get_mut(key as usize)
            .filter(|c| !c.blocked)
            .and_then(|c| {
                if c.fd == NO_FD {
                    c.wake();
                    None
                } else {
                    Some(c.fd)
                }
            })
        else {
            return;
        };
        let result = self.flush_with(key, |slices| crate::net::send_vectored(fd, slices));
        let Some(conn) = self.slab.get_mut(key as usize) else {
            return;
        };
        match result {
            Ok(true) if conn.phase == Phase::Open => {}
            Ok(_) => conn.wake(),
            Err(_) => {
                conn.phase = Phase::Abort;
                conn.wake();
            }
        }
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = (ConnKey, &mut Conn)> {
        self.slab.iter_mut().map(|(k, c)| (k as ConnKey, c))
    }

    /// Marks client activity: any frame counts, and answers a server ping.
    pub fn touch(&mut self, key: ConnKey, now: u32) {
        if let Some(conn) = self.slab.get_mut(key as usize) {
            conn.last_seen = now;
            conn.ping_sent = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(n: usize) -> Frame {
        Frame::text(&vec![b'x'; n])
    }

    #[test]
    fn slow_consumer_is_closed_with_4100_and_its_queue_dropped() {
        let mut t = ConnTable::default();
        let (k, _) = t.insert(AppIdx(0), -1, 0);
        t.enqueue(k, &frame(100), 1000, 0);
        assert_eq!(t.get(k).unwrap().out.len(), 1);
        for _ in 0..20 {
            t.enqueue(k, &frame(100), 1000, 0);
        }
        let c = t.get(k).unwrap();
        assert_eq!(c.phase, Phase::Closing { since: 0 });
        // Only the error and close frames remain.
        assert_eq!(c.out.len(), 2);
        let close = c.out.back().unwrap();
        assert_eq!(&close[..4], &[0x88, close[1], 0x10, 0x04]); // 4100
        assert!(c.out_bytes < 200);
        assert_eq!(c.close_code, Some(4100));
        assert_eq!(t.slow_consumer_closes, 1);
    }

    #[test]
    fn past_the_shard_budget_large_queues_close_and_small_ones_continue() {
        let mut t = ConnTable::with_capacity(0, 1 << 20, 200 * 1024);
        let (slow, _) = t.insert(AppIdx(0), -1, 0);
        let (fast, _) = t.insert(AppIdx(0), -1, 0);
        // The slow reader builds up 190 KiB, under its own 1 MiB cap.
        for _ in 0..19 {
            t.enqueue(slow, &frame(10 * 1024), 1 << 20, 0);
        }
        assert_eq!(
            t.flush.queued_bytes,
            t.get(slow).unwrap().out_bytes as usize
        );
        // The budget is spent now: the large queue is closed ...
        t.enqueue(slow, &frame(20 * 1024), 1 << 20, 0);
        let c = t.get(slow).unwrap();
        assert_eq!(c.close_code, Some(4100));
        assert_eq!(c.out.len(), 2, "only the error and the close frame remain");
        assert_eq!(t.over_budget_closes, 1);
        // ... and its bytes are given back, so the small one keeps receiving.
        t.enqueue(fast, &frame(20 * 1024), 1 << 20, 0);
        assert_eq!(t.get(fast).unwrap().phase, Phase::Open);
        assert_eq!(t.get(fast).unwrap().out.len(), 1);
        let total: u32 = [slow, fast]
            .iter()
            .map(|&k| t.get(k).unwrap().out_bytes)
            .sum();
        assert_eq!(t.flush.queued_bytes, total as usize);
        t.remove(slow);
        t.retire(fast);
        assert_eq!(t.flush.queued_bytes, 0);
    }

    #[test]
    fn sweep_pings_then_closes_with_4201() {
        let mut t = ConnTable::default();
        let (k, _) = t.insert(AppIdx(0), -1, 0);
        t.sweep(5, 10, 3, 2);
        assert!(t.get(k).unwrap().out.is_empty());
        t.sweep(10, 10, 3, 2);
        assert_eq!(t.get(k).unwrap().ping_sent, Some(10));
        assert_eq!(t.get(k).unwrap().out.len(), 1);
        t.sweep(12, 10, 3, 2);
        assert_eq!(t.get(k).unwrap().phase, Phase::Open);
        t.sweep(13, 10, 3, 2);
        assert_eq!(t.get(k).unwrap().phase, Phase::Closing { since: 13 });
        t.sweep(15, 10, 3, 2);
        assert_eq!(t.get(k).unwrap().phase, Phase::Abort);
    }

    #[test]
    fn activity_resets_the_ping() {
        let mut t = ConnTable::default();
        let (k, _) = t.insert(AppIdx(0), -1, 0);
        t.sweep(10, 10, 3, 2);
        t.touch(k, 11);
        t.sweep(14, 10, 3, 2);
        assert_eq!(t.get(k).unwrap().phase, Phase::Open);
        assert_eq!(t.get(k).unwrap().ping_sent, None);
    }

    #[test]
    fn serials_differ_for_reused_slots() {
        let mut t = ConnTable::default();
        let (k1, s1) = t.insert(AppIdx(0), -1, 0);
        t.remove(k1);
        let (k2, s2) = t.insert(AppIdx(0), -1, 0);
        assert_eq!(k1, k2);
        assert_ne!(s1, s2);
    }
}
