//! The few OpenWhisk REST calls the scenarios make to set themselves up.

use anyhow::Context;
use serde_json::{Value, json};

use crate::client::Conn;

pub const NS: &str = "/api/v1/namespaces/_";

/// The runtime kinds the scenarios use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Node,
    Python,
}

impl Kind {
    pub const BOTH: [Kind; 2] = [Kind::Node, Kind::Python];

    pub fn exec_kind(self) -> &'static str {
        match self {
            Kind::Node => "nodejs:20",
            Kind::Python => "python:3.11",
        }
    }

    /// Short label used in metric and action names.
    pub fn label(self) -> &'static str {
        match self {
            Kind::Node => "node",
            Kind::Python => "python",
        }
    }

    /// A noop action; `tag` makes the code (and so the action version) unique.
    pub fn noop_code(self, tag: &str) -> String {
        match self {
            Kind::Node => format!("// {tag}\nfunction main(params) {{ return {{}}; }}\n"),
            Kind::Python => format!("# {tag}\ndef main(args):\n    return {{}}\n"),
        }
    }
}

pub fn action_path(name: &str) -> String {
    format!("{NS}/actions/{name}")
}

/// Blocking invoke; with `result` the response is the action's result, else the full record.
pub fn invoke_path(name: &str, result: bool) -> String {
    format!("{NS}/actions/{name}?blocking=true&result={result}")
}

pub async fn put_action(
    c: &mut Conn,
    name: &str,
    kind: Kind,
    code: &str,
    concurrency: Option<u32>,
) -> anyhow::Result<()> {
    let mut body = json!({"exec": {"kind": kind.exec_kind(), "code": code}});
    if let Some(n) = concurrency {
        body["limits"] = json!({"concurrency": n});
    }
    c.put_json(&format!("{}?overwrite=true", action_path(name)), &body)
        .await?
        .ok()
        .with_context(|| format!("create action {name}"))?;
    Ok(())
}

pub async fn put_sequence(c: &mut Conn, name: &str, components: &[String]) -> anyhow::Result<()> {
    let comps: Vec<String> = components.iter().map(|c| format!("/_/{c}")).collect();
    let body = json!({"exec": {"kind": "sequence", "components": comps}});
    c.put_json(&format!("{}?overwrite=true", action_path(name)), &body)
        .await?
        .ok()
        .with_context(|| format!("create sequence {name}"))?;
    Ok(())
}

pub async fn put_trigger(c: &mut Conn, name: &str) -> anyhow::Result<()> {
    c.put_json(&format!("{NS}/triggers/{name}?overwrite=true"), &json!({}))
        .await?
        .ok()
        .with_context(|| format!("create trigger {name}"))?;
    Ok(())
}

pub async fn put_rule(c: &mut Conn, name: &str, trigger: &str, action: &str) -> anyhow::Result<()> {
    let body = json!({"trigger": format!("/_/{trigger}"), "action": format!("/_/{action}")});
    c.put_json(&format!("{NS}/rules/{name}?overwrite=true"), &body)
        .await?
        .ok()
        .with_context(|| format!("create rule {name}"))?;
    Ok(())
}

/// One blocking invoke returning the result; fails on anything but success.
pub async fn invoke(c: &mut Conn, name: &str) -> anyhow::Result<Value> {
    c.post_json(&invoke_path(name, true), &json!({}))
        .await?
        .ok()
        .with_context(|| format!("invoke {name}"))?
        .json()
}
