//! mixed: many distinct actions invoked with Zipf popularity over a few connections; reports
//! the fraction of cold starts and latency percentiles (OpenWhisk's weak spot).

use bytes::Bytes;
use hyper::Method;

use crate::api::{self, Kind, invoke_path};
use crate::load::{self, Load, Paths};
use crate::report::Scenario;
use crate::zipf::Zipf;
use crate::{Ctx, progress};

pub(super) async fn run(ctx: &Ctx, s: &mut Scenario) -> anyhow::Result<()> {
    let plan = ctx.plan.clone();
    let target = ctx.target.clone();
    let mut c = crate::client::Conn::connect(&target).await?;
    let n = plan.mixed_actions;
    progress(&format!("  creating {n} actions"));
    let mut paths = Vec::with_capacity(n);
    for i in 0..n {
        let name = ctx.name(&format!("mixed-{i}"));
        api::put_action(
            &mut c,
            &name,
            Kind::Node,
            &Kind::Node.noop_code(&name),
            None,
        )
        .await?;
        paths.push(invoke_path(&name, false));
    }
    progress(&format!(
        "  Zipf(s={}) over {n} actions, {} connections, {:.0} s",
        plan.zipf_s,
        plan.mixed_connections,
        plan.mixed_measure.as_secs_f64()
    ));
    let res = load::run(Load {
        target,
        method: Method::POST,
        paths: Paths::Zipf {
            paths,
            zipf: Zipf::new(n, plan.zipf_s),
        },
        body: Bytes::from_static(b"{}"),
        connections: plan.mixed_connections,
        warmup: std::time::Duration::ZERO,
        duration: plan.mixed_measure,
        classify_cold: true,
    })
    .await;
    if let Some(e) = &res.first_error {
        progress(&format!("  mixed: {} error(s), first: {e}", res.errors));
    }
    s.latency("all invokes", &res.all, res.errors);
    s.latency("warm invokes", &res.warm, 0);
    s.latency("cold invokes", &res.cold, 0);
    let total = res.all.len();
    s.value(
        "cold-start fraction",
        "fraction",
        (total > 0).then(|| res.cold.len() as f64 / total as f64),
    );
    s.value("throughput", "req/s", Some(res.rps()));
    s.note(format!(
        "{n} Node noop actions, Zipf s={} popularity, {} connections from a cold start of the run (no warm-up); cold = record has an initTime annotation",
        plan.zipf_s, plan.mixed_connections
    ));
    Ok(())
}
