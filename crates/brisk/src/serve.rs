//! `brisk serve`: the standalone server.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use brisk_controller::{Controller, ControllerConfig, bootstrap};
use brisk_invoker::{Invoker, InvokerConfig};
use brisk_model::RuntimeManifest;
use brisk_store::{CachedStore, SqliteStore, Store};
use clap::Args;
use tokio_util::sync::CancellationToken;

use crate::UsageError;

#[derive(Args, Debug, Clone)]
pub struct ServeArgs {
    /// Port of the OpenWhisk API.
    #[arg(long, env = "BRISK_PORT", default_value_t = 3233)]
    pub port: u16,
    /// Address to bind.
    #[arg(long, env = "BRISK_HOST", default_value = "127.0.0.1")]
    pub host: String,
    /// Where the store and container state live (default ~/.brisk).
    #[arg(long, env = "BRISK_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Invocations per minute allowed per namespace (0 = unlimited).
    #[arg(long, env = "BRISK_INVOCATIONS_PER_MINUTE", default_value_t = 0)]
    pub invocations_per_minute: u32,
    /// Concurrent invocations allowed per namespace (0 = unlimited).
    #[arg(long, env = "BRISK_CONCURRENT_INVOCATIONS", default_value_t = 0)]
    pub concurrent_invocations: u32,
    /// Trigger fires per minute allowed per namespace (0 = unlimited).
    #[arg(long, env = "BRISK_FIRES_PER_MINUTE", default_value_t = 0)]
    pub fires_per_minute: u32,
    /// Longest a blocking invoke waits before answering 202, in milliseconds.
    #[arg(long, env = "BRISK_BLOCKING_TIMEOUT_MS", default_value_t = 60_000)]
    pub blocking_timeout_ms: u64,
    /// A runtime manifest to use instead of the built-in one.
    #[arg(long, env = "BRISK_RUNTIMES")]
    pub runtimes: Option<PathBuf>,
    /// Memory for action containers, in MB (default: half of the machine's memory).
    #[arg(long, env = "BRISK_USER_MEMORY_MB")]
    pub user_memory_mb: Option<u64>,
    /// Keep prewarmed stem cells per the runtime manifest (`false` = every start is cold).
    #[arg(long, env = "BRISK_PREWARM", default_value_t = true, action = clap::ArgAction::Set)]
    pub prewarm: bool,
    /// Threads that serve the API and drive containers (default: half the CPU cores, at least
    /// one). Each thread more hands work between threads; each fewer leaves more of the CPU to
    /// the actions: on 2 cores, one thread served 10–25% more noop invokes per second at
    /// saturation than two (BENCHMARKS.md).
    #[arg(long, env = "BRISK_SERVER_THREADS", value_parser = clap::value_parser!(u16).range(1..))]
    pub server_threads: Option<u16>,
    /// Idle milliseconds before a warm container is paused.
    #[arg(long, env = "BRISK_PAUSE_GRACE_MS", default_value_t = 10_000)]
    pub pause_grace_ms: u64,
    /// Idle seconds before a warm container is removed.
    #[arg(long, env = "BRISK_IDLE_TIMEOUT_S", default_value_t = 600)]
    pub idle_timeout_s: u64,
    /// Containers of one short action (warm runs under 2 ms) that run at once before its
    /// further activations wait for one of them instead of starting more, while the expected
    /// wait stays under 50 ms (default: twice the CPU cores; 0 = no limit).
    #[arg(long, env = "BRISK_CPU_SLOTS")]
    pub cpu_slots: Option<u32>,
    /// How action containers are isolated: `sandbox` (Linux namespaces, cgroups, seccomp; needs
    /// root), `process` (plain host processes, no isolation), or `auto` (sandbox when root).
    #[arg(long, env = "BRISK_ISOLATION", default_value = "auto")]
    pub isolation: Isolation,
    /// Outbound network access of actions: `egress` (through NAT) or `none`. Namespaces can
    /// override it with `brisk admin limits NS --network ...`.
    #[arg(long, env = "BRISK_NETWORK", default_value = "egress")]
    pub network: brisk_invoker::NetworkPolicy,
    /// Start Node.js, Python and native containers as forks of a runtime zygote (the sandbox's fork server: no
    /// interpreter start-up per container, loaded code shared between containers). Needs
    /// `libbrisk_sandbox.so` beside the `brisk` binary; without it, or with `false`, every
    /// container starts its own interpreter.
    #[arg(long, env = "BRISK_ZYGOTES", default_value_t = true, action = clap::ArgAction::Set)]
    pub zygotes: bool,
    /// Seconds activations in flight get to finish on shutdown.
    #[arg(long, env = "BRISK_SHUTDOWN_GRACE_S", default_value_t = 10)]
    pub shutdown_grace_s: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Isolation {
    Auto,
    Sandbox,
    Process,
}

/// A short name for this data directory, so that two servers on one machine never touch each
/// other's sandboxes (cgroups, network devices and state are named after it).
/// An exclusive lock on `<data-dir>/serve.lock` (`brisk admin` does not take it: it may change
/// namespaces while the server runs).
fn lock_data_dir(data_dir: &std::path::Path) -> anyhow::Result<nix::fcntl::Flock<std::fs::File>> {
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("create the data directory {}", data_dir.display()))?;
    let path = data_dir.join("serve.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("open {}", path.display()))?;
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock).map_err(
        |(_, errno)| {
            if errno == nix::errno::Errno::EWOULDBLOCK {
                anyhow::anyhow!(
                    "the data directory {} is in use by another `brisk serve`; stop that server \
                     or choose another --data-dir",
                    data_dir.display()
                )
            } else {
                anyhow::anyhow!("lock {}: {errno}", path.display())
            }
        },
    )
}

fn instance_name(data_dir: &std::path::Path) -> String {
    use std::hash::{Hash, Hasher};
    let canonical = std::fs::canonicalize(data_dir).unwrap_or_else(|_| data_dir.to_path_buf());
    let mut h = std::collections::hash_map::DefaultHasher::new();
    canonical.hash(&mut h);
    format!("{:08x}", h.finish() as u32)
}

/// The container backend: the sandbox when asked for (or when root under `auto`).
async fn container_factory(
    args: &ServeArgs,
    data_dir: &std::path::Path,
    user_memory_mb: u64,
) -> anyhow::Result<Option<brisk_sandbox::SandboxFactory>> {
    let root = nix::unistd::geteuid().is_root();
    let wanted = match args.isolation {
        Isolation::Process => false,
        Isolation::Sandbox => true,
        Isolation::Auto => root,
    };
    if !wanted {
        tracing::warn!(
            "actions run as plain host processes without isolation (run as root for the sandbox)"
        );
        return Ok(None);
    }
    let launcher =
        crate::sandbox_launcher().context("locate the brisk binary for the sandbox launcher")?;
    let mut config = brisk_sandbox::SandboxConfig::new(launcher, instance_name(data_dir));
    config.user_memory_mb = user_memory_mb;
    config.network = args.network;
    if args.zygotes {
        config.zygote_lib = crate::zygote_lib();
        if config.zygote_lib.is_none() {
            tracing::warn!(
                "libbrisk_sandbox.so is not beside the brisk binary: containers start without a zygote"
            );
        }
    }
    let factory = tokio::task::spawn_blocking(move || brisk_sandbox::SandboxFactory::new(config))
        .await
        .context("start the sandbox")?
        .context("start the sandbox (it needs root, namespaces and cgroups)")?;
    Ok(Some(factory))
}

/// The runtime proxies, embedded so the binary is self-contained; written to the data dir.
const PROXIES: &[(&str, &str)] = &[
    (
        "node/proxy.js",
        include_str!("../../invoker/runtimes/node/proxy.js"),
    ),
    (
        "python/proxy.py",
        include_str!("../../invoker/runtimes/python/proxy.py"),
    ),
    (
        "native/proxy.py",
        include_str!("../../invoker/runtimes/native/proxy.py"),
    ),
    (
        "node/package.json",
        include_str!("../../invoker/runtimes/node/package.json"),
    ),
    (
        "node/package-lock.json",
        include_str!("../../invoker/runtimes/node/package-lock.json"),
    ),
];

/// Installs the modules Node.js actions may require without bundling them (`openwhisk`, as
/// OpenWhisk's Node.js image has it) next to the Node proxy, in the background: start-up does
/// not wait, and a machine without npm or registry access still serves every other action.
fn install_node_modules(runtimes_dir: &std::path::Path) {
    let dir = runtimes_dir.join("node");
    if dir.join("node_modules/openwhisk/package.json").exists() {
        return;
    }
    tokio::spawn(async move {
        tracing::info!(dir = %dir.display(), "installing Node.js modules for actions");
        let out = tokio::process::Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(&dir)
            .stdin(std::process::Stdio::null())
            .output()
            .await;
        match out {
            Ok(o) if o.status.success() => tracing::info!("Node.js modules for actions installed"),
            Ok(o) => tracing::warn!(
                stderr = %String::from_utf8_lossy(&o.stderr).trim(),
                "could not install Node.js modules for actions (require('openwhisk') will fail)"
            ),
            Err(e) => tracing::warn!(
                error = %e,
                "npm is not available: Node.js actions cannot require('openwhisk')"
            ),
        }
    });
}

fn install_proxies(dir: &std::path::Path) -> anyhow::Result<()> {
    for (rel, text) in PROXIES {
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("create {}", parent.display()))?;
        }
        if std::fs::read_to_string(&path).ok().as_deref() != Some(*text) {
            std::fs::write(&path, text).with_context(|| format!("write {}", path.display()))?;
        }
    }
    Ok(())
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("BRISK_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Validates everything before any port is bound.
fn load_config(args: &ServeArgs) -> anyhow::Result<(SocketAddr, PathBuf, RuntimeManifest)> {
    let addr: SocketAddr = format!("{}:{}", args.host, args.port)
        .parse()
        .map_err(|_| UsageError(format!("--host {} is not an IP address", args.host)))?;
    let data_dir = args
        .data_dir
        .clone()
        .unwrap_or_else(crate::default_data_dir);
    let manifest = match &args.runtimes {
        None => RuntimeManifest::builtin(),
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                UsageError(format!("cannot read --runtimes {}: {e}", path.display()))
            })?;
            RuntimeManifest::parse(&text).map_err(|e| UsageError(e.to_string()))?
        }
    };
    if args.blocking_timeout_ms == 0 {
        return Err(UsageError("--blocking-timeout-ms must be positive".into()).into());
    }
    Ok((addr, data_dir, manifest))
}

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    init_tracing();
    let (addr, data_dir, manifest) = load_config(&args)?;
    // Held until the server has stopped: two servers on one data directory would remove each
    // other's sandboxes and runtime files.
    let _lock = lock_data_dir(&data_dir)?;
    let store = SqliteStore::open(&data_dir).context("open the store")?;
    let store: Arc<dyn Store> = Arc::new(CachedStore::new(store));
    let config = ControllerConfig {
        invocations_per_minute: args.invocations_per_minute,
        concurrent_invocations: args.concurrent_invocations,
        fires_per_minute: args.fires_per_minute,
        blocking_timeout: Duration::from_millis(args.blocking_timeout_ms),
        ..ControllerConfig::default()
    };
    let boot = bootstrap::bootstrap(store.as_ref(), &config.limits)
        .await
        .context("create the default namespaces")?;
    for ns in &boot.created_namespaces {
        tracing::info!(namespace = %ns, "created namespace");
    }
    let manifest = Arc::new(manifest);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("bind {addr}"))?;
    let local = listener.local_addr()?;
    let apihost = format!("http://{local}");
    // Signals are caught from here on, so a signal right after the banner is a clean stop.
    let signals = Signals::install().context("install signal handlers")?;

    let runtimes_dir = data_dir.join("runtimes");
    install_proxies(&runtimes_dir).context("install the runtime proxies")?;
    install_node_modules(&runtimes_dir);
    let mut icfg = InvokerConfig::new(data_dir.join("run"), runtimes_dir);
    if let Some(mb) = args.user_memory_mb {
        icfg.user_memory_mb = mb;
    }
    icfg.prewarm = args.prewarm;
    icfg.pause_grace = Duration::from_millis(args.pause_grace_ms);
    icfg.idle_timeout = Duration::from_secs(args.idle_timeout_s);
    if let Some(slots) = args.cpu_slots {
        icfg.cpu_slots = slots;
    }
    icfg.api_host = apihost.clone();
    icfg.network = args.network;
    let sandbox = container_factory(&args, &data_dir, icfg.user_memory_mb).await?;
    let invoker = match &sandbox {
        Some(f) => Invoker::start_with_factory(icfg, manifest.clone(), Arc::new(f.clone())).await,
        None => Invoker::start(icfg, manifest.clone()).await,
    }
    .context("start the invoker")?;
    let controller = Controller::with_invoker(config, store, manifest, invoker);
    println!(
        "brisk serve: OpenWhisk API on {apihost} (data in {})",
        data_dir.display()
    );
    println!("guest key: {}", bootstrap::GUEST_KEY);
    println!(
        "  wsk property set --apihost {apihost} --auth {}",
        bootstrap::GUEST_KEY
    );

    let shutdown = CancellationToken::new();
    tokio::spawn(signals.wait(shutdown.clone()));
    brisk_controller::serve(listener, controller.router(), shutdown.clone())
        .await
        .context("serve HTTP")?;
    controller
        .shutdown(Duration::from_secs(args.shutdown_grace_s))
        .await;
    tracing::info!("stopped");
    Ok(())
}

/// SIGTERM and SIGINT, installed before the server announces itself.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> std::io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    async fn wait(mut self, shutdown: CancellationToken) {
        tokio::select! {
            _ = self.term.recv() => {},
            _ = self.int.recv() => {},
        }
        tracing::info!("shutting down");
        shutdown.cancel();
    }
}

/// Server threads when `--server-threads` is not given: half the cores, at least one; the other
/// half is the actions' (ARCHITECTURE.md, "Server threads").
pub fn default_server_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1))
}
