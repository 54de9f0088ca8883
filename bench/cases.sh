# Benchmark cases shared by scripts/bench.sh and scripts/flamegraph.sh (sourced).
# case_args CASE QUICK prints the loadgen arguments of CASE (QUICK=1: smoke-test sizes).
# A case ending in -tls is its plain twin over TLS: scripts/bench.sh runs it against
# shardcast only, with a self-signed certificate on the main port and wss:// URLs.
BENCH_CASES="fanout-1ch fanout-100ch latency connections connections-tls trigger churn"
# Cases only the cluster target runs (scripts/bench.sh --cluster).
BENCH_CLUSTER_CASES="routing"
# The cases the sharding-overhead target (shardcast2: two shards on one CPU)
# runs: fan-out across both shards, and triggers nobody subscribes to.
SHARDING_CASES="fanout-1ch fanout-100ch trigger"

case_args() {
  local c=$1 quick=${2:-0}
  if [ "$quick" = 1 ]; then
    case "$c" in
      fanout-1ch) echo "fanout --subscribers 200 --channels 1 --publishers 4 --rate max --duration 2 --payload 100" ;;
      fanout-100ch) echo "fanout --subscribers 2000 --channels 20 --publishers 4 --rate max --duration 2 --payload 100" ;;
      latency) echo "fanout --subscribers 200 --channels 1 --publishers 4 --rate 20 --duration 2 --payload 100" ;;
      connections|connections-tls) echo "connections --count 2000 --hold 1 --settle 0.5" ;;
      trigger) echo "trigger --publishers 4 --rate max --duration 2 --payload 100" ;;
      churn) echo "churn --subscribers 100 --channels 5 --churners 20 --rate 50 --duration 2" ;;
      routing) echo "fanout --subscribers 20 --channels 1 --publishers 4 --rate max --duration 2 --payload 100" ;;
      *) return 1 ;;
    esac
  else
    case "$c" in
      fanout-1ch) echo "fanout --subscribers 1000 --channels 1 --publishers 4 --rate max --duration 10 --payload 100" ;;
      fanout-100ch) echo "fanout --subscribers 10000 --channels 100 --publishers 4 --rate max --duration 10 --payload 100" ;;
      latency) echo "fanout --subscribers 1000 --channels 1 --publishers 4 --rate 20 --duration 10 --payload 100" ;;
      connections|connections-tls) echo "connections --count 19500 --hold 2 --settle 1" ;;
      trigger) echo "trigger --publishers 4 --rate max --duration 10 --payload 100" ;;
      churn) echo "churn --subscribers 500 --channels 10 --churners 100 --rate 100 --duration 10" ;;
      routing) echo "fanout --subscribers 100 --channels 1 --publishers 4 --rate max --duration 10 --payload 100" ;;
      *) return 1 ;;
    esac
  fi
}
