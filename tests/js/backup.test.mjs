// Online backup and restore, end to end: the real tickethub binary serves a write load from the
// official convex client while `tickethub backup` copies its data dir; the backup is restored
// into a new data dir and a new server started on it. Every write acknowledged before the backup
// began must be there, PRAGMA integrity_check (python3's sqlite3) must say ok, and the stored
// files must be served with their bytes. Restore must refuse a data dir a server is using, one
// that already holds a database (without --force), and a backup without its manifest.
//
// Backup and restore copy the SQLite file, so on Postgres runs (TICKETHUB_TEST_DATABASE_URL)
// those tests skip, saying so; what runs on both is that a Postgres deployment's backup and
// restore refuse and point at pg_dump.
//
// Run: node --test tests/js/backup.test.mjs (TICKETHUB_BIN points at the binary).

import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { anyApi } from "convex/server";
import { binaryPath, liveServers, Server, sqliteOnly, startServer } from "./lib/server.mjs";
import { newClient } from "./lib/helpers.mjs";

const api = anyApi;
const DB_FILE = "tickethub.sqlite3";
const DAY_MS = 24 * 3600 * 1000;
const WRITERS = 8;

/** Runs `tickethub <args>`; resolves with {code, stdout, stderr}. */
function tickethub(args, env = {}) {
  return new Promise((resolve) => {
    const inherited = { ...process.env };
    delete inherited.DATABASE_URL;
    delete inherited.DATABASE_SCHEMA;
    const child = spawn(binaryPath("tickethub"), args, { stdio: ["ignore", "pipe", "pipe"], env: { ...inherited, RUST_BACKTRACE: "1", ...env } });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    child.on("exit", (code, signal) => resolve({ code: code ?? `signal ${signal}`, stdout, stderr }));
  });
}

const show = (r) => `exit ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`;

function eventArgs(i) {
  return {
    name: `Event ${i}`,
    description: `Backup load ${i} ${"d".repeat(400)}`,
    location: "Berlin",
    eventDate: Date.now() + 30 * DAY_MS,
    price: 10 + (i % 50),
    totalTickets: 100,
    userId: `organizer_${i % 7}`,
  };
}

async function upload(server, client, bytes) {
  const url = await client.mutation(api.storage.generateUploadUrl, {});
  const res = await fetch(url, { method: "POST", body: bytes, headers: { "Content-Type": "application/octet-stream" } });
  assert.equal(res.status, 200, await res.clone().text());
  return (await res.json()).storageId;
}

describe("online backup and restore", { timeout: 600_000 }, () => {
  let server;
  let restored;
  const dirs = [];
  const newDir = (label) => {
    const dir = mkdtempSync(path.join(tmpdir(), `tickethub-${label}-`));
    dirs.push(dir);
    return dir;
  };

  before(async () => {
    server = await startServer({ which: "tickethub" });
  });

  after(async () => {
    await server?.cleanup();
    await restored?.cleanup();
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  });

  test("a backup under write load restores every write acknowledged before it began", async (t) => {
    if (sqliteOnly(t, "tickethub backup copies the SQLite file; a Postgres deployment uses pg_dump (refusal tested below)")) return;
    const client = newClient(server);
    const files = [];
    for (let i = 0; i < 3; i++) {
      const bytes = randomBytes(200_000 + i * 1000);
      files.push({ bytes, storageId: await upload(server, client, bytes) });
    }
    // A base of data so the copy takes many steps.
    const acked = []; // {id, at}
    for (let i = 0; i < 400; i += 20) {
      const ids = await Promise.all(Array.from({ length: 20 }, (_, k) => client.mutation(api.events.create, eventArgs(i + k))));
      for (const id of ids) acked.push({ id, at: Date.now() });
    }

    // The load: WRITERS clients creating events one after another until told to stop.
    let stop = false;
    let failures = [];
    let n = 1_000_000;
    const writers = Array.from({ length: WRITERS }, async () => {
      const c = newClient(server);
      while (!stop) {
        try {
          const id = await c.mutation(api.events.create, eventArgs(n++));
          acked.push({ id, at: Date.now() });
        } catch (err) {
          failures.push(err.message);
        }
      }
    });
    await new Promise((r) => setTimeout(r, 500));

    const backupDir = path.join(newDir("backup"), "nightly");
    const began = Date.now();
    const ackedBefore = acked.filter((a) => a.at < began).map((a) => a.id);
    // Small steps with pauses: the copy spans many steps while the writers go on, so a restart
    // on every write (what the backup API does without the held snapshot) would never finish.
    const result = await tickethub(["backup", "--data-dir", server.dataDir, "--to", backupDir], {
      TICKETHUB_BACKUP_STEP_PAGES: "4",
      TICKETHUB_BACKUP_STEP_PAUSE: "20",
    });
    const ended = Date.now();
    await new Promise((r) => setTimeout(r, 300));
    stop = true;
    await Promise.all(writers);
    assert.equal(result.code, 0, show(result));
    assert.match(result.stdout, /tickethub backup: .* written in .*3 stored files/, show(result));
    assert.deepEqual(failures, [], "writes failed while the backup ran");
    const during = acked.filter((a) => a.at >= began && a.at <= ended).length;
    assert.ok(during > 20, `the server acknowledged only ${during} writes while the backup ran`);

    // The backup's shape: the database, the stored files, the manifest (written last).
    const manifest = JSON.parse(readFileSync(path.join(backupDir, "backup.json"), "utf8"));
    assert.equal(manifest.format, "tickethub-backup");
    assert.equal(manifest.storedFiles.count, 3);
    const integrity = execFileSync(
      "python3",
      ["-c", "import sqlite3, sys; print(sqlite3.connect(sys.argv[1]).execute('PRAGMA integrity_check').fetchone()[0])", path.join(backupDir, DB_FILE)],
      { encoding: "utf8" },
    ).trim();
    assert.equal(integrity, "ok");

    // Restore refuses the live server's data dir, whatever --force says.
    const inUse = await tickethub(["restore", "--from", backupDir, "--data-dir", server.dataDir, "--force"]);
    assert.notEqual(inUse.code, 0, show(inUse));
    assert.match(inUse.stderr, /is in use by another tickethub process \(pid \d+\)/, show(inUse));
    assert.doesNotMatch(inUse.stderr, /panicked/);

    // A backup without its manifest did not finish: refused.
    const half = newDir("half");
    copyFileSync(path.join(backupDir, DB_FILE), path.join(half, DB_FILE));
    const refusedHalf = await tickethub(["restore", "--from", half, "--data-dir", path.join(newDir("x"), "data")]);
    assert.notEqual(refusedHalf.code, 0, show(refusedHalf));
    assert.match(refusedHalf.stderr, /not a complete tickethub backup: it has no backup.json/, show(refusedHalf));

    // Restore into a new data dir.
    const target = path.join(newDir("restored"), "data");
    const ok = await tickethub(["restore", "--from", backupDir, "--data-dir", target]);
    assert.equal(ok.code, 0, show(ok));
    assert.match(ok.stdout, /integrity_check ok, 3 stored files/, show(ok));
    // Once more without --force: refused, the restored data untouched.
    const again = await tickethub(["restore", "--from", backupDir, "--data-dir", target]);
    assert.notEqual(again.code, 0, show(again));
    assert.match(again.stderr, /already holds a database; restore --force replaces it/, show(again));

    // A server on the restored data dir has every write acknowledged before the backup began.
    restored = new Server({
      bin: binaryPath("tickethub"),
      env: {},
      extraArgs: [],
      testClock: false,
      adminKey: `e2e-admin-${randomBytes(24).toString("hex")}`,
      dataDir: target,
      ownsDataDir: false,
      label: "restored",
    });
    liveServers.add(restored);
    await restored.start();
    const reader = newClient(restored);
    const present = new Set((await reader.query(api.events.get, {})).map((e) => e._id));
    const missing = ackedBefore.filter((id) => !present.has(id));
    assert.deepEqual(missing, [], `${missing.length} of ${ackedBefore.length} acknowledged writes are missing`);
    assert.ok(present.size >= ackedBefore.length);
    for (const { bytes, storageId } of files) {
      const url = await reader.query(api.storage.getUrl, { storageId });
      assert.ok(url, `no URL for ${storageId}`);
      const res = await fetch(url);
      assert.equal(res.status, 200);
      assert.ok(Buffer.from(await res.arrayBuffer()).equals(bytes), "a restored file's bytes differ");
    }
    // And it takes writes.
    await reader.mutation(api.events.create, eventArgs(-1));
    console.log(
      `backup: ${ackedBefore.length} writes acknowledged before it began, ${during} during it (${ended - began} ms), all ${ackedBefore.length} restored`,
    );
  });

  test("a single-file backup and restore --force over an existing database", async (t) => {
    if (sqliteOnly(t, "the single-file backup is the SQLite file itself")) return;
    const out = path.join(newDir("single"), "tickethub-backup.sqlite3");
    const r = await tickethub(["backup", "--data-dir", server.dataDir, "--to", out]);
    assert.equal(r.code, 0, show(r));
    assert.ok(existsSync(out));
    const again = await tickethub(["backup", "--data-dir", server.dataDir, "--to", out]);
    assert.notEqual(again.code, 0, "an existing target is never overwritten");
    assert.match(again.stderr, /already exists/, show(again));
    const target = newDir("force");
    mkdirSync(target, { recursive: true });
    copyFileSync(out, path.join(target, DB_FILE));
    const before = createHash("sha256").update(readFileSync(path.join(target, DB_FILE))).digest("hex");
    const refused = await tickethub(["restore", "--from", out, "--data-dir", target]);
    assert.notEqual(refused.code, 0, show(refused));
    assert.equal(createHash("sha256").update(readFileSync(path.join(target, DB_FILE))).digest("hex"), before);
    const forced = await tickethub(["restore", "--from", out, "--data-dir", target, "--force"]);
    assert.equal(forced.code, 0, show(forced));
    assert.deepEqual(readdirSync(target).filter((f) => f.endsWith(".restoring")), []);
  });

  // Runs on both backends: the refusal comes before any connection, so any Postgres URL shows it.
  test("backup and restore of a Postgres deployment refuse and point at pg_dump", async () => {
    const url = "postgres://tickethub:s3cret@127.0.0.1:1/app";
    const out = path.join(newDir("pg"), "backup");
    const backup = await tickethub(["backup", "--data-dir", server.dataDir, "--to", out, "--database-url", url, "--database-schema", "shop"]);
    assert.notEqual(backup.code, 0, show(backup));
    assert.match(backup.stderr, /tickethub backup works on the SQLite file.*pg_dump --format=custom --schema=shop/s, show(backup));
    assert.doesNotMatch(backup.stderr, /s3cret/, "the password is never printed");
    assert.equal(existsSync(out), false, "nothing was written");
    const restore = await tickethub(["restore", "--from", out, "--data-dir", newDir("pgr")], { DATABASE_URL: url });
    assert.notEqual(restore.code, 0, show(restore));
    assert.match(restore.stderr, /tickethub restore works on the SQLite file.*pg_restore/s, show(restore));
  });
});
