//! Subjects, namespaces, keys and per-namespace limits (wire spec §4.1, §1.9).

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::names::EntityName;

/// A `uuid:key` credential as clients send it.
#[derive(Clone, PartialEq, Eq)]
pub struct AuthKey {
    pub uuid: String,
    pub key: String,
}

impl AuthKey {
    /// Parses `uuid:key`; `None` when the shape is wrong.
    pub fn parse(s: &str) -> Option<Self> {
        let (uuid, key) = s.split_once(':')?;
        if uuid.is_empty() || key.is_empty() || uuid.len() > 64 || key.len() > 256 {
            return None;
        }
        Some(Self {
            uuid: uuid.to_owned(),
            key: key.to_owned(),
        })
    }

    /// A fresh random key: a UUID and 64 alphanumeric characters.
    pub fn generate() -> Self {
        use rand::Rng;
        use rand::distributions::Alphanumeric;
        let mut rng = rand::thread_rng();
        let b: [u8; 16] = rng.r#gen();
        let uuid = format!(
            "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
            u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
            u16::from_be_bytes([b[4], b[5]]),
            u16::from_be_bytes([b[6], b[7]]) & 0x0fff,
            (u16::from_be_bytes([b[8], b[9]]) & 0x3fff) | 0x8000,
            u64::from_be_bytes([0, 0, b[10], b[11], b[12], b[13], b[14], b[15]]),
        );
        let key: String = (0..64).map(|_| rng.sample(Alphanumeric) as char).collect();
        Self { uuid, key }
    }
}

impl fmt::Display for AuthKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.uuid, self.key)
    }
}

impl fmt::Debug for AuthKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AuthKey({}:***)", self.uuid)
    }
}

/// Per-namespace overrides. Absent fields take the deployment's values; 0 = unlimited for the
/// throttles.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserLimits {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invocations_per_minute: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrent_invocations: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fires_per_minute: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_kinds: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store_activations: Option<bool>,
    /// Outbound network policy for this namespace's actions (`none` or `egress`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
}

/// An authenticated caller: one (subject, namespace) pair.
#[derive(Debug, Clone)]
pub struct Identity {
    pub subject: String,
    pub namespace: EntityName,
    pub uuid: String,
    /// The credential the caller presented; passed on to actions that ask for it.
    pub authkey: AuthKey,
    pub limits: UserLimits,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_have_openwhisk_shape() {
        let k = AuthKey::generate();
        assert_eq!(k.key.len(), 64);
        assert!(k.key.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_eq!(k.uuid.len(), 36);
        let parsed = AuthKey::parse(&k.to_string()).unwrap();
        assert_eq!(parsed, k);
        assert!(AuthKey::parse("nocolon").is_none());
        assert!(!format!("{k:?}").contains(&k.key));
    }
}
