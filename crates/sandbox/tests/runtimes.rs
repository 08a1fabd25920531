//! The real runtime proxies inside a sandbox: `/init` and `/run` over the Unix socket in the
//! container's private directory on the host, which the sandboxed proxy was given listening.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use brisk_invoker::{Container, ContainerSpec, ProxyClient};
use common::*;
use serde_json::json;
use tokio::net::UnixStream;

fn runtimes_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../invoker/runtimes")
}

/// The socket listens as soon as the sandbox is created (socket activation); the proxy is
/// ready once it answers the invoker's readiness probe.
async fn wait_ready(c: &dyn Container, deadline: Duration) {
    let early = tokio::time::timeout(Duration::from_secs(5), UnixStream::connect(c.socket_path()))
        .await
        .expect("connect does not wait for the proxy");
    early.expect("the socket accepts connections before the proxy runs");
    ProxyClient::new(c.socket_path(), c.name())
        .wait_ready(tokio::time::Instant::now() + deadline, || c.has_exited())
        .await
        .expect("proxy ready");
}

async fn init_and_run(f: &Fixture, kind: &str, interpreter: &str, proxy: &str, code: &str) {
    let spec = ContainerSpec {
        name: kind.to_owned(),
        dir: f.run_dir().join(kind),
        kind: kind.to_owned(),
        interpreter: PathBuf::from(interpreter),
        args: Vec::new(),
        proxy: runtimes_dir().join(proxy),
        memory_mb: 256,
        allow_concurrent: false,
        api_host: "http://127.0.0.1:3233".into(),
        network: f.factory.config().network,
    };
    let start = Instant::now();
    let (c, out) = f.factory.create_sandbox(&spec).await.unwrap();
    let (stdout, stderr) = read_all(out);
    wait_ready(&c, Duration::from_secs(20)).await;
    let ready = start.elapsed();
    let (status, body) = init(c.socket_path(), "hello", code).await;
    assert_eq!(status, 200, "init: {body}");
    let run = json!({
        "value": {"name": "sandbox"},
        "namespace": "guest", "action_name": "hello", "action_version": "0.0.1",
        "activation_id": "0123456789abcdef0123456789abcdef", "transaction_id": "t",
        "deadline": "0",
    });
    let (status, body) = post(c.socket_path(), "/run", &run).await;
    let first_run = start.elapsed();
    assert_eq!(status, 200, "run: {body}");
    assert_eq!(body["greeting"], "hello sandbox");
    assert_eq!(body["uid"], 65534);
    println!(
        "{kind}: proxy ready after {:.1} ms, first /run done after {:.1} ms",
        ready.as_secs_f64() * 1e3,
        first_run.as_secs_f64() * 1e3
    );
    // Paused and resumed, it still answers.
    c.pause().await.unwrap();
    c.resume().await.unwrap();
    let (status, body) = post(c.socket_path(), "/run", &run).await;
    assert_eq!(status, 200, "run after resume: {body}");
    c.destroy().await;
    let logs = stdout.await.unwrap() + &stderr.await.unwrap();
    assert!(
        logs.contains("XXX_THE_END_OF_A_WHISK_ACTIVATION_XXX"),
        "{logs}"
    );
    assert!(logs.contains("log from the action"), "{logs}");
}

#[tokio::test]
async fn node_proxy_inits_and_runs_in_a_sandbox() {
    let f = fixture("node");
    init_and_run(
        &f,
        "nodejs",
        "/usr/bin/node",
        "node/proxy.js",
        "function main(a) { console.log('log from the action'); \
         return {greeting: 'hello ' + a.name, uid: process.getuid()}; }",
    )
    .await;
    f.factory.shutdown().await;
}

#[tokio::test]
async fn python_proxy_inits_and_runs_in_a_sandbox() {
    let f = fixture("python");
    init_and_run(
        &f,
        "python",
        PYTHON,
        "python/proxy.py",
        "import os\ndef main(a):\n    print('log from the action')\n    \
         return {'greeting': 'hello ' + a['name'], 'uid': os.getuid()}\n",
    )
    .await;
    f.factory.shutdown().await;
}
