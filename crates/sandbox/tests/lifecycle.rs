//! Nothing outlives a sandbox: not after destroy, not after shutdown, not after a crash of the
//! invoker (the next start cleans up).

mod common;

use std::path::PathBuf;
use std::time::Duration;

use brisk_invoker::{Container, ContainerFactory};
use brisk_sandbox::SandboxFactory;
use common::*;

/// A script that leaves a grandchild behind and then sleeps.
const LINGER: &str = "sleep 300 & sleep 300";

/// Pids that still run (zombies only hold their pid until the parent reaps them).
fn alive(pids: &[i32]) -> Vec<i32> {
    pids.iter()
        .copied()
        .filter(|p| state(*p).is_some_and(|s| s != "Z"))
        .collect()
}

fn state(pid: i32) -> Option<String> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    s[s.rfind(')')? + 2..]
        .split_whitespace()
        .next()
        .map(str::to_owned)
}

fn instance_cgroups(f: &SandboxFactory, instance: &str) -> Vec<PathBuf> {
    f.hierarchy()
        .instance_dirs(instance)
        .into_iter()
        .flat_map(|d| std::fs::read_dir(d).into_iter().flatten().flatten())
        .filter(|e| e.file_name() != brisk_sandbox::FREEZER_ANCHOR)
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect()
}

async fn wait_for_pids(c: &brisk_sandbox::SandboxContainer, n: usize) -> Vec<i32> {
    for _ in 0..500 {
        let pids = c.pids();
        if pids.len() >= n {
            return pids;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    panic!("sandbox did not start {n} processes: {:?}", c.pids());
}

#[tokio::test]
async fn destroy_and_shutdown_leave_nothing() {
    let f = fixture("destroy");
    let (a, _oa) = f.start("a", "/bin/sh", LINGER, 64).await;
    let (b, _ob) = f.start("b", "/bin/sh", LINGER, 64).await;
    // launcher, init, sh, two sleeps
    let pids_a = wait_for_pids(&a, 5).await;
    let pids_b = wait_for_pids(&b, 5).await;
    assert_eq!(
        instance_cgroups(&f.factory, &f.instance).len(),
        2 * cgroups_per_container(&f)
    );

    a.destroy().await;
    a.destroy().await; // idempotent
    assert_eq!(alive(&pids_a), Vec::<i32>::new());
    assert!(a.cgroup().is_removed());
    assert!(!f.run_dir().join("a").exists());
    assert!(b.pids().len() >= 5, "the neighbour is untouched");

    // Shutdown kills what the pool did not destroy.
    f.factory.shutdown().await;
    assert_eq!(alive(&pids_b), Vec::<i32>::new());
    assert!(instance_cgroups(&f.factory, &f.instance).is_empty());
    for d in f.factory.hierarchy().instance_dirs(&f.instance) {
        assert!(!d.exists(), "{} left behind", d.display());
    }
    assert!(!f.factory.config().state_dir.exists());
    assert_eq!(host_mounts_under(f.tmp.path()), Vec::<String>::new());
    // The pool still destroys its containers after shutdown; that reaps the last launcher.
    b.destroy().await;
    assert_eq!(
        host_mounts_under(&f.factory.config().state_dir),
        Vec::<String>::new()
    );
    // Not even zombies remain.
    for p in pids_a.iter().chain(&pids_b) {
        assert_eq!(state(*p), None, "pid {p}");
    }
}

fn cgroups_per_container(f: &Fixture) -> usize {
    f.factory.hierarchy().instance_dirs(&f.instance).len()
}

#[tokio::test]
async fn next_start_cleans_up_after_a_crash() {
    let f = fixture("crash");
    let (c, out) = f.start("victim", "/bin/sh", LINGER, 64).await;
    let pids = wait_for_pids(&c, 5).await;
    // A crash: the invoker vanishes without destroying anything.
    std::mem::forget(c);
    std::mem::forget(out);
    let Fixture {
        factory,
        tmp,
        instance,
    } = f;
    std::mem::forget(factory);
    assert_eq!(alive(&pids).len(), pids.len());

    let restarted = SandboxFactory::new(config(&instance)).unwrap();
    restarted.cleanup_leftovers(&tmp.path().join("run")).await;
    for _ in 0..200 {
        if alive(&pids).is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(alive(&pids), Vec::<i32>::new(), "leftover processes killed");
    assert!(instance_cgroups(&restarted, &instance).is_empty());
    assert!(!tmp.path().join("run/victim").exists());
    // The restarted factory works.
    let f = Fixture {
        factory: restarted,
        tmp,
        instance,
    };
    assert_eq!(f.run("after", "/bin/sh", "echo x=1").await.get("x"), "1");
    f.factory.shutdown().await;
}

/// A container knows its launcher exited without asking the kernel on every run: the flag is
/// set as the launcher is reaped, and `wait` reports the runtime's exit status.
#[tokio::test]
async fn an_exited_container_is_seen_as_exited() {
    let f = fixture("exited");
    let (c, _out) = f.start("a", "/bin/sh", "sleep 0.3; exit 3", 64).await;
    assert!(!c.has_exited(), "exited while its runtime still sleeps");
    assert_eq!(c.wait().await, Some(3));
    assert!(c.has_exited());
    c.destroy().await;
    assert!(c.cgroup().is_removed());
    f.factory.shutdown().await;
}

/// Dropping a container without destroying it still kills its launcher (and with it the
/// sandbox's pid namespace).
#[tokio::test]
async fn a_dropped_container_does_not_outlive_its_handle() {
    let f = fixture("dropped");
    let (c, _out) = f.start("a", "/bin/sh", LINGER, 64).await;
    let pids = wait_for_pids(&c, 5).await;
    drop(c);
    for _ in 0..500 {
        if alive(&pids).is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(alive(&pids), Vec::<i32>::new());
    f.factory.shutdown().await;
}
