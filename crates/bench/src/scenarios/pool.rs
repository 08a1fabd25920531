//! pool: what the container pool costs, measured from outside the server (it exposes no pool
//! metrics): resume = invoke after the pause grace minus a warm invoke; memory = PSS of the
//! runtime processes under the server (`/proc/<pid>/smaps_rollup`); sandbox create time
//! estimated from true cold starts.

use std::time::Duration;

use hyper::Method;

use crate::api::{self, Kind, invoke_path};
use crate::client::{Conn, annotation};
use crate::procs::{self, ProcInfo};
use crate::report::{Pct, Scenario};
use crate::stats::{Samples, percentile};
use crate::{Ctx, progress};

use super::diff;

const PAUSE_GRACE_MS: u64 = 50;

fn is_kind(p: &ProcInfo, kind: Kind) -> bool {
    match kind {
        Kind::Node => p.cmdline.contains("node"),
        Kind::Python => p.cmdline.contains("python"),
    }
}

fn mean_mb(kb: &[u64]) -> Option<f64> {
    (!kb.is_empty()).then(|| kb.iter().sum::<u64>() as f64 / kb.len() as f64 / 1024.0)
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
    // Pause and resume: a server that pauses 50 ms after the last activation.
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
        let mut resumed = Samples::new();
        let mut paused_seen = 0;
        let mut paused_pss = Vec::new();
        for _ in 0..reps {
            tokio::time::sleep(Duration::from_millis(PAUSE_GRACE_MS * 4)).await;
            let stopped: Vec<ProcInfo> = procs::descendants(server.pid)
                .into_iter()
                .filter(|p| p.state == 'T' && is_kind(p, kind))
                .collect();
            if !stopped.is_empty() {
                paused_seen += 1;
                paused_pss.extend(stopped.iter().filter_map(|p| p.pss_kb));
            }
            resumed.push(timed_invoke(&mut c, &name, true).await?.1);
        }
        let wp50 = s.latency(&format!("warm invoke {l}"), &warm, 0).p(Pct::P50);
        let rp50 = s
            .latency(&format!("invoke after pause {l}"), &resumed, 0)
            .p(Pct::P50);
        s.value(&format!("resume overhead {l} p50"), "ms", diff(rp50, wp50));
        s.value(
            &format!("paused containers seen {l}"),
            "of reps",
            Some(f64::from(paused_seen)),
        );
        match mean_mb(&paused_pss) {
            Some(mb) => {
                s.value(&format!("paused container PSS {l}"), "MB", Some(mb));
            }
            None => s.na(
                &format!("paused container PSS {l}"),
                "MB",
                "no stopped runtime process found under the server (paused by other means than SIGSTOP?)",
            ),
        }
    }
    s.na(
        "pause time",
        "ms",
        "the pause happens off the request path and the server does not expose its duration",
    );
    server.stop().await;

    // Idle warm memory and sandbox create time: a server without stem cells, so every runtime
    // process under it is an action's container.
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
        let idle: Vec<ProcInfo> = procs::descendants(server.pid)
            .into_iter()
            .filter(|p| p.state != 'T' && is_kind(p, kind))
            .collect();
        progress(&format!("  {} idle {l} runtime process(es)", idle.len()));
        let pss: Vec<u64> = idle.iter().filter_map(|p| p.pss_kb).collect();
        let rss: Vec<u64> = idle.iter().filter_map(|p| p.rss_kb).collect();
        s.value(&format!("idle warm container PSS {l}"), "MB", mean_mb(&pss));
        s.value(&format!("idle warm container RSS {l}"), "MB", mean_mb(&rss));
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
    s.note(format!(
        "resume: a server with --pause-grace-ms {PAUSE_GRACE_MS}; each invoke after {} ms idle minus a back-to-back warm invoke",
        PAUSE_GRACE_MS * 4
    ));
    s.note("memory: mean PSS/RSS of the runtime processes under a --prewarm false server after each action ran (Python numbers include any interpreter shared with a zygote)");
    s.note("sandbox create estimate = true cold e2e - initTime - warm e2e (p50s): process start plus runtime boot, as seen from outside");
    Ok(())
}
