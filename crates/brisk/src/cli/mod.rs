//! The wsk-compatible client commands: `property`, `action`, `package`, `trigger`, `rule`,
//! `activation`, `namespace` and `list`. One module per resource; [`client`] speaks HTTP,
//! [`output`] prints like `wsk` (or JSON with `--json`).
//!
//! Exit codes follow `wsk`: 0 success, 1 general failure, 2 bad usage, 3 the API host cannot be
//! reached, and for an HTTP error status `status - 256` (404 → 148, 401 → 145, 409 → 153,
//! 502 → 246).

mod action;
mod activation;
mod client;
mod config;
mod feed;
mod listing;
mod names;
mod namespace;
mod output;
mod package;
mod params;
mod progress;
mod property;
mod rule;
mod trigger;

use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde_json::Value;

pub use client::Client;
pub use output::Out;

/// Flags every client command accepts.
#[derive(Args, Debug, Clone, Default)]
pub struct GlobalArgs {
    /// Whisk API host (`host:port`; bare hosts mean https, except localhost/127.0.0.1 which mean
    /// http; or give `http://` / `https://` explicitly).
    #[arg(long, global = true, help_heading = "Global options", num_args = 0..=1, default_missing_value = "", value_name = "HOST")]
    pub apihost: Option<String>,
    /// Authorization key (`uuid:key`).
    #[arg(long, global = true, help_heading = "Global options", num_args = 0..=1, default_missing_value = "", value_name = "KEY")]
    pub auth: Option<String>,
    /// Bypass certificate checking.
    #[arg(short = 'i', long, global = true, help_heading = "Global options")]
    pub insecure: bool,
    /// Print the HTTP requests and responses (on stderr).
    #[arg(short = 'v', long, global = true, help_heading = "Global options")]
    pub verbose: bool,
    /// Print debugging output (on stderr), including full bodies.
    #[arg(short = 'd', long, global = true, help_heading = "Global options")]
    pub debug: bool,
    /// Machine-readable JSON on stdout instead of wsk's text.
    #[arg(long, global = true, help_heading = "Global options")]
    pub json: bool,
}

/// The client verbs, flattened into the top-level `brisk` command.
#[derive(Subcommand, Debug)]
pub enum ClientCommand {
    /// Work with whisk properties (API host, auth key, namespace).
    #[command(subcommand)]
    Property(property::PropertyCommand),
    /// Work with actions.
    #[command(subcommand)]
    Action(action::ActionCommand),
    /// Work with packages.
    #[command(subcommand)]
    Package(package::PackageCommand),
    /// Work with triggers.
    #[command(subcommand)]
    Trigger(trigger::TriggerCommand),
    /// Work with rules.
    #[command(subcommand)]
    Rule(rule::RuleCommand),
    /// Work with activations.
    #[command(subcommand)]
    Activation(activation::ActivationCommand),
    /// Work with namespaces.
    #[command(subcommand)]
    Namespace(namespace::NamespaceCommand),
    /// List all entities in the current namespace.
    List(namespace::ListArgs),
}

/// A failure of a client command: the message for stderr and the exit code.
#[derive(Debug)]
pub struct CliError {
    pub message: String,
    pub exit: u8,
    /// The server's error body, printed with `--json`.
    pub body: Option<Value>,
}

impl CliError {
    pub fn general(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            exit: 1,
            body: None,
        }
    }

    /// Missing or broken configuration.
    pub fn config(message: impl Into<String>) -> Self {
        Self::general(message)
    }

    pub fn usage(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            exit: 2,
            body: None,
        }
    }

    pub fn network(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            exit: 3,
            body: None,
        }
    }

    /// An HTTP error status `s` exits with `s - 256` like wsk (so 404 → 148).
    pub fn http(status: u16, message: impl Into<String>, body: Value) -> Self {
        let exit = if (256..512).contains(&status) {
            (status - 256) as u8
        } else {
            1
        };
        Self {
            message: message.into(),
            exit,
            body: Some(body),
        }
    }
}

pub type CliResult<T = ()> = Result<T, CliError>;

/// Shared by the resource modules: the HTTP client and the output mode.
pub struct Ctx {
    pub client: Client,
    pub out: Out,
}

/// Runs one client command on `runtime` and maps the outcome to an exit code.
pub fn main(
    command: ClientCommand,
    global: GlobalArgs,
    runtime: &tokio::runtime::Runtime,
) -> ExitCode {
    let out = Out { json: global.json };
    match runtime.block_on(run(command, &global, out)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            if global.json {
                let body = serde_json::json!({
                    "error": e.message,
                    "exitCode": e.exit,
                    "response": e.body,
                });
                eprintln!("{}", output::pretty(&body));
            } else {
                eprintln!("error: {}", e.message);
            }
            ExitCode::from(e.exit)
        }
    }
}

/// `Ok(code)` lets a command succeed in printing but still exit non-zero (a blocking invoke
/// whose action failed exits like wsk with the HTTP status - 256).
async fn run(command: ClientCommand, global: &GlobalArgs, out: Out) -> CliResult<u8> {
    if let ClientCommand::Property(cmd) = command {
        property::run(cmd, global, &out).await?;
        return Ok(0);
    }
    let cfg = config::Config::resolve(global)?;
    let client = Client::new(&cfg, global)?;
    let ctx = Ctx { client, out };
    match command {
        ClientCommand::Property(_) => Ok(0),
        ClientCommand::Action(cmd) => action::run(cmd, &ctx).await,
        ClientCommand::Package(cmd) => package::run(cmd, &ctx).await.map(|()| 0),
        ClientCommand::Trigger(cmd) => trigger::run(cmd, &ctx).await.map(|()| 0),
        ClientCommand::Rule(cmd) => rule::run(cmd, &ctx).await.map(|()| 0),
        ClientCommand::Activation(cmd) => activation::run(cmd, &ctx).await.map(|()| 0),
        ClientCommand::Namespace(cmd) => namespace::run(cmd, &ctx).await.map(|()| 0),
        ClientCommand::List(args) => namespace::list_all(args, &ctx).await.map(|()| 0),
    }
}
