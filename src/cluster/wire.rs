//! The bytes nodes exchange through the engine (Redis pub/sub or NATS).
//!
//! One engine message is an [`Envelope`]: a header naming the sending node,
//! then one or more [`NodeMsg`]s, so messages that queued up while the link
//! was busy go out in one publish. Everything is length-prefixed; a
//! malformed message is refused with a [`WireError`], never a panic (the
//! engine is shared infrastructure, not a trusted peer).
//!
//! Layout: `"SC"` `version: u8` then the [`Header`] (`node: u64`,
//! `seq: u64`, `control: u64`, `stream: u16`, `sent_ms: u64`), then items `kind: u8` + fields; strings and
//! byte strings are `len: u32` + bytes; integers little-endian. On the
//! engine every envelope is followed by its signature (`seal`), checked
//! before anything here reads it.

use crate::socket_id::SocketId;
use bytes::Bytes;

const MAGIC: &[u8; 2] = b"SC";
/// 4: envelopes name their stream (sparse routing: `route`) and number
/// the control stream apart.
const VERSION: u8 = 4;
/// Frames in one publish message, at most.
const MAX_FRAMES: usize = 10_000;

/// One node-level event or announcement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeMsg {
    /// Deliver each pre-encoded WebSocket frame to the channel's subscribers
    /// on every node, except the socket `except` (which lives on one node).
    Publish {
        app: Box<str>,
        except: Option<SocketId>,
        frames: Vec<(Box<str>, Bytes)>,
    },
    /// Close every connection signed in as this user.
    TerminateUser { app: Box<str>, user_id: Box<str> },
    /// "I am alive" (sent every quarter of the node timeout).
    Heartbeat,
    /// "I just (re)joined": every node tells again what it holds
    /// (its presence members).
    Hello,
    /// The sending node has sockets of this presence member now (its
    /// first). `sync`: said again for a node that (re)joined, not a change.
    MemberJoined {
        app: Box<str>,
        channel: Box<str>,
        user_id: Box<str>,
        user_info: Box<str>,
        sync: bool,
    },
    /// The sending node has no socket of this presence member any more.
    MemberLeft {
        app: Box<str>,
        channel: Box<str>,
        user_id: Box<str>,
    },
    /// The sending node's subscriptions of a channel (0: empty there now);
    /// `sync` as for `MemberJoined`.
    Occupancy {
        app: Box<str>,
        channel: Box<str>,
        count: u32,
        sync: bool,
    },
    /// The sending node has a connection signed in as this user (its
    /// first there: `online`) or no longer has one; `sync` as for
    /// `MemberJoined`.
    UserOnline {
        app: Box<str>,
        user_id: Box<str>,
        online: bool,
        sync: bool,
    },
    /// The sending node starts telling all it holds (`gen` numbers its
    /// full syncs): what it held before and does not tell again by the
    /// matching [`NodeMsg::SyncEnd`] is gone.
    SyncStart { gen: u64 },
    /// The end of full sync `gen`.
    SyncEnd { gen: u64 },
    /// "Node `node`: tell all you hold again" (sent by a node that lost
    /// some of `node`'s messages).
    Resync { node: u64 },
    /// A channel query: every other node answers with its own part.
    Query {
        id: u32,
        shard: u16,
        app: Box<str>,
        ask: RemoteAsk,
    },
    /// One node's part of the answer to query `id` of `shard` on node `to`.
    Answer {
        to: u64,
        id: u32,
        shard: u16,
        part: RemotePart,
    },
}

/// What a channel query asks of other nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemoteAsk {
    /// Occupied channels whose name starts with the prefix.
    Channels(Box<str>),
    /// One channel.
    Channel(Box<str>),
    /// The app's open connections.
    Connections,
}

/// A node's part of a query's answer: its subscriber counts, the cached
/// event it holds (data, seconds left) and its open connections of the
/// app. Presence members are known on every node already, so they are not
/// part of it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RemotePart {
    pub subscriptions: Vec<(Box<str>, u32)>,
    pub cache: Option<(Box<str>, u64)>,
    pub connections: u32,
}

const KIND_PUBLISH: u8 = 1;
const KIND_TERMINATE: u8 = 2;
const KIND_HEARTBEAT: u8 = 3;
const KIND_HELLO: u8 = 4;
const KIND_MEMBER_JOINED: u8 = 5;
const KIND_MEMBER_LEFT: u8 = 6;
const KIND_QUERY: u8 = 7;
const KIND_ANSWER: u8 = 8;
const KIND_OCCUPANCY: u8 = 9;
const KIND_SYNC_START: u8 = 10;
const KIND_SYNC_END: u8 = 11;
const KIND_RESYNC: u8 = 12;
const KIND_USER_ONLINE: u8 = 13;
/// Channels in one answer, at most.
const MAX_ANSWER_CHANNELS: usize = 1_000_000;

/// Who sent an envelope, and when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// The sending node's id (random per process).
    pub node: u64,
    /// The sender's count of envelopes published on any stream, from 1:
    /// each envelope has the next number. A receiver sees only the streams
    /// it subscribes to, so this number has gaps for it; it refuses a
    /// number it has seen on a stream (a replay: `peers`).
    pub seq: u64,
    /// The sender's count of control envelopes published, from 1: a
    /// control envelope has the next number (a receiver hears them all, so
    /// a gap means some were lost); an event envelope carries the number of
    /// the last control envelope before it.
    pub control: u64,
    /// The stream it was published on (`route`): an event bucket or
    /// `route::CONTROL`. Signed with the rest, so an envelope copied onto
    /// another stream is refused.
    pub stream: u16,
    /// The sender's clock (ms since the Unix epoch) when it published: a
    /// node it has not heard from before is believed only within a window
    /// of this, so an old recording cannot be replayed as a new node.
    pub sent_ms: u64,
}

/// A decoded engine message.
#[derive(Debug, PartialEq, Eq)]
pub struct Envelope {
    pub header: Header,
    pub messages: Vec<NodeMsg>,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("not a shardcast cluster message")]
    NotOurs,
    #[error("cluster message version {0}, this node speaks {VERSION}")]
    Version(u8),
    #[error("cluster message cut short")]
    Short,
    #[error("unknown cluster message kind {0}")]
    Kind(u8),
    #[error("cluster message field is not UTF-8")]
    Utf8,
    #[error("cluster message has too many frames")]
    TooMany,
    #[error("unknown cluster query kind {0}")]
    Ask(u8),
}

/// Bytes of an envelope's magic, version and [`Header`].
pub const HEADER_BYTES: usize = 2 + 1 + 8 + 8 + 8 + 2 + 8;

/// Starts an envelope ([`HEADER_BYTES`] long); append messages with
/// [`encode`].
pub fn envelope_header(header: &Header, out: &mut Vec<u8>) {
    out.extend_from_slice(MAGIC);
    out.push(VERSION);
    out.extend_from_slice(&header.node.to_le_bytes());
    out.extend_from_slice(&header.seq.to_le_bytes());
    out.extend_from_slice(&header.control.to_le_bytes());
    out.extend_from_slice(&header.stream.to_le_bytes());
    out.extend_from_slice(&header.sent_ms.to_le_bytes());
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    out.extend_from_slice(b);
}

/// Appends one message (without header) to `out`.
pub fn encode(msg: &NodeMsg, out: &mut Vec<u8>) {
    match msg {
        NodeMsg::Publish {
            app,
            except,
            frames,
        } => {
            out.push(KIND_PUBLISH);
            put_bytes(out, app.as_bytes());
            match except {
                Some(id) => {
                    out.push(1);
                    out.extend_from_slice(&id.nonce.to_le_bytes());
                    out.extend_from_slice(&id.shard.to_le_bytes());
                    out.extend_from_slice(&id.slot.to_le_bytes());
                    out.extend_from_slice(&id.serial.to_le_bytes());
                }
                None => out.push(0),
            }
            out.extend_from_slice(&(frames.len() as u32).to_le_bytes());
            for (channel, frame) in frames {
                put_bytes(out, channel.as_bytes());
                put_bytes(out, frame);
            }
        }
        NodeMsg::TerminateUser { app, user_id } => {
            out.push(KIND_TERMINATE);
            put_bytes(out, app.as_bytes());
            put_bytes(out, user_id.as_bytes());
        }
        NodeMsg::Heartbeat => out.push(KIND_HEARTBEAT),
        NodeMsg::Hello => out.push(KIND_HELLO),
        NodeMsg::UserOnline {
            app,
            user_id,
            online,
            sync,
        } => {
            out.push(KIND_USER_ONLINE);
            put_bytes(out, app.as_bytes());
            put_bytes(out, user_id.as_bytes());
            out.push(*online as u8);
            out.push(*sync as u8);
        }
        NodeMsg::SyncStart { gen } => {
            out.push(KIND_SYNC_START);
            out.extend_from_slice(&gen.to_le_bytes());
        }
        NodeMsg::SyncEnd { gen } => {
            out.push(KIND_SYNC_END);
            out.extend_from_slice(&gen.to_le_bytes());
        }
        NodeMsg::Resync { node } => {
            out.push(KIND_RESYNC);
            out.extend_from_slice(&node.to_le_bytes());
        }
        NodeMsg::MemberJoined {
            app,
            channel,
            user_id,
            user_info,
            sync,
        } => {
            out.push(KIND_MEMBER_JOINED);
            for field in [app, channel, user_id, user_info] {
                put_bytes(out, field.as_bytes());
            }
            out.push(*sync as u8);
        }
        NodeMsg::Occupancy {
            app,
            channel,
            count,
            sync,
        } => {
            out.push(KIND_OCCUPANCY);
            put_bytes(out, app.as_bytes());
            put_bytes(out, channel.as_bytes());
            out.extend_from_slice(&count.to_le_bytes());
            out.push(*sync as u8);
        }
        NodeMsg::MemberLeft {
            app,
            channel,
            user_id,
        } => {
            out.push(KIND_MEMBER_LEFT);
            for field in [app, channel, user_id] {
                put_bytes(out, field.as_bytes());
            }
        }
        NodeMsg::Query {
            id,
            shard,
            app,
            ask,
        } => {
            out.push(KIND_QUERY);
            out.extend_from_slice(&id.to_le_bytes());
            out.extend_from_slice(&shard.to_le_bytes());
            put_bytes(out, app.as_bytes());
            let (tag, name) = match ask {
                RemoteAsk::Channels(prefix) => (0, &**prefix),
                RemoteAsk::Channel(channel) => (1, &**channel),
                RemoteAsk::Connections => (2, ""),
            };
            out.push(tag);
            put_bytes(out, name.as_bytes());
        }
        NodeMsg::Answer {
            to,
            id,
            shard,
            part,
        } => {
            out.push(KIND_ANSWER);
            out.extend_from_slice(&to.to_le_bytes());
            out.extend_from_slice(&id.to_le_bytes());
            out.extend_from_slice(&shard.to_le_bytes());
            out.extend_from_slice(&(part.subscriptions.len() as u32).to_le_bytes());
            for (channel, n) in &part.subscriptions {
                put_bytes(out, channel.as_bytes());
                out.extend_from_slice(&n.to_le_bytes());
            }
            match &part.cache {
                Some((data, ttl)) => {
                    out.push(1);
                    put_bytes(out, data.as_bytes());
                    out.extend_from_slice(&ttl.to_le_bytes());
                }
                None => out.push(0),
            }
            out.extend_from_slice(&part.connections.to_le_bytes());
        }
    }
}

/// Reads fields off the front of a message.
struct Reader<'a> {
    rest: &'a [u8],
    /// The whole message, so byte strings can be sliced without copying.
    whole: &'a Bytes,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        if self.rest.len() < n {
            return Err(WireError::Short);
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, WireError> {
        Ok(u16::from_le_bytes(
            self.take(2)?.try_into().expect("2 bytes"),
        ))
    }

    fn u32(&mut self) -> Result<u32, WireError> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }

    fn u64(&mut self) -> Result<u64, WireError> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }

    fn bytes(&mut self) -> Result<Bytes, WireError> {
        let n = self.u32()? as usize;
        let slice = self.take(n)?;
        Ok(self.whole.slice_ref(slice))
    }

    fn str(&mut self) -> Result<Box<str>, WireError> {
        let n = self.u32()? as usize;
        std::str::from_utf8(self.take(n)?)
            .map(Into::into)
            .map_err(|_| WireError::Utf8)
    }
}

/// Decodes one engine message.
pub fn decode(message: &Bytes) -> Result<Envelope, WireError> {
    let mut r = Reader {
        rest: message,
        whole: message,
    };
    if r.take(2).map_err(|_| WireError::NotOurs)? != MAGIC {
        return Err(WireError::NotOurs);
    }
    let version = r.u8()?;
    if version != VERSION {
        return Err(WireError::Version(version));
    }
    let header = Header {
        node: r.u64()?,
        seq: r.u64()?,
        control: r.u64()?,
        stream: r.u16()?,
        sent_ms: r.u64()?,
    };
    let mut messages = Vec::new();
    while !r.rest.is_empty() {
        messages.push(match r.u8()? {
            KIND_PUBLISH => {
                let app = r.str()?;
                let except = match r.u8()? {
                    0 => None,
                    _ => Some(SocketId {
                        nonce: r.u32()?,
                        shard: r.u16()?,
                        slot: r.u32()?,
                        serial: r.u32()?,
                    }),
                };
                let count = r.u32()? as usize;
                if count > MAX_FRAMES {
                    return Err(WireError::TooMany);
                }
                // Each frame takes at least 8 bytes: no huge reservation
                // from a count the message cannot back.
                let mut frames = Vec::with_capacity(count.min(r.rest.len() / 8));
                for _ in 0..count {
                    frames.push((r.str()?, r.bytes()?));
                }
                NodeMsg::Publish {
                    app,
                    except,
                    frames,
                }
            }
            KIND_TERMINATE => NodeMsg::TerminateUser {
                app: r.str()?,
                user_id: r.str()?,
            },
            KIND_HEARTBEAT => NodeMsg::Heartbeat,
            KIND_HELLO => NodeMsg::Hello,
            KIND_USER_ONLINE => NodeMsg::UserOnline {
                app: r.str()?,
                user_id: r.str()?,
                online: r.u8()? != 0,
                sync: r.u8()? != 0,
            },
            KIND_SYNC_START => NodeMsg::SyncStart { gen: r.u64()? },
            KIND_SYNC_END => NodeMsg::SyncEnd { gen: r.u64()? },
            KIND_RESYNC => NodeMsg::Resync { node: r.u64()? },
            KIND_MEMBER_JOINED => NodeMsg::MemberJoined {
                app: r.str()?,
                channel: r.str()?,
                user_id: r.str()?,
                user_info: r.str()?,
                sync: r.u8()? != 0,
            },
            KIND_OCCUPANCY => NodeMsg::Occupancy {
                app: r.str()?,
                channel: r.str()?,
                count: r.u32()?,
                sync: r.u8()? != 0,
            },
            KIND_MEMBER_LEFT => NodeMsg::MemberLeft {
                app: r.str()?,
                channel: r.str()?,
                user_id: r.str()?,
            },
            KIND_QUERY => NodeMsg::Query {
                id: r.u32()?,
                shard: r.u16()?,
                app: r.str()?,
                ask: match (r.u8()?, r.str()?) {
                    (0, prefix) => RemoteAsk::Channels(prefix),
                    (1, channel) => RemoteAsk::Channel(channel),
                    (2, _) => RemoteAsk::Connections,
                    (other, _) => return Err(WireError::Ask(other)),
                },
            },
            KIND_ANSWER => {
                let (to, id, shard) = (r.u64()?, r.u32()?, r.u16()?);
                let count = r.u32()? as usize;
                if count > MAX_ANSWER_CHANNELS {
                    return Err(WireError::TooMany);
                }
                let mut subscriptions = Vec::with_capacity(count.min(r.rest.len() / 8));
                for _ in 0..count {
                    subscriptions.push((r.str()?, r.u32()?));
                }
                let cache = match r.u8()? {
                    0 => None,
                    _ => Some((r.str()?, r.u64()?)),
                };
                NodeMsg::Answer {
                    to,
                    id,
                    shard,
                    part: RemotePart {
                        subscriptions,
                        cache,
                        connections: r.u32()?,
                    },
                }
            }
            other => return Err(WireError::Kind(other)),
        });
    }
    Ok(Envelope { header, messages })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<NodeMsg> {
        vec![
            NodeMsg::Publish {
                app: "app-id".into(),
                except: Some(SocketId {
                    nonce: 7,
                    shard: 1,
                    slot: 42,
                    serial: 9,
                }),
                frames: vec![
                    ("news".into(), Bytes::from_static(b"\x81\x02hi")),
                    ("ch-é".into(), Bytes::from_static(b"\x81\x00")),
                ],
            },
            NodeMsg::TerminateUser {
                app: "a".into(),
                user_id: "u-1".into(),
            },
            NodeMsg::Heartbeat,
            NodeMsg::Hello,
            NodeMsg::UserOnline {
                app: "a".into(),
                user_id: "u-7".into(),
                online: true,
                sync: true,
            },
            NodeMsg::SyncStart { gen: 3 },
            NodeMsg::SyncEnd { gen: 3 },
            NodeMsg::Resync { node: 0xfeed },
            NodeMsg::MemberJoined {
                app: "a".into(),
                channel: "presence-x".into(),
                user_id: "u".into(),
                user_info: r#"{"n":1}"#.into(),
                sync: true,
            },
            NodeMsg::Occupancy {
                app: "a".into(),
                channel: "c".into(),
                count: 7,
                sync: false,
            },
            NodeMsg::MemberLeft {
                app: "a".into(),
                channel: "presence-x".into(),
                user_id: "u".into(),
            },
            NodeMsg::Publish {
                app: "b".into(),
                except: None,
                frames: vec![],
            },
            NodeMsg::Query {
                id: 77,
                shard: 3,
                app: "a".into(),
                ask: RemoteAsk::Channels("presence-".into()),
            },
            NodeMsg::Query {
                id: 78,
                shard: 0,
                app: "a".into(),
                ask: RemoteAsk::Channel("cache-x".into()),
            },
            NodeMsg::Query {
                id: 79,
                shard: 1,
                app: "a".into(),
                ask: RemoteAsk::Connections,
            },
            NodeMsg::Answer {
                to: 0xabc,
                id: 77,
                shard: 3,
                part: RemotePart {
                    subscriptions: vec![("a".into(), 2), ("b".into(), 7)],
                    cache: Some(("data".into(), 60)),
                    connections: 12,
                },
            },
            NodeMsg::Answer {
                to: 1,
                id: 1,
                shard: 1,
                part: RemotePart::default(),
            },
        ]
    }

    fn header(node: u64) -> Header {
        Header {
            node,
            seq: 5,
            control: 2,
            stream: 77,
            sent_ms: 1_700_000_000_000,
        }
    }

    fn encode_all(node: u64, msgs: &[NodeMsg]) -> Bytes {
        let mut out = Vec::new();
        envelope_header(&header(node), &mut out);
        for m in msgs {
            encode(m, &mut out);
        }
        Bytes::from(out)
    }

    #[test]
    fn messages_round_trip_in_one_envelope() {
        let msgs = sample();
        let env = decode(&encode_all(0xdead_beef_0102, &msgs)).unwrap();
        assert_eq!(env.header, header(0xdead_beef_0102));
        assert_eq!(env.messages, msgs);
    }

    #[test]
    fn every_truncation_is_refused_without_panic() {
        let whole = encode_all(3, &sample());
        for cut in 0..whole.len() {
            let part = whole.slice(..cut);
            let result = decode(&part);
            // A cut exactly between two messages is a valid shorter envelope.
            if let Ok(env) = result {
                assert!(env.messages.len() < sample().len(), "cut at {cut}");
            }
        }
    }

    #[test]
    fn foreign_and_future_messages_are_named() {
        assert_eq!(
            decode(&Bytes::from_static(b"hello")),
            Err(WireError::NotOurs)
        );
        assert_eq!(decode(&Bytes::from_static(b"")), Err(WireError::NotOurs));
        assert_eq!(
            decode(&Bytes::from_static(b"SC\x09\0\0\0\0\0\0\0\0")),
            Err(WireError::Version(9))
        );
        let mut bad = encode_all(1, &[]).to_vec();
        bad.push(200);
        assert_eq!(decode(&Bytes::from(bad)), Err(WireError::Kind(200)));
        let mut huge = encode_all(1, &[]).to_vec();
        huge.push(KIND_PUBLISH);
        put_bytes(&mut huge, b"a");
        huge.push(0);
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(decode(&Bytes::from(huge)), Err(WireError::TooMany));
    }
}
