//! `brisk property set|get|unset`: the `KEY=value` file wsk uses (`APIHOST`, `AUTH`, `NAMESPACE`).

use clap::{Args, Subcommand};
use serde_json::json;

use super::config::{Config, Props};
use super::{CliError, CliResult, GlobalArgs, Out};

#[derive(Subcommand, Debug)]
pub enum PropertyCommand {
    /// Set properties (`--apihost`, `--auth`, `--namespace`).
    Set(SetArgs),
    /// Show properties (all, or the ones named by flags).
    Get(GetArgs),
    /// Remove properties from the file.
    Unset(UnsetArgs),
}

#[derive(Args, Debug)]
pub struct SetArgs {
    /// Default namespace.
    #[arg(long)]
    namespace: Option<String>,
}

#[derive(Args, Debug)]
pub struct GetArgs {
    /// Show the default namespace.
    #[arg(long)]
    namespace: bool,
    /// Show every property.
    #[arg(long)]
    all: bool,
}

#[derive(Args, Debug)]
pub struct UnsetArgs {
    /// Remove the default namespace.
    #[arg(long)]
    namespace: bool,
}

/// `--apihost` / `--auth` are global flags whose value is optional: given with a value for
/// `set`, without one for `get` and `unset`.
pub async fn run(cmd: PropertyCommand, global: &GlobalArgs, out: &Out) -> CliResult {
    let mut props = Props::load()?;
    match cmd {
        PropertyCommand::Set(args) => {
            let mut changed = Vec::new();
            let mut doc = serde_json::Map::new();
            if let Some(host) = &global.apihost {
                if host.is_empty() {
                    return Err(CliError::usage("--apihost needs a value"));
                }
                props.set("APIHOST", host);
                changed.push(format!("whisk API host set to {host}"));
                doc.insert("apihost".into(), json!(host));
            }
            if let Some(auth) = &global.auth {
                if !auth.contains(':') {
                    return Err(CliError::usage(
                        "--auth needs a key of the form <uuid>:<key>",
                    ));
                }
                props.set("AUTH", auth);
                changed.push(
                    "whisk auth set. Run 'brisk property get --auth' to see the new value.".into(),
                );
                doc.insert("auth".into(), json!(auth));
            }
            if let Some(ns) = &args.namespace {
                props.set("NAMESPACE", ns);
                changed.push(format!("whisk namespace set to {ns}"));
                doc.insert("namespace".into(), json!(ns));
            }
            if changed.is_empty() {
                return Err(CliError::usage(
                    "nothing to set; example: brisk property set --apihost localhost:3233 --auth <uuid:key>",
                ));
            }
            props.save()?;
            if out.json {
                out.json(&serde_json::Value::Object(doc));
            } else {
                for line in changed {
                    out.ok(&line);
                }
            }
        }
        PropertyCommand::Unset(args) => {
            let mut changed = Vec::new();
            if global.apihost.is_some() {
                props.unset("APIHOST");
                changed.push("whisk API host unset.");
            }
            if global.auth.is_some() {
                props.unset("AUTH");
                changed.push("whisk auth unset.");
            }
            if args.namespace {
                props.unset("NAMESPACE");
                changed.push("whisk namespace unset.");
            }
            if changed.is_empty() {
                return Err(CliError::usage(
                    "name what to unset: --apihost, --auth or --namespace",
                ));
            }
            props.save()?;
            for line in &changed {
                out.ok(line);
            }
            if out.json {
                out.json(&json!({"unset": changed}));
            }
        }
        PropertyCommand::Get(args) => {
            // Effective values (environment included), without the flags' values.
            let cfg = Config::resolve(&GlobalArgs::default())?;
            let want_host = global.apihost.is_some();
            let want_auth = global.auth.is_some();
            let all = args.all || !(want_host || want_auth || args.namespace);
            let host = cfg.apihost.clone().unwrap_or_default();
            let auth = cfg.auth.clone().unwrap_or_default();
            if out.json {
                let mut doc = serde_json::Map::new();
                if all || want_host {
                    doc.insert("apihost".into(), json!(host));
                }
                if all || want_auth {
                    doc.insert("auth".into(), json!(auth));
                }
                if all || args.namespace {
                    doc.insert("namespace".into(), json!(cfg.namespace));
                }
                if all {
                    doc.insert("apiversion".into(), json!("v1"));
                    doc.insert("file".into(), json!(props.file().display().to_string()));
                }
                out.json(&serde_json::Value::Object(doc));
                return Ok(());
            }
            if all || want_auth {
                println!("whisk auth\t\t{auth}");
            }
            if all || want_host {
                println!("whisk API host\t\t{host}");
            }
            if all {
                println!("whisk API version\tv1");
            }
            if all || args.namespace {
                println!("whisk namespace\t\t{}", cfg.namespace);
            }
            if all {
                println!("whisk CLI version\tbrisk {}", env!("CARGO_PKG_VERSION"));
                println!("whisk config file\t{}", props.file().display());
            }
        }
    }
    Ok(())
}
