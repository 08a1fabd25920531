//! What storing activation records costs: writes `N` records shaped like a noop action's in
//! batches of `B` (as the recorder does) into a fresh store and prints the CPU time per record.
//!
//! ```sh
//! cargo run --release -p brisk-store --example record_writes -- [N] [B]
//! ```

use std::sync::Arc;
use std::time::Instant;

use brisk_model::{Activation, ActivationId};
use brisk_store::{ActivationQuery, ActivationStore, SqliteStore};

/// CPU time of this process (all threads), from `/proc/self/stat`, in seconds.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after_name = stat.rfind(')').map_or("", |i| &stat[i + 1..]);
    // utime and stime are the 12th and 13th fields after the command name, in clock ticks.
    let ticks: u64 = after_name
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|f| f.parse::<u64>().ok())
        .sum();
    ticks as f64 / 100.0
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let n: usize = args
        .next()
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(200_000);
    let b: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(50);
    let dir = tempfile::tempdir()?;
    let store = SqliteStore::open(dir.path())?;
    let template: Activation = serde_json::from_value(serde_json::json!({
        "namespace": "guest", "name": "noop", "subject": "guest",
        "activationId": ActivationId::generate().to_string(),
        "start": 0, "end": 0, "duration": 1,
        "response": {"statusCode": 0, "result": {}},
        "logs": [], "version": "0.0.1", "publish": false,
        "annotations": [
            {"key": "path", "value": "guest/noop"}, {"key": "waitTime", "value": 1},
            {"key": "kind", "value": "nodejs:20"}, {"key": "timeout", "value": false},
            {"key": "limits", "value": {"concurrency": 1, "logs": 10, "memory": 256, "timeout": 60000}}
        ]
    }))?;
    let (wall, cpu) = (Instant::now(), cpu_seconds());
    let mut start = brisk_model::now_millis();
    for _ in 0..n.div_ceil(b) {
        let batch: Vec<Arc<Activation>> = (0..b)
            .map(|_| {
                start += 1;
                let mut a = template.clone();
                a.activation_id = ActivationId::generate();
                a.start = start;
                a.end = start + 1;
                Arc::new(a)
            })
            .collect();
        store.store_batch(&batch).await?;
    }
    let per = |s: f64| s / n as f64 * 1e6;
    let q = ActivationQuery {
        namespace: "guest".into(),
        limit: 30,
        ..ActivationQuery::default()
    };
    let listed = store.list_activations(&q).await?.len();
    println!(
        "{n} records in batches of {b}: {:.2} µs CPU and {:.2} µs wall per record; listed {listed}",
        per(cpu_seconds() - cpu),
        per(wall.elapsed().as_secs_f64()),
    );
    Ok(())
}
