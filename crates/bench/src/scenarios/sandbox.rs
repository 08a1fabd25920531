//! Direct measurements of the sandbox backend for the pool scenario: what a server does off the
//! request path (pause) or hides inside a cold start (create), timed with [`Instant`] around the
//! `ContainerFactory` and `Container` calls on a [`SandboxFactory`] of the bench's own. It uses
//! the same launcher as `brisk serve` (the `brisk` executable and its hidden launcher argument,
//! handed over in [`crate::BenchArgs::sandbox_launcher`]) and runs the real Node.js runtime
//! proxy. Needs root, like `brisk serve --isolation sandbox`; without it, or when the sandbox
//! cannot start, the metrics are n/a with the reason and the scenario goes on.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use brisk_invoker::{
    Container, ContainerFactory, ContainerOutput, ContainerSpec, NetworkPolicy, ProxyClient,
};
use brisk_model::RuntimeManifest;
use brisk_sandbox::{SandboxConfig, SandboxFactory};
use tokio::io::AsyncReadExt;
use tokio::task::JoinHandle;

use crate::report::Scenario;
use crate::stats::Samples;
use crate::{Ctx, progress};

pub(crate) const CREATE: &str = "sandbox create (direct)";
pub(crate) const READY: &str = "sandbox create to proxy ready (direct)";
pub(crate) const PAUSE: &str = "sandbox pause (direct)";
pub(crate) const RESUME: &str = "sandbox resume (direct)";
pub(crate) const DESTROY: &str = "sandbox destroy (direct)";

/// The Node.js runtime proxy, as `brisk serve` installs it.
const NODE_PROXY: &str = include_str!("../../../invoker/runtimes/node/proxy.js");
/// The kind whose manifest entry gives the interpreter options and the memory limit.
const KIND: &str = "nodejs:default";
const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// Before the first create: the factory's network namespace pool fills, as a server's has long
/// before its first cold start.
const POOL_FILL: Duration = Duration::from_millis(200);
/// Between the proxy being ready and the first pause: its self-warm-up request ends and the
/// container is idle, as the pool finds it after the pause grace.
const SETTLE: Duration = Duration::from_millis(100);
/// Between a pause and the resume and between a resume and the next pause.
const GAP: Duration = Duration::from_millis(5);
/// How much of a failed proxy's stderr goes into the error.
const STDERR_TAIL: usize = 2000;

#[derive(Default)]
struct Measured {
    create: Samples,
    ready: Samples,
    pause: Samples,
    resume: Samples,
    destroy: Samples,
}

/// Adds the direct metrics (or n/a with the reason) and their note to `s`. Never fails the
/// scenario.
pub(super) async fn run(ctx: &Ctx, s: &mut Scenario) {
    let mut m = Measured::default();
    let outcome = match prerequisites(ctx) {
        Ok(launcher) => {
            progress(&format!(
                "  sandbox direct: {} create(s), {} pause/resume cycle(s)",
                ctx.plan.sandbox_creates, ctx.plan.sandbox_pauses
            ));
            measure(ctx, launcher, &mut m)
                .await
                .map_err(|e| format!("{e:#}"))
        }
        Err(reason) => Err(reason),
    };
    let failure = outcome.err();
    if let Some(e) = &failure {
        progress(&format!("  sandbox direct: not measured: {e}"));
    }
    let reason = failure.as_deref().unwrap_or("no sample");
    for (name, samples) in [
        (CREATE, &m.create),
        (READY, &m.ready),
        (PAUSE, &m.pause),
        (RESUME, &m.resume),
        (DESTROY, &m.destroy),
    ] {
        if samples.is_empty() {
            s.na(name, "ms", reason);
        } else {
            s.latency(name, samples, 0);
        }
    }
    s.note(format!(
        "sandbox (direct): a sandbox factory of the bench's own (launcher and runtime zygote as brisk serve, network none) running the Node.js proxy, timed around the ContainerFactory/Container calls: create = create() returning (cgroup, private directory, launcher spawned or forked), proxy ready = from create() until the proxy answers the invoker's readiness probe (its socket listens from create() on), then pause() and resume() alternating on one idle container ({} ms apart), destroy = destroy() of each",
        GAP.as_millis()
    ));
    if let Some(e) = failure
        && !m.create.is_empty()
    {
        s.note(format!("sandbox (direct) stopped part-way: {e}"));
    }
}

/// The launcher to use, or why the sandbox cannot be measured here.
fn prerequisites(ctx: &Ctx) -> Result<Vec<OsString>, String> {
    if !nix::unistd::geteuid().is_root() {
        return Err(
            "the sandbox needs root (namespaces and cgroups); run the bench as root to measure it"
                .into(),
        );
    }
    let Some(launcher) = ctx.args.sandbox_launcher.clone() else {
        return Err("no sandbox launcher (the bench runs outside the brisk binary, or it could not locate itself)".into());
    };
    if !ctx.args.node.is_file() {
        return Err(format!(
            "no Node.js at {} for the runtime proxy (--node)",
            ctx.args.node.display()
        ));
    }
    Ok(launcher)
}

async fn measure(ctx: &Ctx, launcher: Vec<OsString>, m: &mut Measured) -> anyhow::Result<()> {
    let manifest = RuntimeManifest::builtin();
    let runtime = manifest.resolve(KIND).context("find the Node.js runtime")?;
    let tmp = tempfile::Builder::new()
        .prefix("brisk-bench-sandbox-")
        .tempdir()
        .context("create a directory for the sandbox")?;
    let proxy_dir = tmp.path().join("runtimes").join(&runtime.proxy);
    std::fs::create_dir_all(&proxy_dir)
        .with_context(|| format!("create {}", proxy_dir.display()))?;
    let proxy = proxy_dir.join("proxy.js");
    std::fs::write(&proxy, NODE_PROXY).with_context(|| format!("write {}", proxy.display()))?;

    let mut config = SandboxConfig::new(launcher, format!("bench-{}", std::process::id()));
    config.state_dir = tmp.path().join("state");
    config.network = NetworkPolicy::None;
    config.egress_available = false;
    config.netns_pool = 2;
    config.zygote_lib = ctx.args.zygote_lib.clone();
    let factory = tokio::task::spawn_blocking(move || SandboxFactory::new(config))
        .await
        .context("start the sandbox")?
        .context("start the sandbox (as brisk serve --isolation sandbox would)")?;
    let factory: Arc<dyn ContainerFactory> = Arc::new(factory);
    tokio::time::sleep(POOL_FILL).await;

    let base = ContainerSpec {
        name: String::new(),
        dir: PathBuf::new(),
        kind: runtime.kind.clone(),
        interpreter: ctx.args.node.clone(),
        args: runtime.args.clone(),
        proxy,
        memory_mb: runtime.stem_cells.first().map_or(256, |c| c.memory_mb()),
        allow_concurrent: false,
        api_host: "http://127.0.0.1:9".into(),
        network: NetworkPolicy::None,
    };
    let res = cycles(
        factory.as_ref(),
        &base,
        &tmp.path().join("run"),
        &ctx.plan,
        m,
    )
    .await;
    factory.shutdown().await;
    res
}

/// Creates containers one after the other, pauses and resumes the last one, destroys each.
async fn cycles(
    factory: &dyn ContainerFactory,
    base: &ContainerSpec,
    run_dir: &Path,
    plan: &crate::Plan,
    m: &mut Measured,
) -> anyhow::Result<()> {
    let creates = plan.sandbox_creates.max(1);
    for i in 0..creates {
        let name = format!("c{i}");
        let spec = ContainerSpec {
            dir: run_dir.join(&name),
            name,
            ..base.clone()
        };
        let t0 = Instant::now();
        let (c, out) = factory.create(&spec).await.context("create a sandbox")?;
        m.create.push(t0.elapsed());
        let stderr = drain(out);
        if let Err(e) = wait_ready(c.as_ref(), t0).await {
            c.destroy().await;
            let tail = stderr.await.unwrap_or_default();
            bail!("{e:#}; proxy stderr: {}", tail.trim());
        }
        m.ready.push(t0.elapsed());
        let paused = if i + 1 == creates {
            tokio::time::sleep(SETTLE).await;
            pause_resume(c.as_ref(), plan.sandbox_pauses.max(1), m).await
        } else {
            Ok(())
        };
        let t = Instant::now();
        c.destroy().await;
        m.destroy.push(t.elapsed());
        paused?;
    }
    Ok(())
}

async fn pause_resume(c: &dyn Container, n: usize, m: &mut Measured) -> anyhow::Result<()> {
    for _ in 0..n {
        let t = Instant::now();
        c.pause().await.context("pause the sandbox")?;
        m.pause.push(t.elapsed());
        tokio::time::sleep(GAP).await;
        let t = Instant::now();
        c.resume().await.context("resume the sandbox")?;
        m.resume.push(t.elapsed());
        tokio::time::sleep(GAP).await;
    }
    if c.has_exited() {
        bail!("the sandbox's launcher exited during pause/resume");
    }
    Ok(())
}

/// Waits until the proxy answers the readiness probe, with the invoker's own client.
async fn wait_ready(c: &dyn Container, started: Instant) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::from_std(started + READY_TIMEOUT);
    ProxyClient::new(c.socket_path(), c.name())
        .wait_ready(deadline, || c.has_exited())
        .await
        .context("wait for the runtime proxy")
}

/// Reads both streams until the container is gone (a full pipe would stall the proxy); returns
/// the end of stderr.
fn drain(out: ContainerOutput) -> JoinHandle<String> {
    let mut stdout = out.stdout;
    tokio::spawn(async move {
        let _ = tokio::io::copy(&mut stdout, &mut tokio::io::sink()).await;
    });
    let mut stderr = out.stderr;
    tokio::spawn(async move {
        let mut text = Vec::new();
        let _ = stderr.read_to_end(&mut text).await;
        let from = text.len().saturating_sub(STDERR_TAIL);
        String::from_utf8_lossy(&text[from..]).into_owned()
    })
}
