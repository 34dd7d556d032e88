// Sustained load: 256 concurrent keep-alive connections against a query for 30 s.
//
// Asserts what must hold on any machine: every request succeeds with the right value, all 256
// sockets stay open (keep-alive, no reconnects), and resident memory after warm-up does not keep
// growing (a leak check with a bound loose enough for a noisy 2-core machine). The tight figure,
// memory steady within 10%, comes from `cargo run --release -p bench -- --load-check`, which
// prints it; tests assert no timings.
//
// Run: node --test tests/js/load.test.mjs   (LOAD_SECONDS=5 for a short local run)
import { test, after } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import fs from "node:fs";

import { startServer } from "./lib/server.mjs";

const CONNECTIONS = 256;
const SECONDS = Number(process.env.LOAD_SECONDS ?? 30);
const WARM_UP_SECONDS = Math.min(10, SECONDS / 3);

function residentKiB(pid) {
  const status = fs.readFileSync(`/proc/${pid}/status`, "utf8");
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)[1]);
}

/** One request on `agent`; resolves to {status, body}. */
function post(agent, port, body) {
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        agent,
        host: "127.0.0.1",
        port,
        method: "POST",
        path: "/api/query",
        headers: { "content-type": "application/json", "content-length": Buffer.byteLength(body) },
      },
      (res) => {
        const chunks = [];
        res.on("data", (c) => chunks.push(c));
        res.on("end", () => resolve({ status: res.statusCode, body: Buffer.concat(chunks).toString() }));
        res.on("error", reject);
      },
    );
    req.on("error", reject);
    req.end(body);
  });
}

let server;
after(async () => {
  await server?.cleanup();
});

test(`${CONNECTIONS} keep-alive connections for ${SECONDS} s: no errors, no memory growth`, { timeout: (SECONDS + 120) * 1000 }, async () => {
  server = await startServer({ which: "notes-server" });
  const client = await import("convex/browser");
  const admin = new client.ConvexHttpClient(server.url);
  const id = await admin.mutation("notes:add", { text: "under load", author: "load" });

  const agent = new http.Agent({ keepAlive: true, maxSockets: CONNECTIONS, maxFreeSockets: CONNECTIONS });
  const sockets = new Set();
  agent.on("free", (socket) => sockets.add(socket));
  const body = JSON.stringify({ path: "notes:get", format: "json", args: [{ id }] });
  const pid = server.child.pid;

  const start = Date.now();
  const stopAt = start + SECONDS * 1000;
  const samples = []; // [seconds since start, KiB]
  const sampler = setInterval(() => samples.push([(Date.now() - start) / 1000, residentKiB(pid)]), 1000);
  let ok = 0;
  const failures = [];

  const worker = async () => {
    while (Date.now() < stopAt) {
      try {
        const res = await post(agent, server.port, body);
        const parsed = JSON.parse(res.body);
        if (res.status === 200 && parsed.status === "success" && parsed.value?.text === "under load") {
          ok += 1;
        } else if (failures.length < 5) {
          failures.push(`${res.status} ${res.body.slice(0, 200)}`);
        } else {
          failures.push("…");
        }
      } catch (error) {
        failures.push(String(error));
      }
    }
  };
  await Promise.all(Array.from({ length: CONNECTIONS }, worker));
  clearInterval(sampler);
  agent.destroy();

  const afterWarmUp = samples.filter(([t]) => t >= WARM_UP_SECONDS).map(([, kib]) => kib);
  const first = afterWarmUp[0];
  const peak = Math.max(...afterWarmUp);
  const last = afterWarmUp[afterWarmUp.length - 1];
  console.log(
    `load: ${ok} requests in ${SECONDS} s (${Math.round(ok / SECONDS)}/s) over ${sockets.size} sockets; ` +
      `RSS after warm-up ${first} KiB, peak ${peak} KiB, last ${last} KiB (spread ${(peak / first).toFixed(3)})`,
  );

  assert.deepEqual(failures, [], `requests failed:\n${failures.join("\n")}\n${server.output().slice(-2000)}`);
  assert.ok(ok > 0);
  assert.equal(sockets.size, CONNECTIONS, "every connection was kept alive and reused");
  assert.ok(afterWarmUp.length >= 2, "too few memory samples");
  // A leak under this load would grow without bound; caches warming up level off well below this.
  assert.ok(peak <= first * 1.5, `resident memory kept growing after warm-up: ${JSON.stringify(samples)}`);
  assert.equal(server.child.exitCode, null, "the server is still running");
});
