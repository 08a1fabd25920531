//! Stem cells (wire spec §9.2): their configuration from the manifest, the missing ones to
//! start, and a target count that grows with cold starts and falls back after the TTL.

use std::time::{Duration, Instant};

use brisk_model::RuntimeManifest;

use crate::pool::{Entry, PoolState, Room, State};
use crate::runtime::Runtimes;

/// Lifetime of a raised target when the manifest gives none.
const DEFAULT_STEM_TTL: Duration = Duration::from_secs(120);

/// What [`PoolState::stems_to_start`] decided.
#[derive(Debug)]
pub struct StemStarts<C> {
    /// `(id, kind, memory)` of each stem cell to start (its memory is reserved).
    pub start: Vec<(u64, String, u64)>,
    /// Idle containers evicted to make room, for destruction.
    pub evicted: Vec<C>,
}

/// Stem cell configuration and its adaptive target count.
#[derive(Debug, Clone)]
pub struct StemConfig {
    pub kind: String,
    pub memory: u64,
    pub initial: u32,
    pub desired: u32,
    pub max: u32,
    pub increment: u32,
    /// How long a raised target lasts without further cold starts.
    pub ttl: Duration,
    pub last_grow: Option<Instant>,
    pub failures: u32,
}

pub(crate) fn stem_configs(manifest: &RuntimeManifest, runtimes: &Runtimes) -> Vec<StemConfig> {
    let mut out = Vec::new();
    for k in manifest.kinds() {
        if runtimes.get(&k.kind).is_none_or(|r| r.launch.is_err()) {
            continue;
        }
        for s in &k.stem_cells {
            let (max, increment, ttl) =
                s.reactive
                    .as_ref()
                    .map_or((s.initial_count, 0, DEFAULT_STEM_TTL), |r| {
                        let ttl = parse_duration(&r.ttl).unwrap_or(DEFAULT_STEM_TTL);
                        (r.max_count, r.increment, ttl)
                    });
            out.push(StemConfig {
                kind: k.kind.clone(),
                memory: s.memory_mb(),
                initial: s.initial_count,
                desired: s.initial_count,
                max: max.max(s.initial_count),
                increment,
                ttl,
                last_grow: None,
                failures: 0,
            });
        }
    }
    out
}

/// Parses manifest durations: `"2 minutes"`, `"30 s"`, `"500ms"`, `"1 hour"`.
pub(crate) fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let n: u64 = s[..split].parse().ok()?;
    let secs = match s[split..].trim().to_ascii_lowercase().as_str() {
        "ms" | "milli" | "millis" | "milliseconds" => return Some(Duration::from_millis(n)),
        "" | "s" | "sec" | "secs" | "second" | "seconds" => n,
        "m" | "min" | "mins" | "minute" | "minutes" => n * 60,
        "h" | "hour" | "hours" => n * 3600,
        _ => return None,
    };
    Some(Duration::from_secs(secs))
}

impl<C: Clone> PoolState<C> {
    pub(crate) fn grow_stems(&mut self, kind: &str, memory: u64, now: Instant) {
        if let Some(s) = self
            .stems
            .iter_mut()
            .find(|s| s.kind == kind && s.memory == memory)
        {
            s.desired = (s.desired + s.increment).min(s.max).max(s.desired);
            s.last_grow = Some(now);
        }
    }

    /// Targets raised by cold starts fall back to the initial count after `ttl` without cold
    /// starts; surplus stem cells are removed and returned for destruction.
    pub fn shrink_stems(&mut self, now: Instant) -> Vec<C> {
        let mut out = Vec::new();
        for si in 0..self.stems.len() {
            let s = &mut self.stems[si];
            let expired = s
                .last_grow
                .is_some_and(|t| now.saturating_duration_since(t) >= s.ttl);
            if !expired || s.desired <= s.initial {
                continue;
            }
            s.desired = s.initial;
            s.last_grow = None;
            let (kind, memory, keep) = (s.kind.clone(), s.memory, s.initial as usize);
            let surplus: Vec<u64> = self
                .entries
                .iter()
                .filter(|e| {
                    matches!(e.state, State::Prewarmed) && e.kind == kind && e.memory == memory
                })
                .map(|e| e.id)
                .skip(keep)
                .collect();
            out.extend(surplus.into_iter().filter_map(|id| self.remove(id)));
        }
        out
    }

    /// Reserves memory for the stem cells that are missing; returns `(id, kind, memory)` of each
    /// one to start, and the containers evicted for them. Never competes with queued
    /// activations.
    ///
    /// In a full pool, room is made by evicting warm containers idle for at least
    /// [`STEM_ROOM_IDLE`](crate::pool::STEM_ROOM_IDLE) (never busy ones or other stem cells). A full pool evicts one
    /// container per new one either way; evicting when a stem cell is taken, rather than when
    /// the next new action arrives, makes that action's start a stem cell hit (a few ms)
    /// instead of a cold start, and moves the eviction and the start off its path.
    pub fn stems_to_start(&mut self, now: Instant) -> StemStarts<C> {
        let mut out = StemStarts {
            start: Vec::new(),
            evicted: Vec::new(),
        };
        if !self.queue.is_empty() {
            return out;
        }
        for si in 0..self.stems.len() {
            let s = self.stems[si].clone();
            if s.failures >= 3 {
                continue;
            }
            let have = self
                .entries
                .iter()
                .filter(|e| {
                    matches!(e.state, State::Starting | State::Prewarmed)
                        && e.kind == s.kind
                        && e.memory == s.memory
                })
                .count() as u32;
            for _ in have..s.desired {
                match self.evict_for(s.memory, now, Room::Stem) {
                    Some(evicted) => out.evicted.extend(evicted),
                    None => return out,
                }
                let id = self.next_id();
                self.used += s.memory;
                self.entries.push(Entry {
                    id,
                    kind: s.kind.clone(),
                    memory: s.memory,
                    handle: None,
                    state: State::Starting,
                    run_us: 0,
                });
                out.start.push((id, s.kind.clone(), s.memory));
            }
        }
        out
    }

    /// A stem cell is ready (`Some`) or failed to start (`None`).
    pub fn stem_started(&mut self, id: u64, handle: Option<C>) -> bool {
        let Some(i) = self.entries.iter().position(|e| e.id == id) else {
            return false;
        };
        match handle {
            Some(h) => {
                self.entries[i].handle = Some(h);
                self.entries[i].state = State::Prewarmed;
                true
            }
            None => {
                let kind = self.entries[i].kind.clone();
                let mem = self.entries[i].memory;
                if let Some(s) = self
                    .stems
                    .iter_mut()
                    .find(|s| s.kind == kind && s.memory == mem)
                {
                    s.failures += 1;
                }
                self.remove(id);
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::{Demand, Placement, PoolKey, STEM_ROOM_IDLE};

    fn key(s: &str) -> PoolKey {
        PoolKey::from(s)
    }

    fn demand<'a>(k: &'a PoolKey, memory: u64) -> Demand<'a> {
        Demand {
            key: k,
            kind: "nodejs:20",
            memory,
            stem_ok: true,
            concurrency: 1,
            await_start: true,
            await_busy: true,
            busy_turn: false,
            queue_behind: false,
        }
    }

    fn stem(desired: u32, max: u32) -> StemConfig {
        StemConfig {
            kind: "nodejs:20".into(),
            memory: 256,
            initial: desired,
            desired,
            max,
            increment: 1,
            ttl: Duration::from_secs(120),
            last_grow: None,
            failures: 0,
        }
    }

    #[test]
    fn stem_cells_fill_capacity_are_taken_and_grow_on_cold_starts() {
        let now = Instant::now();
        let mut p = PoolState::<u32>::new(1024, 10, vec![stem(2, 3)]);
        let todo = p.stems_to_start(now).start;
        assert_eq!(todo.len(), 2);
        assert!(
            p.stems_to_start(now).start.is_empty(),
            "starting ones count"
        );
        assert!(p.stem_started(todo[0].0, Some(10)));
        assert!(!p.stem_started(todo[1].0, None));
        let a = key("a");
        match p.place(&demand(&a, 256), false, now) {
            Placement::Prewarm { handle, .. } => assert_eq!(handle, 10),
            other => panic!("{other:?}"),
        }
        assert_eq!(p.counters.prewarm_hits, 1);
        // No stem cell left: cold start, which raises the target to 3.
        assert!(matches!(
            p.place(&demand(&key("b"), 256), false, now),
            Placement::Cold { .. }
        ));
        assert_eq!(p.stems[0].desired, 3);
        let todo = p.stems_to_start(now).start;
        assert_eq!(todo.len(), 2, "capacity 1024 - 512 used leaves room for 2");
        for (i, (id, ..)) in todo.into_iter().enumerate() {
            p.stem_started(id, Some(20 + i as u32));
        }
        assert!(p.shrink_stems(now + Duration::from_secs(60)).is_empty());
        assert_eq!(p.stems[0].desired, 3);
        assert!(p.shrink_stems(now + Duration::from_secs(120)).is_empty());
        assert_eq!(p.stems[0].desired, 2);
    }

    #[test]
    fn surplus_stem_cells_expire_after_the_ttl() {
        let now = Instant::now();
        let mut p = PoolState::<u32>::new(4096, 10, vec![stem(1, 4)]);
        let (id, ..) = p.stems_to_start(now).start[0];
        p.stem_started(id, Some(1));
        p.place(&demand(&key("a"), 256), false, now);
        assert!(matches!(
            p.place(&demand(&key("b"), 256), false, now),
            Placement::Cold { .. }
        ));
        for (i, (id, ..)) in p.stems_to_start(now).start.into_iter().enumerate() {
            p.stem_started(id, Some(10 + i as u32));
        }
        assert_eq!(p.stems[0].desired, 2);
        assert_eq!(p.shrink_stems(now + Duration::from_secs(120)), vec![11]);
        assert_eq!(p.stems[0].desired, 1);
    }

    /// A full pool makes room for a missing stem cell by evicting a warm container that has
    /// been idle for [`STEM_ROOM_IDLE`] (the least demanded first), never a busy or recently
    /// used one, nor another stem cell.
    #[test]
    fn a_full_pool_evicts_a_long_idle_container_for_a_missing_stem_cell() {
        let t0 = Instant::now();
        let mut p = PoolState::<u32>::new(1024, 10, vec![stem(1, 1)]);
        let prewarm =
            |p: &mut PoolState<u32>, k: &PoolKey| match p.place(&demand(k, 256), false, t0) {
                Placement::Prewarm { id, handle } => (id, handle),
                other => panic!("{other:?}"),
            };
        let cold = |p: &mut PoolState<u32>, k: &PoolKey, h: u32| {
            assert!(matches!(
                p.place(&demand(k, 256), false, t0),
                Placement::Cold { .. }
            ));
            p.insert_active(h, "nodejs:20", 256, *k, 1)
        };
        let (id, ..) = p.stems_to_start(t0).start[0];
        p.stem_started(id, Some(100));
        let (a, b, c, d) = (key("a"), key("b"), key("c"), key("d"));
        // `a` takes the stem cell, `b` and `c` start cold: one slot of four is left.
        let (_ia, h) = prewarm(&mut p, &a);
        assert_eq!(h, 100);
        let ib = cold(&mut p, &b, 2);
        let ic = cold(&mut p, &c, 3);
        p.note_demand(&b, t0);
        p.note_demand(&b, t0);
        p.note_demand(&c, t0);
        // The replacement fits without evicting anything.
        let s = p.stems_to_start(t0);
        assert_eq!((s.start.len(), s.evicted.len()), (1, 0));
        p.stem_started(s.start[0].0, Some(101));
        assert_eq!(p.used, 1024);
        // A new action `d` takes it; its replacement finds the pool full.
        let (id_d, h) = prewarm(&mut p, &d);
        assert_eq!(h, 101);
        p.release(id_d, true, None, t0);
        p.release(ib, true, None, t0);
        p.release(ic, true, None, t0);
        // `a` is busy; `b`, `c` and `d` were used just now: none may go yet.
        let s = p.stems_to_start(t0);
        assert!(s.start.is_empty() && s.evicted.is_empty(), "{s:?}");
        assert_eq!(p.used, 1024);
        // A second later they may: the least demanded idle one goes (`d`, never counted).
        let t1 = t0 + STEM_ROOM_IDLE;
        let s = p.stems_to_start(t1);
        assert_eq!(s.evicted, vec![101]);
        assert_eq!(s.start.len(), 1);
        assert_eq!(
            p.used, 1024,
            "the stem cell's memory replaces the evicted container's"
        );
        assert_eq!(p.counters.evictions, 1);
        assert_eq!(p.entries.len(), 4);
        // With the only container busy, a missing stem cell stays missing.
        let mut p2 = PoolState::<u32>::new(256, 10, vec![stem(1, 1)]);
        let x = key("x");
        cold(&mut p2, &x, 7);
        let s = p2.stems_to_start(t1);
        assert!(s.start.is_empty() && s.evicted.is_empty(), "{s:?}");
        assert_eq!(p2.counters.evictions, 0);
    }

    #[test]
    fn manifest_durations_parse() {
        let check = |s: &str, want: Option<u64>| {
            assert_eq!(parse_duration(s).map(|d| d.as_millis() as u64), want, "{s}")
        };
        check("2 minutes", Some(120_000));
        check("30s", Some(30_000));
        check("500 ms", Some(500));
        check("1 hour", Some(3_600_000));
        check("soon", None);
    }
}
