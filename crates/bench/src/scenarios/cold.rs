//! cold: the first invoke of fresh actions, with the default server (prewarmed stem cells /
//! zygotes) and with a server started with `--prewarm false` (true cold). Reports end-to-end
//! latency and the record's `initTime`.

use std::time::{Duration, Instant};

use anyhow::Context;
use hyper::Method;

use crate::api::{self, Kind, invoke_path};
use crate::client::{Conn, Target, annotation};
use crate::procs::{FloorKind, FloorServer};
use crate::report::{Pct, Scenario};
use crate::stats::Samples;
use crate::{Ctx, progress};

/// What the first invokes of `n` fresh actions measured.
pub(crate) struct FirstInvokes {
    pub e2e: Samples,
    pub init: Samples,
    pub errors: u64,
}

/// Creates `n` fresh actions of `kind` and invokes each once, `gap` after creating it (time for
/// the pool to replace a used stem cell).
pub(crate) async fn first_invokes(
    ctx: &Ctx,
    target: &Target,
    kind: Kind,
    n: usize,
    gap: Duration,
    tag: &str,
) -> anyhow::Result<FirstInvokes> {
    let mut c = Conn::connect(target).await?;
    let mut out = FirstInvokes {
        e2e: Samples::new(),
        init: Samples::new(),
        errors: 0,
    };
    for i in 0..n {
        let name = ctx.name(&format!("{tag}-{}-{i}", kind.label()));
        api::put_action(&mut c, &name, kind, &kind.noop_code(&name), None).await?;
        tokio::time::sleep(gap).await;
        let (reply, took) = c
            .timed(Method::POST, &invoke_path(&name, false), Some("{}".into()))
            .await
            .with_context(|| format!("invoke {name}"))?;
        if !reply.status.is_success() {
            out.errors += 1;
            progress(&format!(
                "  {name}: HTTP {}: {}",
                reply.status,
                String::from_utf8_lossy(&reply.body)
            ));
            continue;
        }
        out.e2e.push(took);
        let record = reply.json()?;
        if let Some(ms) = annotation(&record, "initTime").and_then(|v| v.as_f64()) {
            out.init.push_ms(ms);
        }
    }
    Ok(out)
}

pub(super) async fn run(ctx: &Ctx, s: &mut Scenario) -> anyhow::Result<()> {
    let n = ctx.plan.cold_actions;
    for kind in Kind::BOTH {
        let l = kind.label();
        // A stem cell takes tens of ms to start (Node ~80 ms); leave room for the replacement.
        let gap = Duration::from_millis(300);
        progress(&format!("  stem {l}: {n} fresh actions"));
        let r = first_invokes(ctx, &ctx.target, kind, n, gap, "cold").await?;
        s.latency(&format!("stem {l} e2e"), &r.e2e, r.errors);
        s.latency(&format!("stem {l} initTime"), &r.init, 0);
    }
    let (server, target) = ctx.extra_server(&["--prewarm", "false"]).await?;
    for kind in Kind::BOTH {
        let l = kind.label();
        progress(&format!("  true cold {l}: {n} fresh actions"));
        let r = first_invokes(ctx, &target, kind, n, Duration::from_millis(50), "truecold").await;
        match r {
            Ok(r) => {
                s.latency(&format!("true cold {l} e2e"), &r.e2e, r.errors);
                s.latency(&format!("true cold {l} initTime"), &r.init, 0);
            }
            Err(e) => {
                server.stop().await;
                return Err(e);
            }
        }
    }
    server.stop().await;
    // The floor of a cold start: a fresh interpreter running the same noop behind a bare HTTP
    // server, from spawn to its first response. Interpreter start-up moves ~2× between runs on
    // shared machines, so this says how far a true cold start is from the machine's own floor.
    for kind in Kind::BOTH {
        let l = kind.label();
        progress(&format!("  floor cold {l}: {n} fresh processes"));
        let floor = floor_starts(ctx, kind, n).await?;
        let fp50 = s
            .latency(&format!("floor cold {l} e2e"), &floor, 0)
            .p(Pct::P50);
        let tp50 = s
            .metric(&format!("true cold {l} e2e"))
            .and_then(|m| m.p(Pct::P50));
        s.value(
            &format!("true cold {l} over floor p50"),
            "ms",
            super::diff(tp50, fp50),
        );
    }
    s.note("stem = default server (prewarmed stem cells / zygotes); true cold = a second server with --prewarm false; e2e = blocking invoke as the client sees it; initTime from the activation record");
    s.note("floor cold = a fresh bare Node `http` / Python `http.server` process running the same noop, from spawn to its first response (no sandbox, no platform); true cold over floor = the difference of the p50s");
    Ok(())
}

/// Spawn-to-first-response times of `n` fresh floor servers of `kind`.
async fn floor_starts(ctx: &Ctx, kind: Kind, n: usize) -> anyhow::Result<Samples> {
    let (fk, interp) = match kind {
        Kind::Node => (FloorKind::Node, &ctx.args.node),
        Kind::Python => (FloorKind::Python, &ctx.args.python),
    };
    let mut out = Samples::new();
    for _ in 0..n {
        let t0 = Instant::now();
        let server = FloorServer::start(fk, interp).await?;
        let target = Target::new(&server.apihost, None)?;
        let mut c = Conn::connect(&target).await?;
        let reply = c.request(Method::POST, "/", Some("{}".into())).await?;
        anyhow::ensure!(
            reply.status.is_success(),
            "the {kind:?} floor answered HTTP {}",
            reply.status
        );
        out.push(t0.elapsed());
        drop(c);
        drop(server);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(out)
}
