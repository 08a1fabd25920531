//! The scenarios, one module each (warm and throughput share the floor servers'
//! setup). Each fills a [`Scenario`] with metrics; an error keeps what was measured so far.

mod cold;
mod mixed;
mod pool;
pub(crate) mod sandbox;
mod sequence;
mod trigger;
mod warm;

use std::time::Duration;

use bytes::Bytes;
use hyper::Method;

use crate::client::Target;
use crate::load::{self, Load, LoadResult, Paths};
use crate::report::{Report, Scenario};
use crate::{Ctx, ScenarioName, progress};

pub(crate) async fn run(
    name: ScenarioName,
    ctx: &Ctx,
    report: &Report,
    s: &mut Scenario,
) -> anyhow::Result<()> {
    match name {
        ScenarioName::Warm => warm::warm(ctx, s).await,
        ScenarioName::Throughput => warm::throughput(ctx, s).await,
        ScenarioName::Cold => cold::run(ctx, s).await,
        ScenarioName::Sequence => sequence::run(ctx, report, s).await,
        ScenarioName::Trigger => trigger::run(ctx, s).await,
        ScenarioName::Pool => pool::run(ctx, s).await,
        ScenarioName::Mixed => mixed::run(ctx, s).await,
    }
}

/// A closed-loop POST phase against one path.
pub(crate) async fn phase(
    label: &str,
    target: &Target,
    path: String,
    connections: usize,
    warmup: Duration,
    measure: Duration,
) -> LoadResult {
    progress(&format!(
        "  {label}: {connections} connection(s), {:.1} s",
        measure.as_secs_f64()
    ));
    let res = load::run(Load {
        target: target.clone(),
        method: Method::POST,
        paths: Paths::Fixed(path),
        body: Bytes::from_static(b"{}"),
        connections,
        warmup,
        duration: measure,
        classify_cold: false,
    })
    .await;
    if let Some(e) = &res.first_error {
        progress(&format!("  {label}: {} error(s), first: {e}", res.errors));
    }
    res
}

/// `a − b`, when both are known.
pub(crate) fn diff(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    Some(a? - b?)
}
