//! `brisk`: the server (`brisk serve`), administration of namespaces and keys (`brisk admin`),
//! and the wsk-compatible client commands (`brisk action ...`, see [`cli`]). Thin: parses
//! arguments and calls the library crates.

mod admin;
mod cli;
mod serve;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// The server allocates and frees many small objects per request (headers, JSON values,
/// records); mimalloc's thread-local free lists cost a fraction of glibc malloc's there. Its
/// 2.x line (feature `v2`) was faster here than 3.x (see ARCHITECTURE.md).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Exit code for bad command-line or configuration input (`EX_USAGE`).
const EX_USAGE: u8 = 64;

#[derive(Parser)]
#[command(
    name = "brisk",
    version,
    about = "Brisk: an OpenWhisk-compatible functions platform"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    global: cli::GlobalArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Run the standalone server (controller, scheduler and invoker in one process).
    Serve(serve::ServeArgs),
    /// Manage namespaces, keys and limits in a data directory.
    Admin(admin::AdminArgs),
    /// Benchmark a Brisk server against the bare runtimes on this machine.
    Bench(Box<brisk_bench::BenchArgs>),
    #[command(flatten)]
    Client(Box<cli::ClientCommand>),
}

/// Hidden first argument under which the binary acts as the sandbox launcher.
pub const SANDBOX_EXEC: &str = "__sandbox-exec";

fn brisk_sandbox_exec_arg() -> &'static std::ffi::OsStr {
    std::ffi::OsStr::new(SANDBOX_EXEC)
}

/// The small launcher-only binary built beside `brisk` (`src/bin/brisk-launcher.rs`).
pub const SANDBOX_BIN: &str = "brisk-launcher";

/// The command that runs the sandbox launcher: `brisk-launcher` when it sits beside this
/// executable, else this binary under its hidden argument. The launcher and the sandbox's init
/// live as long as their container, and each cold start execs the launcher: the small binary
/// starts in ~0.9 ms instead of ~1.5 ms and its two processes hold less memory (no mimalloc
/// heap, far fewer relocated pages).
pub fn sandbox_launcher() -> std::io::Result<Vec<std::ffi::OsString>> {
    let exe = std::env::current_exe()?;
    let small = exe.with_file_name(SANDBOX_BIN);
    if is_executable(&small) {
        return Ok(vec![small.into_os_string()]);
    }
    Ok(vec![exe.into_os_string(), SANDBOX_EXEC.into()])
}

/// The sandbox crate's shared object (the runtime zygotes' native module): in the `deps`
/// directory beside this executable, where every `cargo build` of `brisk` writes it, else
/// beside the executable (installed together).
pub fn zygote_lib() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let dir = exe.parent()?;
    [dir.join("deps").join(ZYGOTE_LIB), dir.join(ZYGOTE_LIB)]
        .into_iter()
        .find(|p| p.is_file())
}

/// File name of [`zygote_lib`].
pub const ZYGOTE_LIB: &str = "libbrisk_sandbox.so";

fn is_executable(path: &std::path::Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// `~/.brisk`, or `./.brisk` when there is no home directory.
pub fn default_data_dir() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."))
        .join(".brisk")
}

fn main() -> ExitCode {
    // The sandbox launcher re-executes this binary; it must run before anything else (it forks,
    // so no threads may exist yet).
    if std::env::args_os()
        .nth(1)
        .is_some_and(|a| a == brisk_sandbox_exec_arg())
    {
        brisk_sandbox::launcher_main();
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            let _ = e.print();
            return match e.kind() {
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => ExitCode::SUCCESS,
                ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => ExitCode::from(2),
                // The server and admin exit with EX_USAGE on bad configuration, like any other
                // configuration error; client commands exit 2 as wsk does.
                _ if matches!(std::env::args().nth(1).as_deref(), Some("serve" | "admin")) => {
                    ExitCode::from(EX_USAGE)
                }
                _ => ExitCode::from(2),
            };
        }
    };
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    // `brisk serve --server-threads`, by default half the cores; other commands get tokio's
    // default, one per core.
    if let Command::Serve(args) = &cli.command {
        builder.worker_threads(
            args.server_threads
                .map_or_else(serve::default_server_threads, usize::from),
        );
    }
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        Command::Serve(args) => runtime.block_on(serve::run(args)),
        Command::Admin(args) => runtime.block_on(admin::run(args)),
        Command::Bench(mut args) => {
            // The pool scenario starts sandboxes of its own with the same launcher as serve.
            args.sandbox_launcher = sandbox_launcher().ok();
            args.zygote_lib = zygote_lib();
            runtime.block_on(brisk_bench::run(*args))
        }
        Command::Client(command) => return cli::main(*command, cli.global, &runtime),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            if e.downcast_ref::<UsageError>().is_some() {
                ExitCode::from(EX_USAGE)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// A configuration mistake of the user; exits with `EX_USAGE`.
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

#[cfg(test)]
mod tests {
    use super::*;

    /// Without the small launcher beside the executable (a unit test's binary has none), the
    /// launcher is this executable under its hidden argument.
    #[test]
    fn the_launcher_falls_back_to_this_binary() {
        let exe = std::env::current_exe().unwrap();
        assert!(!exe.with_file_name(SANDBOX_BIN).exists());
        let argv = sandbox_launcher().unwrap();
        assert_eq!(argv, [exe.into_os_string(), SANDBOX_EXEC.into()]);
    }
}
