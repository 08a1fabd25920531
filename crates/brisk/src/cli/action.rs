//! `brisk action create|update|get|delete|list|invoke`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{Map, Value, json};

use super::client::encode_path;
use super::listing::{self, PageArgs};
use super::names::{QName, collection_url};
use super::output::{pretty, summary};
use super::params::{KvArgs, ParamArgs, kv_get, to_key_values};
use super::{CliError, CliResult, Ctx};

/// The image `--native` uses, as wsk does.
const NATIVE_IMAGE: &str = "openwhisk/dockerskeleton";

#[derive(Subcommand, Debug)]
pub enum ActionCommand {
    /// Create an action.
    Create(PutArgs),
    /// Update an action (only the given fields change).
    Update(PutArgs),
    /// Get an action.
    Get(GetArgs),
    /// Delete an action.
    Delete(NameArg),
    /// List actions (in the namespace, `/namespace`, or a package).
    List(ListArgs),
    /// Invoke an action.
    Invoke(InvokeArgs),
}

#[derive(Args, Debug)]
pub struct NameArg {
    /// Action name (`name`, `pkg/name`, `/ns/[pkg/]name`).
    pub name: String,
}

#[derive(Args, Debug)]
pub struct PutArgs {
    /// Action name (`name`, `pkg/name`, `/ns/[pkg/]name`).
    name: String,
    /// Code file (`.js`, `.py`, `.zip` with `--kind`, ...), or with `--sequence` the
    /// comma-separated component actions.
    artifact: Option<String>,
    #[command(flatten)]
    kv: KvArgs,
    /// Runtime kind, e.g. `nodejs:20` or `python:default` (default: from the file extension).
    #[arg(long)]
    kind: Option<String>,
    /// The function to call (default `main`).
    #[arg(long)]
    main: Option<String>,
    /// A native executable or script run by the docker skeleton (`openwhisk/dockerskeleton`).
    #[arg(long)]
    native: bool,
    /// A docker image to run (kind `blackbox`).
    #[arg(long, value_name = "IMAGE")]
    docker: Option<String>,
    /// Make a sequence of the comma-separated actions given as the artifact.
    #[arg(long)]
    sequence: bool,
    /// Export as a web action: `true`, `false` or `raw`.
    #[arg(long, value_name = "true|false|raw")]
    web: Option<String>,
    /// Secure the web action: `true` (random secret), `false` (remove), or a secret.
    #[arg(long, value_name = "SECRET")]
    web_secure: Option<String>,
    /// Time limit in milliseconds.
    #[arg(short = 't', long, value_name = "MS")]
    timeout: Option<u64>,
    /// Memory limit in MB.
    #[arg(short = 'm', long, value_name = "MB")]
    memory: Option<u64>,
    /// Log size limit in MB.
    #[arg(short = 'l', long, value_name = "MB")]
    logsize: Option<u64>,
    /// Concurrent activations per container.
    #[arg(short = 'c', long, value_name = "N")]
    concurrency: Option<u64>,
}

#[derive(Args, Debug)]
pub struct GetArgs {
    /// Action name.
    name: String,
    /// Print a summary instead of the JSON.
    #[arg(short = 's', long)]
    summary: bool,
    /// Print the web URL of the action.
    #[arg(short = 'r', long)]
    url: bool,
    /// Save the code to a file named after the action.
    #[arg(long)]
    save: bool,
    /// Save the code to FILE.
    #[arg(long, value_name = "FILE")]
    save_as: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct ListArgs {
    /// `/namespace`, a package, or `/namespace/package`.
    target: Option<String>,
    #[command(flatten)]
    page: PageArgs,
}

#[derive(Args, Debug)]
pub struct InvokeArgs {
    /// Action name.
    name: String,
    #[command(flatten)]
    params: ParamArgs,
    /// Wait for the result.
    #[arg(short = 'b', long)]
    blocking: bool,
    /// Wait and print only the result (implies --blocking).
    #[arg(short = 'r', long)]
    result: bool,
    /// Wait, then print the result and the activation's logs together.
    #[arg(long)]
    logs: bool,
}

pub async fn run(cmd: ActionCommand, ctx: &Ctx) -> CliResult<u8> {
    match cmd {
        ActionCommand::Create(args) => put(args, false, ctx).await.map(|()| 0),
        ActionCommand::Update(args) => put(args, true, ctx).await.map(|()| 0),
        ActionCommand::Get(args) => get(args, ctx).await.map(|()| 0),
        ActionCommand::Delete(args) => {
            let q = QName::parse(&args.name, &ctx.client.namespace)?;
            let what = format!("Unable to delete action '{}'", q.path);
            let body = ctx
                .client
                .call(Method::DELETE, &q.url("actions"), &[], None, &what)
                .await?;
            ctx.out.done(&format!("deleted action {}", q.path), &body);
            Ok(0)
        }
        ActionCommand::List(args) => list(args, ctx).await.map(|()| 0),
        ActionCommand::Invoke(args) => invoke(args, ctx).await,
    }
}

/// The kind wsk infers from a file extension.
fn infer_kind(path: &Path) -> Result<&'static str, CliError> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    Ok(match ext.as_str() {
        "js" => "nodejs:default",
        "py" => "python:default",
        "swift" => "swift:default",
        "php" => "php:default",
        "go" => "go:default",
        "rb" => "ruby:default",
        "java" | "jar" => "java:default",
        "zip" => {
            return Err(CliError::usage(format!(
                "a .zip action needs its kind: add --kind, e.g. --kind nodejs:20 or --kind python:3 ({})",
                path.display()
            )));
        }
        _ => {
            return Err(CliError::usage(format!(
                "cannot infer the kind of '{}' from its extension: add --kind",
                path.display()
            )));
        }
    })
}

/// File contents as the `code` string: text as is, archives and other binaries base64.
fn read_code(path: &Path) -> Result<String, CliError> {
    let bytes = std::fs::read(path)
        .map_err(|e| CliError::usage(format!("cannot read {}: {e}", path.display())))?;
    let archive = matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("zip" | "jar")
    );
    match (archive, String::from_utf8(bytes)) {
        (false, Ok(text)) => Ok(text),
        (_, Ok(text)) => Ok(base64::engine::general_purpose::STANDARD.encode(text)),
        (_, Err(e)) => Ok(base64::engine::general_purpose::STANDARD.encode(e.into_bytes())),
    }
}

fn exec_of(args: &PutArgs, default_ns: &str) -> Result<Option<Value>, CliError> {
    if args.sequence {
        let list = args.artifact.as_deref().ok_or_else(|| {
            CliError::usage("--sequence needs the comma-separated component actions, e.g. a,b,c")
        })?;
        let components = list
            .split(',')
            .map(|c| QName::parse(c.trim(), default_ns).map(|q| q.full()))
            .collect::<Result<Vec<_>, _>>()?;
        return Ok(Some(json!({"kind": "sequence", "components": components})));
    }
    let code = args
        .artifact
        .as_deref()
        .map(Path::new)
        .map(read_code)
        .transpose()?;
    let mut exec = Map::new();
    if args.native || args.docker.is_some() {
        let image = args
            .docker
            .clone()
            .unwrap_or_else(|| NATIVE_IMAGE.to_owned());
        if args.native && code.is_none() {
            return Err(CliError::usage(
                "--native needs the executable or script (or a .zip containing 'exec')",
            ));
        }
        exec.insert("kind".into(), json!("blackbox"));
        exec.insert("image".into(), json!(image));
        if let Some(code) = code {
            exec.insert("code".into(), json!(code));
        }
    } else {
        let Some(code) = code else {
            if args.kind.is_some() || args.main.is_some() {
                return Err(CliError::usage(
                    "--kind and --main need the code artifact too",
                ));
            }
            return Ok(None);
        };
        let kind = match &args.kind {
            Some(k) => k.clone(),
            None => infer_kind(Path::new(args.artifact.as_deref().unwrap_or("")))?.to_owned(),
        };
        exec.insert("kind".into(), json!(kind));
        exec.insert("code".into(), json!(code));
    }
    if let Some(main) = &args.main {
        exec.insert("main".into(), json!(main));
    }
    Ok(Some(Value::Object(exec)))
}

/// `--web` and `--web-secure` as annotations (§7.6) plus keys to delete.
fn web_annotations(args: &PutArgs, annotations: &mut Map<String, Value>) -> CliResult<Vec<String>> {
    let mut delete = Vec::new();
    if let Some(web) = &args.web {
        let (export, raw) = match web.to_ascii_lowercase().as_str() {
            "true" | "yes" => (true, false),
            "raw" => (true, true),
            "false" | "no" => (false, false),
            other => {
                return Err(CliError::usage(format!(
                    "invalid --web value '{other}': use true, false or raw"
                )));
            }
        };
        annotations.insert("web-export".into(), json!(export));
        annotations.insert("raw-http".into(), json!(raw));
        annotations.insert("final".into(), json!(export));
    }
    if let Some(secret) = &args.web_secure {
        match secret.to_ascii_lowercase().as_str() {
            "true" => {
                let n: u64 = rand::random::<u64>() % (1u64 << 53);
                annotations.insert("require-whisk-auth".into(), json!(n));
            }
            "false" => delete.push("require-whisk-auth".to_owned()),
            _ => {
                let value = secret
                    .parse::<i64>()
                    .map(Value::from)
                    .unwrap_or_else(|_| json!(secret));
                annotations.insert("require-whisk-auth".into(), value);
            }
        }
    }
    Ok(delete)
}

async fn put(args: PutArgs, update: bool, ctx: &Ctx) -> CliResult {
    let q = QName::parse(&args.name, &ctx.client.namespace)?;
    let verb = if update { "update" } else { "create" };
    let exec = exec_of(&args, &ctx.client.namespace)?;
    if exec.is_none() && !update {
        return Err(CliError::usage(format!(
            "an action needs code: brisk action create {} FILE (or --sequence a,b / --docker IMAGE)",
            args.name
        )));
    }
    let mut body = Map::new();
    if let Some(exec) = exec {
        body.insert("exec".into(), exec);
    }
    if let Some(params) = args.kv.params()? {
        body.insert("parameters".into(), to_key_values(&params));
    }
    let mut annotations = args.kv.annotations()?.unwrap_or_default();
    let delete = web_annotations(&args, &mut annotations)?;
    if !annotations.is_empty() || args.kv.annotation_file.is_some() {
        body.insert("annotations".into(), to_key_values(&annotations));
    }
    if !delete.is_empty() {
        body.insert("delAnnotations".into(), json!(delete));
    }
    let mut limits = Map::new();
    for (key, v) in [
        ("timeout", args.timeout),
        ("memory", args.memory),
        ("logs", args.logsize),
        ("concurrency", args.concurrency),
    ] {
        if let Some(v) = v {
            limits.insert(key.into(), json!(v));
        }
    }
    if !limits.is_empty() {
        body.insert("limits".into(), Value::Object(limits));
    }
    let query = [("overwrite", update.to_string())];
    let what = format!("Unable to {verb} action '{}'", q.path);
    let entity = ctx
        .client
        .call(
            Method::PUT,
            &q.url("actions"),
            &query,
            Some(&Value::Object(body)),
            &what,
        )
        .await?;
    ctx.out.done(&format!("{verb}d action {}", q.path), &entity);
    Ok(())
}

async fn get(args: GetArgs, ctx: &Ctx) -> CliResult {
    let q = QName::parse(&args.name, &ctx.client.namespace)?;
    let what = format!("Unable to get action '{}'", q.path);
    let action = ctx.client.get(&q.url("actions"), &[], &what).await?;
    if args.url {
        // The entity's namespace is the real one (`guest` or `guest/pkg`).
        let ns = action
            .get("namespace")
            .and_then(Value::as_str)
            .unwrap_or(&q.namespace);
        let (ns, pkg) = ns.split_once('/').unwrap_or((ns, "default"));
        let url = format!(
            "{}/api/v1/web/{}",
            ctx.client.base(),
            encode_path(&format!("{ns}/{pkg}/{}", q.name()))
        );
        if ctx.out.json {
            ctx.out.json(&json!({"url": url}));
        } else {
            println!("ok: got action {}", q.path);
            println!("{url}");
        }
        return Ok(());
    }
    if args.save || args.save_as.is_some() {
        let exec = action.get("exec").cloned().unwrap_or(Value::Null);
        let code = exec
            .get("code")
            .and_then(Value::as_str)
            .ok_or_else(|| CliError::general(format!("action '{}' has no code to save", q.path)))?;
        let binary = exec.get("binary").and_then(Value::as_bool) == Some(true);
        let kind = exec.get("kind").and_then(Value::as_str).unwrap_or("");
        let ext = if binary {
            "zip"
        } else if kind.starts_with("nodejs") {
            "js"
        } else if kind.starts_with("python") {
            "py"
        } else {
            "txt"
        };
        let file = args
            .save_as
            .clone()
            .unwrap_or_else(|| PathBuf::from(format!("{}.{ext}", q.name())));
        if args.save && file.exists() {
            return Err(CliError::general(format!(
                "the file '{}' already exists; delete it or use --save-as",
                file.display()
            )));
        }
        let bytes = if binary {
            base64::engine::general_purpose::STANDARD
                .decode(code.trim())
                .map_err(|e| CliError::general(format!("decode the action code: {e}")))?
        } else {
            code.as_bytes().to_vec()
        };
        std::fs::write(&file, bytes)
            .map_err(|e| CliError::general(format!("cannot write {}: {e}", file.display())))?;
        ctx.out.done(
            &format!("saved action code to {}", file.display()),
            &json!({"saved": file.display().to_string()}),
        );
        return Ok(());
    }
    if args.summary && !ctx.out.json {
        print!("{}", summary("action", &action));
    } else {
        ctx.out.got(&format!("got action {}", q.path), &action);
    }
    Ok(())
}

async fn list(args: ListArgs, ctx: &Ctx) -> CliResult {
    let url = match args.target.as_deref() {
        None => collection_url(&ctx.client.namespace, "actions"),
        Some(t) => match t.strip_prefix('/') {
            Some(rest) if !rest.contains('/') => collection_url(rest, "actions"),
            _ => {
                let q = QName::parse(t, &ctx.client.namespace)?;
                format!("{}/", q.url("actions"))
            }
        },
    };
    let items = listing::fetch(ctx, &url, "actions", &args.page).await?;
    listing::print(ctx, "actions", &items);
    Ok(())
}

async fn invoke(args: InvokeArgs, ctx: &Ctx) -> CliResult<u8> {
    let q = QName::parse(&args.name, &ctx.client.namespace)?;
    let blocking = args.blocking || args.result || args.logs;
    let only_result = args.result && !args.logs;
    let body = Value::Object(args.params.object()?);
    let query = [
        ("blocking", blocking.to_string()),
        ("result", only_result.to_string()),
    ];
    let wait = format!("waiting for {}", q.full());
    let resp = ctx
        .client
        .send(
            Method::POST,
            &q.url("actions"),
            &query,
            Some(&body),
            blocking.then_some(wait.as_str()),
        )
        .await?;
    // An error that is not about an activation (404, 401, 429, ...).
    let about_activation =
        resp.activation_id.is_some() || (resp.ok() && resp.body.get("activationId").is_some());
    if !resp.ok() && !about_activation {
        return Err(resp.into_error(&format!("Unable to invoke action '{}'", q.path)));
    }
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
    let exit = if resp.ok() {
        0
    } else {
        CliError::http(resp.status, "", Value::Null).exit
    };
    if !blocking {
        ctx.out
            .done(&format!("invoked {} with id {id}", q.full()), &resp.body);
        return Ok(0);
    }
    if resp.status == 202 {
        // Still running after the server's blocking wait.
        ctx.out.done(
            &format!(
                "invoked {}, but the request has not yet finished, with id {id}",
                q.full()
            ),
            &resp.body,
        );
        return Ok(0);
    }
    if only_result {
        ctx.out.json(&resp.body);
        return Ok(exit);
    }
    if args.logs {
        let result = resp
            .body
            .pointer("/response/result")
            .cloned()
            .unwrap_or(Value::Null);
        let logs = activation_logs(ctx, &id, &resp.body).await?;
        if ctx.out.json {
            ctx.out.json(&json!({
                "activationId": id,
                "success": resp.body.pointer("/response/success").cloned().unwrap_or(Value::Null),
                "result": result,
                "logs": logs,
            }));
        } else {
            println!("{}", pretty(&result));
            for line in &logs {
                println!("{line}");
            }
        }
        return Ok(exit);
    }
    ctx.out
        .got(&format!("invoked {} with id {id}", q.full()), &resp.body);
    Ok(exit)
}

/// The logs of a finished activation: from the blocking response when it has them, else from
/// the store, waiting a little for the record to be written (the server writes them after the
/// result is known).
async fn activation_logs(ctx: &Ctx, id: &str, activation: &Value) -> CliResult<Vec<String>> {
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|l| l.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    if let Some(logs) = activation
        .get("logs")
        .filter(|l| l.as_array().is_some_and(|a| !a.is_empty()))
    {
        return Ok(strings(logs));
    }
    let url = format!(
        "{}/{}/logs",
        collection_url(&ctx.client.namespace, "activations"),
        encode_path(id)
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let resp = ctx.client.send(Method::GET, &url, &[], None, None).await?;
        if resp.ok() {
            return Ok(strings(resp.body.get("logs").unwrap_or(&Value::Null)));
        }
        if resp.status != 404 || std::time::Instant::now() > deadline {
            return Err(resp.into_error(&format!("Unable to get the logs of activation '{id}'")));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Feed actions and others look for this annotation value.
pub fn annotation<'a>(entity: &'a Value, key: &str) -> Option<&'a Value> {
    kv_get(entity.get("annotations")?, key)
}
