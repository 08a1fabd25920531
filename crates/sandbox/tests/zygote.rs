//! Node.js and Python containers forked from a runtime zygote (`zygote.rs`, `zygotes.rs`): each
//! is a sandbox as isolated as a launched one, with nothing of its own shared with the zygote or its
//! siblings, and the factory watches it like a launched one.
#![allow(
    unsafe_code,
    reason = "kcmp has no safe wrapper: the test compares open files across processes"
)]

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use brisk_invoker::{Container, ContainerSpec, ProxyClient};
use brisk_sandbox::{SandboxContainer, SandboxFactory};
use common::*;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

const NODE: &str = "/usr/bin/node";
const PYTHON: &str = "/usr/bin/python3";

/// The crate's shared object, built beside this test binary (`target/<profile>/deps`).
fn zygote_lib() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.with_file_name("libbrisk_sandbox.so")
}

fn zygote_fixture(test: &str) -> Fixture {
    let instance = format!("t{}-{test}", std::process::id());
    let mut config = config(&instance);
    let lib = zygote_lib();
    assert!(lib.is_file(), "{} is built with the crate", lib.display());
    config.zygote_lib = Some(lib);
    Fixture {
        factory: SandboxFactory::new(config).expect("create sandbox factory"),
        tmp: tempfile::tempdir().expect("tempdir"),
        instance,
    }
}

fn node_spec(f: &Fixture, name: &str) -> ContainerSpec {
    ContainerSpec {
        name: name.to_owned(),
        dir: f.run_dir().join(name),
        kind: "nodejs:20".into(),
        interpreter: PathBuf::from(NODE),
        args: Vec::new(),
        proxy: Path::new(env!("CARGO_MANIFEST_DIR")).join("../invoker/runtimes/node/proxy.js"),
        memory_mb: 256,
        allow_concurrent: false,
        api_host: "http://127.0.0.1:3233".into(),
        network: f.factory.config().network,
    }
}

fn python_spec(f: &Fixture, name: &str) -> ContainerSpec {
    ContainerSpec {
        kind: "python:3.11".into(),
        interpreter: PathBuf::from(PYTHON),
        args: vec!["-I".into(), "-S".into()],
        proxy: Path::new(env!("CARGO_MANIFEST_DIR")).join("../invoker/runtimes/python/proxy.py"),
        ..node_spec(f, name)
    }
}

/// A Node.js container whose proxy is ready (not initialized yet), and its output.
async fn ready(f: &Fixture, name: &str) -> (SandboxContainer, Output) {
    ready_with(f, &node_spec(f, name)).await
}

/// [`ready`] for a container of `spec`.
async fn ready_with(f: &Fixture, spec: &ContainerSpec) -> (SandboxContainer, Output) {
    let (c, out) = f.factory.create_sandbox(spec).await.unwrap();
    let output = read_all(out);
    ProxyClient::new(c.socket_path(), c.name())
        .wait_ready(
            tokio::time::Instant::now() + Duration::from_secs(20),
            || c.has_exited(),
        )
        .await
        .expect("forked proxy ready");
    (c, output)
}

/// A ready Node.js container running `code`.
async fn start(f: &Fixture, name: &str, code: &str) -> SandboxContainer {
    start_with(f, &node_spec(f, name), code).await
}

/// A ready container of `spec` running `code`.
async fn start_with(f: &Fixture, spec: &ContainerSpec, code: &str) -> SandboxContainer {
    let name = spec.name.as_str();
    let (c, _output) = ready_with(f, spec).await;
    let (status, body) = init(c.socket_path(), name, code).await;
    assert_eq!(status, 200, "init: {body}");
    c
}

async fn run(c: &SandboxContainer) -> Value {
    let run = json!({
        "value": {}, "namespace": "guest", "action_name": "a", "action_version": "0.0.1",
        "activation_id": "0123456789abcdef0123456789abcdef", "transaction_id": "t",
        "deadline": "0",
    });
    let (status, body) = post(c.socket_path(), "/run", &run).await;
    assert_eq!(status, 200, "run: {body}");
    body
}

fn status_field(pid: i32, field: &str) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .map(|v| v.trim().to_owned())
        .unwrap_or_default()
}

fn ppid(pid: i32) -> i32 {
    status_field(pid, "PPid").parse().unwrap_or(0)
}

/// The container's runtime process (the one running as the sandbox's uid).
fn runtime_pid(c: &SandboxContainer) -> i32 {
    c.pids()
        .into_iter()
        .find(|&p| status_field(p, "Uid").starts_with("65534"))
        .expect("a runtime process in the container's cgroup")
}

/// The container's process whose parent is outside the container: the zygote's fork.
fn fork_of(c: &SandboxContainer) -> i32 {
    let pids = c.pids();
    pids.iter()
        .copied()
        .find(|&p| !pids.contains(&ppid(p)))
        .expect("the zygote's fork")
}

/// The zygote a container was forked from.
fn zygote_of(c: &SandboxContainer) -> i32 {
    ppid(fork_of(c))
}

/// The zygote's fork is the sandbox's init itself (pid 1 of a pid namespace of its own, with
/// no launcher above it), the container holds just init and the runtime, and the zygote's
/// later children are back in its own pid namespace.
fn forked_as_init(cs: &[SandboxContainer], zygote: i32) {
    for c in cs {
        let init = fork_of(c);
        let nspid = status_field(init, "NSpid");
        assert_eq!(
            nspid.split_whitespace().last(),
            Some("1"),
            "the fork is pid 1 of its namespace: NSpid {nspid}"
        );
        assert_ne!(ns(init, "pid"), ns(zygote, "pid"));
        assert_eq!(c.pids().len(), 2, "init and the runtime: {:?}", c.pids());
        assert_eq!(ppid(runtime_pid(c)), init);
    }
    assert_eq!(ns(zygote, "pid_for_children"), ns(zygote, "pid"));
}

fn ns(pid: i32, kind: &str) -> String {
    std::fs::read_link(format!("/proc/{pid}/ns/{kind}"))
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

fn fds(pid: i32) -> Vec<(i32, String)> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let fd = e.file_name().to_str()?.parse().ok()?;
            let target = std::fs::read_link(e.path()).ok()?;
            Some((fd, target.to_string_lossy().into_owned()))
        })
        .collect()
}

/// Whether descriptor `a` of `pa` and `b` of `pb` are the same open file (kcmp).
fn same_file(pa: i32, a: i32, pb: i32, b: i32) -> bool {
    const KCMP_FILE: i32 = 0;
    // SAFETY: kcmp takes pids, a type and descriptor numbers; no pointers.
    unsafe { libc::syscall(libc::SYS_kcmp, pa, pb, KCMP_FILE, a, b) == 0 }
}

/// Destroys `cs` and shuts the factory down, which stops (and reaps) `zygote`.
async fn destroy_and_shut_down(f: &Fixture, cs: &[SandboxContainer], zygote: i32) {
    for c in cs {
        c.destroy().await;
    }
    f.factory.shutdown().await;
    assert!(
        !Path::new(&format!("/proc/{zygote}")).exists(),
        "shutdown stops (and reaps) the zygote"
    );
}

/// Runs each of `cs` (forks of `zygote`, running a report action) and checks what every fork
/// must have of its own: its pid as the kernel sees it (not the zygote's cached one), the
/// sandbox's uid, its container's directory as working directory and `HOME` (the container's
/// environment, not the zygote's), the listening socket off stdin, and random numbers no
/// sibling draws. Returns the reports.
async fn forked_reports(cs: &[SandboxContainer], zygote: i32) -> Vec<Value> {
    let mut reports = Vec::new();
    let mut randoms = Vec::new();
    for c in cs {
        assert_eq!(zygote_of(c), zygote, "one zygote forks every container");
        let r = run(c).await;
        assert_eq!(r["pid"], r["self"], "{r}");
        assert_eq!(r["uid"], 65534, "{r}");
        let dir = c.dir().to_string_lossy().into_owned();
        assert_eq!(r["cwd"], dir.as_str(), "{r}");
        assert_eq!(r["home"], dir.as_str(), "the container's environment: {r}");
        assert_ne!(r["listen"], "0", "the socket is not stdin: {r}");
        // Field 41 of stat, the scheduling policy: 3 is SCHED_BATCH (brisk_invoker::sched).
        let stat = r["stat"].as_str().unwrap_or_default();
        let policy = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.split_whitespace().nth(38));
        assert_eq!(policy, Some(Some("3")), "forks run under SCHED_BATCH: {r}");
        randoms.extend(
            r["random"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.to_string()),
        );
        reports.push(r);
    }
    let distinct: std::collections::HashSet<_> = randoms.iter().collect();
    assert_eq!(
        distinct.len(),
        randoms.len(),
        "every fork draws its own random numbers: {randoms:?}"
    );
    reports
}

const REPORT: &str = "function main() { \
    const fs = require('fs'); \
    return { pid: process.pid, self: Number(fs.readlinkSync('/proc/self')), \
             cwd: process.cwd(), uid: process.getuid(), \
             random: [Math.random(), Math.random(), Math.random()], \
             home: process.env.HOME, listen: process.env.BRISK_LISTEN_FD, \
             stat: fs.readFileSync('/proc/self/stat', 'utf8') }; }";

#[tokio::test]
async fn node_containers_are_forks_of_one_zygote() {
    let f = zygote_fixture("forks");
    let mut cs = Vec::new();
    for i in 0..3 {
        cs.push(start(&f, &format!("z{i}"), REPORT).await);
    }
    let zygote = zygote_of(&cs[0]);
    assert!(zygote > 1);
    let cmdline = std::fs::read_to_string(format!("/proc/{zygote}/cmdline")).unwrap();
    assert!(cmdline.contains("--single-threaded"), "{cmdline:?}");
    assert!(cmdline.contains("proxy.js"), "{cmdline:?}");
    forked_as_init(&cs, zygote);
    forked_reports(&cs, zygote).await;
    destroy_and_shut_down(&f, &cs, zygote).await;
}

#[tokio::test]
async fn forked_runtimes_are_isolated_and_share_no_open_file() {
    let f = zygote_fixture("isolated");
    for (a, b) in [
        (start(&f, "za", REPORT).await, start(&f, "zb", REPORT).await),
        (
            start_with(&f, &python_spec(&f, "zpa"), PY_REPORT).await,
            start_with(&f, &python_spec(&f, "zpb"), PY_REPORT).await,
        ),
    ] {
        isolated_from_each_other(&a, &b);
        a.destroy().await;
        b.destroy().await;
    }
    f.factory.shutdown().await;
}

/// Two forked runtimes: each has no privileges, seccomp and namespaces of its own, and no open
/// file of one is its sibling's or the zygote's (but `/dev/null`).
fn isolated_from_each_other(a: &SandboxContainer, b: &SandboxContainer) {
    let (ra, rb) = (runtime_pid(a), runtime_pid(b));
    let zygote = zygote_of(a);
    assert_eq!(zygote_of(b), zygote);
    for pid in [ra, rb] {
        assert_eq!(status_field(pid, "CapEff"), "0000000000000000");
        assert_eq!(status_field(pid, "CapPrm"), "0000000000000000");
        assert_eq!(status_field(pid, "CapBnd"), "0000000000000000");
        assert_eq!(status_field(pid, "NoNewPrivs"), "1");
        assert_eq!(status_field(pid, "Seccomp"), "2");
        for kind in ["mnt", "pid", "net", "ipc", "uts"] {
            assert_ne!(
                ns(pid, kind),
                ns(zygote, kind),
                "{kind} namespace of its own"
            );
        }
    }
    for kind in ["mnt", "pid", "net", "ipc", "uts"] {
        assert_ne!(ns(ra, kind), ns(rb, kind), "{kind} namespaces differ");
    }
    // No open file of a runtime is one of its sibling's or the zygote's, but /dev/null.
    for (fa, ta) in fds(ra) {
        if ta == "/dev/null" {
            continue;
        }
        for (other, fds) in [(rb, fds(rb)), (zygote, fds(zygote))] {
            for (fo, to) in fds {
                assert!(
                    !same_file(ra, fa, other, fo),
                    "fd {fa} ({ta}) of one runtime is fd {fo} ({to}) of process {other}"
                );
            }
        }
    }
}

#[tokio::test]
async fn a_forked_runtime_reports_its_exit_status() {
    let f = zygote_fixture("exit");
    let (c, _output) = ready(&f, "zx").await;
    assert!(!c.has_exited());
    // The action exits the runtime while it loads: the connection ends without an answer.
    let answer = init_unanswered(&c, "process.exit(3)").await;
    assert!(answer.is_empty(), "{}", String::from_utf8_lossy(&answer));
    let code = tokio::time::timeout(Duration::from_secs(10), c.wait())
        .await
        .expect("the container ends");
    assert_eq!(code, Some(3));
    assert!(c.has_exited());
    c.destroy().await;
    f.factory.shutdown().await;
}

#[tokio::test]
async fn a_dead_zygote_is_replaced() {
    let f = zygote_fixture("respawn");
    let a = start(&f, "zr1", REPORT).await;
    let first = zygote_of(&a);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(first),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    // Its containers live on: they are sandboxes of their own.
    assert_eq!(run(&a).await["uid"], 65534);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let b = start(&f, "zr2", REPORT).await;
    let second = zygote_of(&b);
    assert_ne!(second, first, "a new zygote forked the next container");
    assert_eq!(run(&b).await["uid"], 65534);
    a.destroy().await;
    b.destroy().await;
    f.factory.shutdown().await;
}

#[tokio::test]
async fn an_uncaught_exception_ends_a_forked_runtime_with_its_report() {
    let f = zygote_fixture("uncaught");
    let (c, (_stdout, stderr)) = ready(&f, "zu").await;
    let code = "setTimeout(() => { throw new Error('late boom') }, 10); \
                function main() { return {} }";
    let (status, body) = init(c.socket_path(), "u", code).await;
    assert_eq!(status, 200, "{body}");
    // Node.js's own exit would wait for threads only the zygote has; the fork ends at once.
    let code = tokio::time::timeout(Duration::from_secs(10), c.wait())
        .await
        .expect("the runtime ends");
    assert_eq!(code, Some(1));
    c.destroy().await;
    let stderr = stderr.await.unwrap();
    assert!(stderr.contains("Error: late boom"), "{stderr}");
    f.factory.shutdown().await;
}

/// Modules installed next to the proxy after the zygote started (`brisk serve` installs them in
/// the background) are found by the containers forked afterwards, as by fresh processes.
#[tokio::test]
async fn shared_modules_installed_after_the_zygote_started_are_found() {
    let f = zygote_fixture("modules");
    let proxy_dir = f.tmp.path().join("runtimes-late");
    std::fs::create_dir_all(&proxy_dir).unwrap();
    let proxy = proxy_dir.join("proxy.js");
    std::fs::copy(node_spec(&f, "x").proxy, &proxy).unwrap();
    let start_with = |name: &str| ContainerSpec {
        proxy: proxy.clone(),
        ..node_spec(&f, name)
    };
    let code = "function main() { return { v: require('late-module').v, \
                path: process.env.NODE_PATH || '' }; }";
    let init = init_body("m", code);
    let run_body = json!({"value": {}, "activation_id": "0123456789abcdef0123456789abcdef"});
    let mut results = Vec::new();
    for (i, install) in [false, true].into_iter().enumerate() {
        if install {
            let module = proxy_dir.join("node_modules/late-module");
            std::fs::create_dir_all(&module).unwrap();
            std::fs::write(module.join("index.js"), "exports.v = 42;").unwrap();
        }
        // The first container starts the zygote, without the module.
        let (c, _output) = ready_with(&f, &start_with(&format!("zm{i}"))).await;
        let (status, body) = post(c.socket_path(), "/init", &init).await;
        assert_eq!(status, 200, "{body}");
        results.push(post(c.socket_path(), "/run", &run_body).await);
        c.destroy().await;
    }
    let before = results[0].1.to_string();
    assert!(
        before.contains("Cannot find module 'late-module'"),
        "{before}"
    );
    let (status, r) = &results[1];
    assert_eq!(*status, 200, "{r}");
    assert_eq!(r["v"], 42, "{r}");
    assert!(
        r["path"].as_str().unwrap().contains("node_modules"),
        "child processes get NODE_PATH too: {r}"
    );
    f.factory.shutdown().await;
}

/// A zygote that cannot serve (here: its native module is not a module, for `process.dlopen`
/// and for `ctypes` alike) costs the containers of its runtime nothing but a fallback: they
/// start with the launcher, isolated as ever.
#[tokio::test]
async fn containers_start_without_a_zygote_that_cannot_serve() {
    let instance = format!("t{}-broken", std::process::id());
    let mut config = config(&instance);
    config.zygote_lib = Some(PathBuf::from("/dev/null"));
    let f = Fixture {
        factory: SandboxFactory::new(config).expect("create sandbox factory"),
        tmp: tempfile::tempdir().expect("tempdir"),
        instance,
    };
    for (spec, code) in [
        (node_spec(&f, "zb1"), REPORT),
        (node_spec(&f, "zb2"), REPORT),
        (python_spec(&f, "zb3"), PY_REPORT),
        (python_spec(&f, "zb4"), PY_REPORT),
    ] {
        let c = start_with(&f, &spec, code).await;
        assert_eq!(run(&c).await["uid"], 65534);
        let launcher = c
            .pids()
            .into_iter()
            .find(|&p| !c.pids().contains(&ppid(p)))
            .unwrap();
        let exe = std::fs::read_link(format!("/proc/{launcher}/exe")).unwrap();
        assert!(
            exe.to_string_lossy().contains("brisk-sandbox-exec"),
            "launched, not forked: {}",
            exe.display()
        );
        c.destroy().await;
    }
    f.factory.shutdown().await;
}

/// The memory limit binds a fork as it binds a launched runtime: what it writes is charged to
/// its own cgroup, and the kernel kills it there.
#[tokio::test]
async fn a_forked_runtime_is_held_to_its_memory_limit() {
    let f = zygote_fixture("oom");
    let spec = ContainerSpec {
        memory_mb: 128,
        ..node_spec(&f, "zo")
    };
    let (c, _output) = ready_with(&f, &spec).await;
    // 320 MB of written buffers, outside V8's heap limit's reach.
    let code = "const keep = []; for (let i = 0; i < 20; i++) keep.push(Buffer.alloc(16 << 20, 1)); \
                function main() { return { n: keep.length } }";
    let answer = init_unanswered(&c, code).await;
    assert!(answer.is_empty(), "{}", String::from_utf8_lossy(&answer));
    let status = tokio::time::timeout(Duration::from_secs(20), c.wait())
        .await
        .expect("the runtime ends");
    assert_eq!(status, Some(128 + 9), "killed");
    assert!(c.oom_killed(), "by the OOM killer of its own cgroup");
    c.destroy().await;
    f.factory.shutdown().await;
}

/// Sends `/init` of `code` and reads until the connection ends: the bytes of whatever answer
/// came (none when the runtime died while loading the code).
async fn init_unanswered(c: &SandboxContainer, code: &str) -> Vec<u8> {
    let body = init_body("x", code).to_string();
    let mut s = UnixStream::connect(c.socket_path()).await.unwrap();
    let req = format!(
        "POST /init HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut answer)).await;
    answer
}

const PY_REPORT: &str = r#"import os, posix, random, sys, threading
def main(args):
    box = []
    t = threading.Thread(target=lambda: box.append(threading.get_ident()))
    t.start()
    t.join()
    return {'pid': os.getpid(), 'self': int(os.readlink('/proc/self')), 'cwd': os.getcwd(),
            'uid': os.getuid(), 'random': [random.random() for _ in range(3)],
            'home': os.environ.get('HOME'), 'listen': os.environ.get('BRISK_LISTEN_FD'),
            'zygote': os.environ.get('BRISK_ZYGOTE'),
            'posix_home': posix.environ.get(b'HOME', b'').decode(),
            'thread': len(box) == 1 and box[0] != threading.get_ident(),
            'rehearsed': '__BRISK_REHEARSAL' in os.environ or '__brisk_rehearsal__' in sys.modules,
            'stat': open('/proc/self/stat').read()}
"#;

/// Python containers are forks of a Python zygote (`brisk_zygote_serve` through ctypes): each
/// with its own pid, working directory and environment (the container's, not the zygote's),
/// random numbers of its own, threads that work after the fork, and nothing left of the
/// rehearsal of a first request it runs before it serves.
#[tokio::test]
async fn python_containers_are_forks_of_one_zygote() {
    let f = zygote_fixture("python");
    let mut cs = Vec::new();
    for i in 0..2 {
        cs.push(start_with(&f, &python_spec(&f, &format!("zp{i}")), PY_REPORT).await);
    }
    let zygote = zygote_of(&cs[0]);
    let cmdline = std::fs::read_to_string(format!("/proc/{zygote}/cmdline")).unwrap();
    assert!(cmdline.contains("python"), "{cmdline:?}");
    assert!(cmdline.contains("proxy.py"), "{cmdline:?}");
    assert!(!cmdline.contains("--single-threaded"), "{cmdline:?}");
    forked_as_init(&cs, zygote);
    for r in forked_reports(&cs, zygote).await {
        assert_eq!(
            r["home"], r["posix_home"],
            "posix.environ is os.environ's: {r}"
        );
        assert_eq!(
            r["zygote"],
            Value::Null,
            "nothing of the zygote's environment: {r}"
        );
        assert_eq!(r["thread"], true, "threads start and join in a fork: {r}");
        assert_eq!(
            r["rehearsed"], false,
            "the fork's rehearsal of a first request leaves no trace: {r}"
        );
    }
    // A fork's exit status comes through its exit file, as a Node.js fork's does.
    let (c, _output) = ready_with(&f, &python_spec(&f, "zpx")).await;
    let answer = init_unanswered(&c, "import sys\nsys.exit(3)").await;
    assert!(answer.is_empty(), "{}", String::from_utf8_lossy(&answer));
    let code = tokio::time::timeout(Duration::from_secs(10), c.wait())
        .await
        .expect("the container ends");
    assert_eq!(code, Some(3));
    c.destroy().await;
    destroy_and_shut_down(&f, &cs, zygote).await;
}
