//! What the factory tells the launcher: one JSON document in the `BRISK_SANDBOX_SPEC`
//! environment variable (removed before the runtime is executed).

use serde::{Deserialize, Serialize};

/// Environment variable carrying the [`LaunchSpec`].
pub const SPEC_ENV: &str = "BRISK_SANDBOX_SPEC";

/// One mount of the sandbox's root file system.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MountSpec {
    /// Bind `src` at `dst` read-only (nosuid, nodev).
    Ro { src: String, dst: String },
    /// Bind `src` at `dst` writable (nosuid, nodev).
    Rw { src: String, dst: String },
    /// A private tmpfs at `dst` owned by the sandbox's uid/gid, mode 0700.
    Tmpfs { dst: String, bytes: u64 },
    /// A symbolic link at `dst` pointing to `target`.
    Symlink { target: String, dst: String },
}

/// Everything the launcher needs; paths are host paths, valid both outside and inside.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LaunchSpec {
    /// Files the launcher writes to before creating namespaces to join its cgroup: v1 `tasks`
    /// files get "0" (the calling thread; the launcher is single-threaded), v2 `cgroup.procs`
    /// its pid.
    pub cgroup_join: Vec<String>,
    /// A file naming the network namespace to join (e.g. `/proc/<pid>/fd/<n>`); `None`
    /// creates a fresh one.
    pub netns: Option<String>,
    /// Empty directory on which the root tmpfs is assembled (in the private mount namespace).
    pub root: String,
    /// Mounts, parents before children.
    pub mounts: Vec<MountSpec>,
    /// Size cap of `/tmp` in bytes.
    pub tmp_bytes: u64,
    pub uid: u32,
    pub gid: u32,
    pub hostname: String,
    /// Working directory of the runtime.
    pub cwd: String,
    /// Program and arguments of the runtime.
    pub argv: Vec<String>,
    /// The runtime's whole environment.
    pub env: Vec<(String, String)>,
    /// Where the launcher writes the sandbox's exit status before it exits (when its parent
    /// cannot wait for it: a zygote's child).
    #[serde(default)]
    pub exit_file: Option<String>,
}
