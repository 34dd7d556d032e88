#!/usr/bin/env bash
# Benchmark for issue #12's target "the dashboard's own endpoints and streams add no measurable
# cost to the function-call path when nobody has the dashboard open": point-query throughput of a
# binary built from `main` (A, without the dashboard) against this branch's binary (B, with it),
# same machine, same run, rounds interleaved A B, B A, A B ..., nobody opening /dashboard.
# First it prints each server's CPU time over 10 s with no requests at all.
#
#   bench/scripts/dashboard-ab.sh MAIN_BIN BRANCH_BIN [rounds] [seconds]
#
# Each binary gets its own fresh data dir, seeded with the same SEEDED users over HTTP by
# `bench drive --seed` (so each writes with its own code). Then per round, per binary:
#   wrk -t1 -c64 -d<seconds>s -s point-query.lua  (an independent generator, random seed-N),
#   bench drive --workload read --seeded SEEDED    (the bench crate's own generator, 64 conns).
# Prints each figure and the medians' ratio B/A. The machine has 2 cores shared with other
# work: the generator competes with the server, so only the ratio within this run means much.
set -euo pipefail
A_BIN=${1:?main binary}
B_BIN=${2:?branch binary}
ROUNDS=${3:-4}
SECS=${4:-10}
SEEDED=${SEEDED:-10000}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
BENCH=${BENCH_BIN:-$ROOT/target/release/bench}
WORK=$(mktemp -d /tmp/dashboard-ab.XXXXXX)
KEY=dashbench-admin-key-0123456789abcdef
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

start() { # name bin -> sets PORT_<name>
  local name=$1 bin=$2 port site
  port=$(free_port); site=$(free_port)
  "$bin" serve --port "$port" --site-port "$site" --data-dir "$WORK/$name" --admin-key "$KEY" \
    >"$WORK/$name.log" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 600); do curl -fs "http://127.0.0.1:$port/instance_name" >/dev/null && break; sleep 0.1; done
  eval "PORT_$name=$port"
}

start A "$A_BIN"
start B "$B_BIN"
for s in A B; do
  port_var=PORT_$s
  "$BENCH" drive --addr "127.0.0.1:${!port_var}" --workload read --seed "$SEEDED" --seconds 1 >/dev/null
done
echo "A = $A_BIN"
echo "B = $B_BIN"
echo "seeded $SEEDED users in each; $ROUNDS rounds of ${SECS}s per generator per binary; $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"

# Idle cost first: CPU time each server spends in 10 s with no requests at all.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
a0=$(cpu_ticks "${PIDS[0]}"); b0=$(cpu_ticks "${PIDS[1]}"); sleep 10
a1=$(cpu_ticks "${PIDS[0]}"); b1=$(cpu_ticks "${PIDS[1]}")
echo "idle 10 s, CPU time (clock ticks of $(getconf CLK_TCK)/s): A $((a1 - a0)), B $((b1 - b0))"

# Rounds alternate the order (A B, then B A, ...) so a drift in the machine's load over the run
# does not always fall on the same binary.
declare -A WRK DRIVE
for r in $(seq "$ROUNDS"); do
  order="A B"; [ $((r % 2)) -eq 0 ] && order="B A"
  for s in $order; do
    port_var=PORT_$s
    url="http://127.0.0.1:${!port_var}"
    out=$(SEEDED=$SEEDED wrk -t1 -c64 -d"${SECS}s" -s "$HERE/point-query.lua" "$url")
    rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    non2xx=$(awk '/Non-2xx/ {print $NF}' <<<"$out")
    p50=$(awk '/Latency/ && !/Distribution/ {print $2; exit}' <<<"$out")
    WRK[$s]+="$rps "
    echo "round $r $s wrk:   $rps req/s (avg latency $p50${non2xx:+, non-2xx $non2xx})"
    out=$("$BENCH" drive --addr "127.0.0.1:${!port_var}" --workload read --seeded "$SEEDED" --connections 64 --seconds "$SECS")
    rps=$(sed -n 's/^Read: \([0-9]*\) req\/s.*/\1/p' <<<"$out")
    DRIVE[$s]+="$rps "
    echo "round $r $s drive: $out"
  done
done

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
echo
for g in wrk drive; do
  if [ $g = wrk ]; then a=$(median <<<"${WRK[A]}"); b=$(median <<<"${WRK[B]}");
  else a=$(median <<<"${DRIVE[A]}"); b=$(median <<<"${DRIVE[B]}"); fi
  awk -v g=$g -v a="$a" -v b="$b" 'BEGIN { printf "%-5s median A (main) %.0f req/s, B (branch) %.0f req/s, ratio B/A %.3f\n", g, a, b, b/a }'
done
