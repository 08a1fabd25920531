//! Harness for the CLI end-to-end tests: a real `brisk serve` on port 0 over a temp data
//! directory, and the real `brisk` binary run as a client with its own temp `WSK_CONFIG_FILE`.
#![allow(
    dead_code,
    reason = "each test binary uses a different part of the harness"
)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

pub const BRISK: &str = env!("CARGO_BIN_EXE_brisk");
pub const GUEST_KEY: &str = "23bc46b1-71f6-4ed5-8c54-816aa4f8c502:123zO3xZCLrMN6v2BKK1dXYFpXlPkccOFqm12CdAsMgRU4VrNZ9lyGVCGuMDGIwP";
/// Guards against hangs; never a measure of speed.
pub const HANG_GUARD: Duration = Duration::from_secs(60);

/// A `brisk` command with nothing inherited that would change its configuration.
pub fn brisk_command() -> Command {
    let mut cmd = Command::new(BRISK);
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy().into_owned();
        if k.starts_with("BRISK_") || k.starts_with("__OW_") || k == "WSK_CONFIG_FILE" {
            cmd.env_remove(k);
        }
    }
    cmd.env("BRISK_LOG", "warn");
    cmd
}

/// A running `brisk serve`; stopped with SIGTERM on drop.
pub struct Server {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub apihost: String,
    _data: TempDir,
}

impl Server {
    pub fn start() -> Self {
        let data = tempfile::tempdir().expect("temp data dir");
        let mut child = brisk_command()
            .args(["serve", "--port", "0", "--data-dir"])
            .arg(data.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn brisk serve");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    // keep draining so the server never blocks on a full pipe
                }
            }
        });
        let deadline = Instant::now() + HANG_GUARD;
        let apihost = loop {
            let line = rx
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .expect("brisk serve prints its address");
            if let Some(rest) = line.split("OpenWhisk API on ").nth(1) {
                break rest.split_whitespace().next().expect("url").to_owned();
            }
        };
        Self {
            child,
            apihost,
            _data: data,
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What one `brisk` client command did.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// The client side: a temp home with its own properties file.
pub struct Wsk {
    pub dir: TempDir,
    pub config: PathBuf,
}

impl Wsk {
    /// A client configured (through `brisk property set`) for `server` as the guest.
    pub fn new(server: &Server) -> Self {
        let wsk = Self::unconfigured();
        wsk.ok(&[
            "property",
            "set",
            "--apihost",
            &server.apihost,
            "--auth",
            GUEST_KEY,
        ]);
        wsk
    }

    pub fn unconfigured() -> Self {
        let dir = tempfile::tempdir().expect("temp client dir");
        let config = dir.path().join("wskprops");
        Self { dir, config }
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = brisk_command();
        cmd.args(args)
            .env("WSK_CONFIG_FILE", &self.config)
            .env("HOME", self.dir.path())
            .current_dir(self.dir.path())
            .stdin(Stdio::null());
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Run {
        let out = self.command(args).output().expect("run brisk");
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Runs and asserts success; returns stdout.
    #[track_caller]
    pub fn ok(&self, args: &[&str]) -> String {
        let run = self.run(args);
        assert_eq!(run.code, 0, "brisk {args:?} failed: {run:?}");
        run.stdout
    }

    /// Runs with `--json` and parses stdout.
    #[track_caller]
    pub fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.push("--json");
        let out = self.ok(&all);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("brisk {args:?}: {e}: {out}"))
    }

    /// Runs and asserts the exit code; returns the run.
    #[track_caller]
    pub fn fails(&self, args: &[&str], code: i32) -> Run {
        let run = self.run(args);
        assert_eq!(run.code, code, "brisk {args:?}: {run:?}");
        run
    }

    /// Writes a file in the client's directory and returns its path as a string.
    pub fn file(&self, name: &str, content: &[u8]) -> String {
        let path = self.dir.path().join(name);
        std::fs::write(&path, content).expect("write test file");
        path.to_str().expect("utf-8 path").to_owned()
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Retries `f` until it returns `Some` (records are written when activations finish).
    #[track_caller]
    pub fn eventually<T>(&self, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + HANG_GUARD;
        loop {
            if let Some(v) = f() {
                return v;
            }
            assert!(Instant::now() < deadline, "gave up waiting for {what}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// The value of `key` in a key-value array.
pub fn kv<'a>(array: &'a Value, key: &str) -> Option<&'a Value> {
    array
        .as_array()?
        .iter()
        .find(|kv| kv["key"] == key)
        .map(|kv| &kv["value"])
}

/// The activation id at the end of an `ok: invoked ... with id <id>` line.
#[track_caller]
pub fn id_from(line: &str) -> String {
    let id = line
        .lines()
        .find_map(|l| l.split(" with id ").nth(1))
        .unwrap_or_else(|| panic!("no activation id in {line:?}"))
        .trim()
        .to_owned();
    assert_eq!(id.len(), 32, "{id}");
    id
}

pub fn exists(p: &Path) -> bool {
    p.exists()
}
