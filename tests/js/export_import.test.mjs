// `npx convex export` and `npx convex import` end to end: the real `convex` CLI binary of the
// pinned package, pointed at the real tickethub server with CONVEX_SELF_HOSTED_URL and
// CONVEX_SELF_HOSTED_ADMIN_KEY. Covers an export → import round trip into a fresh server (equal
// document for document, stored files included), a ZIP written here exactly as the snapshot
// format describes, JSONL / JSON / CSV imports with --append and --replace, and each bad input
// (path traversal, ZIP bomb, a line that is not an object, a schema violation, an _id of another
// table, a non-empty table without --replace): a clear message and nothing imported.

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { after, before, describe, test } from "node:test";
import { anyApi } from "convex/server";
import { strToU8, unzipSync, zipSync } from "fflate";
import { startServer } from "./lib/server.mjs";
import { startIssuer } from "./lib/oidc.mjs";
import { newUserId, newWebhookSecret } from "./lib/clerk.mjs";
import { newClient } from "./lib/helpers.mjs";

const api = anyApi;
const HERE = path.dirname(fileURLToPath(import.meta.url));
const CONVEX_BIN = path.join(HERE, "node_modules", ".bin", "convex");
const DAY_MS = 24 * 3600 * 1000;

/** Run the real `convex` CLI against `server`; resolves {code, stdout, stderr}. A spawn that
 * fails with ENOMEM (a busy shared machine) is retried a few times. */
async function convex(server, args, opts = {}) {
  for (let attempt = 0; ; attempt++) {
    try {
      return await convexOnce(server, args, opts);
    } catch (err) {
      if (err.code !== "ENOMEM" || attempt >= 5) throw err;
      await new Promise((r) => setTimeout(r, 1000 * (attempt + 1)));
    }
  }
}

function convexOnce(server, args, { cwd } = {}) {
  return new Promise((resolve, reject) => {
    const env = { ...process.env };
    for (const name of Object.keys(env)) if (name.startsWith("CONVEX_")) delete env[name];
    env.CONVEX_SELF_HOSTED_URL = server.url;
    env.CONVEX_SELF_HOSTED_ADMIN_KEY = server.adminKey;
    env.NO_COLOR = "1";
    const child = spawn(CONVEX_BIN, args, { cwd, env, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    const timer = setTimeout(() => child.kill("SIGKILL"), 120_000);
    child.on("error", reject);
    child.on("exit", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr, all: stdout + stderr });
    });
  });
}

async function mustSucceed(server, args, cwd) {
  const r = await convex(server, args, { cwd });
  assert.equal(r.code, 0, `convex ${args.join(" ")} failed:\n${r.all}\n--- server log ---\n${server.output().slice(-4000)}`);
  return r;
}

/** Export `server` with the CLI and return {tables: {name: [doc]}, storage: [row], files: {id: bytes}}. */
async function snapshotOf(server, dir, name) {
  const zipPath = path.join(dir, `${name}.zip`);
  await rm(zipPath, { force: true }); // the CLI refuses to overwrite
  await mustSucceed(server, ["export", "--path", zipPath, "--include-file-storage"], dir);
  return readSnapshot(await readFile(zipPath));
}

function readSnapshot(bytes) {
  const entries = unzipSync(new Uint8Array(bytes));
  const text = (name) => Buffer.from(entries[name]).toString("utf8");
  const lines = (name) => text(name).split("\n").filter((l) => l.trim() !== "").map((l) => JSON.parse(l));
  const tables = {};
  for (const { name } of lines("_tables/documents.jsonl")) {
    tables[name] = lines(`${name}/documents.jsonl`).sort((a, b) => (a._id < b._id ? -1 : 1));
    assert.equal(text(`${name}/generated_schema.jsonl`), '"uniform"\n', name);
  }
  const storage = entries["_storage/documents.jsonl"] ? lines("_storage/documents.jsonl") : [];
  const files = {};
  for (const row of storage) files[row._id] = Buffer.from(entries[`_storage/${row._id}`]);
  return { names: Object.keys(entries), raw: entries, tables, storage, files };
}

function count(snapshot, table) {
  return (snapshot.tables[table] ?? []).length;
}

describe("npx convex export / import", { timeout: 900_000 }, () => {
  let issuer, source, target, work;
  let organizer, O, storageId, fileBytes, seeded;

  before(async () => {
    issuer = await startIssuer();
    const env = { CLERK_WEBHOOK_SECRET: newWebhookSecret(), CLERK_JWT_ISSUER_DOMAIN: issuer.issuer };
    source = await startServer({ which: "tickethub", env });
    // The target refuses imports over 1 MiB uncompressed, so a small ZIP bomb shows the cap.
    target = await startServer({ which: "tickethub", env: { ...env, TICKETHUB_IMPORT_MAX_UNCOMPRESSED_BYTES: String(1 << 20) } });
    work = await mkdtemp(path.join(tmpdir(), "exim-e2e-"));
    // The CLI reads the project's package.json even for export and import.
    await writeFile(path.join(work, "package.json"), JSON.stringify({ name: "exim-e2e", private: true, dependencies: { convex: "1.48.0" } }));
    const now = () => Math.floor(Date.now() / 1000);
    O = newUserId();
    organizer = newClient(source, { auth: await issuer.tokenFor(O, { iat: now() - 5, nbf: now() - 5, exp: now() + 86400 }) });
  });

  after(async () => {
    await source?.cleanup();
    await target?.cleanup();
    await issuer?.close?.();
    if (work) await rm(work, { recursive: true, force: true });
  });

  test("a JSONL import seeds a table through the upload protocol and queryImport", async () => {
    const users = [];
    for (let i = 0; i < 50; i++) users.push({ name: `User ${i}`, email: `u${i}@example.com`, userId: i === 0 ? O : `user_${i}` });
    const file = path.join(work, "users.jsonl");
    await writeFile(file, users.map((u) => JSON.stringify(u)).join("\n") + "\n");
    const r = await mustSucceed(source, ["import", "--table", "users", file, "-y"], work);
    assert.match(r.all, /Added 50 documents to table "users"/, r.all);
  });

  test("export → import into a fresh server: equal document for document, with stored files", async () => {
    for (let i = 0; i < 5; i++) {
      await organizer.mutation(api.events.create, {
        name: `Event ${i}`,
        description: "d",
        location: "Berlin",
        eventDate: Date.now() + 30 * DAY_MS,
        price: 10.5 + i,
        totalTickets: 100,
        userId: O,
      });
    }
    const events = await organizer.query(api.events.get, {});
    fileBytes = randomBytes(200_000);
    const url = await organizer.mutation(api.storage.generateUploadUrl, {});
    const up = await fetch(url, { method: "POST", body: fileBytes, headers: { "Content-Type": "image/png" } });
    assert.equal(up.status, 200);
    storageId = (await up.json()).storageId;
    await organizer.mutation(api.storage.updateEventImage, { eventId: events[0]._id, storageId });

    seeded = await snapshotOf(source, work, "source");
    assert.equal(count(seeded, "users"), 50);
    assert.equal(count(seeded, "events"), 5);
    assert.deepEqual(seeded.storage.map((r) => r._id), [storageId]);
    assert.ok(seeded.files[storageId].equals(fileBytes));
    // Export JSON: a float64 always has a decimal point.
    const eventLine = Buffer.from(seeded.raw["events/documents.jsonl"]).toString("utf8").split("\n")[0];
    assert.match(eventLine, /"totalTickets":100\.0/, eventLine);
    assert.match(eventLine, /"_creationTime":\d+\.\d+/, eventLine);

    const r = await mustSucceed(target, ["import", path.join(work, "source.zip"), "-y"], work);
    assert.match(r.all, /Added \d+ documents/, r.all);
    const copied = await snapshotOf(target, work, "copied");
    for (const table of Object.keys(seeded.tables)) {
      assert.deepEqual(copied.tables[table], seeded.tables[table], `table ${table}`);
    }
    assert.deepEqual(copied.storage, seeded.storage);
    assert.ok(copied.files[storageId].equals(fileBytes));
    // The file is served under the same URL path by the new server.
    const admin = newClient(target, { admin: true });
    const targetUrl = await admin.query(api.storage.getUrl, { storageId });
    const served = Buffer.from(await (await fetch(targetUrl)).arrayBuffer());
    assert.ok(served.equals(fileBytes));
  });

  test("a ZIP written here in the snapshot layout imports, keeping _id and _creationTime", async () => {
    const kept = seeded.tables.users[0];
    const usersLines = [
      // uniform: export JSON, system fields kept
      JSON.stringify({ _id: kept._id, _creationTime: 1700000000000.5, name: "Kept", email: "kept@example.com", userId: "kept" }),
      JSON.stringify({ name: "Fresh", email: "fresh@example.com", userId: "fresh" }),
    ];
    const zip = zipSync({
      "README.md": strToU8("# hand written\n"),
      "_tables/documents.jsonl": strToU8(JSON.stringify({ name: "users", id: 10001 }) + "\n"),
      "users/documents.jsonl": strToU8(usersLines.join("\n") + "\n"),
      "users/generated_schema.jsonl": strToU8('"uniform"\n'),
    });
    const zipPath = path.join(work, "hand.zip");
    await writeFile(zipPath, zip);
    const r = await mustSucceed(target, ["import", zipPath, "--replace", "-y"], work);
    assert.match(r.all, /Added 2 documents/, r.all);
    const after = await snapshotOf(target, work, "after-hand");
    assert.equal(count(after, "users"), 2);
    const row = after.tables.users.find((u) => u.name === "Kept");
    assert.equal(row._id, kept._id);
    assert.equal(row._creationTime, 1700000000000.5);
    assert.equal(count(after, "events"), 5, "--replace leaves tables the ZIP does not hold");
  });

  test("JSON array and CSV imports, with --append and --replace", async () => {
    const json = path.join(work, "more.json");
    await writeFile(json, JSON.stringify([{ name: "J1", email: "j1@x", userId: "j1" }, { name: "J2", email: "j2@x", userId: "j2" }]));
    await mustSucceed(target, ["import", "--table", "users", "--append", json, "-y"], work);
    const csv = path.join(work, "users.csv");
    await writeFile(csv, "name,email,userId\nC1,c1@x,c1\nC2,c2@x,c2\nC3,c3@x,c3\n");
    await mustSucceed(target, ["import", "--table", "users", "--append", csv, "-y"], work);
    let snap = await snapshotOf(target, work, "appended");
    assert.equal(count(snap, "users"), 2 + 2 + 3);
    await mustSucceed(target, ["import", "--table", "users", "--replace", csv, "-y"], work);
    snap = await snapshotOf(target, work, "replaced");
    assert.deepEqual(snap.tables.users.map((u) => u.name).sort(), ["C1", "C2", "C3"]);
  });

  describe("bad input: a clear message, nothing imported", () => {
    const cases = [
      {
        what: "a ZIP with a path traversal entry",
        file: "traversal.zip",
        body: () => zipSync({ "../../evil/documents.jsonl": strToU8('{"name":"x","email":"x","userId":"x"}\n') }),
        args: ["--replace"],
        message: /unsafe path/,
      },
      {
        what: "a ZIP bomb (over the uncompressed cap)",
        file: "bomb.zip",
        body: () => zipSync({ "users/documents.jsonl": new Uint8Array(8 << 20).fill(32) }, { level: 9 }),
        args: ["--replace"],
        message: /larger than 1048576 bytes once uncompressed/,
      },
      {
        what: "a JSONL line that is not an object",
        file: "array-line.jsonl",
        body: () => '{"name":"a","email":"a","userId":"a"}\n[1,2,3]\n',
        args: ["--table", "users", "--replace"],
        message: /users\.jsonl line 2: not a JSON object/,
      },
      {
        what: "a document that violates the schema",
        file: "bad-row.jsonl",
        body: () => '{"name":"a","email":"a","userId":"a"}\n{"name":"b","userId":"b"}\n',
        args: ["--table", "users", "--replace"],
        message: /users\.jsonl line 2: .*schema/,
      },
      {
        what: "an _id of another table",
        file: "foreign-id.jsonl",
        body: () => JSON.stringify({ _id: seeded.tables.events[0]._id, name: "a", email: "a", userId: "a" }) + "\n",
        args: ["--table", "users", "--replace"],
        message: /users\.jsonl line 1: .*another table/,
      },
      {
        what: "an import into a non-empty table without --replace",
        file: "plain.jsonl",
        body: () => '{"name":"a","email":"a","userId":"a"}\n',
        args: ["--table", "users"],
        message: /Table "users" already has 3 documents\. Use --replace/,
      },
    ];
    for (const c of cases) {
      test(c.what, async () => {
        const before = await snapshotOf(target, work, "before-bad");
        const file = path.join(work, c.file);
        await writeFile(file, c.body());
        const r = await convex(target, ["import", ...c.args, file, "-y"], { cwd: work });
        assert.notEqual(r.code, 0, r.all);
        assert.match(r.all, c.message, r.all);
        const afterBad = await snapshotOf(target, work, "after-bad");
        assert.deepEqual(afterBad.tables, before.tables, "nothing was imported");
      });
    }
  });

  test("a wrong admin key is refused; an export already running is reported", async () => {
    const res = await fetch(`${target.url}/api/import/start_upload`, {
      method: "POST",
      headers: { Authorization: "Convex not-the-key" },
    });
    assert.equal(res.status, 403, await res.text());
    const legacy = await fetch(`${target.url}/api/import?tableName=users&format=jsonLines`, {
      method: "POST",
      headers: { Authorization: `Convex ${target.adminKey}` },
      body: "{}",
    });
    assert.equal(legacy.status, 400);
    assert.equal((await legacy.json()).code, "NotSupported");
  });
});
