//! Open connections per client address (`server.limits.max_connections_per_ip`),
//! exact across shards with no shard asked about every address.
//!
//! Each address's count lives on one shard, its *owner*, picked by a keyed
//! hash of the address ([`IpOwners`]: std's SipHash with keys drawn once per
//! process and shared by every shard), so addresses spread evenly and a
//! client cannot choose addresses that all land on one shard. Admitting a
//! connection asks the owner to count it ([`Request::IpAdmit`]); the count
//! is given back with [`ShardMsg::IpRelease`] when the connection closes.
//! When the owner is the admitting shard itself, no message is sent. The
//! owner's map ([`IpCounts`]) drops an address when its count reaches
//! zero, so it never holds more entries than there are open connections.
//!
//! A count held at an owner is an [`IpSlot`]: it is not `Clone`, and giving
//! it back ([`Shard::release_ip`]) takes it by value, so each admitted
//! connection gives back exactly what it took, once.
//!
//! # When the owner does not answer in time
//! The admission fails open: the connection is admitted without a count
//! (it holds no [`IpSlot`], so its close gives nothing back), and the node
//! limit (`server.limits.max_connections`) still applies to it. If the
//! owner's answer arrives later and did count the connection, that count is
//! given back at once ([`Shard::late_ip_reply`]), so counts never leak.
//!
//! None of this runs unless the limit is configured: without it no address
//! is read, hashed or counted.

use crate::errors::ClientError;
use crate::pusher::shard::Shard;
use crate::pusher::shard_msg::{Reply, Request, ShardMsg};
use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::net::IpAddr;

/// Which shard owns each address's count: a keyed hash of the address.
pub struct IpOwners {
    /// The keys, drawn once per process; every shard holds a clone (a clone
    /// keeps the keys), so all shards agree on every address's owner.
    hasher: RandomState,
    shards: usize,
}

impl IpOwners {
    pub fn new(hasher: RandomState, shards: usize) -> IpOwners {
        IpOwners {
            hasher,
            shards: shards.max(1),
        }
    }

    /// The shard that counts connections from `ip`.
    pub fn owner_of(&self, ip: IpAddr) -> usize {
        (self.hasher.hash_one(ip) % self.shards as u64) as usize
    }
}

/// At an owner: open connections per address, for the addresses it owns.
/// Addresses come from clients, so the map keeps std's keyed hash.
#[derive(Default)]
pub struct IpCounts {
    open: HashMap<IpAddr, u32>,
}

impl IpCounts {
    /// Counts one more connection from `ip` unless it already has `max`.
    pub fn admit(&mut self, ip: IpAddr, max: u32) -> bool {
        let open = self.open.entry(ip).or_insert(0);
        if *open >= max {
            if *open == 0 {
                self.open.remove(&ip);
            }
            return false;
        }
        *open += 1;
        true
    }

    /// One connection from `ip` closed; the entry goes at zero.
    pub fn release(&mut self, ip: IpAddr) {
        if let Some(open) = self.open.get_mut(&ip) {
            *open -= 1;
            if *open == 0 {
                self.open.remove(&ip);
            }
        }
    }

    /// Open connections counted for `ip`.
    pub fn open(&self, ip: IpAddr) -> u32 {
        self.open.get(&ip).copied().unwrap_or(0)
    }

    /// Addresses with at least one open connection.
    pub fn addresses(&self) -> usize {
        self.open.len()
    }
}

/// One connection counted against its address at the address's owner.
/// Given back by value, once ([`Shard::release_ip`]).
#[derive(Debug, PartialEq, Eq)]
pub struct IpSlot {
    ip: IpAddr,
}

impl Shard {
    /// Counts a connection from `ip` against `server.limits.max_connections_per_ip`
    /// at the address's owner. `Ok(None)`: no limit is configured, or the
    /// owner did not answer in time (admitted uncounted, see the module
    /// documentation).
    pub async fn admit_ip(&self, ip: IpAddr) -> Result<Option<IpSlot>, ClientError> {
        let Some(max) = self.config.limits.max_connections_per_ip else {
            return Ok(None);
        };
        let owner = self.admission.ip_owners.owner_of(ip);
        let admitted = if owner == self.id as usize {
            self.count_ip(ip)
        } else {
            match self.request(owner, Request::IpAdmit(ip)).await {
                Some(Reply::IpAdmitted { admitted, .. }) => admitted,
                _ => return Ok(None), // fail open: the node limit still applies
            }
        };
        if admitted {
            return Ok(Some(IpSlot { ip }));
        }
        crate::warn_limited!(
            "shard {}: connection from {ip} refused, it has max_connections_per_ip {max}",
            self.id
        );
        Err(ClientError::OverIpLimit(max))
    }

    /// Gives back the count an admitted connection took.
    pub fn release_ip(&self, slot: IpSlot) {
        let owner = self.admission.ip_owners.owner_of(slot.ip);
        if owner == self.id as usize {
            self.admission.ip_counts.borrow_mut().release(slot.ip);
        } else {
            self.post(owner, ShardMsg::IpRelease(slot.ip));
        }
    }

    /// At the owner: counts one more connection from `ip` if it may open.
    pub(crate) fn count_ip(&self, ip: IpAddr) -> bool {
        let max = self
            .config
            .limits
            .max_connections_per_ip
            .unwrap_or(u32::MAX);
        self.admission.ip_counts.borrow_mut().admit(ip, max)
    }

    /// At the owner: a connection from `ip` closed on another shard.
    pub(crate) fn uncount_ip(&self, ip: IpAddr) {
        self.admission.ip_counts.borrow_mut().release(ip);
    }

    /// The owner counted a connection after its asker stopped waiting and
    /// admitted it uncounted: the count goes back to `owner` at once.
    pub(crate) fn late_ip_reply(&self, owner: usize, ip: IpAddr, admitted: bool) {
        if admitted {
            self.post(owner, ShardMsg::IpRelease(ip));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn counts_refuse_at_the_limit_and_forget_addresses_at_zero() {
        let mut counts = IpCounts::default();
        let a = ip("203.0.113.5");
        assert!(counts.admit(a, 3));
        assert!(counts.admit(a, 3));
        assert!(counts.admit(a, 3));
        assert!(!counts.admit(a, 3));
        assert_eq!(counts.open(a), 3);
        // Another address has its own count.
        assert!(counts.admit(ip("10.0.0.1"), 3));
        counts.release(a);
        assert!(counts.admit(a, 3));
        for _ in 0..3 {
            counts.release(a);
        }
        assert_eq!(counts.open(a), 0);
        assert_eq!(counts.addresses(), 1);
        counts.release(ip("10.0.0.1"));
        assert_eq!(counts.addresses(), 0);
        // A release with nothing counted changes nothing.
        counts.release(a);
        assert_eq!(counts.addresses(), 0);
        // A refusal at a limit of 0 leaves no empty entry behind.
        assert!(!counts.admit(a, 0));
        assert_eq!(counts.addresses(), 0);
    }

    /// Every shard's clone of the keys gives the same owner.
    #[test]
    fn clones_of_the_keys_agree_on_owners() {
        let keys = RandomState::new();
        let a = IpOwners::new(keys.clone(), 4);
        let b = IpOwners::new(keys, 4);
        for n in 0..1000u32 {
            let addr = IpAddr::from(n.to_be_bytes());
            assert_eq!(a.owner_of(addr), b.owner_of(addr));
            assert!(a.owner_of(addr) < 4);
        }
    }

    /// Consecutive addresses (what one client with a block of addresses
    /// would use) spread over the shards, and not the same way under
    /// other keys, so the spread cannot be planned from outside.
    #[test]
    fn addresses_spread_over_shards_under_secret_keys() {
        let shards = 4;
        let spread = |owners: &IpOwners| {
            let mut per_shard = vec![0u32; shards];
            let mut placed = Vec::new();
            for n in 0..4000u32 {
                let v4 = IpAddr::from((0xCB00_7100u32 + n).to_be_bytes());
                let v6: IpAddr = format!("2001:db8::{n:x}").parse().unwrap();
                for addr in [v4, v6] {
                    let s = owners.owner_of(addr);
                    per_shard[s] += 1;
                    placed.push(s);
                }
            }
            (per_shard, placed)
        };
        let (per_shard, placed) = spread(&IpOwners::new(RandomState::new(), shards));
        // 8000 addresses, 2000 expected per shard: every shard within 15%.
        for (s, &n) in per_shard.iter().enumerate() {
            assert!(
                (1700..=2300).contains(&n),
                "shard {s} owns {n}: {per_shard:?}"
            );
        }
        let (_, other) = spread(&IpOwners::new(RandomState::new(), shards));
        let same = placed.iter().zip(&other).filter(|(a, b)| a == b).count();
        // Independent keys agree on about a quarter of the addresses.
        assert!(
            same < placed.len() / 2,
            "{same} of {} placed alike",
            placed.len()
        );
    }

    #[test]
    fn one_shard_owns_everything() {
        let owners = IpOwners::new(RandomState::new(), 1);
        assert_eq!(owners.owner_of(ip("::1")), 0);
        assert_eq!(owners.owner_of(ip("8.8.8.8")), 0);
    }
}
