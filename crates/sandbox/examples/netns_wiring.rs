//! Prints what creating pooled network namespaces costs: wall time and CPU (this process and
//! the commands it waited for) of `N` namespaces per policy, created one after another on one
//! thread as the pool's refill thread does. The `egress` row minus the `none` row is the cost
//! of wiring a namespace to the bridge.
//!
//! ```sh
//! cargo run --release -p brisk-sandbox --example netns_wiring [N]   # as root; N = 50
//! ```
//!
//! CPU is `getrusage` of this process and of its waited-for children; the kernel frees dropped
//! namespaces later on its own threads, which neither counts.

use std::ffi::OsString;
use std::path::Path;
use std::time::{Duration, Instant};

use brisk_sandbox::{NetworkPolicy, SandboxConfig, SandboxFactory};
use nix::sys::resource::{UsageWho, getrusage};

fn launcher() -> OsString {
    // The example binary lives in target/<profile>/examples; the launcher one level up.
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    dir.join("brisk-sandbox-exec").into_os_string()
}

/// CPU time (user + system) of this process and of its waited-for children.
fn cpu() -> (Duration, Duration) {
    let of = |who| {
        let u = getrusage(who).expect("getrusage");
        let us = |t: nix::sys::time::TimeVal| {
            Duration::from_micros(t.tv_sec() as u64 * 1_000_000 + t.tv_usec() as u64)
        };
        us(u.user_time()) + us(u.system_time())
    };
    (of(UsageWho::RUSAGE_SELF), of(UsageWho::RUSAGE_CHILDREN))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn measure(factory: &SandboxFactory, policy: NetworkPolicy, n: usize) {
    let mut made = Vec::with_capacity(n);
    let mut samples = Vec::with_capacity(n);
    let (self0, children0) = cpu();
    let start = Instant::now();
    for _ in 0..n {
        let t = Instant::now();
        made.push(factory.create_netns(policy).expect("create namespace"));
        samples.push(t.elapsed());
    }
    let wall = start.elapsed();
    let (self1, children1) = cpu();
    let (own, children) = (self1 - self0, children1 - children0);
    samples.sort();
    let pick = |q: f64| samples[((samples.len() as f64 - 1.0) * q).round() as usize];
    println!(
        "{:<7} n={n:<4} wall {:>7.1} ms ({:.3} ms/ns; p50 {:.3} p90 {:.3} max {:.3})  \
         cpu {:>7.1} ms ({:.3} ms/ns: process {:.1} ms, children {:.1} ms)",
        policy.as_str(),
        ms(wall),
        ms(wall) / n as f64,
        ms(pick(0.5)),
        ms(pick(0.9)),
        ms(pick(1.0)),
        ms(own + children),
        ms(own + children) / n as f64,
        ms(own),
        ms(children),
    );
    drop(made);
}

fn main() {
    let n = std::env::args()
        .nth(1)
        .map_or(50, |a| a.parse().expect("N: a number of namespaces"));
    let mut config = SandboxConfig::new(vec![launcher()], format!("nsbench{}", std::process::id()));
    config.network = NetworkPolicy::Egress;
    config.egress_available = true;
    // No pool thread: every namespace is created here, on this thread.
    config.netns_pool = 0;
    let factory = SandboxFactory::new(config).expect("sandbox factory (run as root)");
    for policy in [NetworkPolicy::None, NetworkPolicy::Egress] {
        // On a thread of its own, like the pool's refill thread.
        std::thread::scope(|s| s.spawn(|| measure(&factory, policy, n)).join())
            .expect("measuring thread");
        // Let the kernel free the dropped namespaces before the next row.
        std::thread::sleep(Duration::from_secs(1));
    }
}
