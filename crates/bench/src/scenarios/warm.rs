//! warm: one keep-alive connection invoking a noop, against the same noop behind a bare server.
//! throughput: the same at 8 and 64 connections, also with `concurrency` 8 in one container.

use crate::Ctx;
use crate::api::{self, Kind, invoke_path};
use crate::client::Target;
use crate::load::LoadResult;
use crate::procs::{FloorKind, FloorServer};
use crate::report::{Pct, Scenario};

use super::{diff, phase};

async fn floor(ctx: &Ctx, kind: Kind) -> anyhow::Result<(FloorServer, Target)> {
    let (fk, interp) = match kind {
        Kind::Node => (FloorKind::Node, &ctx.args.node),
        Kind::Python => (FloorKind::Python, &ctx.args.python),
    };
    let server = FloorServer::start(fk, interp).await?;
    let target = Target::new(&server.apihost, None)?;
    Ok((server, target))
}

pub(super) async fn warm(ctx: &Ctx, s: &mut Scenario) -> anyhow::Result<()> {
    let mut c = ctx.conn().await?;
    let plan = ctx.plan.clone();
    for kind in Kind::BOTH {
        let name = ctx.name(&format!("noop-{}", kind.label()));
        api::put_action(&mut c, &name, kind, &kind.noop_code(&name), None).await?;
        for _ in 0..3 {
            api::invoke(&mut c, &name).await?;
        }
        let (_floor, ft) = floor(ctx, kind).await?;
        let l = kind.label();
        // Brisk and the floor take turns in short rounds, so a stretch of a slow machine
        // (another tenant, the hypervisor) lands on both sides of the overhead alike.
        let sides = [
            (format!("brisk {l}"), &ctx.target, invoke_path(&name, true)),
            (format!("floor {l}"), &ft, "/".to_string()),
        ];
        let [b, f]: [LoadResult; 2] = take_turns(
            &sides,
            "",
            1,
            plan.warm_rounds,
            plan.warmup,
            plan.warmup / 10,
            plan.measure,
        )
        .await
        .try_into()
        .expect("one result per side");
        let bp50 = s
            .latency(&format!("brisk {l}"), &b.all, b.errors)
            .p(Pct::P50);
        let bp99 = s.metrics.last().and_then(|m| m.p(Pct::P99));
        let fp50 = s
            .latency(&format!("floor {l}"), &f.all, f.errors)
            .p(Pct::P50);
        let fp99 = s.metrics.last().and_then(|m| m.p(Pct::P99));
        s.value(&format!("overhead {l} p50"), "ms", diff(bp50, fp50));
        s.value(&format!("overhead {l} p99"), "ms", diff(bp99, fp99));
        s.value(&format!("brisk {l} req/s"), "req/s", Some(b.rps()));
        s.value(&format!("floor {l} req/s"), "req/s", Some(f.rps()));
    }
    // The same noop carrying 3 MB of code (a comment), as a zipped action with its dependencies
    // does: its warm invokes should cost what the small one's do.
    let name = ctx.name("noop-node-3mb");
    let code = format!(
        "{}\n// {}\n",
        Kind::Node.noop_code(&name),
        "x".repeat(LARGE_CODE)
    );
    api::put_action(&mut c, &name, Kind::Node, &code, None).await?;
    for _ in 0..3 {
        api::invoke(&mut c, &name).await?;
    }
    let big = phase(
        "brisk node, 3 MB of code",
        &ctx.target,
        invoke_path(&name, true),
        1,
        plan.warmup,
        plan.measure / 2,
    )
    .await;
    let small_p50 = s.metric("brisk node").and_then(|m| m.p(Pct::P50));
    let big_p50 = s
        .latency("brisk node 3 MB code", &big.all, big.errors)
        .p(Pct::P50);
    s.value("large code penalty p50", "ms", diff(big_p50, small_p50));
    s.note("1 keep-alive connection, closed loop; floor = bare Node `http` / Python `http.server` (TCP_NODELAY) running the same noop; Brisk and the floor take turns in rounds (20 in a full run, 0.5 s each) and each side's samples are pooled; overhead = brisk - floor; large code penalty = p50 of the noop with 3 MB of code - p50 of the plain noop");
    Ok(())
}

/// Measures each side (label, target, path) in turn, `rounds` times, each for `measure / rounds`
/// (after `first_warmup` in the first round, `warmup` in later ones), and pools each side's
/// results: a slow stretch of the machine lands on every side alike.
async fn take_turns(
    sides: &[(String, &Target, String)],
    suffix: &str,
    conns: usize,
    rounds: u32,
    first_warmup: std::time::Duration,
    warmup: std::time::Duration,
    measure: std::time::Duration,
) -> Vec<LoadResult> {
    let rounds = rounds.max(1);
    let mut results: Vec<LoadResult> = sides.iter().map(|_| LoadResult::default()).collect();
    for round in 0..rounds {
        let warmup = if round == 0 { first_warmup } else { warmup };
        for ((what, target, path), total) in sides.iter().zip(&mut results) {
            let label = if rounds > 1 {
                format!("{what}{suffix}, round {}/{rounds}", round + 1)
            } else {
                format!("{what}{suffix}")
            };
            let r = phase(
                &label,
                target,
                path.clone(),
                conns,
                warmup,
                measure / rounds,
            )
            .await;
            total.absorb(r);
        }
    }
    results
}

/// Bytes of padding in the large action of the warm scenario.
const LARGE_CODE: usize = 3_000_000;

pub(super) async fn throughput(ctx: &Ctx, s: &mut Scenario) -> anyhow::Result<()> {
    let mut c = ctx.conn().await?;
    let plan = ctx.plan.clone();
    let c1 = ctx.name("tp-c1");
    let c8 = ctx.name("tp-c8");
    api::put_action(&mut c, &c1, Kind::Node, &Kind::Node.noop_code(&c1), None).await?;
    api::put_action(&mut c, &c8, Kind::Node, &Kind::Node.noop_code(&c8), Some(8)).await?;
    for name in [&c1, &c8] {
        api::invoke(&mut c, name).await?;
    }
    let (_floor, ft) = floor(ctx, Kind::Node).await?;
    // What each round measures, in turn: the bare server, then Brisk at concurrency 1 and 8.
    let sides = [
        ("floor node".to_string(), &ft, "/".to_string()),
        ("brisk c1".to_string(), &ctx.target, invoke_path(&c1, true)),
        ("brisk c8".to_string(), &ctx.target, invoke_path(&c8, true)),
    ];
    for conns in [8usize, 64] {
        // Later rounds find the containers already there; a shorter warm-up suffices.
        let [f, b1, b8]: [LoadResult; 3] = take_turns(
            &sides,
            &format!(" @{conns}"),
            conns,
            plan.tp_rounds,
            plan.tp_warmup,
            plan.tp_warmup / 10,
            plan.measure,
        )
        .await
        .try_into()
        .expect("one result per side");
        s.latency(&format!("floor node @{conns}"), &f.all, f.errors);
        s.latency(&format!("brisk c1 @{conns}"), &b1.all, b1.errors);
        s.latency(&format!("brisk c8 @{conns}"), &b8.all, b8.errors);
        let frps = f.rps();
        s.value(&format!("floor node @{conns} req/s"), "req/s", Some(frps));
        s.value(&format!("brisk c1 @{conns} req/s"), "req/s", Some(b1.rps()));
        s.value(&format!("brisk c8 @{conns} req/s"), "req/s", Some(b8.rps()));
        let ratio = |r: f64| (frps > 0.0).then(|| r / frps);
        s.value(&format!("ratio c1 @{conns}"), "x floor", ratio(b1.rps()));
        s.value(&format!("ratio c8 @{conns}"), "x floor", ratio(b8.rps()));
    }
    s.note("noop Node action; c1 = default concurrency 1 (one container per in-flight request), c8 = limits.concurrency 8; ratio = brisk req/s / bare Node req/s at the same connections; the three take turns in rounds (10 in a full run, 1 s each), so drift of the machine's speed moves both sides of a ratio alike");
    Ok(())
}
