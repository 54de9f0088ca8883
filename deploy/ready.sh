#!/usr/bin/env bash
# The container's health check: asks shardcast's /ready on the loopback
# address and succeeds only on "200". /ready answers 503 from the moment a
# drain starts. Plain HTTP through bash's /dev/tcp, so the image needs no
# HTTP client; with TLS on the main port, probe it from outside instead
# (Kubernetes: httpGet with scheme HTTPS).
# Port: $1, else $SHARDCAST_READY_PORT, else 6001. Host: $SHARDCAST_READY_HOST,
# else 127.0.0.1.
set -u
port=${1:-${SHARDCAST_READY_PORT:-6001}}
host=${SHARDCAST_READY_HOST:-127.0.0.1}
exec 3<>"/dev/tcp/$host/$port" || { echo "ready: cannot connect to $host:$port" >&2; exit 1; }
printf 'GET /ready HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n' "$host" >&3
IFS= read -r -t 2 status <&3 || { echo "ready: no answer from $host:$port" >&2; exit 1; }
exec 3<&-
case "$status" in
  "HTTP/1.1 200 "*) exit 0;;
  *) echo "ready: $host:$port answered: ${status%$'\r'}" >&2; exit 1;;
esac
