#!/usr/bin/env bash
# Interleaved A/B/floor: one shard on CPU 0, loadgen on CPU 1, fanout-100ch 8 s.
set -u
lg=/work/main/target/release/loadgen
args="fanout --subscribers 10000 --channels 100 --publishers 4 --rate max --duration 8 --payload 100"
for run in 1 2 3 4 5; do
  for v in old new floor; do
    port=$((20000 + RANDOM % 20000))
    case $v in
      floor) taskset -c 0 /work/main/target/release/floor --host 127.0.0.1 --port $port >/tmp/ab-$v.log 2>&1 & ;;
      *) taskset -c 0 /tmp/sc-$v --host 127.0.0.1 --port $port --cpus 0 >/tmp/ab-$v.log 2>&1 & ;;
    esac
    pid=$!
    for i in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done
    out=$(timeout 120 taskset -c 1 $lg $args --url ws://127.0.0.1:$port 2>/dev/null | tail -1)
    kill $pid; wait $pid 2>/dev/null
    echo "$run $v $(echo "$out" | python3 -c 'import json,sys; r=json.loads(sys.stdin.read()); print(r["deliveries_per_s"], r["loss_pct"], r["loadgen_cpu_pct"])' 2>/dev/null || echo "ERR $out")"
  done
done
