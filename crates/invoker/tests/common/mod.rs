//! Shared fixtures: an invoker on a temp run dir with the real proxies, and action builders.
#![allow(dead_code, reason = "each test binary uses a different subset")]

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use brisk_invoker::{Invoker, InvokerConfig, Job};
use brisk_model::params::KeyValue;
use brisk_model::{
    Action, ActionLimits, ActivationId, AuthKey, EntityName, EntityPath, Exec, Identity,
    Parameters, RuntimeManifest, SemVer, SystemLimits, UserLimits, now_millis,
};
use serde_json::Value;

pub const KEY: &str = "23bc46b1-71f6-4ed5-8c54-816aa4f8c502:123zO3xZCLrMN6v2BKK1dXYFpXlPkccOFqm12CdAsMgRU4VrNZ9lyGVCGuMDGIwP";

pub struct Fixture {
    pub inv: Arc<Invoker>,
    pub dir: tempfile::TempDir,
}

impl Fixture {
    pub fn run_dir(&self) -> PathBuf {
        self.dir.path().join("run")
    }
}

pub fn runtimes_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("runtimes")
}

pub fn config(dir: &tempfile::TempDir) -> InvokerConfig {
    let mut c = InvokerConfig::new(dir.path().join("run"), runtimes_dir());
    c.user_memory_mb = 2048;
    c.prewarm = false;
    c
}

/// An invoker without stem cells unless `tweak` turns them on.
pub async fn invoker(tweak: impl FnOnce(&mut InvokerConfig)) -> Fixture {
    invoker_with(RuntimeManifest::builtin(), tweak).await
}

pub async fn invoker_with(
    manifest: RuntimeManifest,
    tweak: impl FnOnce(&mut InvokerConfig),
) -> Fixture {
    let dir = tempfile::Builder::new()
        .prefix("bi")
        .tempdir_in("/tmp")
        .expect("temp dir");
    let mut c = config(&dir);
    tweak(&mut c);
    let inv = Invoker::start(c, Arc::new(manifest))
        .await
        .expect("invoker starts");
    Fixture { inv, dir }
}

/// An invoker (no stem cells) with one kind only, `fake:1`: the Python script `proxy` run as a
/// Python proxy is, socket-activated.
pub async fn fake_invoker(proxy: &str) -> Fixture {
    let dir = tempfile::Builder::new()
        .prefix("bf")
        .tempdir_in("/tmp")
        .expect("temp dir");
    let runtimes = dir.path().join("runtimes");
    std::fs::create_dir_all(runtimes.join("fake")).unwrap();
    std::fs::write(runtimes.join("fake/proxy.py"), proxy).unwrap();
    let mut manifest = RuntimeManifest::builtin();
    let mut fake = manifest.runtimes["python"][0].clone();
    fake.kind = "fake:1".into();
    fake.proxy = "fake".into();
    fake.default = true;
    fake.stem_cells.clear();
    manifest.runtimes.insert("fake".into(), vec![fake]);
    let mut config = InvokerConfig::new(dir.path().join("run"), &runtimes);
    config.prewarm = false;
    config.user_memory_mb = 1024;
    let inv = Invoker::start(config, Arc::new(manifest))
        .await
        .expect("invoker starts");
    Fixture { inv, dir }
}

pub fn limits() -> ActionLimits {
    SystemLimits::default().default_action_limits()
}

pub fn action(name: &str, exec: Exec) -> Action {
    Action {
        namespace: EntityPath::root(EntityName::new("guest").unwrap()),
        name: EntityName::new(name).unwrap(),
        exec,
        parameters: Parameters::new(),
        limits: limits(),
        version: SemVer::INITIAL,
        publish: false,
        annotations: Parameters::new(),
        updated: 1,
    }
}

pub fn code(kind: &str, code: &str) -> Exec {
    Exec::Code {
        kind: kind.into(),
        code: code.into(),
        binary: false,
        main: None,
    }
}

pub fn node(src: &str) -> Exec {
    code("nodejs:20", src)
}

pub fn python(src: &str) -> Exec {
    code("python:3.11", src)
}

pub fn native(script: &str) -> Exec {
    Exec::Blackbox {
        image: "openwhisk/dockerskeleton".into(),
        code: Some(script.into()),
        binary: false,
        main: None,
    }
}

/// A base64 zip of `(name, content, mode)` entries.
pub fn zip_b64(entries: &[(&str, &str, u32)]) -> String {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, data, mode) in entries {
        let opts = zip::write::SimpleFileOptions::default().unix_permissions(*mode);
        w.start_file(*name, opts).unwrap();
        w.write_all(data.as_bytes()).unwrap();
    }
    let bytes = w.finish().unwrap().into_inner();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

pub fn identity() -> Identity {
    Identity {
        subject: "guest".into(),
        namespace: EntityName::new("guest").unwrap(),
        uuid: "23bc46b1-71f6-4ed5-8c54-816aa4f8c502".into(),
        authkey: AuthKey::parse(KEY).unwrap(),
        limits: UserLimits::default(),
    }
}

pub fn job(action: &Arc<Action>, args: Value) -> Job {
    Job {
        activation_id: ActivationId::generate(),
        transaction_id: "tid-1".into(),
        action: action.clone(),
        binding: None,
        identity: std::sync::Arc::new(identity()),
        args,
        cause: None,
        caused_by_sequence: false,
        received_at_ms: now_millis(),
        prepare_next: Vec::new(),
    }
}

pub fn init_param(key: &str, value: Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value,
        init: Some(true),
    }
}

/// The `result` of an activation.
pub fn result(a: &brisk_model::Activation) -> Value {
    a.response.result.clone().unwrap_or(Value::Null)
}

/// Polls `cond` every 10 ms for up to 20 s (the machine may be slow; nothing is asserted
/// about how long it takes).
pub async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..2000 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}

/// Pids of processes whose environment mentions `needle` (our containers carry their private
/// directory under the run dir as `HOME`).
pub fn processes_mentioning(needle: &str) -> Vec<i32> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in dir.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if let Ok(env) = std::fs::read(format!("/proc/{pid}/environ"))
            && String::from_utf8_lossy(&env).contains(needle)
        {
            out.push(pid);
        }
    }
    out
}
