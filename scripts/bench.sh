#!/usr/bin/env bash
# Benchmarks shardcast against the raw floor (and, with --peers, soketi and
# sockudo; with --cluster, a two-node shardcast cluster; with --sharding,
# two shards on one CPU).
#
#   scripts/bench.sh [--peers] [--cluster] [--sharding] [--runs N] [--quick] [--targets "shardcast floor ..."] [--cases "..."]
#
# Targets: shardcast, floor (default); soketi, sockudo (--peers); cluster2
# (--cluster); shardcast2 (--sharding); floor-glommio and floor-glommio2 (by
# name in --targets, trigger case only: the trigger floor on glommio's
# sockets with one executor, and with two executors sharing the server CPU
# (as shardcast2's shards did before they shared one executor); they split shardcast's distance from the floor into
# glommio's I/O model and shardcast's own work).
# Builds the release binaries, then for each run, each case and each target:
# starts the server pinned to CPU $BENCH_SERVER_CPU (default 0) on a free
# loopback port, runs the load generator pinned to CPU $BENCH_GEN_CPU
# (default 1), stops the server by its PID. Results go to
# bench/results/<date>-<host>/raw.jsonl (one JSON line per scenario run) and
# summary.md (medians of the runs, per-run ratios to the floor and peers,
# cluster2 / shardcast).
#
# cluster2: a private redis-server and two shardcast nodes joined through it
# ([cluster] adapter = "redis"), all three pinned to the server CPU; the
# subscribers alternate between the nodes, the publishers trigger on the
# first; measured once each node logged that it heard the other. Server CPU
# and memory are the sums over the three processes. It runs only the fan-out
# cases (fanout-1ch, fanout-100ch, latency): connections, trigger and churn
# involve no delivery across nodes and are skipped.
#
# routing (cluster2 only, added by --cluster): sparse routing between nodes.
# Subscribers only on node A, triggers posted on A; node B (metrics on)
# has no subscriber of the channel. Reports, per run, B's
# cluster_messages_received_total growth per trigger (goal: < 0.01; before
# sparse routing it was 1) in routing.jsonl and in summary.md.
#
# shardcast2 (the sharding overhead): one shardcast with two shards on the
# server CPU (`--cpus 0,0`: both on that CPU's one executor), against
# shardcast with one shard on the same CPU: the cost of a second shard with no second core to run it. It runs
# fanout-1ch and fanout-100ch (the subscribers land on both shards, so each
# event crosses to the other one) and trigger (nobody subscribed: sparse
# routing posts nothing to the other shard); the summary shows
# shardcast2 / shardcast per case (goals: trigger >= 0.9, fan-out >= 0.95).
#
# Cases (full size, defined in bench/cases.sh; --quick shrinks them for a smoke test):
#   fanout-1ch    1000 subscribers on 1 channel, 4 publishers, max rate, 100-byte events, 10 s
#   fanout-100ch  10,000 subscribers over 100 channels, 4 publishers, max rate, 10 s
#   latency       1000 subscribers on 1 channel, 20 events/s, 10 s: end-to-end p99
#   connections   19,500 idle connections: server resident KiB per connection
#   connections-tls  the same over TLS (wss://, self-signed ECDSA P-256 certificate made
#                 by `loadgen tls-cert`): shardcast only, the other targets are skipped
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
cluster=0
sharding=0
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
    --cluster) cluster=1 ;;
    --sharding) sharding=1 ;;
    -h|--help) sed -n '2,/^set /{/^#/p}' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
  shift
done
if [ -z "$targets" ]; then
  targets="shardcast floor"
  [ "$cluster" = 1 ] && targets="$targets cluster2"
  [ "$cluster" = 1 ] && [ "$cases" = "$BENCH_CASES" ] && cases="$cases $BENCH_CLUSTER_CASES"
  [ "$sharding" = 1 ] && targets="$targets shardcast2"
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
    cluster2)
      command -v redis-server >/dev/null || { echo "cluster2 needs redis-server" >&2; exit 2; } ;;
    shardcast|shardcast2|floor|floor-glommio|floor-glommio2) ;;
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

# Everything started for the current target, stopped by PID after each case and on exit.
server_pids=""
stop_server() {
  local pid
  # shellcheck disable=SC2086
  [ -z "$server_pids" ] || kill $server_pids 2>/dev/null || true
  for pid in $server_pids; do
    for _ in $(seq 50); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  server_pids=""
}
# The TLS cases' temporary certificate directory (set by make_tls_config).
remove_tls_dir() { [ -z "${tls_dir:-}" ] || rm -rf "$tls_dir"; }
trap 'stop_server; remove_tls_dir' EXIT
trap 'stop_server; remove_tls_dir; exit 130' INT TERM

# in_list WORD "LIST": whether WORD is one of LIST's words.
in_list() {
  case " $2 " in *" $1 "*) return 0 ;; esac
  return 1
}

# wait_port PORT PID: until PORT accepts connections (false if PID exits or 30 s pass).
wait_port() {
  for _ in $(seq 300); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    kill -0 "$2" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

# metric PORT NAME: the value of shardcast_NAME on the metrics port PORT
# (fails, saying so, when the port does not answer or has no such metric).
metric() {
  local value
  exec 3<>"/dev/tcp/127.0.0.1/$1" || { echo "!! no metrics on port $1" >&2; return 1; }
  printf 'GET /metrics HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n' >&3
  value=$(awk -v n="shardcast_$2" '$1 == n { print $2 }' <&3)
  exec 3<&-
  [ -n "$value" ] || { echo "!! no $2 on metrics port $1" >&2; return 1; }
  echo "$value"
}

# start_cluster2 LOG [routing]: redis and two shardcast nodes, pinned; sets
# url and sub_urls, adds their PIDs to server_pids; waits until each node
# heard the other. With `routing`: subscribers only on the first node, and
# the second node's metrics port in metrics_b.
start_cluster2() {
  local log=${1%.log} mode=${2:-} rport=$("$loadgen" free-port) pa pb pid node
  taskset -c "$server_cpu" redis-server --port "$rport" --bind 127.0.0.1 --save "" \
    --appendonly no >"$log-redis.log" 2>&1 &
  server_pids=$!
  wait_port "$rport" $! || return 1
  # A fixed secret: the nodes must share one (a private, loopback-only engine).
  printf '[cluster]\nadapter = "redis"\nurl = "redis://127.0.0.1:%s"\nprefix = "bench"\nnode_timeout_secs = 10\nsecret = "bench-cluster-secret-0123456789"\n' \
    "$rport" >"$log.toml"
  pa=$("$loadgen" free-port)
  pb=$("$loadgen" free-port)
  [ "$pa" != "$pb" ] && [ "$pa" != "$rport" ] && [ "$pb" != "$rport" ] || return 1
  cp "$log.toml" "$log-a.toml"
  cp "$log.toml" "$log-b.toml"
  if [ "$mode" = routing ]; then
    metrics_b=$("$loadgen" free-port)
    printf '[server.metrics]\nenabled = true\nport = %s\n' "$metrics_b" >>"$log-b.toml"
  fi
  for node in a:"$pa" b:"$pb"; do
    # The readiness line below is logged at info.
    RUST_LOG=info taskset -c "$server_cpu" "$bin/shardcast" --host 127.0.0.1 --port "${node#*:}" \
      --cpus "$server_cpu" --config "$log-${node%%:*}.toml" >"$log-${node%%:*}.log" 2>&1 &
    pid=$!
    server_pids="$server_pids $pid"
    wait_port "${node#*:}" "$pid" || return 1
  done
  for _ in $(seq 200); do
    grep -q 'cluster: node .* is up' "$log-a.log" && grep -q 'cluster: node .* is up' "$log-b.log" &&
      {
        url="ws://127.0.0.1:$pa"
        sub_urls="--sub-url $url --sub-url ws://127.0.0.1:$pb"
        [ "$mode" = routing ] && sub_urls="--sub-url $url"
        return 0
      }
    for pid in $server_pids; do kill -0 "$pid" 2>/dev/null || return 1; done
    sleep 0.1
  done
  echo "!! the cluster nodes did not see each other within 20 s" >&2
  return 1
}

# TLS cases (name ending in -tls): a throwaway certificate and the config that
# turns TLS on, in a temporary directory removed on exit (no key in the results).
tls_dir=""
tls_config=""
make_tls_config() {
  [ -n "$tls_config" ] && return 0
  tls_dir=$(mktemp -d)
  "$loadgen" tls-cert "$tls_dir"
  printf '[server.tls]\ncert = "cert.pem"\nkey = "key.pem"\n' >"$tls_dir/shardcast-tls.toml"
  tls_config=$tls_dir/shardcast-tls.toml
}

# start_server TARGET LOG [CASE]: starts it pinned on free port(s), sets server_pids,
# url and sub_urls (extra loadgen arguments), waits until it serves. A -tls
# CASE starts shardcast with TLS on its main port and a wss:// url.
start_server() {
  local target=$1 log=$2 case_name=${3:-} port tls_args="" mode=""
  if [[ " $BENCH_CLUSTER_CASES " == *" $case_name "* ]]; then mode=$case_name; fi
  sub_urls=""
  if [ "$target" = cluster2 ]; then
    start_cluster2 "$log" "$mode" && return 0
  else
    port=$("$loadgen" free-port)
    url="ws://127.0.0.1:$port"
    if [[ "$case_name" == *-tls ]]; then
      make_tls_config
      tls_args="--config $tls_config"
      url="wss://127.0.0.1:$port"
    fi
    case "$target" in
      # shellcheck disable=SC2086
      shardcast) taskset -c "$server_cpu" "$bin/shardcast" --host 127.0.0.1 --port "$port" --cpus "$server_cpu" $tls_args >"$log" 2>&1 & ;;
      # shellcheck disable=SC2086
      shardcast2) taskset -c "$server_cpu" "$bin/shardcast" --host 127.0.0.1 --port "$port" --cpus "$server_cpu,$server_cpu" $tls_args >"$log" 2>&1 & ;;
      floor) taskset -c "$server_cpu" "$bin/floor" --host 127.0.0.1 --port "$port" >"$log" 2>&1 & ;;
      floor-glommio) taskset -c "$server_cpu" "$bin/floor-glommio" --host 127.0.0.1 --port "$port" >"$log" 2>&1 & ;;
      floor-glommio2) taskset -c "$server_cpu" "$bin/floor-glommio" --executors 2 --host 127.0.0.1 --port "$port" >"$log" 2>&1 & ;;
      soketi) taskset -c "$server_cpu" scripts/peers/start-soketi.sh "$peer_dir/soketi" "$port" >"$log" 2>&1 & ;;
      sockudo) taskset -c "$server_cpu" scripts/peers/start-sockudo.sh "$peer_dir/sockudo" "$port" >"$log" 2>&1 & ;;
    esac
    server_pids=$!
    if wait_port "$port" $!; then
      sleep 0.5 # let it finish starting (soketi logs after binding)
      return 0
    fi
  fi
  echo "!! $target did not start; see ${log%.log}*" >&2
  stop_server
  return 1
}

for run in $(seq "$runs"); do
  for c in $cases; do
    for t in $targets; do
      if [ "$t" = cluster2 ] && [[ "$(case_args "$c" "$quick")" != fanout* ]]; then
        echo "== run $run/$runs  $c  $t: skipped (not a fan-out case)"
        continue
      fi
      if [ "$t" = shardcast2 ] && ! in_list "$c" "$SHARDING_CASES"; then
        echo "== run $run/$runs  $c  $t: skipped (not a sharding-overhead case)"
        continue
      fi
      if [[ " $BENCH_CLUSTER_CASES " == *" $c "* ]] && [ "$t" != cluster2 ]; then
        echo "== run $run/$runs  $c  $t: skipped (a cluster case)"
        continue
      fi
      if [[ "$t" == floor-glommio* ]] && [ "$c" != trigger ]; then
        echo "== run $run/$runs  $c  $t: skipped (HTTP triggers only)"
        continue
      fi
      if [ "$t" != shardcast ] && [[ "$c" == *-tls ]]; then
        echo "== run $run/$runs  $c  $t: skipped (TLS cases run on shardcast only)"
        continue
      fi
      mode=""
      if [[ " $BENCH_CLUSTER_CASES " == *" $c "* ]]; then mode=$c; fi
      log=$logs/$t-$c-$run.log
      started=0
      for _attempt in 1 2 3; do # a port can be taken between the probe and the server's bind
        echo "== run $run/$runs  $c  $t"
        if start_server "$t" "$log" "$c"; then
          started=1
          break
        fi
      done
      if [ "$started" = 0 ]; then
        echo "{\"case\":\"$c\",\"target\":\"$t\",\"run\":$run,\"error\":\"server did not start\"}" >> "$raw"
        continue
      fi
      echo "   $url ${sub_urls:+($sub_urls)} pids $server_pids"
      ok=1
      dest=$raw
      if [ "$mode" = routing ]; then
        dest=$out/routing-run.jsonl
        b_before=$(metric "$metrics_b" cluster_messages_received_total) || ok=0
      fi
      # shellcheck disable=SC2046,SC2086
      if ! timeout 600 taskset -c "$gen_cpu" "$loadgen" $(case_args "$c" "$quick") \
          --url "$url" $sub_urls --server-pid "$(echo $server_pids | tr ' ' ,)" \
          --label "$t" --case "$c" --run "$run" > "$dest.tmp" 2> >(sed 's/^/   /' >&2); then
        echo "!! loadgen failed for $c on $t (run $run)" >&2
        ok=0
      fi
      cat "$dest.tmp" >> "$dest"
      if [ "$mode" = routing ] && [ "$ok" = 1 ]; then
        b_after=$(metric "$metrics_b" cluster_messages_received_total) || ok=0
      fi
      if [ "$mode" = routing ] && [ "$ok" = 1 ]; then
        # B's growth per trigger; the loadgen line says how many were posted.
        published=$(grep -o '"events_published":[0-9]*' "$dest.tmp" | tail -1 | cut -d: -f2)
        per=$(awk -v d="$((b_after - b_before))" -v n="${published:-0}" \
          'BEGIN { if (n > 0) printf "%.5f", d / n; else print "null" }')
        echo "{\"case\":\"routing\",\"target\":\"$t\",\"run\":$run,\"triggers\":${published:-0},\"b_received\":$((b_after - b_before)),\"b_received_per_trigger\":$per}" >> "$out/routing.jsonl"
        echo "   routing: B received $((b_after - b_before)) messages for ${published:-0} triggers on A ($per per trigger)"
      fi
      rm -f "$dest.tmp"
      for pid in $server_pids; do
        if ! kill -0 "$pid" 2>/dev/null; then
          echo "!! a $t process ($pid) exited during $c; see ${log%.log}*" >&2
          ok=0
        fi
      done
      stop_server
      # Keep a server's logs only when something went wrong (sockudo logs every connection).
      [ "$ok" = 1 ] && rm -f "$log" "${log%.log}"-*.log "${log%.log}"*.toml
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
if [ -s "$out/routing.jsonl" ]; then
  {
    echo
    echo "## Cluster routing (cluster2)"
    echo
    echo "Node B's cluster_messages_received_total growth per trigger posted on node A to a channel"
    echo "only A subscribes (goal < 0.01), per run; median $(grep -o '"b_received_per_trigger":[0-9.a-z]*' \
      "$out/routing.jsonl" | cut -d: -f2 | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }')."
    echo
    echo "| run | triggers | B received | per trigger |"
    echo "|---|---|---|---|"
    sed -E 's/.*"run":([0-9]+),"triggers":([0-9]+),"b_received":([0-9]+),"b_received_per_trigger":([0-9.a-z]+).*/| \1 | \2 | \3 | \4 |/' \
      "$out/routing.jsonl"
  } >> "$out/summary.md"
fi
echo
cat "$out/summary.md"
echo
echo "results: $out"
