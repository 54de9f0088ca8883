#!/usr/bin/env bash
set -u
lg=/work/main/target/release/loadgen
args="fanout --subscribers 10000 --channels 100 --publishers 4 --rate max --duration 8 --payload 100"
for run in 1 2 3 4 5 6; do
  v=new
  port=$((20000 + RANDOM % 20000))
  taskset -c 0 /tmp/sc-$v --host 127.0.0.1 --port $port --cpus 0 >/tmp/ab-$v.log 2>&1 &
  pid=$!
  for i in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done
  perf stat -e 'syscalls:sys_enter_sendmsg,syscalls:sys_enter_io_uring_enter,syscalls:sys_enter_recvfrom,syscalls:sys_enter_sendto' -p $pid -o /tmp/ab1/perf-$run.txt &
  ppid=$!
  out=$(timeout 120 taskset -c 1 $lg $args --url ws://127.0.0.1:$port 2>/dev/null | tail -1)
  kill -INT $ppid; wait $ppid 2>/dev/null
  kill $pid; wait $pid 2>/dev/null
  echo "$run $v $(echo "$out" | python3 -c 'import json,sys; r=json.loads(sys.stdin.read()); print(r["deliveries_per_s"], r["loss_pct"], r["loadgen_cpu_pct"], r.get("published"), r.get("received"))' 2>/dev/null || echo "ERR $out")"
  grep -E "syscalls" /tmp/ab1/perf-$run.txt | awk '{print "   ",$1,$2}'
done
