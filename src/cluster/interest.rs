//! Which event buckets (`route`) this node needs from the engine, shared
//! by the shards and the cluster link.
//!
//! A shard *holds* a bucket for each subscription of a channel in it, and
//! for each subscribe under way (taken before it waits, so the link never
//! drops a bucket a subscriber is waiting for); it releases the hold when
//! the subscription ends or the subscribe fails. A bucket is *open* while
//! the link's engine subscription to it is confirmed (or, while the engine
//! is unreachable, recorded to be made on reconnection).
//!
//! Exactness: a subscriber may be told `subscription_succeeded` only once
//! its bucket is open. The hold and the link's close are a handshake on
//! two sequentially consistent atomics: a shard increments `holds` then
//! reads `open`; the link, closing an idle bucket, clears `open` then reads
//! `holds` and reopens if anyone holds it. Whatever the interleaving,
//! either the shard sees the bucket closed (and asks the link, which opens
//! it again before answering) or the link sees the hold (and keeps the
//! subscription): a shard never sees `open` for a bucket the link drops.

use super::route::{Stream, BUCKETS};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering::SeqCst};

/// Holds and open flags, one of each per bucket.
pub struct Interest {
    holds: Box<[AtomicU32]>,
    open: Box<[AtomicBool]>,
}

impl Default for Interest {
    fn default() -> Self {
        Interest {
            holds: (0..BUCKETS).map(|_| AtomicU32::new(0)).collect(),
            open: (0..BUCKETS).map(|_| AtomicBool::new(false)).collect(),
        }
    }
}

impl Interest {
    /// Takes a hold on `bucket`; true if it is open (the caller need not
    /// wait for the link).
    pub fn hold(&self, bucket: Stream) -> bool {
        self.holds[bucket as usize].fetch_add(1, SeqCst);
        self.open[bucket as usize].load(SeqCst)
    }

    /// Gives back one hold on `bucket`.
    pub fn release(&self, bucket: Stream) {
        let was = self.holds[bucket as usize].fetch_sub(1, SeqCst);
        debug_assert!(was > 0, "bucket {bucket} released more than held");
    }

    /// Whether anything holds `bucket`.
    pub fn held(&self, bucket: Stream) -> bool {
        self.holds[bucket as usize].load(SeqCst) > 0
    }

    /// Whether the link is subscribed to `bucket`.
    pub fn is_open(&self, bucket: Stream) -> bool {
        self.open[bucket as usize].load(SeqCst)
    }

    /// The link: `bucket`'s engine subscription is in place.
    pub fn mark_open(&self, bucket: Stream) {
        self.open[bucket as usize].store(true, SeqCst);
    }

    /// The link: closes `bucket` unless something holds it; true if closed
    /// (the link then drops its engine subscription).
    pub fn close_if_idle(&self, bucket: Stream) -> bool {
        let i = bucket as usize;
        self.open[i].store(false, SeqCst);
        if self.holds[i].load(SeqCst) > 0 {
            self.open[i].store(true, SeqCst);
            return false;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_bucket_is_never_closed() {
        let i = Interest::default();
        assert!(!i.hold(3), "not open yet: the shard asks the link");
        i.mark_open(3);
        assert!(!i.close_if_idle(3));
        assert!(i.is_open(3), "reopened for its holder");
        i.release(3);
        assert!(!i.held(3));
        assert!(i.close_if_idle(3));
        assert!(!i.is_open(3));
    }
}
