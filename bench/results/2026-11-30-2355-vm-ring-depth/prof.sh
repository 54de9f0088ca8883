#!/usr/bin/env bash
# Self-time share of the kernel's io_poll_find (the per-turn timer cancel's walk of io_uring's poll hash) by ring depth.
set -u
lg=/work/main/target/release/loadgen
args="fanout --subscribers 10000 --channels 100 --publishers 4 --rate max --duration 8 --payload 100"
for run in 1 2; do
  for depth in 128 1024 4096; do
    port=$((20000 + RANDOM % 20000))
    SC_RING_DEPTH=$depth taskset -c 0 /tmp/sc-ring --host 127.0.0.1 --port $port --cpus 0 >/tmp/ab2-$depth.log 2>&1 &
    pid=$!
    for i in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done
    (sleep 3; timeout 4 perf record -q -e cpu-clock -F 999 -p $pid -o /tmp/ab2/perf-$depth.data >/dev/null 2>&1) &
    rec=$!
    out=$(timeout 120 taskset -c 1 $lg $args --url ws://127.0.0.1:$port 2>/dev/null | tail -1)
    wait $rec
    kill $pid; wait $pid 2>/dev/null
    share=$(perf report -i /tmp/ab2/perf-$depth.data --stdio --sort symbol 2>/dev/null | grep -E "io_poll_find|io_async_cancel" | awk '{printf "%s %s  ", $1, $NF}')
    echo "$run $depth $(echo "$out" | python3 -c 'import json,sys; r=json.loads(sys.stdin.read()); print(r["deliveries_per_s"], r["loadgen_cpu_pct"])' 2>/dev/null) | $share"
  done
done
