#!/usr/bin/env bash
# Installs what building and running Brisk needs, if missing: a C compiler (for the bundled
# SQLite), Node.js and Python 3 (the action runtimes). Safe to run repeatedly.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v cc >/dev/null 2>&1 || need+=(build-essential)
[ -x /usr/bin/python3 ] || command -v python3 >/dev/null 2>&1 || need+=(python3)
command -v node >/dev/null 2>&1 || need+=(nodejs)
command -v npm >/dev/null 2>&1 || need+=(npm)
# The sandbox's egress network: NAT and filter rules (nft); its tests inspect namespaces with ip.
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v nft >/dev/null 2>&1 || need+=(nftables)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
  echo "installing: ${need[*]}" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
# Modules Node.js actions may require without bundling them (used by the invoker's tests; `brisk
# serve` installs its own copy in its data directory).
if [ ! -f crates/invoker/runtimes/node/node_modules/openwhisk/package.json ]; then
  (cd crates/invoker/runtimes/node && npm ci --no-audit --no-fund --loglevel=error)
fi
if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo is missing: install Rust from https://rustup.rs first" >&2
  exit 1
fi
