//! `/namespaces/{ns}/triggers/{name}`: triggers (firing comes with the event issue).

use std::sync::Arc;

use axum::Json;
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use brisk_model::{
    Collection, Entity, EntityName, EntityPath, FullyQualifiedName, Parameters, SemVer, Trigger,
    now_millis,
};
use brisk_store::EntityQuery;
use serde::Deserialize;
use serde_json::{Value, json};

use super::Req;
use super::actions::check_sizes;
use crate::Controller;
use crate::entitlement::require_owner;
use crate::error::{ApiError, ApiResult, CONFLICT_COLLECTION, EXISTS};
use crate::extract::{ListOptions, json_body};
use crate::throttle::Rate;

#[derive(Debug, Default, Deserialize)]
struct TriggerPut {
    #[serde(default)]
    parameters: Option<Parameters>,
    #[serde(default)]
    annotations: Option<Parameters>,
    #[serde(default)]
    limits: Option<serde_json::Map<String, Value>>,
    #[serde(default)]
    version: Option<SemVer>,
    #[serde(default)]
    publish: Option<bool>,
}

pub async fn list(state: &Controller, req: &Req) -> ApiResult<Response> {
    require_owner(req, req.namespace.as_str())?;
    let opts = ListOptions::parse(&req.query, "triggers")?;
    let query = EntityQuery {
        collection: Collection::Triggers,
        namespace: req.namespace.to_string(),
        package: None,
        skip: opts.skip,
        limit: opts.limit,
    };
    super::list_entities(state, query, opts.count).await
}

pub async fn handle(state: &Arc<Controller>, req: &Req, name: EntityName) -> ApiResult<Response> {
    require_owner(req, &format!("{}/{name}", req.namespace))?;
    match req.method {
        Method::GET => {
            let (t, _) = fetch_trigger(state, &req.namespace, &name)
                .await?
                .ok_or_else(ApiError::not_found)?;
            Ok(Json(t.to_json()).into_response())
        }
        Method::PUT => put(state, req, &name).await,
        Method::DELETE => {
            let (t, rev) = fetch_trigger(state, &req.namespace, &name)
                .await?
                .ok_or_else(ApiError::not_found)?;
            state.store.delete(&t.fqn().doc_id(), rev).await?;
            Ok(Json(t.to_json()).into_response())
        }
        Method::POST => fire(state, req, &name).await,
        _ => Err(ApiError::MethodNotAllowed),
    }
}

pub async fn fetch_trigger(
    state: &Controller,
    ns: &EntityName,
    name: &EntityName,
) -> ApiResult<Option<(Trigger, u64)>> {
    match state.fetch(&format!("{ns}/{name}"), false).await? {
        None => Ok(None),
        Some(s) => match s.entity {
            Entity::Trigger(t) => Ok(Some((t, s.rev))),
            _ => Err(ApiError::Conflict(CONFLICT_COLLECTION.into())),
        },
    }
}

async fn put(state: &Controller, req: &Req, name: &EntityName) -> ApiResult<Response> {
    let overwrite = req.query.flag("overwrite", false)?;
    let body: TriggerPut = json_body(&req.headers, &req.body)?.unwrap_or_default();
    check_sizes(state, body.parameters.as_ref(), body.annotations.as_ref())?;
    if let Some(feed) = body.annotations.as_ref().and_then(|a| a.get("feed")) {
        let ok = feed
            .as_str()
            .is_some_and(|f| FullyQualifiedName::parse_ref(f, &req.identity.namespace).is_ok());
        if !ok {
            return Err(ApiError::bad("Feed name is not valid"));
        }
    }
    let existing = fetch_trigger(state, &req.namespace, name).await?;
    if existing.is_some() && !overwrite {
        return Err(ApiError::Conflict(EXISTS.into()));
    }
    let limits = body.limits.map(Value::Object);
    let (mut t, rev) = match existing {
        None => (
            Trigger {
                namespace: EntityPath::root(req.namespace.clone()),
                name: name.clone(),
                parameters: body.parameters.unwrap_or_default().dedup(),
                limits: limits.unwrap_or_else(|| json!({})),
                version: body.version.unwrap_or_default(),
                publish: body.publish.unwrap_or(false),
                annotations: body.annotations.unwrap_or_default().dedup(),
                rules: None,
                updated: 0,
            },
            None,
        ),
        Some((old, rev)) => (
            Trigger {
                namespace: old.namespace,
                name: name.clone(),
                parameters: body
                    .parameters
                    .map(Parameters::dedup)
                    .unwrap_or(old.parameters),
                limits: limits.unwrap_or(old.limits),
                version: body.version.unwrap_or(old.version.up_patch()),
                publish: body.publish.unwrap_or(old.publish),
                annotations: body
                    .annotations
                    .map(Parameters::dedup)
                    .unwrap_or(old.annotations),
                rules: old.rules,
                updated: 0,
            },
            Some(rev),
        ),
    };
    t.updated = now_millis();
    state.store.put(&Entity::Trigger(t.clone()), rev).await?;
    Ok(Json(t.to_json()).into_response())
}

async fn fire(state: &Arc<Controller>, req: &Req, name: &EntityName) -> ApiResult<Response> {
    let (t, _) = fetch_trigger(state, &req.namespace, name)
        .await?
        .ok_or_else(ApiError::not_found)?;
    let max = state.config.limits.payload_size;
    if req.body.len() > max {
        return Err(ApiError::TooLarge(format!(
            "Request larger than allowed: {} > {max} bytes.",
            req.body.len()
        )));
    }
    let payload = if crate::cloudevent::is_cloudevent(&req.headers) {
        crate::cloudevent::to_payload(&req.headers, &req.body)?
    } else {
        plain_payload(req)?
    };
    let limit = req
        .identity
        .limits
        .fires_per_minute
        .unwrap_or(state.config.fires_per_minute);
    state
        .throttles
        .check_rate(req.identity.namespace.as_str(), Rate::Fires, limit)?;
    match crate::fire::fire(
        state,
        &req.identity,
        &t,
        payload,
        Some(&req.headers),
        &req.tid,
    )
    .await
    {
        None => Ok(StatusCode::NO_CONTENT.into_response()),
        Some(id) => Ok(super::invoke::accepted(id)),
    }
}

fn plain_payload(req: &Req) -> ApiResult<serde_json::Map<String, Value>> {
    Ok(match json_body::<Value>(&req.headers, &req.body)? {
        None => serde_json::Map::new(),
        Some(Value::Object(m)) => m,
        Some(_) => {
            return Err(ApiError::bad(
                "The request content was malformed:\nexpected a JSON object",
            ));
        }
    })
}
