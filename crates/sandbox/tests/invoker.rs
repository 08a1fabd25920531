//! The real invoker on the sandbox backend, unchanged: actions of every runtime (plain and
//! zipped), pause/resume between activations, a memory hog, and a shutdown that leaves nothing.

mod common;

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use brisk_invoker::{Invoker, InvokerConfig, Job};
use brisk_model::{
    Action, ActionLimits, ActivationId, AuthKey, EntityName, EntityPath, Exec, Identity,
    Parameters, RuntimeManifest, SemVer, StatusCode, SystemLimits, UserLimits, now_millis,
};
use brisk_sandbox::SandboxFactory;
use serde_json::{Value, json};

const KEY: &str = "23bc46b1-71f6-4ed5-8c54-816aa4f8c502:123zO3xZCLrMN6v2BKK1dXYFpXlPkccOFqm12CdAsMgRU4VrNZ9lyGVCGuMDGIwP";

fn action(name: &str, exec: Exec, memory: u64) -> Arc<Action> {
    Arc::new(Action {
        namespace: EntityPath::root(EntityName::new("guest").unwrap()),
        name: EntityName::new(name).unwrap(),
        exec,
        parameters: Parameters::new(),
        limits: ActionLimits {
            memory,
            ..SystemLimits::default().default_action_limits()
        },
        version: SemVer::INITIAL,
        publish: false,
        annotations: Parameters::new(),
        updated: 1,
    })
}

fn code(kind: &str, code: &str, binary: bool) -> Exec {
    Exec::Code {
        kind: kind.into(),
        code: code.into(),
        binary,
        main: None,
    }
}

fn job(action: &Arc<Action>, args: Value) -> Job {
    Job {
        activation_id: ActivationId::generate(),
        transaction_id: "tid-1".into(),
        action: action.clone(),
        binding: None,
        identity: std::sync::Arc::new(Identity {
            subject: "guest".into(),
            namespace: EntityName::new("guest").unwrap(),
            uuid: "23bc46b1-71f6-4ed5-8c54-816aa4f8c502".into(),
            authkey: AuthKey::parse(KEY).unwrap(),
            limits: UserLimits::default(),
        }),
        args,
        cause: None,
        caused_by_sequence: false,
        received_at_ms: now_millis(),
        prepare_next: Vec::new(),
    }
}

fn zip_b64(entries: &[(&str, &str, u32)]) -> String {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, data, mode) in entries {
        let opts = zip::write::SimpleFileOptions::default().unix_permissions(*mode);
        w.start_file(*name, opts).unwrap();
        w.write_all(data.as_bytes()).unwrap();
    }
    base64::engine::general_purpose::STANDARD.encode(w.finish().unwrap().into_inner())
}

fn result(a: &brisk_model::Activation) -> Value {
    a.response.result.clone().unwrap_or(Value::Null)
}

async fn start(test: &str) -> (Arc<Invoker>, SandboxFactory, tempfile::TempDir) {
    start_with(test, false).await
}

async fn start_with(
    test: &str,
    prewarm: bool,
) -> (Arc<Invoker>, SandboxFactory, tempfile::TempDir) {
    let instance = format!("t{}-{test}", std::process::id());
    let factory = SandboxFactory::new(common::config(&instance)).unwrap();
    let dir = tempfile::Builder::new()
        .prefix("bi")
        .tempdir_in("/tmp")
        .unwrap();
    let runtimes = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../invoker/runtimes");
    let mut config = InvokerConfig::new(dir.path().join("run"), runtimes);
    config.user_memory_mb = 2048;
    config.prewarm = prewarm;
    config.pause_grace = Duration::from_millis(50);
    config.network = factory.config().network;
    let inv = Invoker::start_with_factory(
        config,
        Arc::new(RuntimeManifest::builtin()),
        Arc::new(factory.clone()),
    )
    .await
    .unwrap();
    (inv, factory, dir)
}

#[tokio::test]
async fn actions_of_every_runtime_run_in_sandboxes() {
    let (inv, factory, dir) = start("inv").await;
    let whoami = [
        code(
            "nodejs:20",
            "function main(p) { return {greeting: 'hello ' + p.name, uid: process.getuid(), \
             pid: process.pid}; }",
            false,
        ),
        code(
            "python:3.11",
            "import os, site, sys\ndef main(args):\n    return {'greeting': 'hello ' + args['name'], \
             'uid': os.getuid(), 'pid': os.getpid(), 'missingSite': [d for d in \
             site.getsitepackages() if os.path.isdir(d) and d not in sys.path]}\n",
            false,
        ),
        Exec::Blackbox {
            image: "openwhisk/dockerskeleton".into(),
            code: Some("#!/bin/sh\necho \"{\\\"greeting\\\": \\\"hello brisk\\\", \\\"uid\\\": $(id -u), \\\"pid\\\": $PPID}\"\n".into()),
            binary: false,
            main: None,
        },
    ];
    for exec in whoami {
        let kind = exec.kind().to_owned();
        let a = action("whoami", exec, 256);
        let act = inv.run(job(&a, json!({"name": "brisk"}))).await;
        assert_eq!(
            act.response.status_code,
            StatusCode::Success,
            "{kind}: {act:?}"
        );
        let r = result(&act);
        assert_eq!(r["greeting"], "hello brisk", "{kind}");
        assert_eq!(r["uid"], 65534, "{kind}: runs unprivileged");
        assert!(
            r["pid"].as_u64().unwrap() < 10,
            "{kind}: own pid namespace: {r}"
        );
        if kind.starts_with("python") {
            // Started with -S, the proxy still puts the site-packages the sandbox can see on
            // sys.path (it loads `site` before the action's code).
            assert_eq!(r["missingSite"], json!([]), "{kind}: {r}");
        }
    }

    // Zipped code is unpacked by the invoker into the private directory, read-only inside.
    let zipped = code(
        "nodejs:20",
        &zip_b64(&[
            ("package.json", r#"{"main": "main.js"}"#, 0o644),
            (
                "main.js",
                "const fs = require('fs'); exports.main = p => { let w; \
                 try { fs.writeFileSync(__dirname + '/x', 'x'); w = 'yes'; } \
                 catch (e) { w = e.code; } return {v: p.x * 2, write: w}; };",
                0o644,
            ),
        ]),
        true,
    );
    let a = action("zipped", zipped, 256);
    let act = inv.run(job(&a, json!({"x": 21}))).await;
    assert_eq!(act.response.status_code, StatusCode::Success, "{act:?}");
    assert_eq!(result(&act), json!({"v": 42, "write": "EROFS"}));

    // Warm again after the pool paused the container (pause grace 50 ms).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let act = inv.run(job(&a, json!({"x": 1}))).await;
    assert_eq!(result(&act)["v"], 2, "{act:?}");

    // A memory hog fails as a developer error; the invoker keeps working.
    let hog = action(
        "hog",
        code(
            "python:3.11",
            "def main(args):\n    chunks = []\n    while True:\n        chunks.append(bytearray(1 << 20))\n",
            false,
        ),
        128,
    );
    let act = inv.run(job(&hog, json!({}))).await;
    assert_eq!(
        act.response.status_code,
        StatusCode::DeveloperError,
        "{act:?}"
    );
    // Until `Container::oom_kills` reaches the invoker, the message is the generic "exited
    // unexpectedly" one; the OOM itself is asserted in limits.rs.
    let act = inv.run(job(&a, json!({"x": 5}))).await;
    assert_eq!(result(&act)["v"], 10, "{act:?}");

    inv.shutdown().await;
    // The invoker's shutdown (destroy all, then cleanup_leftovers) leaves no cgroup behind.
    for d in factory
        .hierarchy()
        .instance_dirs(&factory.config().instance)
    {
        assert!(!d.exists(), "{} left behind", d.display());
    }
    assert_eq!(
        std::fs::read_dir(dir.path().join("run")).unwrap().count(),
        0
    );
    factory.shutdown().await;
    assert!(!factory.config().state_dir.exists());
}

#[tokio::test]
async fn stem_cells_are_sandboxes_too() {
    let (inv, factory, _dir) = start_with("stem", true).await;
    let a = action(
        "stem",
        code(
            "nodejs:20",
            "function main() { return {uid: process.getuid(), pid: process.pid}; }",
            false,
        ),
        256,
    );
    let act = inv.run(job(&a, json!({}))).await;
    assert_eq!(act.response.status_code, StatusCode::Success, "{act:?}");
    assert_eq!(result(&act)["uid"], 65534);
    assert_eq!(result(&act)["pid"], 2);
    inv.shutdown().await;
    factory.shutdown().await;
}
