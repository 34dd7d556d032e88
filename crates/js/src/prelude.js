// Installed once in each QuickJS context before any pushed module runs. It gives the `convex`
// package the host it expects (`Convex.syscall`, `Convex.asyncSyscall`), makes queries and
// mutations deterministic (frozen `Date`, seeded `Math.random`) and turns `console.*` into log
// lines. Rust provides `__tickethub_host` = { send(op, json) -> id, log(level, text), env(name),
// normalizeId(table, id) } and answers each `send` later through `__tickethub_settle`.
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
    value: (id, ok, payload) => {
      const waiter = pending.get(id);
      pending.delete(id);
      if (waiter === undefined) return;
      if (ok) waiter.resolve(payload);
      else waiter.reject(new Error(payload));
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
    jsSyscall(op) {
      throw new Error(`The syscall ${op} is not supported by tickethub's JavaScript runtime yet`);
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

  // ---- determinism: Date frozen per call, Math.random seeded per call ----
  const RealDate = Date;
  let frozenNow = RealDate.now();
  function FrozenDate(...args) {
    if (!new.target) return new RealDate(frozenNow).toString();
    return args.length === 0 ? new RealDate(frozenNow) : new RealDate(...args);
  }
  FrozenDate.prototype = RealDate.prototype;
  FrozenDate.now = () => frozenNow;
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
    value: (now, callSeed) => {
      frozenNow = Math.floor(now);
      seed = callSeed | 0;
      streams.clear();
      pending.clear();
    },
  });

  // ---- process.env: the deployment's variables, then the server's ----
  globalThis.process = {
    env: new Proxy({}, { get: (_, name) => (typeof name === "string" ? host.env(name) : undefined) }),
  };
})();
