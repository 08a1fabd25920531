//! The cgroup side: memory, pids and the freezer.

mod common;

use std::time::Duration;

use brisk_invoker::Container;
use common::*;

#[tokio::test]
async fn memory_hog_is_oom_killed_and_reported() {
    let f = fixture("oom");
    let o = f
        .run_with_memory(
            "hog",
            PYTHON,
            r#"
import sys
chunks = []
for i in range(1024):
    chunks.append(bytearray(1 << 20))
    if i % 16 == 0:
        print('allocated=%d' % i, flush=True)
print('survived')
"#,
            64,
        )
        .await;
    assert!(!o.stdout.contains("survived"), "{o:#?}");
    assert_eq!(o.code, Some(128 + 9), "killed by SIGKILL: {o:#?}");
    assert!(o.oom, "the OOM kill is reported: {o:#?}");
    // A well-behaved neighbour is unaffected.
    let ok = f.run_with_memory("fine", PYTHON, "print('x=1')", 64).await;
    assert_eq!(ok.get("x"), "1");
    assert!(!ok.oom);
    f.factory.shutdown().await;
}

#[tokio::test]
async fn fork_bomb_hits_pids_limit() {
    let mut config = config(&format!("t{}-pids", std::process::id()));
    config.pids_max = 32;
    let f = Fixture {
        factory: brisk_sandbox::SandboxFactory::new(config).unwrap(),
        tmp: tempfile::tempdir().unwrap(),
        instance: String::new(),
    };
    let o = f
        .run(
            "bomb",
            PYTHON,
            r#"
import errno, os, time
children = 0
try:
    for _ in range(10000):
        if os.fork() == 0:
            time.sleep(60)
            os._exit(0)
        children += 1
    print('result=unbounded', flush=True)
except OSError as e:
    print('result=%s after %d' % (errno.errorcode[e.errno], children), flush=True)
os._exit(0)
"#,
        )
        .await;
    // The runtime exiting ends the namespace: the sleeping children go with it.
    o.ok();
    let r = o.get("result");
    assert!(r.starts_with("EAGAIN after "), "{r}");
    let n: u32 = r.rsplit(' ').next().unwrap().parse().unwrap();
    // The launcher, init and the runtime count against the limit too.
    assert!(n <= 32, "{n} children");
    f.factory.shutdown().await;
}

/// Total user+system CPU ticks of the given host pids.
fn cpu_ticks(pids: &[i32]) -> u64 {
    pids.iter()
        .filter_map(|p| std::fs::read_to_string(format!("/proc/{p}/stat")).ok())
        .map(|s| {
            let after = &s[s.rfind(')').unwrap() + 2..];
            let f: Vec<&str> = after.split_whitespace().collect();
            f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
        })
        .sum()
}

#[tokio::test]
async fn paused_container_uses_no_cpu_and_resumes() {
    let f = fixture("freeze");
    let (c, out) = f
        .start(
            "busy",
            PYTHON,
            r#"
import sys, time
n = 0
last = time.monotonic()
while True:
    n += 1
    if time.monotonic() - last > 0.01:
        print(n, flush=True)
        last = time.monotonic()
"#,
            128,
        )
        .await;
    let lines = std::sync::Arc::new(parking_lot::Mutex::new(Vec::<u64>::new()));
    let sink = lines.clone();
    tokio::spawn(async move {
        use tokio::io::AsyncBufReadExt;
        let mut r = tokio::io::BufReader::new(out.stdout).lines();
        while let Ok(Some(l)) = r.next_line().await {
            sink.lock().push(l.trim().parse().unwrap_or(0));
        }
    });
    // Running: the counter advances.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(lines.lock().len() > 3, "busy loop runs");
    c.pause().await.unwrap();
    let pids = c.pids();
    assert!(!pids.is_empty());
    tokio::time::sleep(Duration::from_millis(50)).await;
    let (ticks, seen) = (cpu_ticks(&pids), lines.lock().len());
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(cpu_ticks(&pids), ticks, "paused container used CPU");
    assert_eq!(lines.lock().len(), seen, "paused counter advanced");
    c.resume().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(lines.lock().len() > seen, "counter advances after resume");
    assert!(cpu_ticks(&pids) > ticks);
    // Pausing twice, resuming twice and destroying a paused container all work.
    c.pause().await.unwrap();
    c.pause().await.unwrap();
    c.destroy().await;
    assert!(
        pids.iter()
            .all(|p| !std::path::Path::new(&format!("/proc/{p}")).exists())
    );
    f.factory.shutdown().await;
}
