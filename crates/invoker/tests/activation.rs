//! Socket activation with the process backend: the container's socket listens before its proxy
//! runs, and the real proxies serve the socket they are given as stdin.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use brisk_invoker::{ContainerFactory, ContainerSpec, NetworkPolicy, ProcessFactory, ProxyClient};
use common::runtimes_dir;
use serde_json::{Value, json};
use tokio::io::AsyncReadExt;
use tokio::net::UnixStream;

/// Starts `proxy` with the process backend and stops it at once: while it is stopped, its
/// socket already accepts connections (the proxy is not even told a path it could bind). Once
/// resumed, it answers the readiness probe, `/init` and `/run` on that socket.
async fn serves_the_socket_it_is_given(interpreter: &str, args: &[&str], proxy: &str, code: &str) {
    let dir = tempfile::Builder::new()
        .prefix("ba")
        .tempdir_in("/tmp")
        .unwrap();
    let spec = ContainerSpec {
        name: "c1".into(),
        dir: dir.path().join("c1"),
        kind: proxy.into(),
        interpreter: PathBuf::from(interpreter),
        args: args.iter().map(|a| a.to_string()).collect(),
        proxy: runtimes_dir().join(proxy),
        memory_mb: 256,
        allow_concurrent: false,
        api_host: "http://127.0.0.1:3233".into(),
        network: NetworkPolicy::None,
    };
    let (c, out) = ProcessFactory::new().create(&spec).await.unwrap();
    c.pause().await.unwrap();
    let mut logs = out.stdout;
    let logs = tokio::spawn(async move {
        let mut s = String::new();
        let _ = logs.read_to_string(&mut s).await;
        s
    });
    let early = tokio::time::timeout(Duration::from_secs(5), UnixStream::connect(c.socket_path()))
        .await
        .expect("connect does not wait for the proxy");
    early.expect("the socket accepts connections while the proxy is stopped");
    c.resume().await.unwrap();

    let client = ProxyClient::new(c.socket_path(), "c1");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    client
        .wait_ready(deadline, || c.has_exited())
        .await
        .unwrap();
    // Read only now: while the process may still be inside `execve`, its environment reads empty.
    let pid = std::fs::read_to_string(spec.dir.join("pid")).unwrap();
    let environ = std::fs::read(format!("/proc/{}/environ", pid.trim())).unwrap();
    let environ = String::from_utf8_lossy(&environ);
    assert!(
        environ.split('\0').any(|v| v == "BRISK_LISTEN_FD=0"),
        "{environ}"
    );
    assert!(!environ.contains("BRISK_SOCKET"), "{environ}");
    let init = json!({"value": {"name": "hi", "main": "main", "code": code, "binary": false}});
    let r = client
        .post("/init", init.to_string().into_bytes(), 1 << 16)
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{:?}", r.body);
    let run = json!({
        "value": {"name": "activation"},
        "namespace": "guest", "action_name": "hi", "action_version": "0.0.1",
        "activation_id": "0123456789abcdef0123456789abcdef", "transaction_id": "t",
        "deadline": "0",
    });
    let r = client
        .post("/run", run.to_string().into_bytes(), 1 << 16)
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{:?}", r.body);
    let body: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(body, json!({"greeting": "hello activation"}));
    client.close_idle();
    c.destroy().await;
    assert!(
        logs.await
            .unwrap()
            .contains("XXX_THE_END_OF_A_WHISK_ACTIVATION_XXX")
    );
}

#[tokio::test]
async fn the_node_proxy_serves_the_socket_it_is_given() {
    serves_the_socket_it_is_given(
        "/usr/bin/node",
        &["--v8-pool-size=1"],
        "node/proxy.js",
        "function main(a) { console.log('x'); return {greeting: 'hello ' + a.name}; }",
    )
    .await;
}

#[tokio::test]
async fn the_python_proxy_serves_the_socket_it_is_given() {
    serves_the_socket_it_is_given(
        "/usr/bin/python3",
        &["-I", "-S"],
        "python/proxy.py",
        "def main(a):\n    print('x')\n    return {'greeting': 'hello ' + a['name']}\n",
    )
    .await;
}

#[tokio::test]
async fn the_native_proxy_serves_the_socket_it_is_given() {
    serves_the_socket_it_is_given(
        "/usr/bin/python3",
        &[],
        "native/proxy.py",
        "#!/bin/sh\necho x\necho '{\"greeting\": \"hello activation\"}'\n",
    )
    .await;
}
