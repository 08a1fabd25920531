#!/usr/bin/env bash
# Runs every test: the Rust workspace (unit and integration tests with real processes, real
# SQLite and real HTTP), then the compatibility suite on the npm `openwhisk` client.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
if command -v cargo-nextest >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast
else
  cargo test --workspace --no-fail-fast
fi
cargo build -p brisk
if [ -f compat/run.sh ]; then
  BRISK_BIN="$PWD/target/debug/brisk" bash compat/run.sh
fi
