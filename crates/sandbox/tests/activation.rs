//! Socket activation: the proxy's socket is bound on the host and given to the sandboxed
//! runtime as stdin. Only the runtime holds it (the launcher and init close their copies), so a
//! runtime that dies or lets go of it fails the invoker's readiness probe at once; and the
//! sandbox cannot reach the host directory it lives in.

mod common;

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::time::Duration;

use brisk_invoker::{Container, Error, ProxyClient};
use common::*;

fn far() -> tokio::time::Instant {
    tokio::time::Instant::now() + Duration::from_secs(60)
}

/// What a process's stdin is: `socket:[inode]`, `null` (the null device, wherever it is
/// mounted), or the link's target.
fn fd0(pid: i32) -> String {
    let link = format!("/proc/{pid}/fd/0");
    let null = std::fs::metadata("/dev/null").map(|m| m.rdev()).ok();
    match std::fs::metadata(&link) {
        Ok(m) if m.file_type().is_char_device() && Some(m.rdev()) == null => "null".into(),
        _ => std::fs::read_link(&link)
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default(),
    }
}

/// The descriptors of `pid` that are sockets.
fn sockets(pid: i32) -> Vec<String> {
    let mut fds: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.flatten()
                .filter(|e| {
                    std::fs::read_link(e.path())
                        .is_ok_and(|l| l.to_string_lossy().starts_with("socket:"))
                })
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    fds.sort();
    fds
}

fn comm(pid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .unwrap_or_default()
        .trim()
        .to_owned()
}

#[tokio::test]
async fn only_the_runtime_holds_the_listening_socket() {
    let f = fixture("holders");
    let (c, _out) = f.start("a", "/bin/sh", "exec sleep 60", 64).await;
    // Launcher, init and the runtime (once it is `sleep`).
    let mut pids = Vec::new();
    for _ in 0..2000 {
        pids = c.pids();
        if pids.len() == 3 && pids.iter().any(|p| comm(*p) == "sleep") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Every process's stdin is /dev/null; the runtime alone holds the socket, on descriptor 3.
    let seen: Vec<(String, String, Vec<String>)> = pids
        .iter()
        .map(|p| (comm(*p), fd0(*p), sockets(*p)))
        .collect();
    assert_eq!(seen.len(), 3, "{seen:?}");
    for (name, stdin, sockets) in &seen {
        assert_eq!(stdin, "null", "{seen:?}");
        if name == "sleep" {
            assert_eq!(sockets, &["3".to_owned()], "{seen:?}");
        } else {
            assert!(sockets.is_empty(), "{seen:?}");
        }
    }
    c.destroy().await;
    f.factory.shutdown().await;
}

#[tokio::test]
async fn a_runtime_that_exits_at_once_fails_the_probe_at_once() {
    let f = fixture("exits");
    let (c, _out) = f.start("a", "/bin/sh", "exit 3", 64).await;
    let r = ProxyClient::new(c.socket_path(), "a")
        .wait_ready(far(), || c.has_exited())
        .await;
    assert!(matches!(r, Err(Error::ExitedBeforeReady(_))), "{r:?}");
    c.destroy().await;
    f.factory.shutdown().await;
}

/// The runtime closes its socket and lives on: no other process of the sandbox keeps the socket
/// listening, so the probe fails rather than wait for the deadline.
#[tokio::test]
async fn a_runtime_that_lets_go_of_its_socket_is_not_waited_for() {
    let f = fixture("letgo");
    let (c, _out) = f
        .start("a", "/bin/sh", "exec 3<&-\nexec sleep 60", 64)
        .await;
    let r = ProxyClient::new(c.socket_path(), "a")
        .wait_ready(far(), || false)
        .await;
    assert!(matches!(r, Err(Error::ExitedBeforeReady(_))), "{r:?}");
    assert!(!c.has_exited());
    c.destroy().await;
    f.factory.shutdown().await;
}

/// The socket lives in the host's private directory; inside, that path is the sandbox's own
/// tmpfs, so neither its own socket nor another container's is there to connect to.
#[tokio::test]
async fn the_sockets_are_out_of_the_sandboxs_sight() {
    let f = fixture("sight");
    let (other, _out) = f.start("other", "/bin/sh", "exec sleep 60", 64).await;
    assert!(other.socket_path().exists());
    let script = format!(
        r#"
import os, socket
for i, p in enumerate(['{own}', '{other}']):
    s = socket.socket(socket.AF_UNIX)
    try:
        s.connect(p)
        print('connect%d=yes' % i)
    except OSError as e:
        print('connect%d=no %s' % (i, type(e).__name__))
print('stdin=%s' % os.readlink('/proc/self/fd/0'))
print('listener=%s' % os.readlink('/proc/self/fd/3'))
"#,
        own = f.run_dir().join("c1/proxy.sock").display(),
        other = other.socket_path().display(),
    );
    let o = f.run("c1", PYTHON, &script).await;
    o.ok();
    assert_eq!(o.get("connect0"), "no FileNotFoundError", "{o:#?}");
    assert_eq!(o.get("connect1"), "no FileNotFoundError", "{o:#?}");
    assert_eq!(o.get("stdin"), "/dev/null", "{o:#?}");
    assert!(o.get("listener").starts_with("socket:"), "{o:#?}");
    other.destroy().await;
    f.factory.shutdown().await;
}
