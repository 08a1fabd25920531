//! sequence: a warm 5-step sequence of noops against a single noop (overhead per added step),
//! and the first run of a fresh 5-step sequence (five first invokes in a row).

use std::time::Duration;

use hyper::Method;

use crate::api::{self, Kind, invoke_path};
use crate::report::{Pct, Report, Scenario};
use crate::stats::Samples;
use crate::{Ctx, progress};

use super::{diff, phase};

const STEPS: usize = 5;

pub(super) async fn run(ctx: &Ctx, report: &Report, s: &mut Scenario) -> anyhow::Result<()> {
    let mut c = ctx.conn().await?;
    let plan = ctx.plan.clone();
    let single = ctx.name("seq-single");
    api::put_action(
        &mut c,
        &single,
        Kind::Node,
        &Kind::Node.noop_code(&single),
        None,
    )
    .await?;
    let mut comps = Vec::new();
    for i in 0..STEPS {
        let name = ctx.name(&format!("seq-step{i}"));
        api::put_action(
            &mut c,
            &name,
            Kind::Node,
            &Kind::Node.noop_code(&name),
            None,
        )
        .await?;
        comps.push(name);
    }
    let seq = ctx.name("seq5");
    api::put_sequence(&mut c, &seq, &comps).await?;
    for _ in 0..3 {
        api::invoke(&mut c, &single).await?;
        api::invoke(&mut c, &seq).await?;
    }
    let one = phase(
        "single action",
        &ctx.target,
        invoke_path(&single, true),
        1,
        plan.warmup,
        plan.measure,
    )
    .await;
    let five = phase(
        "5-step sequence",
        &ctx.target,
        invoke_path(&seq, true),
        1,
        plan.warmup,
        plan.measure,
    )
    .await;
    let (p50_1, p99_1) = {
        let m = s.latency("single node action", &one.all, one.errors);
        (m.p(Pct::P50), m.p(Pct::P99))
    };
    let (p50_5, p99_5) = {
        let m = s.latency("5-step sequence", &five.all, five.errors);
        (m.p(Pct::P50), m.p(Pct::P99))
    };
    let per_step = |d: Option<f64>| d.map(|d| d / (STEPS - 1) as f64);
    s.value("overhead per step p50", "ms", per_step(diff(p50_5, p50_1)));
    s.value("overhead per step p99", "ms", per_step(diff(p99_5, p99_1)));

    let mut first = Samples::new();
    let mut errors = 0;
    for r in 0..plan.seq_first_runs {
        let mut comps = Vec::new();
        for i in 0..STEPS {
            let name = ctx.name(&format!("seqfresh{r}-{i}"));
            api::put_action(
                &mut c,
                &name,
                Kind::Node,
                &Kind::Node.noop_code(&name),
                None,
            )
            .await?;
            comps.push(name);
        }
        let seq = ctx.name(&format!("seqfresh{r}"));
        api::put_sequence(&mut c, &seq, &comps).await?;
        // Let the pool refill the stem cells used by the previous run.
        tokio::time::sleep(Duration::from_millis(600)).await;
        let (reply, took) = c
            .timed(Method::POST, &invoke_path(&seq, true), Some("{}".into()))
            .await?;
        if reply.status.is_success() {
            first.push(took);
        } else {
            errors += 1;
            progress(&format!("  {seq}: HTTP {}", reply.status));
        }
    }
    s.latency("first run of a fresh 5-step sequence", &first, errors);
    let stem = report.value("cold", "stem node e2e");
    s.value(
        "5 x stem node first invoke (from cold)",
        "ms",
        stem.map(|v| v * STEPS as f64),
    );
    s.note("overhead per step = (sequence - single action) / 4 at the same percentile: what each added step costs, including the component's own warm run");
    Ok(())
}
