#!/usr/bin/env bash
# Records the release server under one benchmark case and draws a flamegraph.
#
#   scripts/flamegraph.sh CASE [--target shardcast|floor] [--quick] [--freq HZ]
#
# CASE is one of bench/cases.sh (fanout-1ch fanout-100ch latency connections
# trigger churn). The server runs pinned to CPU $BENCH_SERVER_CPU (default 0),
# the load generator to $BENCH_GEN_CPU (default 1). perf samples the server
# (`perf record -e cpu-clock`, DWARF call graphs: hardware counters are not
# available here and the release build has no frame pointers) during the
# steady phase of the case (after subscribers are set up), then inferno turns
# it into flamegraphs/<date>-<case>.svg (with -<target> when not shardcast),
# and a line with the case's numbers is appended to flamegraphs/README.md.
# inferno is installed from crates.io into bench/tools/ on first use.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

[ $# -ge 1 ] || { sed -n '2,14p' "$0"; exit 2; }
case_name=$1; shift
target=shardcast
quick=0
freq=499
while [ $# -gt 0 ]; do
  case "$1" in
    --target) target=$2; shift ;;
    --quick) quick=1 ;;
    --freq) freq=$2; shift ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
  shift
done
# shellcheck source=../bench/cases.sh
. bench/cases.sh
args=$(case_args "$case_name" "$quick") || { echo "unknown case $case_name (one of: $BENCH_CASES)" >&2; exit 2; }
server_cpu=${BENCH_SERVER_CPU:-0}
gen_cpu=${BENCH_GEN_CPU:-1}

command -v perf >/dev/null || { echo "perf is needed (apt-get install linux-perf)" >&2; exit 1; }
tools=$root/bench/tools
if [ ! -x "$tools/bin/inferno-flamegraph" ]; then
  echo "== installing inferno into $tools"
  cargo install inferno --locked --root "$tools"
fi

echo "== building release binaries"
cargo build --release -p shardcast -p shardcast-bench
bin=$root/target/release

work=$(mktemp -d)
server_pid="" gen_pid=""
cleanup() {
  [ -n "$gen_pid" ] && kill "$gen_pid" 2>/dev/null || true
  if [ -n "$server_pid" ]; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

port=$("$bin/loadgen" free-port)
case "$target" in
  shardcast) taskset -c "$server_cpu" "$bin/shardcast" --host 127.0.0.1 --port "$port" --cpus "$server_cpu" >"$work/server.log" 2>&1 & ;;
  floor) taskset -c "$server_cpu" "$bin/floor" --host 127.0.0.1 --port "$port" >"$work/server.log" 2>&1 & ;;
  *) echo "--target is shardcast or floor" >&2; exit 2 ;;
esac
server_pid=$!
for _ in $(seq 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  sleep 0.1
done

# shellcheck disable=SC2086
taskset -c "$gen_cpu" "$bin/loadgen" $args --url "ws://127.0.0.1:$port" --server-pid "$server_pid" \
  --label "$target" --case "$case_name" >"$work/result.json" 2>"$work/loadgen.err" &
gen_pid=$!
# Wait for the set-up phase (opening subscribers) to finish, then sample the steady phase.
case "$args" in
  fanout*|churn*)
    for _ in $(seq 1200); do
      grep -q "subscribed" "$work/loadgen.err" 2>/dev/null && break
      kill -0 "$gen_pid" 2>/dev/null || break
      sleep 0.1
    done ;;
esac
duration=$(echo "$args" | sed -n 's/.*--duration \([0-9.]*\).*/\1/p')
# Sample a little less than the publishing phase; connections: the whole opening.
record_s=$(awk -v d="${duration:-10}" 'BEGIN { s = d - 1; if (s < 1) s = 1; print s }')
echo "== recording $target for ${record_s}s under $case_name"
perf record -e cpu-clock -F "$freq" --call-graph dwarf,16384 -p "$server_pid" \
  -o "$work/perf.data" -- sleep "$record_s" 2>"$work/perf.err" || { cat "$work/perf.err" >&2; exit 1; }
wait "$gen_pid" || true
gen_pid=""
cat "$work/loadgen.err" >&2

mkdir -p flamegraphs
stamp=$(date +%Y-%m-%d)
name="$stamp-$case_name"
[ "$target" != shardcast ] && name="$name-$target"
[ "$quick" = 1 ] && name="$name-quick"
svg="flamegraphs/$name.svg"
perf script -i "$work/perf.data" 2>/dev/null | "$tools/bin/inferno-collapse-perf" > "$work/folded"
# FLAMEGRAPH_FOLDED=path keeps the folded stacks (one line per stack) for a closer look.
[ -n "${FLAMEGRAPH_FOLDED:-}" ] && cp "$work/folded" "$FLAMEGRAPH_FOLDED"
"$tools/bin/inferno-flamegraph" --title "$target: $case_name ($stamp)" \
  --subtitle "loadgen $args" < "$work/folded" > "$svg"
echo "== wrote $svg"
echo "== hottest frames (self time, % of samples)"
awk '{ n = $NF; $NF = ""; k = split($0, f, ";"); leaf = f[k]; sub(/ +$/, "", leaf); self[leaf] += n; total += n }
     END { for (l in self) printf "%6.2f%%  %s\n", 100 * self[l] / total, substr(l, 1, 110) }' "$work/folded" \
  | sort -rn | head -15

# One line for the README with the numbers of this recording.
summary=$(sed -n 's/^  \(deliveries:.*\|[0-9]* requests ok.*\|[0-9]* open,.*\|server RSS.*\|[0-9]* connect\/.*\)$/\1/p' "$work/loadgen.err" | head -2 | tr '\n' ';' | sed 's/;$//')
[ -f flamegraphs/README.md ] || printf '# Flamegraphs\n\nRecorded with `scripts/flamegraph.sh CASE`. One line each: what it shows.\n\n' > flamegraphs/README.md
echo "- \`$name.svg\`: $target under \`loadgen $args\`: $summary" >> flamegraphs/README.md
echo "== appended a line to flamegraphs/README.md (add what it explains)"
