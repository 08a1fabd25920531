//! The performance targets (2-core machine, load generator on the same machine), checked against
//! a report.

use crate::report::{Report, TargetCheck};

/// `(target name, op, limit, unit, scenario, metric)`.
const TARGETS: &[(&str, &str, f64, &str, &str, &str)] = &[
    (
        "warm overhead p50 (node)",
        "<=",
        0.25,
        "ms",
        "warm",
        "overhead node p50",
    ),
    (
        "warm overhead p99 (node)",
        "<=",
        1.0,
        "ms",
        "warm",
        "overhead node p99",
    ),
    (
        "warm overhead p50 (python)",
        "<=",
        0.25,
        "ms",
        "warm",
        "overhead python p50",
    ),
    (
        "warm overhead p99 (python)",
        "<=",
        1.0,
        "ms",
        "warm",
        "overhead python p99",
    ),
    (
        "throughput c1 @8 vs bare node",
        ">=",
        0.5,
        "x",
        "throughput",
        "ratio c1 @8",
    ),
    (
        "throughput c1 @64 vs bare node",
        ">=",
        0.5,
        "x",
        "throughput",
        "ratio c1 @64",
    ),
    (
        "throughput c8 @8 vs bare node",
        ">=",
        0.5,
        "x",
        "throughput",
        "ratio c8 @8",
    ),
    (
        "throughput c8 @64 vs bare node",
        ">=",
        0.5,
        "x",
        "throughput",
        "ratio c8 @64",
    ),
    (
        "first invoke, node stem cell (p50)",
        "<=",
        7.0,
        "ms",
        "cold",
        "stem node e2e",
    ),
    (
        "first invoke, python zygote (p50)",
        "<=",
        2.0,
        "ms",
        "cold",
        "stem python e2e",
    ),
    (
        "true cold node (p50)",
        "<=",
        85.0,
        "ms",
        "cold",
        "true cold node e2e",
    ),
    (
        "true cold python (p50)",
        "<=",
        20.0,
        "ms",
        "cold",
        "true cold python e2e",
    ),
    (
        "resume (node, p50)",
        "<=",
        0.2,
        "ms",
        "pool",
        "resume overhead node p50",
    ),
    (
        "resume (python, p50)",
        "<=",
        0.2,
        "ms",
        "pool",
        "resume overhead python p50",
    ),
    // The p50 of `Container::pause` on a sandbox, timed directly (n/a when not root).
    (
        "pause",
        "<=",
        0.2,
        "ms",
        "pool",
        crate::scenarios::sandbox::PAUSE,
    ),
    (
        "idle warm container PSS (node)",
        "<=",
        10.0,
        "MB",
        "pool",
        "idle warm container PSS node",
    ),
    (
        "idle warm container PSS (python)",
        "<=",
        10.0,
        "MB",
        "pool",
        "idle warm container PSS python",
    ),
    (
        "sequence overhead per step (p50)",
        "<=",
        0.3,
        "ms",
        "sequence",
        "overhead per step p50",
    ),
];

pub(crate) fn check(report: &Report) -> Vec<TargetCheck> {
    TARGETS
        .iter()
        .filter(|t| report.scenario(t.4).is_some())
        .map(|&(name, op, limit, unit, scenario, metric)| {
            let op = if op == ">=" { ">=" } else { "<=" };
            TargetCheck::new(
                name,
                op,
                limit,
                unit,
                &format!("{scenario}/{metric}"),
                report.value(scenario, metric),
            )
        })
        .collect()
}
