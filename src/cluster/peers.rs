//! The other nodes as the link knows them: who is alive, and which of
//! their envelopes have been seen.
//!
//! A signature proves an envelope came from a node holding the secret, not
//! that it is new: a recording of it could be published again. Each node
//! numbers its envelopes twice (`wire::Header`): `seq` counts everything it
//! publishes, `control` only its control-stream envelopes (`route`).
//!
//! *Control stream.* Every node hears all of it, in order, so for a node it
//! knows the link accepts only a control number above the last one seen
//! (below or equal is a replay) and a number more than one above means
//! control envelopes were lost (a gap, reported so state can be
//! resynchronised).
//!
//! *Event streams.* A node hears only the buckets it subscribes to, so
//! `seq` has gaps for it that are no loss: gaps are never looked for there
//! (a lost event is not repaired by a sync either). Replays are: for each
//! live node and each bucket the link keeps the highest `seq` seen on it,
//! and accepts only a higher one. When this node subscribes to a bucket
//! ([`Peers::open_bucket`]) the record starts at the highest `seq` seen
//! from that node on any stream so far, so a recording made before the
//! subscription cannot be played into it (at most the envelopes that node
//! published since its last message this node saw, which were real events
//! of that bucket, each at most once). A node first heard of starts every
//! bucket at the `seq` before that first envelope. The engine keeps one
//! publisher's order per subject, and every envelope of one channel goes
//! on one subject, so no genuine envelope of a channel arrives below
//! another one's number.
//!
//! A node it does not know (new, or forgotten after it went silent) is
//! believed only if the envelope's send time is within [`REPLAY_WINDOW`]
//! of this node's clock, and a silent node's highest `seq` is remembered
//! for twice that window, so neither an old recording nor one of a node
//! that just went away can pose as a live node. Envelopes carrying this
//! node's own id are its own, echoed by the engine, only if they carry a
//! number it published and has not seen come back on that stream yet; any
//! other is someone else claiming its id.
//!
//! Invariant: a node is in at most one of `live` and `gone`; a live node's
//! `buckets` has [`BUCKETS`] entries.

use super::route::{Stream, BUCKETS, CONTROL};
use super::wire::Header;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// How far a new node's clock may be from ours; also how old a recording
/// can be and still be checked against remembered numbers rather than
/// refused by its time.
pub const REPLAY_WINDOW: Duration = Duration::from_secs(60);
/// Nodes tracked at once, live and recently gone (a bound on memory: a
/// live node takes 8 bytes per bucket).
pub const MAX_NODES: usize = 4096;

/// Why an envelope (or a message in it) was not acted on; the label of
/// `cluster_messages_refused_total{reason=...}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The signature is wrong: not signed with this cluster's secret.
    Signature,
    /// Signed, but not a message this version understands.
    Malformed,
    /// An envelope number already seen from that node.
    Replayed,
    /// Carries this node's own id, but this node did not publish it.
    Spoofed,
    /// From an unknown node, sent too long ago (or too far ahead).
    Stale,
    /// For an app this node does not have.
    UnknownApp,
    /// A field fails the checks a client's or the API's input gets.
    Invalid,
    /// Signed for another stream than the one it arrived on.
    Misrouted,
}

impl Refusal {
    pub const ALL: [Refusal; 8] = [
        Refusal::Signature,
        Refusal::Malformed,
        Refusal::Replayed,
        Refusal::Spoofed,
        Refusal::Stale,
        Refusal::UnknownApp,
        Refusal::Invalid,
        Refusal::Misrouted,
    ];

    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Refusal::Signature => "signature",
            Refusal::Malformed => "malformed",
            Refusal::Replayed => "replayed",
            Refusal::Spoofed => "spoofed",
            Refusal::Stale => "stale",
            Refusal::UnknownApp => "unknown_app",
            Refusal::Invalid => "invalid",
            Refusal::Misrouted => "misrouted",
        }
    }

    /// Index into per-reason counters.
    pub fn index(self) -> usize {
        self as usize
    }
}

/// What to do with an envelope that passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admitted {
    /// This node's own envelope, back from the engine: skip it.
    Own,
    /// Another node's: act on it. `new`: the node was not live before;
    /// `lost`: envelopes of it that never arrived (a gap before this one).
    Peer { new: bool, lost: u64 },
}

struct Live {
    /// The last control number seen.
    last_control: u64,
    /// The highest `seq` seen on any stream.
    max_seq: u64,
    /// The highest `seq` seen (or the floor set) per event bucket.
    buckets: Box<[u64]>,
    seen: Instant,
}

/// The link's record of nodes.
pub struct Peers {
    me: u64,
    live: HashMap<u64, Live>,
    /// Nodes that went silent: their highest `seq`, and when they went.
    gone: HashMap<u64, (u64, Instant)>,
    /// The highest of our own control numbers seen back from the engine.
    own_echoed: u64,
    /// The highest of our own `seq` seen back on each event bucket.
    own_buckets: Box<[u64]>,
}

impl Peers {
    pub fn new(me: u64) -> Peers {
        Peers {
            me,
            live: HashMap::new(),
            gone: HashMap::new(),
            own_echoed: 0,
            own_buckets: vec![0; BUCKETS].into_boxed_slice(),
        }
    }

    /// Decides on an envelope with a valid signature that arrived on its
    /// stream (`h.stream`; for an event bucket, one this node subscribes
    /// to). `published`: the highest `seq` and control number this node
    /// has given an envelope so far; `now_ms`: this node's clock, ms since
    /// the Unix epoch.
    pub fn admit(
        &mut self,
        h: &Header,
        now: Instant,
        now_ms: u64,
        published: (u64, u64),
    ) -> Result<Admitted, Refusal> {
        let control = h.stream == CONTROL;
        if h.node == self.me {
            if control && h.control > self.own_echoed && h.control <= published.1 {
                self.own_echoed = h.control;
                return Ok(Admitted::Own);
            }
            if !control {
                let echoed = &mut self.own_buckets[h.stream as usize];
                if h.seq > *echoed && h.seq <= published.0 {
                    *echoed = h.seq;
                    return Ok(Admitted::Own);
                }
            }
            return Err(Refusal::Spoofed);
        }
        if let Some(peer) = self.live.get_mut(&h.node) {
            let lost = if control {
                if h.control <= peer.last_control {
                    return Err(Refusal::Replayed);
                }
                let lost = h.control - peer.last_control - 1;
                peer.last_control = h.control;
                lost
            } else {
                let last = &mut peer.buckets[h.stream as usize];
                if h.seq <= *last {
                    return Err(Refusal::Replayed);
                }
                *last = h.seq;
                0
            };
            peer.max_seq = peer.max_seq.max(h.seq);
            peer.seen = now;
            return Ok(Admitted::Peer { new: false, lost });
        }
        if let Some(&(max_seq, _)) = self.gone.get(&h.node) {
            if h.seq <= max_seq {
                return Err(Refusal::Replayed);
            }
        }
        if now_ms.abs_diff(h.sent_ms) > REPLAY_WINDOW.as_millis() as u64 {
            return Err(Refusal::Stale);
        }
        if self.live.len() + self.gone.len() >= MAX_NODES {
            return Err(Refusal::Invalid);
        }
        self.gone.remove(&h.node);
        let mut buckets = vec![h.seq.saturating_sub(1); BUCKETS].into_boxed_slice();
        if !control {
            buckets[h.stream as usize] = h.seq;
        }
        self.live.insert(
            h.node,
            Live {
                // An event envelope names the control envelope before it,
                // which may still be on its way (another subject): expect it.
                last_control: if control {
                    h.control
                } else {
                    h.control.saturating_sub(1)
                },
                max_seq: h.seq,
                buckets,
                seen: now,
            },
        );
        Ok(Admitted::Peer { new: true, lost: 0 })
    }

    /// This node now subscribes to `bucket`: from each live node, only
    /// envelopes numbered above everything seen from it so far are new.
    pub fn open_bucket(&mut self, bucket: Stream) {
        for peer in self.live.values_mut() {
            peer.buckets[bucket as usize] = peer.max_seq;
        }
    }

    /// Nodes silent for longer than `timeout`, now taken as gone (their
    /// numbers remembered for twice [`REPLAY_WINDOW`]).
    pub fn expire(&mut self, now: Instant, timeout: Duration) -> Vec<u64> {
        self.gone
            .retain(|_, (_, at)| now.duration_since(*at) < 2 * REPLAY_WINDOW);
        let silent: Vec<u64> = self
            .live
            .iter()
            .filter(|(_, p)| now.duration_since(p.seen) > timeout)
            .map(|(&n, _)| n)
            .collect();
        for node in &silent {
            if let Some(p) = self.live.remove(node) {
                self.gone.insert(*node, (p.max_seq, now));
            }
        }
        silent
    }

    /// The live nodes.
    pub fn live(&self) -> Vec<u64> {
        self.live.keys().copied().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ME: u64 = 1;
    const NOW_MS: u64 = 1_800_000_000_000;

    /// A control envelope numbered `seq` on both counts.
    fn h(node: u64, seq: u64) -> Header {
        Header {
            node,
            seq,
            control: seq,
            stream: CONTROL,
            sent_ms: NOW_MS,
        }
    }

    /// An event envelope on `bucket`.
    fn ev(node: u64, seq: u64, bucket: Stream) -> Header {
        Header {
            control: 1,
            stream: bucket,
            ..h(node, seq)
        }
    }

    #[test]
    fn a_node_numbers_its_envelopes_and_replays_are_refused() {
        let mut p = Peers::new(ME);
        let t = Instant::now();
        let peer = |new, lost| Ok(Admitted::Peer { new, lost });
        assert_eq!(p.admit(&h(7, 3), t, NOW_MS, (0, 0)), peer(true, 0));
        assert_eq!(p.admit(&h(7, 4), t, NOW_MS, (0, 0)), peer(false, 0));
        assert_eq!(p.admit(&h(7, 4), t, NOW_MS, (0, 0)), Err(Refusal::Replayed));
        assert_eq!(p.admit(&h(7, 2), t, NOW_MS, (0, 0)), Err(Refusal::Replayed));
        // Two lost in between.
        assert_eq!(p.admit(&h(7, 7), t, NOW_MS, (0, 0)), peer(false, 2));
        assert_eq!(p.live(), vec![7]);
    }

    #[test]
    fn event_streams_have_gaps_without_loss_and_refuse_replays_per_bucket() {
        let mut p = Peers::new(ME);
        let t = Instant::now();
        let peer = |new, lost| Ok(Admitted::Peer { new, lost });
        assert_eq!(p.admit(&h(7, 1), t, NOW_MS, (0, 0)), peer(true, 0));
        // Numbers 2..9 went to buckets this node does not hear: no loss.
        assert_eq!(p.admit(&ev(7, 10, 5), t, NOW_MS, (0, 0)), peer(false, 0));
        assert_eq!(
            p.admit(&ev(7, 10, 5), t, NOW_MS, (0, 0)),
            Err(Refusal::Replayed)
        );
        // Another bucket is ordered on its own (another subject).
        assert_eq!(p.admit(&ev(7, 8, 6), t, NOW_MS, (0, 0)), peer(false, 0));
        assert_eq!(
            p.admit(&ev(7, 8, 6), t, NOW_MS, (0, 0)),
            Err(Refusal::Replayed)
        );
        // The control stream still counts its own numbers: 2 follows 1.
        let c2 = Header {
            seq: 11,
            control: 2,
            ..h(7, 0)
        };
        assert_eq!(p.admit(&c2, t, NOW_MS, (0, 0)), peer(false, 0));
        // Subscribing to a bucket: what was published before the highest
        // number seen (a recording) is refused, what follows is new.
        p.open_bucket(9);
        assert_eq!(
            p.admit(&ev(7, 9, 9), t, NOW_MS, (0, 0)),
            Err(Refusal::Replayed)
        );
        assert_eq!(p.admit(&ev(7, 12, 9), t, NOW_MS, (0, 0)), peer(false, 0));
    }

    #[test]
    fn a_node_first_heard_on_an_event_stream_expects_its_last_control_envelope() {
        let mut p = Peers::new(ME);
        let t = Instant::now();
        let first = Header {
            control: 4,
            ..ev(7, 20, 3)
        };
        assert_eq!(
            p.admit(&first, t, NOW_MS, (0, 0)),
            Ok(Admitted::Peer { new: true, lost: 0 })
        );
        let c4 = Header {
            seq: 19,
            control: 4,
            ..h(7, 0)
        };
        assert_eq!(
            p.admit(&c4, t, NOW_MS, (0, 0)),
            Ok(Admitted::Peer {
                new: false,
                lost: 0
            })
        );
        assert_eq!(p.admit(&first, t, NOW_MS, (0, 0)), Err(Refusal::Replayed));
    }

    #[test]
    fn our_own_id_is_believed_only_for_what_we_published() {
        let mut p = Peers::new(ME);
        let t = Instant::now();
        assert_eq!(p.admit(&h(ME, 1), t, NOW_MS, (2, 2)), Ok(Admitted::Own));
        assert_eq!(p.admit(&h(ME, 1), t, NOW_MS, (2, 2)), Err(Refusal::Spoofed));
        assert_eq!(p.admit(&h(ME, 3), t, NOW_MS, (2, 2)), Err(Refusal::Spoofed));
        assert_eq!(p.admit(&h(ME, 2), t, NOW_MS, (2, 2)), Ok(Admitted::Own));
        assert_eq!(p.admit(&ev(ME, 2, 1), t, NOW_MS, (2, 2)), Ok(Admitted::Own));
        let replay = p.admit(&ev(ME, 2, 1), t, NOW_MS, (2, 2));
        assert_eq!(replay, Err(Refusal::Spoofed));
        // Each bucket is in order on its own.
        assert_eq!(p.admit(&ev(ME, 1, 2), t, NOW_MS, (2, 2)), Ok(Admitted::Own));
        let unpublished = p.admit(&ev(ME, 3, 1), t, NOW_MS, (2, 2));
        assert_eq!(unpublished, Err(Refusal::Spoofed));
    }

    #[test]
    fn an_unknown_node_must_be_recent_and_a_gone_one_keeps_its_number() {
        let mut p = Peers::new(ME);
        let t = Instant::now();
        let window = REPLAY_WINDOW.as_millis() as u64;
        let old = Header {
            sent_ms: NOW_MS - window - 1,
            ..h(9, 1)
        };
        assert_eq!(p.admit(&old, t, NOW_MS, (0, 0)), Err(Refusal::Stale));
        let ahead = Header {
            sent_ms: NOW_MS + window + 1,
            ..h(9, 1)
        };
        assert_eq!(p.admit(&ahead, t, NOW_MS, (0, 0)), Err(Refusal::Stale));
        assert!(p.admit(&h(9, 5), t, NOW_MS, (0, 0)).is_ok());
        let later = t + Duration::from_secs(11);
        assert_eq!(p.expire(later, Duration::from_secs(10)), vec![9]);
        assert!(p.live().is_empty());
        // A recording of it, within the window, is still refused.
        assert_eq!(
            p.admit(&h(9, 5), later, NOW_MS, (0, 0)),
            Err(Refusal::Replayed)
        );
        assert_eq!(
            p.admit(&ev(9, 4, 2), later, NOW_MS, (0, 0)),
            Err(Refusal::Replayed)
        );
        // It coming back with new envelopes is a new node again.
        assert_eq!(
            p.admit(&h(9, 6), later, NOW_MS, (0, 0)),
            Ok(Admitted::Peer { new: true, lost: 0 })
        );
    }
}
