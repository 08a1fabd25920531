//! What a run measured: scenarios of metrics, the performance targets checked against them, the
//! printed table and the JSON file.

use std::fmt::Write as _;

use serde::Serialize;

use crate::stats::{Samples, Summary};

#[derive(Debug, Serialize)]
pub struct Report {
    /// The command line that produced this report.
    pub command: String,
    /// Logical CPUs of the machine (the targets assume 2).
    pub cores: usize,
    pub quick: bool,
    pub started_unix_ms: u64,
    pub duration_s: f64,
    /// `/proc/loadavg` at the start and the end: other work on a shared machine skews a run.
    pub loadavg_start: Option<String>,
    pub loadavg_end: Option<String>,
    /// Share of the machine's CPU time the hypervisor gave to other guests during the run
    /// (`steal` in `/proc/stat`): on a virtual machine this is the noise that moves absolute
    /// numbers between runs.
    pub cpu_steal: Option<f64>,
    pub apihost: Option<String>,
    pub brisk_bin: String,
    pub scenarios: Vec<Scenario>,
    pub targets: Vec<TargetCheck>,
}

#[derive(Debug, Serialize)]
pub struct Scenario {
    pub name: String,
    pub metrics: Vec<Metric>,
    pub notes: Vec<String>,
    /// Set when the scenario failed part-way; its metrics so far are kept.
    pub error: Option<String>,
}

impl Scenario {
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_string(),
            metrics: Vec::new(),
            notes: Vec::new(),
            error: None,
        }
    }

    pub fn metric(&self, name: &str) -> Option<&Metric> {
        self.metrics.iter().find(|m| m.name == name)
    }

    /// A latency distribution; its value is the p50.
    pub fn latency(&mut self, name: &str, samples: &Samples, errors: u64) -> &mut Metric {
        let sorted = samples.sorted_ms();
        let summary = Summary::of(&sorted, errors);
        self.metrics.push(Metric {
            name: name.to_string(),
            unit: "ms".into(),
            value: summary.p50,
            summary: Some(summary),
            na: None,
            sorted_ms: sorted,
        });
        self.metrics.last_mut().expect("just pushed")
    }

    /// A single derived number (a rate, a ratio, a difference of percentiles, a size).
    pub fn value(&mut self, name: &str, unit: &str, value: Option<f64>) -> &mut Metric {
        self.metrics.push(Metric {
            name: name.to_string(),
            unit: unit.to_string(),
            value,
            summary: None,
            na: value.is_none().then(|| "not measured".to_string()),
            sorted_ms: Vec::new(),
        });
        self.metrics.last_mut().expect("just pushed")
    }

    /// Something that cannot be measured from outside the server, with the reason.
    pub fn na(&mut self, name: &str, unit: &str, reason: &str) {
        self.metrics.push(Metric {
            name: name.to_string(),
            unit: unit.to_string(),
            value: None,
            summary: None,
            na: Some(reason.to_string()),
            sorted_ms: Vec::new(),
        });
    }

    pub fn note(&mut self, text: impl Into<String>) {
        self.notes.push(text.into());
    }
}

#[derive(Debug, Serialize)]
pub struct Metric {
    pub name: String,
    pub unit: String,
    /// The headline number: the p50 for a latency, else the derived value.
    pub value: Option<f64>,
    /// count, errors and percentiles (ms) for a latency distribution.
    #[serde(flatten)]
    pub summary: Option<Summary>,
    /// Why there is no value.
    pub na: Option<String>,
    /// The samples, sorted, for the plot (not written to JSON).
    #[serde(skip)]
    pub sorted_ms: Vec<f64>,
}

impl Metric {
    pub fn p(&self, which: Pct) -> Option<f64> {
        let s = self.summary?;
        match which {
            Pct::P50 => s.p50,
            Pct::P99 => s.p99,
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub enum Pct {
    P50,
    P99,
}

/// One performance target and whether this run met it.
#[derive(Debug, Serialize)]
pub struct TargetCheck {
    pub name: String,
    /// `"<="` or `">="`.
    pub op: &'static str,
    pub limit: f64,
    pub unit: String,
    pub actual: Option<f64>,
    /// `None` when the metric could not be measured.
    pub met: Option<bool>,
    /// Where the actual value comes from: `scenario/metric`.
    pub source: String,
}

impl TargetCheck {
    pub fn new(
        name: &str,
        op: &'static str,
        limit: f64,
        unit: &str,
        source: &str,
        actual: Option<f64>,
    ) -> Self {
        let met = actual.map(|a| if op == ">=" { a >= limit } else { a <= limit });
        Self {
            name: name.to_string(),
            op,
            limit,
            unit: unit.to_string(),
            actual,
            met,
            source: source.to_string(),
        }
    }
}

impl Report {
    pub fn scenario(&self, name: &str) -> Option<&Scenario> {
        self.scenarios.iter().find(|s| s.name == name)
    }

    /// The value of `scenario/metric`.
    pub fn value(&self, scenario: &str, metric: &str) -> Option<f64> {
        self.scenario(scenario)?.metric(metric)?.value
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    /// The human-readable table printed at the end of a run.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "brisk bench: {} cores, {}{:.0} s, load average {} at start, {} at end, CPU stolen by the hypervisor {}",
            self.cores,
            if self.quick { "quick run, " } else { "" },
            self.duration_s,
            self.loadavg_start.as_deref().unwrap_or("?"),
            self.loadavg_end.as_deref().unwrap_or("?"),
            self.cpu_steal
                .map_or("?".to_string(), |f| format!("{:.1}%", f * 100.0)),
        );
        for s in &self.scenarios {
            let _ = writeln!(out, "\n== {} ==", s.name);
            let _ = writeln!(
                out,
                "  {:<44} {:>7} {:>5} {:>9} {:>9} {:>9} {:>9}  {:>10}",
                "metric", "n", "err", "p50 ms", "p90 ms", "p99 ms", "max ms", "value"
            );
            for m in &s.metrics {
                let _ = write!(out, "  {:<44}", truncate(&m.name, 44));
                match &m.summary {
                    Some(sum) => {
                        let _ = write!(
                            out,
                            " {:>7} {:>5} {:>9} {:>9} {:>9} {:>9}",
                            sum.count,
                            sum.errors,
                            ms(sum.p50),
                            ms(sum.p90),
                            ms(sum.p99),
                            ms(sum.max)
                        );
                    }
                    None => {
                        let _ = write!(
                            out,
                            " {:>7} {:>5} {:>9} {:>9} {:>9} {:>9}",
                            "", "", "", "", "", ""
                        );
                    }
                }
                match (&m.na, m.value) {
                    (Some(reason), None) => {
                        let _ = write!(out, "  n/a: {reason}");
                    }
                    (_, Some(v)) if m.summary.is_none() => {
                        let _ = write!(out, "  {:>10} {}", num(v), m.unit);
                    }
                    _ => {}
                }
                out.push('\n');
            }
            for n in &s.notes {
                let _ = writeln!(out, "  note: {n}");
            }
            if let Some(e) = &s.error {
                let _ = writeln!(out, "  ERROR: {e}");
            }
        }
        let _ = writeln!(out, "\n== targets ==");
        for t in &self.targets {
            let verdict = match t.met {
                Some(true) => "met",
                Some(false) => "MISSED",
                None => "n/a",
            };
            let actual = t.actual.map(num).unwrap_or_else(|| "n/a".into());
            let _ = writeln!(
                out,
                "  {:<44} {} {:<8} {:<6} actual {:>10}  {:<6}  ({})",
                t.name,
                t.op,
                num(t.limit),
                t.unit,
                actual,
                verdict,
                t.source
            );
        }
        out
    }
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n - 1).collect();
        t.push('…');
        t
    }
}

fn ms(v: Option<f64>) -> String {
    v.map(num).unwrap_or_else(|| "-".into())
}

/// Three significant-ish decimals for small numbers, fewer for big ones.
pub fn num(v: f64) -> String {
    let a = v.abs();
    if a >= 1000.0 {
        format!("{v:.0}")
    } else if a >= 100.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::time::Duration;

    use super::*;

    pub(crate) fn sample_report() -> Report {
        let mut warm = Scenario::new("warm");
        let mut s = Samples::new();
        for us in [100, 120, 130, 400] {
            s.push(Duration::from_micros(us));
        }
        warm.latency("brisk node <noop>", &s, 1);
        warm.value("throughput", "req/s", Some(1234.5));
        warm.na("pause time", "ms", "not exposed by the server");
        warm.note("a note");
        Report {
            command: "brisk bench --quick".into(),
            cores: 2,
            quick: true,
            started_unix_ms: 1,
            duration_s: 2.0,
            loadavg_start: None,
            loadavg_end: None,
            cpu_steal: Some(0.05),
            apihost: None,
            brisk_bin: "/bin/brisk".into(),
            scenarios: vec![warm],
            targets: vec![
                TargetCheck::new("warm p50", "<=", 0.25, "ms", "warm/x", Some(0.1)),
                TargetCheck::new("ratio", ">=", 0.5, "x", "t/y", Some(0.4)),
                TargetCheck::new("pause", "<=", 0.2, "ms", "pool/z", None),
            ],
        }
    }

    #[test]
    fn json_has_every_field() {
        let r = sample_report();
        let v: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
        assert_eq!(v["cores"], 2);
        assert_eq!(v["cpu_steal"], 0.05);
        assert_eq!(v["command"], "brisk bench --quick");
        let m = &v["scenarios"][0]["metrics"];
        assert_eq!(m[0]["name"], "brisk node <noop>");
        assert_eq!(m[0]["count"], 4);
        assert_eq!(m[0]["errors"], 1);
        assert_eq!(m[0]["p50"], 0.12);
        assert_eq!(m[0]["p99"], 0.4);
        assert_eq!(m[0]["value"], 0.12);
        assert!(m[0].get("sorted_ms").is_none());
        assert_eq!(m[1]["value"], 1234.5);
        assert!(m[1].get("p50").is_none());
        assert_eq!(m[2]["na"], "not exposed by the server");
        assert_eq!(m[2]["value"], serde_json::Value::Null);
        let t = &v["targets"];
        assert_eq!(t[0]["met"], true);
        assert_eq!(t[1]["met"], false);
        assert_eq!(t[2]["met"], serde_json::Value::Null);
    }

    #[test]
    fn table_shows_values_and_verdicts() {
        let table = sample_report().table();
        assert!(table.contains("== warm =="), "{table}");
        assert!(table.contains("0.120"), "{table}");
        assert!(
            table.contains("1234 req/s") || table.contains("1235 req/s"),
            "{table}"
        );
        assert!(table.contains("n/a: not exposed by the server"), "{table}");
        assert!(table.contains("MISSED"), "{table}");
        assert!(table.contains("note: a note"), "{table}");
    }

    #[test]
    fn formats_numbers() {
        assert_eq!(num(0.12345), "0.123");
        assert_eq!(num(12.345), "12.35");
        assert_eq!(num(123.45), "123.5");
        assert_eq!(num(45678.9), "45679");
    }
}
