// Spawns one of the real server binaries on loopback and manages its lifetime.
//
// Each server gets free ports, a fresh temporary data directory and a random admin
// key. Its stdout/stderr are kept so a failing test can show what the server said.
// `kill()` is a SIGKILL (a crash, not a clean shutdown); `restart()` starts the same
// binary again on the same ports and data directory.
//
// The storage backend: with TICKETHUB_TEST_DATABASE_URL set (tests/run sets it for the
// Postgres half of the suite), every server keeps its documents in that PostgreSQL database,
// each in a fresh schema of its own (`--database-schema`), which its restarts keep: tests never
// see each other's data. Unset, servers use SQLite in their data dir. A test that can only run on
// one backend says so with `sqliteOnly(t, why)`.

import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import net from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../..");

/** The PostgreSQL URL the servers use, or null for SQLite (see the top of this file). */
export const TEST_DATABASE_URL = process.env.TICKETHUB_TEST_DATABASE_URL || null;
/** Which backend this run's servers use. */
export const BACKEND = TEST_DATABASE_URL ? "postgres" : "sqlite";

/**
 * Skips the test on Postgres, saying why (a test that needs the SQLite file itself: its backup,
 * its damage, its disk). Returns true when skipped: `if (sqliteOnly(t, "...")) return;`.
 */
export function sqliteOnly(t, why) {
  if (BACKEND === "sqlite") return false;
  t.skip(`SQLite only: ${why}`);
  return true;
}

let schemaCounter = 0;
/**
 * A fresh Postgres schema name for one server: unique across test processes (pid, random) and
 * within one (counter); lower-case letters, digits and _ as `--database-schema` wants.
 */
export function freshSchemaName(prefix = "e2e") {
  schemaCounter += 1;
  return `${prefix}_${process.pid}_${schemaCounter}_${randomBytes(4).toString("hex")}`;
}

/** The database a new server gets: a fresh schema on Postgres runs, null (SQLite) otherwise. */
export function testDatabase() {
  return TEST_DATABASE_URL ? { url: TEST_DATABASE_URL, schema: freshSchemaName() } : null;
}

/** `--database-url` / `--database-schema` for a server or CLI command on `database`. */
export function databaseArgs(database) {
  return database ? ["--database-url", database.url, "--database-schema", database.schema] : [];
}

/** Path of a release binary, overridable through the environment (tests/run sets these). */
export function binaryPath(which) {
  const envName = which === "tickethub" ? "TICKETHUB_BIN" : "NOTES_BIN";
  const fromEnv = process.env[envName];
  const bin = fromEnv && fromEnv.length > 0 ? fromEnv : path.join(REPO_ROOT, "target", "release", which);
  if (!existsSync(bin)) {
    throw new Error(
      `server binary not found at ${bin}; build it with 'cargo build --release --workspace --bins' ` +
        `or point ${envName} at it`,
    );
  }
  return bin;
}

/** Asks the kernel for a currently free loopback port. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/** Servers started and not yet cleaned up (for failure messages). */
export const liveServers = new Set();

// A test process that dies (timeout, Ctrl-C, uncaught error) must not leave servers
// behind holding ports and CPU.
function killAllSync() {
  for (const server of liveServers) {
    try {
      server.child?.kill("SIGKILL");
    } catch {
      // already gone
    }
  }
}
process.once("exit", killAllSync);
for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"]) {
  process.once(signal, () => {
    killAllSync();
    process.exit(128 + (signal === "SIGINT" ? 2 : signal === "SIGTERM" ? 15 : 1));
  });
}

const READY_TIMEOUT_MS = 60_000;
const MAX_OUTPUT_CHARS = 200_000;

export class Server {
  constructor({ bin, env, extraArgs, testClock, adminKey, dataDir, ownsDataDir, label, database = null }) {
    this.bin = bin;
    // {url, schema} on Postgres (kept across restarts: the same schema is the same deployment),
    // null for SQLite in the data dir.
    this.database = database;
    this.env = env;
    this.extraArgs = extraArgs;
    this.testClock = testClock;
    this.adminKey = adminKey;
    this.dataDir = dataDir;
    this.ownsDataDir = ownsDataDir;
    this.label = label;
    this.port = 0;
    this.sitePort = 0;
    this.child = null;
    this.exited = null; // Promise resolving to {code, signal} once the current child exits.
    this.log = "";
    this.generation = 0;
  }

  /** Base URL of the API port (what ConvexHttpClient takes). */
  get url() {
    return `http://127.0.0.1:${this.port}`;
  }

  /** Base URL of the HTTP-actions (site) port. */
  get siteUrl() {
    return `http://127.0.0.1:${this.sitePort}`;
  }

  /** Everything the server printed so far (all runs), for failure messages. */
  output() {
    return this.log;
  }

  _append(text) {
    this.log += text;
    if (this.log.length > MAX_OUTPUT_CHARS) {
      this.log = this.log.slice(this.log.length - MAX_OUTPUT_CHARS);
    }
  }

  _spawn() {
    const args = [
      "serve",
      "--port",
      String(this.port),
      "--site-port",
      String(this.sitePort),
      "--host",
      "127.0.0.1",
      "--data-dir",
      this.dataDir,
      "--admin-key",
      this.adminKey,
    ];
    args.push(...databaseArgs(this.database));
    if (this.testClock) args.push("--test-clock");
    args.push(...this.extraArgs);
    this.generation += 1;
    this.runLogStart = this.log.length;
    this._append(`\n=== [${this.label}] start #${this.generation}: ${this.bin} ${args.join(" ")}\n`);
    const child = spawn(this.bin, args, {
      env: this._childEnv(),
      stdio: ["ignore", "pipe", "pipe"],
    });
    child.stdout.setEncoding("utf8");
    child.stderr.setEncoding("utf8");
    child.stdout.on("data", (d) => this._append(d));
    child.stderr.on("data", (d) => this._append(d));
    this.child = child;
    this.exited = new Promise((resolve) => {
      child.on("exit", (code, signal) => {
        this._append(`=== [${this.label}] exited code=${code} signal=${signal}\n`);
        resolve({ code, signal });
      });
      child.on("error", (err) => {
        this._append(`=== [${this.label}] spawn error: ${err.message}\n`);
        resolve({ code: -1, signal: null, error: err });
      });
    });
  }

  // The inherited environment minus any Clerk, Stripe or tickethub settings of the developer's
  // shell: a test states exactly which of them its server gets.
  _childEnv() {
    const env = { ...process.env, RUST_BACKTRACE: "1" };
    delete env.CLERK_WEBHOOK_SECRET;
    delete env.CLERK_JWT_ISSUER_DOMAIN;
    delete env.STRIPE_WEBHOOK_SECRET;
    // The database comes from `this.database` alone, never from the developer's shell.
    delete env.DATABASE_URL;
    delete env.DATABASE_SCHEMA;
    for (const name of Object.keys(env)) if (name.startsWith("TICKETHUB_")) delete env[name];
    return { ...env, ...this.env };
  }

  async _waitReady() {
    const deadline = Date.now() + READY_TIMEOUT_MS;
    let exitInfo = null;
    this.exited.then((info) => {
      exitInfo = info;
    });
    while (Date.now() < deadline) {
      if (exitInfo) {
        throw new Error(
          `[${this.label}] exited before becoming ready (${JSON.stringify(exitInfo)}). Output:\n${this.log}`,
        );
      }
      try {
        const res = await fetch(`${this.url}/instance_name`, { signal: AbortSignal.timeout(2_000) });
        await res.arrayBuffer();
        if (res.status === 200) return;
      } catch {
        // not listening yet
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`[${this.label}] not ready after ${READY_TIMEOUT_MS} ms. Output:\n${this.log}`);
  }

  async start() {
    // Another process may grab a port between our probe and the server's bind; if the
    // first attempt dies early, try once more with fresh ports.
    for (let attempt = 0; ; attempt++) {
      if (this.port === 0 || attempt > 0) {
        this.port = await freePort();
        this.sitePort = await freePort();
        while (this.sitePort === this.port) this.sitePort = await freePort();
      }
      this._spawn();
      try {
        await this._waitReady();
        return this;
      } catch (err) {
        await this._killChild();
        if (attempt >= 1 || !this._bindFailed()) throw err;
      }
    }
  }

  _bindFailed() {
    return /address already in use|addrinuse|failed to bind|could not bind/i.test(this.log.slice(this.runLogStart ?? 0));
  }

  async _killChild() {
    if (this.child && this.child.exitCode === null && this.child.signalCode === null) {
      this.child.kill("SIGKILL");
    }
    if (this.exited) await this.exited;
  }

  /** Simulates a crash: SIGKILL, no chance to flush or shut down cleanly. */
  async kill() {
    await this._killChild();
  }

  /** Starts the binary again on the same ports and the same data directory (and schema). */
  async restart() {
    await this._killChild();
    // The same ports are preferred (clients keep working); a port still held by the
    // kernel after the kill is retried, then fresh ports are taken as a last resort.
    // On Postgres, a process killed with SIGKILL may still hold the writer lease for a
    // moment: the new one refuses with DatabaseInUse and is started again until the lease is
    // free, as a supervisor would.
    const leaseDeadline = Date.now() + READY_TIMEOUT_MS;
    for (let attempt = 0; attempt < 3; ) {
      this._spawn();
      try {
        await this._waitReady();
        return this;
      } catch (err) {
        await this._killChild();
        if (this._leaseHeld() && Date.now() < leaseDeadline) {
          await new Promise((r) => setTimeout(r, 250));
          continue;
        }
        if (!this._bindFailed()) throw err;
        attempt += 1;
        await new Promise((r) => setTimeout(r, 500));
      }
    }
    this.port = 0;
    return this.start();
  }

  /** The last run refused to start because another process holds the database's writer lease. */
  _leaseHeld() {
    return this.database !== null && /DatabaseInUse/.test(this.log.slice(this.runLogStart ?? 0));
  }

  /** Stops the server and removes its data directory. */
  async cleanup() {
    liveServers.delete(this);
    await this._killChild();
    if (this.ownsDataDir) {
      await rm(this.dataDir, { recursive: true, force: true });
    }
  }

  /** Raw POST to an API endpoint; returns {status, headers, text, json}. */
  async post(endpoint, body, headers = {}) {
    const res = await fetch(`${this.url}${endpoint}`, {
      method: "POST",
      headers: { "Content-Type": "application/json", ...headers },
      body: typeof body === "string" || body instanceof Uint8Array ? body : JSON.stringify(body),
    });
    return readResponse(res);
  }

  /**
   * Calls any function (public or internal) as admin through /api/function and returns
   * the raw response JSON ({status, value | errorMessage, ...}); values in `json` format.
   */
  async adminCall(pathName, args = {}) {
    const r = await this.post(
      "/api/function",
      { path: pathName, args, format: "json" },
      { Authorization: `Convex ${this.adminKey}` },
    );
    if (r.status !== 200 || !r.json) {
      throw new Error(`admin call ${pathName} failed: HTTP ${r.status} ${r.text}`);
    }
    return r.json;
  }

  /** Like adminCall, but returns the value and throws on a function error. */
  async adminRun(pathName, args = {}) {
    const r = await this.adminCall(pathName, args);
    if (r.status !== "success") {
      throw new Error(`admin call ${pathName} errored: ${r.errorMessage}`);
    }
    return r.value;
  }

  /** Advances the test clock (requires --test-clock); resolves once due jobs have run. */
  async advanceTime(ms) {
    const r = await this.post(
      "/api/test/advance_time",
      { ms },
      { Authorization: `Convex ${this.adminKey}` },
    );
    if (r.status !== 200) {
      throw new Error(`advance_time failed: HTTP ${r.status} ${r.text}`);
    }
    return r.json.now;
  }
}

export async function readResponse(res) {
  const text = await res.text();
  let json = null;
  try {
    json = JSON.parse(text);
  } catch {
    json = null;
  }
  return { status: res.status, headers: res.headers, text, json };
}

/**
 * Starts a server.
 * @param {object} opts
 * @param {"tickethub"|"notes-server"} opts.which
 * @param {Record<string,string>} [opts.env] extra environment (e.g. CLERK_WEBHOOK_SECRET)
 * @param {boolean} [opts.testClock]
 * @param {string[]} [opts.extraArgs]
 * @param {{url: string, schema: string} | null} [opts.database] defaults to a fresh schema on
 *   Postgres runs (TICKETHUB_TEST_DATABASE_URL) and SQLite otherwise
 */
export async function startServer({ which, env = {}, testClock = false, extraArgs = [], database = testDatabase() }) {
  const bin = binaryPath(which);
  const dataDir = await mkdtemp(path.join(tmpdir(), `${which}-e2e-`));
  const server = new Server({
    bin,
    env,
    extraArgs,
    testClock,
    adminKey: `e2e-admin-${randomBytes(24).toString("hex")}`,
    dataDir,
    ownsDataDir: true,
    label: which,
    database,
  });
  liveServers.add(server);
  try {
    await server.start();
  } catch (err) {
    await server.cleanup();
    throw err;
  }
  return server;
}
