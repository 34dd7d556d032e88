// Helpers for driving the WebSocket sync protocol with the official `ConvexClient`.
//
// `openClient` builds a ConvexClient on the `ws` package whose sockets record a bounded
// trace of every frame sent and received, so a failing wait can show the protocol
// conversation instead of only "timed out". `watch` wraps `client.onUpdate` into an
// object that keeps every value and error it saw and can be awaited for a value that
// satisfies a predicate. Nothing here measures time for assertions: waits only have
// (generous) deadlines after which they fail with context.

import WebSocket from "ws";
import { ConvexClient } from "convex/browser";
import { safeJson } from "./helpers.mjs";

/** Frames kept per client for failure messages; older ones are dropped. */
const TRACE_FRAMES = 200;
/** Characters kept of one frame in the trace. */
const TRACE_FRAME_CHARS = 600;
/** Default deadline for a wait: long enough for a loaded 2-core machine. */
export const DEFAULT_WAIT_MS = 60_000;

/**
 * A `ws` WebSocket class that appends every frame to `trace` (direction, time, text).
 * The client only ever calls `new C(url)`, `send`, `close` and the `on*` properties,
 * all of which the subclass inherits.
 */
function tracingWebSocket(trace) {
  const record = (dir, data) => {
    const text = typeof data === "string" ? data : Buffer.from(data).toString("utf8");
    trace.push({
      dir,
      at: new Date().toISOString(),
      text: text.length > TRACE_FRAME_CHARS ? `${text.slice(0, TRACE_FRAME_CHARS)}…` : text,
    });
    if (trace.length > TRACE_FRAMES) trace.splice(0, trace.length - TRACE_FRAMES);
  };
  return class TracingWebSocket extends WebSocket {
    constructor(...args) {
      super(...args);
      record("open", String(args[0]));
      this.on("message", (data) => record("in", data));
      this.on("close", (code, reason) => record("close", `${code} ${reason}`));
      this.on("error", (err) => record("error", err.message));
    }

    send(data, ...rest) {
      record("out", data);
      return super.send(data, ...rest);
    }
  };
}

/**
 * A ConvexClient connected to `server` over WebSocket.
 *
 * @param {import("./server.mjs").Server} server
 * @param {object} [opts]
 * @param {string} [opts.token] a JWT to authenticate with (through `setAuth`)
 * @param {() => Promise<string|null>} [opts.fetchToken] instead of `token`
 * @param {boolean} [opts.verbose] the client's verbose logging (kept in `client.logged`)
 * @param {boolean} [opts.trace] record protocol frames (default true)
 * @param {string} [opts.label] a name for failure messages
 * @returns {ConvexClient & {trace: object[], logged: object[], authChanges: boolean[], label: string, describe(): string}}
 */
export function openClient(server, opts = {}) {
  const trace = [];
  const logged = [];
  const record =
    (level) =>
    (...args) => {
      logged.push({ level, at: new Date().toISOString(), text: args.map((a) => (typeof a === "string" ? a : safeJson(a))).join(" ") });
      if (logged.length > TRACE_FRAMES) logged.splice(0, logged.length - TRACE_FRAMES);
    };
  const logger = { log: record("log"), warn: record("warn"), error: record("error"), logVerbose: record("verbose") };
  const client = new ConvexClient(server.url, {
    webSocketConstructor: opts.trace === false ? WebSocket : tracingWebSocket(trace),
    logger,
    verbose: opts.verbose ?? false,
    unsavedChangesWarning: false,
  });
  client.trace = trace;
  client.logged = logged;
  client.authChanges = [];
  client.label = opts.label ?? "client";
  client.describe = () => describeClient(client);
  client.watches = new Set();
  const fetchToken = opts.fetchToken ?? (opts.token !== undefined ? async () => opts.token : undefined);
  if (fetchToken) {
    client.authChanged = new Promise((resolve) => {
      client.setAuth(fetchToken, (isAuthenticated) => {
        client.authChanges.push(isAuthenticated);
        resolve(isAuthenticated);
      });
    });
  }
  return client;
}

/** The client's recent frames and log lines, for a failure message. */
export function describeClient(client) {
  const frames = client.trace.map((f) => `  ${f.at} ${f.dir.padEnd(5)} ${f.text}`).join("\n");
  const logs = client.logged
    .slice(-40)
    .map((l) => `  ${l.at} [${l.level}] ${l.text}`)
    .join("\n");
  return `--- ${client.label}: last protocol frames ---\n${frames || "  (none)"}\n--- ${client.label}: client log ---\n${logs || "  (none)"}`;
}

/**
 * A live subscription through `client.onUpdate`, remembering what it received.
 * `until(pred)` resolves with the first value (the current one included) for which
 * `pred(value)` is truthy.
 */
export class Watch {
  constructor(client, udfPath, args, { label } = {}) {
    this.client = client;
    this.udfPath = udfPath;
    this.args = args;
    this.label = label ?? `${udfPath} ${safeJson(args)}`;
    this.values = []; // every value passed to the callback, in order
    this.errors = []; // every error passed to onError
    this.hasValue = false;
    this.latest = undefined;
    this.firstValueAt = null;
    this.waiters = new Set();
    this.timers = new Set();
    client.watches?.add(this);
    this.sub = client.onUpdate(
      udfPath,
      args,
      (value) => {
        this.hasValue = true;
        this.latest = value;
        this.values.push(value);
        this._notify();
      },
      (error) => {
        this.errors.push(error);
        this._notify();
      },
    );
  }

  _notify() {
    for (const waiter of [...this.waiters]) waiter();
  }

  /** The client's local result for this query right now (not via the callback). */
  currentValue() {
    return this.sub.getCurrentValue();
  }

  /**
   * Resolves with the first received value satisfying `pred` (checked against the latest
   * value first). Rejects after `timeoutMs` with the values seen and the client's trace.
   */
  until(pred, { timeoutMs = DEFAULT_WAIT_MS, what = "a matching value" } = {}) {
    return this._waitFor(
      () => {
        if (this.hasValue && pred(this.latest)) return { done: true, value: this.latest };
        return { done: false };
      },
      timeoutMs,
      what,
    );
  }

  /** Resolves with the first error delivered to onError (an existing one included). */
  untilError({ timeoutMs = DEFAULT_WAIT_MS, what = "a query error" } = {}) {
    return this._waitFor(() => (this.errors.length > 0 ? { done: true, value: this.errors[0] } : { done: false }), timeoutMs, what);
  }

  _waitFor(check, timeoutMs, what) {
    const first = check();
    if (first.done) return Promise.resolve(first.value);
    return new Promise((resolve, reject) => {
      let timer = null;
      const waiter = () => {
        const r = check();
        if (!r.done) return;
        clearTimeout(timer);
        this.timers.delete(timer);
        this.waiters.delete(waiter);
        resolve(r.value);
      };
      timer = setTimeout(() => {
        this.timers.delete(timer);
        this.waiters.delete(waiter);
        reject(
          new Error(
            `[${this.client.label}] timed out after ${timeoutMs} ms waiting for ${what} on ${this.label}; ` +
              `values seen: ${safeJson(this.values.slice(-5))}; errors: ${safeJson(this.errors.map((e) => e.message))}\n${describeClient(this.client)}`,
          ),
        );
      }, timeoutMs);
      this.timers.add(timer);
      this.waiters.add(waiter);
    });
  }

  /** Drops pending waits (they never settle) so their timers do not keep node alive. */
  cancelWaits() {
    for (const timer of this.timers) clearTimeout(timer);
    this.timers.clear();
    this.waiters.clear();
  }

  unsubscribe() {
    this.cancelWaits();
    this.sub.unsubscribe();
  }
}

/** Subscribes `client` to `udfPath(args)`. */
export function watch(client, udfPath, args, opts) {
  return new Watch(client, udfPath, args, opts);
}

/** `GET /api/sync_metrics` as admin: `{queryExecutions, connectionsOpen, transitionsSent}`. */
export async function syncMetrics(server, { adminKey = server.adminKey } = {}) {
  const headers = adminKey === null ? {} : { Authorization: `Convex ${adminKey}` };
  const res = await fetch(`${server.url}/api/sync_metrics`, { headers });
  const text = await res.text();
  if (res.status !== 200) {
    const err = new Error(`GET /api/sync_metrics: HTTP ${res.status} ${text.slice(0, 300)}`);
    err.status = res.status;
    throw err;
  }
  let json;
  try {
    json = JSON.parse(text);
  } catch {
    throw new Error(`GET /api/sync_metrics: not JSON: ${text.slice(0, 300)}`);
  }
  for (const key of ["queryExecutions", "connectionsOpen", "transitionsSent"]) {
    if (typeof json[key] !== "number") throw new Error(`GET /api/sync_metrics: missing numeric ${key} in ${text.slice(0, 300)}`);
  }
  return json;
}

/** Closes every client (ignoring ones already closed) so node can exit. */
export async function closeAll(clients) {
  for (const c of clients) for (const w of c.watches ?? []) w.cancelWaits();
  await Promise.allSettled([...clients].map((c) => (c.closed ? undefined : c.close())));
}

/** Nearest-rank percentile `p` (0..100) of numeric `samples`. */
export function percentile(samples, p) {
  if (samples.length === 0) return NaN;
  const sorted = [...samples].sort((a, b) => a - b);
  const rank = Math.min(sorted.length, Math.max(1, Math.ceil((p / 100) * sorted.length)));
  return sorted[rank - 1];
}

/** Runs `fn(item)` for all items with at most `limit` in flight at once. */
export async function forEachLimited(items, limit, fn) {
  let next = 0;
  const workers = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) {
      const i = next++;
      await fn(items[i], i);
    }
  });
  await Promise.all(workers);
}

/** `promise`, or a rejection with `message()` after `ms` (the timer is cleared either way). */
export function withTimeout(promise, ms, message) {
  let timer = null;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${message()}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
