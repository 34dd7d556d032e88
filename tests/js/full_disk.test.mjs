// A full disk, end to end: the real tickethub binary serves from a data dir on a small tmpfs
// (`mount -t tmpfs -o size=48m`; needs root or CAP_SYS_ADMIN, which CI has). The test fills the
// file system with a ballast file, then checks through the official convex client that:
// - mutations fail with the stable code StorageFull (HTTP client and WebSocket client), uploads
//   with 507 StorageFull;
// - queries and live queries keep serving, and the server does not exit;
// - once the ballast is removed, writes resume by themselves;
// - every acknowledged write is there, also after a kill -9 and restart.
// Without the mount the test FAILS (it never skips): a full disk must be tested somewhere.
// On Postgres runs (TICKETHUB_TEST_DATABASE_URL) it skips, saying so: the documents are not on
// the data dir's disk there (the SQLite run tests the full disk).
//
// Run (as root): node --test tests/js/full_disk.test.mjs

import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { closeSync, mkdtempSync, openSync, rmSync, unlinkSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { anyApi } from "convex/server";
import { BACKEND, binaryPath, liveServers, Server, sqliteOnly } from "./lib/server.mjs";
import { newClient, waitFor } from "./lib/helpers.mjs";
import { closeAll, openClient, watch } from "./lib/sync.mjs";

const api = anyApi;
const DAY_MS = 24 * 3600 * 1000;
const TMPFS_SIZE = "48m";
/** Large enough that a few hundred fill the file system quickly. */
const DESCRIPTION = "x".repeat(16_000);

function eventArgs(i, description = DESCRIPTION) {
  return {
    name: `Event ${i}`,
    description,
    location: "Lisbon",
    eventDate: Date.now() + 30 * DAY_MS,
    price: 20,
    totalTickets: 50,
    userId: "organizer",
  };
}

/** Writes zeros to `file` until the file system refuses (ENOSPC); returns the bytes written. */
function fillDisk(file) {
  const fd = openSync(file, "w");
  let written = 0;
  try {
    for (const size of [1 << 20, 64 << 10, 4 << 10, 512]) {
      const chunk = Buffer.alloc(size);
      for (;;) {
        try {
          written += writeSync(fd, chunk);
        } catch (err) {
          if (err.code === "ENOSPC") break;
          throw err;
        }
      }
    }
  } finally {
    closeSync(fd);
  }
  return written;
}

const isStorageFull = (err) => /StorageFull/.test(String(err?.message));

describe("a full disk", { timeout: 600_000 }, () => {
  let mountPoint;
  let server;
  const clients = [];

  before(async () => {
    if (BACKEND !== "sqlite") return; // the test skips
    mountPoint = mkdtempSync(path.join(tmpdir(), "tickethub-full-disk-"));
    try {
      execFileSync("mount", ["-t", "tmpfs", "-o", `size=${TMPFS_SIZE}`, "tmpfs", mountPoint], { stdio: "pipe" });
    } catch (err) {
      rmSync(mountPoint, { recursive: true, force: true });
      mountPoint = null;
      assert.fail(
        `full_disk.test.mjs needs root (CAP_SYS_ADMIN) to mount a ${TMPFS_SIZE} tmpfs as the data dir; ` +
          `mount failed: ${err.stderr?.toString().trim() || err.message}. Run it as root (CI does).`,
      );
    }
    server = new Server({
      bin: binaryPath("tickethub"),
      env: {},
      extraArgs: [],
      testClock: false,
      adminKey: `e2e-admin-${randomBytes(24).toString("hex")}`,
      dataDir: path.join(mountPoint, "data"),
      ownsDataDir: false,
      label: "tickethub-full-disk",
    });
    liveServers.add(server);
    await server.start();
  });

  after(async () => {
    await closeAll(clients);
    await server?.cleanup();
    if (mountPoint) {
      try {
        execFileSync("umount", [mountPoint], { stdio: "pipe" });
      } catch (err) {
        console.error(`umount ${mountPoint}: ${err.message}`);
      }
      rmSync(mountPoint, { recursive: true, force: true });
    }
  });

  test("StorageFull while full, reads keep serving, writes resume once space is freed, nothing acknowledged is lost", async (t) => {
    if (sqliteOnly(t, "fills the data dir's disk, where only SQLite keeps the documents; Postgres keeps them on its own server")) return;
    const http = newClient(server);
    const acked = [];
    for (let i = 0; i < 10; i++) acked.push(await http.mutation(api.events.create, eventArgs(i, "before the disk filled")));
    // Some megabytes first, so the WAL has grown and been checkpointed: a full disk then meets
    // space SQLite already owns before it meets the end.
    for (let i = 0; i < 300; i += 30) {
      acked.push(...(await Promise.all(Array.from({ length: 30 }, (_, k) => http.mutation(api.events.create, eventArgs(100 + i + k))))));
    }
    const ws = openClient(server, { label: "ws" });
    clients.push(ws);
    const live = watch(ws, "events:getById", { eventId: acked[0] });
    await live.until((e) => e?.name === "Event 0");

    const ballast = path.join(mountPoint, "ballast");
    const filled = fillDisk(ballast);
    console.log(`ballast: ${(filled / 2 ** 20).toFixed(1)} MiB`);

    // Writes go on while SQLite still has room it already owns (free pages, WAL space); then
    // StorageFull. Eight writers at once, so batches of several mutations fail together. Every
    // write the server acknowledged is recorded.
    let firstFailure = null;
    let n = 1000;
    const otherErrors = [];
    await Promise.all(
      Array.from({ length: 8 }, async () => {
        const c = newClient(server);
        for (let attempt = 0; attempt < 2000 && !firstFailure; attempt++) {
          try {
            acked.push(await c.mutation(api.events.create, eventArgs(n++)));
          } catch (err) {
            if (isStorageFull(err)) firstFailure ??= err;
            else otherErrors.push(err.message);
          }
        }
      }),
    );
    assert.deepEqual(otherErrors, [], "failures other than StorageFull");
    assert.ok(firstFailure, "mutations never failed on a full disk");
    assert.ok(isStorageFull(firstFailure), `expected StorageFull, got: ${firstFailure.message}`);
    assert.doesNotMatch(firstFailure.message, /sqlite|No space left|os error|\/tmp\//i, "no internals in the message");
    console.log(`full after ${acked.length} acknowledged writes: ${firstFailure.message}`);

    // It stays refused, with the same code, through both clients.
    await assert.rejects(http.mutation(api.events.create, eventArgs(n++)), isStorageFull);
    await assert.rejects(ws.mutation(api.events.create, eventArgs(n++)), (err) => {
      assert.match(err.message, /StorageFull/);
      return true;
    });
    // An upload is refused with 507 StorageFull, and leaves nothing behind.
    const uploadUrl = await http.mutation(api.storage.generateUploadUrl, {});
    const up = await fetch(uploadUrl, { method: "POST", body: randomBytes(2 << 20) });
    const upBody = await up.text();
    assert.equal(up.status, 507, upBody);
    assert.equal(JSON.parse(upBody).code, "StorageFull", upBody);

    // Queries and live queries keep serving; the server is still up.
    const some = acked[acked.length - 1];
    assert.equal((await http.query(api.events.getById, { eventId: some }))?._id, some);
    assert.equal((await ws.query(api.events.getById, { eventId: acked[1] }))?._id, acked[1]);
    const second = watch(ws, "events:getById", { eventId: some });
    assert.equal((await second.until((e) => e?._id === some))._id, some);
    assert.equal(server.child.exitCode, null, "the server exited");

    // Free the space: writes resume without a restart.
    unlinkSync(ballast);
    const resumed = await waitFor(
      async () => {
        try {
          return await http.mutation(api.events.create, eventArgs(n++, "after the disk was freed"));
        } catch (err) {
          if (!isStorageFull(err)) throw err;
          return null;
        }
      },
      { timeoutMs: 30_000, what: "writes to resume after freeing space" },
    );
    acked.push(resumed);
    // Through the WebSocket too, and the live query sees it.
    await ws.mutation(api.events.updateEvent, {
      eventId: acked[0],
      name: "Event 0 renamed",
      description: "after the disk was freed",
      location: "Lisbon",
      eventDate: Date.now() + 30 * DAY_MS,
      price: 20,
      totalTickets: 50,
    });
    await live.until((e) => e?.name === "Event 0 renamed", { what: "the live query to see a write made after freeing space" });

    const checkAll = async (client, when) => {
      for (let i = 0; i < acked.length; i += 50) {
        const batch = acked.slice(i, i + 50);
        const docs = await Promise.all(batch.map((eventId) => client.query(api.events.getById, { eventId })));
        const missing = batch.filter((id, k) => docs[k]?._id !== id);
        assert.deepEqual(missing, [], `acknowledged writes missing ${when}`);
      }
    };
    await checkAll(http, "while serving");
    // And after a crash: what was acknowledged was durable.
    await closeAll(clients);
    await server.restart();
    await checkAll(newClient(server), "after kill -9 and restart");
    console.log(`all ${acked.length} acknowledged writes present after freeing space and after a restart`);
    assert.doesNotMatch(server.output(), /panicked/);
  });
});
