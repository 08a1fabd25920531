//! `/namespaces/{ns}/rules/{name}`: rules, whose status lives on their trigger.

use std::collections::BTreeMap;

use axum::Json;
use axum::http::Method;
use axum::response::{IntoResponse, Response};
use brisk_model::entity::{RuleLink, RuleStatus};
use brisk_model::{
    Collection, Entity, EntityName, EntityPath, FullyQualifiedName, Parameters, Rule, SemVer,
    now_millis,
};
use brisk_store::EntityQuery;
use serde::Deserialize;
use serde_json::Value;

use super::Req;
use super::triggers::fetch_trigger;
use crate::Controller;
use crate::entitlement::require_owner;
use crate::error::{ApiError, ApiResult, CONFLICT_COLLECTION, EXISTS};
use crate::extract::{ListOptions, json_body};

#[derive(Debug, Default, Deserialize)]
struct RulePut {
    #[serde(default)]
    trigger: Option<String>,
    #[serde(default)]
    action: Option<String>,
    #[serde(default)]
    annotations: Option<Parameters>,
    #[serde(default)]
    version: Option<SemVer>,
    #[serde(default)]
    publish: Option<bool>,
}

#[derive(Debug, Deserialize)]
struct StatusPut {
    status: Value,
}

pub async fn list(state: &Controller, req: &Req) -> ApiResult<Response> {
    require_owner(req, req.namespace.as_str())?;
    let opts = ListOptions::parse(&req.query, "rules")?;
    let query = EntityQuery {
        collection: Collection::Rules,
        namespace: req.namespace.to_string(),
        package: None,
        skip: opts.skip,
        limit: opts.limit,
    };
    super::list_entities(state, query, opts.count).await
}

pub async fn handle(state: &Controller, req: &Req, name: EntityName) -> ApiResult<Response> {
    require_owner(req, &format!("{}/{name}", req.namespace))?;
    match req.method {
        Method::GET => {
            let (rule, _) = fetch_rule(state, &req.namespace, &name).await?;
            let status = status_of(state, &rule).await?;
            Ok(Json(rule.to_json(status)).into_response())
        }
        Method::PUT => put(state, req, &name).await,
        Method::DELETE => {
            let (rule, rev) = fetch_rule(state, &req.namespace, &name).await?;
            unlink(state, &rule).await?;
            state.store.delete(&rule.fqn().doc_id(), rev).await?;
            Ok(Json(rule.to_json(RuleStatus::Inactive)).into_response())
        }
        Method::POST => set_status(state, req, &name).await,
        _ => Err(ApiError::MethodNotAllowed),
    }
}

async fn fetch_rule(
    state: &Controller,
    ns: &EntityName,
    name: &EntityName,
) -> ApiResult<(Rule, u64)> {
    match state.fetch(&format!("{ns}/{name}"), false).await? {
        None => Err(ApiError::not_found()),
        Some(s) => match s.entity {
            Entity::Rule(r) => Ok((r, s.rev)),
            _ => Err(ApiError::Conflict(CONFLICT_COLLECTION.into())),
        },
    }
}

/// A rule's status as its trigger records it; `inactive` if the trigger is gone.
async fn status_of(state: &Controller, rule: &Rule) -> ApiResult<RuleStatus> {
    let trigger = match fetch_trigger(state, rule.trigger.namespace(), &rule.trigger.name).await {
        Ok(t) => t,
        Err(ApiError::Conflict(_)) => None,
        Err(e) => return Err(e),
    };
    Ok(trigger
        .and_then(|(t, _)| {
            t.rules
                .and_then(|r| r.get(&rule.fqn().doc_id()).map(|l| l.status))
        })
        .unwrap_or(RuleStatus::Inactive))
}

/// Read-modify-write of a trigger's rule links, retried on concurrent modification.
async fn update_links(
    state: &Controller,
    trigger: &FullyQualifiedName,
    f: impl Fn(&mut BTreeMap<String, RuleLink>) -> bool,
) -> ApiResult<bool> {
    for _ in 0..5 {
        let Some((mut t, rev)) = fetch_trigger(state, trigger.namespace(), &trigger.name).await?
        else {
            return Ok(false);
        };
        let mut links = t.rules.take().unwrap_or_default();
        if !f(&mut links) {
            return Ok(true);
        }
        t.rules = if links.is_empty() { None } else { Some(links) };
        match state.store.put(&Entity::Trigger(t), Some(rev)).await {
            Ok(_) => return Ok(true),
            Err(brisk_store::Error::Conflict) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(ApiError::Conflict(
        crate::error::CONCURRENT_MODIFICATION.into(),
    ))
}

async fn unlink(state: &Controller, rule: &Rule) -> ApiResult<()> {
    let id = rule.fqn().doc_id();
    update_links(state, &rule.trigger, |links| links.remove(&id).is_some()).await?;
    Ok(())
}

async fn put(state: &Controller, req: &Req, name: &EntityName) -> ApiResult<Response> {
    let overwrite = req.query.flag("overwrite", false)?;
    let body: RulePut = json_body(&req.headers, &req.body)?.unwrap_or_default();
    let existing = match state
        .fetch(&format!("{}/{name}", req.namespace), false)
        .await?
    {
        None => None,
        Some(s) => match s.entity {
            Entity::Rule(r) => Some((r, s.rev)),
            _ => return Err(ApiError::Conflict(CONFLICT_COLLECTION.into())),
        },
    };
    if existing.is_some() && !overwrite {
        return Err(ApiError::Conflict(EXISTS.into()));
    }
    let me = &req.identity.namespace;
    let parse = |s: &Option<String>| -> ApiResult<Option<FullyQualifiedName>> {
        s.as_deref()
            .map(|s| FullyQualifiedName::parse_ref(s, me))
            .transpose()
            .map_err(|_| ApiError::bad("rule requires a valid trigger and a valid action"))
    };
    let (trigger, action) = (parse(&body.trigger)?, parse(&body.action)?);
    let (trigger, action) = match (&existing, trigger, action) {
        (None, Some(t), Some(a)) => (t, a),
        (None, _, _) => {
            return Err(ApiError::bad(
                "rule requires a valid trigger and a valid action",
            ));
        }
        (Some((old, _)), t, a) => (
            t.unwrap_or_else(|| old.trigger.clone()),
            a.unwrap_or_else(|| old.action.clone()),
        ),
    };
    // The trigger must exist and be the caller's.
    if trigger.namespace() != me || trigger.package().is_some() {
        return Err(ApiError::forbidden_resource(&trigger.to_string()));
    }
    if fetch_trigger(state, trigger.namespace(), &trigger.name)
        .await
        .ok()
        .flatten()
        .is_none()
    {
        return Err(ApiError::bad(format!("trigger {trigger} does not exist")));
    }
    // The action must exist and be readable (also through the caller's own bindings).
    if !state.action_usable(me, &action).await? {
        return Err(ApiError::forbidden_resource(&action.path.to_string()));
    }
    if state.resolve_action(&action).await.is_err() {
        return Err(ApiError::bad(format!("action {action} does not exist")));
    }
    let (rule, rev, old_trigger) = match existing {
        None => (
            Rule {
                namespace: EntityPath::root(req.namespace.clone()),
                name: name.clone(),
                trigger: trigger.clone(),
                action: action.clone(),
                version: body.version.unwrap_or_default(),
                publish: body.publish.unwrap_or(false),
                annotations: body.annotations.unwrap_or_default().dedup(),
                updated: now_millis(),
            },
            None,
            None,
        ),
        Some((old, rev)) => (
            Rule {
                namespace: old.namespace.clone(),
                name: name.clone(),
                trigger: trigger.clone(),
                action: action.clone(),
                version: body.version.unwrap_or(old.version.up_patch()),
                publish: body.publish.unwrap_or(old.publish),
                annotations: body
                    .annotations
                    .map(Parameters::dedup)
                    .unwrap_or(old.annotations.clone()),
                updated: now_millis(),
            },
            Some(rev),
            Some(old.trigger),
        ),
    };
    state.store.put(&Entity::Rule(rule.clone()), rev).await?;
    let id = rule.fqn().doc_id();
    if let Some(old) = &old_trigger
        && old != &trigger
    {
        update_links(state, old, |links| links.remove(&id).is_some()).await?;
    }
    let link_action = action.clone();
    update_links(state, &trigger, |links| {
        let status = links.get(&id).map_or(RuleStatus::Active, |l| l.status);
        links.insert(
            id.clone(),
            RuleLink {
                action: link_action.clone(),
                status,
            },
        );
        true
    })
    .await?;
    let status = status_of(state, &rule).await?;
    Ok(Json(rule.to_json(status)).into_response())
}

async fn set_status(state: &Controller, req: &Req, name: &EntityName) -> ApiResult<Response> {
    let body: StatusPut = json_body(&req.headers, &req.body)?
        .ok_or_else(|| ApiError::bad("The request content was malformed:\nmissing status"))?;
    let status = match body.status.as_str() {
        Some("active") => RuleStatus::Active,
        Some("inactive") => RuleStatus::Inactive,
        _ => {
            let shown = body
                .status
                .as_str()
                .map_or(body.status.to_string(), str::to_owned);
            return Err(ApiError::bad(format!(
                "'{shown}' is not a recognized rule state, must be one of ['active', 'inactive']"
            )));
        }
    };
    let (rule, _) = fetch_rule(state, &req.namespace, name).await?;
    let id = rule.fqn().doc_id();
    let action = rule.action.clone();
    let found = update_links(state, &rule.trigger, |links| {
        links.insert(
            id.clone(),
            RuleLink {
                action: action.clone(),
                status,
            },
        );
        true
    })
    .await?;
    if !found {
        return Err(ApiError::NotFound(
            "Only rules with existing triggers can be activated".into(),
        ));
    }
    Ok("OK".into_response())
}
