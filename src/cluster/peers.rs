//! The other nodes as the link knows them: who is alive, and which of
//! their envelopes have been seen.
//!
//! A signature proves an envelope came from a node holding the secret, not
//! that it is new: a recording of it could be published again. Each node
//! numbers its envelopes (`seq`, from 1, one more per envelope), so for a
//! node it knows the link accepts only a number above the last one seen
//! (below or equal is a replay) and a number more than one above means
//! envelopes were lost (a gap, reported so state can be resynchronised).
//! A node it does not know (new, or forgotten after it went silent) is
//! believed only if the envelope's send time is within [`REPLAY_WINDOW`]
//! of this node's clock, and a silent node's last number is remembered for
//! twice that window, so neither an old recording nor one of a node that
//! just went away can pose as a live node. Envelopes carrying this node's
//! own id are its own, echoed by the engine, only if they carry a number it
//! published and has not seen come back yet; any other is someone else
//! claiming its id.
//!
//! Invariant: a node is in at most one of `live` and `gone`.

use super::wire::Header;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// How far a new node's clock may be from ours; also how old a recording
/// can be and still be checked against remembered numbers rather than
/// refused by its time.
pub const REPLAY_WINDOW: Duration = Duration::from_secs(60);
/// Nodes tracked at once, live and recently gone (a bound on memory).
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
}

impl Refusal {
    pub const ALL: [Refusal; 7] = [
        Refusal::Signature,
        Refusal::Malformed,
        Refusal::Replayed,
        Refusal::Spoofed,
        Refusal::Stale,
        Refusal::UnknownApp,
        Refusal::Invalid,
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
    last_seq: u64,
    seen: Instant,
}

/// The link's record of nodes.
pub struct Peers {
    me: u64,
    live: HashMap<u64, Live>,
    /// Nodes that went silent: their last number, and when they went.
    gone: HashMap<u64, (u64, Instant)>,
    /// The highest of our own numbers seen back from the engine.
    own_echoed: u64,
}

impl Peers {
    pub fn new(me: u64) -> Peers {
        Peers {
            me,
            live: HashMap::new(),
            gone: HashMap::new(),
            own_echoed: 0,
        }
    }

    /// Decides on an envelope with a valid signature. `published`: the
    /// highest number this node has given an envelope so far; `now_ms`:
    /// this node's clock, ms since the Unix epoch.
    pub fn admit(
        &mut self,
        h: &Header,
        now: Instant,
        now_ms: u64,
        published: u64,
    ) -> Result<Admitted, Refusal> {
        if h.node == self.me {
            if h.seq > self.own_echoed && h.seq <= published {
                self.own_echoed = h.seq;
                return Ok(Admitted::Own);
            }
            return Err(Refusal::Spoofed);
        }
        if let Some(peer) = self.live.get_mut(&h.node) {
            if h.seq <= peer.last_seq {
                return Err(Refusal::Replayed);
            }
            let lost = h.seq - peer.last_seq - 1;
            peer.last_seq = h.seq;
            peer.seen = now;
            return Ok(Admitted::Peer { new: false, lost });
        }
        if let Some(&(last_seq, _)) = self.gone.get(&h.node) {
            if h.seq <= last_seq {
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
        self.live.insert(
            h.node,
            Live {
                last_seq: h.seq,
                seen: now,
            },
        );
        Ok(Admitted::Peer { new: true, lost: 0 })
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
                self.gone.insert(*node, (p.last_seq, now));
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

    fn h(node: u64, seq: u64) -> Header {
        Header {
            node,
            seq,
            sent_ms: NOW_MS,
        }
    }

    #[test]
    fn a_node_numbers_its_envelopes_and_replays_are_refused() {
        let mut p = Peers::new(ME);
        let t = Instant::now();
        let peer = |new, lost| Ok(Admitted::Peer { new, lost });
        assert_eq!(p.admit(&h(7, 3), t, NOW_MS, 0), peer(true, 0));
        assert_eq!(p.admit(&h(7, 4), t, NOW_MS, 0), peer(false, 0));
        assert_eq!(p.admit(&h(7, 4), t, NOW_MS, 0), Err(Refusal::Replayed));
        assert_eq!(p.admit(&h(7, 2), t, NOW_MS, 0), Err(Refusal::Replayed));
        // Two lost in between.
        assert_eq!(p.admit(&h(7, 7), t, NOW_MS, 0), peer(false, 2));
        assert_eq!(p.live(), vec![7]);
    }

    #[test]
    fn our_own_id_is_believed_only_for_what_we_published() {
        let mut p = Peers::new(ME);
        let t = Instant::now();
        assert_eq!(p.admit(&h(ME, 1), t, NOW_MS, 2), Ok(Admitted::Own));
        assert_eq!(p.admit(&h(ME, 1), t, NOW_MS, 2), Err(Refusal::Spoofed));
        assert_eq!(p.admit(&h(ME, 3), t, NOW_MS, 2), Err(Refusal::Spoofed));
        assert_eq!(p.admit(&h(ME, 2), t, NOW_MS, 2), Ok(Admitted::Own));
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
        assert_eq!(p.admit(&old, t, NOW_MS, 0), Err(Refusal::Stale));
        let ahead = Header {
            sent_ms: NOW_MS + window + 1,
            ..h(9, 1)
        };
        assert_eq!(p.admit(&ahead, t, NOW_MS, 0), Err(Refusal::Stale));
        assert!(p.admit(&h(9, 5), t, NOW_MS, 0).is_ok());
        let later = t + Duration::from_secs(11);
        assert_eq!(p.expire(later, Duration::from_secs(10)), vec![9]);
        assert!(p.live().is_empty());
        // A recording of it, within the window, is still refused.
        assert_eq!(p.admit(&h(9, 5), later, NOW_MS, 0), Err(Refusal::Replayed));
        // It coming back with new envelopes is a new node again.
        assert_eq!(
            p.admit(&h(9, 6), later, NOW_MS, 0),
            Ok(Admitted::Peer { new: true, lost: 0 })
        );
    }
}
