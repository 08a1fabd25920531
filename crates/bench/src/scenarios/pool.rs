//! pool: what the container pool costs, measured from outside the server (it exposes no pool
//! metrics): resume = an invoke after an idle period long enough to be paused minus the same
//! idle period on a server that does not pause yet (so the cost of waking an idle machine is not
//! counted as resume); memory = PSS of the runtime processes under the server
//! (`/proc/<pid>/smaps_rollup`); sandbox create time estimated from true cold starts. Pause,
//! resume and create are also timed directly on a sandbox of the bench's own when it runs as
//! root (see [`super::sandbox`]).

use std::time::Duration;

use hyper::Method;

use crate::api::{self, Kind, invoke_path};
use crate::client::{Conn, Target, annotation};
use crate::procs::{self, FloorKind, FloorServer, ProcInfo};
use crate::report::{Pct, Scenario};
use crate::stats::{Samples, percentile};
use crate::{Ctx, progress};

use super::diff;

const PAUSE_GRACE_MS: u64 = 150;
/// Idle periods before an invoke: shorter than the grace (running) and longer (paused).
const SHORT_IDLE_MS: u64 = 100;
const LONG_IDLE_MS: u64 = 300;

/// A runtime process of `kind`, by its executable's name.
fn is_kind(p: &ProcInfo, kind: Kind) -> bool {
    match kind {
        Kind::Node => p.exe.starts_with("node"),
        Kind::Python => p.exe.starts_with("python"),
    }
}

/// The PSS of the container whose runtime process is `p`: the runtime and its wrappers
/// ([`procs::chain_pss_kb`]) plus, for a fork of a zygote, its share of the zygote (the zygote's
/// PSS divided among the `runtimes` forked from it).
fn container_pss_kb(p: &ProcInfo, runtimes: &[&ProcInfo], all: &[ProcInfo]) -> Option<u64> {
    let share = procs::zygote_of(p, all).map_or(0, |z| {
        let forks = runtimes
            .iter()
            .filter(|q| procs::zygote_of(q, all).is_some_and(|y| y.pid == z.pid))
            .count() as u64;
        z.pss_kb.unwrap_or(0) / forks.max(1)
    });
    Some(procs::chain_pss_kb(p, all)? + share)
}

fn mean_mb(kb: &[u64]) -> Option<f64> {
    (!kb.is_empty()).then(|| kb.iter().sum::<u64>() as f64 / kb.len() as f64 / 1024.0)
}

async fn floor_request(c: &mut Conn) -> anyhow::Result<Duration> {
    let (reply, took) = c.timed(Method::POST, "/", Some("{}".into())).await?;
    reply.ok()?;
    Ok(took)
}

async fn timed_invoke(
    c: &mut Conn,
    name: &str,
    result: bool,
) -> anyhow::Result<(serde_json::Value, Duration)> {
    let (reply, took) = c
        .timed(Method::POST, &invoke_path(name, result), Some("{}".into()))
        .await?;
    let reply = reply.ok()?;
    Ok((reply.json()?, took))
}

pub(super) async fn run(ctx: &Ctx, s: &mut Scenario) -> anyhow::Result<()> {
    let reps = ctx.plan.pool_reps;

    // A server without stem cells, so every runtime process under it is an action's container:
    // idle memory and sandbox create time.
    let (server, target) = ctx.extra_server(&["--prewarm", "false"]).await?;
    let mut c = Conn::connect(&target).await?;
    for kind in Kind::BOTH {
        let l = kind.label();
        let mut e2e = Samples::new();
        let mut init = Samples::new();
        let mut warm = Samples::new();
        for i in 0..ctx.plan.pool_idle_actions {
            let name = ctx.name(&format!("idle-{l}-{i}"));
            api::put_action(&mut c, &name, kind, &kind.noop_code(&name), None).await?;
            let (record, took) = timed_invoke(&mut c, &name, false).await?;
            e2e.push(took);
            if let Some(ms) = annotation(&record, "initTime").and_then(|v| v.as_f64()) {
                init.push_ms(ms);
            }
            for _ in 0..5 {
                warm.push(timed_invoke(&mut c, &name, true).await?.1);
            }
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let all = procs::descendants(server.pid);
        // Runtime processes: the leaves (a forked container's launcher and init run the
        // runtime's executable too, and the zygote is their parent).
        let procs: Vec<&ProcInfo> = all
            .iter()
            .filter(|p| !p.paused && is_kind(p, kind) && !p.zygote)
            .filter(|p| !all.iter().any(|q| q.ppid == p.pid))
            .collect();
        progress(&format!("  {} idle {l} runtime process(es)", procs.len()));
        let pss: Vec<u64> = procs
            .iter()
            .filter_map(|p| container_pss_kb(p, &procs, &all))
            .collect();
        let zygotes: Vec<u64> = all
            .iter()
            .filter(|p| p.zygote && is_kind(p, kind))
            .filter_map(|p| p.pss_kb)
            .collect();
        let uss: Vec<u64> = procs
            .iter()
            .filter_map(|p| procs::chain_uss_kb(p, &all))
            .collect();
        let runtime_pss: Vec<u64> = procs.iter().filter_map(|p| p.pss_kb).collect();
        let rss: Vec<u64> = procs.iter().filter_map(|p| p.rss_kb).collect();
        s.value(&format!("idle warm container PSS {l}"), "MB", mean_mb(&pss));
        s.value(&format!("idle warm container USS {l}"), "MB", mean_mb(&uss));
        if !zygotes.is_empty() {
            s.value(
                &format!("runtime zygote PSS {l} (shared; its share is in the container PSS)"),
                "MB",
                mean_mb(&zygotes),
            );
        }
        s.value(
            &format!("idle warm runtime process PSS {l}"),
            "MB",
            mean_mb(&runtime_pss),
        );
        s.value(
            &format!("idle warm runtime process RSS {l}"),
            "MB",
            mean_mb(&rss),
        );
        s.value(
            &format!("idle warm containers measured {l}"),
            "processes",
            Some(pss.len() as f64),
        );
        let p50 = |x: &Samples| percentile(&x.sorted_ms(), 50.0);
        let estimate = diff(diff(p50(&e2e), p50(&init)), p50(&warm));
        s.latency(&format!("true cold e2e {l}"), &e2e, 0);
        s.value(&format!("sandbox create estimate {l}"), "ms", estimate);
    }
    server.stop().await;

    // Pause and resume on one container of a server that pauses PAUSE_GRACE_MS after the last
    // activation: invokes after a shorter idle period (not paused) alternate with invokes after
    // a longer one (paused), so waking an idle machine is not counted as resume.
    let grace = PAUSE_GRACE_MS.to_string();
    let (server, target) = ctx.extra_server(&["--pause-grace-ms", &grace]).await?;
    let mut c = Conn::connect(&target).await?;
    for kind in Kind::BOTH {
        let l = kind.label();
        let name = ctx.name(&format!("pool-{l}"));
        api::put_action(&mut c, &name, kind, &kind.noop_code(&name), None).await?;
        for _ in 0..5 {
            api::invoke(&mut c, &name).await?;
        }
        let mut warm = Samples::new();
        for _ in 0..reps * 5 {
            warm.push(timed_invoke(&mut c, &name, true).await?.1);
        }
        let mut running = Samples::new();
        let mut resumed = Samples::new();
        let mut paused_pss = Vec::new();
        let mut unexpected = 0u32;
        for _ in 0..reps {
            for (idle, want_paused) in [(SHORT_IDLE_MS, false), (LONG_IDLE_MS, true)] {
                tokio::time::sleep(Duration::from_millis(idle)).await;
                let all = procs::descendants(server.pid);
                let stopped: Vec<&ProcInfo> = all
                    .iter()
                    .filter(|p| p.paused && is_kind(p, kind))
                    .filter(|p| !all.iter().any(|q| q.ppid == p.pid))
                    .collect();
                let took = timed_invoke(&mut c, &name, true).await?.1;
                match (want_paused, stopped.is_empty()) {
                    (false, true) => running.push(took),
                    (true, false) => {
                        paused_pss.extend(
                            stopped
                                .iter()
                                .filter_map(|p| container_pss_kb(p, &stopped, &all)),
                        );
                        resumed.push(took);
                    }
                    _ => unexpected += 1,
                }
            }
        }
        let wp50 = s
            .latency(&format!("warm invoke back to back {l}"), &warm, 0)
            .p(Pct::P50);
        let np50 = s
            .latency(
                &format!("invoke after {SHORT_IDLE_MS} ms idle, not paused {l}"),
                &running,
                0,
            )
            .p(Pct::P50);
        let rp50 = s
            .latency(
                &format!("invoke after {LONG_IDLE_MS} ms idle, paused {l}"),
                &resumed,
                0,
            )
            .p(Pct::P50);
        s.value(&format!("resume overhead {l} p50"), "ms", diff(rp50, np50));
        s.value(&format!("idle penalty {l} p50"), "ms", diff(np50, wp50));
        s.value(
            &format!("pause state not as expected {l}"),
            "invokes",
            Some(f64::from(unexpected)),
        );
        match mean_mb(&paused_pss) {
            Some(mb) => {
                s.value(&format!("paused container PSS {l}"), "MB", Some(mb));
            }
            None => s.na(
                &format!("paused container PSS {l}"),
                "MB",
                "no paused runtime process found under the server (neither stopped nor in a frozen cgroup)",
            ),
        }
    }
    server.stop().await;

    // The same idle penalty on the bare Node server: how much of it is the machine's.
    let floor = FloorServer::start(FloorKind::Node, &ctx.args.node).await?;
    let mut fc = Conn::connect(&Target::new(&floor.apihost, None)?).await?;
    let mut back = Samples::new();
    let mut after = Samples::new();
    for _ in 0..reps * 5 {
        back.push(floor_request(&mut fc).await?);
    }
    for _ in 0..reps {
        tokio::time::sleep(Duration::from_millis(SHORT_IDLE_MS)).await;
        after.push(floor_request(&mut fc).await?);
    }
    let bp50 = s.latency("floor node back to back", &back, 0).p(Pct::P50);
    let ap50 = s
        .latency(
            &format!("floor node after {SHORT_IDLE_MS} ms idle"),
            &after,
            0,
        )
        .p(Pct::P50);
    s.value("idle penalty floor node p50", "ms", diff(ap50, bp50));
    drop(floor);

    // The pause happens off the request path and the server does not expose its duration, and
    // a cold start hides the sandbox's own cost: both timed directly on a sandbox of our own.
    super::sandbox::run(ctx, s).await;
    s.note(format!(
        "resume overhead = p50 of invokes after {LONG_IDLE_MS} ms idle (container paused) minus invokes after {SHORT_IDLE_MS} ms idle (not yet paused), alternating on one container of a --pause-grace-ms {PAUSE_GRACE_MS} server; the pause state is checked in /proc before each invoke"
    ));
    s.note("idle penalty = invoke after a short idle period minus back-to-back invokes: the cost of waking idle processes and vCPUs, measured for Brisk and for the bare Node server");
    s.note("memory: mean PSS of each runtime process plus its per-container wrappers (a sandbox's launcher and init) under a --prewarm false server after each action ran, plus, for containers forked from a runtime zygote, the zygote's PSS divided among its forks; PSS splits shared pages among siblings, so it falls as more containers of a kind run; USS counts only the pages no other process maps (the runtime's heap and stacks), what one more idle container adds");
    s.note("sandbox create estimate = true cold e2e - initTime - warm e2e (p50s): process start plus runtime boot, as seen from outside");
    Ok(())
}
