//! The benchmark harness behind `brisk bench`.
//!
//! It starts its own `brisk serve` instances (or targets `--apihost`), starts bare Node.js and
//! Python HTTP servers running the same noop function as the floor of this machine, runs the
//! scenarios (warm, throughput, cold, sequence, trigger, pool, mixed), prints a table, checks the
//! performance targets, and writes the JSON report (`--out`) and an SVG of the latency distributions
//! (`--plot`). Absolute times drift on shared machines; the floors measured in the same run are
//! what to compare with.
//!
//! Everything is measured from outside (REST API, `brisk serve` flags, `/proc`) except what no
//! client can see: the pool scenario times the sandbox's create, pause and resume directly on a
//! `brisk_sandbox::SandboxFactory` of its own when it runs as root.
//!
//! The whole run executes on one dedicated thread with a single-threaded tokio runtime, so the
//! load generator uses one core and behaves the same whatever runtime the caller has.

#![forbid(unsafe_code)]

pub mod api;
pub mod client;
pub mod load;
pub mod procs;
pub mod report;
mod scenarios;
pub mod stats;
pub mod svg;
mod targets;
pub mod wire;
pub mod zipf;

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};

use crate::client::{Conn, Target};
use crate::procs::BriskServer;
use crate::report::{Report, Scenario};

/// The guest key `brisk serve` creates.
pub const GUEST_KEY: &str = "23bc46b1-71f6-4ed5-8c54-816aa4f8c502:123zO3xZCLrMN6v2BKK1dXYFpXlPkccOFqm12CdAsMgRU4VrNZ9lyGVCGuMDGIwP";

/// The scenarios, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ScenarioName {
    Warm,
    Throughput,
    Cold,
    Sequence,
    Trigger,
    Pool,
    Mixed,
}

impl ScenarioName {
    pub const ALL: [ScenarioName; 7] = [
        ScenarioName::Warm,
        ScenarioName::Throughput,
        ScenarioName::Cold,
        ScenarioName::Sequence,
        ScenarioName::Trigger,
        ScenarioName::Pool,
        ScenarioName::Mixed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ScenarioName::Warm => "warm",
            ScenarioName::Throughput => "throughput",
            ScenarioName::Cold => "cold",
            ScenarioName::Sequence => "sequence",
            ScenarioName::Trigger => "trigger",
            ScenarioName::Pool => "pool",
            ScenarioName::Mixed => "mixed",
        }
    }
}

/// Benchmark Brisk against the floor of this machine (bare Node.js and Python HTTP servers).
#[derive(Args, Debug, Clone)]
pub struct BenchArgs {
    /// Benchmark this running server instead of starting one. Scenarios that need servers with
    /// other flags (true cold, pool) still start their own from `--brisk-bin`.
    #[arg(long, env = "BRISK_BENCH_APIHOST")]
    pub apihost: Option<String>,
    /// `uuid:key` of the namespace to benchmark in (default: the guest key of `brisk serve`).
    #[arg(long, env = "BRISK_BENCH_AUTH", default_value = GUEST_KEY)]
    pub auth: String,
    /// Run every scenario briefly (well under a minute): proves the harness works, numbers are
    /// rough.
    #[arg(long)]
    pub quick: bool,
    /// Write every metric as JSON to this file.
    #[arg(long, value_name = "FILE.json")]
    pub out: Option<PathBuf>,
    /// Write an SVG chart of the latency distributions to this file.
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<PathBuf>,
    /// Scenarios to run (default: all).
    #[arg(long, value_delimiter = ',', value_enum)]
    pub scenarios: Vec<ScenarioName>,
    /// The `brisk` binary to start servers from (default: this executable).
    #[arg(long, env = "BRISK_BIN", value_name = "PATH")]
    pub brisk_bin: Option<PathBuf>,
    /// Node.js for the floor server (call interpreters directly, never through a version shim).
    #[arg(long, default_value = "/usr/bin/node")]
    pub node: PathBuf,
    /// Python for the floor server.
    #[arg(long, default_value = "/usr/bin/python3")]
    pub python: PathBuf,
    /// Seconds each load phase is measured (default 10, or 1 with --quick).
    #[arg(long, value_name = "SECS")]
    pub duration: Option<f64>,
    /// Fresh actions per kind in the cold scenario (default 20, or 3 with --quick).
    #[arg(long, value_name = "N")]
    pub cold_actions: Option<usize>,
    /// Distinct actions in the mixed scenario.
    #[arg(long, value_name = "N", default_value_t = 200)]
    pub mixed_actions: usize,
    /// Zipf exponent of the mixed scenario's popularity.
    #[arg(long, value_name = "S", default_value_t = 1.0)]
    pub zipf_s: f64,
    /// Program and leading arguments that run the sandbox launcher, as `brisk serve` uses them
    /// (set by the `brisk` binary: `brisk-launcher` beside it, or itself and its hidden
    /// launcher argument). With it, and as root, the pool scenario times the sandbox's create,
    /// pause and resume directly.
    #[arg(skip)]
    pub sandbox_launcher: Option<Vec<OsString>>,
    /// The sandbox's shared object for runtime zygotes, as `brisk serve` finds it (set by the
    /// `brisk` binary): the directly timed sandboxes fork from a zygote as serve's do.
    #[arg(skip)]
    pub zygote_lib: Option<PathBuf>,
}

impl Default for BenchArgs {
    fn default() -> Self {
        Self {
            apihost: None,
            auth: GUEST_KEY.to_string(),
            quick: false,
            out: None,
            plot: None,
            scenarios: Vec::new(),
            brisk_bin: None,
            node: PathBuf::from("/usr/bin/node"),
            python: PathBuf::from("/usr/bin/python3"),
            duration: None,
            cold_actions: None,
            mixed_actions: 200,
            zipf_s: 1.0,
            sandbox_launcher: None,
            zygote_lib: None,
        }
    }
}

/// How long and how many, from `--quick` and the overrides.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub warmup: Duration,
    pub measure: Duration,
    /// Warm-up of throughput phases (64 connections create many containers first).
    pub tp_warmup: Duration,
    /// Rounds of the throughput scenario: the floor and Brisk take turns, each round measuring
    /// `measure / tp_rounds`, so a machine that speeds up or slows down during the scenario
    /// moves both sides of the ratio alike.
    pub tp_rounds: u32,
    /// Rounds of the warm scenario: Brisk and the floor take turns, each round measuring
    /// `measure / warm_rounds` of each.
    pub warm_rounds: u32,
    pub cold_actions: usize,
    pub seq_first_runs: usize,
    pub trigger_reps: usize,
    pub pool_reps: usize,
    pub pool_idle_actions: usize,
    /// Sandboxes created, and pause/resume cycles, in the pool scenario's direct measurement.
    pub sandbox_creates: usize,
    pub sandbox_pauses: usize,
    pub mixed_actions: usize,
    pub mixed_measure: Duration,
    pub mixed_connections: usize,
    pub zipf_s: f64,
    /// Pause after a server starts, for its stem cells to come up.
    pub settle: Duration,
}

impl Plan {
    fn new(args: &BenchArgs) -> Self {
        let q = args.quick;
        let measure =
            Duration::from_secs_f64(args.duration.unwrap_or(if q { 1.0 } else { 10.0 }).max(0.1));
        Self {
            warmup: Duration::from_millis(if q { 300 } else { 2000 }),
            measure,
            tp_warmup: Duration::from_millis(if q { 700 } else { 3000 }),
            tp_rounds: if q { 1 } else { 10 },
            warm_rounds: if q { 1 } else { 20 },
            cold_actions: args.cold_actions.unwrap_or(if q { 3 } else { 20 }).max(1),
            seq_first_runs: if q { 1 } else { 5 },
            trigger_reps: if q { 5 } else { 100 },
            pool_reps: if q { 5 } else { 40 },
            pool_idle_actions: if q { 2 } else { 5 },
            sandbox_creates: if q { 3 } else { 10 },
            sandbox_pauses: if q { 5 } else { 50 },
            mixed_actions: args.mixed_actions.max(1),
            mixed_measure: if q {
                Duration::from_secs(3)
            } else {
                measure * 3
            },
            mixed_connections: 8,
            zipf_s: args.zipf_s,
            settle: Duration::from_millis(if q { 500 } else { 1000 }),
        }
    }
}

/// What the scenarios share.
pub(crate) struct Ctx {
    pub args: BenchArgs,
    pub plan: Plan,
    pub bin: PathBuf,
    /// The server under test in this scenario.
    pub target: Target,
    /// Prefix of every entity name this run creates.
    pub prefix: String,
}

impl Ctx {
    pub fn name(&self, suffix: &str) -> String {
        format!("{}-{suffix}", self.prefix)
    }

    pub async fn conn(&self) -> anyhow::Result<Conn> {
        Conn::connect(&self.target).await
    }

    /// A server with extra `brisk serve` flags, started from `--brisk-bin`.
    pub async fn extra_server(&self, flags: &[&str]) -> anyhow::Result<(BriskServer, Target)> {
        let flags: Vec<String> = flags.iter().map(|s| s.to_string()).collect();
        let server = BriskServer::start(&self.bin, &flags).await?;
        let target = Target::new(&server.apihost, Some(&self.args.auth))?;
        wait_ready(&target).await?;
        settle(&server, &self.plan).await;
        Ok((server, target))
    }
}

/// Lets a server that the harness started finish its background setup and its stem cells come
/// up before anything is measured on it.
async fn settle(server: &BriskServer, plan: &Plan) {
    let waited = server.wait_background_setup().await;
    if waited >= Duration::from_millis(500) {
        progress(&format!(
            "waited {:.1} s for the server's background setup (npm ci)",
            waited.as_secs_f64()
        ));
    }
    tokio::time::sleep(plan.settle).await;
}

pub(crate) fn progress(msg: &str) {
    eprintln!("brisk bench: {msg}");
}

/// Runs the benchmark: scenarios, table on stdout, `--out` JSON and `--plot` SVG. Fails (after
/// writing the files) when a scenario failed.
pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("brisk-bench".into())
        .spawn(move || {
            let res = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("build the benchmark runtime")
                .and_then(|rt| rt.block_on(run_here(args)));
            let _ = tx.send(res);
        })
        .context("start the benchmark thread")?;
    rx.await.context("the benchmark thread panicked")?
}

async fn run_here(args: BenchArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let started_unix_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let plan = Plan::new(&args);
    let bin = match &args.brisk_bin {
        Some(b) => b.clone(),
        None => std::env::current_exe().context("find the brisk binary (pass --brisk-bin)")?,
    };
    let selected: Vec<ScenarioName> = if args.scenarios.is_empty() {
        ScenarioName::ALL.to_vec()
    } else {
        ScenarioName::ALL
            .into_iter()
            .filter(|s| args.scenarios.contains(s))
            .collect()
    };

    let prefix = format!("bench{:08x}", rand::random::<u32>());
    let cpu_start = cpu_times();
    let mut report = Report {
        command: std::env::args().collect::<Vec<_>>().join(" "),
        cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
        quick: args.quick,
        started_unix_ms,
        duration_s: 0.0,
        loadavg_start: loadavg(),
        loadavg_end: None,
        cpu_steal: None,
        apihost: args.apihost.clone(),
        brisk_bin: bin.display().to_string(),
        scenarios: Vec::new(),
        targets: Vec::new(),
    };
    for name in selected {
        progress(&format!("scenario {}", name.as_str()));
        let mut s = Scenario::new(name.as_str());
        let t0 = Instant::now();
        let res = async {
            // Every scenario gets a fresh server (unless --apihost), so the containers left by
            // one (64 connections fill the pool) do not decide the next one's cold starts.
            let server = match (&args.apihost, name) {
                (Some(_), _) | (None, ScenarioName::Pool) => None,
                (None, _) => Some(BriskServer::start(&bin, &[]).await?),
            };
            let apihost = match (&args.apihost, &server) {
                (Some(h), _) => h.as_str(),
                (None, Some(s)) => s.apihost.as_str(),
                // The pool scenario starts its own servers.
                (None, None) => "127.0.0.1:9",
            };
            let target = Target::new(apihost, Some(&args.auth))?;
            if server.is_some() || args.apihost.is_some() {
                wait_ready(&target).await?;
            }
            if let Some(server) = &server {
                settle(server, &plan).await;
            }
            let ctx = Ctx {
                plan: plan.clone(),
                bin: bin.clone(),
                target,
                prefix: prefix.clone(),
                args: args.clone(),
            };
            let res = scenarios::run(name, &ctx, &report, &mut s).await;
            if let Some(server) = server {
                server.stop().await;
            }
            res
        }
        .await;
        if let Err(e) = res {
            progress(&format!("scenario {} failed: {e:#}", name.as_str()));
            s.error = Some(format!("{e:#}"));
        }
        progress(&format!(
            "scenario {} took {:.1} s",
            name.as_str(),
            t0.elapsed().as_secs_f64()
        ));
        report.scenarios.push(s);
    }
    report.duration_s = started.elapsed().as_secs_f64();
    report.loadavg_end = loadavg();
    report.cpu_steal = cpu_start
        .zip(cpu_times())
        .and_then(|(a, b)| steal_fraction(a, b));
    report.targets = targets::check(&report);

    println!("{}", report.table());
    if let Some(path) = &args.out {
        std::fs::write(path, report.to_json())
            .with_context(|| format!("write {}", path.display()))?;
    }
    if let Some(path) = &args.plot {
        std::fs::write(path, svg::render(&report))
            .with_context(|| format!("write {}", path.display()))?;
    }
    let failed: Vec<&str> = report
        .scenarios
        .iter()
        .filter(|s| s.error.is_some())
        .map(|s| s.name.as_str())
        .collect();
    if !failed.is_empty() {
        bail!("scenarios failed: {}", failed.join(", "));
    }
    Ok(())
}

/// Total and stolen CPU time (ticks) of the machine, from the `cpu` line of `/proc/stat`.
fn cpu_times() -> Option<(u64, u64)> {
    parse_cpu_line(&std::fs::read_to_string("/proc/stat").ok()?)
}

/// `(total, steal)` from `cpu  user nice system idle iowait irq softirq steal guest guest_nice`;
/// guest time is already counted in user time, so it is not added again.
fn parse_cpu_line(stat: &str) -> Option<(u64, u64)> {
    let fields: Vec<u64> = stat
        .lines()
        .find(|l| l.starts_with("cpu "))?
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    (fields.len() == 8).then(|| (fields.iter().sum(), fields[7]))
}

/// Share of the CPU time between two [`cpu_times`] readings that was stolen.
fn steal_fraction(start: (u64, u64), end: (u64, u64)) -> Option<f64> {
    let total = end.0.checked_sub(start.0).filter(|t| *t > 0)?;
    Some(end.1.saturating_sub(start.1) as f64 / total as f64)
}

/// The 1, 5 and 15 minute load averages.
fn loadavg() -> Option<String> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    Some(
        text.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
    )
}

/// Waits until the API answers an authenticated list.
async fn wait_ready(target: &Target) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut last = String::new();
    while Instant::now() < deadline {
        match Conn::connect(target).await {
            Ok(mut c) => match c.get(&format!("{}/actions?limit=1", api::NS)).await {
                Ok(r) if r.status.is_success() => return Ok(()),
                Ok(r) => last = format!("HTTP {}: {}", r.status, String::from_utf8_lossy(&r.body)),
                Err(e) => last = format!("{e:#}"),
            },
            Err(e) => last = format!("{e:#}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("server at {} not ready: {last}", target.addr)
}

#[cfg(test)]
mod tests {
    use clap::{Parser, Subcommand};

    use super::*;

    #[test]
    fn cpu_steal_comes_from_the_cpu_line_of_proc_stat() {
        let a = parse_cpu_line("cpu  100 0 50 800 10 0 5 35 0 0\ncpu0 1 2 3 4 5 6 7 8 9 10\n");
        assert_eq!(a, Some((1000, 35)));
        let b = parse_cpu_line("cpu  200 0 100 1500 10 0 5 185 7 0\n");
        assert_eq!(b, Some((2000, 185)));
        assert_eq!(steal_fraction(a.unwrap(), b.unwrap()), Some(0.15));
        assert_eq!(steal_fraction((5, 1), (5, 1)), None);
        assert_eq!(parse_cpu_line("cpu0 1 2 3\n"), None);
        assert!(cpu_times().is_some_and(|(total, steal)| total >= steal));
    }

    /// Shaped like `brisk`: global `--apihost`/`--auth` for the client commands, and `bench`.
    #[derive(Parser)]
    struct Cli {
        #[command(subcommand)]
        command: Cmd,
        #[arg(long, global = true)]
        apihost: Option<String>,
        #[arg(long, global = true)]
        auth: Option<String>,
    }

    #[derive(Subcommand)]
    enum Cmd {
        Bench(BenchArgs),
    }

    fn parse(args: &[&str]) -> BenchArgs {
        let cli = Cli::try_parse_from(args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
        let Cmd::Bench(b) = cli.command;
        b
    }

    #[test]
    fn parses_beside_global_client_flags() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
        let b = parse(&[
            "brisk",
            "bench",
            "--quick",
            "--scenarios",
            "warm,cold",
            "--apihost",
            "http://h:1",
        ]);
        assert!(b.quick);
        assert_eq!(b.scenarios, vec![ScenarioName::Warm, ScenarioName::Cold]);
        assert_eq!(b.apihost.as_deref(), Some("http://h:1"));
        assert_eq!(b.auth, GUEST_KEY);
        assert_eq!(b.node, PathBuf::from("/usr/bin/node"));
    }

    #[test]
    fn quick_plan_is_brief() {
        let quick = Plan::new(&BenchArgs {
            quick: true,
            ..BenchArgs::default()
        });
        assert_eq!(quick.measure, Duration::from_secs(1));
        assert_eq!(quick.cold_actions, 3);
        let full = Plan::new(&BenchArgs {
            duration: Some(2.5),
            cold_actions: Some(7),
            ..BenchArgs::default()
        });
        assert_eq!(full.measure, Duration::from_millis(2500));
        assert_eq!(full.cold_actions, 7);
        assert_eq!(full.mixed_measure, Duration::from_millis(7500));
    }
}
