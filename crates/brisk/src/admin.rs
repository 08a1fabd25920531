//! `brisk admin`: namespaces, keys and limits, operating directly on a data directory.
//! A running server picks changes up within its identity-cache lifetime (30 s).

use std::path::PathBuf;

use anyhow::{Context, bail};
use brisk_model::{AuthKey, EntityName, UserLimits};
use brisk_store::{AuthStore, SqliteStore};
use clap::{Args, Subcommand};

use crate::UsageError;

#[derive(Args, Debug)]
pub struct AdminArgs {
    /// Data directory of the server (default ~/.brisk).
    #[arg(long, env = "BRISK_DATA_DIR", global = true)]
    data_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: AdminCommand,
}

#[derive(Subcommand, Debug)]
enum AdminCommand {
    /// Create a namespace and print its key (`uuid:key`).
    Create {
        namespace: String,
        /// Subject owning the namespace (default: the namespace name).
        #[arg(long)]
        subject: Option<String>,
        /// Use this `uuid:key` instead of generating one.
        #[arg(long)]
        key: Option<String>,
    },
    /// List namespaces and their subjects (keys are stored hashed and cannot be shown).
    List,
    /// Delete a namespace's credential.
    Delete { namespace: String },
    /// Block a subject: its keys stop authenticating.
    Block { subject: String },
    /// Unblock a subject.
    Unblock { subject: String },
    /// Set per-namespace limits (omitted values keep the deployment's defaults; 0 = unlimited).
    Limits {
        namespace: String,
        #[arg(long)]
        invocations_per_minute: Option<u32>,
        #[arg(long)]
        concurrent_invocations: Option<u32>,
        #[arg(long)]
        fires_per_minute: Option<u32>,
        /// Comma-separated kinds this namespace may use.
        #[arg(long, value_delimiter = ',')]
        allowed_kinds: Option<Vec<String>>,
        /// Whether to store this namespace's activations.
        #[arg(long)]
        store_activations: Option<bool>,
        /// Outbound network access of this namespace's actions (`none` or `egress`).
        #[arg(long)]
        network: Option<brisk_invoker::NetworkPolicy>,
    },
}

pub async fn run(args: AdminArgs) -> anyhow::Result<()> {
    let data_dir = args.data_dir.unwrap_or_else(crate::default_data_dir);
    let store = SqliteStore::open(&data_dir).context("open the store")?;
    match args.command {
        AdminCommand::Create {
            namespace,
            subject,
            key,
        } => {
            let ns = EntityName::namespace(&namespace).map_err(|e| UsageError(e.to_string()))?;
            let key = match key {
                Some(k) => AuthKey::parse(&k)
                    .ok_or_else(|| UsageError("--key must look like uuid:key".into()))?,
                None => AuthKey::generate(),
            };
            let subject = subject.unwrap_or_else(|| namespace.clone());
            store.create_namespace(&subject, &ns, &key).await?;
            println!("{key}");
        }
        AdminCommand::List => {
            for r in store.list_namespaces().await? {
                let blocked = if r.blocked { " (blocked)" } else { "" };
                println!("{}\t{}\t{}{blocked}", r.namespace, r.subject, r.uuid);
            }
        }
        AdminCommand::Delete { namespace } => {
            if !store.delete_namespace(&namespace).await? {
                bail!("namespace {namespace} does not exist");
            }
            println!("ok: deleted namespace {namespace}");
        }
        AdminCommand::Block { subject } => block(&store, &subject, true).await?,
        AdminCommand::Unblock { subject } => block(&store, &subject, false).await?,
        AdminCommand::Limits {
            namespace,
            invocations_per_minute,
            concurrent_invocations,
            fires_per_minute,
            allowed_kinds,
            store_activations,
            network,
        } => {
            let rec = store
                .namespace_by_name(&namespace)
                .await?
                .with_context(|| format!("namespace {namespace} does not exist"))?;
            let mut limits: UserLimits = rec.limits;
            limits.invocations_per_minute =
                invocations_per_minute.or(limits.invocations_per_minute);
            limits.concurrent_invocations =
                concurrent_invocations.or(limits.concurrent_invocations);
            limits.fires_per_minute = fires_per_minute.or(limits.fires_per_minute);
            limits.allowed_kinds = allowed_kinds.or(limits.allowed_kinds);
            limits.store_activations = store_activations.or(limits.store_activations);
            limits.network = network.map(|n| n.as_str().to_owned()).or(limits.network);
            store.set_limits(&namespace, &limits).await?;
            println!("{}", serde_json::to_string(&limits)?);
        }
    }
    Ok(())
}

async fn block(store: &SqliteStore, subject: &str, blocked: bool) -> anyhow::Result<()> {
    let n = store.set_blocked(subject, blocked).await?;
    if n == 0 {
        bail!("subject {subject} does not exist");
    }
    let verb = if blocked { "blocked" } else { "unblocked" };
    println!("ok: {verb} subject {subject} ({n} namespaces)");
    Ok(())
}
