// Retention soak: under a steady create-and-delete load, nothing grows without bound.
//
// The notes-server example with the test clock. Each step creates notes that delete themselves
// one second later through a scheduled `notes:remove` (`notes:addExpiring`), keeps one note for
// good now and then, and moves test time forward by STEP_MS; `advance_time` runs the due jobs
// and the purge. 900 steps are 30 minutes of test time, i.e. 900 retention periods of 2 s, in
// about two to three minutes of wall time. The time-based knobs are scaled with it: retention
// 2 s (`--scheduled-job-retention-ms`), a purge every second, store upkeep after 200 ms idle, and
// a WAL checkpoint every 1,000 pages, so each of them cycles hundreds of times in the run.
//
// Sampled every SAMPLE_EVERY steps: database + WAL bytes, the server's resident memory (VmRSS
// in /proc/<pid>/status) and the `_scheduled_functions` rows. After warm-up (the first third)
// each must stay flat, and at the end every acknowledged permanent note is read back through
// the official client while every expiring one is gone.
//
// On Postgres runs (TICKETHUB_TEST_DATABASE_URL) everything runs except the database-bytes check,
// a subtest that skips saying why: the figure is the SQLite file and its WAL (Postgres keeps its
// own files and vacuums them itself).
//
// RETENTION_SOAK_PURGE=off runs the counter-case (finished jobs kept for ten years) and skips
// the flatness checks; RETENTION_SOAK_OUT=<file> writes the samples as JSON (for
// bench/results/retention-soak.md). RETENTION_SOAK_STEPS overrides the step count.

import assert from "node:assert/strict";
import { statSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { after, describe, test } from "node:test";
import { anyApi } from "convex/server";
import { sqliteOnly, startServer } from "./lib/server.mjs";
import { newClient, safeJson, withLogs } from "./lib/helpers.mjs";

const api = anyApi;

const RETENTION_MS = 2_000;
const STEP_MS = 2_000;
const STEPS = Number(process.env.RETENTION_SOAK_STEPS ?? 900); // 900 × 2 s = 30 min test time
const NOTES_PER_STEP = 40;
const TTL_MS = 1_000;
const KEEP_EVERY = 5; // one permanent note every 5 steps
const CONCURRENCY = 8;
const SAMPLE_EVERY = 10;
const PURGE = process.env.RETENTION_SOAK_PURGE !== "off";

// Flatness after warm-up: the samples of the second half may exceed the one at the end of
// warm-up by at most this much (relative) or this many bytes, whichever is larger. Allocator and page-cache
// noise stays well inside; unbounded growth (the counter-case) does not.
const GROWTH_RATIO = 1.25;
const DISK_SLACK_BYTES = 2 << 20;
const RSS_SLACK_BYTES = 8 << 20;

function fileBytes(file) {
  try {
    return statSync(file).size;
  } catch {
    return 0;
  }
}

function diskBytes(dataDir) {
  const db = path.join(dataDir, "tickethub.sqlite3");
  return fileBytes(db) + fileBytes(`${db}-wal`);
}

function rssBytes(pid) {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const kib = Number(/^VmRSS:\s+(\d+)\s+kB/m.exec(status)?.[1]);
  assert.ok(Number.isFinite(kib), `no VmRSS in /proc/${pid}/status`);
  return kib * 1024;
}

/** Runs `fn` over `items` with at most `limit` in flight. */
async function forEachLimited(items, limit, fn) {
  let next = 0;
  const workers = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) {
      const item = items[next++];
      await fn(item);
    }
  });
  await Promise.all(workers);
}

/** One series at the end of warm-up (the first third) and its maximum over the last half. */
function warmedUpAndLate(samples, key) {
  const warmedUp = samples[Math.floor(samples.length / 3)][key];
  const late = Math.max(...samples.slice(Math.floor(samples.length / 2)).map((s) => s[key]));
  return [warmedUp, late];
}

function assertFlat(samples, key, slack) {
  const [warmedUp, late] = warmedUpAndLate(samples, key);
  const allowed = Math.max(warmedUp * GROWTH_RATIO, warmedUp + slack);
  assert.ok(
    late <= allowed,
    `${key} grew after warm-up: ${warmedUp} at its end, up to ${late} later (allowed ${Math.round(allowed)})\n` +
      safeJson(samples.map((s) => [s.step, s[key]])),
  );
}

describe("retention soak", { timeout: 900_000 }, () => {
  let server;

  after(async () => {
    await server?.cleanup();
  });

  test(`steady create-and-delete for ${STEPS} steps of ${STEP_MS} ms test time stays flat (purge ${PURGE ? "on" : "off"})`, withLogs(async (t) => {
    server = await startServer({
      which: "notes-server",
      testClock: true,
      extraArgs: ["--scheduled-job-retention-ms", String(PURGE ? RETENTION_MS : 10 * 365 * 24 * 3_600_000)],
      env: {
        TICKETHUB_SCHEDULED_JOB_PURGE_INTERVAL: "1000",
        TICKETHUB_STORE_IDLE_MAINTENANCE_AFTER: "200",
        TICKETHUB_WAL_AUTOCHECKPOINT_PAGES: "1000",
      },
    });
    const pid = server.child.pid;
    const clients = Array.from({ length: CONCURRENCY }, () => newClient(server));
    const kept = [];
    const expiring = [];
    const samples = [];
    const started = Date.now();
    let testNow = await server.advanceTime(0);
    const testStart = testNow;

    for (let step = 0; step < STEPS; step++) {
      const work = Array.from({ length: NOTES_PER_STEP }, (_, i) => ({ i, keep: i === 0 && step % KEEP_EVERY === 0 }));
      await forEachLimited(work, CONCURRENCY, async ({ i, keep }) => {
        const client = clients[i % CONCURRENCY];
        if (keep) {
          const text = `keep-${step}`;
          const id = await client.mutation(api.notes.add, { text });
          kept.push({ id, text });
        } else {
          const id = await client.mutation(api.notes.addExpiring, { text: `tmp-${step}-${i}`, ttlMs: TTL_MS });
          if (i === 1) expiring.push(id); // a sample to check afterwards
        }
      });
      testNow = await server.advanceTime(STEP_MS);
      if (step % SAMPLE_EVERY === SAMPLE_EVERY - 1 || step === STEPS - 1) {
        const scheduledRows = await server.adminRun("notes:scheduledRows", {});
        samples.push({
          step: step + 1,
          testMinutes: (testNow - testStart) / 60_000,
          wallSeconds: (Date.now() - started) / 1000,
          diskBytes: diskBytes(server.dataDir),
          rssBytes: rssBytes(pid),
          scheduledRows,
        });
      }
    }
    // Let the last expiries run.
    await server.advanceTime(STEP_MS);

    const summary = {
      purge: PURGE,
      steps: STEPS,
      testMinutes: (testNow - testStart) / 60_000,
      wallSeconds: (Date.now() - started) / 1000,
      mutations: STEPS * NOTES_PER_STEP,
      keptNotes: kept.length,
      samples,
    };
    if (process.env.RETENTION_SOAK_OUT) {
      writeFileSync(process.env.RETENTION_SOAK_OUT, JSON.stringify(summary, null, 2));
    }
    const last = samples[samples.length - 1];
    console.log(
      `retention soak (purge ${PURGE ? "on" : "off"}): ${STEPS} steps, ${summary.testMinutes.toFixed(1)} min test time in ` +
        `${summary.wallSeconds.toFixed(0)} s; disk ${samples[0].diskBytes} -> ${last.diskBytes} B, ` +
        `RSS ${samples[0].rssBytes} -> ${last.rssBytes} B, scheduled rows ${samples[0].scheduledRows} -> ${last.scheduledRows}`,
    );

    // Every acknowledged permanent note is there, read through the official client; the
    // expiring ones are gone.
    const reader = newClient(server);
    const notes = await reader.query(api.notes.list, {});
    const byId = new Map(notes.map((n) => [n._id, n]));
    for (const { id, text } of kept) {
      assert.equal(byId.get(id)?.text, text, `acknowledged note ${id} (${text}) is missing`);
    }
    assert.equal(notes.length, kept.length, `notes left besides the kept ones: ${notes.length - kept.length}`);
    for (const id of expiring.slice(-20)) {
      assert.equal(await reader.query(api.notes.get, { id }), null, `expiring note ${id} is still there`);
    }

    if (!PURGE) return;
    // Finished jobs live about one retention period plus one purge interval: a few steps' worth.
    const maxRows = Math.max(...samples.map((s) => s.scheduledRows));
    assert.ok(maxRows <= 10 * NOTES_PER_STEP, `_scheduled_functions held up to ${maxRows} rows`);
    assertFlat(samples, "rssBytes", RSS_SLACK_BYTES);
    await t.test("the database file and its WAL stay flat (incremental vacuum, WAL truncation)", (st) => {
      if (sqliteOnly(st, "the figure is the SQLite file and its WAL; Postgres vacuums its own files")) return;
      assertFlat(samples, "diskBytes", DISK_SLACK_BYTES);
    });
  }));
});
