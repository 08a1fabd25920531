//! `brisk activation list|get|logs|result|poll`.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use serde_json::{Value, json};

use super::client::encode_path;
use super::names::{QName, collection_url};
use super::output::{activation_table, pretty, status_text};
use super::{CliError, CliResult, Ctx};

#[derive(Subcommand, Debug)]
pub enum ActivationCommand {
    /// List activations, newest first.
    List(ListArgs),
    /// Get an activation record.
    Get(GetArgs),
    /// Print an activation's logs.
    Logs(LogsArgs),
    /// Print an activation's result.
    Result(IdArgs),
    /// Stream new activations and their logs as they finish (Ctrl-C to stop).
    Poll(PollArgs),
}

#[derive(Args, Debug)]
pub struct ListArgs {
    /// Only activations of this action (`name` or `pkg/name`).
    action: Option<String>,
    /// How many to list (0..200).
    #[arg(short = 'l', long, default_value_t = 30)]
    limit: u32,
    /// How many to skip.
    #[arg(short = 's', long, default_value_t = 0)]
    skip: u32,
    /// Only activations started at or after this time (epoch milliseconds).
    #[arg(long, value_name = "EPOCH_MS")]
    since: Option<i64>,
    /// Only activations started at or before this time (epoch milliseconds).
    #[arg(long, value_name = "EPOCH_MS")]
    upto: Option<i64>,
    /// Full records instead of the table.
    #[arg(short = 'f', long)]
    full: bool,
}

#[derive(Args, Debug)]
pub struct IdArgs {
    /// Activation id (default with --last: the newest).
    id: Option<String>,
    /// Use the newest activation.
    #[arg(short = 'l', long)]
    last: bool,
}

#[derive(Args, Debug)]
pub struct GetArgs {
    /// Activation id.
    id: Option<String>,
    /// Print only this field of the record (e.g. `response`).
    field: Option<String>,
    /// Use the newest activation.
    #[arg(short = 'l', long)]
    last: bool,
    /// Print a summary.
    #[arg(short = 's', long)]
    summary: bool,
}

#[derive(Args, Debug)]
pub struct LogsArgs {
    /// Activation id.
    id: Option<String>,
    /// Use the newest activation.
    #[arg(short = 'l', long)]
    last: bool,
    /// Print only the messages, without timestamp and stream.
    #[arg(short = 'r', long)]
    strip: bool,
}

#[derive(Args, Debug)]
pub struct PollArgs {
    /// Only activations of this action.
    action: Option<String>,
    /// Stop after this many seconds.
    #[arg(short = 'e', long, value_name = "SECONDS")]
    exit: Option<u64>,
    /// Start from activations this many seconds old.
    #[arg(long, value_name = "SECONDS")]
    since_seconds: Option<i64>,
    /// Start from activations this many minutes old.
    #[arg(long, value_name = "MINUTES")]
    since_minutes: Option<i64>,
    /// Start from activations this many hours old.
    #[arg(long, value_name = "HOURS")]
    since_hours: Option<i64>,
    /// Start from activations this many days old.
    #[arg(long, value_name = "DAYS")]
    since_days: Option<i64>,
    /// Seconds between polls of the activation list.
    #[arg(long, default_value_t = 1.0, value_name = "SECONDS")]
    interval: f64,
}

fn url(ctx: &Ctx, id: &str, suffix: &str) -> String {
    format!(
        "{}/{}{suffix}",
        collection_url(&ctx.client.namespace, "activations"),
        encode_path(id)
    )
}

/// The given id, or with `--last` the newest one.
async fn pick(ctx: &Ctx, id: Option<String>, last: bool) -> CliResult<String> {
    if let Some(id) = id.filter(|_| !last) {
        return Ok(id);
    }
    if !last {
        return Err(CliError::usage(
            "name an activation id, or use --last for the newest",
        ));
    }
    let list = ctx
        .client
        .get(
            &collection_url(&ctx.client.namespace, "activations"),
            &[("limit", "1".to_owned())],
            "Unable to obtain the list of activations",
        )
        .await?;
    list.get(0)
        .and_then(|a| a.get("activationId"))
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| CliError::general("there are no activations yet"))
}

pub async fn run(cmd: ActivationCommand, ctx: &Ctx) -> CliResult {
    match cmd {
        ActivationCommand::List(args) => list(args, ctx).await,
        ActivationCommand::Get(args) => {
            let id = pick(ctx, args.id.clone(), args.last).await?;
            // With --last the positional is the field.
            let field = if args.last {
                args.id.or(args.field)
            } else {
                args.field
            };
            let record = ctx
                .client
                .get(
                    &url(ctx, &id, ""),
                    &[],
                    &format!("Unable to get activation '{id}'"),
                )
                .await?;
            if let Some(field) = field {
                let value = record.get(&field).cloned().ok_or_else(|| {
                    CliError::general(format!("activation '{id}' has no field '{field}'"))
                })?;
                ctx.out.got(
                    &format!("got activation {id}, displaying field {field}"),
                    &value,
                );
            } else if args.summary && !ctx.out.json {
                let name = format!(
                    "/{}/{}",
                    record
                        .get("namespace")
                        .and_then(Value::as_str)
                        .unwrap_or(""),
                    record.get("name").and_then(Value::as_str).unwrap_or("")
                );
                let status = record
                    .pointer("/response/status")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                let duration = record.get("duration").and_then(Value::as_i64).unwrap_or(0);
                println!("activation result for '{name}' ({status}, {duration}ms)");
                println!(
                    "{}",
                    pretty(record.pointer("/response/result").unwrap_or(&Value::Null))
                );
            } else {
                ctx.out.got(&format!("got activation {id}"), &record);
            }
            Ok(())
        }
        ActivationCommand::Logs(args) => {
            let id = pick(ctx, args.id, args.last).await?;
            let body = ctx
                .client
                .get(
                    &url(ctx, &id, "/logs"),
                    &[],
                    &format!("Unable to get logs for activation '{id}'"),
                )
                .await?;
            if ctx.out.json {
                ctx.out.json(&body);
                return Ok(());
            }
            for line in body
                .get("logs")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let line = line.as_str().unwrap_or_default();
                println!("{}", if args.strip { strip(line) } else { line });
            }
            Ok(())
        }
        ActivationCommand::Result(args) => {
            let id = pick(ctx, args.id, args.last).await?;
            let body = ctx
                .client
                .get(
                    &url(ctx, &id, "/result"),
                    &[],
                    &format!("Unable to get result for activation '{id}'"),
                )
                .await?;
            if ctx.out.json {
                ctx.out.json(&body);
            } else {
                println!("{}", pretty(body.get("result").unwrap_or(&Value::Null)));
            }
            Ok(())
        }
        ActivationCommand::Poll(args) => poll(args, ctx).await,
    }
}

/// `2024-01-01T00:00:00.000000000Z stdout: msg` → `msg`.
fn strip(line: &str) -> &str {
    let mut parts = line.splitn(3, ' ');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(_), Some("stdout:" | "stderr:"), Some(msg)) => msg,
        _ => line,
    }
}

fn name_filter(action: Option<&str>, default_ns: &str) -> CliResult<Vec<(&'static str, String)>> {
    Ok(match action {
        Some(a) => vec![("name", QName::parse(a, default_ns)?.path)],
        None => Vec::new(),
    })
}

async fn list(args: ListArgs, ctx: &Ctx) -> CliResult {
    let mut query = name_filter(args.action.as_deref(), &ctx.client.namespace)?;
    query.push(("limit", args.limit.to_string()));
    query.push(("skip", args.skip.to_string()));
    if let Some(s) = args.since {
        query.push(("since", s.to_string()));
    }
    if let Some(u) = args.upto {
        query.push(("upto", u.to_string()));
    }
    if args.full {
        query.push(("docs", "true".to_owned()));
    }
    let items = ctx
        .client
        .get(
            &collection_url(&ctx.client.namespace, "activations"),
            &query,
            "Unable to obtain the list of activations",
        )
        .await?;
    let items = items.as_array().cloned().unwrap_or_default();
    if ctx.out.json {
        ctx.out.json(&Value::Array(items));
    } else if args.full {
        println!("activations");
        for a in &items {
            println!("{}", pretty(a));
        }
    } else {
        print!("{}", activation_table(&items));
    }
    Ok(())
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Polls the activation list (newest first) for records not seen yet and prints each with its
/// logs, oldest first. Records are written when activations finish, so a record that shows up
/// late is still printed.
async fn poll(args: PollArgs, ctx: &Ctx) -> CliResult {
    let back_ms = args.since_seconds.unwrap_or(0) * 1000
        + args.since_minutes.unwrap_or(0) * 60_000
        + args.since_hours.unwrap_or(0) * 3_600_000
        + args.since_days.unwrap_or(0) * 86_400_000;
    let since = now_ms() - back_ms;
    let mut query = name_filter(args.action.as_deref(), &ctx.client.namespace)?;
    query.push(("since", since.to_string()));
    query.push(("limit", "200".to_owned()));
    query.push(("docs", "true".to_owned()));
    let deadline = args.exit.map(|s| Instant::now() + Duration::from_secs(s));
    let interval = Duration::from_secs_f64(args.interval.clamp(0.05, 60.0));
    if !ctx.out.json {
        println!("Enter Ctrl-c to exit.");
        println!("Polling for activation logs");
    }
    let mut seen: HashSet<String> = HashSet::new();
    let url = collection_url(&ctx.client.namespace, "activations");
    loop {
        let items = ctx
            .client
            .get(&url, &query, "Unable to poll the list of activations")
            .await?;
        let mut fresh: Vec<Value> = items
            .as_array()
            .into_iter()
            .flatten()
            .filter(|a| {
                a.get("activationId")
                    .and_then(Value::as_str)
                    .is_some_and(|id| !seen.contains(id))
            })
            .cloned()
            .collect();
        fresh.sort_by_key(|a| a.get("start").and_then(Value::as_i64).unwrap_or(0));
        for a in fresh {
            let id = a
                .get("activationId")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned();
            print_polled(ctx, &a, &id);
            seen.insert(id);
        }
        use std::io::Write;
        let _ = std::io::stdout().flush();
        if deadline.is_some_and(|d| Instant::now() + interval > d) {
            if let Some(d) = deadline {
                tokio::time::sleep(d.saturating_duration_since(Instant::now())).await;
            }
            return Ok(());
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}

fn print_polled(ctx: &Ctx, a: &Value, id: &str) {
    let name = a.get("name").and_then(Value::as_str).unwrap_or("");
    let logs = a.get("logs").cloned().unwrap_or(json!([]));
    if ctx.out.json {
        // One compact document per line (NDJSON).
        println!(
            "{}",
            json!({
                "activationId": id,
                "name": name,
                "namespace": a.get("namespace"),
                "start": a.get("start"),
                "duration": a.get("duration"),
                "status": a.pointer("/response/status"),
                "result": a.pointer("/response/result"),
                "logs": logs,
            })
        );
        return;
    }
    let status = a
        .pointer("/response/status")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .unwrap_or_else(|| status_text(a.get("statusCode").and_then(Value::as_i64)).to_owned());
    println!("\nActivation: '{name}' ({id}) {status}");
    println!("{}", pretty(&logs));
}

#[cfg(test)]
mod tests {
    use super::strip;

    #[test]
    fn strips_timestamp_and_stream() {
        assert_eq!(
            strip("2024-01-01T00:00:00.000000000Z stdout: hi there"),
            "hi there"
        );
        assert_eq!(strip("2024-01-01T00:00:00.000000000Z stderr: oops"), "oops");
        assert_eq!(strip("plain line"), "plain line");
    }
}
