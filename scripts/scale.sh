#!/usr/bin/env bash
# The scaling curve: fan-out, sparse triggers and idle connections against
# 1, 2, 4 ... N shards.
#
#   scripts/scale.sh [--max-shards N] [--same-cpu] [--quick] [--duration S]
#                    [--server-cpus LIST] [--load-cpus LIST] [--bin-dir DIR]
#
# Two layouts:
# - apart (the default with 4 or more usable CPUs): shard i runs alone on
#   server CPU i; the load generators run on load CPUs the server never
#   uses, one loadgen process per load CPU (loadgen is one thread), each
#   with its own channels, all started together; their rates are added.
#   By default the first half of the usable CPUs serve and the second half
#   load (N = the largest power of two in the first half); --server-cpus
#   and --load-cpus choose them (e.g. to keep hyperthread siblings apart).
#   Efficiency = rate(n shards) / (n x rate(1 shard)): 1.00 is perfect
#   scaling. The load generators must be able to saturate N shards: when
#   the n = N efficiency drops while the load CPUs are busy (loadgen CPU %
#   near 100 in raw.jsonl), the curve measures the load, not the server.
# - same-cpu (automatic with 2 or 3 usable CPUs, or --same-cpu): every
#   shard on one server CPU (so on its one executor), one load generator
#   on another, 1, 2 and 4 shards. Nothing can scale; this measures what sharding itself costs
#   (mesh messages, routing): efficiency = rate(n) / rate(1), ideal 1.00.
# With fewer than 2 usable CPUs it refuses: server and load would share
# a core, and the figures would say nothing.
#
# Cases, per shard count (sizes per load generator; --quick shrinks them):
#   fanout      500 subscribers on 1 channel, 2 publishers, max rate: deliveries/s
#   trigger     HTTP triggers to a channel nobody subscribes to, 4 publishers,
#               max rate: triggers/s (sparse routing: no shard posts to another)
#   connections 19,500 idle connections from one loadgen: server KiB per
#               connection and connections opened per second
#
# Results: bench/results/<date>-<host>-scale/raw.jsonl (one JSON line per
# loadgen run, label shards-<n>) and summary.txt (the table printed at the
# end). Every process started is stopped by its PID, on exit too; each
# loadgen runs under a time limit.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

max_shards=0
same_cpu=0
quick=0
duration=10
server_list=""
load_list=""
bin=""
while [ $# -gt 0 ]; do
  case "$1" in
    --max-shards) max_shards=$2; shift ;;
    --same-cpu) same_cpu=1 ;;
    --quick) quick=1; duration=2 ;;
    --duration) duration=$2; shift ;;
    --server-cpus) server_list=$2; shift ;;
    --load-cpus) load_list=$2; shift ;;
    --bin-dir) bin=$2; shift ;;
    -h|--help) sed -n '2,/^set /{/^#/p}' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
  shift
done

# expand "0-3,8,10-11" to "0 1 2 3 8 10 11".
expand() {
  local part out=""
  for part in ${1//,/ }; do
    if [[ $part == *-* ]]; then
      out="$out $(seq -s ' ' "${part%-*}" "${part#*-}")"
    else
      out="$out $part"
    fi
  done
  echo $out
}

usable=$(expand "$(awk '/^Cpus_allowed_list:/ {print $2}' /proc/self/status)")
ncpu=$(echo "$usable" | wc -w)
if [ "$ncpu" -lt 2 ]; then
  echo "scale.sh: only $ncpu usable CPU ($usable): the server and the load generator" \
    "would share it, and the curve would say nothing. Run it on a machine with at least" \
    "2 CPUs (4 or more for the scaling curve)." >&2
  exit 2
fi
if [ "$same_cpu" = 0 ] && [ -z "$server_list" ] && [ "$ncpu" -lt 4 ]; then
  echo "== $ncpu usable CPUs: too few to keep 2 or more shards apart from the load" \
    "generators (the scaling curve needs 4 or more); running the same-CPU variant" \
    "(every shard on one CPU, the load on another)."
  same_cpu=1
fi

if [ "$same_cpu" = 1 ]; then
  set -- $usable
  server_cpus=${server_list:-$1}
  server_cpus=$(expand "$server_cpus" | awk '{print $1}')
  load_cpus=$(expand "${load_list:-$2}")
  [ "$max_shards" = 0 ] && max_shards=4
else
  if [ -n "$server_list" ]; then
    server_cpus=$(expand "$server_list")
  else
    server_cpus=$(echo "$usable" | tr ' ' '\n' | head -n $((ncpu / 2)) | tr '\n' ' ')
  fi
  if [ -n "$load_list" ]; then
    load_cpus=$(expand "$load_list")
  else
    load_cpus=$(echo "$usable" | tr ' ' '\n' | grep -vxF -f <(echo "$server_cpus" | tr ' ' '\n') | tr '\n' ' ')
  fi
  for c in $load_cpus; do
    if echo " $server_cpus " | grep -q " $c "; then
      echo "scale.sh: CPU $c is both a server and a load CPU; they must be apart." >&2
      exit 2
    fi
  done
  nserver=$(echo "$server_cpus" | wc -w)
  [ "$max_shards" = 0 ] && max_shards=$nserver
  if [ "$max_shards" -gt "$nserver" ]; then
    echo "scale.sh: --max-shards $max_shards but only $nserver server CPUs ($server_cpus)." >&2
    exit 2
  fi
fi
if [ -z "$load_cpus" ]; then
  echo "scale.sh: no CPU left for the load generators." >&2
  exit 2
fi
nload=$(echo "$load_cpus" | wc -w)

counts=""
n=1
while [ "$n" -le "$max_shards" ]; do
  counts="$counts $n"
  n=$((n * 2))
done

# cpus_for N: the server's --cpus list for N shards.
cpus_for() {
  if [ "$same_cpu" = 1 ]; then
    printf "%s," $(for _ in $(seq "$1"); do echo "$server_cpus"; done) | sed 's/,$//'
  else
    echo "$server_cpus" | tr ' ' '\n' | head -n "$1" | paste -sd, -
  fi
}

if [ "$quick" = 1 ]; then
  fanout_args="fanout --subscribers 200 --channels 1 --publishers 2 --rate max --duration $duration --payload 100"
  trigger_args="trigger --publishers 4 --rate max --duration $duration --payload 100"
  conn_args="connections --count 2000 --hold 1 --settle 0.5"
else
  fanout_args="fanout --subscribers 500 --channels 1 --publishers 2 --rate max --duration $duration --payload 100"
  trigger_args="trigger --publishers 4 --rate max --duration $duration --payload 100"
  conn_args="connections --count 19500 --hold 2 --settle 1"
fi

if [ -z "$bin" ]; then
  echo "== building release binaries"
  cargo build --release -p shardcast -p shardcast-bench
  bin=$root/target/release
fi
loadgen=$bin/loadgen
[ -x "$bin/shardcast" ] && [ -x "$loadgen" ] || { echo "no shardcast or loadgen in $bin" >&2; exit 2; }
ulimit -n "$(ulimit -Hn)"

out=$root/bench/results/$(date +%Y-%m-%d-%H%M)-$(hostname -s)-scale
[ "$quick" = 1 ] && out="$out-quick"
mkdir -p "$out/logs"
raw=$out/raw.jsonl
: > "$raw"

pids=""
stop_all() {
  local pid
  # shellcheck disable=SC2086
  [ -z "$pids" ] || kill $pids 2>/dev/null || true
  for pid in $pids; do
    for _ in $(seq 50); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  pids=""
}
trap stop_all EXIT
trap 'stop_all; exit 130' INT TERM

wait_port() {
  for _ in $(seq 300); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    kill -0 "$2" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

# sum_field FILE KEY: the sum of a numeric "KEY" over the JSON lines of FILE.
sum_field() {
  grep -o "\"$2\":[0-9.e+-]*" "$1" | cut -d: -f2 | awk '{s += $1} END {printf "%.0f", s}'
}
# first_field FILE KEY: "KEY" of the first line that has it.
first_field() {
  grep -o "\"$2\":[0-9.e+-]*" "$1" | head -n1 | cut -d: -f2
}

echo "== layout: $([ "$same_cpu" = 1 ] && echo same-cpu || echo apart);" \
  "server CPUs: $server_cpus; load CPUs: $load_cpus; shard counts:$counts"
estimate=$(( $(echo $counts | wc -w) * (2 * (duration + 15) + 40) ))
echo "== at most about $((estimate / 60 + 1)) minutes"

declare -A result
for n in $counts; do
  cpus=$(cpus_for "$n")
  for c in fanout trigger connections; do
    port=$("$loadgen" free-port)
    log=$out/logs/shards-$n-$c.log
    # shellcheck disable=SC2046
    taskset -c "$(echo "$cpus" | tr , '\n' | sort -u | paste -sd, -)" \
      "$bin/shardcast" --host 127.0.0.1 --port "$port" --cpus "$cpus" >"$log" 2>&1 &
    server=$!
    pids=$server
    if ! wait_port "$port" "$server"; then
      echo "!! shardcast with $n shards did not start; see $log" >&2
      stop_all
      continue
    fi
    part=$out/logs/shards-$n-$c.jsonl
    : > "$part"
    echo "== $n shard(s) on CPUs $cpus: $c"
    gens=""
    if [ "$c" = connections ]; then
      set -- $load_cpus
      # shellcheck disable=SC2086
      timeout 300 taskset -c "$1" "$loadgen" $conn_args --url "ws://127.0.0.1:$port" \
        --server-pid "$server" --label "shards-$n" --case "$c" --run 1 >>"$part" \
        2> >(sed 's/^/   /' >&2) &
      gens=$!
    else
      i=0
      for lc in $load_cpus; do
        args=$fanout_args
        [ "$c" = trigger ] && args=$trigger_args
        # shellcheck disable=SC2086
        timeout 300 taskset -c "$lc" "$loadgen" $args --channel-prefix "scale-$i" \
          --url "ws://127.0.0.1:$port" --server-pid "$server" --label "shards-$n" \
          --case "$c" --run "$((i + 1))" >>"$part" 2>"$out/logs/shards-$n-$c-gen$i.err" &
        gens="$gens $!"
        i=$((i + 1))
      done
    fi
    pids="$pids $gens"
    ok=1
    for g in $gens; do
      wait "$g" || ok=0
    done
    [ "$ok" = 1 ] || echo "!! a load generator failed ($n shards, $c); see $out/logs" >&2
    kill -0 "$server" 2>/dev/null || { echo "!! shardcast exited during $c; see $log" >&2; ok=0; }
    pids=$server
    stop_all
    cat "$part" >>"$raw"
    case "$c" in
      fanout) result[$n,$c]=$(sum_field "$part" deliveries_per_s) ;;
      trigger) result[$n,$c]=$(sum_field "$part" requests_per_s) ;;
      connections)
        result[$n,$c]=$(first_field "$part" rss_kib_per_connection)
        result[$n,cps]=$(first_field "$part" connections_per_s) ;;
    esac
    echo "   -> ${result[$n,$c]:-?}"
    sleep 1
  done
done

# eff N CASE: rate(N) / (N x rate(1)) apart, rate(N) / rate(1) on one CPU.
eff() {
  local base=${result[1,$2]:-0} mine=${result[$1,$2]:-0} k=$1
  [ "$same_cpu" = 1 ] && k=1
  awk -v a="$mine" -v b="$base" -v k="$k" 'BEGIN { if (b > 0) printf "%.2f", a / (k * b); else printf "-" }'
}

{
  echo "shardcast scaling, $(date -u +%Y-%m-%dT%H:%MZ) on $(hostname -s): $ncpu usable CPUs" \
    "($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), commit" \
    "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
  if [ "$same_cpu" = 1 ]; then
    echo "layout same-cpu: every shard on CPU $server_cpus, one load generator per CPU of $load_cpus;"
    echo "efficiency = rate(n) / rate(1) (nothing can scale on one CPU: the cost of sharding)"
  else
    echo "layout apart: shard i on the i-th of CPUs $server_cpus; $nload load generators on CPUs $load_cpus;"
    echo "efficiency = rate(n) / (n x rate(1)) (1.00: perfect scaling)"
  fi
  [ "$quick" = 1 ] && echo "quick sizes: a smoke test, not a measurement"
  echo
  printf "%-7s %14s %6s %14s %6s %14s %12s\n" shards deliveries/s eff triggers/s eff "KiB/conn" "conns/s"
  for n in $counts; do
    printf "%-7s %14s %6s %14s %6s %14s %12s\n" "$n" "${result[$n,fanout]:-?}" "$(eff "$n" fanout)" \
      "${result[$n,trigger]:-?}" "$(eff "$n" trigger)" "${result[$n,connections]:-?}" "${result[$n,cps]:-?}"
  done
} | tee "$out/summary.txt"
echo
echo "results: $out"
