//! Prints how long sandboxes take to create, pause, resume and destroy, and how long a Node.js
//! and a Python proxy take from nothing to the first `/run`.
//!
//! ```sh
//! cargo run --release -p brisk-sandbox --example sandbox_latency   # as root
//! ```

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use brisk_invoker::{Container, ContainerSpec, ProxyClient};
use brisk_sandbox::{NetworkPolicy, SandboxConfig, SandboxFactory};

const ROUNDS: usize = 200;

fn launcher() -> OsString {
    // The example binary lives in target/<profile>/examples; the launcher one level up.
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    dir.join("brisk-sandbox-exec").into_os_string()
}

fn report(what: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let pick = |q: f64| samples[((samples.len() as f64 - 1.0) * q).round() as usize];
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "{what:<44} n={:<4} p50={:>8.3} ms  p90={:>8.3} ms  p99={:>8.3} ms  max={:>8.3} ms",
        samples.len(),
        ms(pick(0.5)),
        ms(pick(0.9)),
        ms(pick(0.99)),
        ms(pick(1.0))
    );
}

/// Times `n` spawns of `/bin/true` until it exits, `gap` apart.
async fn plain_spawns(n: usize, gap: Option<Duration>) -> Vec<Duration> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        if let Some(gap) = gap {
            tokio::time::sleep(gap).await;
        }
        let t = Instant::now();
        tokio::process::Command::new("/bin/true")
            .status()
            .await
            .unwrap();
        out.push(t.elapsed());
    }
    out
}

fn spec(
    root: &Path,
    name: &str,
    interpreter: &str,
    proxy: PathBuf,
    memory_mb: u64,
) -> ContainerSpec {
    ContainerSpec {
        name: name.to_owned(),
        dir: root.join("run").join(name),
        kind: "bench".into(),
        interpreter: interpreter.into(),
        args: Vec::new(),
        proxy,
        memory_mb,
        allow_concurrent: false,
        api_host: "http://127.0.0.1:3233".into(),
        network: NetworkPolicy::None,
    }
}

async fn first_run(factory: &SandboxFactory, root: &Path, i: usize, node: bool) -> Duration {
    let runtimes = Path::new(env!("CARGO_MANIFEST_DIR")).join("../invoker/runtimes");
    let (interp, proxy, code) = if node {
        (
            "/usr/bin/node",
            runtimes.join("node/proxy.js"),
            "function main(a) { return {hello: a.name}; }",
        )
    } else {
        (
            "/usr/bin/python3",
            runtimes.join("python/proxy.py"),
            "def main(a):\n    return {'hello': a['name']}\n",
        )
    };
    let s = spec(root, &format!("rt{i}"), interp, proxy, 256);
    let start = Instant::now();
    let (c, out) = factory.create_sandbox(&s).await.expect("create");
    drain(out);
    // As the invoker does it: the readiness probe (the socket listens already), then /init and
    // /run on the probed connection.
    let client = ProxyClient::new(c.socket_path(), c.name());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    client
        .wait_ready(deadline, || c.has_exited())
        .await
        .expect("proxy ready");
    let init =
        serde_json::json!({"value": {"name": "b", "main": "main", "code": code, "binary": false}});
    let r = client
        .post("/init", init.to_string().into_bytes(), 4096)
        .await
        .expect("init");
    assert_eq!(r.status, 200, "{:?}", r.body);
    let run = r#"{"value":{"name":"x"},"namespace":"guest","action_name":"b","action_version":"0.0.1","activation_id":"0123456789abcdef0123456789abcdef","transaction_id":"t","deadline":"0"}"#;
    let r = client
        .post("/run", run.as_bytes().to_vec(), 4096)
        .await
        .expect("run");
    let took = start.elapsed();
    assert_eq!(r.status, 200, "{:?}", r.body);
    client.close_idle();
    c.destroy().await;
    took
}

fn drain(out: brisk_invoker::ContainerOutput) {
    let (mut o, mut e) = (out.stdout, out.stderr);
    tokio::spawn(async move { tokio::io::copy(&mut o, &mut tokio::io::sink()).await });
    tokio::spawn(async move { tokio::io::copy(&mut e, &mut tokio::io::sink()).await });
}

#[tokio::main]
async fn main() {
    let mut config = SandboxConfig::new(vec![launcher()], format!("bench{}", std::process::id()));
    config.network = NetworkPolicy::None;
    config.egress_available = false;
    config.netns_pool = 8;
    let factory = SandboxFactory::new(config).expect("sandbox factory (run as root)");
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path();
    let dummy = root.join("scripts/none");
    std::fs::create_dir_all(dummy.parent().unwrap()).unwrap();
    std::fs::write(&dummy, "").unwrap();
    // Let the pool fill.
    tokio::time::sleep(Duration::from_millis(200)).await;
    println!("cgroups: {:?}", factory.hierarchy());

    // Baseline: spawning /bin/true without a sandbox.
    report(
        "plain spawn + exit of /bin/true",
        plain_spawns(ROUNDS, None).await,
    );
    report(
        "same, one every 50 ms",
        plain_spawns(40, Some(Duration::from_millis(50))).await,
    );

    let (mut call, mut full, mut destroy) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..ROUNDS {
        let s = spec(root, &format!("c{i}"), "/bin/true", dummy.clone(), 128);
        let t = Instant::now();
        let (c, out) = factory.create_sandbox(&s).await.expect("create");
        call.push(t.elapsed());
        drain(out);
        let code = c.wait().await;
        full.push(t.elapsed());
        assert_eq!(code, Some(0), "sandboxed /bin/true failed");
        let t = Instant::now();
        c.destroy().await;
        destroy.push(t.elapsed());
        if i % 16 == 15 {
            // The pool refills in the background, as between cold starts in the invoker.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    report("create() returns (cgroup + dir + spawn)", call);
    // Cold starts are sparse: kernel paths that batch work (RCU-synchronised locks) show up
    // only when creations are spaced out.
    let mut sparse = Vec::new();
    for i in 0..40 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let s = spec(root, &format!("s{i}"), "/bin/true", dummy.clone(), 128);
        let t = Instant::now();
        let (c, out) = factory.create_sandbox(&s).await.expect("create");
        drain(out);
        let code = c.wait().await;
        sparse.push(t.elapsed());
        assert_eq!(code, Some(0));
        c.destroy().await;
    }
    report("sandboxed /bin/true, one every 50 ms", sparse);
    report("sandbox built + /bin/true exec'd and exited", full);
    report("destroy (kill, reap, rmdir cgroup, netns back)", destroy);

    let busy = root.join("scripts/busy");
    std::fs::write(&busy, "while :; do :; done").unwrap();
    let s = spec(root, "busy", "/bin/sh", busy, 128);
    let (c, out) = factory.create_sandbox(&s).await.expect("create");
    drain(out);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (mut pause, mut resume) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        let t = Instant::now();
        c.pause().await.unwrap();
        pause.push(t.elapsed());
        tokio::time::sleep(Duration::from_millis(1)).await;
        let t = Instant::now();
        c.resume().await.unwrap();
        resume.push(t.elapsed());
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    c.destroy().await;
    report("pause (freezer, busy container)", pause);
    report("resume (freezer)", resume);

    for node in [true, false] {
        let mut runs = Vec::new();
        for i in 0..10 {
            runs.push(first_run(&factory, root, i, node).await);
        }
        let name = if node { "Node.js" } else { "Python" };
        report(
            &format!("{name}: create -> ready -> /init -> first /run"),
            runs,
        );
    }
    factory.shutdown().await;
}
