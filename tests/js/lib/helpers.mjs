// Small shared helpers for the end-to-end tests.

import assert from "node:assert/strict";
import { ConvexHttpClient } from "convex/browser";
import { liveServers } from "./server.mjs";

/** A ConvexHttpClient on `server` that records everything its logger receives. */
export function newClient(server, { auth, admin = false } = {}) {
  const logged = [];
  const record =
    (level) =>
    (...args) =>
      logged.push({ level, text: args.map(String).join(" ") });
  const logger = { log: record("log"), warn: record("warn"), error: record("error"), logVerbose: () => {} };
  const client = new ConvexHttpClient(server.url, { logger });
  if (auth) client.setAuth(auth);
  if (admin) client.setAdminAuth(server.adminKey);
  client.logged = logged;
  return client;
}

/**
 * Awaits a promise that must reject; checks the error message contains `includes`
 * (a string) and returns the error for further checks.
 */
export async function rejectsWith(promise, includes, context = "") {
  let error = null;
  try {
    const value = await promise;
    assert.fail(`expected a rejection containing ${JSON.stringify(includes)}${context ? ` (${context})` : ""}, got value ${safeJson(value)}`);
  } catch (err) {
    if (err instanceof assert.AssertionError) throw err;
    error = err;
  }
  if (includes !== undefined) {
    assert.ok(
      String(error?.message).includes(includes),
      `expected error containing ${JSON.stringify(includes)}${context ? ` (${context})` : ""}, got: ${error?.message}`,
    );
  }
  return error;
}

export function safeJson(v) {
  try {
    return JSON.stringify(v, (_k, x) => (typeof x === "bigint" ? `${x}n` : x));
  } catch {
    return String(v);
  }
}

/** Polls `fn` until it returns a truthy value (returned) or the deadline passes. */
export async function waitFor(fn, { timeoutMs = 30_000, intervalMs = 100, what = "condition" } = {}) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    try {
      last = await fn();
      if (last) return last;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}; last: ${last instanceof Error ? last.message : safeJson(last)}`);
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/** Checks a system-error response: non-2xx, JSON `{code: ScreamingCamelCase, message}`. */
export function assertSystemError(r, { status, codes, context = "" } = {}) {
  const where = `${context}: HTTP ${r.status} ${r.text.slice(0, 300)}`;
  assert.ok(r.status >= 400 && r.status < 600, `expected a non-2xx status ${where}`);
  if (status !== undefined) assert.equal(r.status, status, `status ${where}`);
  assert.ok(r.json && typeof r.json === "object", `expected a JSON body ${where}`);
  assert.equal(typeof r.json.code, "string", `expected a string code ${where}`);
  assert.match(r.json.code, /^[A-Z][A-Za-z0-9]+$/, `code should be ScreamingCamelCase ${where}`);
  assert.equal(typeof r.json.message, "string", `expected a string message ${where}`);
  assert.ok(r.json.message.length > 0, `expected a non-empty message ${where}`);
  if (codes !== undefined) assert.ok(codes.includes(r.json.code), `code ${r.json.code} not in ${codes.join("|")} ${where}`);
}

/**
 * Wraps a test body so a failure carries the tail of every running server's output,
 * so a red test shows what the server said.
 */
export function withLogs(fn) {
  return async (t) => {
    try {
      await fn(t);
    } catch (err) {
      let tails = "";
      for (const server of liveServers) {
        tails += `\n--- ${server.label} output (tail) ---\n${server.output().slice(-5000)}`;
      }
      if (err && typeof err === "object" && tails) {
        try {
          err.message = `${err.message}${tails}`;
        } catch {
          // read-only message: leave as is
        }
      }
      throw err;
    }
  };
}
