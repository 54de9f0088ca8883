//! Where a node message travels on the engine: the *streams*.
//!
//! One control stream (`<prefix>.cluster`) carries what every node must
//! hear: heartbeats, presence members, counts, full syncs, queries,
//! terminations. Events (`NodeMsg::Publish`) travel on one of [`BUCKETS`]
//! event streams (`<prefix>.ev.<bucket>`), chosen by hashing the app id and
//! the channel name ([`bucket_of`]); a node subscribes only to the buckets
//! of channels it has subscribers for, so it never receives the events of
//! channels nobody on it listens to. Two channels sharing a bucket only
//! cost a node extra (harmless) events it drops; the bound keeps a node's
//! engine subscriptions at most `BUCKETS + 1` however many channels it has.
//!
//! Events of cache channels are the exception: every node keeps the last
//! one for its future subscribers (and the cache query), so they go on the
//! control stream, which every node hears.
//!
//! The bucket count and the hash are part of the wire format: every node
//! of a cluster must use the same ones (a change bumps the wire version).

use crate::channel_name::ChannelClass;

/// Event streams per cluster.
pub const BUCKETS: usize = 4096;

/// Which stream an envelope belongs to: an event bucket, or [`CONTROL`].
pub type Stream = u16;

/// The control stream's number (no bucket has it).
pub const CONTROL: Stream = u16::MAX;

/// The event bucket of a channel of an app (FNV-1a over the app id, a
/// separator and the name, its bits then mixed as in splitmix64's
/// finaliser, since FNV's low bits spread poorly): the same on every node
/// and every build.
pub fn bucket_of(app_id: &str, channel: &str) -> Stream {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in app_id.bytes().chain([0xff]).chain(channel.bytes()) {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^= h >> 31;
    (h % BUCKETS as u64) as Stream
}

/// The stream an event of `channel` travels on: its bucket, or the
/// control stream for a cache channel (every node keeps its last event).
pub fn stream_for_event(app_id: &str, channel: &str) -> Stream {
    match ChannelClass::of(channel).cache {
        true => CONTROL,
        false => bucket_of(app_id, channel),
    }
}

/// The engine subject (Redis channel, NATS subject) of the control stream.
pub fn control_subject(prefix: &str) -> String {
    format!("{prefix}.cluster")
}

/// The engine subject of event bucket `bucket`.
pub fn event_subject(prefix: &str, bucket: Stream) -> String {
    format!("{prefix}.ev.{bucket}")
}

/// The stream a subject of cluster `prefix` names; `None` for any other.
pub fn stream_of(prefix: &str, subject: &str) -> Option<Stream> {
    let rest = subject.strip_prefix(prefix)?;
    if rest == ".cluster" {
        return Some(CONTROL);
    }
    let n: usize = rest.strip_prefix(".ev.")?.parse().ok()?;
    // Only the one spelling this node publishes ("+1", "01" are not it).
    (n < BUCKETS && event_subject(prefix, n as Stream) == subject).then_some(n as Stream)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_name_their_stream_and_nothing_else() {
        assert_eq!(stream_of("p", &control_subject("p")), Some(CONTROL));
        for b in [0, 1, 4095] {
            assert_eq!(stream_of("p", &event_subject("p", b)), Some(b));
        }
        for other in [
            "p.ev.4096",
            "p.ev.",
            "p.ev.x",
            "q.cluster",
            "p.clusterx",
            "p.ev.+1",
        ] {
            assert_eq!(stream_of("p", other), None, "{other}");
        }
    }

    #[test]
    fn cache_channels_travel_on_the_control_stream() {
        assert_eq!(stream_for_event("a", "cache-news"), CONTROL);
        assert_eq!(stream_for_event("a", "private-cache-x"), CONTROL);
        assert_eq!(stream_for_event("a", "news"), bucket_of("a", "news"));
    }

    #[test]
    fn buckets_are_stable_and_spread() {
        // The hash is part of the wire format: these must never change.
        assert_eq!(bucket_of("", ""), 205);
        assert_eq!(bucket_of("app-id", "news"), bucket_of("app-id", "news"));
        assert_ne!(bucket_of("a", "bc"), bucket_of("ab", "c"));
        let mut seen = std::collections::HashSet::new();
        for i in 0..2000 {
            seen.insert(bucket_of("app", &format!("private-user-{i}")));
        }
        // 2000 names in 4096 buckets fill about 1580 of them at random.
        assert!(seen.len() > 1500, "{} buckets", seen.len());
    }
}
