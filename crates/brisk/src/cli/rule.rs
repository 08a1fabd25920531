//! `brisk rule create|update|get|delete|list|enable|disable|status`.

use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{Map, Value, json};

use super::listing::{self, ListArgs};
use super::names::{QName, collection_url};
use super::params::to_key_values;
use super::{CliResult, Ctx};

#[derive(Subcommand, Debug)]
pub enum RuleCommand {
    /// Create a rule linking a trigger to an action.
    Create(PutArgs),
    /// Update a rule.
    Update(PutArgs),
    /// Get a rule.
    Get(GetArgs),
    /// Delete a rule.
    Delete(DeleteArgs),
    /// List rules with their status.
    List(ListArgs),
    /// Enable a rule.
    Enable(NameArg),
    /// Disable a rule.
    Disable(NameArg),
    /// Show whether a rule is active.
    Status(NameArg),
}

#[derive(Args, Debug)]
pub struct NameArg {
    /// Rule name.
    name: String,
}

#[derive(Args, Debug)]
pub struct DeleteArgs {
    /// Rule name.
    name: String,
    /// Disable the rule before deleting it.
    #[arg(long)]
    disable: bool,
}

#[derive(Args, Debug)]
pub struct PutArgs {
    /// Rule name.
    name: String,
    /// Trigger name.
    trigger: String,
    /// Action name.
    action: String,
    /// Annotation KEY VALUE.
    #[arg(short = 'a', long = "annotation", num_args = 2, value_names = ["KEY", "VALUE"], action = clap::ArgAction::Append)]
    annotation: Vec<String>,
}

#[derive(Args, Debug)]
pub struct GetArgs {
    /// Rule name.
    name: String,
    /// Print a summary instead of the JSON.
    #[arg(short = 's', long)]
    summary: bool,
}

pub async fn run(cmd: RuleCommand, ctx: &Ctx) -> CliResult {
    let ns = ctx.client.namespace.clone();
    match cmd {
        RuleCommand::Create(args) => put(args, false, ctx).await,
        RuleCommand::Update(args) => put(args, true, ctx).await,
        RuleCommand::Get(args) => {
            let q = QName::parse(&args.name, &ns)?;
            let rule = ctx
                .client
                .get(
                    &q.url("rules"),
                    &[],
                    &format!("Unable to get rule '{}'", q.path),
                )
                .await?;
            if args.summary && !ctx.out.json {
                let status = rule.get("status").and_then(Value::as_str).unwrap_or("");
                println!(
                    "rule {}\n   (status: {status})",
                    super::output::full_name(&rule)
                );
            } else {
                ctx.out.got(&format!("got rule {}", q.path), &rule);
            }
            Ok(())
        }
        RuleCommand::Delete(args) => {
            let q = QName::parse(&args.name, &ns)?;
            let what = format!("Unable to delete rule '{}'", q.path);
            if args.disable {
                set_status(ctx, &q, "inactive", &what).await?;
            }
            let rule = ctx
                .client
                .call(Method::DELETE, &q.url("rules"), &[], None, &what)
                .await?;
            ctx.out.done(&format!("deleted rule {}", q.path), &rule);
            Ok(())
        }
        RuleCommand::List(args) => {
            let url = collection_url(&args.namespace_or(&ns), "rules");
            let mut items = listing::fetch(ctx, &url, "rules", &args.page).await?;
            // The list has no status; each rule's GET computes it from its trigger.
            if let Some(rules) = items.as_array_mut() {
                for rule in rules.iter_mut() {
                    let full = format!(
                        "/{}/{}",
                        rule.get("namespace").and_then(Value::as_str).unwrap_or("_"),
                        rule.get("name").and_then(Value::as_str).unwrap_or("")
                    );
                    let Ok(q) = QName::parse(&full, "_") else {
                        continue;
                    };
                    if let Ok(resp) = ctx
                        .client
                        .send(Method::GET, &q.url("rules"), &[], None, None)
                        .await
                        && let Some(status) = resp.body.get("status").filter(|_| resp.ok())
                        && let Some(obj) = rule.as_object_mut()
                    {
                        obj.insert("status".into(), status.clone());
                    }
                }
            }
            listing::print(ctx, "rules", &items);
            Ok(())
        }
        RuleCommand::Enable(args) => {
            let q = QName::parse(&args.name, &ns)?;
            set_status(
                ctx,
                &q,
                "active",
                &format!("Unable to enable rule '{}'", q.path),
            )
            .await?;
            ctx.out.done(
                &format!("enabled rule {}", q.path),
                &json!({"name": q.path, "status": "active"}),
            );
            Ok(())
        }
        RuleCommand::Disable(args) => {
            let q = QName::parse(&args.name, &ns)?;
            set_status(
                ctx,
                &q,
                "inactive",
                &format!("Unable to disable rule '{}'", q.path),
            )
            .await?;
            ctx.out.done(
                &format!("disabled rule {}", q.path),
                &json!({"name": q.path, "status": "inactive"}),
            );
            Ok(())
        }
        RuleCommand::Status(args) => {
            let q = QName::parse(&args.name, &ns)?;
            let rule = ctx
                .client
                .get(
                    &q.url("rules"),
                    &[],
                    &format!("Unable to get status of rule '{}'", q.path),
                )
                .await?;
            let status = rule
                .get("status")
                .and_then(Value::as_str)
                .unwrap_or("unknown");
            ctx.out.done(
                &format!("rule {} is {status}", q.path),
                &json!({"name": q.path, "status": status}),
            );
            Ok(())
        }
    }
}

async fn set_status(ctx: &Ctx, q: &QName, status: &str, what: &str) -> CliResult {
    ctx.client
        .call(
            Method::POST,
            &q.url("rules"),
            &[],
            Some(&json!({"status": status})),
            what,
        )
        .await
        .map(|_| ())
}

async fn put(args: PutArgs, update: bool, ctx: &Ctx) -> CliResult {
    let ns = &ctx.client.namespace;
    let q = QName::parse(&args.name, ns)?;
    let trigger = QName::parse(&args.trigger, ns)?;
    let action = QName::parse(&args.action, ns)?;
    let verb = if update { "update" } else { "create" };
    let mut body = Map::new();
    body.insert("trigger".into(), json!(trigger.full()));
    body.insert("action".into(), json!(action.full()));
    if !args.annotation.is_empty() {
        let mut map = Map::new();
        for pair in args.annotation.chunks(2) {
            if let [k, v] = pair {
                map.insert(k.clone(), super::params::parse_value(v));
            }
        }
        body.insert("annotations".into(), to_key_values(&map));
    }
    let rule = ctx
        .client
        .call(
            Method::PUT,
            &q.url("rules"),
            &[("overwrite", update.to_string())],
            Some(&Value::Object(body)),
            &format!("Unable to {verb} rule '{}'", q.path),
        )
        .await?;
    ctx.out.done(&format!("{verb}d rule {}", q.path), &rule);
    Ok(())
}
