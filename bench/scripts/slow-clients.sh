#!/usr/bin/env bash
# Issue 17's slowloris figure: the p99 latency of an official ConvexHttpClient user's queries
# with 500 slowloris connections trickling one header byte a second, against the same user with
# none, in one run of the same server (tests/js/slow_clients.test.mjs measures both phases).
# Writes bench/results/slow-clients.md. Target: p99 under 50 ms with the slowloris crowd.
#
#   bench/scripts/slow-clients.sh [seconds per phase, default 30]
#
# Needs the release binary (cargo build --release -p tickethub-server --bins) and
# tests/js/node_modules (npm ci --prefix tests/js).
set -euo pipefail
SECS=${1:-30}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
FIGURES=$(mktemp /tmp/slow-clients.XXXXXX.json)
trap 'rm -f "$FIGURES"' EXIT
export TICKETHUB_BIN=${TICKETHUB_BIN:-$ROOT/target/release/tickethub}
cd "$ROOT/tests/js"
SLOWLORIS_SECONDS=$SECS SLOW_CLIENTS_REPORT=$FIGURES \
  node --test --test-concurrency=1 --test-name-pattern=slowloris slow_clients.test.mjs
node - "$FIGURES" "$ROOT/bench/results/slow-clients.md" "$(uptime | sed 's/.*load average: //')" <<'JS'
const fs = require("node:fs");
const [figuresFile, out, load] = process.argv.slice(2);
const f = JSON.parse(fs.readFileSync(figuresFile, "utf8"));
const row = (name, s) => `| ${name} | ${s.queries} | ${s.p50} | ${s.p99} | ${s.max} |`;
const verdict = f.withSlowloris.p99 < 50 ? "met" : "NOT met";
fs.writeFileSync(out, `# Slow clients (issue 17): queries under 500 slowloris connections

Measured ${new Date().toISOString().slice(0, 16).replace("T", " ")} UTC with
\`bench/scripts/slow-clients.sh ${f.seconds}\` (tests/js/slow_clients.test.mjs): one official
\`ConvexHttpClient\` user runs \`events:get\` about 50 times a second, first alone for ${f.seconds} s,
then for ${f.seconds} s beside ${f.slowlorisConnections} connections that each send a request line and
then one header byte a second, never finishing. The server cuts each trickle off at its header
deadline (${f.headerTimeoutMs} ms in this run; the knob's default is 10 s) and the trickler reconnects:
${f.trickleCutOffs} cut-offs. Every query succeeded in both phases. Same server, same run.
Machine: 2 cores shared with other work (load average at the end: ${load}).

| phase | queries | p50 ms | p99 ms | max ms |
|---|---|---|---|---|
${row("alone", f.without)}
${row(`beside ${f.slowlorisConnections} slowloris`, f.withSlowloris)}

Target p99 < 50 ms under slowloris: **${verdict}**.
`);
console.log(fs.readFileSync(out, "utf8"));
JS
