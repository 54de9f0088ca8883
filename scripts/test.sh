#!/usr/bin/env bash
# The whole test suite: Rust unit and integration tests (raw WebSocket and
# raw HTTP against the real server), then the real-client tests with
# pusher-js and the official `pusher` library from npm.
# Needs only Rust (cargo) and Node.js with npm; installs the npm packages it uses.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo build"
cargo build --locked

echo "== cargo test (unit + integration)"
cargo test --locked --all-targets

echo "== real clients (pusher-js, pusher)"
(
  cd tests/clients
  npm ci --no-audit --no-fund --loglevel=error
  SHARDCAST_BIN="$PWD/../../target/debug/shardcast" npm test
)
echo "== all tests passed"
