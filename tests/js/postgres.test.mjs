// Durability on PostgreSQL, end to end: the real tickethub binary with `--database-url`, under a
// write load from several official ConvexHttpClient writers.
// - kill -9 of tickethub under load, restart: every acknowledged write is there;
// - `tests/pg-cluster restart-immediate` (pg_ctl restart -m immediate: Postgres crashes and
//   recovers from its WAL) while tickethub serves: callers get clear errors with a stable code
//   during the gap, tickethub recovers by itself, and every acknowledged write is there;
// - two `tickethub serve` on one database and schema (different data dirs): the second cannot
//   write (DatabaseInUse), and the first's data is intact.
//
// RUNS ONLY ON POSTGRES RUNS: with TICKETHUB_TEST_DATABASE_URL set (tests/run sets it, with a
// throwaway cluster from tests/pg-cluster, and TICKETHUB_TEST_PG_DIR, that cluster's directory,
// which the restart test needs). Without it every test here skips and says so.
//
// Run: TICKETHUB_TEST_DATABASE_URL=$(tests/pg-cluster start /tmp/pg) TICKETHUB_TEST_PG_DIR=/tmp/pg \
//        node --test tests/js/postgres.test.mjs

import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { after, describe, test } from "node:test";
import { anyApi } from "convex/server";
import { BACKEND, startServer } from "./lib/server.mjs";
import { newClient, waitFor, withLogs } from "./lib/helpers.mjs";

const api = anyApi;
const run = promisify(execFile);
const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const PG_CLUSTER = path.join(REPO_ROOT, "tests", "pg-cluster");
const PG_DIR = process.env.TICKETHUB_TEST_PG_DIR || null;
const DAY_MS = 24 * 3600 * 1000;
const WRITERS = 8;

/** The codes a caller may see while Postgres is away: each says "retry", none is a bug. */
const GAP_CODES = /\b(DatabaseUnavailable|ServerOverloaded)\b/;

function postgresOnly(t) {
  if (BACKEND === "postgres") return false;
  t.skip("Postgres only: set TICKETHUB_TEST_DATABASE_URL (tests/run does, with tests/pg-cluster)");
  return true;
}

function eventArgs(i) {
  return {
    name: `Event ${i}`,
    description: `Postgres durability ${i}`,
    location: "Vienna",
    eventDate: Date.now() + 30 * DAY_MS,
    price: 10 + (i % 40),
    totalTickets: 100,
    userId: `organizer_${i % 5}`,
  };
}

/**
 * WRITERS clients creating events one after another until `stop()`. Every acknowledged id is
 * kept with its time; every failure with its time and message.
 */
function writeLoad(server) {
  const acked = [];
  const failures = [];
  let stopped = false;
  let n = 0;
  const loops = Array.from({ length: WRITERS }, async () => {
    const client = newClient(server);
    while (!stopped) {
      const i = n++;
      try {
        const id = await client.mutation(api.events.create, eventArgs(i));
        acked.push({ id, at: Date.now() });
      } catch (err) {
        failures.push({ at: Date.now(), message: String(err?.message ?? err) });
        // A refused call is answered at once; do not spin.
        await new Promise((r) => setTimeout(r, 20));
      }
    }
  });
  return {
    acked,
    failures,
    async stop() {
      stopped = true;
      await Promise.all(loops);
    },
  };
}

/** Every acknowledged id must be readable (through the official client). */
async function assertAllPresent(server, acked, what) {
  const reader = newClient(server);
  const present = new Set((await reader.query(api.events.get, {})).map((e) => e._id));
  const missing = acked.filter(({ id }) => !present.has(id));
  assert.deepEqual(
    missing.map((m) => m.id),
    [],
    `${missing.length} of ${acked.length} acknowledged writes are missing ${what}`,
  );
  return present.size;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

describe("durability on PostgreSQL", { timeout: 600_000 }, () => {
  const servers = [];
  after(async () => {
    for (const server of servers) await server.cleanup();
  });

  test("kill -9 under write load loses no acknowledged write", withLogs(async (t) => {
    if (postgresOnly(t)) return;
    const server = await startServer({ which: "tickethub" });
    servers.push(server);
    const load = writeLoad(server);
    await waitFor(() => load.acked.length >= 400, { timeoutMs: 60_000, what: "400 acknowledged writes" });
    await server.kill();
    await load.stop();
    // Nothing can be acknowledged after the kill: these are all the acknowledged writes.
    const acked = [...load.acked];

    await server.restart();
    const total = await assertAllPresent(server, acked, "after kill -9 and restart");
    // And it takes writes again.
    const id = await newClient(server).mutation(api.events.create, eventArgs(-1));
    assert.ok(id);
    console.log(`kill -9: ${acked.length} writes acknowledged before the kill, all ${acked.length} there after the restart (${total} events)`);
  }));

  test("a Postgres crash-restart under load: clear errors in the gap, recovery by itself, nothing acknowledged lost", withLogs(async (t) => {
    if (postgresOnly(t)) return;
    if (!PG_DIR) {
      t.skip("needs TICKETHUB_TEST_PG_DIR, the tests/pg-cluster directory of the cluster to restart (tests/run sets it)");
      return;
    }
    const server = await startServer({ which: "tickethub" });
    servers.push(server);
    const load = writeLoad(server);
    await waitFor(() => load.acked.length >= 200, { timeoutMs: 60_000, what: "200 acknowledged writes" });

    // Reads during the gap too, from a client of their own.
    const readErrors = [];
    let reading = true;
    const reader = (async () => {
      const client = newClient(server);
      while (reading) {
        try {
          await client.query(api.events.getById, { eventId: load.acked[0].id });
        } catch (err) {
          readErrors.push(String(err?.message ?? err));
        }
        await sleep(50);
      }
    })();

    const gapStart = Date.now();
    await run(PG_CLUSTER, ["restart-immediate", PG_DIR]);
    const gapEnd = Date.now();
    // tickethub must come back by itself: no restart of tickethub, only waiting.
    const recoveredAt = await waitFor(
      async () => {
        await newClient(server).mutation(api.events.create, eventArgs(-2));
        return Date.now();
      },
      { timeoutMs: 60_000, intervalMs: 200, what: "a write to succeed after the Postgres restart" },
    );
    // Some more load after recovery, then stop.
    const ackedAtRecovery = load.acked.length;
    await waitFor(() => load.acked.length >= ackedAtRecovery + 100, { timeoutMs: 60_000, what: "writes to flow again" });
    reading = false;
    await reader;
    await load.stop();

    assert.equal(server.child.exitCode, null, `tickethub exited during the Postgres restart:\n${server.output().slice(-3000)}`);
    const gapFailures = load.failures.filter((f) => f.at >= gapStart);
    assert.ok(gapFailures.length > 0, "no write failed while Postgres was down: the test did not hit the gap");
    // Every failure, of writes and reads, names a stable "retry" code; none is a generic 500.
    const unclear = [...gapFailures.map((f) => f.message), ...readErrors].filter((m) => !GAP_CODES.test(m));
    assert.deepEqual(unclear.slice(0, 5), [], `${unclear.length} errors without a stable retry code`);
    const counts = {};
    for (const m of [...gapFailures.map((f) => f.message), ...readErrors]) {
      const code = m.match(GAP_CODES)?.[1];
      counts[code] = (counts[code] ?? 0) + 1;
    }

    await assertAllPresent(server, load.acked, "after the Postgres crash-restart");
    console.log(
      `postgres restart -m immediate: gap ${gapEnd - gapStart} ms (pg_ctl), writes again ${recoveredAt - gapEnd} ms after it; ` +
        `${gapFailures.length} writes and ${readErrors.length} reads refused with ${JSON.stringify(counts)}; ` +
        `all ${load.acked.length} acknowledged writes there`,
    );
  }));

  test("a second tickethub on the same database and schema cannot write, and nothing is corrupted", withLogs(async (t) => {
    if (postgresOnly(t)) return;
    const first = await startServer({ which: "tickethub" });
    servers.push(first);
    const client = newClient(first);
    const acked = [];
    for (let i = 0; i < 50; i++) acked.push({ id: await client.mutation(api.events.create, eventArgs(i)) });

    // The same database and schema, its own data dir.
    let second = null;
    let refusal = null;
    try {
      second = await startServer({ which: "tickethub", database: first.database });
      servers.push(second);
    } catch (err) {
      refusal = String(err.message);
    }
    if (refusal !== null) {
      // It refused to start, saying why.
      assert.match(refusal, /DatabaseInUse/, refusal);
      assert.match(refusal, /exited before becoming ready \(\{"code":1/, refusal);
      assert.doesNotMatch(refusal, /panicked/);
    } else {
      // It serves, but every write is refused with the code, and nothing it tried lands.
      const err = await newClient(second)
        .mutation(api.events.create, eventArgs(-3))
        .then(() => null, (e) => String(e.message));
      assert.ok(err, "the second server wrote to a database the first one holds");
      assert.match(err, /DatabaseInUse|WriterFenced/, err);
    }

    // The first goes on, and has everything.
    for (let i = 50; i < 60; i++) acked.push({ id: await client.mutation(api.events.create, eventArgs(i)) });
    const count = await assertAllPresent(first, acked, "on the first server");
    assert.equal(count, acked.length, "only the first server's writes are there");

    // Once the first stops cleanly, another one may take over and sees all of it.
    first.child.kill("SIGTERM");
    const { code } = await first.exited;
    assert.equal(code, 0, first.output().slice(-3000));
    const next = second ?? (await startServer({ which: "tickethub", database: first.database }));
    if (second) await next.restart();
    else servers.push(next);
    assert.equal(await assertAllPresent(next, acked, "on the server that took over"), acked.length);
    await newClient(next).mutation(api.events.create, eventArgs(-4));
    console.log(`two servers on one schema: the second ${refusal !== null ? "refused to start" : "refused every write"} (DatabaseInUse); all ${acked.length} writes intact`);
  }));
});
