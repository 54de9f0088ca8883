#!/usr/bin/env bash
# Soak test: starts the release server (2 shards, port 0) and runs
# tests/soak/soak.js against it for DURATION: connection churn, presence
# joins and leaves, client events and HTTP triggers, sampling the server's
# RSS and open fds from /proc every few seconds. Fails (exit 1) on any lost
# trigger or client event, or when RSS or fds keep growing.
#
#   scripts/soak.sh DURATION     # e.g. 60s, 10m, 1h (a bare number is seconds)
#
# Needs Rust and Node.js; installs the npm packages of tests/clients if absent.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION="${1:-60s}"
case "$DURATION" in
  *h) SECS=$(( ${DURATION%h} * 3600 )) ;;
  *m) SECS=$(( ${DURATION%m} * 60 )) ;;
  *s) SECS=${DURATION%s} ;;
  *) SECS=$DURATION ;;
esac

cargo build --release --locked --bin shardcast
if [ ! -d tests/clients/node_modules/ws ]; then
  (cd tests/clients && npm ci --no-audit --no-fund --loglevel=error)
fi

work=$(mktemp -d)
cat >"$work/soak.toml" <<TOML
[[apps]]
id = "app-id"
key = "app-key"
secret = "app-secret"
enable_client_messages = true
TOML
cpus=$(awk '/Cpus_allowed_list/ {print $2}' /proc/self/status | tr ',' '\n' | head -1)
case "$cpus" in
  *-*) a=${cpus%-*}; b=${cpus#*-}; if [ "$a" != "$b" ]; then cpus="$a,$((a + 1))"; else cpus="$a,$a"; fi ;;
  *) cpus="$cpus,$cpus" ;;
esac

RUST_LOG=warn,shardcast::runtime::boot=info,shardcast::server=info target/release/shardcast \
  --host 127.0.0.1 --port 0 --cpus "$cpus" --config "$work/soak.toml" 2>"$work/server.log" &
pid=$!
cleanup() { kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

port=""
for _ in $(seq 1 100); do
  port=$(grep -o 'listening on 127.0.0.1:[0-9]*' "$work/server.log" | grep -o '[0-9]*$' || true)
  [ -n "$port" ] && break
  kill -0 "$pid" 2>/dev/null || { cat "$work/server.log"; echo "server exited" >&2; exit 1; }
  sleep 0.1
done
[ -n "$port" ] || { cat "$work/server.log"; echo "server did not start" >&2; exit 1; }
echo "soak: server pid $pid on port $port, ${SECS}s"

status=0
node tests/soak/soak.js --port "$port" --pid "$pid" --seconds "$SECS" --sample 5 \
  ${SOAK_CSV:+--csv "$SOAK_CSV"} || status=$?
if ! kill -0 "$pid" 2>/dev/null; then
  echo "soak: the server died; log:" >&2
  cat "$work/server.log" >&2
  status=1
fi
if grep -E 'panicked|ERROR' "$work/server.log" >/dev/null; then
  echo "soak: errors in the server log:" >&2
  grep -E 'panicked|ERROR' "$work/server.log" | head -20 >&2
  status=1
fi
exit $status
