//! `/namespaces/{ns}/actions[/{pkg}]/{name}`: list, get, create/update, delete, invoke.

use axum::Json;
use axum::http::Method;
use axum::response::{IntoResponse, Response};
use brisk_model::exec::ExecPut;
use brisk_model::limits::LimitsPut;
use brisk_model::{
    Action, Collection, Entity, EntityName, EntityPath, Exec, FullyQualifiedName, Parameters,
    SemVer, now_millis,
};
use brisk_store::EntityQuery;
use serde::Deserialize;
use serde_json::Value;

use super::Req;
use crate::Controller;
use crate::entitlement::{require_contents_access, require_owner};
use crate::error::{ApiError, ApiResult, CONFLICT_COLLECTION, EXISTS};
use crate::extract::{ListOptions, json_body};
use crate::resolve::package_path;

/// Unknown fields are ignored, as OpenWhisk does.
#[derive(Debug, Default, Deserialize)]
struct ActionPut {
    #[serde(default)]
    exec: Option<ExecPut>,
    #[serde(default)]
    parameters: Option<Parameters>,
    #[serde(default)]
    annotations: Option<Parameters>,
    #[serde(default, rename = "delAnnotations")]
    del_annotations: Option<Vec<String>>,
    #[serde(default)]
    limits: Option<LimitsPut>,
    #[serde(default)]
    version: Option<SemVer>,
    #[serde(default)]
    publish: Option<bool>,
}

pub async fn list(state: &Controller, req: &Req, pkg: Option<EntityName>) -> ApiResult<Response> {
    let opts = ListOptions::parse(&req.query, "actions")?;
    require_contents_access(state, req, pkg.as_ref()).await?;
    let package = match &pkg {
        None => None,
        Some(p) => {
            let (target, _, _, _) = state.package_contents(&req.namespace, p).await?;
            Some(target.contents_path())
        }
    };
    let query = EntityQuery {
        collection: Collection::Actions,
        namespace: package
            .as_ref()
            .map_or(req.namespace.to_string(), |p| p.namespace.to_string()),
        package: package.and_then(|p| p.package.map(|n| n.to_string())),
        skip: opts.skip,
        limit: opts.limit,
    };
    super::list_entities(state, query, opts.count).await
}

pub async fn handle(
    state: &std::sync::Arc<Controller>,
    req: &Req,
    pkg: Option<EntityName>,
    name: EntityName,
) -> ApiResult<Response> {
    let path = match &pkg {
        Some(p) => package_path(&req.namespace, p),
        None => EntityPath::root(req.namespace.clone()),
    };
    let fqn = FullyQualifiedName::new(path, name);
    match req.method {
        Method::GET => get(state, req, &fqn).await,
        Method::PUT => put(state, req, &fqn).await,
        Method::DELETE => delete(state, req, &fqn).await,
        Method::POST => super::invoke::invoke(state, req, &fqn).await,
        _ => Err(ApiError::MethodNotAllowed),
    }
}

async fn get(state: &Controller, req: &Req, fqn: &FullyQualifiedName) -> ApiResult<Response> {
    require_contents_access(state, req, fqn.package()).await?;
    let with_code = req.query.flag("code", true)?;
    let resolved = state.resolve_action(fqn).await?;
    let mut action = (*resolved.action).clone();
    if fqn.package().is_some() {
        action.parameters = resolved.merged_params();
    }
    if resolved.binding.is_some() {
        // Shown under the name it was addressed by.
        action.namespace = fqn.path.clone();
    }
    Ok(Json(action.to_json(with_code)).into_response())
}

/// Sizes of parameters and annotations are limited per entity.
pub fn check_sizes(
    state: &Controller,
    parameters: Option<&Parameters>,
    annotations: Option<&Parameters>,
) -> ApiResult<()> {
    let max = state.config.limits.parameter_size;
    for (field, p) in [("parameters", parameters), ("annotations", annotations)] {
        if let Some(p) = p {
            let size = p.json_size();
            if size > max {
                return Err(ApiError::TooLarge(format!(
                    "{field} larger than allowed: {size} > {max} bytes."
                )));
            }
        }
    }
    Ok(())
}

async fn put(state: &Controller, req: &Req, fqn: &FullyQualifiedName) -> ApiResult<Response> {
    require_owner(req, &fqn.doc_id())?;
    let overwrite = req.query.flag("overwrite", false)?;
    let body: ActionPut = json_body(&req.headers, &req.body)?.unwrap_or_default();
    check_sizes(state, body.parameters.as_ref(), body.annotations.as_ref())?;
    if let Some(pkg) = fqn.package() {
        let (p, _) = state
            .fetch_package(fqn.namespace(), pkg)
            .await?
            .ok_or_else(ApiError::not_found)?;
        if p.binding.is_some() {
            return Err(ApiError::bad("Operation not permitted on package binding."));
        }
    }
    let existing = match state.fetch(&fqn.doc_id(), true).await? {
        None => None,
        Some(s) => match s.entity {
            Entity::Action(a) => Some((a, s.rev)),
            _ => return Err(ApiError::Conflict(CONFLICT_COLLECTION.into())),
        },
    };
    if existing.is_some() && !overwrite {
        return Err(ApiError::Conflict(EXISTS.into()));
    }
    let exec = body
        .exec
        .map(|e| Exec::from_put(e, &state.manifest, &req.identity.namespace))
        .transpose()?;
    if let Some(e) = &exec {
        let (size, max) = (e.code_size(), state.config.limits.exec_size);
        if size > max {
            return Err(ApiError::TooLarge(format!(
                "exec larger than allowed: {size} > {max} bytes."
            )));
        }
        check_kind_allowed(req, e.kind())?;
    }
    let ns_concurrency = u64::from(
        req.identity
            .limits
            .concurrent_invocations
            .unwrap_or(state.config.concurrent_invocations),
    );
    let limits_put = body.limits.unwrap_or_default();
    let (mut action, rev) = match existing {
        None => {
            let exec = exec.ok_or_else(|| ApiError::bad("exec undefined"))?;
            let limits = state.config.limits.apply(
                state.config.limits.default_action_limits(),
                &limits_put,
                ns_concurrency,
            )?;
            let mut annotations = body.annotations.unwrap_or_default().dedup();
            if annotations.get("provide-api-key").is_none() {
                annotations.set("provide-api-key", Value::Bool(false));
            }
            let action = Action {
                namespace: fqn.path.clone(),
                name: fqn.name.clone(),
                exec,
                parameters: body.parameters.unwrap_or_default().dedup(),
                limits,
                version: body.version.unwrap_or_default(),
                publish: body.publish.unwrap_or(false),
                annotations,
                updated: 0,
            };
            (action, None)
        }
        Some((old, rev)) => {
            let limits = state
                .config
                .limits
                .apply(old.limits, &limits_put, ns_concurrency)?;
            let mut annotations = old.annotations.clone();
            for k in body.del_annotations.iter().flatten() {
                annotations.remove(k);
            }
            if let Some(a) = &body.annotations {
                annotations.merge(a);
            }
            let action = Action {
                namespace: fqn.path.clone(),
                name: fqn.name.clone(),
                exec: exec.unwrap_or(old.exec),
                parameters: body
                    .parameters
                    .map(Parameters::dedup)
                    .unwrap_or(old.parameters),
                limits,
                version: body.version.unwrap_or(old.version.up_patch()),
                publish: body.publish.unwrap_or(old.publish),
                annotations,
                updated: 0,
            };
            (action, Some(rev))
        }
    };
    action
        .annotations
        .set("exec", Value::from(action.exec.kind().to_owned()));
    if let Exec::Sequence { components } = &action.exec {
        check_sequence(state, req, fqn, components).await?;
        let names: Vec<Value> = components
            .iter()
            .map(|c| Value::from(c.to_string()))
            .collect();
        action.parameters = Parameters::new();
        action.parameters.set("_actions", Value::Array(names));
    }
    action.updated = now_millis();
    // Stored, answered and handed to the invoker without copying its code (up to the exec limit).
    let entity = Entity::Action(action);
    state.store.put(&entity, rev).await?;
    let Entity::Action(action) = entity else {
        unreachable!("built as an action above");
    };
    let body = action.to_json(true);
    if let Some(invoker) = &state.invoker {
        // A zipped action's first start then links its unpacked files instead of inflating them.
        invoker.prepare_code(std::sync::Arc::new(action));
    }
    Ok(Json(body).into_response())
}

fn check_kind_allowed(req: &Req, kind: &str) -> ApiResult<()> {
    if let Some(allowed) = &req.identity.limits.allowed_kinds
        && !allowed.is_empty()
        && !allowed.iter().any(|k| k == kind)
        && kind != brisk_model::runtimes::SEQUENCE
    {
        return Err(ApiError::Forbidden(format!(
            "The supplied authentication is not authorized to access actions of kind '{kind}'."
        )));
    }
    Ok(())
}

/// Validates a sequence: every component exists and is readable, no cycle, bounded length.
async fn check_sequence(
    state: &Controller,
    req: &Req,
    me: &FullyQualifiedName,
    components: &[FullyQualifiedName],
) -> ApiResult<()> {
    let max = state.config.limits.sequence_max_length;
    let mut count = 0u64;
    // Depth-first over nested sequences, bounded by the length limit.
    let mut stack: Vec<FullyQualifiedName> = components.iter().rev().cloned().collect();
    let mut expanded = 0u64;
    while let Some(c) = stack.pop() {
        if &c == me {
            return Err(ApiError::bad("Sequence may not refer to itself."));
        }
        expanded += 1;
        if expanded > max * 4 + 64 {
            return Err(ApiError::bad("Too many actions in the sequence."));
        }
        if !state.action_usable(&req.identity.namespace, &c).await? {
            return Err(ApiError::forbidden_resource(&c.path.to_string()));
        }
        let resolved = match state.resolve_action(&c).await {
            Ok(r) => r,
            Err(ApiError::NotFound(_)) | Err(ApiError::Conflict(_)) => {
                return Err(ApiError::bad("Sequence component does not exist."));
            }
            Err(e) => return Err(e),
        };
        match &resolved.action.exec {
            Exec::Sequence { components } => {
                if resolved.action.fqn() == *me {
                    return Err(ApiError::bad("Sequence may not refer to itself."));
                }
                stack.extend(components.iter().rev().cloned());
            }
            _ => {
                count += 1;
                if count > max {
                    return Err(ApiError::bad("Too many actions in the sequence."));
                }
            }
        }
    }
    Ok(())
}

async fn delete(state: &Controller, req: &Req, fqn: &FullyQualifiedName) -> ApiResult<Response> {
    require_owner(req, &fqn.doc_id())?;
    if let Some(pkg) = fqn.package()
        && let Some((p, _)) = state.fetch_package(fqn.namespace(), pkg).await?
        && p.binding.is_some()
    {
        return Err(ApiError::bad("Operation not permitted on package binding."));
    }
    let stored = state
        .fetch(&fqn.doc_id(), true)
        .await?
        .ok_or_else(ApiError::not_found)?;
    let Entity::Action(action) = stored.entity else {
        return Err(ApiError::Conflict(CONFLICT_COLLECTION.into()));
    };
    state.store.delete(&fqn.doc_id(), stored.rev).await?;
    Ok(Json(action.to_json(true)).into_response())
}
