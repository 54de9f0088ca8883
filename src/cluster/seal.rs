//! The signature on every engine message: HMAC-SHA256 over the whole
//! envelope, with a key derived from `cluster.secret` and the cluster's
//! subject.
//!
//! Anything that can publish on the engine (another tenant of a shared
//! Redis, a compromised client of it, a typo in another cluster's config)
//! can put bytes on the cluster's subject. A node believes only envelopes
//! signed with the shared secret; it checks the signature (in constant
//! time) before it reads a single field, so an unsigned message costs one
//! HMAC and is counted, never decoded. Deriving the key from the subject
//! as well means an envelope signed for one cluster is refused by another
//! that happens to share the secret.

use bytes::Bytes;
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Bytes of the signature after each envelope.
pub const TAG_BYTES: usize = 32;

/// Signs and checks envelopes; cheap to clone (the keyed state is
/// prepared once).
#[derive(Clone)]
pub struct Seal {
    keyed: HmacSha256,
}

impl Seal {
    /// The seal of the cluster on `subject` with `secret`.
    pub fn new(secret: &[u8], subject: &str) -> Seal {
        let mut derive = HmacSha256::new_from_slice(secret).expect("HMAC takes any key length");
        derive.update(b"shardcast cluster message key v2\0");
        derive.update(subject.as_bytes());
        let key = derive.finalize().into_bytes();
        Seal {
            keyed: HmacSha256::new_from_slice(&key).expect("HMAC takes any key length"),
        }
    }

    /// Appends the signature of everything in `envelope`.
    pub fn sign(&self, envelope: &mut Vec<u8>) {
        let mut mac = self.keyed.clone();
        mac.update(envelope);
        envelope.extend_from_slice(&mac.finalize().into_bytes());
    }

    /// The envelope without its signature, if the signature is right.
    pub fn open(&self, message: &Bytes) -> Option<Bytes> {
        let body_len = message.len().checked_sub(TAG_BYTES)?;
        let (body, tag) = message.split_at(body_len);
        let mut mac = self.keyed.clone();
        mac.update(body);
        mac.verify_slice(tag).ok()?;
        Some(message.slice(..body_len))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealed(seal: &Seal, body: &[u8]) -> Bytes {
        let mut v = body.to_vec();
        seal.sign(&mut v);
        Bytes::from(v)
    }

    #[test]
    fn a_signed_envelope_opens_to_its_body() {
        let seal = Seal::new(b"0123456789abcdef", "shardcast.cluster");
        let m = sealed(&seal, b"SC\x02hello");
        assert_eq!(m.len(), 8 + TAG_BYTES);
        assert_eq!(seal.open(&m).as_deref(), Some(&b"SC\x02hello"[..]));
    }

    #[test]
    fn tampering_another_secret_or_another_cluster_is_refused() {
        let seal = Seal::new(b"0123456789abcdef", "shardcast.cluster");
        let m = sealed(&seal, b"SC\x02hello");
        for i in 0..m.len() {
            let mut bad = m.to_vec();
            bad[i] ^= 1;
            assert!(seal.open(&Bytes::from(bad)).is_none(), "flipped byte {i}");
        }
        assert!(seal.open(&m.slice(..m.len() - 1)).is_none());
        assert!(seal.open(&Bytes::from_static(b"short")).is_none());
        assert!(seal.open(&Bytes::new()).is_none());
        let other_secret = Seal::new(b"0123456789abcdeX", "shardcast.cluster");
        assert!(other_secret.open(&m).is_none());
        let other_cluster = Seal::new(b"0123456789abcdef", "other.cluster");
        assert!(other_cluster.open(&m).is_none());
    }
}
