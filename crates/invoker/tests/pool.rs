//! Pool behaviour with real containers: warm reuse, stem cells, pause/resume, idle removal,
//! eviction, queueing, shutdown and crash recovery.

mod common;

use std::sync::Arc;
use std::time::Duration;

use brisk_model::StatusCode;
use common::*;
use serde_json::json;

fn echo(name: &str) -> Arc<brisk_model::Action> {
    Arc::new(action(
        name,
        node("function main(p) { return {pid: process.pid, p}; }"),
    ))
}

#[tokio::test]
async fn second_run_is_warm_and_has_no_init_time() {
    let f = invoker(|_| {}).await;
    let a = echo("warm");
    let cold = f.inv.run(job(&a, json!({"i": 1}))).await;
    let warm = f.inv.run(job(&a, json!({"i": 2}))).await;
    assert!(cold.annotations.get("initTime").is_some());
    assert!(warm.annotations.get("initTime").is_none());
    assert_eq!(result(&cold)["pid"], result(&warm)["pid"], "same container");
    assert_eq!(result(&warm)["p"], json!({"i": 2}));
    let s = f.inv.stats();
    assert_eq!((s.cold_starts, s.warm_hits, s.warm_idle), (1, 1, 1));

    // Another version of the action does not reuse the container.
    let mut newer = (*a).clone();
    newer.version = newer.version.up_patch();
    newer.updated += 1;
    let other = f.inv.run(job(&Arc::new(newer), json!({}))).await;
    assert!(other.annotations.get("initTime").is_some());
    assert_ne!(result(&other)["pid"], result(&cold)["pid"]);
    f.inv.shutdown().await;
}

#[tokio::test]
async fn stem_cells_are_consumed_and_refilled() {
    let f = invoker(|c| c.prewarm = true).await;
    let inv = f.inv.clone();
    let ready = move || {
        let s = inv.stats();
        s.prewarmed.get("nodejs:20") == Some(&2) && s.prewarmed.get("python:3.11") == Some(&1)
    };
    eventually("stem cells ready", ready.clone()).await;
    let a = echo("stem");
    let act = f.inv.run(job(&a, json!({}))).await;
    assert_eq!(act.response.status_code, StatusCode::Success);
    assert!(
        act.annotations.get("initTime").is_some(),
        "a stem cell still needs /init"
    );
    let s = f.inv.stats();
    assert_eq!((s.prewarm_hits, s.cold_starts), (1, 0));
    eventually("stem cell replaced", ready).await;

    // A kind and memory without stem cells starts cold and makes the stems grow.
    let mut big = action("big", node("function main() { return {}; }"));
    big.limits.memory = 512;
    f.inv.run(job(&Arc::new(big), json!({}))).await;
    assert_eq!(f.inv.stats().cold_starts, 1);
    f.inv.shutdown().await;
}

/// In a full pool a taken stem cell is replaced by evicting a warm container idle for a
/// second, so the next new action still starts from a stem cell rather than cold.
#[tokio::test]
async fn a_full_pool_keeps_its_stem_cells_by_evicting_long_idle_containers() {
    // Four slots: the two Node stem cells and the Python one take three.
    let f = invoker(|c| {
        c.prewarm = true;
        c.user_memory_mb = 1024;
    })
    .await;
    let inv = f.inv.clone();
    let node_stems = move |n: usize| {
        let s = inv.stats();
        s.prewarmed.get("nodejs:20") == Some(&n) && s.prewarmed.get("python:3.11") == Some(&1)
    };
    eventually("stem cells ready", || node_stems(2)).await;
    let (a, b, c) = (echo("full-a"), echo("full-b"), echo("full-c"));
    f.inv.run(job(&a, json!({}))).await;
    eventually("first stem cell replaced", || node_stems(2)).await;
    assert_eq!(f.inv.stats().used_mb, 1024);
    let pid_b = result(&f.inv.run(job(&b, json!({}))).await)["pid"].clone();
    // Full: the replacement waits until a or b has been idle for a second, then evicts a
    // (the least recently used; neither has more demand).
    eventually("second stem cell replaced", || node_stems(2)).await;
    let s = f.inv.stats();
    assert_eq!((s.evictions, s.used_mb), (1, 1024));
    let c1 = f.inv.run(job(&c, json!({}))).await;
    assert_eq!(c1.response.status_code, StatusCode::Success);
    let s = f.inv.stats();
    assert_eq!(
        (s.prewarm_hits, s.cold_starts),
        (3, 0),
        "every new action took a stem cell"
    );
    // c's replacement evicts b, idle for a second by then; b starts again from a stem cell.
    eventually("third stem cell replaced", || node_stems(2)).await;
    assert_eq!(f.inv.stats().evictions, 2);
    let b2 = f.inv.run(job(&b, json!({}))).await;
    assert!(b2.annotations.get("initTime").is_some());
    assert_ne!(result(&b2)["pid"], pid_b);
    let s = f.inv.stats();
    assert_eq!((s.prewarm_hits, s.cold_starts), (4, 0));
    f.inv.shutdown().await;
}

#[tokio::test]
async fn idle_containers_are_paused_then_resumed() {
    let f = invoker(|c| c.pause_grace = Duration::from_millis(50)).await;
    let a = echo("pausable");
    let first = f.inv.run(job(&a, json!({}))).await;
    let pid = result(&first)["pid"].as_i64().unwrap();
    eventually("container paused", || f.inv.stats().paused == 1).await;
    // The pool counts the container paused as it starts pausing it, and a stop signal takes
    // effect after `kill` returns: the process is seen stopped a moment later.
    eventually("proxy process stopped", || {
        proc_state(pid as i32).as_deref() == Some("T")
    })
    .await;
    assert_eq!(
        proc_state(pid as i32).as_deref(),
        Some("T"),
        "the proxy process is stopped"
    );
    let again = f.inv.run(job(&a, json!({}))).await;
    assert_eq!(again.response.status_code, StatusCode::Success);
    assert_eq!(result(&again)["pid"].as_i64(), Some(pid));
    assert!(again.annotations.get("initTime").is_none());
    assert_eq!(f.inv.stats().resumes, 1);
    f.inv.shutdown().await;
}

#[tokio::test]
async fn idle_containers_are_removed_after_the_idle_timeout() {
    let f = invoker(|c| {
        c.pause_grace = Duration::from_millis(20);
        c.idle_timeout = Duration::from_millis(200);
    })
    .await;
    f.inv.run(job(&echo("fleeting"), json!({}))).await;
    eventually("container removed", || f.inv.stats().live_containers == 0).await;
    assert_eq!(f.inv.stats().used_mb, 0);
    f.inv.shutdown().await;
}

#[tokio::test]
async fn a_full_pool_evicts_the_least_recently_used_idle_container() {
    let f = invoker(|c| c.user_memory_mb = 512).await;
    let (a, b, c) = (echo("a"), echo("b"), echo("c"));
    let pid_a = result(&f.inv.run(job(&a, json!({}))).await)["pid"].clone();
    let pid_b = result(&f.inv.run(job(&b, json!({}))).await)["pid"].clone();
    f.inv.run(job(&c, json!({}))).await;
    assert_eq!(f.inv.stats().evictions, 1);
    // b survived (a was least recently used); a starts cold again.
    let b2 = f.inv.run(job(&b, json!({}))).await;
    assert_eq!(result(&b2)["pid"], pid_b);
    let a2 = f.inv.run(job(&a, json!({}))).await;
    assert!(a2.annotations.get("initTime").is_some());
    assert_ne!(result(&a2)["pid"], pid_a);
    f.inv.shutdown().await;
}

#[tokio::test]
async fn activations_wait_when_the_pool_is_full() {
    let f = invoker(|c| c.user_memory_mb = 256).await;
    let slow = |name: &str| {
        Arc::new(action(
            name,
            node(
                "function main(p) { return new Promise(r => setTimeout(() => r({who: p.who}), 300)); }",
            ),
        ))
    };
    let (x, y) = (slow("x"), slow("y"));
    let (i1, i2) = (f.inv.clone(), f.inv.clone());
    let (jx, jy) = (job(&x, json!({"who": "x"})), job(&y, json!({"who": "y"})));
    let hx = tokio::spawn(async move { i1.run(jx).await });
    let hy = tokio::spawn(async move { i2.run(jy).await });
    let (ax, ay) = (hx.await.unwrap(), hy.await.unwrap());
    assert_eq!(result(&ax), json!({"who": "x"}), "{ax:?}");
    assert_eq!(result(&ay), json!({"who": "y"}), "{ay:?}");
    assert_eq!(f.inv.stats().queued, 0);
    f.inv.shutdown().await;
}

#[tokio::test]
async fn a_full_queue_refuses_with_a_whisk_error() {
    let f = invoker(|c| {
        c.user_memory_mb = 256;
        c.max_queue = 0;
    })
    .await;
    let hold = Arc::new(action(
        "hold",
        node("function main() { return new Promise(r => setTimeout(() => r({}), 3000)); }"),
    ));
    let inv = f.inv.clone();
    let j = job(&hold, json!({}));
    let h = tokio::spawn(async move { inv.run(j).await });
    eventually("first activation busy", || f.inv.stats().busy == 1).await;
    let act = f.inv.run(job(&echo("other"), json!({}))).await;
    assert_eq!(act.response.status_code, StatusCode::WhiskError);
    assert_eq!(
        result(&act),
        json!({"error": "Too many activations queued."})
    );
    assert_eq!(h.await.unwrap().response.status_code, StatusCode::Success);
    f.inv.shutdown().await;
}

#[tokio::test]
async fn shutdown_leaves_no_processes_or_files() {
    let f = invoker(|c| c.prewarm = true).await;
    let run_dir = f.run_dir();
    let needle = run_dir.to_string_lossy().into_owned();
    f.inv.run(job(&echo("s1"), json!({}))).await;
    f.inv
        .run(job(
            &Arc::new(action("s2", python("def main(a):\n    return a\n"))),
            json!({}),
        ))
        .await;
    assert!(!processes_mentioning(&needle).is_empty());
    f.inv.shutdown().await;
    assert_eq!(processes_mentioning(&needle), Vec::<i32>::new());
    assert_eq!(std::fs::read_dir(&run_dir).unwrap().count(), 0);
    let act = f.inv.run(job(&echo("late"), json!({}))).await;
    assert_eq!(act.response.status_code, StatusCode::WhiskError);
}

#[tokio::test]
async fn a_restart_cleans_up_after_a_crashed_invoker() {
    let dir = tempfile::Builder::new()
        .prefix("bi")
        .tempdir_in("/tmp")
        .unwrap();
    let run_dir = dir.path().join("run");
    let needle = run_dir.to_string_lossy().into_owned();
    let crashed = brisk_invoker::Invoker::start(
        config(&dir),
        Arc::new(brisk_model::RuntimeManifest::builtin()),
    )
    .await
    .unwrap();
    crashed.run(job(&echo("left"), json!({}))).await;
    assert_eq!(processes_mentioning(&needle).len(), 1);
    // Simulate a crash: the invoker disappears without shutting down.
    std::mem::forget(crashed);
    let next = brisk_invoker::Invoker::start(
        config(&dir),
        Arc::new(brisk_model::RuntimeManifest::builtin()),
    )
    .await
    .unwrap();
    eventually("leftover killed", || {
        processes_mentioning(&needle).is_empty()
    })
    .await;
    assert_eq!(std::fs::read_dir(&run_dir).unwrap().count(), 0);
    next.shutdown().await;
}

fn proc_state(pid: i32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    Some(
        stat.rsplit(')')
            .next()?
            .split_whitespace()
            .next()?
            .to_owned(),
    )
}

#[tokio::test]
async fn a_warm_container_that_died_while_idle_is_replaced() {
    let f = invoker(|_| {}).await;
    let a = echo("mortal");
    let first = f.inv.run(job(&a, json!({}))).await;
    let pid = result(&first)["pid"].as_i64().unwrap() as i32;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    eventually("process dead", || proc_state(pid).is_none_or(|s| s == "Z")).await;
    let second = f.inv.run(job(&a, json!({}))).await;
    assert_eq!(
        second.response.status_code,
        StatusCode::Success,
        "{second:?}"
    );
    assert!(second.annotations.get("initTime").is_some());
    assert_ne!(result(&second)["pid"].as_i64(), Some(pid as i64));
    f.inv.shutdown().await;
}

#[tokio::test]
async fn a_burst_for_a_concurrent_action_shares_the_first_container() {
    let f = invoker(|c| c.prewarm = false).await;
    let mut a = (*echo("burst")).clone();
    a.limits.concurrency = 8;
    let a = Arc::new(a);
    // Eight activations at once: the first starts a container, the other seven wait for its
    // init and run in it, instead of starting seven more.
    let runs = (0..8).map(|i| f.inv.run(job(&a, json!({"i": i}))));
    let records = futures_util::future::join_all(runs).await;
    let pids: std::collections::BTreeSet<i64> = records
        .iter()
        .map(|r| {
            assert_eq!(r.response.status_code, StatusCode::Success, "{r:?}");
            result(r)["pid"].as_i64().unwrap()
        })
        .collect();
    assert_eq!(pids.len(), 1, "one container for the burst: {pids:?}");
    assert_eq!(f.inv.stats().cold_starts, 1);
    f.inv.shutdown().await;
}

/// An invoker without stem cells and with `slots` CPU slots (0 = no limit).
async fn with_cpu_slots(slots: u32) -> Fixture {
    invoker(|c| {
        c.prewarm = false;
        c.cpu_slots = slots;
    })
    .await
}

#[tokio::test]
async fn a_short_action_beyond_its_cpu_slots_waits_for_its_busy_containers() {
    let f = with_cpu_slots(2).await;
    let a = echo("short");
    // Two containers (nothing measured yet, so a burst starts one per activation), then warm
    // runs that show the action is short.
    let first =
        futures_util::future::join_all((0..2).map(|i| f.inv.run(job(&a, json!({"i": i}))))).await;
    let mut pids: std::collections::BTreeSet<i64> = first
        .iter()
        .map(|r| result(r)["pid"].as_i64().unwrap())
        .collect();
    assert_eq!(pids.len(), 2);
    for i in 0..10 {
        let r = f.inv.run(job(&a, json!({"warm": i}))).await;
        assert_eq!(r.response.status_code, StatusCode::Success, "{r:?}");
    }
    // Twelve at once: two run, the others wait for those two instead of starting ten more.
    let burst = (0..12).map(|i| f.inv.run(job(&a, json!({"burst": i}))));
    for r in futures_util::future::join_all(burst).await {
        assert_eq!(r.response.status_code, StatusCode::Success, "{r:?}");
        pids.insert(result(&r)["pid"].as_i64().unwrap());
    }
    assert_eq!(
        pids.len(),
        2,
        "the burst ran in the two containers: {pids:?}"
    );
    assert_eq!(f.inv.stats().cold_starts, 2);
    f.inv.shutdown().await;
}

/// Warm runs of `a` until the pool knows it is short.
async fn measured_short(f: &Fixture, a: &Arc<brisk_model::Action>) {
    for i in 0..4 {
        let r = f.inv.run(job(a, json!({"warm": i}))).await;
        assert_eq!(r.response.status_code, StatusCode::Success, "{r:?}");
    }
}

#[tokio::test]
async fn runs_queued_behind_a_busy_container_run_one_at_a_time_with_their_own_logs() {
    let f = with_cpu_slots(1).await;
    // A run yields to the event loop in the middle, so another one that the proxy started
    // meanwhile would see it still active.
    let a = Arc::new(action(
        "serial",
        node(
            "let active = 0;
             async function main(p) {
               active++;
               const overlap = active > 1;
               console.log('run ' + p.i);
               await new Promise((r) => setImmediate(r));
               active--;
               return { pid: process.pid, overlap };
             }",
        ),
    ));
    measured_short(&f, &a).await;
    let burst = (0..16).map(|i| f.inv.run(job(&a, json!({"i": i}))));
    let records = futures_util::future::join_all(burst).await;
    let mut pids = std::collections::BTreeSet::new();
    for (i, r) in records.iter().enumerate() {
        assert_eq!(r.response.status_code, StatusCode::Success, "{r:?}");
        assert_eq!(
            result(r)["overlap"],
            json!(false),
            "run {i} overlapped another"
        );
        pids.insert(result(r)["pid"].as_i64().unwrap());
        assert_eq!(r.logs.len(), 1, "{:?}", r.logs);
        assert!(
            r.logs[0].ends_with(&format!("stdout: run {i}")),
            "{:?}",
            r.logs
        );
    }
    // One CPU slot: one container, unless runs measured slow enough on a loaded machine (a
    // woken container waits for a busy core) that the action stopped counting as short and got
    // a second one.
    assert!(pids.len() <= 2, "one CPU slot: {pids:?}");
    let s = f.inv.stats();
    assert!(s.queued_behind > 0, "{s:?}");
    assert_eq!(s.cold_starts, pids.len() as u64);
    f.inv.shutdown().await;
}

/// A run of `p.end` ends unanswered (`hang`: to its time limit; `crash`: its process exits
/// mid-run) while another is queued behind it. The queued one never started: it must run in a
/// new container instead of failing. Returns the record of the run that ended unanswered.
async fn queued_behind_a_run_that_ends_unanswered(end: &str) -> brisk_model::Activation {
    let f = with_cpu_slots(1).await;
    let mut a = action(
        "unanswered",
        node(
            "function main(p) {
               if (p.end === 'crash') setTimeout(() => process.exit(3), 100);
               return p.end ? new Promise(() => {}) : { pid: process.pid };
             }",
        ),
    );
    a.limits.timeout = 700;
    let a = Arc::new(a);
    measured_short(&f, &a).await;
    let first = f.inv.run(job(&a, json!({}))).await;
    let pid = result(&first)["pid"].clone();
    let inv = f.inv.clone();
    let ahead = {
        let a = a.clone();
        let args = json!({ "end": end });
        tokio::spawn(async move { inv.run(job(&a, args)).await })
    };
    eventually("the run ahead is in progress", || f.inv.stats().busy == 1).await;
    let queued = f.inv.run(job(&a, json!({}))).await;
    let ahead = ahead.await.unwrap();
    assert_eq!(ahead.response.status_code, StatusCode::DeveloperError);
    assert_eq!(
        queued.response.status_code,
        StatusCode::Success,
        "{queued:?}"
    );
    assert_ne!(result(&queued)["pid"], pid, "not the container that failed");
    assert!(
        queued.annotations.get("initTime").is_some(),
        "a fresh container"
    );
    let s = f.inv.stats();
    assert_eq!((s.queued_behind, s.cold_starts), (1, 2), "{s:?}");
    f.inv.shutdown().await;
    ahead
}

#[tokio::test]
async fn a_run_queued_behind_one_that_times_out_runs_in_another_container() {
    let hung = queued_behind_a_run_that_ends_unanswered("hang").await;
    assert_eq!(
        hung.annotations.get("timeout"),
        Some(&json!(true)),
        "{hung:?}"
    );
}

#[tokio::test]
async fn a_run_queued_behind_one_that_crashes_runs_in_another_container() {
    let crashed = queued_behind_a_run_that_ends_unanswered("crash").await;
    assert_eq!(
        crashed.annotations.get("timeout"),
        Some(&json!(false)),
        "{crashed:?}"
    );
    assert_eq!(
        crashed.response.result,
        Some(
            json!({"error": "The action did not produce a valid response and exited unexpectedly."})
        ),
    );
}

/// A Python run queued behind a 300 ms one starts when that one ends, and its time limit counts
/// from then: the deadline it sees (`__OW_DEADLINE`) is its full time limit after its start,
/// not what was left of it when the invoker sent it.
#[tokio::test]
async fn a_python_run_queued_behind_another_gets_its_whole_time_limit() {
    let f = with_cpu_slots(1).await;
    let mut a = action(
        "deadline",
        python(
            "import os, time
def main(p):
    if p.get('slow'):
        time.sleep(0.3)
    return {'deadline': int(os.environ['__OW_DEADLINE']), 'start': int(time.time() * 1000), 'pid': os.getpid()}
",
        ),
    );
    a.limits.timeout = 10_000;
    let a = Arc::new(a);
    measured_short(&f, &a).await;
    // On a loaded machine the warm runs may measure too slow for the action to count as short,
    // and the second run then gets a container of its own: try again.
    for _ in 0..3 {
        let before = f.inv.stats().queued_behind;
        let inv = f.inv.clone();
        let ahead = {
            let a = a.clone();
            tokio::spawn(async move { inv.run(job(&a, json!({"slow": true}))).await })
        };
        eventually("the run ahead is in progress", || f.inv.stats().busy == 1).await;
        let queued = f.inv.run(job(&a, json!({}))).await;
        let ahead = ahead.await.unwrap();
        assert_eq!(
            queued.response.status_code,
            StatusCode::Success,
            "{queued:?}"
        );
        if f.inv.stats().queued_behind == before {
            continue;
        }
        assert_eq!(
            result(&queued)["pid"],
            result(&ahead)["pid"],
            "one container"
        );
        let r = result(&queued);
        let left = r["deadline"].as_i64().unwrap() - r["start"].as_i64().unwrap();
        assert!(
            (9_900..=10_100).contains(&left),
            "the queued run had {left} ms of its 10 s left when it started"
        );
        f.inv.shutdown().await;
        return;
    }
    panic!("no run was queued behind another: {:?}", f.inv.stats());
}

#[tokio::test]
async fn a_run_queued_behind_a_failing_one_finishes_before_the_container_goes() {
    let f = with_cpu_slots(1).await;
    let a = Arc::new(action(
        "flaky",
        node(
            "async function main(p) {
               if (p.wait) await new Promise((r) => setTimeout(r, p.wait));
               // Not a dictionary: a developer error, which retires the container.
               return p.fail ? 42 : { pid: process.pid };
             }",
        ),
    ));
    measured_short(&f, &a).await;
    let pid = result(&f.inv.run(job(&a, json!({}))).await)["pid"].clone();
    let inv = f.inv.clone();
    let failing = {
        let a = a.clone();
        tokio::spawn(async move { inv.run(job(&a, json!({"wait": 100, "fail": true}))).await })
    };
    eventually("the failing run is in progress", || f.inv.stats().busy == 1).await;
    // Queued behind it: started by the proxy as soon as the failing run was answered, so the
    // container (which a developer error retires) must outlive it.
    let queued = f.inv.run(job(&a, json!({"wait": 200}))).await;
    let failed = failing.await.unwrap();
    assert_eq!(
        failed.response.status_code,
        StatusCode::DeveloperError,
        "{failed:?}"
    );
    assert_eq!(
        queued.response.status_code,
        StatusCode::Success,
        "{queued:?}"
    );
    assert_eq!(result(&queued)["pid"], pid, "same container");
    assert_eq!(f.inv.stats().queued_behind, 1);
    // Then the container goes, and the next run starts a new one.
    eventually("retired container removed", || {
        f.inv.stats().live_containers == 0
    })
    .await;
    let next = f.inv.run(job(&a, json!({}))).await;
    assert_ne!(result(&next)["pid"], pid);
    assert_eq!(f.inv.stats().cold_starts, 2);
    f.inv.shutdown().await;
}

#[tokio::test]
async fn without_cpu_slots_a_burst_of_a_short_action_gets_a_container_each() {
    let f = with_cpu_slots(0).await;
    let a = echo("unlimited");
    for i in 0..3 {
        f.inv.run(job(&a, json!({"warm": i}))).await;
    }
    let burst = (0..6).map(|i| f.inv.run(job(&a, json!({"burst": i}))));
    let records = futures_util::future::join_all(burst).await;
    assert!(
        records
            .iter()
            .all(|r| r.response.status_code == StatusCode::Success)
    );
    // One warm container, so five of the six started their own.
    assert_eq!(f.inv.stats().cold_starts, 6);
    f.inv.shutdown().await;
}
