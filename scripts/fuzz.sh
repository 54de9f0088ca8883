#!/usr/bin/env bash
# Runs each fuzz target in tests/fuzz for SECONDS (default 60), one after
# the other (one fuzz process at a time), and prints how many inputs each ran.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]
#   RUNS=10000000 scripts/fuzz.sh 0 ws_frame   # stop after N inputs instead
#
# Targets: http_head ws_frame pusher_message api_body signatures cluster_wire
# channel_index quota_leases.
# Needs cargo-fuzz (`cargo install cargo-fuzz`). On a stable toolchain the
# nightly flags cargo-fuzz passes (-Zsanitizer=address) are enabled with
# RUSTC_BOOTSTRAP=1, which this script sets. Crashes land in
# tests/fuzz/artifacts/TARGET/; copy each into tests/fuzz/regressions/TARGET/
# with the fix, so `cargo test` replays it (tests/integration/fuzz_regressions.rs).
# Targets are built with debug assertions (-a), so integer overflow panics as
# it does in the debug server the integration tests run.
# SANITIZER=none (default address) runs several times faster.
set -euo pipefail
cd "$(dirname "$0")/../tests/fuzz"

SECONDS_EACH="${1:-60}"
shift || true
ALL=(http_head ws_frame pusher_message api_body signatures cluster_wire channel_index quota_leases)
TARGETS=("${@:-${ALL[@]}}")
[ "${#TARGETS[@]}" -eq 0 ] && TARGETS=("${ALL[@]}")
SANITIZER="${SANITIZER:-address}"

export RUSTC_BOOTSTRAP=1
if ! command -v cargo-fuzz >/dev/null 2>&1; then
  echo "cargo-fuzz is not installed: cargo install cargo-fuzz" >&2
  exit 2
fi

dict_for() {
  case "$1" in
    http_head) echo dict/http.dict ;;
    ws_frame) echo dict/ws.dict ;;
    signatures) echo dict/http.dict ;;
    channel_index | quota_leases) echo "" ;; # binary operation lists: no dictionary
    *) echo dict/json.dict ;;
  esac
}

cargo fuzz build --fuzz-dir . -O -a -s "$SANITIZER"

status=0
summary=()
for t in "${TARGETS[@]}"; do
  mkdir -p "corpus/$t" "artifacts/$t"
  args=(-max_len=8192 -timeout=10 -rss_limit_mb=2048
        -malloc_limit_mb=512 -print_final_stats=1 -artifact_prefix="artifacts/$t/")
  dict=$(dict_for "$t")
  if [ -n "$dict" ]; then
    args+=(-dict="$dict")
  fi
  if [ -n "${RUNS:-}" ]; then
    args+=(-runs="$RUNS")
  fi
  if [ "$SECONDS_EACH" != 0 ]; then
    args+=(-max_total_time="$SECONDS_EACH")
  fi
  log="artifacts/$t/last-run.log"
  echo "== $t (${SECONDS_EACH}s${RUNS:+, at most $RUNS inputs})"
  if cargo fuzz run --fuzz-dir . -O -a -s "$SANITIZER" "$t" "corpus/$t" "seeds/$t" -- "${args[@]}" \
      >"$log" 2>&1; then
    result=ok
  else
    result="FAILED (see tests/fuzz/$log and tests/fuzz/artifacts/$t/)"
    status=1
  fi
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
  rate=$(grep -o 'exec/s: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*$')
  line="$t: ${runs:-?} inputs (${rate:-?} exec/s), $result"
  echo "$line"
  summary+=("$line")
done
echo "== summary"
printf '%s\n' "${summary[@]}"
exit $status
