//! The closed-loop load generator: a fixed number of keep-alive connections, each sending its
//! next request as soon as the previous response is read. A warm-up period runs first and is not
//! recorded.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::{Method, StatusCode};
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde_json::Value;

use crate::client::{Target, annotation};
use crate::stats::Samples;
use crate::wire::{Encoded, WireConn};
use crate::zipf::Zipf;

/// Which path each request goes to.
#[derive(Debug, Clone)]
pub enum Paths {
    Fixed(String),
    /// One of `paths`, drawn with Zipf popularity (`paths[0]` most popular).
    Zipf {
        paths: Vec<String>,
        zipf: Zipf,
    },
}

#[derive(Debug, Clone)]
pub struct Load {
    pub target: Target,
    pub method: Method,
    pub paths: Paths,
    pub body: Bytes,
    pub connections: usize,
    pub warmup: Duration,
    pub duration: Duration,
    /// Parse each response as an activation record and split the samples by whether it has an
    /// `initTime` annotation (a cold start). Needs `blocking=true` without `result=true`.
    pub classify_cold: bool,
}

#[derive(Debug, Default)]
pub struct LoadResult {
    /// Every successful request in the measured window.
    pub all: Samples,
    /// The successful requests that were cold starts (only with `classify_cold`).
    pub cold: Samples,
    /// The successful requests that were warm (only with `classify_cold`).
    pub warm: Samples,
    pub errors: u64,
    /// First error seen, for the report.
    pub first_error: Option<String>,
    pub window: Duration,
}

impl LoadResult {
    /// Adds another measurement of the same load (a later round of it): samples, errors and
    /// measured time add up, so the rate is over both windows.
    pub fn absorb(&mut self, other: LoadResult) {
        self.all.extend(other.all);
        self.cold.extend(other.cold);
        self.warm.extend(other.warm);
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        self.window += other.window;
    }

    pub fn rps(&self) -> f64 {
        let secs = self.window.as_secs_f64();
        if secs > 0.0 {
            self.all.len() as f64 / secs
        } else {
            0.0
        }
    }
}

/// One connection's measurement; its window is set for all connections together.
struct ConnResult {
    measured: LoadResult,
    last_end: Instant,
}

/// Runs the load and returns what was measured after the warm-up.
pub async fn run(load: Load) -> LoadResult {
    // Every request is encoded once, before the load starts.
    let requests: Vec<Encoded> = match &load.paths {
        Paths::Fixed(p) => vec![Encoded::new(&load.target, &load.method, p, &load.body)],
        Paths::Zipf { paths, .. } => paths
            .iter()
            .map(|p| Encoded::new(&load.target, &load.method, p, &load.body))
            .collect(),
    };
    let shared = Arc::new((load, requests));
    let start = Instant::now();
    let record_from = start + shared.0.warmup;
    let stop_at = record_from + shared.0.duration;
    let mut tasks = Vec::with_capacity(shared.0.connections);
    for i in 0..shared.0.connections {
        let shared = shared.clone();
        tasks.push(tokio::spawn(async move {
            let (load, requests) = &*shared;
            one_connection(load, requests, i as u64, record_from, stop_at).await
        }));
    }
    let mut out = LoadResult::default();
    let mut last_end = record_from;
    for t in tasks {
        match t.await {
            Ok(r) => {
                out.absorb(r.measured);
                last_end = last_end.max(r.last_end);
            }
            Err(e) => {
                out.errors += 1;
                out.first_error.get_or_insert_with(|| e.to_string());
            }
        }
    }
    out.window = last_end.saturating_duration_since(record_from);
    out
}

async fn one_connection(
    load: &Load,
    requests: &[Encoded],
    index: u64,
    record_from: Instant,
    stop_at: Instant,
) -> ConnResult {
    let mut r = ConnResult {
        measured: LoadResult {
            all: Samples::with_capacity(64 * 1024),
            ..LoadResult::default()
        },
        last_end: record_from,
    };
    let mut rng = StdRng::seed_from_u64(0x5eed ^ index);
    let mut conn: Option<WireConn> = None;
    loop {
        let t0 = Instant::now();
        if t0 >= stop_at {
            break;
        }
        let recording = t0 >= record_from;
        let c = match conn.as_mut() {
            Some(c) if c.reusable() => c,
            _ => match WireConn::connect(&load.target).await {
                Ok(c) => conn.insert(c),
                Err(e) => {
                    r.note_error(recording, format!("{e:#}"));
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    continue;
                }
            },
        };
        let request = match &load.paths {
            Paths::Fixed(_) => &requests[0],
            Paths::Zipf { zipf, .. } => &requests[zipf.sample(&mut rng)],
        };
        let t0 = Instant::now();
        let res = c.exchange(request).await;
        let elapsed = t0.elapsed();
        match res {
            Ok((StatusCode::OK, body)) => {
                if recording {
                    r.measured.all.push(elapsed);
                    r.last_end = Instant::now();
                    if load.classify_cold {
                        let rec: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
                        if annotation(&rec, "initTime").is_some() {
                            r.measured.cold.push(elapsed);
                        } else {
                            r.measured.warm.push(elapsed);
                        }
                    }
                }
            }
            Ok((status, body)) => {
                let msg = format!(
                    "HTTP {status}: {}",
                    String::from_utf8_lossy(&body[..body.len().min(200)])
                );
                r.note_error(recording, msg);
            }
            Err(e) => {
                r.note_error(recording, format!("{e:#}"));
                conn = None;
            }
        }
    }
    r
}

impl ConnResult {
    fn note_error(&mut self, recording: bool, msg: String) {
        if recording {
            self.measured.errors += 1;
        }
        self.measured.first_error.get_or_insert(msg);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(n: usize, secs: u64, errors: u64, first: Option<&str>) -> LoadResult {
        let mut all = Samples::new();
        for _ in 0..n {
            all.push(Duration::from_millis(1));
        }
        LoadResult {
            all,
            errors,
            first_error: first.map(str::to_owned),
            window: Duration::from_secs(secs),
            ..LoadResult::default()
        }
    }

    #[test]
    fn rounds_add_up_to_one_rate() {
        let mut total = LoadResult::default();
        total.absorb(result(300, 1, 0, None));
        total.absorb(result(100, 1, 2, Some("first")));
        total.absorb(result(200, 2, 1, Some("second")));
        assert_eq!(total.all.len(), 600);
        assert_eq!(total.window, Duration::from_secs(4));
        assert_eq!(total.rps(), 150.0);
        assert_eq!(total.errors, 3);
        assert_eq!(total.first_error.as_deref(), Some("first"));
    }
}
