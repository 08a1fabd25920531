//! The container abstraction: what the pool needs from any backend (processes now, a namespaced
//! sandbox later). The pool never sees pids, signals or cgroups; it only sees this trait.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use tokio::io::AsyncRead;

use crate::error::{Error, Result};

/// Environment variable naming the file descriptor on which a proxy finds its listening socket
/// (socket activation; docs/runtime-protocol.md): `3` in a sandbox (whose stdin is `/dev/null`),
/// `0` (stdin) with the process backend.
pub const LISTEN_FD_ENV: &str = "BRISK_LISTEN_FD";
/// `PATH` of every runtime: nothing of the server's own environment reaches a container.
pub const BASE_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Longest path a `sockaddr_un` holds (including the terminating NUL).
const SUN_PATH_MAX: usize = 107;

/// Outbound network access of an action's container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum NetworkPolicy {
    /// Own network namespace with only a loopback interface.
    None,
    /// Outbound traffic allowed through NAT (OpenWhisk's default); the host, its loopback
    /// services and other containers stay unreachable.
    #[default]
    Egress,
}

impl NetworkPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            NetworkPolicy::None => "none",
            NetworkPolicy::Egress => "egress",
        }
    }
}

impl std::str::FromStr for NetworkPolicy {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        match s {
            "none" => Ok(Self::None),
            "egress" => Ok(Self::Egress),
            other => Err(format!(
                "unknown network policy `{other}` (expected none or egress)"
            )),
        }
    }
}

/// How to start one runtime proxy.
#[derive(Debug, Clone)]
pub struct ContainerSpec {
    /// Short unique name, also the private directory's name under `run_dir`.
    pub name: String,
    /// Private directory of the container on the host (socket, unpacked code, pid file).
    pub dir: PathBuf,
    /// Runtime kind (`nodejs:20`, `python:3.11`, `blackbox`), for messages.
    pub kind: String,
    /// Resolved interpreter binary.
    pub interpreter: PathBuf,
    /// Options given to the interpreter before the proxy script (the manifest's `args`).
    pub args: Vec<String>,
    /// Proxy script run by the interpreter.
    pub proxy: PathBuf,
    /// Memory limit in MB (enforced by sandboxing backends).
    pub memory_mb: u64,
    /// Whether overlapping `/run`s are allowed (`__OW_ALLOW_CONCURRENT`).
    pub allow_concurrent: bool,
    /// `__OW_API_HOST`.
    pub api_host: String,
    /// Outbound network access (enforced by isolating backends).
    pub network: NetworkPolicy,
}

impl ContainerSpec {
    /// Where the proxy's socket is bound, on the host; the invoker connects there.
    pub fn socket_path(&self) -> PathBuf {
        self.dir.join("proxy.sock")
    }

    /// [`Self::socket_path`], or [`Error::SocketPathTooLong`] when a `sockaddr_un` cannot
    /// hold it.
    pub fn checked_socket_path(&self) -> Result<PathBuf> {
        let socket = self.socket_path();
        if socket.as_os_str().len() > SUN_PATH_MAX {
            return Err(Error::SocketPathTooLong(socket));
        }
        Ok(socket)
    }

    /// Binds the proxy's socket at [`Self::socket_path`] (in the existing private directory)
    /// and listens on it, for the factory to hand to the proxy (socket activation). The
    /// descriptor is close-on-exec, so no other process the server spawns inherits it; the
    /// factory must close its copy once the proxy has it. Blocking (a few system calls).
    pub fn listen(&self) -> Result<OwnedFd> {
        let socket = self.checked_socket_path()?;
        // A stale file would make the bind fail; the private directory is new in any case.
        match std::fs::remove_file(&socket) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(Error::io("remove stale socket", socket, e));
            }
            _ => {}
        }
        let listener = std::os::unix::net::UnixListener::bind(&socket)
            .map_err(|e| Error::io("bind proxy socket", &socket, e))?;
        Ok(listener.into())
    }
}

/// Output streams of a started container; each is read by one log reader task.
pub struct ContainerOutput {
    pub stdout: Box<dyn AsyncRead + Send + Unpin>,
    pub stderr: Box<dyn AsyncRead + Send + Unpin>,
}

/// A running runtime proxy.
#[async_trait]
pub trait Container: Send + Sync + 'static {
    /// Unique name (for logs and spans).
    fn name(&self) -> &str;
    /// Unix socket the proxy serves HTTP on.
    fn socket_path(&self) -> &Path;
    /// Private directory, writable by the platform (unpacked code goes below it).
    fn dir(&self) -> &Path;
    /// Whether the container's main process has exited (non-blocking).
    fn has_exited(&self) -> bool;
    /// Freezes every process of the container.
    async fn pause(&self) -> Result<()>;
    /// Thaws a paused container.
    async fn resume(&self) -> Result<()>;
    /// Kills every process of the container and removes its private directory. Idempotent.
    async fn destroy(&self);
    /// How many of the container's processes the kernel killed for exceeding the memory limit
    /// (backends that enforce one).
    fn oom_kills(&self) -> u64 {
        0
    }
}

/// Starts containers. Object-safe so that the invoker can hold `Arc<dyn ContainerFactory>`.
#[async_trait]
pub trait ContainerFactory: Send + Sync + 'static {
    /// Starts the proxy, socket-activated: the container's socket already listens when this
    /// returns (see [`ContainerSpec::listen`]), so a connection succeeds at once and waits until
    /// the proxy accepts it. The proxy must be the socket's only holder (the factory and any
    /// intermediate process close their copies), so that the socket closes when the proxy
    /// exits and a pending connection fails at once instead of waiting for a deadline.
    async fn create(&self, spec: &ContainerSpec) -> Result<(Box<dyn Container>, ContainerOutput)>;
    /// Removes whatever a previous run of the invoker left under `run_dir`.
    async fn cleanup_leftovers(&self, run_dir: &Path);
    /// Releases everything the factory holds on the host (after the last container is gone).
    async fn shutdown(&self) {}
}
