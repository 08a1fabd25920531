//! `brisk namespace list|get` and `brisk list`.

use clap::{Args, Subcommand};
use serde_json::{Map, Value};

use super::names::collection_url;
use super::output::table;
use super::{CliResult, Ctx};

#[derive(Subcommand, Debug)]
pub enum NamespaceCommand {
    /// List the namespaces of the key.
    List,
    /// List the entities in a namespace.
    Get(ListArgs),
}

#[derive(Args, Debug)]
pub struct ListArgs {
    /// `/namespace` (default: the configured one).
    namespace: Option<String>,
    /// Sort by name.
    #[arg(short = 'n', long)]
    name_sort: bool,
}

pub async fn run(cmd: NamespaceCommand, ctx: &Ctx) -> CliResult {
    match cmd {
        NamespaceCommand::List => {
            let list = ctx
                .client
                .get(
                    "namespaces",
                    &[],
                    "Unable to obtain the list of available namespaces",
                )
                .await?;
            if ctx.out.json {
                ctx.out.json(&list);
            } else {
                println!("namespaces");
                for ns in list.as_array().into_iter().flatten() {
                    println!("{}", ns.as_str().unwrap_or_default());
                }
            }
            Ok(())
        }
        NamespaceCommand::Get(args) => list_all(args, ctx).await,
    }
}

/// Every entity of a namespace: packages, actions, triggers, rules.
pub async fn list_all(args: ListArgs, ctx: &Ctx) -> CliResult {
    let ns = args
        .namespace
        .as_deref()
        .map(|n| n.trim_start_matches('/').to_owned())
        .unwrap_or_else(|| ctx.client.namespace.clone());
    let shown = if ns == "_" {
        super::feed::real_namespace(ctx, &ns).await?
    } else {
        ns.clone()
    };
    let mut doc = Map::new();
    doc.insert("namespace".into(), Value::String(shown.clone()));
    for collection in ["packages", "actions", "triggers", "rules"] {
        let mut items = ctx
            .client
            .get(
                &collection_url(&ns, collection),
                &[("limit", "0".to_owned())],
                &format!("Unable to obtain the list of entities for namespace '{shown}'"),
            )
            .await?;
        if args.name_sort {
            super::listing::sort_by_name(&mut items);
        }
        doc.insert(collection.into(), items);
    }
    if ctx.out.json {
        ctx.out.json(&Value::Object(doc));
        return Ok(());
    }
    println!("Entities in namespace: {shown}");
    for collection in ["packages", "actions", "triggers", "rules"] {
        let items = doc
            .get(collection)
            .and_then(Value::as_array)
            .map_or(&[][..], Vec::as_slice);
        print!("{}", table(collection, items));
    }
    Ok(())
}
