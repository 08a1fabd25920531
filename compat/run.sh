#!/usr/bin/env bash
# Runs the npm `openwhisk` client compatibility suite against a fresh `brisk serve`.
#   BRISK_BIN=target/debug/brisk bash compat/run.sh
# Exits non-zero if anything fails.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bin="${BRISK_BIN:-$here/../target/debug/brisk}"
if [[ ! -x "$bin" ]]; then
  echo "compat: BRISK_BIN ($bin) is not an executable; build with 'cargo build -p brisk'" >&2
  exit 2
fi

cd "$here"
npm ci --no-audit --no-fund --loglevel=error

data="$(mktemp -d)"
log="$data/serve.log"
: >"$log"
pid=""
cleanup() {
  if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  rm -rf "$data"
}
trap cleanup EXIT

# Port 0: the server picks a free port and prints it.
env -u BRISK_PORT -u BRISK_HOST -u BRISK_DATA_DIR \
  "$bin" serve --port 0 --prewarm false --data-dir "$data/brisk" >"$log" 2>&1 &
pid=$!

apihost=""
for _ in $(seq 1 300); do
  apihost="$(sed -n 's/.*OpenWhisk API on \(http:\/\/[^ ]*\).*/\1/p' "$log" | head -n1 || true)"
  [[ -n "$apihost" ]] && break
  if ! kill -0 "$pid" 2>/dev/null; then
    echo "compat: brisk serve exited early:" >&2
    cat "$log" >&2
    exit 1
  fi
  sleep 0.1
done
if [[ -z "$apihost" ]]; then
  echo "compat: brisk serve did not report its address:" >&2
  cat "$log" >&2
  exit 1
fi
echo "compat: brisk serve on $apihost"
# Compositions need `require('openwhisk')` in actions; the server installs it in the background.
for _ in $(seq 1 600); do
  [[ -f "$data/brisk/runtimes/node/node_modules/openwhisk/package.json" ]] && break
  sleep 0.1
done

status=0
BRISK_APIHOST="$apihost" node --test test/ || status=$?

kill -TERM "$pid"
if ! wait "$pid"; then
  echo "compat: brisk serve did not exit cleanly" >&2
  status=1
fi
pid=""
exit "$status"
