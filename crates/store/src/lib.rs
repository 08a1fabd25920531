//! Stores of Brisk: entities (actions, packages, triggers, rules), activation records and
//! identities (subjects, namespaces, hashed keys, per-namespace limits).
//!
//! Callers see three traits; the embedded backend is SQLite in the data directory. A shared
//! backend (PostgreSQL) implements the same traits without touching callers.
//!
//! **Architecture Invariant:** the traits speak model types, never SQL rows; keys are stored only
//! as salted hashes.
#![forbid(unsafe_code)]

pub mod cache;
mod error;
pub mod keys;
mod sqlite;

use async_trait::async_trait;
use std::sync::Arc;

use brisk_model::{Action, Activation, ActivationId, Collection, Entity, EntityName, UserLimits};

pub use cache::CachedStore;
pub use error::{Error, Result};
pub use sqlite::SqliteStore;

/// A stored entity with its revision, for optimistic concurrency.
#[derive(Debug, Clone)]
pub struct Stored {
    pub entity: Entity,
    pub rev: u64,
}

/// An entity fetched by [`EntityStore::get_shared`].
#[derive(Debug, Clone)]
pub enum Fetched {
    Action { action: Arc<Action>, rev: u64 },
    Other(Arc<Stored>),
}

impl From<Stored> for Fetched {
    fn from(s: Stored) -> Self {
        match s.entity {
            Entity::Action(a) => Fetched::Action {
                action: Arc::new(a),
                rev: s.rev,
            },
            entity => Fetched::Other(Arc::new(Stored { entity, rev: s.rev })),
        }
    }
}

/// Which entities to list.
#[derive(Debug, Clone)]
pub struct EntityQuery {
    pub collection: Collection,
    /// Root namespace.
    pub namespace: String,
    /// `Some(pkg)`: only entities inside that package. `None`: the whole namespace (actions
    /// inside packages included, as OpenWhisk lists them).
    pub package: Option<String>,
    pub skip: u64,
    /// 0 = no limit.
    pub limit: u64,
}

#[async_trait]
pub trait EntityStore: Send + Sync {
    /// Fetches by document id (`ns[/pkg]/name`). `with_code = false` may leave action code empty.
    async fn get(&self, doc_id: &str, with_code: bool) -> Result<Option<Stored>>;

    /// Fetches by document id with code, an action shared rather than copied: a cache answers
    /// with the action it holds (an invocation reads its action on every request).
    async fn get_shared(&self, doc_id: &str) -> Result<Option<Fetched>> {
        Ok(self.get(doc_id, true).await?.map(Fetched::from))
    }

    /// Writes an entity. `expected_rev = None` means "create, must not exist"; `Some(rev)` means
    /// "replace revision `rev`". Returns the new revision. Fails with `Conflict` or `Exists`.
    async fn put(&self, entity: &Entity, expected_rev: Option<u64>) -> Result<u64>;

    /// Deletes revision `rev` of a document.
    async fn delete(&self, doc_id: &str, rev: u64) -> Result<()>;

    /// Lists newest first, without action code.
    async fn list(&self, query: &EntityQuery) -> Result<Vec<Entity>>;

    async fn count(&self, query: &EntityQuery) -> Result<u64>;
}

/// Which activations to list.
#[derive(Debug, Clone, Default)]
pub struct ActivationQuery {
    pub namespace: String,
    /// `action` or `pkg/action`.
    pub name: Option<String>,
    /// Inclusive window on `start`, epoch ms.
    pub since: Option<u64>,
    pub upto: Option<u64>,
    pub skip: u64,
    pub limit: u64,
}

#[async_trait]
pub trait ActivationStore: Send + Sync {
    /// Stores records in one transaction. Storing an id twice keeps the latest record.
    async fn store_batch(&self, records: &[std::sync::Arc<Activation>]) -> Result<()>;

    async fn get_activation(
        &self,
        namespace: &str,
        id: &ActivationId,
    ) -> Result<Option<Activation>>;

    /// Newest first by `start`.
    async fn list_activations(&self, query: &ActivationQuery) -> Result<Vec<Activation>>;

    async fn count_activations(&self, query: &ActivationQuery) -> Result<u64>;
}

/// A namespace's credential as stored.
#[derive(Debug, Clone)]
pub struct NamespaceRecord {
    pub subject: String,
    pub namespace: EntityName,
    pub uuid: String,
    pub key_hash: Vec<u8>,
    pub salt: Vec<u8>,
    pub blocked: bool,
    pub limits: UserLimits,
}

#[async_trait]
pub trait AuthStore: Send + Sync {
    async fn namespace_by_uuid(&self, uuid: &str) -> Result<Option<NamespaceRecord>>;
    async fn namespace_by_name(&self, namespace: &str) -> Result<Option<NamespaceRecord>>;
    /// Creates a namespace for `subject` with the key `authkey` (stored hashed).
    async fn create_namespace(
        &self,
        subject: &str,
        namespace: &EntityName,
        authkey: &brisk_model::AuthKey,
    ) -> Result<()>;
    async fn list_namespaces(&self) -> Result<Vec<NamespaceRecord>>;
    /// Deletes a namespace's credential (its entities stay until deleted).
    async fn delete_namespace(&self, namespace: &str) -> Result<bool>;
    async fn set_blocked(&self, subject: &str, blocked: bool) -> Result<u64>;
    async fn set_limits(&self, namespace: &str, limits: &UserLimits) -> Result<()>;
}

/// A durable schedule of the built-in alarms provider, keyed by trigger (`/ns/name`).
#[derive(Debug, Clone, PartialEq)]
pub struct AlarmRecord {
    pub trigger: String,
    pub namespace: String,
    /// The feed's parameters as validated by the provider.
    pub spec: serde_json::Value,
    /// Next fire, epoch ms; `None` when the schedule is finished.
    pub next_fire: Option<u64>,
    pub paused: bool,
}

#[async_trait]
pub trait AlarmStore: Send + Sync {
    async fn put_alarm(&self, alarm: &AlarmRecord) -> Result<()>;
    async fn get_alarm(&self, trigger: &str) -> Result<Option<AlarmRecord>>;
    async fn delete_alarm(&self, trigger: &str) -> Result<bool>;
    async fn list_alarms(&self) -> Result<Vec<AlarmRecord>>;
}

/// Everything a controller needs from storage.
pub trait Store: EntityStore + ActivationStore + AuthStore + AlarmStore {}
impl<T: EntityStore + ActivationStore + AuthStore + AlarmStore> Store for T {}
