#!/usr/bin/env bash
# Benchmarks shardcast against the raw floor (and, with --peers, soketi and sockudo).
#
#   scripts/bench.sh [--peers] [--runs N] [--quick] [--targets "shardcast floor ..."] [--cases "..."]
#
# Builds the release binaries, then for each run, each case and each target:
# starts the server pinned to CPU $BENCH_SERVER_CPU (default 0) on a free
# loopback port, runs the load generator pinned to CPU $BENCH_GEN_CPU
# (default 1), stops the server by its PID. Results go to
# bench/results/<date>-<host>/raw.jsonl (one JSON line per scenario run) and
# summary.md (medians of the runs, per-run ratios to the floor and peers).
#
# Cases (full size, defined in bench/cases.sh; --quick shrinks them for a smoke test):
#   fanout-1ch    1000 subscribers on 1 channel, 4 publishers, max rate, 100-byte events, 10 s
#   fanout-100ch  10,000 subscribers over 100 channels, 4 publishers, max rate, 10 s
#   latency       1000 subscribers on 1 channel, 20 events/s, 10 s: end-to-end p99
#   connections   19,500 idle connections: server resident KiB per connection
#   trigger       HTTP triggers/s with nobody subscribed, 4 keep-alive publishers, 10 s
#   churn         500 steady subscribers over 10 channels at 100 events/s while 100
#                 connections loop connect/subscribe/unsubscribe/disconnect, 10 s
#
# Peers are installed on first use into bench/peers/ (git-ignored) by
# scripts/peers/install-*.sh: soketi from npm (~30 s), sockudo from crates.io
# (15-25 min).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

runs=3
quick=0
peers=0
targets=""
# shellcheck source=../bench/cases.sh
. bench/cases.sh
cases=$BENCH_CASES
while [ $# -gt 0 ]; do
  case "$1" in
    --peers) peers=1 ;;
    --quick) quick=1 ;;
    --runs) runs=$2; shift ;;
    --targets) targets=$2; shift ;;
    --cases) cases=$2; shift ;;
    -h|--help) sed -n '2,26p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
  shift
done
if [ -z "$targets" ]; then
  targets="shardcast floor"
  [ "$peers" = 1 ] && targets="$targets soketi sockudo"
fi
server_cpu=${BENCH_SERVER_CPU:-0}
gen_cpu=${BENCH_GEN_CPU:-1}
# Every server and the load generator inherit the full open-files limit
# (19,500 connections need it; not every server raises it itself).
ulimit -n "$(ulimit -Hn)"

echo "== building release binaries"
cargo build --release -p shardcast -p shardcast-bench
bin=$root/target/release
loadgen=$bin/loadgen

peer_dir=$root/bench/peers
for t in $targets; do
  case "$t" in
    soketi)
      [ -f "$peer_dir/soketi/node_modules/@soketi/soketi/bin/server.js" ] || {
        echo "== installing soketi into $peer_dir/soketi"
        scripts/peers/install-soketi.sh "$peer_dir/soketi"
      } ;;
    sockudo)
      [ -x "$peer_dir/sockudo/bin/sockudo" ] || {
        echo "== installing sockudo into $peer_dir/sockudo (15-25 minutes)"
        scripts/peers/install-sockudo.sh "$peer_dir/sockudo"
      } ;;
    shardcast|floor) ;;
    *) echo "unknown target $t" >&2; exit 2 ;;
  esac
done

out=$root/bench/results/$(date +%Y-%m-%d-%H%M)-$(hostname -s)
[ "$quick" = 1 ] && out="$out-quick"
mkdir -p "$out"
raw=$out/raw.jsonl
: > "$raw"
logs=$out/logs
mkdir -p "$logs"

server_pid=""
stop_server() {
  if [ -n "$server_pid" ]; then
    kill "$server_pid" 2>/dev/null || true
    for _ in $(seq 50); do
      kill -0 "$server_pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -9 "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=""
  fi
}
trap stop_server EXIT INT TERM

# start_server TARGET PORT LOG: starts it pinned, sets server_pid, waits for the port.
start_server() {
  local target=$1 port=$2 log=$3
  case "$target" in
    shardcast) taskset -c "$server_cpu" "$bin/shardcast" --host 127.0.0.1 --port "$port" --cpus "$server_cpu" >"$log" 2>&1 & ;;
    floor) taskset -c "$server_cpu" "$bin/floor" --host 127.0.0.1 --port "$port" >"$log" 2>&1 & ;;
    soketi) taskset -c "$server_cpu" scripts/peers/start-soketi.sh "$peer_dir/soketi" "$port" >"$log" 2>&1 & ;;
    sockudo) taskset -c "$server_cpu" scripts/peers/start-sockudo.sh "$peer_dir/sockudo" "$port" >"$log" 2>&1 & ;;
  esac
  server_pid=$!
  for _ in $(seq 300); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      sleep 0.5 # let it finish starting (soketi logs after binding)
      return 0
    fi
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.1
  done
  echo "!! $target did not start; see $log" >&2
  stop_server
  return 1
}

for run in $(seq "$runs"); do
  for c in $cases; do
    for t in $targets; do
      started=0
      for _attempt in 1 2 3; do # a port can be taken between the probe and the server's bind
        port=$("$loadgen" free-port)
        echo "== run $run/$runs  $c  $t  (port $port)"
        if start_server "$t" "$port" "$logs/$t-$c-$run.log"; then
          started=1
          break
        fi
      done
      if [ "$started" = 0 ]; then
        echo "{\"case\":\"$c\",\"target\":\"$t\",\"run\":$run,\"error\":\"server did not start\"}" >> "$raw"
        continue
      fi
      # shellcheck disable=SC2046
      ok=1
      if ! timeout 600 taskset -c "$gen_cpu" "$loadgen" $(case_args "$c" "$quick") \
          --url "ws://127.0.0.1:$port" --server-pid "$server_pid" \
          --label "$t" --case "$c" --run "$run" >> "$raw" 2> >(sed 's/^/   /' >&2); then
        echo "!! loadgen failed for $c on $t (run $run)" >&2
        ok=0
      fi
      if ! kill -0 "$server_pid" 2>/dev/null; then
        echo "!! $t exited during $c; see $logs/$t-$c-$run.log" >&2
        ok=0
      fi
      stop_server
      # Keep a server's log only when something went wrong (sockudo logs every connection).
      [ "$ok" = 1 ] && rm -f "$logs/$t-$c-$run.log"
      sleep 1 # let sockets in TIME_WAIT and the CPU settle
    done
  done
done

cases_md=""
for c in $cases; do
  cases_md="$cases_md- $c: loadgen $(case_args "$c" "$quick")
"
done
sizes=""
[ "$quick" = 1 ] && sizes=" Quick sizes (a smoke test of the tooling; not comparable)."
cpu_model=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')
note="$(date -u +%Y-%m-%dT%H:%MZ) on $(hostname -s): $(nproc) CPUs ($cpu_model), Linux $(uname -r).
Server pinned to CPU $server_cpu, load generator to CPU $gen_cpu; shardcast at commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown).$sizes

Cases:

$cases_md"
"$loadgen" summarize "$raw" --note "$note" > "$out/summary.md"
echo
cat "$out/summary.md"
echo
echo "results: $out"
