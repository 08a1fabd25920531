//! Configuration of the sandbox factory.

use std::ffi::OsString;
use std::path::PathBuf;

pub use brisk_invoker::NetworkPolicy;

/// How a [`crate::SandboxFactory`] builds sandboxes.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// Program and leading arguments that run [`crate::launcher_main`] (for example the
    /// `brisk-sandbox-exec` binary, or `brisk` plus its hidden subcommand).
    pub launcher: Vec<OsString>,
    /// Names this invoker's cgroups (`brisk/<instance>/...`) so that several invokers (or test
    /// runs) on one machine never clean up each other's sandboxes.
    pub instance: String,
    /// Directory for the factory's own state (the empty staging directory of root file
    /// systems). Created if missing, removed by shutdown. Default `/run/brisk-sandbox-<instance>`.
    pub state_dir: PathBuf,
    /// Unprivileged uid and gid the runtime runs as.
    pub uid: u32,
    pub gid: u32,
    /// Size cap of the private `/tmp` (tmpfs), in MB.
    pub tmp_size_mb: u64,
    /// Most processes (and threads) a container may hold.
    pub pids_max: u64,
    /// Pool capacity in MB, the denominator of the CPU share (see [`cpu_shares`]).
    pub user_memory_mb: u64,
    /// Host paths mounted read-only at the same place in every sandbox. Missing paths are
    /// skipped; a directory that is a symbolic link (`/lib -> usr/lib`) is recreated as a link.
    pub ro_paths: Vec<PathBuf>,
    /// Default outbound network policy of containers.
    pub network: NetworkPolicy,
    /// Whether to set up the egress bridge and firewall (needs the `nft` command);
    /// without it only policy `none` is available.
    pub egress_available: bool,
    /// Extra IPv4 destinations (CIDR, e.g. the subnet of the platform's database or message
    /// bus in a multi-machine deployment) that egress traffic may not reach. The host itself,
    /// other containers and link-local addresses are always unreachable.
    pub egress_deny: Vec<String>,
    /// Network namespaces kept ready per policy.
    pub netns_pool: usize,
    /// This crate's shared object (`libbrisk_sandbox.so`), to run Node.js, Python and native containers as forks
    /// of a runtime zygote (`zygote.rs`); `None` starts every container with the launcher.
    pub zygote_lib: Option<PathBuf>,
}

impl SandboxConfig {
    /// Defaults: uid/gid 65534 (`nobody`), 64 MB `/tmp`, 512 pids, policy `egress` (as
    /// OpenWhisk), and the paths the Node.js and Python runtimes of a Debian-like host need.
    pub fn new(launcher: Vec<OsString>, instance: impl Into<String>) -> Self {
        let instance = instance.into();
        Self {
            state_dir: PathBuf::from(format!("/run/brisk-sandbox-{instance}")),
            launcher,
            instance,
            uid: 65534,
            gid: 65534,
            tmp_size_mb: 64,
            pids_max: 512,
            user_memory_mb: 2048,
            ro_paths: default_ro_paths(),
            network: NetworkPolicy::Egress,
            egress_available: true,
            egress_deny: Vec::new(),
            netns_pool: 4,
            zygote_lib: None,
        }
    }
}

/// The distribution's part of `/usr` (interpreters, their libraries, Node's and Python's
/// standard libraries; not `/usr/local`, `/usr/src` or `/usr/include`, which hold whatever else
/// was installed on the machine), the merged-usr links, and the few files of `/etc` that TLS and
/// name resolution read.
pub fn default_ro_paths() -> Vec<PathBuf> {
    [
        "/usr/bin",
        "/usr/sbin",
        "/usr/lib",
        "/usr/lib32",
        "/usr/lib64",
        "/usr/libexec",
        "/usr/share",
        "/bin",
        "/sbin",
        "/lib",
        "/lib32",
        "/lib64",
        "/etc/alternatives",
        "/etc/ssl",
        "/etc/ca-certificates",
        "/etc/resolv.conf",
        "/etc/hosts",
        "/etc/nsswitch.conf",
        "/etc/localtime",
        "/etc/mime.types",
    ]
    .iter()
    .map(PathBuf::from)
    .collect()
}

/// CPU share of a container, as OpenWhisk computes docker's `--cpu-shares`: the container's
/// fraction of the pool's memory times 1024, at least 2 (the kernel's minimum). A container
/// that may use the whole pool gets the default weight of 1024.
pub fn cpu_shares(memory_mb: u64, user_memory_mb: u64) -> u64 {
    (1024 * memory_mb)
        .checked_div(user_memory_mb)
        .unwrap_or(1024)
        .clamp(2, 262_144)
}

/// cgroup v2 `cpu.weight` (1..=10000) for a v1 share, with the mapping runc and systemd use.
pub fn shares_to_weight(shares: u64) -> u64 {
    1 + (shares.clamp(2, 262_144) - 2) * 9999 / 262_142
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_follow_memory() {
        assert_eq!(cpu_shares(256, 2048), 128);
        assert_eq!(cpu_shares(2048, 2048), 1024);
        assert_eq!(cpu_shares(1, 4096), 2);
        assert_eq!(cpu_shares(256, 0), 1024);
    }

    #[test]
    fn weights_map_like_runc() {
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(262_144), 10000);
    }

    #[test]
    fn policies_parse() {
        assert_eq!("none".parse(), Ok(NetworkPolicy::None));
        assert_eq!("egress".parse(), Ok(NetworkPolicy::Egress));
        assert!("open".parse::<NetworkPolicy>().is_err());
    }
}
