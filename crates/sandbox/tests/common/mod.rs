//! Helpers shared by the sandbox tests: a factory with a unique instance name and a way to run
//! a small script as a container's "proxy" and collect its output.
#![allow(dead_code, reason = "each test binary uses a different subset")]

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use brisk_invoker::{Container, ContainerSpec};
use brisk_sandbox::{NetworkPolicy, SandboxConfig, SandboxContainer, SandboxFactory};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

pub const PYTHON: &str = "/usr/bin/python3";

/// A factory whose cgroups and state are private to this test.
pub struct Fixture {
    pub factory: SandboxFactory,
    pub tmp: tempfile::TempDir,
    pub instance: String,
}

pub fn config(instance: &str) -> SandboxConfig {
    let launcher = vec![OsString::from(env!("CARGO_BIN_EXE_brisk-sandbox-exec"))];
    let mut config = SandboxConfig::new(launcher, instance);
    config.state_dir = PathBuf::from(format!("/run/brisk-sandbox-test-{instance}"));
    config.network = NetworkPolicy::None;
    config.egress_available = false;
    config.netns_pool = 2;
    config
}

pub fn fixture(test: &str) -> Fixture {
    let instance = format!("t{}-{test}", std::process::id());
    let factory = SandboxFactory::new(config(&instance)).expect("create sandbox factory");
    Fixture {
        factory,
        tmp: tempfile::tempdir().expect("tempdir"),
        instance,
    }
}

impl Fixture {
    pub fn run_dir(&self) -> PathBuf {
        self.tmp.path().join("run")
    }

    /// A spec that runs `script` (written to a file) with `interpreter`.
    pub fn spec(
        &self,
        name: &str,
        interpreter: &str,
        script: &str,
        memory_mb: u64,
    ) -> ContainerSpec {
        let scripts = self.tmp.path().join(format!("scripts-{name}"));
        std::fs::create_dir_all(&scripts).unwrap();
        let file = scripts.join("main");
        std::fs::write(&file, script).unwrap();
        ContainerSpec {
            name: name.to_owned(),
            dir: self.run_dir().join(name),
            kind: "test".into(),
            interpreter: PathBuf::from(interpreter),
            args: Vec::new(),
            proxy: file,
            memory_mb,
            allow_concurrent: false,
            api_host: "http://127.0.0.1:3233".into(),
            network: self.factory.config().network,
        }
    }

    /// Starts a sandbox running `script` and returns it with its output readers.
    pub async fn start(
        &self,
        name: &str,
        interpreter: &str,
        script: &str,
        memory_mb: u64,
    ) -> (SandboxContainer, brisk_invoker::ContainerOutput) {
        let spec = self.spec(name, interpreter, script, memory_mb);
        self.factory
            .create_sandbox(&spec)
            .await
            .expect("create sandbox")
    }

    /// Runs `script` to completion (at most 30 s): exit code, stdout, stderr.
    pub async fn run(&self, name: &str, interpreter: &str, script: &str) -> Outcome {
        self.run_with_memory(name, interpreter, script, 256).await
    }

    pub async fn run_with_memory(
        &self,
        name: &str,
        interpreter: &str,
        script: &str,
        memory_mb: u64,
    ) -> Outcome {
        let (c, out) = self.start(name, interpreter, script, memory_mb).await;
        let (stdout, stderr) = read_all(out);
        let code = tokio::time::timeout(Duration::from_secs(30), c.wait())
            .await
            .expect("sandbox finished in time");
        let stdout = stdout.await.unwrap();
        let stderr = stderr.await.unwrap();
        let oom = c.oom_killed();
        c.destroy().await;
        Outcome {
            code,
            stdout,
            stderr,
            oom,
        }
    }
}

pub fn read_all(out: brisk_invoker::ContainerOutput) -> Output {
    let mut o = out.stdout;
    let mut e = out.stderr;
    (
        tokio::spawn(async move {
            let mut s = String::new();
            let _ = o.read_to_string(&mut s).await;
            s
        }),
        tokio::spawn(async move {
            let mut s = String::new();
            let _ = e.read_to_string(&mut s).await;
            s
        }),
    )
}

#[derive(Debug)]
pub struct Outcome {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub oom: bool,
}

impl Outcome {
    /// Asserts a clean exit and returns stdout.
    pub fn ok(&self) -> &str {
        assert_eq!(self.code, Some(0), "sandbox failed: {self:#?}");
        &self.stdout
    }

    /// The value printed as `key=value` on stdout.
    pub fn get(&self, key: &str) -> &str {
        let prefix = format!("{key}=");
        self.stdout
            .lines()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .unwrap_or_else(|| panic!("no {key}= in output: {self:#?}"))
    }
}

/// Whether `path` is a mount point in the host's mount namespace.
pub fn host_mounts_under(prefix: &Path) -> Vec<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().nth(4).map(str::to_owned))
        .filter(|m| Path::new(m).starts_with(prefix))
        .collect()
}

/// A container's stdout and stderr, read to the end by tasks of their own.
pub type Output = (
    tokio::task::JoinHandle<String>,
    tokio::task::JoinHandle<String>,
);

/// The `/init` body for plain `code` with entry point `main`.
pub fn init_body(name: &str, code: &str) -> Value {
    serde_json::json!({"value": {"name": name, "main": "main", "code": code, "binary": false}})
}

/// `/init` of plain `code` with entry point `main`; returns status and JSON body.
pub async fn init(socket: &Path, name: &str, code: &str) -> (u16, Value) {
    post(socket, "/init", &init_body(name, code)).await
}

/// One HTTP/1.1 POST with `Connection: close`; returns status and JSON body.
pub async fn post(socket: &Path, path: &str, body: &Value) -> (u16, Value) {
    let mut s = UnixStream::connect(socket).await.expect("connect to proxy");
    let body = body.to_string();
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).await.unwrap();
    let text = String::from_utf8_lossy(&resp);
    let status: u16 = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("bad response: {text}"));
    let (head, rest) = text.split_once("\r\n\r\n").expect("headers end");
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(rest)
    } else {
        rest.to_owned()
    };
    (
        status,
        serde_json::from_str(&body).unwrap_or(Value::String(body)),
    )
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((len, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(len.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        s = &rest[n + 2..];
    }
    out
}
