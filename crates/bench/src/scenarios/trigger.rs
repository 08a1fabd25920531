//! trigger: fire a trigger whose rule invokes a warm noop, and time until the action's
//! activation record exists (found through the trigger activation's logs, then polled by id).

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use hyper::StatusCode;
use serde_json::{Value, json};

use crate::Ctx;
use crate::api::{self, Kind, NS};
use crate::client::Conn;
use crate::report::Scenario;
use crate::stats::Samples;

const POLL_LIMIT: Duration = Duration::from_secs(10);

pub(super) async fn run(ctx: &Ctx, s: &mut Scenario) -> anyhow::Result<()> {
    let mut c = ctx.conn().await?;
    let action = ctx.name("trig-action");
    let trigger = ctx.name("trig");
    let rule = ctx.name("trig-rule");
    api::put_action(
        &mut c,
        &action,
        Kind::Node,
        &Kind::Node.noop_code(&action),
        None,
    )
    .await?;
    api::put_trigger(&mut c, &trigger).await?;
    api::put_rule(&mut c, &rule, &trigger, &action).await?;
    for _ in 0..3 {
        api::invoke(&mut c, &action).await?;
    }
    let mut fire = Samples::new();
    let mut done = Samples::new();
    let mut server_side = Samples::new();
    let mut errors = 0;
    for _ in 0..ctx.plan.trigger_reps {
        match one_fire(&mut c, &trigger).await {
            Ok((f, d, ss)) => {
                fire.push(f);
                done.push(d);
                if let Some(ms) = ss {
                    server_side.push_ms(ms);
                }
            }
            Err(e) => {
                errors += 1;
                crate::progress(&format!("  fire failed: {e:#}"));
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    s.latency("fire accepted (202)", &fire, errors);
    s.latency("fire to action completion", &done, errors);
    s.latency("server: trigger start to action end", &server_side, 0);
    s.note("completion = the action's activation record is readable (GET by id, polled back to back); server-side numbers are record timestamps (1 ms resolution)");
    Ok(())
}

/// One fire: (time to 202, time until the action's record exists, server-side ms).
async fn one_fire(
    c: &mut Conn,
    trigger: &str,
) -> anyhow::Result<(Duration, Duration, Option<f64>)> {
    let t0 = Instant::now();
    let reply = c
        .post_json(&format!("{NS}/triggers/{trigger}"), &json!({}))
        .await?
        .ok()?;
    let fired = t0.elapsed();
    let tid = reply.json()?["activationId"]
        .as_str()
        .context("fire response without activationId")?
        .to_string();
    let trig_record = poll(c, &tid, t0).await?;
    let aid = trig_record["logs"]
        .as_array()
        .and_then(|logs| logs.first())
        .and_then(Value::as_str)
        .and_then(|l| serde_json::from_str::<Value>(l).ok())
        .and_then(|l| l["activationId"].as_str().map(str::to_string))
        .context("trigger activation logs name no action activation")?;
    let action_record = poll(c, &aid, t0).await?;
    let completed = t0.elapsed();
    let server = match (trig_record["start"].as_f64(), action_record["end"].as_f64()) {
        (Some(start), Some(end)) => Some(end - start),
        _ => None,
    };
    Ok((fired, completed, server))
}

async fn poll(c: &mut Conn, id: &str, t0: Instant) -> anyhow::Result<Value> {
    let path = format!("{NS}/activations/{id}");
    loop {
        let reply = c.get(&path).await?;
        if reply.status == StatusCode::OK {
            return reply.json();
        }
        if reply.status != StatusCode::NOT_FOUND {
            bail!("GET activation {id}: HTTP {}", reply.status);
        }
        if t0.elapsed() > POLL_LIMIT {
            bail!("activation {id} not recorded within {POLL_LIMIT:?}");
        }
    }
}
