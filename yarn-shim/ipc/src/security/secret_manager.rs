//! Token secrets: numbered master keys that roll, with
//! `password = HMAC-SHA1(key, identifier bytes)` as Hadoop computes it.
//!
//! The current key signs new tokens; older keys keep verifying until their
//! expiry, so tokens issued just before a roll stay valid. Time is passed in
//! (milliseconds since the epoch, like Hadoop's key expiry fields), and key
//! material can be injected, so the manager is deterministic under test.
//! Token identifiers carry the key id (`keyId`/`masterKeyId` fields), which
//! the caller decodes and passes here.

use std::collections::BTreeMap;

use hmac::{Hmac, Mac};
use sha1::Sha1;

use crate::error::{Error, Result};

/// A numbered secret key with the instant after which it no longer verifies.
#[derive(Clone, PartialEq, Eq)]
pub struct MasterKey {
    pub id: i32,
    pub secret: Vec<u8>,
    pub expires_at_ms: u64,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret.
        f.debug_struct("MasterKey").field("id", &self.id).field("expires_at_ms", &self.expires_at_ms).finish()
    }
}

/// HMAC-SHA1 of `identifier` under `secret`.
pub fn compute_password(secret: &[u8], identifier: &[u8]) -> Vec<u8> {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <Hmac<Sha1> as Mac>::new_from_slice(secret).unwrap_or_else(|_| unreachable!());
    mac.update(identifier);
    mac.finalize().into_bytes().to_vec()
}

#[derive(Debug)]
pub struct SecretManager {
    keys: BTreeMap<i32, MasterKey>,
    current: i32,
    /// How long a key verifies after it was made current.
    key_lifetime_ms: u64,
}

/// Length of generated keys (Hadoop uses 64-byte HmacSHA1 keys by default).
pub const KEY_LEN: usize = 64;

impl SecretManager {
    /// A manager whose first key (id 1) is `secret`, current from `now_ms`.
    pub fn new(secret: Vec<u8>, key_lifetime_ms: u64, now_ms: u64) -> Self {
        let mut keys = BTreeMap::new();
        keys.insert(1, MasterKey { id: 1, secret, expires_at_ms: now_ms.saturating_add(key_lifetime_ms) });
        SecretManager { keys, current: 1, key_lifetime_ms }
    }

    /// A fresh random key.
    pub fn random_secret() -> Vec<u8> {
        let mut s = vec![0u8; KEY_LEN];
        rand::Rng::fill(&mut rand::rng(), &mut s[..]);
        s
    }

    pub fn current_key_id(&self) -> i32 {
        self.current
    }

    pub fn current_key(&self) -> &MasterKey {
        // `current` always names a key: it is only set right after inserting.
        &self.keys[&self.current]
    }

    /// Makes `secret` the current key under the next id and drops keys that
    /// expired by `now_ms`. Returns the new key id.
    pub fn roll(&mut self, secret: Vec<u8>, now_ms: u64) -> i32 {
        let id = self.current.checked_add(1).unwrap_or(1);
        self.keys.insert(id, MasterKey { id, secret, expires_at_ms: now_ms.saturating_add(self.key_lifetime_ms) });
        self.current = id;
        self.expire(now_ms);
        id
    }

    /// Forgets keys past their expiry, except the current one.
    pub fn expire(&mut self, now_ms: u64) {
        let current = self.current;
        self.keys.retain(|id, k| *id == current || k.expires_at_ms > now_ms);
    }

    /// The password of a new token under the current key; the identifier
    /// must already name `current_key_id()`.
    pub fn sign(&self, identifier: &[u8]) -> Vec<u8> {
        compute_password(&self.current_key().secret, identifier)
    }

    /// The password `identifier` must have if it was signed with `key_id`,
    /// or an error if that key is unknown or expired at `now_ms`.
    pub fn password_for(&self, key_id: i32, identifier: &[u8], now_ms: u64) -> Result<Vec<u8>> {
        let key = self
            .keys
            .get(&key_id)
            .ok_or_else(|| Error::Auth(format!("master key {key_id} is unknown (rolled away or never issued)")))?;
        if key.id != self.current && key.expires_at_ms <= now_ms {
            return Err(Error::Auth(format!("master key {key_id} expired at {} ms", key.expires_at_ms)));
        }
        Ok(compute_password(&key.secret, identifier))
    }

    /// Checks a presented password in constant time.
    pub fn verify(&self, key_id: i32, identifier: &[u8], password: &[u8], now_ms: u64) -> Result<()> {
        let want = self.password_for(key_id, identifier, now_ms)?;
        let same = want.len() == password.len() && want.iter().zip(password).fold(0u8, |a, (x, y)| a | (x ^ y)) == 0;
        if same {
            Ok(())
        } else {
            Err(Error::Auth(format!("token password does not match master key {key_id}")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_sha1_matches_rfc2202_vector() {
        // RFC 2202 test case 2.
        let p = compute_password(b"Jefe", b"what do ya want for nothing?");
        let hex: String = p.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79");
    }

    #[test]
    fn old_keys_verify_until_expired_then_fail() {
        let mut m = SecretManager::new(b"k1".to_vec(), 1000, 0);
        let id1 = b"token-under-key-1";
        let pw1 = m.sign(id1);
        assert_eq!(m.roll(b"k2".to_vec(), 500), 2);
        assert_eq!(m.current_key_id(), 2);
        m.verify(1, id1, &pw1, 999).unwrap();
        assert!(m.verify(1, id1, b"nope", 999).unwrap_err().to_string().contains("does not match"));
        let e = m.verify(1, id1, &pw1, 1000).unwrap_err().to_string();
        assert!(e.contains("expired"), "{e}");
        m.expire(1000);
        let e = m.verify(1, id1, &pw1, 1000).unwrap_err().to_string();
        assert!(e.contains("unknown"), "{e}");
        // The current key verifies even past its nominal lifetime: it is
        // the one being used to sign.
        let pw2 = m.sign(b"t2");
        m.verify(2, b"t2", &pw2, 10_000).unwrap();
        assert_ne!(pw1, m.sign(id1));
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let m = SecretManager::new(b"TOPSECRET".to_vec(), 1, 0);
        assert!(!format!("{m:?}").contains("TOPSECRET"));
        assert_eq!(SecretManager::random_secret().len(), KEY_LEN);
    }
}
