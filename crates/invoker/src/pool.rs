//! The pool's bookkeeping and placement policy (wire spec §9.1–9.2), free of I/O so that it can
//! be unit-tested. The invoker holds it under one short-lived mutex and does every slow thing
//! (spawning, signalling, HTTP) outside of it.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

pub use crate::stems::StemConfig;

/// Identity of the containers an activation may reuse: invoking namespace, action path and
/// version, exec and limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PoolKey(u128);

impl PoolKey {
    /// The key of whatever `f` feeds the hasher: 128 bits from two SipHash hashers keyed at
    /// random per process, so keys of different actions do not collide by accident and
    /// cannot be made to collide on purpose. Much cheaper than formatting a string key on
    /// every invoke.
    pub fn of(f: impl Fn(&mut dyn std::hash::Hasher)) -> Self {
        use std::hash::BuildHasher;
        static SEEDS: std::sync::OnceLock<[std::collections::hash_map::RandomState; 2]> =
            std::sync::OnceLock::new();
        let seeds = SEEDS.get_or_init(Default::default);
        let mut a = seeds[0].build_hasher();
        let mut b = seeds[1].build_hasher();
        f(&mut a);
        f(&mut b);
        use std::hash::Hasher;
        Self((u128::from(a.finish()) << 64) | u128::from(b.finish()))
    }
}

impl From<&str> for PoolKey {
    fn from(s: &str) -> Self {
        Self::of(|h| h.write(s.as_bytes()))
    }
}

#[derive(Debug)]
pub enum State {
    /// A stem cell being started (memory reserved, no handle yet).
    Starting,
    /// A stem cell waiting for its first `/init`.
    Prewarmed,
    /// Initialized for one action.
    Active {
        key: PoolKey,
        busy: u32,
        max: u32,
        last_used: Instant,
        paused: bool,
        /// Leaves the pool once its runs end: its proxy failed a run (a developer error) while
        /// another was queued behind it, which may have started and must not be killed.
        retiring: bool,
    },
}

#[derive(Debug)]
pub struct Entry<C> {
    pub id: u64,
    pub kind: String,
    pub memory: u64,
    pub handle: Option<C>,
    pub state: State,
    /// Recent warm `/run` time of the container in microseconds, biased towards the fastest
    /// (0: none yet).
    pub run_us: u32,
}

/// Where an activation goes.
#[derive(Debug)]
pub enum Placement<C> {
    Warm {
        id: u64,
        handle: C,
        resume: bool,
        /// The action's runs are short (and its concurrency 1) and as many of its containers
        /// as the host has CPU slots are busy: the activation is the next run of this busy
        /// container, sent to it now. The proxy starts it when the run in progress ends (runs
        /// of a container without concurrency are served one after another), so the container
        /// goes from one run to the next without waiting for the invoker, and sleeps less often.
        behind: bool,
    },
    Prewarm {
        id: u64,
        handle: C,
    },
    /// Memory reserved for a new container; `evicted` must be destroyed first.
    Cold {
        evicted: Vec<C>,
    },
    Queued(oneshot::Receiver<()>),
    /// A container of the same key that allows concurrent runs is starting and has a free
    /// slot: wait for its `/init`, then place again (see [`PoolState::started`]).
    AwaitStart(oneshot::Receiver<()>),
    /// The action's runs are short and as many of its containers as the host has CPU slots
    /// are busy: wait (at most [`BUSY_WAIT`]) for one of them to finish, then place again.
    AwaitBusy(oneshot::Receiver<()>),
    QueueFull,
}

/// What an activation asks of the pool.
#[derive(Debug, Clone)]
pub struct Demand<'a> {
    pub key: &'a PoolKey,
    pub kind: &'a str,
    pub memory: u64,
    /// Whether a stem cell fits (they are started with the deployment's network policy).
    pub stem_ok: bool,
    /// The action's `limits.concurrency`.
    pub concurrency: u32,
    /// Whether waiting for a starting container of the key is allowed (not after such a wait
    /// timed out).
    pub await_start: bool,
    /// Whether waiting for a busy container of the key is allowed (not after such a wait
    /// timed out).
    pub await_busy: bool,
    /// The activation was just woken from such a wait: it may take the container that was
    /// given back, ahead of activations that arrived since.
    pub busy_turn: bool,
    /// Whether the activation may be sent to a busy container of its (short, concurrency 1)
    /// action as the container's next run ([`Placement::Warm`] with `behind`).
    pub queue_behind: bool,
}

/// Runs shorter than this (a container's recent warm `/run` exchanges, biased towards the
/// fastest) make an action *short*: its activations wait for a busy container of the action once
/// [`PoolState::cpu_slots`] of them are busy, instead of taking more containers.
pub const SHORT_RUN_US: u32 = 2_000;
/// An activation of a short action waits for a busy container only while the expected wait
/// (activations already waiting × run time / busy containers) stays under this; beyond it the
/// action gets more containers, so a steady queue settles about here.
pub const MAX_EXPECTED_WAIT_US: u64 = 50_000;
/// Longest one wait for a busy container lasts (should every busy run of the action stall)
/// before the activation places as usual (an idle or new container).
pub const BUSY_WAIT: Duration = Duration::from_millis(200);

/// Activations of one short action waiting for its busy containers.
#[derive(Debug, Default)]
pub struct BusyWaiters {
    pub queue: VecDeque<oneshot::Sender<()>>,
    /// Woken because a container was given back, and not yet placed again: the container is
    /// theirs, not a newcomer's.
    pub woken: u32,
}

/// Containers of one key that are starting, and the activations waiting for them instead of
/// starting containers of their own. Used for two kinds of start: those of actions with
/// `concurrency` > 1 (until its `/init` completes a container takes one activation, and the
/// others that would fit in it wait: a burst of N requests starts about N / concurrency
/// containers, not N), and speculative ones (see [`PoolState::speculating`]).
#[derive(Debug, Default)]
pub struct Starting {
    pub starts: u32,
    pub waiters: Vec<oneshot::Sender<()>>,
}

/// Waits for a start of `key` in `map` when one has room: each start takes `per_start`
/// waiters.
fn join_start(
    map: &mut foldhash::HashMap<PoolKey, Starting>,
    key: &PoolKey,
    per_start: u32,
) -> Option<oneshot::Receiver<()>> {
    let s = map.get_mut(key)?;
    if (s.starts * per_start) as usize <= s.waiters.len() {
        return None;
    }
    let (tx, rx) = oneshot::channel();
    s.waiters.push(tx);
    Some(rx)
}

/// One start of `key` in `map` ended: its waiters place themselves again.
fn end_start(map: &mut foldhash::HashMap<PoolKey, Starting>, key: &PoolKey) {
    let Some(s) = map.get_mut(key) else {
        return;
    };
    s.starts = s.starts.saturating_sub(1);
    for tx in s.waiters.drain(..) {
        let _ = tx.send(());
    }
    if s.starts == 0 {
        map.remove(key);
    }
}

/// How fast the pool forgets an action's demand: its count of recent activations halves every
/// this long.
pub const DEMAND_HALF_LIFE: Duration = Duration::from_secs(60);
/// Least idle time of a warm container evicted to make room for a stem cell in a full pool.
pub const STEM_ROOM_IDLE: Duration = Duration::from_secs(1);

/// Whom an eviction makes room for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Room {
    /// An activation: any idle container may go, stem cells last.
    Activation,
    /// A missing stem cell: only warm containers idle for [`STEM_ROOM_IDLE`], never another
    /// stem cell.
    Stem,
}
/// Actions whose demand is remembered at most; beyond it the forgotten (near-zero) ones go.
const MAX_DEMAND_KEYS: usize = 10_000;

/// An action's recent demand: its activations, each counting less as it ages (halving every
/// [`DEMAND_HALF_LIFE`]).
#[derive(Debug, Clone, Copy)]
pub struct Heat {
    value: f32,
    at: Instant,
}

impl Heat {
    fn now(&self, now: Instant) -> f32 {
        let age = now.saturating_duration_since(self.at).as_secs_f32();
        self.value * (-age / DEMAND_HALF_LIFE.as_secs_f32()).exp2()
    }
}

#[derive(Debug, Default, Clone)]
pub struct Counters {
    pub cold_starts: u64,
    pub prewarm_hits: u64,
    pub warm_hits: u64,
    /// Warm hits that were queued behind a run in progress ([`Placement::Warm`] with `behind`).
    pub queued_behind: u64,
    pub evictions: u64,
    pub pauses: u64,
    pub resumes: u64,
}

pub struct PoolState<C> {
    pub capacity: u64,
    pub used: u64,
    pub entries: Vec<Entry<C>>,
    pub stems: Vec<StemConfig>,
    pub queue: VecDeque<oneshot::Sender<()>>,
    pub max_queue: usize,
    pub counters: Counters,
    pub starting: foldhash::HashMap<PoolKey, Starting>,
    /// Containers of one short action that may run at once before further activations wait
    /// for one of them (see [`SHORT_RUN_US`]): more processes than cores cannot run short,
    /// CPU-bound runs any sooner, and every extra one costs wake-ups and cache.
    pub cpu_slots: u32,
    /// Activations waiting for a busy container of their (short) action, per key.
    pub busy_waiters: foldhash::HashMap<PoolKey, BusyWaiters>,
    /// Speculative starts in flight (see [`Self::place_speculative`]): containers prepared for
    /// a key before any activation asked for them (a composition's later steps). An activation
    /// of the key that arrives meanwhile waits for one (at most the action's concurrency per
    /// start) rather than starting a container that would compete with it for the CPU.
    pub speculating: foldhash::HashMap<PoolKey, Starting>,
    /// Recent demand per action, kept across its containers' lives: eviction frees the idle
    /// containers of the least demanded actions first, so a burst of one-off actions does not
    /// push out the containers of popular ones (as least-recently-used eviction would).
    pub demand: foldhash::HashMap<PoolKey, Heat>,
    next_id: u64,
}

impl<C: Clone> PoolState<C> {
    pub fn new(capacity: u64, max_queue: usize, stems: Vec<StemConfig>) -> Self {
        Self {
            capacity,
            used: 0,
            entries: Vec::new(),
            stems,
            queue: VecDeque::new(),
            max_queue,
            counters: Counters::default(),
            starting: foldhash::HashMap::default(),
            cpu_slots: u32::MAX,
            busy_waiters: foldhash::HashMap::default(),
            speculating: foldhash::HashMap::default(),
            demand: foldhash::HashMap::default(),
            next_id: 1,
        }
    }

    pub fn next_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// Steps 1–5 of the placement order. `retry` is true for a woken waiter, which may take
    /// capacity even while others wait behind it.
    pub fn place(&mut self, d: &Demand<'_>, retry: bool, now: Instant) -> Placement<C> {
        // Activations of a short action wait in order: a new one queues behind those already
        // waiting, a woken one gets the container that was given back (or waits at the front).
        let wait_busy = d.concurrency == 1 && d.await_busy;
        if d.busy_turn
            && let Some(w) = self.busy_waiters.get_mut(d.key)
        {
            w.woken = w.woken.saturating_sub(1);
        }
        if wait_busy && !d.busy_turn && self.saturated_short(d.key) {
            return self
                .take_behind(d, now)
                .unwrap_or_else(|| self.await_busy(d.key, false));
        }
        // A woken activation goes behind a busy container rather than to an idle one while
        // the action's busy containers fill the CPU slots (the container that was given back
        // may still have a run of its own queued).
        if wait_busy
            && d.busy_turn
            && d.queue_behind
            && self.busy_containers(d.key) >= self.cpu_slots.max(1)
            && let Some(p) = self.take_behind(d, now)
        {
            return p;
        }
        if let Some(p) = self.take_warm(d, now) {
            return p;
        }
        if wait_busy && d.busy_turn && self.saturated_short(d.key) {
            return self
                .take_behind(d, now)
                .unwrap_or_else(|| self.await_busy(d.key, true));
        }
        if d.await_start {
            // A container prepared ahead takes `concurrency` activations; one started by an
            // activation has that one already and takes `concurrency - 1` more.
            let prepared = join_start(&mut self.speculating, d.key, d.concurrency.max(1));
            let started = || join_start(&mut self.starting, d.key, d.concurrency.saturating_sub(1));
            if let Some(rx) = prepared.or_else(started) {
                return Placement::AwaitStart(rx);
            }
        }
        if retry || self.queue.is_empty() {
            if let Some(p) = self.take_prewarm(d) {
                self.starting_begins(d);
                return p;
            }
            if let Some(evicted) = self.make_room(d.memory, now) {
                self.used += d.memory;
                self.counters.cold_starts += 1;
                self.grow_stems(d.kind, d.memory, now);
                self.starting_begins(d);
                return Placement::Cold { evicted };
            }
        }
        if self.queue.len() >= self.max_queue {
            return Placement::QueueFull;
        }
        let (tx, rx) = oneshot::channel();
        if retry {
            self.queue.push_front(tx);
        } else {
            self.queue.push_back(tx);
        }
        Placement::Queued(rx)
    }

    fn await_busy(&mut self, key: &PoolKey, front: bool) -> Placement<C> {
        let (tx, rx) = oneshot::channel();
        let waiters = &mut self.busy_waiters.entry(*key).or_default().queue;
        if front {
            waiters.push_front(tx);
        } else {
            waiters.push_back(tx);
        }
        Placement::AwaitBusy(rx)
    }

    /// Whether an activation of `key` should wait for one of its busy containers: the action
    /// is short (the fastest of its containers' recent run times is under [`SHORT_RUN_US`]), at
    /// least [`Self::cpu_slots`] of its containers are busy (or some are busy and others
    /// already wait for them), and the expected wait is under [`MAX_EXPECTED_WAIT_US`].
    fn saturated_short(&mut self, key: &PoolKey) -> bool {
        // Waiters that gave up (their wait timed out) no longer count.
        let (waiting, woken) = match self.busy_waiters.get_mut(key) {
            Some(w) => {
                w.queue.retain(|tx| !tx.is_closed());
                (w.queue.len() as u64, u64::from(w.woken))
            }
            None => (0, 0),
        };
        let mut busy = 0;
        let mut fastest = u32::MAX;
        for e in &self.entries {
            if let State::Active {
                key: k, busy: b, ..
            } = &e.state
                && k == key
            {
                if e.run_us > 0 {
                    fastest = fastest.min(e.run_us);
                }
                busy += u32::from(*b > 0);
            }
        }
        let full = busy >= self.cpu_slots.max(1) || (busy > 0 && waiting + woken > 0);
        if fastest >= SHORT_RUN_US || !full {
            return false;
        }
        (waiting + 1) * u64::from(fastest) / u64::from(busy) < MAX_EXPECTED_WAIT_US
    }

    /// A busy container of `d`'s short action that has one run in progress and none queued
    /// behind it takes the activation as its next run. Not ahead of activations already waiting
    /// for a busy container (only a woken one may take it).
    fn take_behind(&mut self, d: &Demand<'_>, now: Instant) -> Option<Placement<C>> {
        if !d.queue_behind {
            return None;
        }
        if !d.busy_turn
            && self
                .busy_waiters
                .get(d.key)
                .is_some_and(|w| !w.queue.is_empty() || w.woken > 0)
        {
            return None;
        }
        let e = self.entries.iter_mut().find(|e| {
            matches!(&e.state, State::Active { key, busy: 1, max: 1, paused: false, retiring: false, .. } if key == d.key)
                && e.run_us > 0
                && e.run_us < SHORT_RUN_US
        })?;
        let State::Active {
            busy, last_used, ..
        } = &mut e.state
        else {
            return None;
        };
        *busy += 1;
        *last_used = now;
        self.counters.warm_hits += 1;
        self.counters.queued_behind += 1;
        Some(Placement::Warm {
            id: e.id,
            handle: e.handle.clone()?,
            resume: false,
            behind: true,
        })
    }

    /// Containers of `key` with a run in progress.
    fn busy_containers(&self, key: &PoolKey) -> u32 {
        let busy = |e: &&Entry<C>| matches!(&e.state, State::Active { key: k, busy, .. } if k == key && *busy > 0);
        self.entries.iter().filter(busy).count() as u32
    }

    /// Wakes one activation waiting for a busy container of `key`.
    fn wake_busy_waiter(&mut self, key: &PoolKey) {
        let Some(waiters) = self.busy_waiters.get_mut(key) else {
            return;
        };
        while let Some(tx) = waiters.queue.pop_front() {
            if tx.send(()).is_ok() {
                waiters.woken += 1;
                break;
            }
        }
        if waiters.queue.is_empty() && waiters.woken == 0 {
            self.busy_waiters.remove(key);
        }
    }

    fn starting_begins(&mut self, d: &Demand<'_>) {
        if d.concurrency > 1 {
            self.starting.entry(*d.key).or_default().starts += 1;
        }
    }

    /// A container placed by [`Self::place`] for an action with `concurrency` > 1 finished
    /// its `/init` (or failed to start): the activations waiting for a starting container of
    /// the key place themselves again. Must follow every such placement exactly once.
    pub fn started(&mut self, key: &PoolKey, concurrency: u32) {
        if concurrency > 1 {
            end_start(&mut self.starting, key);
        }
    }

    /// Whether a container for `key` exists (busy, idle or paused).
    pub fn has_key(&self, key: &PoolKey) -> bool {
        self.entries
            .iter()
            .any(|e| matches!(&e.state, State::Active { key: k, .. } if k == key))
    }

    /// Placement for a speculative start (preparing a container before it is needed): only
    /// when no container for the key exists, and only from a stem cell or free memory — never
    /// evicting, never queueing, never ahead of waiting activations.
    pub fn place_speculative(&mut self, d: &Demand<'_>, now: Instant) -> Option<Placement<C>> {
        let exists = self
            .entries
            .iter()
            .any(|e| matches!(&e.state, State::Active { key, .. } if key == d.key));
        if exists || !self.queue.is_empty() {
            return None;
        }
        let placement = match self.take_prewarm(d) {
            Some(p) => p,
            None if self.used + d.memory > self.capacity => return None,
            None => {
                self.used += d.memory;
                self.counters.cold_starts += 1;
                self.grow_stems(d.kind, d.memory, now);
                Placement::Cold {
                    evicted: Vec::new(),
                }
            }
        };
        self.speculating.entry(*d.key).or_default().starts += 1;
        Some(placement)
    }

    /// A speculative start placed by [`Self::place_speculative`] ended, its container given
    /// back to the pool or gone: the activations waiting for it place themselves again. Must
    /// follow every such placement exactly once.
    pub fn speculation_done(&mut self, key: &PoolKey) {
        end_start(&mut self.speculating, key);
    }

    fn take_warm(&mut self, d: &Demand<'_>, now: Instant) -> Option<Placement<C>> {
        // Prefer a running container with spare concurrency, then the most recently used.
        let e = self
            .entries
            .iter_mut()
            .filter(|e| match &e.state {
                State::Active {
                    key,
                    busy,
                    max,
                    retiring,
                    ..
                } => key == d.key && busy < max && !retiring,
                _ => false,
            })
            .max_by_key(|e| match &e.state {
                State::Active {
                    busy,
                    paused,
                    last_used,
                    ..
                } => (*busy > 0, !*paused, *last_used),
                _ => (false, false, now),
            })?;
        let State::Active {
            busy,
            last_used,
            paused,
            ..
        } = &mut e.state
        else {
            return None;
        };
        *busy += 1;
        *last_used = now;
        let resume = std::mem::replace(paused, false);
        let handle = e.handle.clone()?;
        self.counters.warm_hits += 1;
        if resume {
            self.counters.resumes += 1;
        }
        Some(Placement::Warm {
            id: e.id,
            handle,
            resume,
            behind: false,
        })
    }

    fn take_prewarm(&mut self, d: &Demand<'_>) -> Option<Placement<C>> {
        if !d.stem_ok {
            return None;
        }
        let e = self.entries.iter_mut().find(|e| {
            matches!(e.state, State::Prewarmed) && e.kind == d.kind && e.memory == d.memory
        })?;
        let handle = e.handle.clone()?;
        // Busy from now on, and not shared before `/init` is done (see `set_max`).
        e.state = State::Active {
            key: *d.key,
            busy: 1,
            max: 1,
            last_used: Instant::now(),
            paused: false,
            retiring: false,
        };
        self.counters.prewarm_hits += 1;
        Some(Placement::Prewarm { id: e.id, handle })
    }

    /// Counts one activation of `key` in its demand.
    pub fn note_demand(&mut self, key: &PoolKey, now: Instant) {
        if self.demand.len() >= MAX_DEMAND_KEYS && !self.demand.contains_key(key) {
            self.demand.retain(|_, h| h.now(now) >= 0.05);
            if self.demand.len() >= MAX_DEMAND_KEYS {
                self.demand.clear();
            }
        }
        let h = self.demand.entry(*key).or_insert(Heat {
            value: 0.0,
            at: now,
        });
        *h = Heat {
            value: h.now(now) + 1.0,
            at: now,
        };
    }

    fn demand_of(&self, key: &PoolKey, now: Instant) -> f32 {
        self.demand.get(key).map_or(0.0, |h| h.now(now))
    }

    /// Frees memory for `need` MB by evicting idle containers: those of the least demanded
    /// actions first (recent activations, see [`Self::demand`]), the least recently used among
    /// equals; stem cells only as a last resort. `None` when even that is not enough.
    fn make_room(&mut self, need: u64, now: Instant) -> Option<Vec<C>> {
        self.evict_for(need, now, Room::Activation)
    }

    /// Evicts idle containers, in [`Self::make_room`]'s order, until `need` MB fit; evicts
    /// nothing and returns `None` when the candidates `room` allows cannot free enough.
    pub(crate) fn evict_for(&mut self, need: u64, now: Instant, room: Room) -> Option<Vec<C>> {
        if self.used + need <= self.capacity {
            return Some(Vec::new());
        }
        let mut idle: Vec<(u8, f32, Instant, u64, u64)> = self
            .entries
            .iter()
            .filter_map(|e| match &e.state {
                State::Active {
                    busy: 0,
                    last_used,
                    key,
                    ..
                } if room == Room::Activation
                    || now.saturating_duration_since(*last_used) >= STEM_ROOM_IDLE =>
                {
                    Some((0, self.demand_of(key, now), *last_used, e.id, e.memory))
                }
                State::Prewarmed if room == Room::Activation => Some((1, 0.0, now, e.id, e.memory)),
                _ => None,
            })
            .collect();
        let freeable: u64 = idle.iter().map(|i| i.4).sum();
        if self.used + need > self.capacity + freeable {
            return None;
        }
        idle.sort_by(|a, b| {
            (a.0.cmp(&b.0))
                .then(a.1.total_cmp(&b.1))
                .then(a.2.cmp(&b.2))
        });
        let mut out = Vec::new();
        for (_, _, _, id, _) in idle {
            if self.used + need <= self.capacity {
                break;
            }
            if let Some(h) = self.remove(id) {
                out.push(h);
            }
            self.counters.evictions += 1;
        }
        Some(out)
    }

    /// A cold start could not start its container: give the memory back.
    pub fn cancel_cold(&mut self, memory: u64) {
        self.used = self.used.saturating_sub(memory);
    }

    /// A freshly initialized cold container joins the pool, busy with its first activation.
    pub fn insert_active(
        &mut self,
        handle: C,
        kind: &str,
        memory: u64,
        key: PoolKey,
        max: u32,
    ) -> u64 {
        let id = self.next_id();
        self.entries.push(Entry {
            id,
            kind: kind.to_owned(),
            memory,
            handle: Some(handle),
            state: State::Active {
                key,
                busy: 1,
                max: max.max(1),
                last_used: Instant::now(),
                paused: false,
                retiring: false,
            },
            run_us: 0,
        });
        id
    }

    /// Opens an initialized container to `max` concurrent activations.
    pub fn set_max(&mut self, id: u64, max: u32) {
        if let Some(Entry {
            state: State::Active { max: m, .. },
            ..
        }) = self.entries.iter_mut().find(|e| e.id == id)
        {
            *m = max.max(1);
        }
    }

    /// Ends one activation on container `id`. With `keep = false` the container leaves the pool
    /// and its handle is returned for destruction.
    /// `run` is how long the activation's warm `/run` took, when it had one.
    pub fn release(
        &mut self,
        id: u64,
        keep: bool,
        run: Option<Duration>,
        now: Instant,
    ) -> Option<C> {
        if !keep {
            return self.remove(id);
        }
        let e = self.entries.iter_mut().find(|e| e.id == id)?;
        if let Some(run) = run {
            let us = u32::try_from(run.as_micros()).unwrap_or(u32::MAX).max(1);
            // Biased low: a faster run counts at once, slower ones an eighth each. Under a
            // saturated CPU most exchanges include time spent waiting to be scheduled, and
            // what matters is how long a run takes when it gets a core.
            e.run_us = if e.run_us == 0 || us < e.run_us {
                us
            } else {
                ((u64::from(e.run_us) * 7 + u64::from(us)) / 8) as u32
            };
        }
        if let State::Active {
            key,
            busy,
            last_used,
            retiring,
            ..
        } = &mut e.state
        {
            *busy = busy.saturating_sub(1);
            *last_used = now;
            let (key, gone) = (*key, *retiring && *busy == 0);
            self.wake_busy_waiter(&key);
            if gone {
                return self.remove(id);
            }
        }
        None
    }

    /// Ends one activation on container `id` whose run failed so that the container must go.
    /// Returns true when the container left the pool now (nothing was queued behind the run;
    /// the caller destroys it); otherwise the runs queued behind it are in progress, and it
    /// leaves when the last of them ends ([`Self::release`] returns it then).
    pub fn retire(&mut self, id: u64, now: Instant) -> bool {
        let Some(e) = self.entries.iter_mut().find(|e| e.id == id) else {
            return true;
        };
        match &mut e.state {
            State::Active { busy, retiring, .. } if *busy > 1 => {
                *retiring = true;
                // Others are still busy on it: this never removes it.
                self.release(id, true, None, now);
                false
            }
            _ => {
                self.remove(id);
                true
            }
        }
    }

    /// Removes an entry and frees its memory.
    pub fn remove(&mut self, id: u64) -> Option<C> {
        let i = self.entries.iter().position(|e| e.id == id)?;
        let e = self.entries.swap_remove(i);
        self.used = self.used.saturating_sub(e.memory);
        if let State::Active { key, .. } = e.state {
            self.wake_busy_waiter(&key);
        }
        e.handle
    }

    /// Wakes the first waiter still waiting.
    pub fn wake_one(&mut self) {
        while let Some(tx) = self.queue.pop_front() {
            if tx.send(()).is_ok() {
                return;
            }
        }
    }

    /// Idle containers to pause (idle longer than `grace`) and to destroy (idle longer than
    /// `idle`). Destroyed ones are removed here; pausing is confirmed with [`Self::mark_paused`].
    pub fn sweep(
        &mut self,
        now: Instant,
        grace: Duration,
        idle: Duration,
    ) -> (Vec<(u64, C)>, Vec<C>) {
        let mut pause = Vec::new();
        let mut expired = Vec::new();
        for e in &self.entries {
            if let State::Active {
                busy: 0,
                last_used,
                paused,
                ..
            } = &e.state
            {
                let idle_for = now.saturating_duration_since(*last_used);
                if idle_for >= idle {
                    expired.push(e.id);
                } else if !paused
                    && idle_for >= grace
                    && let Some(h) = &e.handle
                {
                    pause.push((e.id, h.clone()));
                }
            }
        }
        let destroy = expired
            .into_iter()
            .filter_map(|id| self.remove(id))
            .collect();
        (pause, destroy)
    }

    /// Marks `id` paused if it is still idle and running; the caller then pauses it.
    pub fn mark_paused(&mut self, id: u64, now: Instant, grace: Duration) -> bool {
        let Some(e) = self.entries.iter_mut().find(|e| e.id == id) else {
            return false;
        };
        match &mut e.state {
            State::Active {
                busy: 0,
                paused: paused @ false,
                last_used,
                ..
            } if now.saturating_duration_since(*last_used) >= grace => {
                *paused = true;
                self.counters.pauses += 1;
                true
            }
            _ => false,
        }
    }

    /// Every handle, for shutdown.
    pub fn drain(&mut self) -> Vec<C> {
        self.used = 0;
        self.queue.clear();
        self.busy_waiters.clear();
        self.entries.drain(..).filter_map(|e| e.handle).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    /// Places `k` cold, initializes it as handle `h`, and returns its id.
    fn cold(p: &mut PoolState<u32>, k: &PoolKey, h: u32, now: Instant) -> u64 {
        assert!(matches!(
            p.place(&demand(k, 256), false, now),
            Placement::Cold { .. }
        ));
        p.insert_active(h, "nodejs:20", 256, *k, 1)
    }

    /// Places `k` cold (256 MB) and returns the handles it evicts.
    fn evicted_by(p: &mut PoolState<u32>, k: &PoolKey, now: Instant) -> Vec<u32> {
        match p.place(&demand(k, 256), false, now) {
            Placement::Cold { evicted } => evicted,
            other => panic!("expected a cold start, got {other:?}"),
        }
    }

    /// A composition's next step is prepared ahead (a speculative start). An activation of
    /// that action arriving before the container is ready waits for it instead of starting a
    /// second one; a further activation (concurrency 1: one per start) starts its own.
    #[test]
    fn an_activation_waits_for_the_speculative_start_of_its_action() {
        let now = Instant::now();
        let mut p = PoolState::<u32>::new(4096, 10, vec![]);
        let a = key("a");
        let d = demand(&a, 256);
        assert!(matches!(
            p.place_speculative(&d, now),
            Some(Placement::Cold { .. })
        ));
        let mut rx = match p.place(&d, false, now) {
            Placement::AwaitStart(rx) => rx,
            other => panic!("expected a wait for the prepared container, got {other:?}"),
        };
        assert!(matches!(p.place(&d, false, now), Placement::Cold { .. }));
        assert_eq!(p.counters.cold_starts, 2);
        // The prepared container is initialized and given back, then the start ends: the
        // waiter is woken and finds it warm.
        let id = p.insert_active(7, "nodejs:20", 256, a, 1);
        p.release(id, true, None, now);
        assert!(rx.try_recv().is_err(), "not before the start ends");
        p.speculation_done(&a);
        assert!(rx.try_recv().is_ok(), "woken");
        assert!(matches!(
            p.place(&d, true, now),
            Placement::Warm { handle: 7, .. }
        ));
        assert!(p.speculating.is_empty());
        // A failed speculative start wakes its waiter too, which then places as usual.
        let b = key("b");
        let db = demand(&b, 256);
        assert!(p.place_speculative(&db, now).is_some());
        let mut rx = match p.place(&db, false, now) {
            Placement::AwaitStart(rx) => rx,
            other => panic!("expected a wait, got {other:?}"),
        };
        p.cancel_cold(256);
        p.speculation_done(&b);
        assert!(rx.try_recv().is_ok());
        assert!(matches!(p.place(&db, true, now), Placement::Cold { .. }));
        // After a timed-out wait, no more waiting for it.
        let c = key("c");
        assert!(p.place_speculative(&demand(&c, 256), now).is_some());
        let no_wait = Demand {
            await_start: false,
            ..demand(&c, 256)
        };
        assert!(matches!(
            p.place(&no_wait, false, now),
            Placement::Cold { .. }
        ));
    }

    #[test]
    fn a_burst_for_a_concurrent_action_waits_for_the_starting_container() {
        let now = Instant::now();
        let mut p = PoolState::<u32>::new(4096, 10, vec![]);
        let a = key("a");
        let d = Demand {
            concurrency: 3,
            ..demand(&a, 256)
        };
        // The first starts a container; the next two fit in it and wait; the fourth starts
        // another, whose two free slots take the next two.
        assert!(matches!(p.place(&d, false, now), Placement::Cold { .. }));
        let mut waits = Vec::new();
        for _ in 0..2 {
            match p.place(&d, false, now) {
                Placement::AwaitStart(rx) => waits.push(rx),
                other => panic!("expected a wait, got {other:?}"),
            }
        }
        assert!(matches!(p.place(&d, false, now), Placement::Cold { .. }));
        assert!(matches!(p.place(&d, false, now), Placement::AwaitStart(_)));
        assert_eq!(p.counters.cold_starts, 2);
        // The first container is initialized: every waiter places again and finds it.
        let id = p.insert_active(1, "nodejs:20", 256, a, 1);
        p.set_max(id, 3);
        p.started(&a, 3);
        for mut rx in waits {
            assert!(rx.try_recv().is_ok(), "woken");
        }
        assert!(matches!(
            p.place(&d, true, now),
            Placement::Warm { handle: 1, .. }
        ));
        assert!(matches!(
            p.place(&d, true, now),
            Placement::Warm { handle: 1, .. }
        ));
        // A failed second start also wakes its waiters, and nothing is left behind.
        p.started(&a, 3);
        assert!(p.starting.is_empty());
        // Without permission to wait (after a timed-out wait), or with concurrency 1, a busy
        // key starts a container.
        let no_wait = Demand {
            await_start: false,
            ..d.clone()
        };
        assert!(matches!(
            p.place(&no_wait, false, now),
            Placement::Cold { .. }
        ));
        p.started(&a, 3);
        let single = demand(&a, 256);
        assert!(matches!(
            p.place(&single, false, now),
            Placement::Cold { .. }
        ));
        assert!(matches!(
            p.place(&single, false, now),
            Placement::Cold { .. }
        ));
        assert!(p.starting.is_empty());
    }

    /// A pool with `n` warm idle containers of `k` (handles 1..=n) whose recent runs took
    /// `run_us`, and `cpu_slots` slots.
    fn warm_pool(k: &PoolKey, n: u32, run_us: u64, cpu_slots: u32) -> PoolState<u32> {
        let now = Instant::now();
        let mut p = PoolState::<u32>::new(8192, 100, vec![]);
        p.cpu_slots = cpu_slots;
        let ids: Vec<u64> = (1..=n).map(|h| cold(&mut p, k, h, now)).collect();
        for id in ids {
            p.release(id, true, Some(Duration::from_micros(run_us)), now);
        }
        p
    }

    /// A run on the container with `handle` ends (300 µs); returns the container's id.
    fn finish_run(p: &mut PoolState<u32>, handle: u32) -> u64 {
        let id = p
            .entries
            .iter()
            .find(|e| e.handle == Some(handle))
            .unwrap()
            .id;
        p.release(id, true, Some(Duration::from_micros(300)), Instant::now());
        id
    }

    fn take(p: &mut PoolState<u32>, d: &Demand<'_>) -> u32 {
        match p.place(d, false, Instant::now()) {
            Placement::Warm {
                handle,
                behind: false,
                ..
            } => handle,
            other => panic!("expected a warm container, got {other:?}"),
        }
    }

    #[test]
    fn a_short_action_waits_for_a_busy_container_beyond_its_cpu_slots() {
        let a = key("a");
        let d = demand(&a, 256);
        let mut p = warm_pool(&a, 4, 300, 2);
        let first = take(&mut p, &d);
        let _second = take(&mut p, &d);
        // Two busy, two idle: the third waits instead of taking an idle container.
        let Placement::AwaitBusy(mut rx) = p.place(&d, false, Instant::now()) else {
            panic!("expected a wait for a busy container");
        };
        assert!(rx.try_recv().is_err());
        // A run ends: the waiter is woken and gets a container when it places again.
        let id = finish_run(&mut p, first);
        assert!(rx.try_recv().is_ok());
        // The container given back is the woken activation's: one that arrives now queues
        // behind it even though only one container is busy.
        let Placement::AwaitBusy(mut later) = p.place(&d, false, Instant::now()) else {
            panic!("a newcomer must not overtake a woken waiter");
        };
        let woken = Demand {
            busy_turn: true,
            ..d.clone()
        };
        take(&mut p, &woken);
        // After a timed-out wait it places as usual.
        let impatient = Demand {
            await_busy: false,
            ..d.clone()
        };
        take(&mut p, &impatient);
        // A container leaving the pool wakes a waiter too, the first in line.
        let Placement::AwaitBusy(mut last) = p.place(&d, false, Instant::now()) else {
            panic!("expected a wait for a busy container");
        };
        assert!(p.remove(id).is_some());
        assert!(later.try_recv().is_ok());
        assert!(last.try_recv().is_err());
    }

    #[test]
    fn a_short_action_queues_one_run_behind_each_busy_container_before_waiting() {
        let a = key("a");
        let d = Demand {
            queue_behind: true,
            ..demand(&a, 256)
        };
        let mut p = warm_pool(&a, 3, 300, 2);
        let first = take(&mut p, &d);
        let second = take(&mut p, &d);
        // Both slots busy: the next two go behind the busy containers, one each; the idle
        // third container stays idle.
        let mut behind = Vec::new();
        for _ in 0..2 {
            match p.place(&d, false, Instant::now()) {
                Placement::Warm {
                    handle,
                    behind: true,
                    ..
                } => behind.push(handle),
                other => panic!("expected a run queued behind a busy container, got {other:?}"),
            }
        }
        behind.sort();
        let mut busy = vec![first, second];
        busy.sort();
        assert_eq!(behind, busy);
        // Every busy container has a run queued: the next waits.
        let Placement::AwaitBusy(mut rx) = p.place(&d, false, Instant::now()) else {
            panic!("expected a wait for a busy container");
        };
        // A run ends (its container still has the queued one): the waiter is woken, and a
        // newcomer does not overtake it.
        finish_run(&mut p, first);
        assert!(rx.try_recv().is_ok());
        assert!(matches!(
            p.place(&d, false, Instant::now()),
            Placement::AwaitBusy(_)
        ));
        let woken = Demand {
            busy_turn: true,
            ..d.clone()
        };
        assert!(matches!(
            p.place(&woken, false, Instant::now()),
            Placement::Warm { handle, behind: true, .. } if handle == first
        ));
        assert_eq!(p.counters.queued_behind, 3);
        // Not for actions whose runs are long, nor behind a paused or idle container, nor
        // when the runtime cannot (queue_behind false).
        let mut p = warm_pool(&a, 1, 5_000, 1);
        take(&mut p, &d);
        assert!(matches!(
            p.place(&d, false, Instant::now()),
            Placement::Cold { .. }
        ));
        let mut p = warm_pool(&a, 1, 300, 1);
        take(&mut p, &demand(&a, 256));
        assert!(matches!(
            p.place(&demand(&a, 256), false, Instant::now()),
            Placement::AwaitBusy(_)
        ));
    }

    #[test]
    fn long_runs_unsampled_actions_and_concurrent_actions_never_wait_for_busy_containers() {
        let a = key("a");
        let d = demand(&a, 256);
        // Runs of 5 ms are not short: every idle container is used, then a new one starts.
        let mut p = warm_pool(&a, 3, 5_000, 1);
        for _ in 0..3 {
            take(&mut p, &d);
        }
        assert!(matches!(
            p.place(&d, false, Instant::now()),
            Placement::Cold { .. }
        ));
        // No run measured yet (a burst of cold starts): nothing to go by.
        let b = key("b");
        let mut p = PoolState::<u32>::new(8192, 100, vec![]);
        p.cpu_slots = 1;
        cold(&mut p, &b, 1, Instant::now());
        assert!(matches!(
            p.place(&demand(&b, 256), false, Instant::now()),
            Placement::Cold { .. }
        ));
        // The estimate takes a faster run at once and a slower one an eighth at a time.
        let mut p = warm_pool(&a, 1, 1_000, 1);
        let id = p.entries[0].id;
        take(&mut p, &d);
        p.release(id, true, Some(Duration::from_micros(9_000)), Instant::now());
        assert_eq!(p.entries[0].run_us, 2_000);
        take(&mut p, &d);
        p.release(id, true, Some(Duration::from_micros(400)), Instant::now());
        assert_eq!(p.entries[0].run_us, 400);
        // Concurrent actions share containers instead (their own policy).
        let c = Demand {
            concurrency: 4,
            ..d.clone()
        };
        let mut p = warm_pool(&a, 1, 300, 1);
        let id = p.entries[0].id;
        p.set_max(id, 4);
        take(&mut p, &c);
        take(&mut p, &c);
    }

    #[test]
    fn a_long_queue_for_busy_containers_spills_into_new_containers() {
        let a = key("a");
        let d = demand(&a, 256);
        // Runs of 1 ms on one slot: 50 waiters make the expected wait 50 ms, the limit.
        let mut p = warm_pool(&a, 1, 1_000, 1);
        take(&mut p, &d);
        let mut waiting = Vec::new();
        for _ in 0..49 {
            match p.place(&d, false, Instant::now()) {
                Placement::AwaitBusy(rx) => waiting.push(rx),
                other => panic!("expected a wait, got {other:?}"),
            }
        }
        assert!(matches!(
            p.place(&d, false, Instant::now()),
            Placement::Cold { .. }
        ));
    }

    #[test]
    fn warm_containers_are_reused_only_for_the_same_key() {
        let now = Instant::now();
        let mut p = PoolState::<u32>::new(1024, 10, vec![]);
        let (a, b) = (key("a"), key("b"));
        let id = cold(&mut p, &a, 1, now);
        // Busy with concurrency 1: the same key cannot share it.
        assert!(matches!(
            p.place(&demand(&a, 256), false, now),
            Placement::Cold { .. }
        ));
        p.cancel_cold(256);
        p.release(id, true, None, now);
        assert!(matches!(
            p.place(&demand(&a, 256), false, now),
            Placement::Warm { handle: 1, .. }
        ));
        p.release(id, true, None, now);
        assert!(matches!(
            p.place(&demand(&b, 256), false, now),
            Placement::Cold { .. }
        ));
        assert_eq!(p.counters.warm_hits, 1);
        assert!(p.has_key(&a), "a has a container, busy or not");
        assert!(!p.has_key(&b), "b's cold start has no container yet");
    }

    #[test]
    fn concurrency_allows_sharing_after_init() {
        let now = Instant::now();
        let mut p = PoolState::<u32>::new(1024, 10, vec![]);
        let a = key("a");
        let id = cold(&mut p, &a, 1, now);
        p.set_max(id, 2);
        assert!(matches!(
            p.place(&demand(&a, 256), false, now),
            Placement::Warm { .. }
        ));
        assert!(matches!(
            p.place(&demand(&a, 256), false, now),
            Placement::Cold { .. }
        ));
    }

    #[test]
    fn full_pool_evicts_lru_idle_then_queues() {
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_secs(1);
        let mut p = PoolState::<u32>::new(512, 1, vec![]);
        let (a, b, c, d) = (key("a"), key("b"), key("c"), key("d"));
        let ia = cold(&mut p, &a, 1, t0);
        let ib = cold(&mut p, &b, 2, t0);
        p.release(ib, true, None, t0);
        p.release(ia, true, None, t1);
        // b is the least recently used.
        assert_eq!(evicted_by(&mut p, &c, t1), vec![2]);
        p.insert_active(3, "nodejs:20", 256, c, 1);
        // a is idle and evictable; after that both are busy and d must queue.
        assert!(
            matches!(p.place(&demand(&d, 256), false, t1), Placement::Cold { evicted } if evicted == vec![1])
        );
        p.insert_active(4, "nodejs:20", 256, d, 1);
        let rx = match p.place(&demand(&a, 256), false, t1) {
            Placement::Queued(rx) => rx,
            other => panic!("{other:?}"),
        };
        assert!(matches!(
            p.place(&demand(&b, 256), false, t1),
            Placement::QueueFull
        ));
        assert_eq!(p.used, 512);
        p.wake_one();
        drop(rx);
        assert_eq!(p.counters.evictions, 2);
    }

    /// Eviction frees the containers of the least demanded action first, whatever their
    /// recency; demand outlives containers and fades with time.
    #[test]
    fn eviction_spares_the_containers_of_demanded_actions() {
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_secs(1);
        let mut p = PoolState::<u32>::new(512, 8, vec![]);
        let (hot, once, new) = (key("hot"), key("once"), key("new"));
        for _ in 0..5 {
            p.note_demand(&hot, t0);
        }
        let ih = cold(&mut p, &hot, 1, t0);
        p.note_demand(&once, t0);
        let io = cold(&mut p, &once, 2, t0);
        // `hot` is the least recently used, `once` the least demanded.
        p.release(ih, true, None, t0);
        p.release(io, true, None, t1);
        p.note_demand(&new, t1);
        assert_eq!(evicted_by(&mut p, &new, t1), vec![2]);
        let inew = p.insert_active(3, "nodejs:20", 256, new, 1);
        p.release(inew, true, None, t1);
        // `once` comes back: its demand (2) now exceeds `new`'s (1), and `hot`'s (5) has not
        // faded yet, so `new` goes.
        p.note_demand(&once, t1);
        assert_eq!(evicted_by(&mut p, &once, t1), vec![3]);
        let io = p.insert_active(4, "nodejs:20", 256, once, 1);
        p.release(io, true, None, t1);
        // Ten half-lives later `hot`'s demand is ~0.005, below `new`'s fresh one: `hot` goes.
        let later = t1 + DEMAND_HALF_LIFE * 10;
        p.note_demand(&new, later);
        p.note_demand(&once, later);
        assert_eq!(evicted_by(&mut p, &new, later), vec![1]);
    }

    #[test]
    fn a_waiting_queue_is_not_overtaken_by_cold_starts() {
        let now = Instant::now();
        let mut p = PoolState::<u32>::new(256, 10, vec![]);
        let (a, b, c) = (key("a"), key("b"), key("c"));
        let ia = cold(&mut p, &a, 1, now);
        let _rx = match p.place(&demand(&b, 256), false, now) {
            Placement::Queued(rx) => rx,
            other => panic!("{other:?}"),
        };
        p.release(ia, true, None, now);
        // A newcomer queues behind b even though a could be evicted now...
        assert!(matches!(
            p.place(&demand(&c, 256), false, now),
            Placement::Queued(_)
        ));
        // ...but a newcomer of a's key may take its warm container.
        assert!(matches!(
            p.place(&demand(&a, 256), false, now),
            Placement::Warm { .. }
        ));
    }

    #[test]
    fn sweep_pauses_after_grace_and_expires_after_idle() {
        let t0 = Instant::now();
        let grace = Duration::from_millis(100);
        let idle = Duration::from_secs(10);
        let mut p = PoolState::<u32>::new(1024, 10, vec![]);
        let a = key("a");
        let id = cold(&mut p, &a, 7, t0);
        assert_eq!(
            p.sweep(t0 + grace, grace, idle).0.len(),
            0,
            "busy is never paused"
        );
        p.release(id, true, None, t0);
        let (pause, destroy) = p.sweep(t0 + grace, grace, idle);
        assert_eq!((pause, destroy), (vec![(id, 7)], vec![]));
        assert!(p.mark_paused(id, t0 + grace, grace));
        assert!(!p.mark_paused(id, t0 + grace, grace), "already paused");
        match p.place(&demand(&a, 256), false, t0 + grace) {
            Placement::Warm { resume, .. } => assert!(resume),
            other => panic!("{other:?}"),
        }
        p.release(id, true, None, t0 + grace);
        let (_, destroy) = p.sweep(t0 + grace + idle, grace, idle);
        assert_eq!(destroy, vec![7]);
        assert_eq!(p.used, 0);
    }
}
