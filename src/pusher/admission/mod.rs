//! Admission: who may connect and who may call the API, with exact limits
//! and no node-wide hotspot.
//!
//! - Connections on the node and per app: leased quotas ([`quota`]); a shard
//!   admits from its own lease and asks a quota's home only for a new chunk.
//! - Connections per client address: counted at the address's owner shard
//!   ([`ip_quota`]).
//! - API requests per app and second: counted at the app's home shard.
//!
//! The state is this shard's [`Admission`]; the methods that need another
//! shard's answer live on [`Shard`] below, because they ask over the mesh.

pub mod ip_quota;
pub mod quota;

pub use ip_quota::{IpCounts, IpOwners, IpSlot};
pub use quota::{Quota, Quotas};

use super::shard::{Shard, REQUEST_TIMEOUT};
use super::shard_msg::{Reply, Request, ShardMsg};
use crate::apps::{AppIdx, AppRegistry};
use crate::errors::ClientError;
use futures_util::future::join_all;
use std::cell::RefCell;
use std::collections::hash_map::RandomState;
use std::net::IpAddr;

/// What an admitted connection holds, given back when it closes
/// ([`Shard::release_connection`]).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Admitted {
    /// The count its client address holds at the address's owner.
    pub ip: Option<IpSlot>,
    /// Whether it took a slot of its app's `max_connections` (false when the
    /// app had no limit then, even if one was set since).
    pub app_slot: bool,
}

/// One shard's admission state.
pub struct Admission {
    /// Connection quotas: this shard's leases, and the budgets it is home of.
    pub(crate) quotas: RefCell<Quotas>,
    /// API requests per app in the current second (second, count);
    /// meaningful for apps whose home is this shard.
    pub(crate) api_requests: RefCell<Vec<(u32, u32)>>,
    /// Which shard counts each client address.
    pub(crate) ip_owners: IpOwners,
    /// Open connections per client address, for the addresses this shard
    /// owns; empty unless `server.limits.max_connections_per_ip` is set.
    pub(crate) ip_counts: RefCell<IpCounts>,
}

impl Admission {
    /// Shard `me` of `shards`: its leases of the node limit
    /// (`max_connections`) and of each app's, and the keys that pick each
    /// address's owner (the same on every shard).
    pub fn new(
        me: usize,
        shards: usize,
        max_connections: u32,
        apps: &AppRegistry,
        ip_hasher: RandomState,
    ) -> Admission {
        Admission {
            quotas: RefCell::new(Quotas::new(me, shards, max_connections, apps)),
            api_requests: RefCell::new(vec![(0, 0); apps.len()]),
            ip_owners: IpOwners::new(ip_hasher, shards),
            ip_counts: RefCell::new(IpCounts::default()),
        }
    }

    /// Adds the state of apps added to the registry since.
    pub fn grow(&self, apps: &AppRegistry) {
        self.quotas.borrow_mut().grow(apps);
        self.api_requests.borrow_mut().resize(apps.len(), (0, 0));
    }

    /// At a quota's home: shard `from` gave back `n` slots.
    pub fn returned(&self, quota: Quota, from: usize, n: u32) {
        self.quotas.borrow_mut().returned(quota, from, n);
    }

    /// At a quota's home: takes back every slot this shard does not use.
    pub fn reclaim(&self, quota: Quota) -> u32 {
        self.quotas.borrow_mut().reclaim(quota)
    }
}

/// What taking a connection slot came to.
enum Slot {
    Taken,
    /// The quota's limit is reached (its home reclaimed every spare slot).
    Full,
    /// The quota's home did not answer within [`REQUEST_TIMEOUT`].
    NoAnswer {
        home: usize,
    },
}

impl Shard {
    /// The home shard of `quota`.
    pub(crate) fn home_of(&self, quota: Quota) -> usize {
        self.admission
            .quotas
            .borrow()
            .home_of(quota, &self.apps.registry())
    }

    /// Takes a slot of `quota`: from the local lease, else after asking
    /// its home for another chunk.
    async fn take_slot(&self, quota: Quota) -> Slot {
        if self.admission.quotas.borrow_mut().take(quota) {
            return Slot::Taken;
        }
        let want = self.admission.quotas.borrow().chunk(quota);
        let home = self.home_of(quota);
        let granted = if home == self.id as usize {
            self.lend(quota, home, want).await
        } else {
            match self.request(home, Request::Lease { quota, want }).await {
                Some(Reply::Leased { n, .. }) => n,
                Some(_) => 0,
                None => return Slot::NoAnswer { home },
            }
        };
        let mut quotas = self.admission.quotas.borrow_mut();
        quotas.absorb(quota, granted);
        if quotas.take(quota) {
            Slot::Taken
        } else {
            Slot::Full
        }
    }

    /// At a quota's home: lends up to `want` slots to shard `to`. When the
    /// budget is all lent out, first reclaims every shard's unused slots,
    /// so a refusal means the limit really is reached.
    pub(crate) async fn lend(&self, quota: Quota, to: usize, want: u32) -> u32 {
        let granted = self.admission.quotas.borrow_mut().grant(quota, to, want);
        if granted > 0 || !self.admission.quotas.borrow().lent_out(quota) {
            return granted;
        }
        let mine = self.admission.quotas.borrow_mut().reclaim(quota);
        self.admission.returned(quota, self.id as usize, mine);
        let peers: Vec<usize> = self.peers().collect();
        let replies = join_all(
            peers
                .iter()
                .map(|&peer| self.request(peer, Request::Reclaim(quota))),
        )
        .await;
        let mut quotas = self.admission.quotas.borrow_mut();
        for (peer, reply) in peers.into_iter().zip(replies) {
            if let Some(Reply::Returned { n, .. }) = reply {
                quotas.returned(quota, peer, n);
            }
        }
        quotas.grant(quota, to, want)
    }

    /// Reserves a connection slot for the client's address `client`
    /// (`server.limits.max_connections_per_ip`, when set and the address is
    /// known), on the node (`server.limits.max_connections`) and for `app`
    /// (its `max_connections`); says which limit refused. The address is
    /// checked first, so one address over its limit never takes node slots.
    /// Returns what to give back when the connection closes.
    pub async fn admit_connection(
        &self,
        app: AppIdx,
        client: Option<IpAddr>,
    ) -> Result<Admitted, ClientError> {
        let ip = match client {
            Some(ip) => self.admit_ip(ip).await?,
            None => None,
        };
        match self.admit_node_and_app(app).await {
            Ok(app_slot) => Ok(Admitted { ip, app_slot }),
            Err(why) => {
                if let Some(slot) = ip {
                    self.release_ip(slot);
                }
                Err(why)
            }
        }
    }

    /// Takes a node slot and, when the app has a limit, an app slot (true).
    async fn admit_node_and_app(&self, app: AppIdx) -> Result<bool, ClientError> {
        match self.take_slot(Quota::Node).await {
            Slot::Taken => {}
            Slot::Full => {
                crate::warn_limited!(
                    "shard {}: connection refused, node is at max_connections {}",
                    self.id,
                    self.config.limits.max_connections
                );
                return Err(ClientError::OverCapacity);
            }
            Slot::NoAnswer { home } => {
                self.refused_unanswered(home, "the node's");
                return Err(ClientError::OverCapacity);
            }
        }
        if self.apps.get(app).limits.max_connections.is_none() {
            return Ok(false);
        }
        match self.take_slot(Quota::App(app)).await {
            Slot::Taken => Ok(true),
            Slot::Full => {
                self.release_slot(Quota::Node);
                crate::warn_limited!(
                    "shard {}: connection refused, app {} is at its max_connections",
                    self.id,
                    self.apps.get(app).id
                );
                Err(ClientError::OverQuota)
            }
            Slot::NoAnswer { home } => {
                self.release_slot(Quota::Node);
                self.refused_unanswered(home, "the app's");
                Err(ClientError::OverCapacity)
            }
        }
    }

    /// Logs a connection refused because a quota's home did not answer
    /// in time (the client is told to retry: 4100).
    fn refused_unanswered(&self, home: usize, whose: &str) {
        crate::warn_limited!(
            "shard {}: connection refused (4100, retry): shard {home}, which holds {whose} \
             connection quota, did not answer within {} ms",
            self.id,
            REQUEST_TIMEOUT.as_millis()
        );
    }

    /// Gives back the slots taken by [`Shard::admit_connection`].
    pub fn release_connection(&self, app: AppIdx, held: Admitted) {
        if let Some(slot) = held.ip {
            self.release_ip(slot);
        }
        self.release_slot(Quota::Node);
        if held.app_slot {
            self.release_slot(Quota::App(app));
        }
    }

    /// Frees one slot locally; spare slots beyond the lease's margin go
    /// back to the home.
    fn release_slot(&self, quota: Quota) {
        let back = self.admission.quotas.borrow_mut().release(quota);
        if back > 0 {
            self.give_back(quota, back);
        }
    }

    pub(crate) fn give_back(&self, quota: Quota, n: u32) {
        let home = self.home_of(quota);
        if home == self.id as usize {
            self.admission.quotas.borrow_mut().returned(quota, home, n);
        } else {
            self.post(home, ShardMsg::Return { quota, n });
        }
    }

    /// An answer that arrived after its asker stopped waiting: slots it
    /// moves are counted where they now belong.
    pub(crate) fn late_reply(&self, from: usize, body: Reply) {
        match body {
            Reply::Leased { quota, n } => self.admission.quotas.borrow_mut().absorb(quota, n),
            Reply::Returned { quota, n } => {
                self.admission.quotas.borrow_mut().returned(quota, from, n)
            }
            Reply::IpAdmitted { ip, admitted } => self.late_ip_reply(from, ip, admitted),
            // Kept for the console's next ask, not lost.
            Reply::Tap(part) => self.tap.absorb(*part),
            _ => {}
        }
    }

    /// Counts one HTTP API request of `app` against its
    /// `max_api_requests_per_second`, on the app's home shard.
    pub async fn admit_api_request(&self, app: AppIdx) -> bool {
        if self.apps.get(app).max_api_requests_per_second.is_none() {
            return true;
        }
        let home = self.home_of(Quota::App(app));
        if home == self.id as usize {
            return self.count_api_request(app);
        }
        match self.request(home, Request::ApiRequest { app }).await {
            Some(Reply::Admitted(admitted)) => admitted,
            _ => true, // the home did not answer in time: let it through
        }
    }

    pub(crate) fn count_api_request(&self, app: AppIdx) -> bool {
        let max = self
            .apps
            .get(app)
            .max_api_requests_per_second
            .unwrap_or(u32::MAX);
        let now = self.now();
        let mut windows = self.admission.api_requests.borrow_mut();
        let (second, count) = &mut windows[app.0 as usize];
        if *second != now {
            *second = now;
            *count = 0;
        }
        if *count >= max {
            false
        } else {
            *count += 1;
            true
        }
    }
}
