//! `/namespaces/{ns}/activations[/{id}[/result|/logs]]`.

use axum::Json;
use axum::http::Method;
use axum::response::{IntoResponse, Response};
use brisk_model::{ActivationId, EntityName};
use brisk_store::ActivationQuery;
use serde_json::{Value, json};

use super::Req;
use crate::Controller;
use crate::entitlement::require_owner;
use crate::error::{ApiError, ApiResult};
use crate::extract::ListOptions;

fn epoch(q: &Req, k: &str) -> ApiResult<Option<u64>> {
    q.query
        .get(k)
        .map(|v| {
            v.parse::<u64>().map_err(|_| {
                ApiError::bad(format!(
                    "Parameter is not a valid value for epoch seconds: {v}"
                ))
            })
        })
        .transpose()
}

pub async fn list(state: &Controller, req: &Req) -> ApiResult<Response> {
    require_owner(req, req.namespace.as_str())?;
    let opts = ListOptions::parse(&req.query, "activations")?;
    let docs = req.query.flag("docs", false)?;
    if opts.count && docs {
        return Err(ApiError::bad(
            "The parameter 'docs' is not permitted with 'count'.",
        ));
    }
    let name = match req.query.get("name") {
        None => None,
        Some(n) => {
            let parts: Vec<&str> = n.split('/').filter(|p| !p.is_empty()).collect();
            let valid =
                (1..=2).contains(&parts.len()) && parts.iter().all(|p| EntityName::new(p).is_ok());
            if !valid {
                return Err(ApiError::bad(format!(
                    "Parameter may be a 'simple' name or 'package-name/simple' name: {n}"
                )));
            }
            Some(parts.join("/"))
        }
    };
    let query = ActivationQuery {
        namespace: req.namespace.to_string(),
        name,
        since: epoch(req, "since")?,
        upto: epoch(req, "upto")?,
        skip: opts.skip,
        limit: opts.limit,
    };
    // Records of activations that just finished may still be queued for writing.
    state.recorder.settled(req.namespace.as_str()).await;
    if opts.count {
        let n = state.store.count_activations(&query).await?;
        return Ok(Json(json!({"activations": n})).into_response());
    }
    let records = state.store.list_activations(&query).await?;
    let items: Vec<Value> = records
        .iter()
        .map(|a| {
            if docs {
                a.to_api_json()
            } else {
                a.summary_json()
            }
        })
        .collect();
    Ok(Json(Value::Array(items)).into_response())
}

pub async fn get(
    state: &Controller,
    req: &Req,
    id: &str,
    part: Option<&str>,
) -> ApiResult<Response> {
    if req.method != Method::GET {
        return Err(ApiError::MethodNotAllowed);
    }
    require_owner(req, req.namespace.as_str())?;
    let id: ActivationId = id.parse()?;
    let a = match state.recorder.pending(req.namespace.as_str(), &id) {
        Some(a) => a,
        None => state
            .store
            .get_activation(req.namespace.as_str(), &id)
            .await?
            .map(std::sync::Arc::new)
            .ok_or_else(ApiError::not_found)?,
    };
    let body = match part {
        None => a.to_api_json(),
        Some("logs") => json!({"logs": a.logs}),
        Some(_) => a.response.to_api_json(),
    };
    Ok(Json(body).into_response())
}
