//! Child processes the harness starts: `brisk serve` instances and the bare floor servers; and
//! what can be read about a process tree from `/proc`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest the harness waits for a fresh server's background setup (`npm ci`).
const SETUP_TIMEOUT: Duration = Duration::from_secs(300);

/// A `brisk serve` started on a free port with a temporary data dir. Stopped with SIGTERM (so it
/// removes its containers) on [`BriskServer::stop`] or, without waiting, on drop.
pub struct BriskServer {
    child: Child,
    pub apihost: String,
    pub pid: u32,
    dir: tempfile::TempDir,
}

impl BriskServer {
    pub async fn start(bin: &Path, extra: &[String]) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("brisk-bench-")
            .tempdir()
            .context("create a data dir")?;
        let log =
            std::fs::File::create(dir.path().join("serve.log")).context("create serve.log")?;
        let mut child = Command::new(bin)
            .arg("serve")
            .args(["--port", "0", "--data-dir"])
            .arg(dir.path().join("data"))
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .with_context(|| format!("start {} serve", bin.display()))?;
        let pid = child.id().context("server exited at once")?;
        let stdout = child.stdout.take().context("server stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let prefix = "brisk serve: OpenWhisk API on ";
        let found = tokio::time::timeout(READY_TIMEOUT, async {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(rest) = line.strip_prefix(prefix) {
                    return rest.split_whitespace().next().map(str::to_string);
                }
            }
            None
        })
        .await;
        let mut server = Self {
            child,
            apihost: String::new(),
            pid,
            dir,
        };
        match found {
            Ok(Some(apihost)) => server.apihost = apihost,
            _ => {
                let log = server.log_tail();
                server.stop().await;
                bail!("brisk serve {extra:?} did not report its address; log:\n{log}");
            }
        }
        // Keep draining stdout so the server never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(server)
    }

    /// Waits until the server's background setup is done: a fresh data dir makes `brisk serve`
    /// install the Node.js modules actions may require (`npm ci`), a second or two of CPU that
    /// would otherwise land on the scenario's first rounds. Returns how long it waited.
    pub async fn wait_background_setup(&self) -> Duration {
        wait_for_setup(self.pid, SETUP_TIMEOUT).await
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("serve.log")
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// SIGTERM, then up to 15 s for a graceful shutdown, then SIGKILL.
    pub async fn stop(mut self) {
        let _ = kill(Pid::from_raw(self.pid as i32), Signal::SIGTERM);
        if tokio::time::timeout(Duration::from_secs(15), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}

impl Drop for BriskServer {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = kill(Pid::from_raw(self.pid as i32), Signal::SIGTERM);
        }
    }
}

/// Which bare server a floor is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FloorKind {
    Node,
    Python,
}

const NODE_FLOOR: &str = r#"
const http = require('http');
function main(params) { return {}; }
const srv = http.createServer({ noDelay: true }, (req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    const args = chunks.length ? JSON.parse(Buffer.concat(chunks)) : {};
    const body = JSON.stringify(main(args));
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  });
});
srv.keepAliveTimeout = 120000;
srv.listen(0, '127.0.0.1', () => console.log(srv.address().port));
"#;

const PYTHON_FLOOR: &str = r#"
import json, socket
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

def main(args):
    return {}

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self):
        super().setup()
        # Without this every response waits ~40 ms for a delayed ACK (Nagle).
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n else b""
        args = json.loads(raw) if raw else {}
        body = json.dumps(main(args)).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
srv.daemon_threads = True
print(srv.server_address[1], flush=True)
srv.serve_forever()
"#;

/// A bare HTTP server running the same noop function: the floor Brisk is compared against.
pub struct FloorServer {
    _child: Child,
    pub apihost: String,
}

impl FloorServer {
    pub async fn start(kind: FloorKind, interpreter: &Path) -> anyhow::Result<Self> {
        let (flag, code) = match kind {
            FloorKind::Node => ("-e", NODE_FLOOR),
            FloorKind::Python => ("-c", PYTHON_FLOOR),
        };
        // The environment a container's runtime gets (the invoker clears it), not the bench's:
        // variables such as NODE_EXTRA_CA_CERTS change an interpreter's start-up cost (that one
        // doubles Node.js's, loading the certificates).
        let mut child = Command::new(interpreter)
            .args([flag, code])
            .env_clear()
            .env("PATH", brisk_invoker::BASE_PATH)
            .env("LANG", "C.UTF-8")
            .env("HOME", std::env::temp_dir())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("start the {kind:?} floor with {}", interpreter.display()))?;
        let stdout = child.stdout.take().context("floor stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let port = tokio::time::timeout(READY_TIMEOUT, lines.next_line())
            .await
            .ok()
            .and_then(Result::ok)
            .flatten()
            .and_then(|l| l.trim().parse::<u16>().ok())
            .with_context(|| format!("the {kind:?} floor server did not print its port"))?;
        Ok(Self {
            _child: child,
            apihost: format!("http://127.0.0.1:{port}"),
        })
    }
}

/// One process as seen in `/proc`.
#[derive(Debug, Clone)]
pub struct ProcInfo {
    pub pid: u32,
    pub ppid: u32,
    /// Base name of the executable (`argv[0]`), e.g. `node`, `python3.11`.
    pub exe: String,
    pub cmdline: String,
    /// `R`, `S`, `T` (stopped), ...
    pub state: char,
    /// Stopped (SIGSTOP, the process backend) or in a frozen cgroup (the sandbox backend).
    pub paused: bool,
    pub pss_kb: Option<u64>,
    pub rss_kb: Option<u64>,
    /// Unique set size: pages mapped by this process alone (`Private_Clean` +
    /// `Private_Dirty`), what it costs beyond what it shares with its siblings.
    pub uss_kb: Option<u64>,
    /// A runtime zygote (its environment names `BRISK_ZYGOTE`, and its parent's does not: a
    /// fork keeps showing the environment it started with): the parent of the forked
    /// containers of its runtime, shared by all of them.
    pub zygote: bool,
}

/// Waits (at most `limit`) while a descendant of `pid` is a setup process ([`is_setup`]);
/// returns how long that took.
async fn wait_for_setup(pid: u32, limit: Duration) -> Duration {
    let start = std::time::Instant::now();
    while start.elapsed() < limit && descendants(pid).iter().any(is_setup) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    start.elapsed()
}

/// Whether a process is part of a server's background setup (npm sets its title to `npm ...`).
fn is_setup(p: &ProcInfo) -> bool {
    p.exe == "npm" || p.cmdline == "npm" || p.cmdline.starts_with("npm ")
}

/// Every descendant of `pid` (children, their children, ...).
pub fn descendants(pid: u32) -> Vec<ProcInfo> {
    let mut out = Vec::new();
    let mut stack = vec![pid];
    while let Some(p) = stack.pop() {
        for c in children(p) {
            if let Some(info) = proc_info(c) {
                out.push(info);
            }
            stack.push(c);
        }
    }
    // A zygote's forks show its initial environment too: the zygote is the topmost one.
    let flagged: Vec<u32> = out.iter().filter(|p| p.zygote).map(|p| p.pid).collect();
    for p in &mut out {
        if flagged.contains(&p.ppid) {
            p.zygote = false;
        }
    }
    out
}

fn children(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for t in tasks.flatten() {
        if let Ok(text) = std::fs::read_to_string(t.path().join("children")) {
            out.extend(
                text.split_whitespace()
                    .filter_map(|s| s.parse::<u32>().ok()),
            );
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

pub fn proc_info(pid: u32) -> Option<ProcInfo> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (state, ppid) = parse_stat(&stat)?;
    let args: Vec<String> = std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| {
            String::from_utf8_lossy(&b)
                .split('\0')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    let exe = args
        .first()
        .and_then(|a| a.rsplit('/').next())
        .unwrap_or_default()
        .to_string();
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
    let zygote = std::fs::read(format!("/proc/{pid}/environ")).is_ok_and(|env| {
        env.split(|b| *b == 0)
            .any(|v| v.starts_with(b"BRISK_ZYGOTE="))
    });
    Some(ProcInfo {
        pid,
        ppid,
        exe,
        cmdline: args.join(" "),
        state,
        paused: state == 'T' || frozen(&cgroups),
        pss_kb: rollup_field(&rollup, "Pss:"),
        rss_kb: rollup_field(&rollup, "Rss:"),
        uss_kb: rollup_field(&rollup, "Private_Clean:")
            .zip(rollup_field(&rollup, "Private_Dirty:"))
            .map(|(clean, dirty)| clean + dirty),
        zygote,
    })
}

/// The zygote `p` was forked from, if any: its nearest zygote ancestor in `all`.
pub fn zygote_of<'a>(p: &ProcInfo, all: &'a [ProcInfo]) -> Option<&'a ProcInfo> {
    let mut ppid = p.ppid;
    for _ in 0..8 {
        let parent = all.iter().find(|q| q.pid == ppid)?;
        if parent.zygote {
            return Some(parent);
        }
        ppid = parent.ppid;
    }
    None
}

/// Whether the cgroups listed in `/proc/<pid>/cgroup` are frozen: the v1 freezer's
/// `freezer.state`, or `frozen 1` in a cgroup2 `cgroup.events` (unified or hybrid mount).
fn frozen(proc_cgroup: &str) -> bool {
    for line in proc_cgroup.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        if controllers.split(',').any(|c| c == "freezer") {
            let state =
                std::fs::read_to_string(format!("/sys/fs/cgroup/freezer{path}/freezer.state"))
                    .unwrap_or_default();
            if state.trim() == "FROZEN" {
                return true;
            }
        } else if controllers.is_empty() && path != "/" {
            for root in ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"] {
                let events = std::fs::read_to_string(format!("{root}{path}/cgroup.events"))
                    .unwrap_or_default();
                if events.lines().any(|l| l.trim() == "frozen 1") {
                    return true;
                }
            }
        }
    }
    false
}

/// The state letter and the parent pid from `/proc/<pid>/stat` (the fields after the
/// parenthesised command name).
fn parse_stat(stat: &str) -> Option<(char, u32)> {
    let mut fields = stat[stat.rfind(')')? + 1..].split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((state, ppid))
}

/// Sum of the PSS of `p` and of its ancestors up to (not including) a process outside `all`:
/// the runtime plus whatever wraps it per container (a sandbox's launcher and init).
pub fn chain_pss_kb(p: &ProcInfo, all: &[ProcInfo]) -> Option<u64> {
    chain_kb(p, all, |q| q.pss_kb)
}

/// [`chain_pss_kb`] for the USS: the private memory of one container.
pub fn chain_uss_kb(p: &ProcInfo, all: &[ProcInfo]) -> Option<u64> {
    chain_kb(p, all, |q| q.uss_kb)
}

fn chain_kb(p: &ProcInfo, all: &[ProcInfo], kb: impl Fn(&ProcInfo) -> Option<u64>) -> Option<u64> {
    let mut total = kb(p)?;
    let mut ppid = p.ppid;
    for _ in 0..8 {
        let Some(parent) = all.iter().find(|q| q.pid == ppid) else {
            break;
        };
        // A parent shared by several runtimes (a zygote, a pool helper) is not per container.
        if parent.zygote || all.iter().filter(|q| q.ppid == parent.pid).count() > 1 {
            break;
        }
        total += kb(parent).unwrap_or(0);
        ppid = parent.ppid;
    }
    Some(total)
}

/// A `kB` field of `/proc/<pid>/smaps_rollup`.
fn rollup_field(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_fields() {
        assert_eq!(parse_stat("123 (node a) b) T 77 2 3"), Some(('T', 77)));
        assert_eq!(parse_stat("garbage"), None);
        assert!(!frozen("0::/\n"));
        assert!(!frozen("garbage"));
        let rollup = "00400000-7fff [rollup]\nRss:    9400 kB\nPss:    6012 kB\nPss_Anon: 1 kB\n";
        assert_eq!(rollup_field(rollup, "Pss:"), Some(6012));
        assert_eq!(rollup_field(rollup, "Rss:"), Some(9400));
        assert_eq!(rollup_field(rollup, "Swap:"), None);
    }

    #[test]
    fn sums_a_container_chain() {
        let p = |pid, ppid, pss| ProcInfo {
            pid,
            ppid,
            exe: String::new(),
            cmdline: String::new(),
            state: 'S',
            paused: false,
            pss_kb: Some(pss),
            rss_kb: None,
            uss_kb: Some(pss / 2),
            zygote: false,
        };
        // server 1 -> launcher 2 -> init 3 -> runtime 4; a shared helper 5 -> runtimes 6, 7.
        let all = vec![
            p(2, 1, 100),
            p(3, 2, 10),
            p(4, 3, 5000),
            p(5, 1, 900),
            p(6, 5, 3000),
            p(7, 5, 3000),
        ];
        assert_eq!(chain_pss_kb(&all[2], &all), Some(5110));
        assert_eq!(chain_pss_kb(&all[4], &all), Some(3000));
        assert_eq!(chain_uss_kb(&all[2], &all), Some(2555));
        assert!(zygote_of(&all[2], &all).is_none());
        // server 1 -> zygote 8 -> forked launcher 9 -> init 10 -> runtime 11: the chain stops
        // at the zygote even when it has forked only one container.
        let mut all = all;
        all.extend([p(8, 1, 18000), p(9, 8, 300), p(10, 9, 300), p(11, 10, 2900)]);
        all[6].zygote = true;
        assert_eq!(chain_pss_kb(&all[9], &all), Some(3500));
        assert_eq!(zygote_of(&all[9], &all).map(|z| z.pid), Some(8));
    }

    #[tokio::test]
    async fn waits_while_a_descendant_is_an_npm_install() {
        let me = std::process::id();
        let mut npm = std::process::Command::new("bash")
            .args(["-c", "exec -a 'npm ci' sleep 0.4"])
            .spawn()
            .unwrap();
        // Until bash has exec'd, the child is not yet named npm.
        let t0 = std::time::Instant::now();
        while !descendants(me).iter().any(is_setup) {
            assert!(t0.elapsed() < Duration::from_secs(5), "no npm child seen");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let waited = wait_for_setup(me, Duration::from_secs(10)).await;
        assert!(waited >= Duration::from_millis(200), "{waited:?}");
        assert!(npm.try_wait().unwrap().is_some(), "returned while npm ran");
        // Nothing to wait for now, and the limit bounds the wait.
        assert!(wait_for_setup(me, Duration::from_secs(10)).await < Duration::from_secs(1));
        let mut npm = std::process::Command::new("bash")
            .args(["-c", "exec -a 'npm ci' sleep 3"])
            .spawn()
            .unwrap();
        while !descendants(me).iter().any(is_setup) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(wait_for_setup(me, Duration::from_millis(100)).await < Duration::from_secs(2));
        npm.kill().unwrap();
        npm.wait().unwrap();
    }

    #[test]
    fn reads_this_process() {
        let me = proc_info(std::process::id()).expect("own /proc entry");
        assert!(me.pss_kb.is_some_and(|kb| kb > 0));
        // A test binary's heap is its own; its code is shared with nothing but the page cache.
        assert!(
            me.uss_kb
                .is_some_and(|kb| kb > 0 && kb <= me.rss_kb.unwrap_or(0))
        );
        assert!(matches!(me.state, 'R' | 'S'));
        assert!(!me.paused);
        assert!(!me.exe.is_empty());
        assert_eq!(chain_pss_kb(&me, std::slice::from_ref(&me)), me.pss_kb);
    }
}
