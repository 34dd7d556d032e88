// A damaged or foreign database file at start-up: the real tickethub binary is started on a data
// directory whose tickethub.sqlite3 is truncated, random bytes, empty, from a newer format, or
// another application's SQLite database. Each must give one line on stderr naming the file and
// what is wrong, a non-zero exit, no panic or backtrace (RUST_BACKTRACE=1 is set), and leave the
// file byte for byte as it was. The fixtures are made here: a real database by a real server,
// foreign ones with python3's sqlite3 module.
//
// The file is SQLite's: on Postgres runs (TICKETHUB_TEST_DATABASE_URL) every test skips, saying so.
//
// Run: node --test tests/js/damaged_file.test.mjs (TICKETHUB_BIN points at the binary).

import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, truncateSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { BACKEND, binaryPath, freePort, sqliteOnly, startServer } from "./lib/server.mjs";
import { newClient } from "./lib/helpers.mjs";

const DB_FILE = "tickethub.sqlite3";
const APPLICATION_ID = 0x7469636b; // "tick"

const SQLITE_ONLY = "a damaged or foreign SQLite database file; a Postgres deployment has none";

const sha256 = (file) => createHash("sha256").update(readFileSync(file)).digest("hex");

/** Runs python3 with a sqlite3 script on `file`; returns its stdout. */
function python(script, file) {
  return execFileSync("python3", ["-c", `import sqlite3, sys\n${script}`, file], { encoding: "utf8" });
}

/** Starts the binary on `dataDir` and waits for it to exit (it must, on a bad file). */
async function startExpectingFailure(dataDir) {
  const args = ["serve", "--host", "127.0.0.1", "--port", String(await freePort()), "--site-port", String(await freePort())];
  args.push("--data-dir", dataDir, "--admin-key", "e2e-admin-damaged-file-test-key-0123456789");
  const child = spawn(binaryPath("tickethub"), args, {
    env: { ...process.env, RUST_BACKTRACE: "1", RUST_LOG: "info" },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (d) => (stdout += d));
  child.stderr.on("data", (d) => (stderr += d));
  const timer = setTimeout(() => child.kill("SIGKILL"), 30_000);
  const code = await new Promise((resolve) => child.on("exit", (c, signal) => resolve(c ?? `signal ${signal}`)));
  clearTimeout(timer);
  return { code, stdout, stderr };
}

describe("a damaged or foreign database file at start-up", { timeout: 300_000 }, () => {
  let goodDb; // a real, cleanly closed tickethub database
  const dirs = [];

  const newDataDir = () => {
    const dir = mkdtempSync(path.join(tmpdir(), "tickethub-damaged-"));
    dirs.push(dir);
    return dir;
  };

  before(async () => {
    if (BACKEND !== "sqlite") return; // every test skips
    const server = await startServer({ which: "tickethub" });
    const admin = newClient(server, { admin: true });
    // Enough data for several pages, so truncating loses whole pages.
    for (let i = 0; i < 20; i++) {
      await admin.mutation("users:updateUser", { userId: `user_${i}`, name: `User ${i} ${"x".repeat(2000)}`, email: `u${i}@example.com` });
    }
    server.child.kill("SIGTERM"); // a clean stop checkpoints the WAL into the file
    const { code } = await server.exited;
    assert.equal(code, 0, server.output());
    goodDb = path.join(newDataDir(), DB_FILE);
    copyFileSync(path.join(server.dataDir, DB_FILE), goodDb);
    await server.cleanup();
    assert.equal(existsSync(`${path.join(server.dataDir, DB_FILE)}-wal`), false);
  });

  after(() => {
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  });

  const cases = [
    {
      name: "truncated to half its length",
      make: (file) => {
        copyFileSync(goodDb, file);
        truncateSync(file, Math.floor(readFileSync(file).length / 2));
      },
      says: /is truncated: it has \d+ bytes, but its header says \d+/,
    },
    {
      name: "truncated inside its header",
      make: (file) => writeFileSync(file, readFileSync(goodDb).subarray(0, 60)),
      says: /is truncated/,
    },
    { name: "random bytes", make: (file) => writeFileSync(file, randomBytes(256 * 1024)), says: /is not a SQLite database/ },
    { name: "empty (0 bytes)", make: (file) => writeFileSync(file, ""), says: /is empty \(0 bytes\)/ },
    {
      name: "from a newer format version",
      make: (file) => {
        copyFileSync(goodDb, file);
        python("c = sqlite3.connect(sys.argv[1]); c.execute('PRAGMA user_version = 99'); c.commit(); c.close()", file);
      },
      says: /has format version 99, newer than this tickethub understands \(1\)/,
    },
    {
      name: "another application's SQLite database",
      make: (file) =>
        python(
          "c = sqlite3.connect(sys.argv[1]); c.execute('CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)'); c.execute(\"INSERT INTO customers (name) VALUES ('Ada')\"); c.commit(); c.close()",
          file,
        ),
      says: /is a SQLite database but not tickethub's \(it has the tables customers\)/,
    },
    {
      name: "a SQLite database stamped with another application_id",
      make: (file) =>
        python("c = sqlite3.connect(sys.argv[1]); c.execute('PRAGMA application_id = 1234'); c.execute('CREATE TABLE t (x)'); c.commit(); c.close()", file),
      says: /of another application \(application_id 0x000004d2\)/,
    },
  ];

  for (const { name, make, says } of cases) {
    test(`${name}: one line naming the file, non-zero exit, no panic, file unchanged`, async (t) => {
      if (sqliteOnly(t, SQLITE_ONLY)) return;
      const dataDir = newDataDir();
      const file = path.join(dataDir, DB_FILE);
      make(file);
      const before = sha256(file);
      const { code, stdout, stderr } = await startExpectingFailure(dataDir);
      const context = `exit ${code}\nstdout:\n${stdout}\nstderr:\n${stderr}`;
      assert.notEqual(code, 0, context);
      assert.equal(typeof code, "number", `it must exit, not be killed: ${context}`);
      const lines = stderr.split("\n").filter((l) => l.trim() !== "");
      assert.equal(lines.length, 1, `exactly one line on stderr: ${context}`);
      assert.match(lines[0], /^tickethub: /, context);
      assert.ok(lines[0].includes(file), `the line names the file: ${context}`);
      assert.match(lines[0], says, context);
      assert.doesNotMatch(stderr + stdout, /panicked|stack backtrace|RUST_BACKTRACE/, context);
      assert.doesNotMatch(stdout, /listening/, context);
      assert.equal(sha256(file), before, "the file was changed");
      assert.equal(existsSync(`${file}-wal`) && readFileSync(`${file}-wal`).length > 0, false, "a WAL was written");
    });
  }

  test("a tickethub database from before the format stamp is stamped once and served", async (t) => {
    if (sqliteOnly(t, SQLITE_ONLY)) return;
    const dataDir = newDataDir();
    const file = path.join(dataDir, DB_FILE);
    copyFileSync(goodDb, file);
    python("c = sqlite3.connect(sys.argv[1]); c.execute('PRAGMA application_id = 0'); c.execute('PRAGMA user_version = 0'); c.commit(); c.close()", file);
    const read = () =>
      python("c = sqlite3.connect(sys.argv[1]); print(c.execute('PRAGMA application_id').fetchone()[0], c.execute('PRAGMA user_version').fetchone()[0]); c.close()", file).trim();
    assert.equal(read(), "0 0");
    const server = await startServer({ which: "tickethub" });
    try {
      // Reuse the harness on our directory: stop its own server, point it at ours.
      await server.kill();
      server.dataDir = dataDir;
      server.ownsDataDir = false;
      await server.restart();
      const user = await newClient(server, { admin: true }).query("users:getUserById", { userId: "user_7" });
      assert.equal(user?.email, "u7@example.com");
      server.child.kill("SIGTERM");
      await server.exited;
    } finally {
      await server.cleanup();
    }
    assert.equal(read(), `${APPLICATION_ID} 1`);
  });
});
