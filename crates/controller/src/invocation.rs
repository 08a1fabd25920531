//! From an accepted invoke to a stored record: throttles, argument merging, hand-off to the
//! invoker (primitives) or the sequence runner, and recording the outcome.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use brisk_invoker::Job;
use brisk_model::{
    Activation, ActivationId, ActivationResponse, Exec, Identity, StatusCode, now_millis,
};
use serde_json::{Map, Value};
use tokio_util::task::task_tracker::TrackedFuture;
use tracing::Instrument;

use crate::Controller;
use crate::error::{ApiError, ApiResult};
use crate::resolve::ResolvedAction;
use crate::throttle::{Permit, Rate};

pub const RESERVED_PARAMS: &str =
    "Request defines parameters that are not allowed (e.g., reserved properties).";

/// An accepted invocation, throttled and ready to run.
pub struct Invocation {
    pub activation_id: ActivationId,
    pub transaction_id: String,
    pub identity: Arc<Identity>,
    pub resolved: ResolvedAction,
    /// Arguments: package < binding < action < payload.
    pub args: Value,
    /// The request payload alone (sequences pass only this to their first step).
    pub payload: Map<String, Value>,
    pub received_at_ms: u64,
    pub permit: Option<Permit>,
    /// The event that caused this invocation (a trigger fire): its activation id and the
    /// `causedBy` annotation value.
    pub caused_by: Option<(ActivationId, &'static str)>,
}

impl Invocation {
    /// Checks `final` parameters and throttles, and merges arguments.
    pub fn prepare(
        state: &Controller,
        identity: &Arc<Identity>,
        resolved: ResolvedAction,
        payload: Map<String, Value>,
        tid: &str,
    ) -> ApiResult<Self> {
        let received_at_ms = now_millis();
        let params = resolved.merged_params();
        if resolved.action.annotations.is_truthy("final")
            && payload.keys().any(|k| params.get(k).is_some())
        {
            return Err(ApiError::bad(RESERVED_PARAMS));
        }
        let ns = identity.namespace.as_str();
        let limits = &identity.limits;
        let cfg = &state.config;
        state.throttles.check_rate(
            ns,
            Rate::Invocations,
            limits
                .invocations_per_minute
                .unwrap_or(cfg.invocations_per_minute),
        )?;
        let permit = state.throttles.acquire(
            ns,
            limits
                .concurrent_invocations
                .unwrap_or(cfg.concurrent_invocations),
            || resolved.action.doc_id(),
            resolved.action.limits.instances,
        )?;
        let mut args = params.to_object();
        for (k, v) in &payload {
            args.insert(k.clone(), v.clone());
        }
        Ok(Self {
            activation_id: ActivationId::generate(),
            transaction_id: tid.to_owned(),
            identity: identity.clone(),
            resolved,
            args: Value::Object(args),
            payload,
            received_at_ms,
            permit: Some(permit),
            caused_by: None,
        })
    }
}

impl Controller {
    /// Runs an invocation in the background (a non-blocking invoke, a trigger's rules).
    pub fn launch(self: &Arc<Self>, inv: Invocation) {
        // Tracked already: shutdown waits for it.
        tokio::spawn(self.activation(inv));
    }

    /// Runs an invocation on the caller's task, for a caller that waits for the record anyway:
    /// no task to spawn and no hand-off between tasks on the way back. Should the caller stop
    /// waiting (its time limit, or the client went away), dropping the [`Running`] moves the
    /// activation to a task of its own, where it runs to the end and is recorded as always.
    pub fn start(self: &Arc<Self>, inv: Invocation) -> Running {
        Running {
            run: Some(self.activation(inv)),
        }
    }

    /// The whole life of an activation, from its run to its queued record. Tracked, so shutdown
    /// waits for it wherever it is polled.
    fn activation(self: &Arc<Self>, mut inv: Invocation) -> Activating {
        let state = self.clone();
        // Debug level: formatting span fields costs several microseconds per activation when
        // the span is enabled; at the default level it is skipped.
        let span = tracing::debug_span!("activation",
            namespace = %inv.identity.namespace,
            action = %inv.resolved.action.fqn(),
            activation_id = %inv.activation_id);
        // Boxed: the activation's future is several kilobytes (it holds the invoker's run), so
        // moving it unboxed copied all of it on every move into and within a task, and again
        // at each stage change; boxed, it also moves to a task of its own without moving.
        let run = async move {
            let permit = inv.permit.take();
            let composition = matches!(inv.resolved.action.exec, Exec::Sequence { .. })
                || inv.resolved.action.is_conductor();
            let mut activation = if composition {
                // Boxed too: compositions are rarer and their future is the largest.
                Box::pin(crate::sequence::run_topmost(&state, &inv)).await
            } else if let Some(feed) = crate::alarms::feed_of(&inv.resolved.action) {
                let job = job_of(&inv, None);
                let start = now_millis();
                let response = state.alarm_feed(feed, &job.args).await;
                let mut a = whisk_error_record(&job, "");
                a.start = start;
                a.duration = Some(a.end.saturating_sub(start));
                a.response = response;
                a
            } else {
                state.run_primitive(job_of(&inv, None)).await
            };
            if let Some((cause, by)) = inv.caused_by {
                activation.cause = Some(cause);
                activation.annotations.set("causedBy", Value::from(by));
            }
            drop(permit);
            let activation = Arc::new(activation);
            if inv.identity.limits.store_activations != Some(false) {
                state.record(activation.clone()).await;
            }
            activation
        }
        .instrument(span);
        self.tasks.track_future(Box::pin(run))
    }

    /// Runs one primitive activation on the invoker; always yields a record.
    pub async fn run_primitive(&self, job: Job) -> Activation {
        match &self.invoker {
            Some(invoker) => invoker.run(job).await,
            None => whisk_error_record(&job, "No invokers available."),
        }
    }

    /// Stores a record unless the namespace opted out.
    pub async fn record(&self, activation: Arc<Activation>) {
        self.recorder.record(activation).await;
    }
}

/// An activation's future, boxed and counted by the controller's task tracker.
type Activating = TrackedFuture<Pin<Box<dyn Future<Output = Arc<Activation>> + Send>>>;

/// An activation run by the task that waits for it ([`Controller::start`]); yields the record
/// once it is queued for storage. Dropped before that, it hands the activation to a task of its
/// own, so an accepted activation still runs to the end and gets its record.
pub struct Running {
    run: Option<Activating>,
}

impl Future for Running {
    type Output = Arc<Activation>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Arc<Activation>> {
        let run = self
            .run
            .as_mut()
            .expect("a finished activation is not polled again");
        let done = ready!(Pin::new(run).poll(cx));
        self.run = None;
        Poll::Ready(done)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // Still tracked: shutdown waits for it like for any activation task. (Without a
        // runtime, as when one is torn down, nothing could run it any more.)
        if let (Some(run), Ok(rt)) = (self.run.take(), tokio::runtime::Handle::try_current()) {
            rt.spawn(run);
        }
    }
}

/// The invoker job for an invocation (or for one step of a sequence with `args`).
pub fn job_of(inv: &Invocation, cause: Option<ActivationId>) -> Job {
    Job {
        activation_id: inv.activation_id,
        transaction_id: inv.transaction_id.clone(),
        action: inv.resolved.action.clone(),
        binding: inv.resolved.binding.clone(),
        identity: inv.identity.clone(),
        args: inv.args.clone(),
        cause,
        caused_by_sequence: cause.is_some(),
        received_at_ms: inv.received_at_ms,
        prepare_next: Vec::new(),
    }
}

/// A record for an activation the platform could not run.
pub fn whisk_error_record(job: &Job, message: &str) -> Activation {
    let now = now_millis();
    let a = &job.action;
    let mut annotations = brisk_model::Parameters::new();
    annotations.set("path", Value::from(a.doc_id()));
    annotations.set("kind", Value::from(a.exec.kind().to_owned()));
    annotations.set(
        "limits",
        serde_json::to_value(a.limits).unwrap_or(Value::Null),
    );
    Activation {
        namespace: job.identity.namespace.to_string(),
        name: a.name.to_string(),
        subject: job.identity.subject.clone(),
        activation_id: job.activation_id,
        start: now,
        end: now,
        duration: Some(0),
        cause: job.cause,
        response: ActivationResponse::error(StatusCode::WhiskError, message),
        logs: Vec::new(),
        version: a.version,
        publish: a.publish,
        annotations,
    }
}
