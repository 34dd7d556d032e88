#!/usr/bin/env bash
# Issue 18's figures: the same point query and the same durable upsert written in Rust (the
# built-in `users:getUserById`, `users:updateUser`) and in pushed TypeScript run by QuickJS
# (`usersjs:*`, below), on one server, measured back to back under wrk; a cold push of a
# ~100 KB bundle by the unmodified `npx convex deploy`; and a QuickJS runtime's memory.
#
#   bench/scripts/js-vs-rust.sh [TICKETHUB_BIN]
#
# Needs: wrk, tests/js/node_modules (npm ci --prefix tests/js), a release build of `tickethub`
# and `bench` (cargo build --release -p tickethub-server -p bench --bins).
# SECS (8), CONNS (64), SEEDED (5000) as in profile.sh. Prints a markdown table.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
BIN=${1:-$ROOT/target/release/tickethub}
BENCH=${BENCH_BIN:-$ROOT/target/release/bench}
SECS=${SECS:-8}
CONNS=${CONNS:-64}
SEEDED=${SEEDED:-5000}
KEY=js-bench-admin-key-0123456789abcdef
WORK=$(mktemp -d /tmp/js-bench.XXXXXX)
PID=
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
for tool in wrk curl python3; do
  command -v "$tool" >/dev/null || { echo "error: $tool is not installed" >&2; exit 1; }
done
[ -x "$ROOT/tests/js/node_modules/.bin/convex" ] ||
  { echo "error: run npm ci --prefix tests/js first (the pinned convex CLI)" >&2; exit 1; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PORT=$(free_port); SITE=$(free_port)
URL=http://127.0.0.1:$PORT
RUST_LOG=warn,tickethub_js=debug "$BIN" serve --port "$PORT" --site-port "$SITE" \
  --data-dir "$WORK/data" --admin-key "$KEY" >"$WORK/server.log" 2>&1 &
PID=$!
for _ in $(seq 600); do curl -fs "$URL/instance_name" >/dev/null && break; sleep 0.1; done
"$BENCH" drive --addr "127.0.0.1:$PORT" --workload read --seed "$SEEDED" --seconds 1 >/dev/null

# The TypeScript twins of the Rust functions, plus ~100 KB of other code in the bundle.
mkdir -p "$WORK/app/convex"
ln -s "$ROOT/tests/js/node_modules" "$WORK/app/node_modules"
echo '{"name":"js-bench","private":true,"dependencies":{"convex":"1.48.0"}}' >"$WORK/app/package.json"
cat >"$WORK/app/convex/usersjs.ts" <<'EOF'
import { v } from "convex/values";
import { mutation, query } from "./_generated/server";

const byUserId = (ctx: any, userId: string) =>
  ctx.db.query("users").withIndex("by_user_id", (q: any) => q.eq("userId", userId)).unique();

export const getUserById = query({
  args: { userId: v.string() },
  handler: async (ctx, { userId }) => await byUserId(ctx, userId),
});

export const updateUser = mutation({
  args: { userId: v.string(), name: v.string(), email: v.string() },
  handler: async (ctx, { userId, name, email }) => {
    const existing = await byUserId(ctx, userId);
    if (existing !== null) {
      await ctx.db.patch(existing._id, { name, email });
      return existing._id;
    }
    return await ctx.db.insert("users" as any, { name, email, userId });
  },
});
EOF
python3 - "$WORK/app/convex/catalog.ts" <<'EOF'
import sys
lines = ['import { v } from "convex/values";', 'import { query } from "./_generated/server";']
for i in range(400):
    lines.append(f"export const item{i} = query({{ args: {{ n: v.number() }}, handler: async (_ctx, {{ n }}) => "
                 f"({{ id: {i}, label: \"catalog entry number {i}\", total: n * {i} + {i % 7}, tags: [\"a{i}\", \"b{i}\"] }}) }});")
open(sys.argv[1], "w").write("\n".join(lines) + "\n")
EOF

# Cold push: from starting the CLI to the first answer of a pushed function.
started=$(date +%s%N)
(cd "$WORK/app" && CONVEX_SELF_HOSTED_URL=$URL CONVEX_SELF_HOSTED_ADMIN_KEY=$KEY CI=1 \
  "$ROOT/tests/js/node_modules/.bin/convex" deploy --typecheck disable --yes >"$WORK/push.log" 2>&1) ||
  { cat "$WORK/push.log" >&2; exit 1; }
cli_done=$(date +%s%N)
until curl -fs -H 'Content-Type: application/json' "$URL/api/query" \
  -d '{"path":"usersjs:getUserById","format":"json","args":[{"userId":"seed-1"}]}' | grep -q '"status":"success"'; do
  sleep 0.01
done
answered=$(date +%s%N)
field() { grep "$1" "$WORK/server.log" | tail -1 | grep -o "$2=[0-9]*" | cut -d= -f2; }
pushed_bytes=$(field 'push compiled and analyzed' source_bytes)
bytecode_bytes=$(field 'pushed functions installed' bytecode_bytes)
prepare_ms=$(field 'push compiled and analyzed' millis)
commit_ms=$(field 'push stored and running' millis)

run_wrk() { # dialect mix tag -> "req/s p50ms p99ms errors"
  wrk -t2 -c"$CONNS" -d"${SECS}s" -s "$HERE/bench.lua" "$URL" -- "$1" "$2" "$3" "$SEEDED" |
    awk '/^WRK_RESULT/ { printf "%.0f %.2f %.2f %d\n", $2 / ($3 / 1e6), $5 / 1000, $6 / 1000, $4 }'
}
echo "# Rust against pushed TypeScript (QuickJS) in one tickethub: \`bench/scripts/js-vs-rust.sh\`"
echo
echo "- machine: $(nproc) cores, load average at start $(cut -d' ' -f1 /proc/loadavg); wrk -t2 -c$CONNS -d${SECS}s, $SEEDED seeded users; each workload Rust then JS, back to back"
echo "- cold push by \`npx convex deploy\` of $pushed_bytes bytes of bundled JavaScript ($bytecode_bytes bytes of QuickJS bytecode): the server compiled and analyzed it in $prepare_ms ms and stored and installed it in $commit_ms ms; the CLI (Node start-up, esbuild, the push round trips) took $(( (cli_done - started) / 1000000 )) ms, and a pushed function first answered $(( (answered - cli_done) / 1000000 )) ms after the CLI exited"
echo
echo "| workload | Rust req/s | JS req/s | JS ÷ Rust | Rust p50 / p99 ms | JS p50 / p99 ms | errors (Rust / JS) |"
echo "|---|--:|--:|--:|--:|--:|--:|"
for mix in read create; do
  read -r rr rp50 rp99 rerr < <(run_wrk convex "$mix" "r$mix")
  read -r jr jp50 jp99 jerr < <(run_wrk convex-js "$mix" "j$mix")
  name=$([ "$mix" = read ] && echo "indexed point query" || echo "durable upsert (lookup + insert)")
  awk -v n="$name" -v rr="$rr" -v jr="$jr" -v a="$rp50 / $rp99" -v b="$jp50 / $jp99" -v e="$rerr / $jerr" \
    'BEGIN { printf "| %s | %d | %d | %.0f%% | %s | %s | %s |\n", n, rr, jr, 100 * jr / rr, a, b, e }'
done
echo
echo "QuickJS runtimes (one per thread that ran a pushed function), memory after their first call:"
grep 'QuickJS runtime after its first call' "$WORK/server.log" | grep -o 'bytes=[0-9]*' | sort | uniq -c |
  awk '{ split($2, b, "="); printf "- %d runtime(s): %.2f MiB allocated\n", $1, b[2] / 1048576 }'
