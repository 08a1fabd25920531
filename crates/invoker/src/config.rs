//! Invoker configuration and its defaults.

use std::path::PathBuf;
use std::time::Duration;

/// How an [`crate::Invoker`] runs.
#[derive(Debug, Clone)]
pub struct InvokerConfig {
    /// Per-container private directories live under here (e.g. `<data-dir>/run`).
    pub run_dir: PathBuf,
    /// Where `runtimes/{node,python,native}/proxy.*` live.
    pub runtimes_dir: PathBuf,
    /// Pool capacity in MB; a container costs its action's memory limit.
    pub user_memory_mb: u64,
    /// Idle time after which a warm container is paused.
    pub pause_grace: Duration,
    /// Idle time after which a warm container is destroyed.
    pub idle_timeout: Duration,
    /// Whether to keep stem cells (prewarmed containers); `false` measures true cold starts.
    pub prewarm: bool,
    /// `__OW_API_HOST` in containers.
    pub api_host: String,
    /// Activations allowed to wait for capacity.
    pub max_queue: usize,
    /// Outbound network access of containers, unless a namespace's limits say otherwise.
    pub network: crate::NetworkPolicy,
    /// Containers of one short action (see [`crate::pool::SHORT_RUN_US`]) busy at once before
    /// its further activations wait briefly for one of them; 0 = no limit.
    pub cpu_slots: u32,
}

impl InvokerConfig {
    /// A configuration with the OpenWhisk defaults.
    pub fn new(run_dir: impl Into<PathBuf>, runtimes_dir: impl Into<PathBuf>) -> Self {
        Self {
            run_dir: run_dir.into(),
            runtimes_dir: runtimes_dir.into(),
            user_memory_mb: default_user_memory_mb(),
            pause_grace: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(600),
            prewarm: true,
            api_host: "http://127.0.0.1:3233".into(),
            max_queue: 10_000,
            network: crate::NetworkPolicy::default(),
            cpu_slots: default_cpu_slots(),
        }
    }
}

/// Twice the CPUs this process may use: enough containers of a short action to keep every core
/// busy while others are between runs.
pub fn default_cpu_slots() -> u32 {
    std::thread::available_parallelism().map_or(2, |n| n.get() as u32) * 2
}

/// Half of the machine's memory (`MemTotal` in `/proc/meminfo`), at least 1024 MB; 2048 MB when
/// it cannot be read.
pub fn default_user_memory_mb() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| parse_mem_total_kb(&s))
        .map_or(2048, |kb| (kb / 1024 / 2).max(1024))
}

fn parse_mem_total_kb(meminfo: &str) -> Option<u64> {
    meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_mem_total() {
        let info = "MemTotal:        8039116 kB\nMemFree:          123 kB\n";
        assert_eq!(parse_mem_total_kb(info), Some(8_039_116));
        assert_eq!(parse_mem_total_kb("nothing"), None);
        assert!(default_user_memory_mb() >= 1024);
    }
}
