//! Connection quotas leased to shards: exact node and per-app connection
//! limits without a round trip per connection.
//!
//! Each quota (the node's `max_connections`, an app's `max_connections`) has
//! a *home* shard that holds the budget not yet lent out. Every shard keeps a
//! *lease*: slots it may hand out on its own. Admitting a connection takes a
//! slot from the local lease; only when the lease is used up does the shard
//! ask the home for another chunk, and a shard whose spare grows past two
//! chunks gives the excess back. When the home has nothing left it reclaims
//! every shard's spare before it says no, so a connection is refused only
//! when the node (or app) really is at its limit. This is the shape of
//! Redpanda's connection quotas (`net/conn_quota`).
//!
//! This file is the state and arithmetic; the messages that move chunks
//! between shards are `ShardMsg::Request` (`Lease`, `Reclaim`) and
//! `ShardMsg::Return`, handled in `admission/mod.rs`.
//!
//! # Invariants
//! - For every quota, `home.unleased + Σ home.leased[s] == max`, and for every
//!   shard `s`, `leased[s]` ≥ `s`'s `lease` (the difference is a grant still in
//!   flight to `s` or a return still in flight from it).
//! - On every shard, `used ≤ lease`. So `Σ used ≤ max`: no limit is exceeded,
//!   whatever the timing.

use crate::apps::{AppIdx, AppRegistry};

/// A connection count with a cap, leased out to shards by a home shard
/// (this module).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quota {
    /// WebSocket connections on the node (`server.limits.max_connections`; home: shard 0).
    Node,
    /// Connections of one app (`max_connections`; home: a hash of the app id).
    App(AppIdx),
}

/// Most slots lent in one chunk.
const MAX_CHUNK: u32 = 64;

/// One shard's side of a quota.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Lease {
    /// Slots this shard may hand out.
    lease: u32,
    /// Slots handed out (open connections counted here).
    used: u32,
}

/// The home shard's side of a quota.
#[derive(Debug, Clone)]
struct Home {
    unleased: u32,
    /// Per shard: slots lent and not yet given back.
    leased: Vec<u32>,
}

/// Everything one shard knows about the connection quotas.
pub struct Quotas {
    shards: usize,
    node_max: u32,
    app_max: Vec<Option<u32>>,
    /// Index 0 is the node quota, `1 + app` each app's.
    leases: Vec<Lease>,
    /// Same indices; `Some` for quotas whose home is this shard.
    homes: Vec<Option<Home>>,
}

impl Quotas {
    pub fn new(me: usize, shards: usize, node_max: u32, apps: &AppRegistry) -> Quotas {
        let app_max: Vec<Option<u32>> = (0..apps.len())
            .map(|i| {
                apps.get(crate::apps::AppIdx(i as u32))
                    .limits
                    .max_connections
            })
            .collect();
        let mut q = Quotas {
            shards,
            node_max,
            leases: vec![Lease::default(); 1 + app_max.len()],
            homes: Vec::new(),
            app_max,
        };
        q.homes = (0..q.leases.len())
            .map(|i| {
                let quota = q.quota_at(i);
                (q.home_of(quota, apps) == me).then(|| Home {
                    unleased: q.max(quota).unwrap_or(0),
                    leased: vec![0; shards],
                })
            })
            .collect();
        q
    }

    fn quota_at(&self, i: usize) -> Quota {
        match i {
            0 => Quota::Node,
            n => Quota::App(crate::apps::AppIdx(n as u32 - 1)),
        }
    }

    fn index(quota: Quota) -> usize {
        match quota {
            Quota::Node => 0,
            Quota::App(app) => 1 + app.0 as usize,
        }
    }

    /// The quota's limit; `None` when the app has no connection limit.
    pub fn max(&self, quota: Quota) -> Option<u32> {
        match quota {
            Quota::Node => Some(self.node_max),
            Quota::App(app) => self.app_max[app.0 as usize],
        }
    }

    /// The shard that holds the quota's unleased budget: shard 0 for the
    /// node, a hash of the app's id for an app (so one busy app does not
    /// make shard 0 the home of everything).
    pub fn home_of(&self, quota: Quota, apps: &AppRegistry) -> usize {
        match quota {
            Quota::Node => 0,
            Quota::App(app) => (fnv(apps.get(app).id.as_bytes()) % self.shards as u64) as usize,
        }
    }

    /// Slots asked for or given back at once: small enough that the
    /// shards together can only hold a sliver of the limit spare.
    pub fn chunk(&self, quota: Quota) -> u32 {
        let max = self.max(quota).unwrap_or(0);
        (max / (self.shards as u32 * 8)).clamp(1, MAX_CHUNK)
    }

    /// Takes a slot from the local lease; false when it is used up.
    pub fn take(&mut self, quota: Quota) -> bool {
        let l = &mut self.leases[Self::index(quota)];
        if l.used < l.lease {
            l.used += 1;
            true
        } else {
            false
        }
    }

    /// Frees a slot; returns how many slots to give back to the home
    /// (spare beyond one chunk, once spare passes two chunks).
    pub fn release(&mut self, quota: Quota) -> u32 {
        let chunk = self.chunk(quota);
        let l = &mut self.leases[Self::index(quota)];
        l.used = l.used.saturating_sub(1);
        let spare = l.lease - l.used;
        if spare > 2 * chunk {
            let back = spare - chunk;
            l.lease -= back;
            back
        } else {
            0
        }
    }

    /// Adds slots the home granted to the local lease.
    pub fn absorb(&mut self, quota: Quota, granted: u32) {
        self.leases[Self::index(quota)].lease += granted;
    }

    /// Gives up every unused slot of the local lease; returns how many.
    pub fn reclaim(&mut self, quota: Quota) -> u32 {
        let l = &mut self.leases[Self::index(quota)];
        let spare = l.lease - l.used;
        l.lease = l.used;
        spare
    }

    /// At the home: lends up to `want` slots to shard `to`.
    pub fn grant(&mut self, quota: Quota, to: usize, want: u32) -> u32 {
        let Some(home) = self.homes[Self::index(quota)].as_mut() else {
            debug_assert!(false, "grant asked of a shard that is not the home");
            return 0;
        };
        let n = want.min(home.unleased);
        home.unleased -= n;
        home.leased[to] += n;
        n
    }

    /// At the home: shard `from` gave back `n` slots.
    pub fn returned(&mut self, quota: Quota, from: usize, n: u32) {
        if let Some(home) = self.homes[Self::index(quota)].as_mut() {
            let n = n.min(home.leased[from]);
            home.leased[from] -= n;
            home.unleased += n;
        }
    }

    /// At the home: whether any shard holds slots of this quota (so a
    /// reclaim may free some).
    pub fn lent_out(&self, quota: Quota) -> bool {
        self.homes[Self::index(quota)]
            .as_ref()
            .is_some_and(|h| h.leased.iter().any(|&n| n > 0))
    }
}

/// FNV-1a: a stable spread of app ids over shards.
fn fnv(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apps::App;

    fn registry() -> AppRegistry {
        AppRegistry::new(vec![App::new("a".into(), "k".into(), "s".into())])
    }

    /// Plays home (shard 0) and two shards by hand, as the messages would.
    #[test]
    fn leases_never_exceed_the_limit_and_refuse_only_at_it() {
        let apps = registry();
        let mut home = Quotas::new(0, 2, 10, &apps);
        let mut other = Quotas::new(1, 2, 10, &apps);
        let q = Quota::Node;
        assert_eq!(home.chunk(q), 1); // 10 / 16 rounds to the minimum
        let mut open = 0;
        // Shard 1 takes 6, shard 0 takes 4: each grant is one chunk.
        for _ in 0..6 {
            if !other.take(q) {
                let g = home.grant(q, 1, other.chunk(q));
                other.absorb(q, g);
                assert!(other.take(q));
            }
            open += 1;
        }
        for _ in 0..4 {
            if !home.take(q) {
                let g = home.grant(q, 0, home.chunk(q));
                home.absorb(q, g);
                assert!(home.take(q));
            }
            open += 1;
        }
        assert_eq!(open, 10);
        // The 11th: nothing unleased, nothing spare to reclaim.
        assert!(!other.take(q));
        assert_eq!(home.grant(q, 1, 1), 0);
        assert_eq!(other.reclaim(q), 0);
        // One closes on shard 0: shard 1 can get that slot.
        assert_eq!(home.release(q), 0);
        assert_eq!(home.grant(q, 1, 1), 0); // still lent to shard 0 as spare
        let back = home.reclaim(q);
        home.returned(q, 0, back);
        assert_eq!(home.grant(q, 1, 1), 1);
    }

    #[test]
    fn spare_beyond_two_chunks_is_given_back() {
        let apps = registry();
        let mut q = Quotas::new(0, 1, 10_000, &apps);
        let node = Quota::Node;
        let chunk = q.chunk(node);
        assert_eq!(chunk, 64);
        let g = q.grant(node, 0, 4 * chunk);
        q.absorb(node, g);
        for _ in 0..(4 * chunk) {
            assert!(q.take(node));
        }
        let mut back = 0;
        for _ in 0..(4 * chunk) {
            back += q.release(node);
        }
        // At most two chunks of spare are kept.
        assert!(q.leases[0].lease <= 2 * chunk);
        assert_eq!(back + q.leases[0].lease, 4 * chunk);
    }
}
