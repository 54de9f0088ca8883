#!/usr/bin/env bash
# Interleaved A/B: glommio ring depth 128 (its default) vs 4096; one shard on CPU 0, loadgen on CPU 1.
set -u
lg=/work/main/target/release/loadgen
case_args() {
  case $1 in
    fanout-100ch) echo "fanout --subscribers 10000 --channels 100 --publishers 4 --rate max --duration 8 --payload 100";;
    fanout-1ch) echo "fanout --subscribers 1000 --channels 1 --publishers 4 --rate max --duration 8 --payload 100";;
    trigger) echo "trigger --publishers 4 --rate max --duration 8 --payload 100";;
  esac
}
for run in 1 2 3 4 5; do
  for c in ${CASES:-fanout-100ch}; do
    for depth in 128 4096; do
      port=$((20000 + RANDOM % 20000))
      SC_RING_DEPTH=$depth taskset -c 0 /tmp/sc-ring --host 127.0.0.1 --port $port --cpus 0 >/tmp/ab2-$depth.log 2>&1 &
      pid=$!
      for i in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done
      out=$(timeout 120 taskset -c 1 $lg $(case_args $c) --url ws://127.0.0.1:$port 2>/dev/null | tail -1)
      kill $pid; wait $pid 2>/dev/null
      echo "$run $c $depth $(echo "$out" | python3 -c 'import json,sys; r=json.loads(sys.stdin.read()); print(r.get("deliveries_per_s"), r.get("requests_per_s"), r["loss_pct"] if "loss_pct" in r else "", r["loadgen_cpu_pct"])' 2>/dev/null || echo "ERR $out")"
    done
  done
done
