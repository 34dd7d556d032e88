#!/usr/bin/env bash
# CPU profiles of tickethub under wrk: one flame graph per workload, and the server's CPU time
# per request, for issue #16's "name where each microsecond of a create goes".
#
#   bench/scripts/profile.sh [TICKETHUB_BIN] [OUT_DIR]
#
# Needs: perf (apt-get install -y linux-perf), wrk, inferno (cargo install inferno), and a
# release build of `bench` and `tickethub` (built with debuginfo, as the workspace's release
# profile is). Starts tickethub on a fresh data dir with 5,000 users seeded over HTTP by
# `bench drive --seed`, then per workload (create, read):
#   - wrk -t2 -c64 for SECS s (bench/scripts/bench.lua), the server's utime+stime read from
#     /proc before and after: CPU µs per request;
#   - the same load again under `perf record -F 999 --call-graph dwarf` on the server's pid,
#     folded by inferno-collapse-perf into <out>/flame-<workload>.folded.gz and .svg, and the
#     per-phase table of bench/scripts/breakdown.py printed.
# The machine's other load shows in the wall-clock figures, not in CPU µs per request.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
BIN=${1:-$ROOT/target/release/tickethub}
OUT=${2:-$ROOT/bench/results}
SECS=${SECS:-8}
CONNS=${CONNS:-64}
SEEDED=${SEEDED:-5000}
LOG_LEVEL=${LOG_LEVEL:-warn}
TAG=${TAG:-}
BENCH=${BENCH_BIN:-$ROOT/target/release/bench}
WORK=$(mktemp -d /tmp/profile.XXXXXX)
PID=
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PORT=$(free_port); SITE=$(free_port)
RUST_LOG=$LOG_LEVEL "$BIN" serve --port "$PORT" --site-port "$SITE" --data-dir "$WORK/data" \
  --admin-key profile-admin-key-0123456789abcdef >"$WORK/server.log" 2>&1 &
PID=$!
for _ in $(seq 600); do curl -fs "http://127.0.0.1:$PORT/instance_name" >/dev/null && break; sleep 0.1; done
"$BENCH" drive --addr "127.0.0.1:$PORT" --workload read --seed "$SEEDED" --seconds 1 >/dev/null
mkdir -p "$OUT"
echo "tickethub $BIN, RUST_LOG=$LOG_LEVEL, $SEEDED seeded users, wrk -t2 -c$CONNS -d${SECS}s; $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"

cpu_ticks() { awk '{print $14 + $15}' "/proc/$PID/stat"; }
run_wrk() { # mix tag
  wrk -t2 -c"$CONNS" -d"${SECS}s" -s "$HERE/bench.lua" "http://127.0.0.1:$PORT" -- convex "$1" "$2" "$SEEDED" |
    awk '/^WRK_RESULT/ {print $2, $3, $4, $5, $6}'
}
HZ=$(getconf CLK_TCK)
for mix in ${MIXES:-create read}; do
  echo 5 >"/proc/$PID/clear_refs" 2>/dev/null || true # reset VmHWM
  t0=$(cpu_ticks)
  read -r requests duration errors p50 p99 < <(run_wrk "$mix" "p$mix")
  t1=$(cpu_ticks)
  awk -v r="$requests" -v d="$duration" -v e="$errors" -v p50="$p50" -v p99="$p99" -v t=$((t1 - t0)) -v hz="$HZ" -v m="$mix" \
    'BEGIN { printf "%s: %.0f req/s, p50 %.2f ms, p99 %.2f ms, errors %d, server CPU %.1f us per request\n", m, r / (d / 1e6), p50 / 1000, p99 / 1000, e, t / hz * 1e6 / r }'
  echo "  server memory: $(grep -E 'VmHWM|RssAnon|RssFile' "/proc/$PID/status" | tr -s ' \t' ' ' | tr '\n' ' ')"
  perf record -q -F 999 --call-graph dwarf,32768 -p "$PID" -o "$WORK/perf-$mix.data" -- sleep "$SECS" &
  PERF=$!
  run_wrk "$mix" "q$mix" >/dev/null
  wait "$PERF" || true
  perf script -i "$WORK/perf-$mix.data" 2>/dev/null | inferno-collapse-perf >"$OUT/flame-$mix$TAG.folded"
  python3 "$HERE/breakdown.py" "$OUT/flame-$mix$TAG.folded" "$(awk -v t=$((t1 - t0)) -v hz="$HZ" -v r="$requests" 'BEGIN { print t / hz * 1e6 / r }')"
  inferno-flamegraph --title "tickethub: $mix, wrk -c$CONNS, RUST_LOG=$LOG_LEVEL" <"$OUT/flame-$mix$TAG.folded" >"$OUT/flame-$mix$TAG.svg"
  echo "  wrote $OUT/flame-$mix$TAG.svg ($(wc -l <"$OUT/flame-$mix$TAG.folded") stacks)"
  gzip -9 -f "$OUT/flame-$mix$TAG.folded"
done
