//! Conductor actions (wire spec §5.2): a conductor's result names the next action (`action`),
//! its input (`params`) and state to carry (`state`); the controller alternates between the
//! conductor and the named components until the conductor names none.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use brisk_model::{
    Activation, ActivationId, ActivationResponse, FullyQualifiedName, StatusCode, now_millis,
};
use serde_json::{Map, Value, json};

use crate::Controller;
use crate::resolve::ResolvedAction;
use crate::sequence::{Composed, Run, finish, resolve_component, run_step, step_job};

/// Boxes a non-object value under `key`.
fn boxed(v: Value, key: &str) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        other => {
            let mut m = Map::new();
            m.insert(key.to_owned(), other);
            m
        }
    }
}

pub(crate) fn run_conductor<'a>(
    state: &'a Arc<Controller>,
    run: &'a Run<'a>,
    conductor: &'a ResolvedAction,
    id: ActivationId,
    cause: Option<ActivationId>,
    input: Value,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Activation> + Send + 'a>> {
    Box::pin(async move {
        let start = now_millis();
        let max = state.config.limits.sequence_max_length;
        let caller = run.inv.identity.namespace.clone();
        let mut ids: Vec<String> = Vec::new();
        let mut duration = 0u64;
        let mut max_memory = conductor.action.limits.memory;
        let mut components = 0u64;
        // Components seen in this run, remembered for preparing the next run's containers.
        let mut seen: Vec<FullyQualifiedName> = Vec::new();
        let learned_key = format!("{}@{}", conductor.action.fqn(), conductor.action.updated);
        let mut prepare = learned_steps(state, run, &learned_key).await;
        // Input of the next conductor call.
        let mut next_input = input;
        let response = loop {
            if run.conductor_steps.fetch_add(1, Ordering::Relaxed) + 1 > 2 * max + 1 {
                break ActivationResponse::error(
                    StatusCode::ApplicationError,
                    "Too many actions in the composition.",
                );
            }
            // The conductor action itself runs as a primitive, with its own parameters merged.
            let step_id = ActivationId::generate();
            let mut job = step_job(run.inv, conductor, step_id, id, &next_input);
            // The first conductor step carries the components this conductor called last time,
            // so their containers get ready while it runs (predictive prewarm).
            job.prepare_next = std::mem::take(&mut prepare);
            let c = Arc::new(state.run_primitive(job).await);
            state.record(c.clone()).await;
            ids.push(c.activation_id.to_string());
            duration += c.duration.unwrap_or(0);
            if !c.response.is_success() {
                break c.response.clone();
            }
            let out = c.response.result.clone().unwrap_or_else(|| json!({}));
            let params = out.get("params").cloned();
            let carried = out.get("state").cloned().map(|s| boxed(s, "state"));
            let Some(action) = out.get("action").cloned() else {
                let result = match params {
                    Some(p) => Value::Object(boxed(p, "value")),
                    None => out,
                };
                break ActivationResponse {
                    status_code: c.response.status_code,
                    result: Some(result),
                    size: None,
                };
            };
            let with_state = |m: Map<String, Value>| {
                let mut m = m;
                if let Some(s) = &carried {
                    for (k, v) in s {
                        m.insert(k.clone(), v.clone());
                    }
                }
                Value::Object(m)
            };
            let error_input = |msg: String| with_state(boxed(json!({"error": msg}), "error"));
            components += 1;
            if components > max {
                next_input = error_input("Too many actions in the composition.".into());
                continue;
            }
            let fqn = match action
                .as_str()
                .map(|s| FullyQualifiedName::parse_ref(s, &caller))
            {
                Some(Ok(f)) => f,
                _ => {
                    next_input = error_input(format!(
                        "Failed to parse action name from json value {action}"
                    ));
                    continue;
                }
            };
            let resolved = match resolve_component(state, run, &fqn).await {
                Ok(r) => r,
                Err(_) => {
                    next_input = error_input(format!(
                        "Failed to resolve action with name '{fqn}' during composition."
                    ));
                    continue;
                }
            };
            max_memory = max_memory.max(resolved.action.limits.memory);
            if !seen.contains(&fqn) && seen.len() < max as usize {
                seen.push(fqn.clone());
            }
            let params = Value::Object(params.map(|p| boxed(p, "value")).unwrap_or_default());
            let step = match run_step(state, run, &resolved, id, params).await {
                Ok(a) => a,
                Err(resp) => {
                    next_input = with_state(boxed(resp.result.unwrap_or_default(), "error"));
                    continue;
                }
            };
            ids.push(step.activation_id.to_string());
            duration += step.duration.unwrap_or(0);
            let result = step.response.result.clone().unwrap_or_else(|| json!({}));
            next_input = with_state(boxed(result, "value"));
        };
        state.learn_composition(learned_key, seen);
        let outcome = Composed {
            id,
            cause,
            start,
            duration,
            max_memory,
            response,
            steps: ids,
            conductor: true,
        };
        finish(state, run, conductor, outcome).await
    })
}

/// Jobs for the components a conductor called on its previous run (if any), to prepare.
async fn learned_steps(state: &Controller, run: &Run<'_>, key: &str) -> Vec<brisk_invoker::Job> {
    let names = state.learned_composition(key);
    let mut out = Vec::with_capacity(names.len());
    for fqn in names {
        if let Ok(resolved) = resolve_component(state, run, &fqn).await {
            let args = Value::Object(Map::new());
            let id = ActivationId::generate();
            out.push(step_job(
                run.inv,
                &resolved,
                id,
                run.inv.activation_id,
                &args,
            ));
        }
    }
    out
}
