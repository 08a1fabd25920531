//! Compositions, run by the controller: sequences (wire spec §5.1) — each step's result is the
//! next step's input, the first failing step ends the sequence — and conductor actions (§5.2),
//! whose results name the next step. Every step has its own record whose `cause` is the
//! composition's activation id.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use brisk_invoker::Job;
use brisk_model::{
    Activation, ActivationId, ActivationResponse, Exec, FullyQualifiedName, Parameters, StatusCode,
    now_millis,
};
use serde_json::{Map, Value};

use crate::Controller;
use crate::invocation::Invocation;
use crate::resolve::ResolvedAction;

/// State shared by every level of one topmost composition.
pub(crate) struct Run<'a> {
    pub(crate) inv: &'a Invocation,
    /// Atomic actions run so far (bounded by the sequence length limit).
    atomic: AtomicU64,
    /// Conductor invocations so far (bounded by twice the limit plus one).
    pub(crate) conductor_steps: AtomicU64,
    /// Jobs for the later steps, handed to the first step so the invoker prepares their
    /// containers while it runs (predictive prewarm).
    prepare: parking_lot::Mutex<Vec<Job>>,
    /// Components resolved (and entitlement-checked) once per run: up front for the prewarm,
    /// then again at their turn without another lookup.
    resolved: parking_lot::Mutex<std::collections::HashMap<FullyQualifiedName, ResolvedAction>>,
}

/// Runs a sequence or conductor action invoked by a client.
pub async fn run_topmost(state: &Arc<Controller>, inv: &Invocation) -> Activation {
    let run = Run {
        inv,
        atomic: AtomicU64::new(0),
        conductor_steps: AtomicU64::new(0),
        prepare: parking_lot::Mutex::new(Vec::new()),
        resolved: parking_lot::Mutex::new(std::collections::HashMap::new()),
    };
    if inv.resolved.action.is_conductor() {
        let input = inv.args.clone();
        return crate::conductor::run_conductor(
            state,
            &run,
            &inv.resolved,
            inv.activation_id,
            None,
            input,
        )
        .await;
    }
    *run.prepare.lock() = later_steps(state, &run, &inv.resolved).await;
    let input = Value::Object(inv.payload.clone());
    run_sequence(state, &run, &inv.resolved, inv.activation_id, None, input).await
}

/// Jobs for every primitive step after the first, through nested sequences, for the invoker to
/// prepare containers ahead of need. Steps that cannot be resolved are left out (they fail
/// properly when their turn comes).
async fn later_steps(state: &Controller, run: &Run<'_>, seq: &ResolvedAction) -> Vec<Job> {
    let max = state.config.limits.sequence_max_length as usize;
    let mut out = Vec::new();
    let mut stack: Vec<FullyQualifiedName> = match &seq.action.exec {
        Exec::Sequence { components } => components.iter().rev().cloned().collect(),
        _ => return out,
    };
    let mut visited = 0;
    while let Some(c) = stack.pop() {
        visited += 1;
        if visited > max || out.len() > max {
            break;
        }
        let Ok(resolved) = resolve_component(state, run, &c).await else {
            continue;
        };
        match &resolved.action.exec {
            Exec::Sequence { components } => stack.extend(components.iter().rev().cloned()),
            _ => out.push(step_job(
                run.inv,
                &resolved,
                ActivationId::generate(),
                run.inv.activation_id,
                &Value::Object(Map::new()),
            )),
        }
    }
    // The first step carries the list; it needs no preparing itself.
    if !out.is_empty() {
        out.remove(0);
    }
    out
}

/// Runs one step of a composition of any kind and returns its record (stored already for
/// primitives and nested compositions).
pub(crate) fn run_step<'a>(
    state: &'a Arc<Controller>,
    run: &'a Run<'a>,
    resolved: &'a ResolvedAction,
    cause: ActivationId,
    input: Value,
) -> std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<Arc<Activation>, ActivationResponse>> + Send + 'a>,
> {
    Box::pin(async move {
        let step_id = ActivationId::generate();
        match &resolved.action.exec {
            Exec::Sequence { .. } => Ok(Arc::new(
                run_sequence(state, run, resolved, step_id, Some(cause), input).await,
            )),
            _ if resolved.action.is_conductor() => {
                let args = merge_input(resolved, &input);
                Ok(Arc::new(
                    crate::conductor::run_conductor(
                        state,
                        run,
                        resolved,
                        step_id,
                        Some(cause),
                        args,
                    )
                    .await,
                ))
            }
            _ => {
                if run.atomic.fetch_add(1, Ordering::Relaxed) + 1
                    > state.config.limits.sequence_max_length
                {
                    return Err(ActivationResponse::error(
                        StatusCode::ApplicationError,
                        "Too many actions in the sequence.",
                    ));
                }
                let mut job = step_job(run.inv, resolved, step_id, cause, &input);
                job.prepare_next = std::mem::take(&mut *run.prepare.lock());
                let a = Arc::new(state.run_primitive(job).await);
                state.record(a.clone()).await;
                Ok(a)
            }
        }
    })
}

/// Runs one (possibly nested) sequence and returns its record; component records are stored
/// as they finish.
fn run_sequence<'a>(
    state: &'a Arc<Controller>,
    run: &'a Run<'a>,
    seq: &'a ResolvedAction,
    id: ActivationId,
    cause: Option<ActivationId>,
    input: Value,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Activation> + Send + 'a>> {
    Box::pin(async move {
        let start = now_millis();
        let Exec::Sequence { components } = &seq.action.exec else {
            unreachable!("run_sequence is only called for sequences");
        };
        let mut ids = Vec::with_capacity(components.len());
        let mut duration = 0u64;
        let mut max_memory = 0u64;
        let mut input = input;
        let mut response = ActivationResponse::success(Value::Object(Map::new()));
        for component in components {
            let resolved = match resolve_component(state, run, component).await {
                Ok(r) => r,
                Err(resp) => {
                    response = resp;
                    break;
                }
            };
            max_memory = max_memory.max(resolved.action.limits.memory);
            let step = match run_step(state, run, &resolved, id, input.clone()).await {
                Ok(a) => a,
                Err(resp) => {
                    response = resp;
                    break;
                }
            };
            ids.push(Value::from(step.activation_id.to_string()));
            duration += step.duration.unwrap_or(0);
            response = step.response.clone();
            if !response.is_success() {
                break;
            }
            // Objects and arrays flow on; anything else becomes "no input".
            input = match response.result.clone() {
                Some(v @ (Value::Object(_) | Value::Array(_))) => v,
                _ => Value::Object(Map::new()),
            };
        }
        let ids = ids
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect();
        let outcome = Composed {
            id,
            cause,
            start,
            duration,
            max_memory,
            response,
            steps: ids,
            conductor: false,
        };
        finish(state, run, seq, outcome).await
    })
}

/// How a composition (sequence or conductor) ended.
pub(crate) struct Composed {
    pub id: ActivationId,
    pub cause: Option<ActivationId>,
    pub start: u64,
    /// Sum of the steps' durations.
    pub duration: u64,
    /// Largest memory limit among the steps.
    pub max_memory: u64,
    pub response: ActivationResponse,
    /// Activation ids of the steps, in order.
    pub steps: Vec<String>,
    pub conductor: bool,
}

/// The record of a finished composition (wire spec §5); a nested one is stored here, the
/// topmost one by the caller.
pub(crate) async fn finish(
    state: &Controller,
    run: &Run<'_>,
    composition: &ResolvedAction,
    c: Composed,
) -> Activation {
    let action = &composition.action;
    let mut annotations = Parameters::new();
    annotations.set("topmost", Value::Bool(c.cause.is_none()));
    annotations.set("path", Value::from(action.doc_id()));
    annotations.set(
        "waitTime",
        Value::from(c.start.saturating_sub(run.inv.received_at_ms)),
    );
    annotations.set("kind", Value::from("sequence"));
    if c.conductor {
        annotations.set("conductor", Value::Bool(true));
    }
    let mut limits = action.limits;
    limits.memory = limits.memory.max(c.max_memory);
    annotations.set(
        "limits",
        serde_json::to_value(limits).unwrap_or(Value::Null),
    );
    if c.cause.is_some() {
        annotations.set("causedBy", Value::from("sequence"));
    }
    if let Some(b) = &composition.binding {
        annotations.set("binding", Value::from(b.as_str()));
    }
    let record = Activation {
        namespace: run.inv.identity.namespace.to_string(),
        name: action.name.to_string(),
        subject: run.inv.identity.subject.clone(),
        activation_id: c.id,
        start: c.start,
        end: now_millis(),
        duration: Some(c.duration),
        cause: c.cause,
        response: c.response,
        logs: c.steps,
        version: action.version,
        publish: action.publish,
        annotations,
    };
    if c.cause.is_some() {
        state.record(Arc::new(record.clone())).await;
    }
    record
}

/// Resolves a component and checks the caller may run it.
pub(crate) async fn resolve_component(
    state: &Controller,
    run: &Run<'_>,
    component: &FullyQualifiedName,
) -> Result<ResolvedAction, ActivationResponse> {
    let missing = || {
        ActivationResponse::error(
            StatusCode::ApplicationError,
            "Sequence component does not exist.",
        )
    };
    if let Some(r) = run.resolved.lock().get(component) {
        return Ok(r.clone());
    }
    let usable = state
        .action_usable(&run.inv.identity.namespace, component)
        .await
        .unwrap_or(false);
    if !usable {
        return Err(missing());
    }
    let resolved = state
        .resolve_action(component)
        .await
        .map_err(|_| missing())?;
    run.resolved
        .lock()
        .insert(component.clone(), resolved.clone());
    Ok(resolved)
}

/// A component's own parameters under its input (arrays pass as they are).
pub(crate) fn merge_input(resolved: &ResolvedAction, input: &Value) -> Value {
    match input {
        Value::Object(m) => {
            let mut args = resolved.merged_params().to_object();
            for (k, v) in m {
                args.insert(k.clone(), v.clone());
            }
            Value::Object(args)
        }
        other => other.clone(),
    }
}

pub(crate) fn step_job(
    inv: &Invocation,
    resolved: &ResolvedAction,
    id: ActivationId,
    cause: ActivationId,
    input: &Value,
) -> Job {
    let args = merge_input(resolved, input);
    Job {
        activation_id: id,
        transaction_id: inv.transaction_id.clone(),
        action: resolved.action.clone(),
        binding: resolved.binding.clone(),
        identity: inv.identity.clone(),
        args,
        cause: Some(cause),
        caused_by_sequence: true,
        received_at_ms: now_millis(),
        prepare_next: Vec::new(),
    }
}
