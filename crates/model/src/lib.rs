//! Pure types of Brisk: entity names and paths, actions, packages, triggers, rules, limits,
//! parameters, activation records, identities and the runtime manifest.
//!
//! **Architecture Invariant:** this crate knows nothing of tokio, HTTP or SQL. Everything else
//! depends on it; it depends on nothing of ours. Validation messages are OpenWhisk's texts so
//! that every layer above can pass them through unchanged.
#![forbid(unsafe_code)]

pub mod activation;
pub mod entity;
pub mod error;
pub mod exec;
pub mod identity;
pub mod limits;
pub mod names;
pub mod params;
pub mod runtimes;
pub mod semver;

pub use activation::{Activation, ActivationId, ActivationResponse, StatusCode};
pub use entity::{Action, Collection, Entity, Package, Rule, RuleStatus, Trigger, now_millis};
pub use error::{ModelError, Result};
pub use exec::Exec;
pub use identity::{AuthKey, Identity, UserLimits};
pub use limits::{ActionLimits, SystemLimits};
pub use names::{EntityName, EntityPath, FullyQualifiedName, QualifiedName};
pub use params::{KeyValue, Parameters};
pub use runtimes::RuntimeManifest;
pub use semver::SemVer;
