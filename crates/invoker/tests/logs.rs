//! Log collection through the real proxies: timestamps, order, attribution, limits.

mod common;

use std::sync::Arc;

use brisk_model::StatusCode;
use common::*;
use serde_json::json;

fn assert_stamped(line: &str) {
    let b = line.as_bytes();
    let ok = line.len() > 31
        && b[4] == b'-'
        && b[10] == b'T'
        && b[19] == b'.'
        && b[29] == b'Z'
        && b[20..29].iter().all(u8::is_ascii_digit)
        && (line[30..].starts_with(" stdout: ") || line[30..].starts_with(" stderr: "));
    assert!(ok, "not an OpenWhisk log line: {line:?}");
}

fn texts(logs: &[String]) -> Vec<&str> {
    logs.iter().map(|l| &l[31..]).collect()
}

#[tokio::test]
async fn logs_are_stamped_in_order_and_per_activation() {
    let f = invoker(|_| {}).await;
    let node_a = Arc::new(action(
        "lognode",
        node(
            "console.log('loading');\nfunction main(p) { for (let i = 0; i < 5; i++) console.log('line ' + i); console.error('oops'); require('child_process').execSync('echo from child', {stdio: 'inherit'}); return {}; }",
        ),
    ));
    let act = f.inv.run(job(&node_a, json!({}))).await;
    assert_eq!(act.response.status_code, StatusCode::Success, "{act:?}");
    act.logs.iter().for_each(|l| assert_stamped(l));
    let t = texts(&act.logs);
    let stdout: Vec<&str> = t
        .iter()
        .filter(|l| l.starts_with("stdout"))
        .copied()
        .collect();
    assert_eq!(
        stdout,
        [
            "stdout: loading",
            "stdout: line 0",
            "stdout: line 1",
            "stdout: line 2",
            "stdout: line 3",
            "stdout: line 4",
            "stdout: from child"
        ]
    );
    assert!(t.contains(&"stderr: oops"), "{t:?}");
    assert!(
        act.logs.windows(2).all(|w| w[0][..30] <= w[1][..30]),
        "timestamps ascend"
    );

    // The second (warm) activation gets only its own lines.
    let act2 = f.inv.run(job(&node_a, json!({}))).await;
    assert!(!texts(&act2.logs).contains(&"stdout: loading"));
    assert_eq!(
        texts(&act2.logs)
            .iter()
            .filter(|l| l.starts_with("stdout: line"))
            .count(),
        5
    );

    let py = Arc::new(action(
        "logpy",
        python(
            "import sys\ndef main(args):\n    print('hello from python')\n    print('to stderr', file=sys.stderr)\n    return {}\n",
        ),
    ));
    let act = f.inv.run(job(&py, json!({}))).await;
    let t = texts(&act.logs);
    assert!(
        t.contains(&"stdout: hello from python") && t.contains(&"stderr: to stderr"),
        "{t:?}"
    );

    let sh = Arc::new(action(
        "logsh",
        native("#!/bin/sh\necho one\necho two >&2\necho '{\"ok\": true}'\n"),
    ));
    let act = f.inv.run(job(&sh, json!({}))).await;
    assert_eq!(result(&act), json!({"ok": true}));
    let t = texts(&act.logs);
    assert!(
        t.contains(&"stdout: one") && t.contains(&"stderr: two"),
        "{t:?}"
    );
    f.inv.shutdown().await;
}

#[tokio::test]
async fn logs_beyond_the_limit_are_truncated_with_a_marker() {
    let f = invoker(|_| {}).await;
    let mut a = action(
        "chatty",
        node(
            "function main() { const s = 'y'.repeat(999); for (let i = 0; i < 2000; i++) console.log(s); return {done: true}; }",
        ),
    );
    a.limits.logs = 1;
    let act = f.inv.run(job(&Arc::new(a), json!({}))).await;
    assert_eq!(result(&act), json!({"done": true}));
    let last = act.logs.last().unwrap();
    assert!(
        last.ends_with("stderr: Logs were truncated because the total bytes size exceeds the limit of 1048576 bytes."),
        "{last}"
    );
    let kept: usize = act.logs[..act.logs.len() - 1]
        .iter()
        .map(|l| l.len() - 31 - 8)
        .sum();
    assert!(
        kept <= 1048576 && act.logs.len() > 1000,
        "kept {kept} bytes in {} lines",
        act.logs.len()
    );

    let mut quiet = action(
        "quiet",
        node("function main() { console.log('x'); return {}; }"),
    );
    quiet.limits.logs = 0;
    let act = f.inv.run(job(&Arc::new(quiet), json!({}))).await;
    assert!(act.logs.is_empty(), "{:?}", act.logs);
    f.inv.shutdown().await;
}

#[tokio::test]
async fn concurrent_activations_in_one_container_keep_their_own_logs() {
    let f = invoker(|_| {}).await;
    let mut a = action(
        "conc",
        node(
            "async function main(p) { console.log('start ' + p.n); await new Promise(r => setTimeout(r, 30 + (p.n * 37) % 50)); console.error('middle ' + p.n); await new Promise(r => setTimeout(r, 10)); console.log('end ' + p.n); return {n: p.n}; }",
        ),
    );
    a.limits.concurrency = 10;
    let a = Arc::new(a);
    // A first run warms the container so that the rest share it.
    let first = f.inv.run(job(&a, json!({"n": 0}))).await;
    assert_eq!(first.response.status_code, StatusCode::Success, "{first:?}");
    let mut handles = Vec::new();
    for n in 1..=8 {
        let inv = f.inv.clone();
        let j = job(&a, json!({"n": n}));
        handles.push(tokio::spawn(async move { (n, inv.run(j).await) }));
    }
    for h in handles {
        let (n, act) = h.await.unwrap();
        assert_eq!(result(&act), json!({"n": n}));
        let t = texts(&act.logs);
        assert_eq!(
            t,
            [
                format!("stdout: start {n}"),
                format!("stderr: middle {n}"),
                format!("stdout: end {n}")
            ],
            "activation {n}"
        );
    }
    assert!(
        f.inv.stats().cold_starts < 9,
        "activations shared containers"
    );
    f.inv.shutdown().await;
}
