//! Per-container cgroups on cgroup v1 (one directory per controller) or v2 (one unified
//! directory), under `brisk/<instance>/<container>` in each hierarchy.
//!
//! **Architecture Invariant:** every cgroup this crate creates lives below
//! `<hierarchy>/brisk/<instance>`, so start-up cleanup and shutdown can find all of them (and
//! nothing else) by walking that directory.

use std::fs::{self, File};
use std::io::ErrorKind;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::shares_to_weight;
use crate::error::{Error, Result};

const ROOT: &str = "/sys/fs/cgroup";
/// v1 controllers a container gets a directory in.
const V1_CONTROLLERS: [&str; 4] = ["memory", "pids", "cpu", "freezer"];
/// An empty v1 freezer cgroup in each instance directory that stays frozen (see
/// [`Hierarchy::prepare`]); not a container.
pub const FREEZER_ANCHOR: &str = "_frozen";

/// Which cgroup layout the machine has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hierarchy {
    /// One directory per controller: `<root>/<controller>`.
    V1 { root: PathBuf, memsw: bool },
    /// The unified hierarchy mounted at `root`, with memory, pids and cpu delegated.
    V2 { root: PathBuf },
}

/// Limits of one container's cgroup.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub memory_bytes: u64,
    pub pids_max: u64,
    pub cpu_shares: u64,
}

impl Hierarchy {
    /// Looks at `/sys/fs/cgroup`: a pure v2 mount has `cgroup.controllers` at its root;
    /// otherwise the v1 controllers must all be mounted (hybrid layouts use v1).
    pub fn detect() -> Result<Self> {
        let root = PathBuf::from(ROOT);
        if root.join("cgroup.controllers").exists() {
            let have = fs::read_to_string(root.join("cgroup.controllers")).unwrap_or_default();
            for c in ["memory", "pids", "cpu"] {
                if !have.split_whitespace().any(|h| h == c) {
                    return Err(Error::NoCgroups(format!(
                        "cgroup v2 lacks the {c} controller"
                    )));
                }
            }
            return Ok(Hierarchy::V2 { root });
        }
        for c in V1_CONTROLLERS {
            if !root.join(c).join("cgroup.procs").exists() {
                return Err(Error::NoCgroups(format!(
                    "cgroup v1 controller {c} is not mounted at {}",
                    root.join(c).display()
                )));
            }
        }
        let memsw = root.join("memory/memory.memsw.limit_in_bytes").exists();
        Ok(Hierarchy::V1 { root, memsw })
    }

    /// `brisk/<instance>` directories (one per v1 controller, one on v2).
    pub fn instance_dirs(&self, instance: &str) -> Vec<PathBuf> {
        let rel = Path::new("brisk").join(instance);
        match self {
            Hierarchy::V1 { root, .. } => V1_CONTROLLERS
                .iter()
                .map(|c| root.join(c).join(&rel))
                .collect(),
            Hierarchy::V2 { root } => vec![root.join(rel)],
        }
    }

    /// Creates the instance directories (and on v2 delegates the controllers down to them).
    pub fn prepare(&self, instance: &str) -> Result<()> {
        if let Hierarchy::V2 { root } = self {
            let mut dir = root.clone();
            for part in ["brisk", instance] {
                write(&dir.join("cgroup.subtree_control"), "+memory +pids +cpu")?;
                dir = dir.join(part);
                mkdir(&dir)?;
            }
            write(&dir.join("cgroup.subtree_control"), "+memory +pids +cpu")?;
            return Ok(());
        }
        for d in self.instance_dirs(instance) {
            fs::create_dir_all(&d).map_err(|e| Error::io("create cgroup", &d, e))?;
        }
        // The v1 freezer switches a global static key on when a first cgroup starts freezing
        // and off when the last one thaws, and each switch patches kernel text on every CPU:
        // 0.1-0.2 ms more for a pause or a resume while no other container is paused
        // (measured here). An empty cgroup that stays frozen keeps the key on. Only a cost
        // when it fails, so it is not an error.
        if let Some(anchor) = self.freezer_anchor(instance) {
            let made = mkdir(&anchor).and_then(|()| write(&anchor.join("freezer.state"), "FROZEN"));
            if let Err(e) = made {
                tracing::debug!(error = %e, "no frozen freezer anchor");
            }
        }
        Ok(())
    }

    /// The frozen anchor cgroup of `instance` (v1 only).
    fn freezer_anchor(&self, instance: &str) -> Option<PathBuf> {
        match self {
            Hierarchy::V1 { root, .. } => Some(
                root.join("freezer/brisk")
                    .join(instance)
                    .join(FREEZER_ANCHOR),
            ),
            Hierarchy::V2 { .. } => None,
        }
    }

    /// Creates a container's cgroup with its limits.
    pub fn create(&self, instance: &str, name: &str, limits: Limits) -> Result<Cgroup> {
        let dirs: Vec<PathBuf> = self
            .instance_dirs(instance)
            .into_iter()
            .map(|d| d.join(name))
            .collect();
        let mut cg = Cgroup {
            hierarchy: self.clone(),
            dirs,
            freezer: None,
        };
        for d in &cg.dirs {
            if let Err(e) = mkdir(d) {
                // The instance directories are removed by cleanup; make them again.
                let missing =
                    matches!(&e, Error::Io { source, .. } if source.kind() == ErrorKind::NotFound);
                if !missing {
                    cg.remove();
                    return Err(e);
                }
                self.prepare(instance)?;
                mkdir(d)?;
            }
        }
        if let Err(e) = cg.set_limits(limits) {
            cg.remove();
            return Err(e);
        }
        let control = cg.freezer_files().0;
        match fs::OpenOptions::new().write(true).open(&control) {
            Ok(f) => cg.freezer = Some(Arc::new(f)),
            Err(e) => {
                cg.remove();
                return Err(Error::io("open", &control, e));
            }
        }
        Ok(cg)
    }

    /// Kills and removes every cgroup below `brisk/<instance>` (left by a crash or a
    /// shutdown that did not finish). Returns how many containers it found.
    pub fn cleanup_instance(&self, instance: &str) -> usize {
        let mut names = std::collections::BTreeSet::new();
        for d in self.instance_dirs(instance) {
            if let Ok(entries) = fs::read_dir(&d) {
                for e in entries.flatten() {
                    if e.path().is_dir() && e.file_name() != FREEZER_ANCHOR {
                        names.insert(e.file_name());
                    }
                }
            }
        }
        for name in &names {
            let cg = Cgroup {
                hierarchy: self.clone(),
                dirs: self
                    .instance_dirs(instance)
                    .into_iter()
                    .map(|d| d.join(name))
                    .filter(|d| d.exists())
                    .collect(),
                freezer: None,
            };
            cg.kill_all();
            cg.remove();
        }
        names.len()
    }

    /// Removes the (empty) instance directories.
    pub fn remove_instance(&self, instance: &str) {
        if let Some(anchor) = self.freezer_anchor(instance) {
            let _ = fs::write(anchor.join("freezer.state"), "THAWED");
            let _ = fs::remove_dir(&anchor);
        }
        for d in self.instance_dirs(instance) {
            let _ = fs::remove_dir(&d);
            if let Some(parent) = d.parent() {
                // Only succeeds when no other instance is left.
                let _ = fs::remove_dir(parent);
            }
        }
    }
}

/// One container's cgroup (a directory per v1 controller, or one v2 directory).
#[derive(Debug, Clone)]
pub struct Cgroup {
    hierarchy: Hierarchy,
    dirs: Vec<PathBuf>,
    /// The freezer's control file, opened once: resume is on the request path, and an open
    /// (a path walk through cgroupfs) plus close costs more than the write itself.
    freezer: Option<Arc<File>>,
}

impl Cgroup {
    /// The files a single-threaded process writes to in order to join. On v1 that is `tasks`
    /// with "0" (the calling thread): moving one thread skips the global threadgroup lock,
    /// whose RCU synchronisation makes a `cgroup.procs` write take 10-15 ms whenever no other
    /// migration happened recently (measured here), i.e. on most cold starts.
    pub fn join_files(&self) -> Vec<PathBuf> {
        let file = match self.hierarchy {
            Hierarchy::V1 { .. } => "tasks",
            Hierarchy::V2 { .. } => "cgroup.procs",
        };
        self.dirs.iter().map(|d| d.join(file)).collect()
    }

    fn dir(&self, controller: &str) -> &Path {
        match &self.hierarchy {
            Hierarchy::V2 { .. } => &self.dirs[0],
            Hierarchy::V1 { .. } => {
                let i = V1_CONTROLLERS
                    .iter()
                    .position(|c| *c == controller)
                    .unwrap_or(0);
                &self.dirs[i.min(self.dirs.len().saturating_sub(1))]
            }
        }
    }

    fn set_limits(&self, l: Limits) -> Result<()> {
        match &self.hierarchy {
            Hierarchy::V1 { memsw, .. } => {
                let mem = self.dir("memory");
                write(
                    &mem.join("memory.limit_in_bytes"),
                    &l.memory_bytes.to_string(),
                )?;
                if *memsw {
                    // Memory plus swap equal to memory: no escape into swap.
                    write(
                        &mem.join("memory.memsw.limit_in_bytes"),
                        &l.memory_bytes.to_string(),
                    )?;
                }
                write(&self.dir("pids").join("pids.max"), &l.pids_max.to_string())?;
                write(
                    &self.dir("cpu").join("cpu.shares"),
                    &l.cpu_shares.to_string(),
                )?;
            }
            Hierarchy::V2 { .. } => {
                let d = &self.dirs[0];
                write(&d.join("memory.max"), &l.memory_bytes.to_string())?;
                if d.join("memory.swap.max").exists() {
                    write(&d.join("memory.swap.max"), "0")?;
                }
                write(&d.join("pids.max"), &l.pids_max.to_string())?;
                write(
                    &d.join("cpu.weight"),
                    &shares_to_weight(l.cpu_shares).to_string(),
                )?;
            }
        }
        Ok(())
    }

    /// Freezes every process and waits until the kernel reports the cgroup frozen.
    pub fn freeze(&self) -> Result<()> {
        let (control, state) = self.freezer_files();
        let (value, want) = match self.hierarchy {
            Hierarchy::V1 { .. } => ("FROZEN", "FROZEN"),
            Hierarchy::V2 { .. } => ("1", "frozen 1"),
        };
        let done = |s: &str| s.lines().any(|l| l.trim() == want);
        self.write_freezer(&control, value)?;
        // The write returns once freezing started; running tasks stop at their next kernel
        // exit (microseconds), tasks in uninterruptible sleep can take longer. Spin on the
        // state first, then poll with short sleeps, re-writing as the v1 documentation asks.
        let start = Instant::now();
        for round in 0u32.. {
            let now = fs::read_to_string(&state).map_err(|e| Error::io("read", &state, e))?;
            if done(&now) {
                return Ok(());
            }
            if start.elapsed() > Duration::from_secs(1) {
                return Err(Error::io(
                    "freezer did not settle",
                    &state,
                    std::io::Error::from(ErrorKind::TimedOut),
                ));
            }
            if round < 64 {
                std::hint::spin_loop();
                std::thread::yield_now();
            } else {
                std::thread::sleep(Duration::from_micros(50));
                self.write_freezer(&control, value)?;
            }
        }
        Ok(())
    }

    /// Thaws the cgroup: one write. Unlike freezing, thawing completes within the write on
    /// both versions (v1 thaws every task and sets `THAWED` before the write returns; v2
    /// wakes every task and clears `frozen` in `cgroup.events`), so there is nothing to wait
    /// for — resume is on the request path.
    pub fn thaw(&self) -> Result<()> {
        let (control, _) = self.freezer_files();
        let value = match self.hierarchy {
            Hierarchy::V1 { .. } => "THAWED",
            Hierarchy::V2 { .. } => "0",
        };
        self.write_freezer(&control, value)
    }

    /// The file written to freeze or thaw, and the file reporting the state.
    fn freezer_files(&self) -> (PathBuf, PathBuf) {
        match &self.hierarchy {
            Hierarchy::V1 { .. } => {
                let f = self.dir("freezer").join("freezer.state");
                (f.clone(), f)
            }
            Hierarchy::V2 { .. } => (
                self.dirs[0].join("cgroup.freeze"),
                self.dirs[0].join("cgroup.events"),
            ),
        }
    }

    /// Writes the freezer's control file, through the descriptor opened at creation when
    /// there is one (each `write` to a cgroup file is a separate command; the offset is
    /// ignored).
    fn write_freezer(&self, control: &Path, value: &str) -> Result<()> {
        let Some(file) = &self.freezer else {
            return write(control, value);
        };
        match file.write_at(value.as_bytes(), 0) {
            Ok(n) if n == value.len() => Ok(()),
            Ok(_) => Err(Error::io(
                "write cgroup file",
                control,
                std::io::Error::from(ErrorKind::WriteZero),
            )),
            Err(e) => Err(Error::io("write cgroup file", control, e)),
        }
    }

    /// How many times the kernel's OOM killer killed a process of this cgroup.
    pub fn oom_kills(&self) -> u64 {
        let (file, key) = match &self.hierarchy {
            Hierarchy::V1 { .. } => (self.dir("memory").join("memory.oom_control"), "oom_kill"),
            Hierarchy::V2 { .. } => (self.dirs[0].join("memory.events"), "oom_kill"),
        };
        fs::read_to_string(file)
            .ok()
            .and_then(|s| parse_counter(&s, key))
            .unwrap_or(0)
    }

    /// Pids of the cgroup's processes.
    pub fn pids(&self) -> Vec<i32> {
        let file = self.dirs[0].join("cgroup.procs");
        fs::read_to_string(file)
            .map(|s| s.lines().filter_map(|l| l.trim().parse().ok()).collect())
            .unwrap_or_default()
    }

    /// CPU time used by the cgroup's processes, in microseconds (v1 `cpuacct.usage` when
    /// mounted with cpu, else the v2 `cpu.stat`). `None` when not available.
    pub fn cpu_usage_us(&self) -> Option<u64> {
        match &self.hierarchy {
            Hierarchy::V1 { .. } => {
                let f = self.dir("cpu").join("cpuacct.usage");
                fs::read_to_string(f)
                    .ok()
                    .and_then(|s| s.trim().parse::<u64>().ok())
                    .map(|ns| ns / 1000)
            }
            Hierarchy::V2 { .. } => fs::read_to_string(self.dirs[0].join("cpu.stat"))
                .ok()
                .and_then(|s| parse_counter(&s, "usage_usec")),
        }
    }

    /// SIGKILLs every process; freezes first on v1 so that nothing forks in between.
    pub fn kill_all(&self) {
        if let Hierarchy::V2 { .. } = self.hierarchy {
            let kill = self.dirs[0].join("cgroup.kill");
            if kill.exists() && write(&kill, "1").is_ok() {
                return;
            }
        }
        self.kill_except(None);
    }

    /// SIGKILLs every process but `spare` (the launcher, which then reaps the sandbox's init
    /// and exits by itself, so that no zombie is left to the host's init).
    pub fn kill_except(&self, spare: Option<i32>) {
        let frozen = self.freeze().is_ok();
        for pid in self.pids() {
            if Some(pid) == spare {
                continue;
            }
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        if frozen {
            // Killed tasks only die once thawed.
            let _ = self.thaw();
        }
    }

    /// Waits (up to `timeout`) for the cgroup to be empty.
    pub fn wait_empty(&self, timeout: Duration) -> bool {
        let start = Instant::now();
        loop {
            if self.pids().is_empty() {
                return true;
            }
            if start.elapsed() > timeout {
                return false;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
    }

    /// Removes the directories (they must be empty of processes). Retries briefly because the
    /// kernel releases a cgroup a moment after its last process is reaped.
    pub fn remove(&self) {
        for d in &self.dirs {
            let start = Instant::now();
            loop {
                match fs::remove_dir(d) {
                    Ok(()) => break,
                    Err(e) if e.kind() == ErrorKind::NotFound => break,
                    Err(e) if start.elapsed() > Duration::from_secs(2) => {
                        tracing::warn!(error = %e, dir = %d.display(), "remove cgroup");
                        break;
                    }
                    Err(_) => std::thread::sleep(Duration::from_micros(500)),
                }
            }
        }
    }

    /// Whether every directory is gone.
    pub fn is_removed(&self) -> bool {
        self.dirs.iter().all(|d| !d.exists())
    }
}

fn parse_counter(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let mut it = l.split_whitespace();
        (it.next() == Some(key))
            .then(|| it.next().and_then(|v| v.parse().ok()))
            .flatten()
    })
}

fn mkdir(d: &Path) -> Result<()> {
    match fs::create_dir(d) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(Error::io("create cgroup", d, e)),
    }
}

fn write(file: &Path, value: &str) -> Result<()> {
    fs::write(file, value).map_err(|e| Error::io("write cgroup file", file, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A new cgroup directory `dir` holding a shell that spins.
    fn busy_child_in(dir: &Path) -> std::process::Child {
        fs::create_dir(dir).unwrap();
        let child = std::process::Command::new("/bin/sh")
            .args(["-c", "while :; do :; done"])
            .spawn()
            .unwrap();
        fs::write(dir.join("cgroup.procs"), child.id().to_string()).unwrap();
        child
    }

    /// The v2 freezer and `cgroup.kill` on whatever cgroup2 mount the machine has (the
    /// unified mount of a hybrid layout has no controllers, but freezing and killing are core).
    #[test]
    fn v2_freeze_thaw_and_kill() {
        let root = ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"]
            .into_iter()
            .find(|r| {
                Path::new(r).join("cgroup.freeze").exists()
                    || Path::new(r).join("cgroup.controllers").exists()
            });
        let Some(root) = root else {
            eprintln!("SKIP: the kernel has no cgroup2 mount");
            return;
        };
        let dir = Path::new(root).join(format!("brisk-unit-{}", std::process::id()));
        let mut child = busy_child_in(&dir);
        let cg = Cgroup {
            hierarchy: Hierarchy::V2 { root: root.into() },
            dirs: vec![dir.clone()],
            freezer: None,
        };
        cg.freeze().unwrap();
        let events = fs::read_to_string(dir.join("cgroup.events")).unwrap();
        assert!(events.contains("frozen 1"), "{events}");
        cg.thaw().unwrap();
        let events = fs::read_to_string(dir.join("cgroup.events")).unwrap();
        assert!(events.contains("frozen 0"), "{events}");
        cg.kill_all();
        child.wait().unwrap();
        assert!(cg.wait_empty(Duration::from_secs(5)));
        cg.remove();
        assert!(!dir.exists());
    }

    /// The v1 freezer through the descriptor opened at creation: a thaw is complete when its
    /// write returns (resume does not poll), and a frozen task really stops.
    #[test]
    fn v1_thaw_completes_within_the_write() {
        let base = Path::new("/sys/fs/cgroup/freezer");
        if !base.join("cgroup.procs").exists() {
            eprintln!("SKIP: no cgroup v1 freezer");
            return;
        }
        let dir = base.join(format!("brisk-unit-v1-{}", std::process::id()));
        let mut child = busy_child_in(&dir);
        let control = fs::OpenOptions::new()
            .write(true)
            .open(dir.join("freezer.state"))
            .unwrap();
        let cg = Cgroup {
            hierarchy: Hierarchy::V1 {
                root: ROOT.into(),
                memsw: false,
            },
            dirs: vec![dir.clone()],
            freezer: Some(Arc::new(control)),
        };
        let state = || fs::read_to_string(dir.join("freezer.state")).unwrap();
        let ticks = || {
            let stat = fs::read_to_string(format!("/proc/{}/stat", child.id())).unwrap();
            let f: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
            f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
        };
        for _ in 0..20 {
            cg.freeze().unwrap();
            assert_eq!(state().trim(), "FROZEN");
            cg.thaw().unwrap();
            assert_eq!(state().trim(), "THAWED");
        }
        cg.freeze().unwrap();
        let before = ticks();
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(ticks(), before, "a frozen task used CPU");
        cg.thaw().unwrap();
        let start = Instant::now();
        while ticks() == before {
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "the thawed task never ran"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        cg.kill_all();
        child.wait().unwrap();
        assert!(cg.wait_empty(Duration::from_secs(5)));
        cg.remove();
        assert!(!dir.exists());
    }

    /// On v1 each instance keeps an empty frozen cgroup (so pauses and resumes never switch
    /// the freezer's static key); it is not a container for cleanup, and it goes with the
    /// instance.
    #[test]
    fn v1_instances_keep_a_frozen_anchor() {
        let Ok(h @ Hierarchy::V1 { .. }) = Hierarchy::detect() else {
            eprintln!("SKIP: no cgroup v1 hierarchy");
            return;
        };
        let instance = format!("unit-anchor-{}", std::process::id());
        h.prepare(&instance).unwrap();
        let anchor = h.freezer_anchor(&instance).unwrap();
        let state = fs::read_to_string(anchor.join("freezer.state")).unwrap();
        assert_eq!(state.trim(), "FROZEN");
        assert_eq!(
            h.cleanup_instance(&instance),
            0,
            "the anchor is no leftover container"
        );
        assert!(anchor.exists());
        // A container of the instance freezes and thaws as before.
        let cg = h
            .create(
                &instance,
                "c1",
                Limits {
                    memory_bytes: 64 << 20,
                    pids_max: 16,
                    cpu_shares: 1024,
                },
            )
            .unwrap();
        cg.freeze().unwrap();
        cg.thaw().unwrap();
        let state = fs::read_to_string(cg.dir("freezer").join("freezer.state")).unwrap();
        assert_eq!(state.trim(), "THAWED");
        cg.remove();
        h.remove_instance(&instance);
        assert!(!anchor.exists());
        assert!(h.instance_dirs(&instance).iter().all(|d| !d.exists()));
    }

    #[test]
    fn counters_parse() {
        let v1 = "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n";
        assert_eq!(parse_counter(v1, "oom_kill"), Some(3));
        let v2 = "low 0\nhigh 0\nmax 5\noom 2\noom_kill 1\noom_group_kill 0\n";
        assert_eq!(parse_counter(v2, "oom_kill"), Some(1));
        assert_eq!(parse_counter("usage_usec 123\n", "usage_usec"), Some(123));
        assert_eq!(parse_counter("", "oom_kill"), None);
    }
}
