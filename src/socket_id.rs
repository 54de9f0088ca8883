//! `SocketId`: the `"N.M"` identifier Pusher gives each connection.
//!
//! It encodes where the connection lives so any shard can tell whether a
//! socket_id named in a trigger is one of its own without a lookup table:
//! `N = nonce * 1024 + shard` and `M = serial * 2^24 + slot`, where `nonce`
//! is chosen per process start (so ids from an earlier run never match),
//! `slot` is the connection's index in its shard's table and `serial` a
//! per-shard counter that makes a reused slot get a new id.

use std::fmt;

pub const MAX_SHARDS: u32 = 1024;
const SLOT_BITS: u32 = 24;
pub const MAX_SLOTS: u32 = 1 << SLOT_BITS;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SocketId {
    pub nonce: u32,
    pub shard: u16,
    pub slot: u32,
    pub serial: u32,
}

impl SocketId {
    /// Parses `"N.M"`; `None` for anything else (a client-supplied socket_id
    /// that does not parse simply matches no connection).
    pub fn parse(text: &str) -> Option<SocketId> {
        let (n, m) = text.split_once('.')?;
        if !is_digits(n) || !is_digits(m) {
            return None;
        }
        let n: u64 = n.parse().ok()?;
        let m: u64 = m.parse().ok()?;
        let nonce = u32::try_from(n / MAX_SHARDS as u64).ok()?;
        let serial = u32::try_from(m >> SLOT_BITS).ok()?;
        Some(SocketId {
            nonce,
            shard: (n % MAX_SHARDS as u64) as u16,
            slot: (m & (MAX_SLOTS as u64 - 1)) as u32,
            serial,
        })
    }

    /// True when `text` has the `digits.digits` shape Pusher libraries require.
    pub fn is_well_formed(text: &str) -> bool {
        matches!(text.split_once('.'), Some((n, m)) if is_digits(n) && is_digits(m))
    }
}

fn is_digits(s: &str) -> bool {
    !s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit())
}

impl fmt::Display for SocketId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.nonce as u64 * MAX_SHARDS as u64 + self.shard as u64;
        let m = ((self.serial as u64) << SLOT_BITS) | self.slot as u64;
        write!(f, "{n}.{m}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_text() {
        let id = SocketId {
            nonce: 987_654,
            shard: 3,
            slot: 12_345,
            serial: 77,
        };
        let text = id.to_string();
        assert!(SocketId::is_well_formed(&text));
        assert_eq!(SocketId::parse(&text), Some(id));
        let extreme = SocketId {
            nonce: u32::MAX,
            shard: 1023,
            slot: MAX_SLOTS - 1,
            serial: u32::MAX,
        };
        assert_eq!(SocketId::parse(&extreme.to_string()), Some(extreme));
    }

    #[test]
    fn text_has_the_pusher_shape() {
        let id = SocketId {
            nonce: 1,
            shard: 0,
            slot: 0,
            serial: 0,
        };
        assert_eq!(id.to_string(), "1024.0");
        let id = SocketId {
            nonce: 2,
            shard: 1,
            slot: 5,
            serial: 1,
        };
        assert_eq!(id.to_string(), format!("2049.{}", (1u64 << 24) + 5));
    }

    #[test]
    fn rejects_other_shapes() {
        for bad in [
            "",
            "1",
            "1.",
            ".1",
            "a.b",
            "1.2.3",
            "-1.2",
            "1.2 ",
            "99999999999999999999999.1",
        ] {
            assert_eq!(SocketId::parse(bad), None, "{bad:?}");
        }
        assert!(!SocketId::is_well_formed("1.x"));
        assert!(SocketId::is_well_formed("123.456"));
    }
}
