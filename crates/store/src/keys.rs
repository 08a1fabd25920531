//! Salted key hashes compared in constant time.
//!
//! Keys are 64 random alphanumerics (~380 bits), so a single salted SHA-256 is enough: there is
//! nothing to brute-force, and authentication stays in the microseconds.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

pub fn new_salt() -> Vec<u8> {
    rand::random::<[u8; 16]>().to_vec()
}

pub fn hash_key(salt: &[u8], key: &str) -> Vec<u8> {
    let mut h = Sha256::new();
    h.update(salt);
    h.update(key.as_bytes());
    h.finalize().to_vec()
}

/// Whether `key` matches the stored `hash`, in constant time.
pub fn verify_key(salt: &[u8], hash: &[u8], key: &str) -> bool {
    hash_key(salt, key).ct_eq(hash).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifies_only_the_right_key() {
        let salt = new_salt();
        let h = hash_key(&salt, "secret");
        assert!(verify_key(&salt, &h, "secret"));
        assert!(!verify_key(&salt, &h, "secreT"));
        assert!(!verify_key(&new_salt(), &h, "secret"));
    }
}
