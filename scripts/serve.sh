#!/usr/bin/env bash
# Sets up what Brisk needs, builds it and runs `brisk serve` (arguments are passed on).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
cargo build --release -p brisk
exec ./target/release/brisk serve "$@"
