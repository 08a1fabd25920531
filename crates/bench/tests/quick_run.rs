//! Runs the whole harness once with `--quick` against the real server binary and checks that the
//! JSON report is complete. No timing thresholds: performance is read from the printed numbers.
//!
//! The `brisk` binary is found, in order, at:
//! 1. `$BRISK_BIN`;
//! 2. `brisk` in the same target directory and profile as this test (`target/<profile>/brisk`,
//!    which `cargo test --workspace` builds for the `brisk` package's own tests);
//! 3. `$CARGO_TARGET_DIR/{debug,release}/brisk`;
//! 4. `<workspace>/target/{debug,release}/brisk`.
//!
//! With `cargo test -p brisk-bench` alone, run `cargo build -p brisk` first (or set `BRISK_BIN`).

use std::path::PathBuf;

use brisk_bench::{BenchArgs, ScenarioName};
use serde_json::Value;

fn brisk_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("BRISK_BIN") {
        return PathBuf::from(p);
    }
    let mut candidates = Vec::new();
    if let Ok(exe) = std::env::current_exe() {
        // target/<profile>/deps/quick_run-<hash>
        if let Some(profile_dir) = exe.parent().and_then(|d| d.parent()) {
            candidates.push(profile_dir.join("brisk"));
        }
    }
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        let dir = PathBuf::from(dir);
        candidates.push(dir.join("debug/brisk"));
        candidates.push(dir.join("release/brisk"));
    }
    let ws = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target");
    candidates.push(ws.join("debug/brisk"));
    candidates.push(ws.join("release/brisk"));
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .unwrap_or_else(|| {
            panic!(
                "no brisk binary: run `cargo build -p brisk` or set BRISK_BIN (looked at {candidates:?})"
            )
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quick_run_writes_a_complete_report() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("bench.json");
    let plot = dir.path().join("bench.svg");
    let args = BenchArgs {
        quick: true,
        out: Some(out.clone()),
        plot: Some(plot.clone()),
        brisk_bin: Some(brisk_bin()),
        ..BenchArgs::default()
    };
    let result = brisk_bench::run(args).await;
    let text = std::fs::read_to_string(&out).expect("the JSON report is written");
    result.expect("every scenario ran");
    let report: Value = serde_json::from_str(&text).unwrap();

    assert!(report["cores"].as_u64().unwrap() > 0);
    assert!(report["command"].as_str().is_some());
    assert_eq!(report["quick"], true);
    let scenarios = report["scenarios"].as_array().unwrap();
    let names: Vec<&str> = scenarios
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    let expected: Vec<&str> = ScenarioName::ALL.iter().map(|s| s.as_str()).collect();
    assert_eq!(names, expected);
    for s in scenarios {
        let name = &s["name"];
        assert_eq!(s["error"], Value::Null, "scenario {name} failed");
        let metrics = s["metrics"].as_array().unwrap();
        assert!(!metrics.is_empty(), "scenario {name} has no metrics");
        assert!(
            metrics.iter().any(|m| m.get("count").is_some()),
            "scenario {name} has no latency distribution"
        );
        for m in metrics {
            let metric = format!("{name}/{}", m["name"]);
            if let Some(count) = m.get("count") {
                assert!(count.as_u64().unwrap() > 0, "{metric}: no samples");
                for k in ["errors", "p50", "p90", "p99", "max"] {
                    assert!(m.get(k).is_some_and(|v| !v.is_null()), "{metric}: no {k}");
                }
            } else {
                assert!(
                    m["value"].is_number() || m["na"].is_string(),
                    "{metric}: neither a value nor a reason"
                );
            }
        }
    }
    let targets = report["targets"].as_array().unwrap();
    assert!(targets.len() >= 15, "{targets:?}");
    for t in targets {
        // Measured targets have a verdict; unmeasurable ones say so in their metric.
        assert!(t["met"].is_boolean() || t["actual"].is_null(), "{t}");
    }
    let svg = std::fs::read_to_string(&plot).unwrap();
    assert!(svg.starts_with("<svg"));
    assert!(svg.matches("<polyline").count() >= 7);
}
