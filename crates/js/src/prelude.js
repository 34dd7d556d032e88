// Installed once in each QuickJS context before any pushed module runs. It gives the `convex`
// package the host it expects (`Convex.syscall`, `Convex.asyncSyscall`), makes queries and
// mutations deterministic (frozen `Date`, seeded `Math.random`) and turns `console.*` into log
// lines; actions get a running clock and timers. Rust provides `__tickethub_host` = { send(op,
// json) -> id, log(level, text), env(name), normalizeId(table, id) } and answers each `send`
// later through `__tickethub_settle`. `web.js` runs next and takes `__tickethub_action`.
(function () {
  "use strict";
  const host = globalThis.__tickethub_host;
  delete globalThis.__tickethub_host;

  // ---- asynchronous syscalls: Rust services them between job-queue runs ----
  const pending = new Map();
  function request(op, json) {
    return new Promise((resolve, reject) => {
      pending.set(host.send(op, json), { resolve, reject });
    });
  }
  Object.defineProperty(globalThis, "__tickethub_settle", {
    value: (id, ok, payload, data) => {
      const waiter = pending.get(id);
      pending.delete(id);
      if (waiter === undefined) return;
      if (ok) {
        waiter.resolve(payload);
        return;
      }
      const error = new Error(payload);
      // A ConvexError's data (Convex JSON): the `convex` package rethrows it as a ConvexError.
      if (typeof data === "string") error.data = JSON.parse(data);
      waiter.reject(error);
    },
  });

  // ---- query streams: read in growing batches, so `first()` reads one document and
  // `collect()` few round trips; filters run in Rust, `limit` here ----
  const streams = new Map();
  let nextStream = 1;
  function limitOf(query) {
    let limit = null;
    for (const op of query.operators) {
      if (op.limit !== undefined) limit = limit === null ? op.limit : Math.min(limit, op.limit);
    }
    return limit;
  }
  async function streamNext(queryId) {
    const s = streams.get(queryId);
    if (s === undefined) throw new Error(`Query ${queryId} is not open`);
    if (s.limit !== null && s.yielded >= s.limit) return JSON.stringify({ value: null, done: true });
    while (s.buffer.length === 0 && !s.done) {
      const want = s.limit === null ? s.batch : Math.min(s.batch, s.limit - s.yielded);
      const page = JSON.parse(
        await request("tickethub/queryBatch", JSON.stringify({ query: s.query, cursor: s.cursor, batch: want })),
      );
      s.buffer = page.page;
      s.next = 0;
      s.cursor = page.continueCursor;
      s.done = page.isDone;
      s.batch = Math.min(s.batch * 4, 1024);
    }
    if (s.next >= s.buffer.length) return JSON.stringify({ value: null, done: true });
    s.yielded++;
    const value = s.buffer[s.next++];
    if (s.next >= s.buffer.length) s.buffer = [];
    return JSON.stringify({ value, done: false });
  }

  /** `Convex.jsSyscall` operations, on JavaScript objects (`web.js` adds the storage ones). */
  const jsSyscalls = {};

  globalThis.Convex = {
    syscall(op, json) {
      if (op === "1.0/queryStream") {
        const { query } = JSON.parse(json);
        const queryId = nextStream++;
        streams.set(queryId, {
          query, limit: limitOf(query), yielded: 0, buffer: [], next: 0, cursor: null, done: false, batch: 8,
        });
        return JSON.stringify({ queryId });
      }
      if (op === "1.0/queryCleanup") {
        return JSON.stringify(streams.delete(JSON.parse(json).queryId));
      }
      if (op === "1.0/db/normalizeId") {
        const { table, idString } = JSON.parse(json);
        if (typeof table !== "string" || typeof idString !== "string") {
          throw new Error("db.normalizeId takes a table name and an ID string");
        }
        return JSON.stringify({ id: host.normalizeId(table, idString) ?? null });
      }
      throw new Error(`The syscall ${op} is not supported by tickethub's JavaScript runtime yet`);
    },
    asyncSyscall(op, json) {
      if (op === "1.0/queryStreamNext") return streamNext(JSON.parse(json).queryId);
      return request(op, json);
    },
    jsSyscall(op, args) {
      const handler = jsSyscalls[op];
      if (handler === undefined) {
        throw new Error(`The syscall ${op} is not supported by tickethub's JavaScript runtime yet`);
      }
      return handler(args);
    },
  };

  // ---- console.* → log lines ----
  function show(value) {
    if (typeof value === "string") return value;
    if (value === undefined) return "undefined";
    if (typeof value === "function") return `[Function ${value.name || "(anonymous)"}]`;
    if (typeof value === "bigint") return `${value}n`;
    if (value instanceof Error) return value.stack ? `${value}\n${value.stack}` : String(value);
    try {
      return JSON.stringify(value, (_, v) => (typeof v === "bigint" ? `${v}n` : v)) ?? String(value);
    } catch (_) {
      return String(value);
    }
  }
  const log = (level) => (...args) => host.log(level, args.map(show).join(" "));
  globalThis.console = {
    log: log("LOG"), info: log("INFO"), warn: log("WARN"), error: log("ERROR"), debug: log("DEBUG"),
  };

  // ---- determinism: in queries and mutations Date is frozen per call and Math.random seeded
  // per call; in actions the clock runs (on the server's clock, test offset included) ----
  const RealDate = Date;
  let frozenNow = RealDate.now();
  /** In an action: the server's clock minus the machine's, else null (frozen). */
  let liveOffset = null;
  const now = () => (liveOffset === null ? frozenNow : RealDate.now() + liveOffset);
  function FrozenDate(...args) {
    if (!new.target) return new RealDate(now()).toString();
    return args.length === 0 ? new RealDate(now()) : new RealDate(...args);
  }
  FrozenDate.prototype = RealDate.prototype;
  FrozenDate.now = now;
  FrozenDate.parse = RealDate.parse;
  FrozenDate.UTC = RealDate.UTC;
  globalThis.Date = FrozenDate;
  let seed = 0;
  // mulberry32: small, fast, and good enough for non-cryptographic randomness.
  Math.random = () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = seed;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  Object.defineProperty(globalThis, "__tickethub_begin", {
    value: (callNow, callSeed, action) => {
      frozenNow = Math.floor(callNow);
      liveOffset = action ? callNow - RealDate.now() : null;
      seed = callSeed | 0;
      streams.clear();
      pending.clear();
      timers.clear();
    },
  });

  // ---- timers: actions only; the action driver fires them when due ----
  const timers = new Map();
  let nextTimer = 1;
  function requireAction(what) {
    if (liveOffset === null) {
      throw new Error(`Can't use ${what} in queries and mutations. Please consider using an action.`);
    }
  }
  function addTimer(callback, ms, args, repeat) {
    requireAction(repeat ? "setInterval" : "setTimeout");
    if (typeof callback !== "function") throw new TypeError("The timer's callback must be a function");
    const delay = Math.max(0, Number(ms) || 0);
    const id = nextTimer++;
    timers.set(id, { due: now() + delay, delay, callback, args, repeat });
    return id;
  }
  globalThis.setTimeout = (callback, ms, ...args) => addTimer(callback, ms, args, false);
  globalThis.setInterval = (callback, ms, ...args) => addTimer(callback, ms, args, true);
  globalThis.clearTimeout = (id) => void timers.delete(id);
  globalThis.clearInterval = globalThis.clearTimeout;
  Object.defineProperty(globalThis, "__tickethub_action", {
    value: {
      request,
      requireAction,
      jsSyscalls,
      /** Milliseconds until the next timer is due (0 if one is), or -1 without timers. */
      nextTimer() {
        let soonest = Infinity;
        for (const t of timers.values()) soonest = Math.min(soonest, t.due);
        return soonest === Infinity ? -1 : Math.max(0, soonest - now());
      },
      /** Run every timer that is due, oldest deadline first. */
      fireTimers() {
        const due = [...timers.entries()].filter(([, t]) => t.due <= now()).sort(([, a], [, b]) => a.due - b.due);
        for (const [id, t] of due) {
          if (!timers.has(id)) continue;
          if (t.repeat) t.due = now() + Math.max(1, t.delay);
          else timers.delete(id);
          t.callback(...t.args);
        }
      },
    },
  });

  // ---- process.env: the deployment's variables, then the server's ----
  globalThis.process = {
    env: new Proxy({}, { get: (_, name) => (typeof name === "string" ? host.env(name) : undefined) }),
  };
})();
