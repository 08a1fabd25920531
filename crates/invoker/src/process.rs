//! The process backend: a container is the runtime proxy process in its own process group.
//! No isolation beyond that; the sandbox backend adds namespaces and cgroups behind the same trait.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use parking_lot::Mutex;
use tokio::process::{Child, Command};

use crate::container::{
    BASE_PATH, Container, ContainerFactory, ContainerOutput, ContainerSpec, LISTEN_FD_ENV,
};
use crate::error::{Error, Result};

const PID_FILE: &str = "pid";

/// Starts proxies as plain child processes.
#[derive(Debug, Default, Clone)]
pub struct ProcessFactory;

impl ProcessFactory {
    pub fn new() -> Self {
        Self
    }
}

#[async_trait]
impl ContainerFactory for ProcessFactory {
    async fn create(&self, spec: &ContainerSpec) -> Result<(Box<dyn Container>, ContainerOutput)> {
        let socket = spec.checked_socket_path()?;
        // Socket activation: the socket listens before the proxy starts and is its stdin.
        let s = spec.clone();
        let listener = tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(&s.dir)
                .map_err(|e| Error::io("create container dir", &s.dir, e))?;
            s.listen()
        })
        .await
        .map_err(|e| Error::Task(e.to_string()))??;
        let mut cmd = Command::new(&spec.interpreter);
        cmd.args(&spec.args)
            .arg(&spec.proxy)
            .current_dir(&spec.dir)
            .env_clear()
            .env("PATH", BASE_PATH)
            .env("HOME", &spec.dir)
            .env("LANG", "C.UTF-8")
            .env(LISTEN_FD_ENV, "0")
            .env("__OW_API_HOST", &spec.api_host)
            .stdin(Stdio::from(listener))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // posix_spawn with POSIX_SPAWN_SETPGROUP: no fork of the server, no pre_exec hook.
            .process_group(0)
            .kill_on_drop(true);
        if spec.allow_concurrent {
            cmd.env("__OW_ALLOW_CONCURRENT", "true");
        }
        let spawned = cmd.spawn();
        // The command holds the server's copy of the listening socket: the proxy must be its
        // only holder, so that the socket closes when the proxy exits.
        drop(cmd);
        let mut child = spawned.map_err(|source| Error::Spawn {
            kind: spec.kind.clone(),
            source,
        })?;
        let (Some(pid), Some(stdout), Some(stderr)) =
            (child.id(), child.stdout.take(), child.stderr.take())
        else {
            return Err(Error::ExitedBeforeReady(spec.name.clone()));
        };
        let pid = pid as i32;
        // The proxy's main thread, which serves; threads it has started already keep the
        // normal policy (crate::sched).
        if let Err(e) = crate::sched::batch(pid) {
            tracing::debug!(error = %e, pid, "could not set SCHED_BATCH on a container");
        }
        let container = ProcessContainer {
            name: spec.name.clone(),
            dir: spec.dir.clone(),
            socket,
            pgid: Pid::from_raw(pid),
            child: Mutex::new(Some(child)),
            destroyed: AtomicBool::new(false),
        };
        // Lets the next start clean up after a crash of the invoker.
        if let Err(e) = tokio::fs::write(spec.dir.join(PID_FILE), pid.to_string()).await {
            container.destroy().await;
            return Err(Error::io("write pid file", spec.dir.join(PID_FILE), e));
        }
        let output = ContainerOutput {
            stdout: Box::new(stdout),
            stderr: Box::new(stderr),
        };
        Ok((Box::new(container), output))
    }

    async fn cleanup_leftovers(&self, run_dir: &Path) {
        let run_dir = run_dir.to_path_buf();
        let res = tokio::task::spawn_blocking(move || cleanup_blocking(&run_dir)).await;
        if let Err(e) = res {
            tracing::warn!(error = %e, "leftover cleanup task failed");
        }
    }
}

/// Kills processes recorded in pid files under `run_dir` (only if they still are our proxies)
/// and removes every entry.
fn cleanup_blocking(run_dir: &Path) {
    let Ok(entries) = std::fs::read_dir(run_dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if let Some(pid) = std::fs::read_to_string(path.join(PID_FILE))
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok())
            .filter(|p| *p > 1)
            && is_our_proxy(pid, &path)
        {
            tracing::warn!(pid, dir = %path.display(), "killing leftover container");
            let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
        }
        let removed = if path.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        if let Err(e) = removed {
            tracing::warn!(error = %e, path = %path.display(), "remove leftover");
        }
    }
}

/// Whether `pid` is a live (not zombie) process.
fn process_alive(pid: Pid) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .and_then(|rest| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// Guards against pid reuse: the process must have been started with the container's directory
/// as `HOME` (the environment it was started with, whatever it changed since).
fn is_our_proxy(pid: i32, dir: &Path) -> bool {
    let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ")) else {
        return false;
    };
    let mut want = b"HOME=".to_vec();
    want.extend_from_slice(dir.as_os_str().as_encoded_bytes());
    environ.split(|b| *b == 0).any(|var| var == want.as_slice())
}

/// A proxy process and its process group.
pub struct ProcessContainer {
    name: String,
    dir: PathBuf,
    socket: PathBuf,
    pgid: Pid,
    child: Mutex<Option<Child>>,
    destroyed: AtomicBool,
}

impl ProcessContainer {
    fn signal(&self, sig: Signal) -> Result<()> {
        killpg(self.pgid, sig).map_err(|source| Error::Signal {
            container: self.name.clone(),
            source,
        })
    }
}

#[async_trait]
impl Container for ProcessContainer {
    fn name(&self) -> &str {
        &self.name
    }

    fn socket_path(&self) -> &Path {
        &self.socket
    }

    fn dir(&self) -> &Path {
        &self.dir
    }

    fn has_exited(&self) -> bool {
        let running = match self.child.lock().as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        };
        // tokio learns of an exit only when its driver next runs; the kernel knows now. A dead
        // process is gone from /proc or a zombie ("Z") until it is reaped.
        !running || !process_alive(self.pgid)
    }

    async fn pause(&self) -> Result<()> {
        self.signal(Signal::SIGSTOP)
    }

    async fn resume(&self) -> Result<()> {
        self.signal(Signal::SIGCONT)
    }

    async fn destroy(&self) {
        if self.destroyed.swap(true, Ordering::AcqRel) {
            return;
        }
        // SIGKILL also ends stopped processes; the group takes children of the action along.
        let _ = killpg(self.pgid, Signal::SIGKILL);
        let child = self.child.lock().take();
        if let Some(mut child) = child
            && let Err(e) = child.wait().await
        {
            tracing::warn!(container = %self.name, error = %e, "reap container process");
        }
        if let Err(e) = tokio::fs::remove_dir_all(&self.dir).await
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(container = %self.name, error = %e, "remove container dir");
        }
    }
}

impl Drop for ProcessContainer {
    fn drop(&mut self) {
        if !self.destroyed.load(Ordering::Acquire) {
            let _ = killpg(self.pgid, Signal::SIGKILL);
        }
    }
}
