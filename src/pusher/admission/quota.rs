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
//! - For every quota, `home.unleased + Σ home.leased[s] == max` (0 for an
//!   app without a limit), and for every
//!   shard `s`, `leased[s]` ≥ `s`'s `lease` (the difference is a grant still in
//!   flight to `s` or a return still in flight from it).
//! - On every shard, `used ≤ lease`. So `Σ used ≤ max`: no limit is exceeded,
//!   whatever the timing.
//! - An app's limit may change while it runs ([`Quotas::set_max`]): the home
//!   moves `unleased` by the difference, so a lowered limit can leave it
//!   negative (more is leased than the new limit); nothing is granted until
//!   returns bring it above 0, so connections already open stay and new ones
//!   wait for room under the new limit. Every shard gives its spare back on
//!   a change and, after a lowering, every slot freed until the home grants
//!   it slots again (`Lease::shrinking`), so `lease == used` on every shard
//!   while the home is below 0 and nothing is admitted over the new limit.
//! - Only connections that took an app slot give one back (the connection
//!   remembers it), so a limit set while connections are open counts only
//!   the connections admitted under it.

use crate::apps::{AppIdx, AppRegistry};

/// The quota's limit as the home counts it: no limit counts as 0.
fn counted(max: Option<u32>) -> i64 {
    max.unwrap_or(0) as i64
}

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
    /// The limit was lowered and the home has granted nothing since: freed
    /// slots all go home, none is kept spare.
    shrinking: bool,
}

/// The home shard's side of a quota.
#[derive(Debug, Clone)]
struct Home {
    /// Negative after a limit was lowered below what is leased.
    unleased: i64,
    /// Per shard: slots lent and not yet given back.
    leased: Vec<u32>,
}

/// Everything one shard knows about the connection quotas.
pub struct Quotas {
    me: usize,
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
        let mut q = Quotas {
            me,
            shards,
            node_max,
            leases: vec![Lease::default()],
            homes: vec![(me == 0).then(|| Home {
                unleased: node_max as i64,
                leased: vec![0; shards],
            })],
            app_max: Vec::new(),
        };
        q.grow(apps);
        q
    }

    /// Adds the quotas of apps added to the registry since.
    pub fn grow(&mut self, apps: &AppRegistry) {
        for i in self.app_max.len()..apps.len() {
            let app = AppIdx(i as u32);
            let max = apps.get(app).limits.max_connections;
            let home = self.home_of(Quota::App(app), apps) == self.me;
            self.app_max.push(max);
            self.leases.push(Lease::default());
            self.homes.push(home.then(|| Home {
                unleased: counted(max),
                leased: vec![0; self.shards],
            }));
        }
    }

    /// An app's limit changed to `max`: the home moves its budget by the
    /// difference; every shard gives back its spare (returns how many
    /// slots to send home).
    pub fn set_max(&mut self, app: AppIdx, max: Option<u32>) -> u32 {
        let i = app.0 as usize;
        let old = std::mem::replace(&mut self.app_max[i], max);
        if let Some(home) = self.homes[1 + i].as_mut() {
            home.unleased += counted(max) - counted(old);
        }
        if counted(max) < counted(old) {
            self.leases[1 + i].shrinking = true;
        }
        self.reclaim(Quota::App(app))
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
        if l.shrinking {
            l.lease = l.used;
            return spare;
        }
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
        let l = &mut self.leases[Self::index(quota)];
        l.lease += granted;
        if granted > 0 {
            l.shrinking = false;
        }
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
        let n = want.min(home.unleased.clamp(0, u32::MAX as i64) as u32);
        home.unleased -= n as i64;
        home.leased[to] += n;
        n
    }

    /// At the home: shard `from` gave back `n` slots.
    pub fn returned(&mut self, quota: Quota, from: usize, n: u32) {
        if let Some(home) = self.homes[Self::index(quota)].as_mut() {
            let n = n.min(home.leased[from]);
            home.leased[from] -= n;
            home.unleased += n as i64;
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

    #[test]
    fn a_lowered_app_limit_admits_nothing_until_below_it_and_new_apps_get_quotas() {
        let mut one = App::new("a".into(), "k".into(), "s".into());
        one.limits.max_connections = Some(4);
        let apps = AppRegistry::new(vec![one.clone()]);
        // One shard: it is every quota's home.
        let mut q = Quotas::new(0, 1, 100, &apps);
        let app = Quota::App(AppIdx(0));
        let g = q.grant(app, 0, 4);
        q.absorb(app, g);
        for _ in 0..3 {
            assert!(q.take(app));
        }
        // Limit 4 -> 2 with 3 open: the spare goes home, nothing is granted.
        let back = q.set_max(AppIdx(0), Some(2));
        assert_eq!(back, 1);
        q.returned(app, 0, back);
        assert!(!q.take(app));
        assert_eq!(q.grant(app, 0, 1), 0);
        // Two close: while shrinking, every freed slot goes home at once.
        for _ in 0..2 {
            let back = q.release(app);
            assert_eq!(back, 1, "no spare kept over a lowered limit");
            q.returned(app, 0, back);
        }
        // 1 open of 2: one more fits, and the grant ends the shrinking.
        assert_eq!(q.grant(app, 0, 5), 1);
        q.absorb(app, 1);
        assert!(q.take(app) && !q.take(app));
        // A new app in the registry gets its own quota.
        let mut two = App::new("b".into(), "k2".into(), "s".into());
        two.limits.max_connections = Some(7);
        let (apps, _) = apps.updated(vec![crate::apps::AppChange::Put(two)]);
        q.grow(&apps);
        assert_eq!(q.max(Quota::App(AppIdx(1))), Some(7));
        assert_eq!(q.grant(Quota::App(AppIdx(1)), 0, 100), 7);
    }
}
