#!/usr/bin/env bash
# The whole test suite: formatting and lints, the default and the minimal
# build, then Rust unit and integration tests (raw WebSocket and
# raw HTTP against the real server), then the real-client tests with
# pusher-js and the official `pusher` library from npm.
# Needs Rust (cargo) and Node.js with npm; installs the npm packages it uses,
# and the Debian packages redis-server and nats-server (the cluster tests
# start private instances on ephemeral ports), chromium (the console
# page's browser test), and postgresql and mariadb-server (the app store
# tests start private instances in temporary directories) when they are
# missing.
set -euo pipefail
cd "$(dirname "$0")/.."

# Each stage says how long it took (the suite's time is a target: README, Tests).
stage_start=$SECONDS
stage() {
  if [ -n "${stage_name:-}" ]; then
    echo "-- $stage_name: $((SECONDS - stage_start)) s"
  fi
  stage_name=$1
  stage_start=$SECONDS
  echo "== $1"
}

have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/usr/bin/$1" ]; }
missing=()
have redis-server || missing+=(redis-server)
have nats-server || missing+=(nats-server)
have chromium || missing+=(chromium)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
have mariadbd || missing+=(mariadb-server)
if [ "${#missing[@]}" -gt 0 ]; then
  echo "== installing ${missing[*]} (Debian packages, for the cluster, console and app store tests)"
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  install_engines() {
    $sudo apt-get update -q >/dev/null &&
      DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
  }
  install_engines || { echo "apt-get failed; retrying in 10 s" >&2; sleep 10; install_engines; }
  # The packages may start system-wide instances; the tests use their own.
  for svc in redis-server nats-server postgresql mariadb; do
    $sudo service "$svc" stop >/dev/null 2>&1 || true
  done
fi

stage "cargo fmt, cargo clippy"
# rustfmt and clippy come with the default rustup profile; add them only
# where an install left them out.
if command -v rustup >/dev/null 2>&1; then
  installed="$(rustup component list --installed 2>/dev/null || true)"
  for component in rustfmt clippy; do
    if ! grep -q "^$component" <<<"$installed"; then
      rustup component add "$component"
    fi
  done
fi
cargo fmt --all --check
cargo clippy --locked --all-targets -- -D warnings
cargo clippy --locked --no-default-features --lib --bins -- -D warnings

stage "cargo build"
# The minimal build (no Redis, NATS or webhooks; README, "Cargo features")
# keeps compiling. First, so that the default build below is the one left in
# target/debug for the tests.
cargo build --locked --no-default-features --lib --bins
# Every target compiles (benchmarks too), though benchmarks do not run here.
cargo build --locked --all-targets
# The hostile-client tests judge response times on an optimized build.
cargo build --locked --profile attack --bin shardcast

stage "cargo test (unit + integration)"
# Three at a time on two CPUs: most tests wait (timeouts, engines, databases)
# rather than compute, and the ones that judge timing run alone below.
cargo test --locked --lib --bins --tests -- --skip hostile:: --test-threads=3
# The hostile-client tests time other clients' answers: alone, one at a time.
cargo test --locked --test integration hostile:: -- --test-threads=1

stage "integration tests with co-hosted shards"
# The same integration tests with each server's two shards on one CPU's one
# executor (`--cpus 0,0`: in-thread queues between them, not rings).
SHARDCAST_TEST_CO_HOSTED=1 cargo test --locked --test integration -- --skip hostile:: --test-threads=3
# (Not the hostile-client tests: they time other clients' answers, which two
# shards on one CPU stretch; they run with the shards apart above.)

stage "real clients (pusher-js, pusher)"
(
  cd tests/clients
  # npm ci reinstalls from scratch (~10 s): only when package-lock.json
  # changed since the last install made here.
  stamp=node_modules/.shardcast-lock.sha256
  want="$(sha256sum package-lock.json | cut -d' ' -f1)"
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    npm ci --no-audit --no-fund --loglevel=error
    echo "$want" >"$stamp"
  fi
  SHARDCAST_BIN="$PWD/../../target/debug/shardcast" npm test
)

# -- deploy/ (issue 17): the deployment files through their parsers and the
# container image with its seccomp profiles; installs what it needs and skips
# the image part with a message where no Docker daemon can run.
stage "deploy files and container image"
scripts/container-test.sh
# --
stage "all tests passed"
echo "-- whole suite: $SECONDS s"
