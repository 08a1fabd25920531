//! The invoker of Brisk: runs activations in runtime-proxy containers taken from a pool.
//!
//! [`Invoker::run`] places an activation on a warm container of the same action version, a
//! prewarmed stem cell, a cold-started container (evicting idle ones if needed) or, when the
//! pool is full, a bounded wait queue; it then drives the proxy's `/init` and `/run` over a Unix
//! socket (docs/runtime-protocol.md), collects the activation's logs and builds its record.
//!
//! **Architecture Invariant:** the pool knows nothing of processes. Containers come from a
//! [`ContainerFactory`]; [`ProcessFactory`] runs proxies as plain processes, a sandboxing backend
//! implements the same trait.
#![deny(unsafe_code)]

mod client;
mod code_cache;
mod config;
mod container;
mod error;
mod exchange;
mod invoker;
mod job;
mod logs;
mod pool;
mod process;
mod run;
mod runtime;
pub mod sched;
mod stems;
mod turns;
mod zip;

pub use client::ProxyClient;
pub use config::{InvokerConfig, default_user_memory_mb};
pub use container::{
    BASE_PATH, Container, ContainerFactory, ContainerOutput, ContainerSpec, LISTEN_FD_ENV,
    NetworkPolicy,
};
pub use error::{Error, Result};
pub use invoker::{Invoker, PoolStats};
pub use job::Job;
pub use logs::SENTINEL;
pub use process::ProcessFactory;
