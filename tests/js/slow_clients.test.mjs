// Slow and greedy clients against the real tickethub binary:
// - 500 slowloris connections, each trickling one header byte a second (and reconnecting when
//   the server cuts it off at the header timeout), while an official ConvexHttpClient user keeps
//   running queries: every query must succeed. Query latency is recorded with and without the
//   slowloris crowd in the same run and printed; tests assert no timings (the figure goes to
//   bench/results/slow-clients.md through bench/scripts/slow-clients.sh).
// - A WebSocket client that sends a 100 MB frame is cut off with close code 1009, and the server
//   still serves.
// - An upload that stalls is refused with 408 BodyReadTimeout.
//
// Run: node --test tests/js/slow_clients.test.mjs
//   SLOWLORIS_SECONDS (default 15): how long the slowloris phase lasts.
//   SLOW_CLIENTS_REPORT=FILE: also write the figures there as markdown.

import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import net from "node:net";
import { after, before, describe, test } from "node:test";
import { anyApi } from "convex/server";
import WebSocket from "ws";
import { startServer } from "./lib/server.mjs";
import { startIssuer } from "./lib/oidc.mjs";
import { newWebhookSecret } from "./lib/clerk.mjs";
import { newClient } from "./lib/helpers.mjs";
import { percentile } from "./lib/sync.mjs";

const api = anyApi;
const SLOWLORIS_CONNECTIONS = 500;
const SLOWLORIS_SECONDS = Number(process.env.SLOWLORIS_SECONDS ?? 15);
/** The server's header deadline in this test (the knob's default is 10 s). */
const HEADER_TIMEOUT_MS = 5_000;
const UPLOAD_STALL_MS = 1_000;
const MB = 1_000_000;

/**
 * One slowloris connection: a request line, then one more header byte every second, never
 * finishing the headers. When the server hangs up (its header deadline) it reconnects, as an
 * attacker would, until `stop()`. Counts how often it was cut off.
 */
class Slowloris {
  constructor(port) {
    this.port = port;
    this.stopped = false;
    this.cutOff = 0;
    this.socket = null;
    this.timer = null;
    this.connect();
  }

  connect() {
    if (this.stopped) return;
    const socket = net.connect(this.port, "127.0.0.1");
    this.socket = socket;
    socket.on("error", () => {});
    socket.on("connect", () => {
      socket.write("POST /api/query HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ");
      this.timer = setInterval(() => socket.write("a"), 1_000);
    });
    socket.on("close", () => {
      clearInterval(this.timer);
      if (this.stopped) return;
      this.cutOff += 1;
      // Reconnect a little later, so a refusal cannot become a busy loop.
      setTimeout(() => this.connect(), 100);
    });
  }

  stop() {
    this.stopped = true;
    clearInterval(this.timer);
    this.socket?.destroy();
  }
}

/** Runs `events:get` back to back for `ms`; returns every latency and every failure. */
async function queryFor(client, ms) {
  const latencies = [];
  const failures = [];
  const end = Date.now() + ms;
  while (Date.now() < end) {
    const started = performance.now();
    try {
      const events = await client.query(api.events.get, {});
      assert.ok(Array.isArray(events));
      latencies.push(performance.now() - started);
    } catch (error) {
      failures.push(String(error));
    }
    // A user, not a load generator: about 50 queries a second.
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return { latencies, failures };
}

function summary(latencies) {
  const round = (x) => Math.round(x * 100) / 100;
  return {
    queries: latencies.length,
    p50: round(percentile(latencies, 50)),
    p99: round(percentile(latencies, 99)),
    max: round(Math.max(...latencies)),
  };
}

describe("slow and greedy clients", () => {
  let issuer;
  let server;

  before(async () => {
    issuer = await startIssuer();
    server = await startServer({
      which: "tickethub",
      env: {
        CLERK_WEBHOOK_SECRET: newWebhookSecret(),
        CLERK_JWT_ISSUER_DOMAIN: issuer.issuer,
        TICKETHUB_HTTP_HEADER_READ_TIMEOUT: String(HEADER_TIMEOUT_MS),
        TICKETHUB_HTTP_UPLOAD_STALL_TIMEOUT: String(UPLOAD_STALL_MS),
      },
    });
  });

  after(async () => {
    await server?.cleanup();
    await issuer?.stop();
  });

  test("500 slowloris connections do not stop an official client's queries", async () => {
    const client = newClient(server);
    // Warm up, then the baseline: the same user with no slowloris around.
    await queryFor(client, 1_000);
    const baseline = await queryFor(client, SLOWLORIS_SECONDS * 1_000);
    assert.deepEqual(baseline.failures, []);

    const crowd = Array.from({ length: SLOWLORIS_CONNECTIONS }, () => new Slowloris(server.port));
    let loaded;
    try {
      // Let the crowd connect before measuring.
      await new Promise((resolve) => setTimeout(resolve, 1_000));
      loaded = await queryFor(client, SLOWLORIS_SECONDS * 1_000);
    } finally {
      crowd.forEach((s) => s.stop());
    }
    const cutOff = crowd.reduce((n, s) => n + s.cutOff, 0);
    assert.deepEqual(loaded.failures, [], "every query under slowloris succeeds");
    assert.ok(loaded.latencies.length > 0);
    // The header deadline, not the client, ended the trickles (each ran past it).
    if (SLOWLORIS_SECONDS * 1_000 > HEADER_TIMEOUT_MS * 1.5) {
      assert.ok(cutOff >= SLOWLORIS_CONNECTIONS, `only ${cutOff} trickles were cut off`);
    }

    const figures = {
      slowlorisConnections: SLOWLORIS_CONNECTIONS,
      seconds: SLOWLORIS_SECONDS,
      headerTimeoutMs: HEADER_TIMEOUT_MS,
      trickleCutOffs: cutOff,
      without: summary(baseline.latencies),
      withSlowloris: summary(loaded.latencies),
    };
    console.log(`slow clients: ${JSON.stringify(figures)}`);
    if (process.env.SLOW_CLIENTS_REPORT) {
      writeFileSync(process.env.SLOW_CLIENTS_REPORT, JSON.stringify(figures, null, 2) + "\n");
    }
  });

  test("a WebSocket client sending a 100 MB frame is cut off with 1009", async () => {
    const ws = new WebSocket(`ws://127.0.0.1:${server.port}/api/1.48.0/sync`);
    await new Promise((resolve, reject) => {
      ws.once("open", resolve);
      ws.once("error", reject);
    });
    const closed = new Promise((resolve) => ws.once("close", (code, reason) => resolve({ code, reason: String(reason) })));
    ws.on("error", () => {}); // The server hangs up while we are still sending: expected.
    ws.send(Buffer.alloc(100 * MB, "x"), { binary: false });
    const { code, reason } = await closed;
    assert.equal(code, 1009, `close code ${code} (${reason})`);
    assert.match(reason, /Message too big/);

    // The server still serves.
    const events = await newClient(server).query(api.events.get, {});
    assert.ok(Array.isArray(events));
  });

  test("an upload that stalls gets 408 BodyReadTimeout", async () => {
    const now = Math.floor(Date.now() / 1000);
    const token = await issuer.tokenFor("user_slow_upload", { iat: now - 5, nbf: now - 5, exp: now + 3600 });
    const uploader = newClient(server, { auth: token });
    const url = new URL(await uploader.mutation(api.storage.generateUploadUrl, {}));
    // Announce 1 MB, send 10 bytes, then nothing.
    const reply = await new Promise((resolve, reject) => {
      const socket = net.connect(Number(url.port), url.hostname);
      let raw = "";
      socket.on("error", reject);
      socket.on("data", (d) => (raw += d));
      socket.on("close", () => resolve(raw));
      socket.write(
        `POST ${url.pathname}${url.search} HTTP/1.1\r\nHost: ${url.host}\r\n` +
          `Content-Type: application/octet-stream\r\nContent-Length: ${MB}\r\n\r\n0123456789`,
      );
    });
    const [head, body] = reply.split("\r\n\r\n");
    // Seen once in CI (Postgres run): the socket closed at once with no answer. Say what the
    // server was doing, so a recurrence can be told apart from a slow or dead server.
    const state = server.child.exitCode === null && server.child.signalCode === null ? "running" : "exited";
    const why = `reply ${JSON.stringify(reply)}; the server is ${state}; its output ends:\n`;
    assert.match(head, /^HTTP\/1\.1 408/, why + server.output().slice(-4000));
    assert.equal(JSON.parse(body).code, "BodyReadTimeout", reply);

    const events = await newClient(server).query(api.events.get, {});
    assert.ok(Array.isArray(events));
  });
});
