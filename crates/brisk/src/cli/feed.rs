//! The client side of feeds (wire spec §6): the server only stores a `feed` annotation on the
//! trigger; the CLI calls the feed action with `lifecycleEvent` CREATE/READ/UPDATE/DELETE,
//! `triggerName: "/<ns>/<trigger>"` and the caller's `authKey`, plus the user's parameters.

use reqwest::Method;
use serde_json::{Map, Value, json};

use super::names::QName;
use super::{CliError, CliResult, Ctx};

/// The caller's real namespace when `ns` is `_` (a feed provider needs the real name).
pub async fn real_namespace(ctx: &Ctx, ns: &str) -> CliResult<String> {
    if ns != "_" {
        return Ok(ns.to_owned());
    }
    let list = ctx
        .client
        .get("namespaces", &[], "Unable to get the namespace of the key")
        .await?;
    list.as_array()
        .and_then(|a| a.first())
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| CliError::general("the server did not name the key's namespace"))
}

/// `/ns/pkg/feed` with `_` replaced by the caller's namespace.
pub async fn qualify(ctx: &Ctx, feed: &str) -> CliResult<QName> {
    let mut q = QName::parse(feed, &ctx.client.namespace)?;
    q.namespace = real_namespace(ctx, &q.namespace).await?;
    Ok(q)
}

/// Blocking-invokes the feed action; `Ok(activation id)` when the feed action succeeded.
pub async fn call(
    ctx: &Ctx,
    feed: &QName,
    event: &str,
    trigger: &QName,
    params: Map<String, Value>,
) -> CliResult<String> {
    let trigger_ns = real_namespace(ctx, &trigger.namespace).await?;
    let mut body = params;
    body.insert("lifecycleEvent".into(), json!(event));
    body.insert(
        "triggerName".into(),
        json!(format!("/{trigger_ns}/{}", trigger.path)),
    );
    body.insert("authKey".into(), json!(ctx.client.auth_key()));
    let resp = ctx
        .client
        .send(
            Method::POST,
            &feed.url("actions"),
            &[("blocking", "true".to_owned())],
            Some(&Value::Object(body)),
            Some(&format!("waiting for feed {}", feed.full())),
        )
        .await?;
    let id = resp
        .activation_id
        .clone()
        .or_else(|| {
            resp.body
                .get("activationId")
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .unwrap_or_default();
    let success = resp
        .body
        .pointer("/response/success")
        .and_then(Value::as_bool);
    if resp.status == 200 && success != Some(false) {
        return Ok(id);
    }
    let reason = match resp.body.pointer("/response/result/error") {
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None if resp.status == 202 => "the feed action did not finish in time".to_owned(),
        None => resp.error_message(),
    };
    let what = format!(
        "the feed action {} failed on {event}{}: {reason}",
        feed.full(),
        if id.is_empty() {
            String::new()
        } else {
            format!(" (activation {id})")
        }
    );
    let mut err = CliError::http(resp.status, what, resp.body);
    if resp.status < 400 {
        err.exit = 1;
    }
    Err(err)
}
