//! The sandbox [`ContainerFactory`]: prepares the cgroup and the private directory, hands the
//! launcher a [`LaunchSpec`], and drives pause/resume/destroy through the cgroup.

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use brisk_invoker::{
    BASE_PATH, Container, ContainerFactory, ContainerOutput, ContainerSpec, LISTEN_FD_ENV,
};
use parking_lot::Mutex;
use tokio::process::{Child, Command};
use tokio::sync::{oneshot, watch};

use crate::cgroup::{Cgroup, Hierarchy, Limits};
use crate::config::{NetworkPolicy, SandboxConfig, cpu_shares};
use crate::egress::Egress;
use crate::error::{Error, Result};
use crate::netns::{Netns, NetnsPool};
use crate::spec::{LaunchSpec, MountSpec, SPEC_ENV};
use crate::zygotes::{self, Zygotes};

/// Size of the tmpfs at the container's private directory inside the sandbox.
const PRIVATE_DIR_BYTES: u64 = 1024 * 1024;
/// How long destroy waits for the kernel to empty a killed cgroup.
const KILL_WAIT: Duration = Duration::from_secs(5);
/// How long destroy lets the launcher exit by itself before killing it.
const LAUNCHER_EXIT: Duration = Duration::from_secs(2);

struct Inner {
    config: SandboxConfig,
    hierarchy: Hierarchy,
    /// Empty directory each sandbox mounts its private root on.
    root_dir: PathBuf,
    /// `config.ro_paths`, resolved once.
    base_mounts: Vec<MountSpec>,
    /// Namespaces with only loopback.
    none_pool: Arc<NetnsPool>,
    /// Namespaces wired to the egress bridge (when egress is available).
    egress_pool: Option<Arc<NetnsPool>>,
    egress: Option<Arc<Egress>>,
    /// Set once everything was torn down (by `shutdown` or on drop).
    shut_down: AtomicBool,
    /// Cgroups and launcher pids of containers not yet destroyed, for shutdown.
    live: Mutex<HashMap<String, (Cgroup, Option<i32>)>>,
    /// Fork servers of the runtimes that have one (`config.zygote_lib`).
    zygotes: Option<Zygotes>,
}

/// Starts every container in its own Linux sandbox. Cheap to clone.
#[derive(Clone)]
pub struct SandboxFactory {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for SandboxFactory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SandboxFactory")
            .field("instance", &self.inner.config.instance)
            .field("hierarchy", &self.inner.hierarchy)
            .finish()
    }
}

impl SandboxFactory {
    /// Detects the cgroup layout, removes whatever a previous run of the same instance left
    /// (processes, cgroups), and starts the network namespace pool. Blocking; call once at
    /// start-up.
    pub fn new(config: SandboxConfig) -> Result<Self> {
        if config.launcher.is_empty() {
            return Err(Error::Config("launcher command is empty".into()));
        }
        if config.instance.is_empty() || config.instance.contains('/') {
            return Err(Error::Config(format!(
                "instance name `{}` must be non-empty without /",
                config.instance
            )));
        }
        let hierarchy = Hierarchy::detect()?;
        let found = hierarchy.cleanup_instance(&config.instance);
        if found > 0 {
            tracing::warn!(count = found, instance = %config.instance, "removed leftover sandboxes");
        }
        hierarchy.prepare(&config.instance)?;
        let root_dir = config.state_dir.join("root");
        std::fs::create_dir_all(&root_dir)
            .map_err(|e| Error::io("create sandbox state dir", &root_dir, e))?;
        if config.network == NetworkPolicy::Egress && !config.egress_available {
            return Err(Error::Config(
                "default network policy egress needs egress_available".into(),
            ));
        }
        let egress = if config.egress_available {
            Some(Arc::new(Egress::setup(
                &config.instance,
                &config.egress_deny,
            )?))
        } else {
            None
        };
        // The default policy gets the full pool, the other a small one for overrides.
        let size = |p: NetworkPolicy| {
            if p == config.network {
                config.netns_pool
            } else {
                config.netns_pool.div_ceil(4)
            }
        };
        let none_pool = NetnsPool::start(size(NetworkPolicy::None), None);
        let egress_pool = egress
            .as_ref()
            .map(|eg| NetnsPool::start(size(NetworkPolicy::Egress), Some(eg.clone())));
        let mut base_mounts = resolve_base_mounts(&config.ro_paths)?;
        base_mounts.extend(write_identity_files(&config)?);
        let zygotes = config.zygote_lib.clone().map(Zygotes::new);
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                hierarchy,
                root_dir,
                base_mounts,
                none_pool,
                egress_pool,
                egress,
                live: Mutex::new(HashMap::new()),
                shut_down: AtomicBool::new(false),
                zygotes,
            }),
        })
    }

    /// The cgroup layout in use.
    pub fn hierarchy(&self) -> &Hierarchy {
        &self.inner.hierarchy
    }

    /// Address of the egress bridge as containers see it (`None` with policy `none`).
    pub fn egress_gateway(&self) -> Option<String> {
        self.inner.egress.as_ref().map(|e| e.gateway().to_string())
    }

    /// Name of the egress bridge device (`None` with policy `none`).
    pub fn egress_bridge(&self) -> Option<String> {
        self.inner.egress.as_ref().map(|e| e.bridge().to_owned())
    }

    /// Creates a network namespace of `policy` right now on the calling thread, as a container
    /// does when the pool is empty (blocking). For tests and measurements: the namespace is the
    /// caller's, not the pool's.
    pub fn create_netns(&self, policy: NetworkPolicy) -> Result<Netns> {
        let pool = match policy {
            NetworkPolicy::None => &self.inner.none_pool,
            NetworkPolicy::Egress => self
                .inner
                .egress_pool
                .as_ref()
                .ok_or_else(|| Error::Egress("egress is not enabled in this factory".into()))?,
        };
        pool.create_now().map_err(Error::Netns)
    }

    /// The configuration in use.
    pub fn config(&self) -> &SandboxConfig {
        &self.inner.config
    }

    /// [`ContainerFactory::create`] with the concrete container type and the deployment's
    /// network policy.
    pub async fn create_sandbox(
        &self,
        spec: &ContainerSpec,
    ) -> brisk_invoker::Result<(SandboxContainer, ContainerOutput)> {
        self.create_sandbox_with(spec, spec.network).await
    }

    /// Creates a sandbox with an explicit network policy (a per-namespace override).
    pub async fn create_sandbox_with(
        &self,
        spec: &ContainerSpec,
        network: NetworkPolicy,
    ) -> brisk_invoker::Result<(SandboxContainer, ContainerOutput)> {
        let pool = match network {
            NetworkPolicy::None => self.inner.none_pool.clone(),
            NetworkPolicy::Egress => match &self.inner.egress_pool {
                Some(p) => p.clone(),
                None => {
                    return Err(
                        Error::Egress("egress is not enabled in this factory".into()).into(),
                    );
                }
            },
        };
        // The socket lives in the host's private directory, which the sandbox does not see;
        // the runtime gets it already listening (socket activation): the launcher's stdin, which
        // the launcher moves to descriptor 3 of the runtime.
        let socket = spec.checked_socket_path()?;
        let inner = self.inner.clone();
        let spec_owned = spec.clone();
        let (cgroup, launch, listener) =
            tokio::task::spawn_blocking(move || inner.prepare(&spec_owned))
                .await
                .map_err(|e| Error::Task(e.to_string()))??;
        let netns = match pool.take() {
            Some(ns) => Some(ns),
            // Without egress the launcher creates a bare namespace itself; with egress it must
            // be wired to the bridge first (slow: only when the pool ran dry).
            None if pool.egress() => {
                let p = pool.clone();
                let made = tokio::task::spawn_blocking(move || p.create_now())
                    .await
                    .map_err(|e| Error::Task(e.to_string()))
                    .and_then(|r| r.map_err(Error::Netns));
                match made {
                    Ok(ns) => Some(ns),
                    Err(err) => {
                        // Nothing runs in the cgroup yet.
                        cgroup.remove();
                        let _ = tokio::fs::remove_dir_all(&spec.dir).await;
                        return Err(err.into());
                    }
                }
            }
            None => None,
        };
        let launch = LaunchSpec {
            netns: netns.as_ref().map(Netns::proc_path),
            ..launch
        };
        let container = SandboxContainer {
            name: spec.name.clone(),
            dir: spec.dir.clone(),
            socket,
            cgroup,
            launcher: None,
            netns: Mutex::new(netns),
            pool,
            factory: self.inner.clone(),
            destroyed: AtomicBool::new(false),
            oom_kills: AtomicU64::new(0),
        };
        if let Some((launcher, output)) = self
            .fork_sandbox(spec, &launch, &listener, &container.cgroup)
            .await
        {
            return Ok((self.started(container, launcher), output));
        }
        let json = serde_json::to_string(&launch)
            .map_err(|e| brisk_invoker::Error::Task(format!("encode launch spec: {e}")))?;
        let launcher = &self.inner.config.launcher;
        let mut cmd = Command::new(&launcher[0]);
        cmd.args(&launcher[1..])
            .env_clear()
            .env(SPEC_ENV, json)
            // The launcher and init stay for the container's whole life with a few kilobytes
            // of heap. When the launcher is `brisk` itself, its allocator (mimalloc) would
            // back that heap with transparent huge pages, from before `main`: ~4 MB more per
            // container. (The runtime's environment is the spec's, without this.)
            .env("MIMALLOC_ALLOW_THP", "0")
            // The listening socket: the launcher and init pass it on and close their copies.
            .stdin(Stdio::from(listener))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let spawned = cmd.spawn();
        // The command holds the server's copy of the listening socket: the runtime must be its
        // only holder, so that the socket closes when the runtime exits.
        drop(cmd);
        let mut child = match spawned {
            Ok(c) => c,
            Err(source) => {
                container.destroy().await;
                return Err(brisk_invoker::Error::Spawn {
                    kind: spec.kind.clone(),
                    source,
                });
            }
        };
        let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
            container.destroy().await;
            return Err(brisk_invoker::Error::ExitedBeforeReady(spec.name.clone()));
        };
        let launcher_pid = child.id().map(|p| p as i32);
        let output = ContainerOutput {
            stdout: Box::new(stdout),
            stderr: Box::new(stderr),
        };
        Ok((
            self.started(container, Launcher::watch(child, launcher_pid)),
            output,
        ))
    }

    /// A container whose launcher (spawned or forked) runs: watched by it, and known to
    /// shutdown.
    fn started(&self, mut container: SandboxContainer, launcher: Launcher) -> SandboxContainer {
        self.inner.live.lock().insert(
            container.name.clone(),
            (container.cgroup.clone(), launcher.pid),
        );
        container.launcher = Some(launcher);
        container
    }

    /// Starts the container as a fork of its runtime's zygote, when the runtime has one. `None`
    /// when it has none or the zygote failed (then the launcher starts it, as every other).
    async fn fork_sandbox(
        &self,
        spec: &ContainerSpec,
        launch: &LaunchSpec,
        listener: &OwnedFd,
        cgroup: &Cgroup,
    ) -> Option<(Launcher, ContainerOutput)> {
        self.inner.zygotes.as_ref()?;
        let (interpreter, rest) = launch.argv.split_first()?;
        let (proxy, args) = rest.split_last()?;
        if !zygotes::serves(Path::new(interpreter), Path::new(proxy)) {
            return None;
        }
        let exit_file = spec.dir.join("exit");
        let launch = LaunchSpec {
            exit_file: Some(utf8(&exit_file).ok()?),
            ..launch.clone()
        };
        let (out_r, out_w) = zygotes::pipe().ok()?;
        let (err_r, err_w) = zygotes::pipe().ok()?;
        let listener = listener.try_clone().ok()?;
        let inner = self.inner.clone();
        let (interpreter, proxy, args) = (
            PathBuf::from(interpreter),
            PathBuf::from(proxy),
            args.to_vec(),
        );
        let forked = tokio::task::spawn_blocking(move || {
            let z = inner.zygotes.as_ref().expect("checked above");
            // The descriptors are dropped here, after the zygote has its copies: the runtime
            // becomes the socket's only holder.
            z.launch(
                &interpreter,
                &args,
                &proxy,
                &launch,
                [&listener, &out_w, &err_w],
            )
        })
        .await;
        let pid = match forked {
            Ok(Ok(pid)) => pid,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "runtime zygote unavailable; starting the container without it");
                // Should a fork have started after all (a reply that never came), it must not
                // share the socket with the launched runtime.
                cgroup.kill_all();
                return None;
            }
            Err(e) => {
                tracing::warn!(error = %e, "runtime zygote task failed");
                return None;
            }
        };
        let launcher = match zygotes::pidfd(pid) {
            Ok(fd) => Launcher::watch_forked(pid, fd, exit_file),
            Err(e) => {
                // The fork runs but cannot be watched: kill it through its cgroup.
                tracing::warn!(error = %e, "watch a forked container");
                cgroup.kill_all();
                return None;
            }
        };
        let output = ContainerOutput {
            stdout: Box::new(out_r),
            stderr: Box::new(err_r),
        };
        Some((launcher, output))
    }

    /// Kills every container still alive, removes all cgroups of this instance and stops the
    /// network namespace pool. Nothing is left behind afterwards.
    pub async fn shutdown(&self) {
        let inner = self.inner.clone();
        let res = tokio::task::spawn_blocking(move || inner.shutdown_blocking()).await;
        if let Err(e) = res {
            tracing::warn!(error = %e, "sandbox shutdown task failed");
        }
    }
}

impl Inner {
    /// Creates the private directory, the proxy's listening socket in it and the cgroup; builds
    /// the launch spec (without netns).
    fn prepare(
        &self,
        spec: &ContainerSpec,
    ) -> brisk_invoker::Result<(Cgroup, LaunchSpec, OwnedFd)> {
        let c = &self.config;
        // Shutdown removes it; a factory used afterwards makes it again.
        std::fs::create_dir_all(&self.root_dir)
            .map_err(|e| Error::io("create sandbox state dir", &self.root_dir, e))?;
        let code = spec.dir.join("code");
        std::fs::create_dir_all(&code).map_err(|e| Error::io("create container dir", &code, e))?;
        // Only the invoker writes here; the sandbox sees `code` read-only.
        std::fs::set_permissions(&spec.dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| Error::io("chmod container dir", &spec.dir, e))?;
        let listener = spec.listen()?;

        let interpreter = std::fs::canonicalize(&spec.interpreter)
            .map_err(|e| Error::io("resolve interpreter", &spec.interpreter, e))?;
        let proxy = std::fs::canonicalize(&spec.proxy)
            .map_err(|e| Error::io("resolve proxy", &spec.proxy, e))?;
        let proxy_dir = proxy.parent().unwrap_or(Path::new("/")).to_path_buf();
        let mut mounts = self.base_mounts.clone();
        for p in [&interpreter, &proxy_dir] {
            if !covered(&self.base_mounts, p) {
                let s = utf8(p)?;
                mounts.push(MountSpec::Ro {
                    src: s.clone(),
                    dst: s,
                });
            }
        }
        let dir = utf8(&spec.dir)?;
        let code = utf8(&code)?;
        // Inside, the private directory is a small tmpfs of the sandbox's own (HOME), so nothing
        // the action does reaches the host's disk, and the host's directory (the proxy's
        // socket) stays out of sight.
        mounts.push(MountSpec::Tmpfs {
            dst: dir.clone(),
            bytes: PRIVATE_DIR_BYTES,
        });
        mounts.push(MountSpec::Ro {
            src: code.clone(),
            dst: code,
        });

        let mut env = vec![
            ("PATH".to_owned(), BASE_PATH.to_owned()),
            ("HOME".to_owned(), dir.clone()),
            ("LANG".to_owned(), "C.UTF-8".to_owned()),
            ("TMPDIR".to_owned(), "/tmp".to_owned()),
            (
                LISTEN_FD_ENV.to_owned(),
                crate::launcher::LISTENER_FD.to_string(),
            ),
            ("__OW_API_HOST".to_owned(), spec.api_host.clone()),
        ];
        if spec.allow_concurrent {
            env.push(("__OW_ALLOW_CONCURRENT".to_owned(), "true".to_owned()));
        }
        let limits = Limits {
            memory_bytes: spec.memory_mb.max(4) * 1024 * 1024,
            pids_max: c.pids_max,
            cpu_shares: cpu_shares(spec.memory_mb, c.user_memory_mb),
        };
        let cgroup = self.hierarchy.create(&c.instance, &spec.name, limits)?;
        let launch = LaunchSpec {
            cgroup_join: cgroup
                .join_files()
                .iter()
                .map(|p| utf8(p))
                .collect::<Result<_>>()?,
            netns: None,
            root: utf8(&self.root_dir)?,
            mounts,
            tmp_bytes: c.tmp_size_mb * 1024 * 1024,
            uid: c.uid,
            gid: c.gid,
            hostname: "sandbox".into(),
            cwd: dir,
            exit_file: None,
            argv: std::iter::once(utf8(&interpreter)?)
                .chain(spec.args.iter().cloned())
                .chain(std::iter::once(utf8(&proxy)?))
                .collect(),
            env,
        };
        Ok((cgroup, launch, listener))
    }

    fn shutdown_blocking(&self) {
        if self.shut_down.swap(true, Ordering::AcqRel) {
            return;
        }
        let live: Vec<(Cgroup, Option<i32>)> = self.live.lock().drain().map(|(_, v)| v).collect();
        // Spare the launchers: each reaps its sandbox's init and exits (and its watcher task
        // reaps it), so the host's init inherits nothing.
        for (cg, launcher) in &live {
            cg.kill_except(*launcher);
        }
        for (cg, _) in &live {
            cg.wait_empty(KILL_WAIT);
            cg.remove();
        }
        if let Some(z) = &self.zygotes {
            z.stop();
        }
        self.hierarchy.cleanup_instance(&self.config.instance);
        self.hierarchy.remove_instance(&self.config.instance);
        self.none_pool.stop();
        if let Some(p) = &self.egress_pool {
            p.stop();
        }
        if let Some(eg) = &self.egress {
            eg.teardown();
        }
        let _ = std::fs::remove_dir(&self.root_dir);
        for name in ["passwd", "group"] {
            let _ = std::fs::remove_file(self.config.state_dir.join(name));
        }
        let _ = std::fs::remove_dir(&self.config.state_dir);
    }
}

impl Drop for Inner {
    /// The last handle is gone (no container holds one either): leave nothing behind, even
    /// when nobody called [`SandboxFactory::shutdown`].
    fn drop(&mut self) {
        self.shutdown_blocking();
    }
}

/// A minimal `/etc/passwd` and `/etc/group` (root and the sandbox user), so that
/// `getpwuid`-based calls (`os.userInfo()`, `getpass.getuser()`, `id`) work without exposing the
/// host's accounts.
fn write_identity_files(c: &SandboxConfig) -> Result<Vec<MountSpec>> {
    let files = [
        (
            "passwd",
            format!(
                "root:x:0:0:root:/root:/usr/sbin/nologin\n\
                 sandbox:x:{}:{}:sandbox:/tmp:/usr/sbin/nologin\n",
                c.uid, c.gid
            ),
        ),
        ("group", format!("root:x:0:\nsandbox:x:{}:\n", c.gid)),
    ];
    let mut mounts = Vec::new();
    for (name, text) in files {
        let path = c.state_dir.join(name);
        std::fs::write(&path, text).map_err(|e| Error::io("write", &path, e))?;
        mounts.push(MountSpec::Ro {
            src: utf8(&path)?,
            dst: format!("/etc/{name}"),
        });
    }
    Ok(mounts)
}

/// Whether `p` lies in a read-only directory mount of `mounts`.
fn covered(mounts: &[MountSpec], p: &Path) -> bool {
    mounts.iter().any(|m| match m {
        MountSpec::Ro { dst, .. } => p.starts_with(dst) && Path::new(dst).is_dir(),
        _ => false,
    })
}

fn utf8(p: &Path) -> Result<String> {
    p.to_str()
        .map(str::to_owned)
        .ok_or_else(|| Error::NonUtf8Path(p.to_path_buf()))
}

/// Turns configured paths into mounts: directories that are symbolic links are recreated as
/// links (`/lib -> usr/lib`), file links are bound from their target, missing paths skipped.
pub(crate) fn resolve_base_mounts(paths: &[PathBuf]) -> Result<Vec<MountSpec>> {
    let mut out = Vec::new();
    let mut sorted: Vec<&PathBuf> = paths.iter().collect();
    sorted.sort();
    for p in sorted {
        let Ok(meta) = std::fs::symlink_metadata(p) else {
            continue;
        };
        let dst = utf8(p)?;
        if meta.file_type().is_symlink() {
            let Ok(resolved) = std::fs::canonicalize(p) else {
                continue;
            };
            if resolved.is_dir() {
                let target = std::fs::read_link(p).map_err(|e| Error::io("read link", p, e))?;
                out.push(MountSpec::Symlink {
                    target: utf8(&target)?,
                    dst,
                });
            } else {
                out.push(MountSpec::Ro {
                    src: utf8(&resolved)?,
                    dst,
                });
            }
        } else {
            out.push(MountSpec::Ro {
                src: dst.clone(),
                dst,
            });
        }
    }
    Ok(out)
}

#[async_trait]
impl ContainerFactory for SandboxFactory {
    async fn create(
        &self,
        spec: &ContainerSpec,
    ) -> brisk_invoker::Result<(Box<dyn Container>, ContainerOutput)> {
        let (c, out) = self.create_sandbox(spec).await?;
        Ok((Box::new(c), out))
    }

    async fn shutdown(&self) {
        SandboxFactory::shutdown(self).await;
    }

    async fn cleanup_leftovers(&self, run_dir: &Path) {
        let run_dir = run_dir.to_path_buf();
        let inner = self.inner.clone();
        let res = tokio::task::spawn_blocking(move || {
            // Processes first (they hold the directories' sockets), then the directories.
            let n = inner.hierarchy.cleanup_instance(&inner.config.instance);
            if n > 0 {
                tracing::warn!(count = n, "removed leftover sandboxes");
            }
            // Also at the end of the invoker's shutdown: the instance directories go too (the
            // next create makes them again).
            inner.hierarchy.remove_instance(&inner.config.instance);
            let Ok(entries) = std::fs::read_dir(&run_dir) else {
                return;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                let removed = if path.is_dir() {
                    std::fs::remove_dir_all(&path)
                } else {
                    std::fs::remove_file(&path)
                };
                if let Err(e) = removed {
                    tracing::warn!(error = %e, path = %path.display(), "remove leftover");
                }
            }
        })
        .await;
        if let Err(e) = res {
            tracing::warn!(error = %e, "leftover cleanup task failed");
        }
    }
}

/// A running sandbox.
pub struct SandboxContainer {
    name: String,
    dir: PathBuf,
    socket: PathBuf,
    cgroup: Cgroup,
    /// The launcher process, watched by a task of its own (`None` only while being created).
    launcher: Option<Launcher>,
    netns: Mutex<Option<Netns>>,
    /// Where the namespace goes back to.
    pool: Arc<NetnsPool>,
    factory: Arc<Inner>,
    destroyed: AtomicBool,
    oom_kills: AtomicU64,
}

impl SandboxContainer {
    /// Whether the kernel killed a process of this container because it exceeded its memory
    /// limit. Valid before and after [`Container::destroy`].
    pub fn oom_killed(&self) -> bool {
        self.oom_kills() > 0
    }

    /// How many processes of this container the kernel's OOM killer has killed so far (the
    /// invoker compares it before and after a `/run`). Valid after [`Container::destroy`] too.
    pub fn oom_kills(&self) -> u64 {
        self.oom_kills
            .load(Ordering::Acquire)
            .max(self.cgroup.oom_kills())
    }

    /// Host pids of the container's processes (the launcher included).
    pub fn pids(&self) -> Vec<i32> {
        self.cgroup.pids()
    }

    /// The container's cgroup.
    pub fn cgroup(&self) -> &Cgroup {
        &self.cgroup
    }

    /// Waits for the launcher to exit and returns its exit code (128 + signal when killed).
    pub async fn wait(&self) -> Option<i32> {
        self.launcher.as_ref()?.wait().await
    }
}

/// How the launcher ended: its exit code (128 + signal when killed), `None` when it could not
/// be reaped.
#[derive(Debug, Clone, Copy)]
struct Exit(Option<i32>);

/// The launcher, owned by a task that reaps it the moment it exits (tokio's child reaper wakes
/// the task on SIGCHLD). Whether it exited is then a flag: a run asks before every `/run`, and
/// a `waitpid` under a lock there made concurrent runs of one container queue and spin.
struct Launcher {
    pid: Option<i32>,
    exit: watch::Receiver<Option<Exit>>,
    /// Asks the task to SIGKILL the launcher; dropping it does the same (kill on drop).
    kill: Mutex<Option<oneshot::Sender<()>>>,
}

impl Launcher {
    fn watch(mut child: Child, pid: Option<i32>) -> Self {
        let (exit_tx, exit) = watch::channel(None);
        let (kill, kill_rx) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let status = tokio::select! {
                status = child.wait() => status,
                // A kill request, or the container dropped without a destroy.
                _ = kill_rx => {
                    let _ = child.start_kill();
                    child.wait().await
                }
            };
            let code = status.ok().and_then(|s| {
                use std::os::unix::process::ExitStatusExt;
                s.code().or_else(|| s.signal().map(|sig| 128 + sig))
            });
            let _ = exit_tx.send(Some(Exit(code)));
        });
        Self {
            pid,
            exit,
            kill: Mutex::new(Some(kill)),
        }
    }

    /// Watches a launcher that is not this process's child (a zygote's fork) through a pidfd;
    /// its exit status comes from the file it writes before it exits (a launcher killed
    /// before that counts as killed by `SIGKILL`).
    fn watch_forked(pid: i32, pidfd: OwnedFd, exit_file: PathBuf) -> Self {
        let (exit_tx, exit) = watch::channel(None);
        let (kill, kill_rx) = oneshot::channel::<()>();
        tokio::spawn(async move {
            match zygotes::readable(pidfd) {
                Ok(fd) => {
                    tokio::select! {
                        _ = fd.readable() => {}
                        _ = kill_rx => {
                            zygotes::kill(fd.get_ref());
                            let _ = fd.readable().await;
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, pid, "watch a forked container");
                    let _ = kill_rx.await;
                }
            }
            let code = tokio::fs::read_to_string(&exit_file)
                .await
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or(128 + libc::SIGKILL);
            let _ = exit_tx.send(Some(Exit(Some(code))));
        });
        Self {
            pid: Some(pid),
            exit,
            kill: Mutex::new(Some(kill)),
        }
    }

    fn has_exited(&self) -> bool {
        self.exit.borrow().is_some()
    }

    async fn wait(&self) -> Option<i32> {
        let mut rx = self.exit.clone();
        let exit = rx.wait_for(Option::is_some).await.ok()?.map(|e| e.0);
        exit.flatten()
    }

    fn kill(&self) {
        if let Some(tx) = self.kill.lock().take() {
            let _ = tx.send(());
        }
    }
}

/// Waits for a killed cgroup to empty, removes it and recycles the network namespace. Returns
/// the cgroup's OOM kill count, read before the cgroup disappears.
fn finish_destroy(
    cgroup: &Cgroup,
    factory: &Inner,
    name: &str,
    netns: Option<(Netns, Arc<NetnsPool>)>,
) -> u64 {
    cgroup.kill_all();
    let empty = cgroup.wait_empty(KILL_WAIT);
    let ooms = cgroup.oom_kills();
    cgroup.remove();
    factory.live.lock().remove(name);
    if let Some((ns, pool)) = netns
        && empty
    {
        pool.give_back(ns);
    }
    ooms
}

#[async_trait]
impl Container for SandboxContainer {
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
        self.launcher.as_ref().is_none_or(Launcher::has_exited)
    }

    /// Writes the freezer state directly: two small sysfs writes (~0.1 ms) cost less than a
    /// hop to the blocking pool.
    async fn pause(&self) -> brisk_invoker::Result<()> {
        self.cgroup.freeze().map_err(Into::into)
    }

    async fn resume(&self) -> brisk_invoker::Result<()> {
        self.cgroup.thaw().map_err(Into::into)
    }

    fn oom_kills(&self) -> u64 {
        SandboxContainer::oom_kills(self)
    }

    async fn destroy(&self) {
        if self.destroyed.swap(true, Ordering::AcqRel) {
            return;
        }
        // Kill everything but the launcher: it reaps the sandbox's init (whose death ends the
        // pid namespace) and exits, and we reap it, so no zombie is left behind.
        let spare = self.launcher.as_ref().and_then(|l| l.pid);
        let cg = self.cgroup.clone();
        let _ = tokio::task::spawn_blocking(move || cg.kill_except(spare)).await;
        if let Some(launcher) = &self.launcher {
            if tokio::time::timeout(LAUNCHER_EXIT, launcher.wait())
                .await
                .is_err()
            {
                launcher.kill();
            }
            if launcher.wait().await.is_none() {
                tracing::warn!(container = %self.name, "sandbox launcher could not be reaped");
            }
        }
        let (cg, factory, name) = (self.cgroup.clone(), self.factory.clone(), self.name.clone());
        let netns = self.netns.lock().take().map(|ns| (ns, self.pool.clone()));
        match tokio::task::spawn_blocking(move || finish_destroy(&cg, &factory, &name, netns)).await
        {
            Ok(ooms) => self.oom_kills.store(ooms, Ordering::Release),
            Err(e) => tracing::warn!(container = %self.name, error = %e, "finish destroy"),
        }
        if let Err(e) = tokio::fs::remove_dir_all(&self.dir).await
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(container = %self.name, error = %e, "remove container dir");
        }
    }
}

impl Drop for SandboxContainer {
    fn drop(&mut self) {
        if !self.destroyed.load(Ordering::Acquire) {
            // Best effort without waiting; shutdown or the next start removes the cgroup.
            self.cgroup.kill_all();
        }
    }
}
