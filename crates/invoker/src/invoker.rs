//! The invoker: owns the pool, starts stem cells, pauses and reaps idle containers.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use brisk_model::RuntimeManifest;
use parking_lot::Mutex;
use serde::Serialize;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::client::ProxyClient;
use crate::code_cache::CodeCache;
use crate::config::InvokerConfig;
use crate::container::{Container, ContainerFactory, ContainerSpec};
use crate::error::{Error, Result};
use crate::logs::LogHub;
use crate::pool::{PoolState, State};
use crate::process::ProcessFactory;
use crate::runtime::Runtimes;
use crate::stems::stem_configs;

/// How long a stem cell may take to accept connections.
const STEM_START_TIMEOUT: Duration = Duration::from_secs(30);

/// A started container with its connections and log readers.
pub(crate) struct Slot {
    pub seq: u64,
    pub container: Box<dyn Container>,
    pub client: ProxyClient,
    pub logs: Arc<LogHub>,
    /// Serializes pause and resume so that a resume never overtakes a pause.
    pub pause_lock: tokio::sync::Mutex<()>,
    /// The order of the runs sent to the container (for runs queued behind another).
    pub turns: crate::turns::Turns,
}

pub(crate) type Handle = Arc<Slot>;

/// A snapshot of the pool.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PoolStats {
    pub capacity_mb: u64,
    pub used_mb: u64,
    pub warm_idle: usize,
    pub busy: usize,
    pub paused: usize,
    pub starting: usize,
    /// Stem cells ready, per kind.
    pub prewarmed: BTreeMap<String, usize>,
    pub queued: usize,
    pub cold_starts: u64,
    pub prewarm_hits: u64,
    pub warm_hits: u64,
    /// Warm hits sent to a busy container as its next run (short actions under load).
    pub queued_behind: u64,
    pub evictions: u64,
    pub pauses: u64,
    pub resumes: u64,
    /// Containers alive (in the pool or being started or destroyed).
    pub live_containers: usize,
    /// Zipped actions' archives unpacked into the code cache so far (once per version).
    pub code_unpacks: u64,
}

/// Runs activations in a pool of containers. Share it as `Arc<Invoker>`.
pub struct Invoker {
    pub(crate) me: Weak<Invoker>,
    pub(crate) config: InvokerConfig,
    pub(crate) manifest: Arc<RuntimeManifest>,
    pub(crate) runtimes: Runtimes,
    pub(crate) factory: Arc<dyn ContainerFactory>,
    pub(crate) pool: Mutex<PoolState<Handle>>,
    pub(crate) live: Mutex<HashMap<u64, Handle>>,
    pub(crate) shutting_down: AtomicBool,
    seq: AtomicU64,
    cancel: CancellationToken,
    pub(crate) tasks: TaskTracker,
    /// Unpacked zipped code, shared by the containers of an action version.
    pub(crate) code_cache: Arc<CodeCache>,
    /// Set while an archive is being unpacked ahead of time ([`Invoker::prepare_code`]).
    preparing: Arc<AtomicBool>,
}

impl Invoker {
    /// Starts an invoker with the process backend.
    pub async fn start(config: InvokerConfig, manifest: Arc<RuntimeManifest>) -> Result<Arc<Self>> {
        Self::start_with_factory(config, manifest, Arc::new(ProcessFactory::new())).await
    }

    /// Starts an invoker on any container backend: cleans up leftovers of a previous run under
    /// `run_dir`, resolves the runtimes and starts the stem cells.
    pub async fn start_with_factory(
        config: InvokerConfig,
        manifest: Arc<RuntimeManifest>,
        factory: Arc<dyn ContainerFactory>,
    ) -> Result<Arc<Self>> {
        tokio::fs::create_dir_all(&config.run_dir)
            .await
            .map_err(|e| Error::io("create run dir", &config.run_dir, e))?;
        factory.cleanup_leftovers(&config.run_dir).await;
        let (m, dir) = (manifest.clone(), config.runtimes_dir.clone());
        let runtimes = tokio::task::spawn_blocking(move || Runtimes::resolve(&m, &dir))
            .await
            .map_err(|e| Error::Task(e.to_string()))?;
        let stems = if config.prewarm {
            stem_configs(&manifest, &runtimes)
        } else {
            Vec::new()
        };
        let mut pool = PoolState::new(config.user_memory_mb, config.max_queue, stems);
        if config.cpu_slots > 0 {
            pool.cpu_slots = config.cpu_slots;
        }
        let code_cache = Arc::new(CodeCache::new(config.run_dir.join(".code")));
        let inv = Arc::new_cyclic(|me| Invoker {
            me: me.clone(),
            code_cache,
            preparing: Arc::new(AtomicBool::new(false)),
            config,
            manifest,
            runtimes,
            factory,
            pool: Mutex::new(pool),
            live: Mutex::new(HashMap::new()),
            shutting_down: AtomicBool::new(false),
            seq: AtomicU64::new(1),
            cancel: CancellationToken::new(),
            tasks: TaskTracker::new(),
        });
        inv.refill_stems();
        let janitor = inv.clone();
        inv.tasks.spawn(async move { janitor.janitor().await });
        tracing::info!(
            capacity_mb = inv.config.user_memory_mb,
            prewarm = inv.config.prewarm,
            "invoker started"
        );
        Ok(inv)
    }

    pub(crate) fn arc(&self) -> Option<Arc<Self>> {
        self.me.upgrade()
    }

    /// Unpacks the zipped code of `action`, just created or updated, into the code cache in the
    /// background, so that its first start only links the files instead of inflating them
    /// (a package with its `node_modules`: thousands of files). Does nothing for plain code.
    /// One archive at a time: while one is being unpacked, further calls are skipped and
    /// those actions unpack on their first start as before, so a client that uploads many
    /// versions cannot queue up unpacking work.
    pub fn prepare_code(&self, action: Arc<brisk_model::Action>) {
        if !action.exec.binary()
            || action.exec.code().is_none()
            || self.shutting_down.load(Ordering::Relaxed)
            || self.preparing.swap(true, Ordering::AcqRel)
        {
            return;
        }
        /// Clears the flag however the unpacking ends.
        struct Done(Arc<AtomicBool>);
        impl Drop for Done {
            fn drop(&mut self) {
                self.0.store(false, Ordering::Release);
            }
        }
        let (cache, done) = (self.code_cache.clone(), Done(self.preparing.clone()));
        self.tasks.spawn_blocking(move || {
            let _done = done;
            let code = action.exec.code().unwrap_or("");
            if let Err(e) = cache.prepare(&action, code) {
                // The first start unpacks again and reports the error to the caller.
                tracing::debug!(action = %action.name, error = %e, "unpacking ahead failed");
            }
        });
    }

    /// Counts of the pool right now.
    pub fn stats(&self) -> PoolStats {
        let live_containers = self.live.lock().len();
        let p = self.pool.lock();
        let mut s = PoolStats {
            capacity_mb: p.capacity,
            used_mb: p.used,
            queued: p.queue.len(),
            cold_starts: p.counters.cold_starts,
            prewarm_hits: p.counters.prewarm_hits,
            warm_hits: p.counters.warm_hits,
            queued_behind: p.counters.queued_behind,
            evictions: p.counters.evictions,
            pauses: p.counters.pauses,
            resumes: p.counters.resumes,
            live_containers,
            code_unpacks: self.code_cache.unpacks(),
            ..PoolStats::default()
        };
        for e in &p.entries {
            match &e.state {
                State::Starting => s.starting += 1,
                State::Prewarmed => *s.prewarmed.entry(e.kind.clone()).or_default() += 1,
                State::Active { busy, paused, .. } => {
                    if *busy > 0 {
                        s.busy += 1;
                    } else if *paused {
                        s.paused += 1;
                    } else {
                        s.warm_idle += 1;
                    }
                }
            }
        }
        s
    }

    /// Kills every container and removes their directories. Activations still running end
    /// with an error record.
    pub async fn shutdown(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
        self.cancel.cancel();
        drop(self.pool.lock().drain());
        let all: Vec<Handle> = self.live.lock().drain().map(|(_, h)| h).collect();
        let kills = all.iter().map(|h| h.container.destroy());
        futures_join_all(kills).await;
        self.tasks.close();
        if tokio::time::timeout(Duration::from_secs(5), self.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!("background tasks still running after shutdown");
        }
        // Containers that raced with shutdown, and anything else left under run_dir.
        let late: Vec<Handle> = self.live.lock().drain().map(|(_, h)| h).collect();
        futures_join_all(late.iter().map(|h| h.container.destroy())).await;
        self.factory.cleanup_leftovers(&self.config.run_dir).await;
        self.factory.shutdown().await;
        tracing::info!("invoker stopped");
    }

    /// Starts a container of `kind` and waits until its proxy answers the readiness probe.
    pub(crate) async fn start_container(
        &self,
        kind: &str,
        memory_mb: u64,
        allow_concurrent: bool,
        deadline: Instant,
        network: crate::NetworkPolicy,
    ) -> Result<Handle> {
        if self.shutting_down.load(Ordering::SeqCst) {
            return Err(Error::ShuttingDown);
        }
        let unavailable = |reason: &str| Error::RuntimeUnavailable {
            kind: kind.to_owned(),
            reason: reason.to_owned(),
        };
        let rt = self
            .runtimes
            .get(kind)
            .ok_or_else(|| unavailable("unknown kind"))?;
        let (interpreter, proxy) = rt.launch.clone().map_err(|r| unavailable(&r))?;
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let name = format!("c{seq}");
        let spec = ContainerSpec {
            dir: self.config.run_dir.join(&name),
            name,
            kind: kind.to_owned(),
            interpreter,
            args: rt.args.clone(),
            proxy,
            memory_mb,
            allow_concurrent,
            api_host: self.config.api_host.clone(),
            network,
        };
        let (container, output) = self.factory.create(&spec).await?;
        let logs = LogHub::start(output, &spec.name);
        let client = ProxyClient::new(container.socket_path(), &spec.name);
        let slot = Arc::new(Slot {
            seq,
            container,
            client,
            logs,
            pause_lock: tokio::sync::Mutex::new(()),
            turns: Default::default(),
        });
        self.live.lock().insert(seq, slot.clone());
        if self.shutting_down.load(Ordering::SeqCst) {
            self.destroy(&slot).await;
            return Err(Error::ShuttingDown);
        }
        let ready = slot
            .client
            .wait_ready(deadline, || slot.container.has_exited())
            .await;
        if let Err(e) = ready {
            self.destroy(&slot).await;
            return Err(e);
        }
        Ok(slot)
    }

    pub(crate) async fn destroy(&self, slot: &Handle) {
        slot.client.close_idle();
        slot.container.destroy().await;
        self.live.lock().remove(&slot.seq);
    }

    /// Destroys in the background (the caller does not wait for the kill).
    pub(crate) fn destroy_later(&self, slots: Vec<Handle>) {
        if slots.is_empty() {
            return;
        }
        let Some(me) = self.arc() else { return };
        self.tasks.spawn(async move {
            for s in &slots {
                me.destroy(s).await;
            }
        });
    }

    /// Starts the stem cells that are missing.
    pub(crate) fn refill_stems(&self) {
        if !self.config.prewarm || self.shutting_down.load(Ordering::SeqCst) {
            return;
        }
        let todo = self.pool.lock().stems_to_start(std::time::Instant::now());
        self.destroy_later(todo.evicted);
        let Some(me) = self.arc() else { return };
        for (id, kind, memory) in todo.start {
            let me = me.clone();
            self.tasks.spawn(async move {
                let deadline = Instant::now() + STEM_START_TIMEOUT;
                let started = me
                    .start_container(&kind, memory, false, deadline, me.config.network)
                    .await;
                let handle = match started {
                    Ok(h) => Some(h),
                    Err(e) => {
                        tracing::warn!(kind, error = %e, "stem cell failed to start");
                        None
                    }
                };
                let accepted = {
                    let mut p = me.pool.lock();
                    let ok = p.stem_started(id, handle.clone());
                    p.wake_one();
                    ok
                };
                if let (false, Some(h)) = (accepted, handle) {
                    me.destroy(&h).await;
                }
            });
        }
    }

    /// Pauses idle containers after the grace period and destroys them after the idle timeout.
    async fn janitor(self: Arc<Self>) {
        let tick = (self.config.pause_grace.min(self.config.idle_timeout) / 4)
            .clamp(Duration::from_millis(5), Duration::from_secs(1));
        let mut interval = tokio::time::interval(tick);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = self.cancel.cancelled() => return,
                _ = interval.tick() => {}
            }
            let now = std::time::Instant::now();
            let (grace, idle) = (self.config.pause_grace, self.config.idle_timeout);
            let (to_pause, to_destroy) = {
                let mut p = self.pool.lock();
                let (pause, mut destroy) = p.sweep(now, grace, idle);
                destroy.extend(p.shrink_stems(now));
                (pause, destroy)
            };
            if !to_destroy.is_empty() {
                tracing::debug!(count = to_destroy.len(), "destroying idle containers");
                for h in &to_destroy {
                    self.destroy(h).await;
                }
                self.pool.lock().wake_one();
            }
            for (id, h) in to_pause {
                let _guard = h.pause_lock.lock().await;
                let marked = self
                    .pool
                    .lock()
                    .mark_paused(id, std::time::Instant::now(), grace);
                if marked && let Err(e) = h.container.pause().await {
                    tracing::warn!(container = h.container.name(), error = %e, "pause failed");
                }
            }
            self.refill_stems();
        }
    }
}

/// Awaits the futures one after the other (kills are quick; no `futures` dependency).
async fn futures_join_all<F: std::future::Future<Output = ()>>(futs: impl Iterator<Item = F>) {
    let set: Vec<_> = futs.map(Box::pin).collect();
    for f in set {
        f.await;
    }
}
