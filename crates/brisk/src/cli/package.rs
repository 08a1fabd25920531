//! `brisk package create|update|get|delete|list|bind|refresh`.

use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{Map, Value, json};

use super::listing::{self, ListArgs};
use super::names::{QName, collection_url};
use super::output::summary;
use super::params::{KvArgs, to_key_values};
use super::{CliError, CliResult, Ctx};

#[derive(Subcommand, Debug)]
pub enum PackageCommand {
    /// Create a package.
    Create(PutArgs),
    /// Update a package.
    Update(PutArgs),
    /// Bind parameters to a package: create a binding to it.
    Bind(BindArgs),
    /// Get a package (with its actions and feeds).
    Get(GetArgs),
    /// Delete a package.
    Delete(DeleteArgs),
    /// List packages (of this or another `/namespace`).
    List(ListArgs),
    /// Check the package bindings in a namespace and report those whose package is gone.
    Refresh(RefreshArgs),
}

#[derive(Args, Debug)]
pub struct PutArgs {
    /// Package name.
    name: String,
    #[command(flatten)]
    kv: KvArgs,
    /// Share the package with every namespace: yes or no.
    #[arg(long, value_name = "yes|no")]
    shared: Option<String>,
}

#[derive(Args, Debug)]
pub struct BindArgs {
    /// The package to bind to (e.g. `/whisk.system/alarms`).
    package: String,
    /// The new binding's name.
    binding: String,
    #[command(flatten)]
    kv: KvArgs,
}

#[derive(Args, Debug)]
pub struct GetArgs {
    /// Package name.
    name: String,
    /// Print a summary instead of the JSON.
    #[arg(short = 's', long)]
    summary: bool,
}

#[derive(Args, Debug)]
pub struct DeleteArgs {
    /// Package name.
    name: String,
    /// Delete the actions in the package too.
    #[arg(long)]
    force: bool,
}

#[derive(Args, Debug)]
pub struct RefreshArgs {
    /// `/namespace` to refresh.
    namespace: Option<String>,
}

fn shared_flag(s: &str) -> CliResult<bool> {
    match s.to_ascii_lowercase().as_str() {
        "yes" | "true" => Ok(true),
        "no" | "false" => Ok(false),
        other => Err(CliError::usage(format!(
            "invalid --shared value '{other}': use yes or no"
        ))),
    }
}

pub async fn run(cmd: PackageCommand, ctx: &Ctx) -> CliResult {
    let ns = ctx.client.namespace.clone();
    match cmd {
        PackageCommand::Create(args) => put(args, false, ctx).await,
        PackageCommand::Update(args) => put(args, true, ctx).await,
        PackageCommand::Bind(args) => {
            let target = QName::parse(&args.package, &ns)?;
            if target.package().is_some() {
                return Err(CliError::usage(format!(
                    "'{}' is not a package name",
                    args.package
                )));
            }
            let q = QName::parse(&args.binding, &ns)?;
            let mut body = Map::new();
            body.insert(
                "binding".into(),
                json!({"namespace": target.namespace, "name": target.path}),
            );
            if let Some(p) = args.kv.params()? {
                body.insert("parameters".into(), to_key_values(&p));
            }
            if let Some(a) = args.kv.annotations()? {
                body.insert("annotations".into(), to_key_values(&a));
            }
            let entity = ctx
                .client
                .call(
                    Method::PUT,
                    &q.url("packages"),
                    &[("overwrite", "false".to_owned())],
                    Some(&Value::Object(body)),
                    &format!("Binding creation failed for '{}'", q.path),
                )
                .await?;
            ctx.out
                .done(&format!("created binding {}", q.path), &entity);
            Ok(())
        }
        PackageCommand::Get(args) => {
            let q = QName::parse(&args.name, &ns)?;
            let pkg = ctx
                .client
                .get(
                    &q.url("packages"),
                    &[],
                    &format!("Unable to get package '{}'", q.path),
                )
                .await?;
            if args.summary && !ctx.out.json {
                print!("{}", summary("package", &pkg));
            } else {
                ctx.out.got(&format!("got package {}", q.path), &pkg);
            }
            Ok(())
        }
        PackageCommand::Delete(args) => {
            let q = QName::parse(&args.name, &ns)?;
            let query = [("force", args.force.to_string())];
            let entity = ctx
                .client
                .call(
                    Method::DELETE,
                    &q.url("packages"),
                    &query,
                    None,
                    &format!("Unable to delete package '{}'", q.path),
                )
                .await?;
            ctx.out
                .done(&format!("deleted package {}", q.path), &entity);
            Ok(())
        }
        PackageCommand::List(args) => {
            let url = collection_url(&args.namespace_or(&ns), "packages");
            let items = listing::fetch(ctx, &url, "packages", &args.page).await?;
            listing::print(ctx, "packages", &items);
            Ok(())
        }
        PackageCommand::Refresh(args) => refresh(args, ctx).await,
    }
}

async fn put(args: PutArgs, update: bool, ctx: &Ctx) -> CliResult {
    let q = QName::parse(&args.name, &ctx.client.namespace)?;
    if q.package().is_some() {
        return Err(CliError::usage(format!(
            "'{}' is not a package name (packages do not nest)",
            args.name
        )));
    }
    let verb = if update { "update" } else { "create" };
    let mut body = Map::new();
    if let Some(p) = args.kv.params()? {
        body.insert("parameters".into(), to_key_values(&p));
    }
    if let Some(a) = args.kv.annotations()? {
        body.insert("annotations".into(), to_key_values(&a));
    }
    if let Some(s) = &args.shared {
        body.insert("publish".into(), json!(shared_flag(s)?));
    }
    let entity = ctx
        .client
        .call(
            Method::PUT,
            &q.url("packages"),
            &[("overwrite", update.to_string())],
            Some(&Value::Object(body)),
            &format!("Unable to {verb} package '{}'", q.path),
        )
        .await?;
    ctx.out
        .done(&format!("{verb}d package {}", q.path), &entity);
    Ok(())
}

/// Bindings are resolved live by the server, so "refresh" checks them: a binding whose
/// package no longer exists (or is no longer shared) is reported as stale.
async fn refresh(args: RefreshArgs, ctx: &Ctx) -> CliResult {
    let ns = args
        .namespace
        .as_deref()
        .map(|n| n.trim_start_matches('/').to_owned())
        .unwrap_or_else(|| ctx.client.namespace.clone());
    let ns = super::feed::real_namespace(ctx, &ns).await?;
    let list = ctx
        .client
        .get(
            &collection_url(&ns, "packages"),
            &[("limit", "0".to_owned())],
            "Package refresh for namespace failed",
        )
        .await?;
    let mut current = Vec::new();
    let mut stale = Vec::new();
    for pkg in list.as_array().into_iter().flatten() {
        let Some(binding) = pkg
            .get("binding")
            .filter(|b| b.as_object().is_some_and(|o| !o.is_empty()))
        else {
            continue;
        };
        let name = super::output::full_name(pkg);
        let target = format!(
            "/{}/{}",
            binding
                .get("namespace")
                .and_then(Value::as_str)
                .unwrap_or("_"),
            binding.get("name").and_then(Value::as_str).unwrap_or("")
        );
        let Ok(tq) = QName::parse(&target, "_") else {
            stale.push(name);
            continue;
        };
        let resp = ctx
            .client
            .send(Method::GET, &tq.url("packages"), &[], None, None)
            .await?;
        if resp.ok() {
            current.push(name);
        } else {
            stale.push(name);
        }
    }
    if ctx.out.json {
        ctx.out
            .json(&json!({"namespace": ns, "current": current, "stale": stale}));
        return Ok(());
    }
    println!("ok: refreshed namespace {ns}");
    println!("Current bindings:");
    for b in &current {
        println!("{b}");
    }
    println!("Stale bindings (their package is gone; delete them with 'brisk package delete'):");
    for b in &stale {
        println!("{b}");
    }
    Ok(())
}
