//! Runs the harness without the `brisk` binary's subcommand:
//! `cargo run --release -p brisk-bench --example bench -- --brisk-bin target/release/brisk --quick`.

use clap::Parser;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    bench: brisk_bench::BenchArgs,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    brisk_bench::run(Cli::parse().bench).await
}
