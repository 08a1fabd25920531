//! HTTP Basic authentication against hashed namespace keys, with an identity cache.

use foldhash::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, header};
use base64::Engine;
use brisk_model::{AuthKey, Identity};
use brisk_store::{NamespaceRecord, Store, keys};
use parking_lot::RwLock;
use subtle::ConstantTimeEq;

use crate::error::{AUTH_INVALID, AUTH_MISSING, ApiError, ApiResult};

/// How long a looked-up namespace record is trusted before re-reading the store.
const CACHE_TTL: Duration = Duration::from_secs(30);
const CACHE_MAX: usize = 100_000;

pub struct Authenticator {
    store: Arc<dyn Store>,
    cache: RwLock<HashMap<String, Arc<Cached>>>,
}

/// A namespace record as looked up, with the key last verified against its hash: a request
/// that presents the same key again is checked with a constant-time comparison instead of
/// hashing it again (the hash costs more than the rest of authentication).
struct Cached {
    rec: Arc<NamespaceRecord>,
    at: Instant,
    /// The identity of the one key verified against the stored hash (its `authkey` holds that
    /// key); requests presenting it share it.
    verified: std::sync::OnceLock<Arc<Identity>>,
}

/// An `Authorization` header that is present but not usable Basic credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadCredentials;

/// Extracts `uuid:key` from `Authorization: Basic ...` (scheme case-insensitive).
/// `Ok(None)`: no credentials; `Err`: present but unusable.
pub fn basic_credentials(headers: &HeaderMap) -> Result<Option<AuthKey>, BadCredentials> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value.to_str().map_err(|_| BadCredentials)?.trim();
    let (scheme, rest) = value.split_once(' ').ok_or(BadCredentials)?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(BadCredentials);
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .map_err(|_| BadCredentials)?;
    let text = String::from_utf8(decoded).map_err(|_| BadCredentials)?;
    AuthKey::parse(&text).map(Some).ok_or(BadCredentials)
}

impl Authenticator {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self {
            store,
            cache: RwLock::new(HashMap::default()),
        }
    }

    async fn record(&self, uuid: &str) -> ApiResult<Option<Arc<Cached>>> {
        if let Some(c) = self.cache.read().get(uuid)
            && c.at.elapsed() < CACHE_TTL
        {
            return Ok(Some(c.clone()));
        }
        let Some(rec) = self.store.namespace_by_uuid(uuid).await? else {
            return Ok(None);
        };
        let c = Arc::new(Cached {
            rec: Arc::new(rec),
            at: Instant::now(),
            verified: std::sync::OnceLock::new(),
        });
        let mut cache = self.cache.write();
        if cache.len() >= CACHE_MAX {
            cache.clear();
        }
        cache.insert(uuid.to_owned(), c.clone());
        Ok(Some(c))
    }

    /// Forgets cached identities (after admin changes).
    pub fn invalidate(&self) {
        self.cache.write().clear();
    }

    /// Verifies a credential; `None` when it does not match an active namespace.
    pub async fn verify(&self, key: &AuthKey) -> ApiResult<Option<Arc<Identity>>> {
        let Some(cached) = self.record(&key.uuid).await? else {
            return Ok(None);
        };
        let rec = &cached.rec;
        if rec.blocked {
            return Ok(None);
        }
        if let Some(known) = cached.verified.get()
            && bool::from(known.authkey.key.as_bytes().ct_eq(key.key.as_bytes()))
        {
            return Ok(Some(known.clone()));
        }
        if !keys::verify_key(&rec.salt, &rec.key_hash, &key.key) {
            return Ok(None);
        }
        let identity = Arc::new(Identity {
            subject: rec.subject.clone(),
            namespace: rec.namespace.clone(),
            uuid: rec.uuid.clone(),
            authkey: key.clone(),
            limits: rec.limits.clone(),
        });
        let _ = cached.verified.set(identity.clone());
        Ok(Some(identity))
    }

    /// Authenticates a request or fails with 401.
    pub async fn authenticate(&self, headers: &HeaderMap) -> ApiResult<Arc<Identity>> {
        match basic_credentials(headers) {
            Ok(None) => Err(ApiError::Unauthorized(AUTH_MISSING)),
            Err(BadCredentials) => Err(ApiError::Unauthorized(AUTH_INVALID)),
            Ok(Some(key)) => self
                .verify(&key)
                .await?
                .ok_or(ApiError::Unauthorized(AUTH_INVALID)),
        }
    }

    /// Looks up the owner identity of a namespace (web actions run as the owner).
    pub async fn owner_of(&self, namespace: &str) -> ApiResult<Option<Arc<Identity>>> {
        let Some(rec) = self.store.namespace_by_name(namespace).await? else {
            return Ok(None);
        };
        if rec.blocked {
            return Ok(None);
        }
        Ok(Some(Arc::new(Identity {
            subject: rec.subject.clone(),
            namespace: rec.namespace.clone(),
            uuid: rec.uuid.clone(),
            authkey: AuthKey {
                uuid: rec.uuid.clone(),
                key: String::new(),
            },
            limits: rec.limits.clone(),
        })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_str(v).unwrap());
        h
    }

    #[test]
    fn parses_basic_in_any_case() {
        let b64 = base64::engine::general_purpose::STANDARD.encode("u-1:k2");
        for scheme in ["Basic", "basic", "BASIC"] {
            let k = basic_credentials(&headers(&format!("{scheme} {b64}")))
                .unwrap()
                .unwrap();
            assert_eq!((k.uuid.as_str(), k.key.as_str()), ("u-1", "k2"));
        }
        assert!(basic_credentials(&headers("Bearer x")).is_err());
        assert!(basic_credentials(&headers("Basic !!!")).is_err());
        let nocolon = base64::engine::general_purpose::STANDARD.encode("nocolon");
        assert!(basic_credentials(&headers(&format!("Basic {nocolon}"))).is_err());
        assert!(basic_credentials(&HeaderMap::new()).unwrap().is_none());
    }

    #[tokio::test]
    async fn a_verified_key_is_remembered_and_a_wrong_one_still_fails() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(brisk_store::SqliteStore::open(dir.path()).unwrap());
        let right = AuthKey {
            uuid: "u-1".into(),
            key: "right-key".into(),
        };
        store
            .create_namespace("s", &brisk_model::EntityName::new("ns1").unwrap(), &right)
            .await
            .unwrap();
        let auth = Authenticator::new(store);
        let wrong = AuthKey {
            uuid: "u-1".into(),
            key: "wrong-key".into(),
        };
        assert!(auth.verify(&wrong).await.unwrap().is_none());
        let mut first: Option<Arc<Identity>> = None;
        for _ in 0..2 {
            let id = auth
                .verify(&right)
                .await
                .unwrap()
                .expect("right key accepted");
            assert_eq!(id.namespace.as_str(), "ns1");
            assert_eq!(id.authkey, right);
            // Requests with the remembered key share one identity.
            let first = first.get_or_insert_with(|| id.clone());
            assert!(Arc::ptr_eq(first, &id));
            // After the right key is remembered, other keys are still hashed and rejected.
            assert!(auth.verify(&wrong).await.unwrap().is_none());
            let shorter = AuthKey {
                uuid: "u-1".into(),
                key: "right-ke".into(),
            };
            assert!(auth.verify(&shorter).await.unwrap().is_none());
        }
    }
}
