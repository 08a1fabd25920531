//! What the `list` verbs share: paging flags, fetching one page, and printing it as wsk does.

use clap::Args;
use serde_json::Value;

use super::output::table;
use super::{CliResult, Ctx};

/// `--limit`, `--skip` and `--name-sort`.
#[derive(Args, Debug)]
pub struct PageArgs {
    /// How many to list (0..200).
    #[arg(short = 'l', long, default_value_t = 30)]
    pub limit: u32,
    /// How many to skip.
    #[arg(short = 's', long, default_value_t = 0)]
    pub skip: u32,
    /// Sort by name.
    #[arg(short = 'n', long)]
    pub name_sort: bool,
}

/// A list of one collection of a namespace.
#[derive(Args, Debug)]
pub struct ListArgs {
    /// `/namespace` to list.
    pub namespace: Option<String>,
    #[command(flatten)]
    pub page: PageArgs,
}

impl ListArgs {
    /// The namespace to list: the argument without its slash, else `default`.
    pub fn namespace_or(&self, default: &str) -> String {
        self.namespace
            .as_deref()
            .map_or(default, |n| n.trim_start_matches('/'))
            .to_owned()
    }
}

/// GETs one page of `collection` from `url`, sorted by name when asked.
pub async fn fetch(ctx: &Ctx, url: &str, collection: &str, page: &PageArgs) -> CliResult<Value> {
    let query = [
        ("limit", page.limit.to_string()),
        ("skip", page.skip.to_string()),
    ];
    let mut items = ctx
        .client
        .get(
            url,
            &query,
            &format!("Unable to obtain the list of {collection}"),
        )
        .await?;
    if page.name_sort {
        sort_by_name(&mut items);
    }
    Ok(items)
}

/// Prints a page: JSON with `--json`, else wsk's table.
pub fn print(ctx: &Ctx, collection: &str, items: &Value) {
    if ctx.out.json {
        ctx.out.json(items);
    } else {
        print!(
            "{}",
            table(collection, items.as_array().map_or(&[], Vec::as_slice))
        );
    }
}

/// Sorts a list response by `/namespace/name`.
pub fn sort_by_name(items: &mut Value) {
    if let Some(a) = items.as_array_mut() {
        a.sort_by_key(super::output::full_name);
    }
}
