//! The Linux sandbox backend of Brisk: every action container is a process tree in its own
//! pid, mount, ipc, uts and network namespaces, in its own cgroup (memory, pids, cpu, freezer),
//! on a read-only root assembled from the host paths its runtime needs plus a private `/tmp`,
//! running as an unprivileged uid with no capabilities, `no_new_privs` and a seccomp filter.
//!
//! [`SandboxFactory`] implements `brisk_invoker::ContainerFactory`. It never forks the server:
//! each sandbox is built by a small launcher process ([`launcher_main`], run by the
//! `brisk-sandbox-exec` binary or a hidden subcommand of `brisk`) that is spawned with
//! `posix_spawn` and does the namespace, mount and privilege work in its own address space.
//!
//! Node.js, Python and native containers are forks of a runtime zygote instead ([`zygote`],
//! loaded by Node.js or Python from this crate's shared object), which run the same launcher
//! code in the fork.
//!
//! **Architecture Invariant:** the server process never calls `fork`, `unshare(CLONE_NEWNS)`
//! or `mount`; only the launcher (or a zygote's fork running its code) does. The server only
//! creates network namespaces on a dedicated pool thread and writes cgroup files.
#![deny(unsafe_code)]

mod cgroup;
mod config;
mod egress;
mod error;
mod factory;
mod launcher;
mod netns;
mod rtnl;
mod seccomp;
mod spec;
pub mod zygote;
mod zygotes;

pub use cgroup::{Cgroup, FREEZER_ANCHOR, Hierarchy};
pub use config::{NetworkPolicy, SandboxConfig, cpu_shares, default_ro_paths};
pub use error::{Error, Result};
pub use factory::{SandboxContainer, SandboxFactory};
pub use launcher::{SETUP_FAILED, launcher_main};
pub use netns::Netns;
pub use spec::{LaunchSpec, MountSpec, SPEC_ENV};
pub use zygotes::ZYGOTE_ENV;
