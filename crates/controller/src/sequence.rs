//! Sequences (wire spec §5.1), run by the controller: each step's result is the next step's
//! input; the first failing step ends the sequence; every step has its own record whose `cause`
//! is the sequence's activation id.

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

/// State shared by every level of one topmost sequence.
struct Run<'a> {
    inv: &'a Invocation,
    /// Atomic actions run so far (bounded by the sequence length limit).
    atomic: AtomicU64,
}

pub async fn run_topmost(state: &Arc<Controller>, inv: &Invocation) -> Activation {
    let run = Run {
        inv,
        atomic: AtomicU64::new(0),
    };
    let input = Value::Object(inv.payload.clone());
    run_sequence(state, &run, &inv.resolved, inv.activation_id, None, input).await
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
            let step_id = ActivationId::generate();
            let step = match &resolved.action.exec {
                Exec::Sequence { .. } => {
                    run_sequence(state, run, &resolved, step_id, Some(id), input.clone()).await
                }
                _ => {
                    if run.atomic.fetch_add(1, Ordering::Relaxed) + 1
                        > state.config.limits.sequence_max_length
                    {
                        response = ActivationResponse::error(
                            StatusCode::ApplicationError,
                            "Too many actions in the sequence.",
                        );
                        break;
                    }
                    let job = step_job(run.inv, &resolved, step_id, id, &input);
                    let a = state.run_primitive(job).await;
                    state.record(a.clone()).await;
                    a
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
        let end = now_millis();
        let mut annotations = Parameters::new();
        annotations.set("topmost", Value::Bool(cause.is_none()));
        annotations.set("path", Value::from(seq.action.fqn().doc_id()));
        annotations.set(
            "waitTime",
            Value::from(start.saturating_sub(run.inv.received_at_ms)),
        );
        annotations.set("kind", Value::from("sequence"));
        let mut limits = seq.action.limits;
        limits.memory = limits.memory.max(max_memory);
        annotations.set(
            "limits",
            serde_json::to_value(limits).unwrap_or(Value::Null),
        );
        if cause.is_some() {
            annotations.set("causedBy", Value::from("sequence"));
        }
        if let Some(b) = &seq.binding {
            annotations.set("binding", Value::from(b.as_str()));
        }
        let record = Activation {
            namespace: run.inv.identity.namespace.to_string(),
            name: seq.action.name.to_string(),
            subject: run.inv.identity.subject.clone(),
            activation_id: id,
            start,
            end,
            duration: Some(duration),
            cause,
            response,
            logs: ids
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
            version: seq.action.version,
            publish: seq.action.publish,
            annotations,
        };
        if cause.is_some() {
            state.record(record.clone()).await;
        }
        record
    })
}

/// Resolves a component and checks the caller may run it.
async fn resolve_component(
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
    let caller = &run.inv.identity.namespace;
    if component.namespace() != caller {
        let readable = match component.package() {
            Some(p) => state
                .package_readable(caller, component.namespace(), p)
                .await
                .unwrap_or(false),
            None => false,
        };
        if !readable {
            return Err(missing());
        }
    }
    state
        .resolve_action(component, true)
        .await
        .map_err(|_| missing())
}

fn step_job(
    inv: &Invocation,
    resolved: &ResolvedAction,
    id: ActivationId,
    cause: ActivationId,
    input: &Value,
) -> Job {
    let args = match input {
        Value::Object(m) => {
            let mut args = resolved.merged_params().to_object();
            for (k, v) in m {
                args.insert(k.clone(), v.clone());
            }
            Value::Object(args)
        }
        other => other.clone(),
    };
    Job {
        activation_id: id,
        transaction_id: inv.transaction_id.clone(),
        action: Arc::new(resolved.action.clone()),
        binding: resolved.binding.clone(),
        identity: inv.identity.clone(),
        args,
        cause: Some(cause),
        caused_by_sequence: true,
        received_at_ms: now_millis(),
    }
}
