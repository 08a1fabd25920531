//! `brisk trigger create|update|get|delete|list|fire`, with feeds (see [`super::feed`]).

use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{Map, Value, json};

use super::action::annotation;
use super::feed;
use super::listing::{self, ListArgs};
use super::names::{QName, collection_url};
use super::output::summary;
use super::params::{KvArgs, ParamArgs, to_key_values};
use super::{CliError, CliResult, Ctx};

#[derive(Subcommand, Debug)]
pub enum TriggerCommand {
    /// Create a trigger (with `--feed`, also register it with the feed).
    Create(PutArgs),
    /// Update a trigger (a feed trigger's parameters go to the feed with UPDATE).
    Update(PutArgs),
    /// Get a trigger (a feed trigger's feed is called with READ).
    Get(GetArgs),
    /// Delete a trigger (a feed trigger's feed is called with DELETE first).
    Delete(NameArg),
    /// List triggers.
    List(ListArgs),
    /// Fire a trigger with a payload.
    Fire(FireArgs),
}

#[derive(Args, Debug)]
pub struct NameArg {
    /// Trigger name.
    name: String,
}

#[derive(Args, Debug)]
pub struct PutArgs {
    /// Trigger name.
    name: String,
    #[command(flatten)]
    kv: KvArgs,
    /// Feed action (e.g. `/whisk.system/alarms/alarm`); the parameters go to the feed.
    #[arg(short = 'f', long, value_name = "ACTION")]
    feed: Option<String>,
}

#[derive(Args, Debug)]
pub struct GetArgs {
    /// Trigger name.
    name: String,
    /// Print a summary instead of the JSON.
    #[arg(short = 's', long)]
    summary: bool,
}

#[derive(Args, Debug)]
pub struct FireArgs {
    /// Trigger name.
    name: String,
    #[command(flatten)]
    params: ParamArgs,
}

pub async fn run(cmd: TriggerCommand, ctx: &Ctx) -> CliResult {
    match cmd {
        TriggerCommand::Create(args) => create(args, ctx).await,
        TriggerCommand::Update(args) => update(args, ctx).await,
        TriggerCommand::Get(args) => get(args, ctx).await,
        TriggerCommand::Delete(args) => delete(args, ctx).await,
        TriggerCommand::List(args) => {
            let url = collection_url(&args.namespace_or(&ctx.client.namespace), "triggers");
            let items = listing::fetch(ctx, &url, "triggers", &args.page).await?;
            listing::print(ctx, "triggers", &items);
            Ok(())
        }
        TriggerCommand::Fire(args) => fire(args, ctx).await,
    }
}

async fn put_trigger(
    ctx: &Ctx,
    q: &QName,
    body: Map<String, Value>,
    overwrite: bool,
    what: &str,
) -> CliResult<Value> {
    ctx.client
        .call(
            Method::PUT,
            &q.url("triggers"),
            &[("overwrite", overwrite.to_string())],
            Some(&Value::Object(body)),
            what,
        )
        .await
}

async fn create(args: PutArgs, ctx: &Ctx) -> CliResult {
    let q = QName::parse(&args.name, &ctx.client.namespace)?;
    let what = format!("Unable to create trigger '{}'", q.path);
    let params = args.kv.params()?.unwrap_or_default();
    let mut annotations = args.kv.annotations()?.unwrap_or_default();
    let mut body = Map::new();
    let Some(feed_name) = &args.feed else {
        if args.kv.params()?.is_some() {
            body.insert("parameters".into(), to_key_values(&params));
        }
        if !annotations.is_empty() {
            body.insert("annotations".into(), to_key_values(&annotations));
        }
        let entity = put_trigger(ctx, &q, body, false, &what).await?;
        ctx.out
            .done(&format!("created trigger {}", q.path), &entity);
        return Ok(());
    };
    let feed_q = feed::qualify(ctx, feed_name).await?;
    annotations.insert("feed".into(), json!(feed_q.full()));
    body.insert("annotations".into(), to_key_values(&annotations));
    let entity = put_trigger(ctx, &q, body, false, &what).await?;
    match feed::call(ctx, &feed_q, "CREATE", &q, params).await {
        Ok(id) => {
            ctx.out
                .ok(&format!("invoked {} with id {id}", feed_q.full()));
            ctx.out
                .done(&format!("created trigger {}", q.path), &entity);
            Ok(())
        }
        Err(mut e) => {
            // As wsk: a trigger whose feed could not be set up is removed again.
            let _ = ctx
                .client
                .send(Method::DELETE, &q.url("triggers"), &[], None, None)
                .await;
            e.message = format!("{what}: {}", e.message);
            Err(e)
        }
    }
}

async fn update(args: PutArgs, ctx: &Ctx) -> CliResult {
    let q = QName::parse(&args.name, &ctx.client.namespace)?;
    let what = format!("Unable to update trigger '{}'", q.path);
    let existing = ctx
        .client
        .send(Method::GET, &q.url("triggers"), &[], None, None)
        .await?;
    let feed_name = existing
        .ok()
        .then(|| {
            annotation(&existing.body, "feed")
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .flatten()
        .or(args.feed.clone());
    let params = args.kv.params()?;
    let annotations = args.kv.annotations()?;
    let mut body = Map::new();
    match &feed_name {
        Some(feed_name) => {
            let feed_q = feed::qualify(ctx, feed_name).await?;
            let mut annotations = annotations.unwrap_or_default();
            annotations.insert("feed".into(), json!(feed_q.full()));
            body.insert("annotations".into(), to_key_values(&annotations));
            let entity = put_trigger(ctx, &q, body, true, &what).await?;
            let id = feed::call(ctx, &feed_q, "UPDATE", &q, params.unwrap_or_default())
                .await
                .map_err(|mut e| {
                    e.message = format!("{what}: {}", e.message);
                    e
                })?;
            ctx.out
                .ok(&format!("invoked {} with id {id}", feed_q.full()));
            ctx.out
                .done(&format!("updated trigger {}", q.path), &entity);
        }
        None => {
            if let Some(p) = params {
                body.insert("parameters".into(), to_key_values(&p));
            }
            if let Some(a) = annotations {
                body.insert("annotations".into(), to_key_values(&a));
            }
            let entity = put_trigger(ctx, &q, body, true, &what).await?;
            ctx.out
                .done(&format!("updated trigger {}", q.path), &entity);
        }
    }
    Ok(())
}

async fn get(args: GetArgs, ctx: &Ctx) -> CliResult {
    let q = QName::parse(&args.name, &ctx.client.namespace)?;
    let what = format!("Unable to get trigger '{}'", q.path);
    let trigger = ctx.client.get(&q.url("triggers"), &[], &what).await?;
    if let Some(feed_name) = annotation(&trigger, "feed").and_then(Value::as_str) {
        let feed_q = feed::qualify(ctx, feed_name).await?;
        if let Err(e) = feed::call(ctx, &feed_q, "READ", &q, Map::new()).await {
            eprintln!("warning: {}", e.message);
        }
    }
    if args.summary && !ctx.out.json {
        print!("{}", summary("trigger", &trigger));
    } else {
        ctx.out.got(&format!("got trigger {}", q.path), &trigger);
    }
    Ok(())
}

async fn delete(args: NameArg, ctx: &Ctx) -> CliResult {
    let q = QName::parse(&args.name, &ctx.client.namespace)?;
    let what = format!("Unable to delete trigger '{}'", q.path);
    let trigger = ctx.client.get(&q.url("triggers"), &[], &what).await?;
    if let Some(feed_name) = annotation(&trigger, "feed").and_then(Value::as_str) {
        let feed_q = feed::qualify(ctx, feed_name).await?;
        let id = feed::call(ctx, &feed_q, "DELETE", &q, Map::new())
            .await
            .map_err(|mut e| {
                e.message = format!("{what}: {}", e.message);
                e
            })?;
        ctx.out
            .ok(&format!("invoked {} with id {id}", feed_q.full()));
    }
    let entity = ctx
        .client
        .call(Method::DELETE, &q.url("triggers"), &[], None, &what)
        .await?;
    ctx.out
        .done(&format!("deleted trigger {}", q.path), &entity);
    Ok(())
}

async fn fire(args: FireArgs, ctx: &Ctx) -> CliResult {
    let q = QName::parse(&args.name, &ctx.client.namespace)?;
    let body = Value::Object(args.params.object()?);
    let resp = ctx
        .client
        .send(Method::POST, &q.url("triggers"), &[], Some(&body), None)
        .await?;
    if !resp.ok() {
        return Err(resp.into_error(&format!("Unable to fire trigger '{}'", q.path)));
    }
    if resp.status == 204 {
        ctx.out.done(
            &format!("triggered {} (no active rules; no activation)", q.full()),
            &json!({"activationId": null}),
        );
        return Ok(());
    }
    let id = resp
        .body
        .get("activationId")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .or(resp.activation_id.clone())
        .ok_or_else(|| CliError::general("the server did not return an activation id"))?;
    ctx.out
        .done(&format!("triggered {} with id {id}", q.full()), &resp.body);
    Ok(())
}
