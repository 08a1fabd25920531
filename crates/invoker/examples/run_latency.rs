//! Latency of `Invoker::run` with the real proxies: warm runs, stem-cell hits and cold starts.
//!
//! ```text
//! cargo run --release -p brisk-invoker --example run_latency [-- <warm iterations>]
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use brisk_invoker::{Invoker, InvokerConfig, Job};
use brisk_model::{
    Action, ActivationId, AuthKey, EntityName, EntityPath, Identity, RuntimeManifest, StatusCode,
    UserLimits, now_millis,
};
use serde_json::json;

fn action(name: &str, kind: &str, code: &str) -> Arc<Action> {
    Arc::new(Action::from_code(
        EntityPath::root(EntityName::new("guest").expect("name")),
        EntityName::new(name).expect("name"),
        kind,
        code,
    ))
}

fn job(a: &Arc<Action>) -> Job {
    Job {
        activation_id: ActivationId::generate(),
        transaction_id: "bench".into(),
        action: a.clone(),
        binding: None,
        identity: std::sync::Arc::new(Identity {
            subject: "guest".into(),
            namespace: EntityName::new("guest").expect("name"),
            uuid: "u".into(),
            authkey: AuthKey::parse("u:k").expect("key"),
            limits: UserLimits::default(),
        }),
        args: json!({"x": 1}),
        cause: None,
        caused_by_sequence: false,
        received_at_ms: now_millis(),
        prepare_next: Vec::new(),
    }
}

const NODE: (&str, &str) = ("nodejs:20", "function main(p) { return p; }");
const PYTHON: (&str, &str) = ("python:3.11", "def main(args):\n    return args\n");

async fn timed(inv: &Invoker, a: &Arc<Action>) -> anyhow::Result<Duration> {
    let t = Instant::now();
    let act = inv.run(job(a)).await;
    let d = t.elapsed();
    anyhow::ensure!(
        act.response.status_code == StatusCode::Success,
        "activation failed: {:?}",
        act.response
    );
    Ok(d)
}

fn report(what: &str, mut v: Vec<Duration>) {
    v.sort();
    let pct = |p: f64| v[((v.len() - 1) as f64 * p) as usize].as_secs_f64() * 1000.0;
    println!(
        "{what:<28} n={:<5} p50={:>8.3} ms  p90={:>8.3} ms  p99={:>8.3} ms",
        v.len(),
        pct(0.5),
        pct(0.9),
        pct(0.99)
    );
}

async fn start(dir: &tempfile::TempDir, prewarm: bool) -> anyhow::Result<Arc<Invoker>> {
    let mut c = InvokerConfig::new(
        dir.path().join(if prewarm { "p" } else { "c" }),
        concat!(env!("CARGO_MANIFEST_DIR"), "/runtimes"),
    );
    c.prewarm = prewarm;
    c.user_memory_mb = 4096;
    Ok(Invoker::start(c, Arc::new(RuntimeManifest::builtin())).await?)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let warm_n: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(2000);
    let dir = tempfile::Builder::new().prefix("bb").tempdir_in("/tmp")?;

    let inv = start(&dir, false).await?;
    for (kind, code) in [NODE, PYTHON] {
        let mut cold = Vec::new();
        for i in 0..10 {
            cold.push(timed(&inv, &action(&format!("cold{i}"), kind, code)).await?);
        }
        report(&format!("cold start {kind}"), cold);
        let a = action("warm", kind, code);
        timed(&inv, &a).await?;
        let mut warm = Vec::with_capacity(warm_n);
        for _ in 0..warm_n {
            warm.push(timed(&inv, &a).await?);
        }
        report(&format!("warm run {kind}"), warm);
    }
    inv.shutdown().await;

    let inv = start(&dir, true).await?;
    for ((kind, code), want) in [(NODE, 2), (PYTHON, 1)] {
        let mut hits = Vec::new();
        for i in 0..10 {
            while inv.stats().prewarmed.get(kind).copied().unwrap_or(0) < want {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            // Let the replacement's start-up finish so that it does not compete.
            tokio::time::sleep(Duration::from_millis(100)).await;
            hits.push(timed(&inv, &action(&format!("stem{i}"), kind, code)).await?);
        }
        report(&format!("prewarm hit {kind}"), hits);
    }
    println!("{:?}", inv.stats());
    inv.shutdown().await;
    Ok(())
}
