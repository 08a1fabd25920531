//! One activation from placement to record: take a container (warm, stem cell, cold, after
//! eviction, or after waiting), `/init` it if needed, `/run`, collect logs, give it back.

use std::sync::atomic::Ordering;
use std::time::Duration;

use brisk_model::{Activation, ActivationResponse, Exec, StatusCode, now_millis};

use futures_util::FutureExt;
use tracing::Instrument;

use crate::invoker::{Handle, Invoker};
use crate::job::{self, Job, RunFacts};
use crate::logs::{self, Stream};
use crate::pool::{Demand, Placement, PoolKey};

const MB: u64 = 1024 * 1024;
/// How long to wait for the output of a killed container to drain.
const DEAD_LOGS_WAIT: Duration = Duration::from_secs(2);

/// A container lent to one activation. Dropping it without [`Lease::give_back`] (a panic)
/// removes and destroys the container, so the pool never leaks capacity.
struct Lease<'a> {
    inv: &'a Invoker,
    id: u64,
    slot: Handle,
    armed: bool,
}

impl Lease<'_> {
    fn give_back(self, keep: bool) {
        self.give_back_after(keep, None);
    }

    /// Gives the container back after a warm `/run` that took `run`.
    fn give_back_after(mut self, keep: bool, run: Option<Duration>) {
        self.armed = false;
        self.release(keep, run);
    }

    fn release(&self, keep: bool, run: Option<Duration>) {
        let gone = {
            let mut p = self.inv.pool.lock();
            let gone = p.release(self.id, keep, run, std::time::Instant::now());
            p.wake_one();
            gone
        };
        if let Some(h) = gone {
            self.inv.destroy_later(vec![h]);
        }
    }

    /// The container must go after this run. Returns true when nothing is queued behind it:
    /// it has left the pool (under the pool's lock, so nothing can be queued behind it any
    /// more) and the caller destroys it now. Otherwise it is retired (it leaves when the queued
    /// runs end) and the lease is given back.
    fn retire_now(&mut self) -> bool {
        let now = {
            let mut p = self.inv.pool.lock();
            let now = p.retire(self.id, std::time::Instant::now());
            p.wake_one();
            now
        };
        self.armed = false;
        now
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.release(false, None);
        }
    }
}

/// Beyond the action's time limit, how long an activation waits for a starting container.
const START_WAIT_SLACK: Duration = Duration::from_secs(5);

/// How often an activation may move on after a container refused it.
const MAX_PLACEMENTS: u32 = 3;

impl Invoker {
    /// Runs one activation to completion. Always returns a record: platform failures become
    /// whisk errors with a reason.
    pub async fn run(&self, job: Job) -> Activation {
        let span = tracing::debug_span!(
            "activation",
            namespace = %job.identity.namespace,
            action = %job.action.fqn(),
            activation_id = %job.activation_id,
            container_id = tracing::field::Empty,
        );
        // A panic stays inside this call and becomes a whisk error. A caller that stops polling
        // drops the lease, which destroys the container rather than lending it out mid-run
        // (callers are the controller's activation tasks, which always run to the end).
        let outcome = std::panic::AssertUnwindSafe(self.run_inner(&job).instrument(span))
            .catch_unwind()
            .await;
        match outcome {
            Ok(a) => a,
            Err(_) => {
                tracing::error!(activation_id = %job.activation_id, "activation task panicked");
                whisk_error(&job, "An internal error occurred while running the action.")
            }
        }
    }

    /// Prepares a container for `job`'s action before it is needed (the later steps of a
    /// composition): initialized and left warm, without running anything. Speculative: does
    /// nothing when a container for the action exists or when it would need evicting or queueing.
    pub async fn prepare(&self, job: Job) {
        let Some(kind) = self.runnable_kind(&job) else {
            return;
        };
        let memory = job.action.limits.memory;
        let key = pool_key(&job);
        let network = self.network_of(&job);
        let demand = Demand {
            key: &key,
            kind,
            memory,
            stem_ok: network == self.config.network,
            concurrency: job.action.limits.concurrency,
            await_start: false,
            await_busy: false,
            busy_turn: false,
            queue_behind: false,
        };
        if self.shutting_down.load(Ordering::SeqCst) {
            return;
        }
        let Some(placement) = self
            .pool
            .lock()
            .place_speculative(&demand, std::time::Instant::now())
        else {
            return;
        };
        // However this ends, activations of the key that waited for it place again (after the
        // container was given back, when it was).
        let _done = SpeculationDone { inv: self, key };
        let (id, slot, from_stem) = match placement {
            Placement::Prewarm { id, handle } => (id, handle, true),
            Placement::Cold { .. } => {
                let limits = job.action.limits;
                let deadline = tokio::time::Instant::now() + Duration::from_millis(limits.timeout);
                let slot = match self
                    .start_container(kind, memory, limits.concurrency > 1, deadline, network)
                    .await
                {
                    Ok(s) => s,
                    Err(e) => {
                        let mut p = self.pool.lock();
                        p.cancel_cold(memory);
                        p.wake_one();
                        tracing::debug!(error = %e, "speculative start failed");
                        return;
                    }
                };
                let id = self
                    .pool
                    .lock()
                    .insert_active(slot.clone(), kind, memory, key, 1);
                (id, slot, false)
            }
            _ => return,
        };
        let lease = Lease {
            inv: self,
            id,
            slot,
            armed: true,
        };
        let mut facts = RunFacts {
            start_ms: now_millis(),
            ..RunFacts::default()
        };
        let ok = self.init(&job, &lease.slot, &mut facts).await.is_ok();
        if ok {
            self.pool
                .lock()
                .set_max(lease.id, job.action.limits.concurrency);
            lease.give_back(true);
        } else {
            let slot = lease.slot.clone();
            lease.give_back(false);
            self.destroy(&slot).await;
        }
        if from_stem {
            self.refill_stems();
        }
    }

    /// The network policy of the invoking namespace, else the deployment's.
    fn network_of(&self, job: &Job) -> crate::NetworkPolicy {
        job.identity
            .limits
            .network
            .as_deref()
            .and_then(|n| n.parse().ok())
            .unwrap_or(self.config.network)
    }

    /// The runtime kind that runs `job`, when it can run here.
    fn runnable_kind<'a>(&self, job: &'a Job) -> Option<&'a str> {
        let kind = match &job.action.exec {
            Exec::Code { kind, .. } => kind.as_str(),
            Exec::Blackbox { image, .. } if self.manifest.is_native_image(image) => {
                brisk_model::runtimes::BLACKBOX
            }
            _ => return None,
        };
        matches!(self.runtimes.get(kind).map(|r| &r.launch), Some(Ok(_)))
            .then_some(kind)
            .filter(|_| job.action.limits.memory <= self.config.user_memory_mb)
    }

    async fn run_inner(&self, job: &Job) -> Activation {
        let action = &job.action;
        let kind = match &action.exec {
            Exec::Code { kind, .. } => kind.as_str(),
            Exec::Blackbox { image, .. } if self.manifest.is_native_image(image) => {
                brisk_model::runtimes::BLACKBOX
            }
            Exec::Blackbox { image, .. } => {
                return early(
                    job,
                    StatusCode::DeveloperError,
                    format!("Failed to pull container image '{image}'."),
                );
            }
            Exec::Sequence { .. } => {
                return whisk_error(job, "Sequences are run by the controller, not the invoker.");
            }
        };
        match self.runtimes.get(kind).map(|r| &r.launch) {
            Some(Ok(_)) => {}
            Some(Err(reason)) => {
                return whisk_error(job, &format!("{kind} runtime unavailable: {reason}"));
            }
            None => return whisk_error(job, &format!("{kind} runtime unavailable: unknown kind")),
        }
        let memory = action.limits.memory;
        if memory > self.config.user_memory_mb {
            return whisk_error(job, "Failed to provision resources to run the action.");
        }
        let key = pool_key(job);
        let network = self.network_of(job);
        let mut demand = Demand {
            key: &key,
            kind,
            memory,
            stem_ok: network == self.config.network,
            concurrency: job.action.limits.concurrency,
            await_start: true,
            await_busy: true,
            busy_turn: false,
            // Every proxy serves the runs of a container without concurrency in order.
            queue_behind: true,
        };
        let mut retry = false;
        let mut attempts = 0;
        let mut prepared = job.prepare_next.is_empty();
        loop {
            attempts += 1;
            if self.shutting_down.load(Ordering::SeqCst) {
                return whisk_error(job, "The invoker is shutting down.");
            }
            let placement = {
                let mut p = self.pool.lock();
                let now = std::time::Instant::now();
                if attempts == 1 {
                    p.note_demand(demand.key, now);
                }
                let pl = p.place(&demand, retry, now);
                demand.busy_turn = false;
                if retry && !matches!(pl, Placement::Queued(_)) && !p.queue.is_empty() {
                    p.wake_one();
                }
                pl
            };
            if !prepared
                && !matches!(
                    placement,
                    Placement::Queued(_)
                        | Placement::AwaitStart(_)
                        | Placement::AwaitBusy(_)
                        | Placement::QueueFull
                )
            {
                prepared = true;
                for next in &job.prepare_next {
                    // The common case in a busy composition: the step's container is warm.
                    if self.pool.lock().has_key(&pool_key(next)) {
                        continue;
                    }
                    if let Some(me) = self.arc() {
                        let next = next.clone();
                        tokio::spawn(async move { me.prepare(next).await });
                    }
                }
            }
            match placement {
                Placement::Warm {
                    id,
                    handle,
                    resume,
                    behind,
                } => {
                    let lease = Lease {
                        inv: self,
                        id,
                        slot: handle,
                        armed: true,
                    };
                    // A dead container must not get the run: its failure could not be told
                    // apart from the action's own crash, and the run could not move on.
                    if lease.slot.container.has_exited() {
                        tracing::warn!("warm container died while idle; trying another");
                        lease.give_back(false);
                        continue;
                    }
                    if resume {
                        let resumed = {
                            let _g = lease.slot.pause_lock.lock().await;
                            lease.slot.container.resume().await
                        };
                        if let Err(e) = resumed {
                            tracing::warn!(error = %e, "resume failed; trying another container");
                            lease.give_back(false);
                            continue;
                        }
                    }
                    let may_move = attempts < MAX_PLACEMENTS;
                    match self
                        .execute(job, &key, lease, false, behind, may_move)
                        .await
                    {
                        Some(a) => return a,
                        None => continue,
                    }
                }
                Placement::Prewarm { id, handle } => {
                    let lease = Lease {
                        inv: self,
                        id,
                        slot: handle,
                        armed: true,
                    };
                    let act = self.execute(job, &key, lease, true, false, false).await;
                    // The replacement starts after the hit so that it does not compete with it.
                    self.refill_stems();
                    return act.unwrap_or_else(|| {
                        whisk_error(job, "Failed to provision resources to run the action.")
                    });
                }
                Placement::Cold { evicted } => {
                    self.destroy_later(evicted);
                    return self.cold(job, kind, memory, key, network).await;
                }
                Placement::Queued(rx) => {
                    tracing::debug!("pool full; activation queued");
                    if rx.await.is_err() && self.shutting_down.load(Ordering::SeqCst) {
                        return whisk_error(job, "The invoker is shutting down.");
                    }
                    retry = true;
                }
                Placement::AwaitStart(rx) => {
                    tracing::debug!("waiting for a starting container of the action");
                    // The start ends within the action's time limit (its `/init` is bounded by
                    // it); should the wake-up never come, stop waiting for starts.
                    let limit = Duration::from_millis(job.action.limits.timeout) + START_WAIT_SLACK;
                    if tokio::time::timeout(limit, rx).await.is_err() {
                        demand.await_start = false;
                    }
                    retry = true;
                }
                Placement::AwaitBusy(mut rx) => {
                    // Woken when a container of the action is given back; after BUSY_WAIT,
                    // place like any activation (an idle or new container).
                    let woken = match tokio::time::timeout(crate::pool::BUSY_WAIT, &mut rx).await {
                        Ok(r) => r.is_ok(),
                        Err(_) => {
                            // A wake-up may have crossed the timeout: closing first makes any
                            // later one fail, so a container given back is never lost.
                            rx.close();
                            rx.try_recv().is_ok()
                        }
                    };
                    if woken {
                        demand.busy_turn = true;
                    } else {
                        demand.await_busy = false;
                    }
                    // Not a woken waiter of the full pool's queue: no place ahead of it.
                    retry = false;
                }
                Placement::QueueFull => return whisk_error(job, "Too many activations queued."),
            }
        }
    }

    async fn cold(
        &self,
        job: &Job,
        kind: &str,
        memory: u64,
        key: PoolKey,
        network: crate::NetworkPolicy,
    ) -> Activation {
        let limits = job.action.limits;
        let deadline = tokio::time::Instant::now() + Duration::from_millis(limits.timeout);
        let started = self
            .start_container(kind, memory, limits.concurrency > 1, deadline, network)
            .await;
        let slot = match started {
            Ok(s) => s,
            Err(e) => {
                {
                    let mut p = self.pool.lock();
                    p.cancel_cold(memory);
                    p.started(&key, limits.concurrency);
                    p.wake_one();
                }
                tracing::warn!(error = %e, "cold start failed");
                return match e {
                    crate::Error::NotReady(_) => early(
                        job,
                        StatusCode::DeveloperError,
                        job::timeout_message(limits.timeout, true),
                    ),
                    crate::Error::RuntimeUnavailable { .. } => whisk_error(job, &e.to_string()),
                    _ => whisk_error(job, "Failed to provision resources to run the action."),
                };
            }
        };
        // Visible to others only once initialized; memory was reserved by the placement.
        let id = self
            .pool
            .lock()
            .insert_active(slot.clone(), kind, memory, key, 1);
        let lease = Lease {
            inv: self,
            id,
            slot,
            armed: true,
        };
        self.execute(job, &key, lease, true, false, false)
            .await
            .unwrap_or_else(|| whisk_error(job, "Failed to provision resources to run the action."))
    }

    /// `/init` (when `init`), `/run`, logs, and the container back to the pool or destroyed.
    /// `None` when the container refused the run (503), or failed before a run queued behind
    /// another began, and `may_move` allows another try.
    async fn execute(
        &self,
        job: &Job,
        key: &PoolKey,
        mut lease: Lease<'_>,
        init: bool,
        behind: bool,
        may_move: bool,
    ) -> Option<Activation> {
        tracing::Span::current().record("container_id", lease.slot.container.name());
        let limits = job.action.limits;
        let log_limit = (limits.logs * MB) as usize;
        let ticket = lease.slot.logs.register(job.activation_id, log_limit);
        let t0 = std::time::Instant::now();
        let out = self.init_and_run(job, &lease.slot, init, behind).await;
        // A queued run's own time starts when the run ahead of it ends.
        let run_time = match out.queued {
            Some(queued) if !init => Some(t0.elapsed().saturating_sub(queued)),
            _ => None,
        };
        if out.retry_elsewhere && may_move {
            tracing::debug!("container refused the run; placing the activation again");
            ticket.discard();
            let slot = lease.slot.clone();
            lease.give_back(false);
            self.destroy(&slot).await;
            return None;
        }
        let keep = matches!(
            out.response.status_code,
            StatusCode::Success | StatusCode::ApplicationError
        );
        if init {
            // Shared from now on; activations that waited for this start place again.
            let mut p = self.pool.lock();
            if keep {
                p.set_max(lease.id, limits.concurrency);
            }
            p.started(key, limits.concurrency);
        }
        let developer_error = out.response.status_code == StatusCode::DeveloperError;
        // A failed run whose proxy answered, with a run queued behind it that has started:
        // the container is retired (it goes when that run ends), not killed.
        let logs = if keep || (out.answered && !lease.retire_now()) {
            // The answer came after the sentinels.
            let wait = Duration::from_secs(limits.logs.max(5) * 2);
            let logs = if log_limit == 0 || out.quiet {
                ticket.discard();
                logs::CollectedLogs {
                    lines: Vec::new(),
                    complete: true,
                }
            } else {
                ticket.collect(wait).await
            };
            if keep {
                lease.give_back_after(keep, run_time);
            }
            logs
        } else {
            // Kill first: the output then ends, and the logs are complete up to the kill.
            let slot = lease.slot.clone();
            lease.give_back(false);
            self.destroy(&slot).await;
            if log_limit == 0 {
                ticket.discard();
                logs::CollectedLogs {
                    lines: Vec::new(),
                    complete: true,
                }
            } else {
                ticket.collect(DEAD_LOGS_WAIT).await
            }
        };
        let mut lines = logs.lines;
        if !logs.complete && log_limit > 0 {
            let marker = if developer_error {
                logs::DEVELOPER_ERROR_LOGS
            } else {
                logs::COLLECTION_ISSUE
            };
            lines.push(logs::entry(Stream::Stderr, marker));
        }
        Some(job::build_activation(job, out.response, lines, out.facts))
    }
}

/// Same action version, same exec and limits, same invoking namespace.
fn pool_key(job: &Job) -> PoolKey {
    let a = &job.action;
    let l = a.limits;
    let exec_id = match &a.exec {
        Exec::Blackbox { image, .. } => image.as_str(),
        e => e.kind(),
    };
    PoolKey::of(|mut h| {
        use std::hash::Hash;
        job.identity.namespace.hash(&mut h);
        job.identity.limits.network.hash(&mut h);
        a.namespace.hash(&mut h);
        a.name.hash(&mut h);
        exec_id.hash(&mut h);
        (
            a.version,
            a.updated,
            l.memory,
            l.concurrency,
            l.timeout,
            l.logs,
        )
            .hash(&mut h);
    })
}

fn early(job: &Job, code: StatusCode, msg: String) -> Activation {
    let now = now_millis();
    let facts = RunFacts {
        start_ms: now,
        end_ms: now,
        ..RunFacts::default()
    };
    job::build_activation(job, ActivationResponse::error(code, msg), Vec::new(), facts)
}

fn whisk_error(job: &Job, msg: &str) -> Activation {
    early(job, StatusCode::WhiskError, msg.to_owned())
}

/// Ends a speculative start in the pool when dropped (see `PoolState::speculation_done`).
struct SpeculationDone<'a> {
    inv: &'a Invoker,
    key: PoolKey,
}

impl Drop for SpeculationDone<'_> {
    fn drop(&mut self) {
        self.inv.pool.lock().speculation_done(&self.key);
    }
}
