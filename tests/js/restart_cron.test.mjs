// Restart: a cron that was due while the server was down runs once on start.
//
// The tickethub binary with the test clock. The Ticket Hub app's `cleanup-expired-offers`
// cron runs every minute; the server is SIGKILLed and started again with
// `--test-clock-skip 600000`, i.e. after ten minutes of (simulated) downtime in which ten
// runs were missed. Scheduled functions and crons are read through the built-in admin-only
// queries `_system/scheduler:list` and `_system/crons:list`.

import assert from "node:assert/strict";
import { after, describe, test } from "node:test";
import { startServer } from "./lib/server.mjs";
import { safeJson, withLogs } from "./lib/helpers.mjs";

const CRON_NAME = "cleanup-expired-offers";
// The canonical path the cron's job rows carry.
const CRON_PATH = "waitingList.js:cleanupExpiredOffers";
const INTERVAL_MS = 60_000;
const DOWNTIME_MS = 10 * INTERVAL_MS;

async function cronRow(server) {
  const rows = await server.adminRun("_system/crons:list", {});
  const row = rows.find((r) => r.name === CRON_NAME);
  assert.ok(row, `no ${CRON_NAME} in _system/crons:list: ${safeJson(rows)}`);
  return row;
}

/** The cron's successful runs, oldest first. */
async function cronRuns(server) {
  const rows = await server.adminRun("_system/scheduler:list", { state: "success" });
  for (const r of rows) {
    assert.equal(r.state.kind, "success", safeJson(r));
  }
  return rows.filter((r) => r.name === CRON_PATH).sort((a, b) => a.scheduledTime - b.scheduledTime);
}

describe("restart with a missed cron", { timeout: 300_000 }, () => {
  let server;

  after(async () => {
    await server?.cleanup();
  });

  test("runs the missed cron once, and test time does not go backwards", withLogs(async () => {
    server = await startServer({ which: "tickethub", testClock: true });

    // The system tables are visible to the admin only.
    const anonymous = await server.post("/api/query", { path: "_system/scheduler:list", args: {}, format: "json" });
    assert.notEqual(anonymous.json?.status, "success", `a client without the admin key read jobs: ${anonymous.text}`);

    // One interval passes while up: the cron runs (so "ran again" is told from "never ran").
    const started = await server.advanceTime(0);
    const first = await cronRow(server);
    assert.ok(first.nextRunMs > started - INTERVAL_MS, safeJson(first));
    await server.advanceTime(INTERVAL_MS);
    const runsBefore = await cronRuns(server);
    assert.ok(runsBefore.length >= 1, `the cron did not run while the server was up: ${safeJson(runsBefore)}`);
    const nowBeforeKill = await server.advanceTime(0);
    const dueBeforeKill = (await cronRow(server)).nextRunMs;
    // Ten runs fall into the downtime.
    assert.ok(dueBeforeKill + 9 * INTERVAL_MS <= nowBeforeKill + DOWNTIME_MS, `next run ${dueBeforeKill}, now ${nowBeforeKill}`);

    // Crash, then come back ten minutes later (by the test clock).
    await server.kill();
    const argsBefore = server.extraArgs;
    server.extraArgs = [...argsBefore, "--test-clock-skip", String(DOWNTIME_MS)];
    try {
      await server.restart();
    } finally {
      server.extraArgs = argsBefore;
    }

    const nowAfter = await server.advanceTime(0);
    assert.ok(
      nowAfter >= nowBeforeKill + DOWNTIME_MS,
      `test time went backwards across the restart: ${nowAfter} < ${nowBeforeKill} + ${DOWNTIME_MS}`,
    );

    const seen = new Set(runsBefore.map((r) => r._id));
    const newRuns = (await cronRuns(server)).filter((r) => !seen.has(r._id));
    assert.ok(newRuns.length >= 1, "the missed cron did not run after the restart");
    // Nothing was placed in the downtime (no catch-up of each missed slot) ...
    for (const r of newRuns) {
      assert.ok(r.scheduledTime >= nowBeforeKill + DOWNTIME_MS, `a run inside the downtime: ${safeJson(r)}`);
      assert.ok(r.completedTime >= r.scheduledTime, safeJson(r));
    }
    // ... and the ten missed runs became one. (A further run could only come from a whole
    // real interval passing since; it would be an interval after the first.)
    const coalesced = newRuns.filter((r) => r.scheduledTime < newRuns[0].scheduledTime + INTERVAL_MS);
    assert.equal(coalesced.length, 1, `missed runs did not coalesce into one: ${safeJson(newRuns)}`);

    // The cron's next run is in the future again. Re-read if a real-time run fell due between
    // the clock reading and the read.
    let cron;
    let now;
    for (let attempt = 0; attempt < 3; attempt++) {
      now = await server.advanceTime(0);
      cron = await cronRow(server);
      if (cron.nextRunMs > now) break;
    }
    assert.ok(cron.nextRunMs > now, `next run ${cron.nextRunMs} is not after now ${now}: ${safeJson(cron)}`);
    assert.ok(cron.lastRunMs >= nowBeforeKill + DOWNTIME_MS, safeJson(cron));
  }));
});
