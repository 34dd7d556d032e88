// The HTTP API of the notes-server example app, driven by the official ConvexHttpClient
// and by raw fetch for what the client never sends.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { anyApi } from "convex/server";
import { ConvexError } from "convex/values";
import { startServer } from "./lib/server.mjs";
import { assertSystemError, newClient, rejectsWith, withLogs } from "./lib/helpers.mjs";

const api = anyApi;
const CLIENT_HEADERS = { "Convex-Client": "npm-1.48.0" };

describe("notes-server HTTP API", { timeout: 300_000 }, () => {
  let server;
  let client;

  before(async () => {
    server = await startServer({ which: "notes-server" });
    client = newClient(server);
  });
  after(async () => {
    await server?.cleanup();
  });

  // A normal call, used after every piece of bad input to prove the server still serves.
  async function stillServes(context) {
    const v = await client.query(api.notes.echo, { value: `alive after ${context}` });
    assert.equal(v, `alive after ${context}`, `server stopped serving after ${context}`);
  }

  test("GET /instance_name answers with a plain-text name", withLogs(async () => {
    const res = await fetch(`${server.url}/instance_name`);
    assert.equal(res.status, 200);
    const text = await res.text();
    assert.ok(text.trim().length > 0, "instance name is empty");
  }));

  test("query, mutation and action through the official client", withLogs(async () => {
    const id = await client.mutation(api.notes.add, { text: "first note", tags: ["a", "b"], author: "ada" });
    assert.equal(typeof id, "string");
    assert.equal(id.length, 32, `expected a 32-char Convex id, got ${id}`);

    const doc = await client.query(api.notes.get, { id });
    assert.equal(doc._id, id);
    assert.equal(doc.text, "first note");
    assert.deepEqual(doc.tags, ["a", "b"]);
    assert.equal(doc.author, "ada");
    assert.equal(typeof doc._creationTime, "number");

    const viaAction = await client.action(api.notes.addViaAction, { text: "from an action" });
    const list = await client.query(api.notes.list, {});
    assert.ok(Array.isArray(list));
    const texts = list.map((n) => n.text);
    assert.ok(texts.includes("first note"), `list lacks the mutation's note: ${texts}`);
    assert.ok(texts.includes("from an action"), `list lacks the action's note: ${texts}`);
    if (typeof viaAction === "string") {
      const actionDoc = await client.query(api.notes.get, { id: viaAction });
      assert.equal(actionDoc.text, "from an action");
    }

    const byAda = await client.query(api.notes.byAuthor, { author: "ada" });
    assert.deepEqual(byAda.map((n) => n._id), [id]);
    const byNobody = await client.query(api.notes.byAuthor, { author: "nobody" });
    assert.deepEqual(byNobody, []);
  }));

  test("creation times strictly increase in insertion order", withLogs(async () => {
    const ids = [];
    for (let i = 0; i < 5; i++) ids.push(await client.mutation(api.notes.add, { text: `order ${i}`, author: "order" }));
    const docs = await client.query(api.notes.byAuthor, { author: "order" });
    assert.deepEqual(docs.map((d) => d._id), ids);
    for (let i = 1; i < docs.length; i++) {
      assert.ok(docs[i]._creationTime > docs[i - 1]._creationTime, "creation times must strictly increase");
    }
  }));

  test("notes:get refuses a malformed id", withLogs(async () => {
    const id = await client.mutation(api.notes.add, { text: "to compare" });
    await rejectsWith(client.query(api.notes.get, { id: "not-an-id" }), "ArgumentValidationError");
    assert.equal((await client.query(api.notes.get, { id })).text, "to compare");
  }));

  test("values survive a round trip through notes:echo", withLogs(async () => {
    const bytes = new Uint8Array([0, 1, 2, 253, 254, 255]).buffer;
    const cases = [
      ["null", null],
      ["true", true],
      ["string", "héllo ✓ \u0000 \n"],
      ["empty string", ""],
      ["float", 3.25],
      ["big float", 1e300],
      ["int64 1", 1n],
      ["int64 -1", -1n],
      ["int64 max", 2n ** 63n - 1n],
      ["int64 min", -(2n ** 63n)],
      ["nested", { a: [1, { b: [true, null, "x"] }], c: {} }],
      ["array of int64", [0n, 5n, -7n]],
    ];
    for (const [name, value] of cases) {
      const back = await client.query(api.notes.echo, { value });
      assert.deepEqual(back, value, `round trip of ${name}`);
    }
    const bytesBack = await client.query(api.notes.echo, { value: bytes });
    assert.ok(bytesBack instanceof ArrayBuffer, `bytes came back as ${Object.prototype.toString.call(bytesBack)}`);
    assert.deepEqual([...new Uint8Array(bytesBack)], [0, 1, 2, 253, 254, 255]);

    const nan = await client.query(api.notes.echo, { value: NaN });
    assert.ok(Number.isNaN(nan), `NaN came back as ${nan}`);
    assert.equal(await client.query(api.notes.echo, { value: Infinity }), Infinity);
    assert.equal(await client.query(api.notes.echo, { value: -Infinity }), -Infinity);
    const negZero = await client.query(api.notes.echo, { value: -0 });
    assert.ok(Object.is(negZero, -0), `-0 came back as ${negZero}`);
    const zero = await client.query(api.notes.echo, { value: 0 });
    assert.ok(Object.is(zero, 0), `0 came back as ${zero}`);
  }));

  test("the wire encoding of special values is exactly convex_encoded_json", withLogs(async () => {
    const value = {
      i: { $integer: "AQAAAAAAAAA=" },
      m: { $integer: "//////////8=" },
      b: { $bytes: "AQID" },
      n: { $float: "AAAAAAAA+H8=" },
      z: { $float: "AAAAAAAAAIA=" },
      p: { $float: "AAAAAAAA8H8=" },
      q: { $float: "AAAAAAAA8P8=" },
      f: 1.5,
    };
    const r = await server.post("/api/query", { path: "notes:echo", format: "convex_encoded_json", args: [{ value }] }, CLIENT_HEADERS);
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.status, "success", r.text);
    assert.deepEqual(r.json.value, value);

    // The plain `json` format: values are plain JSON, so `$` keys are not special there
    // and are refused as field names.
    const plain = await server.post(
      "/api/query",
      { path: "notes:echo", format: "json", args: [{ value: { a: [1, "x", null, true], b: 2.5 } }] },
      CLIENT_HEADERS,
    );
    assert.equal(plain.status, 200, plain.text);
    assert.equal(plain.json.status, "success", plain.text);
    assert.deepEqual(plain.json.value, { a: [1, "x", null, true], b: 2.5 });
    const dollar = await server.post(
      "/api/query",
      { path: "notes:echo", format: "json", args: [{ value: { $integer: "KgAAAAAAAAA=" } }] },
      CLIENT_HEADERS,
    );
    const refused = (dollar.status >= 400 && dollar.json?.code) || (dollar.status === 200 && dollar.json?.status === "error");
    assert.ok(refused, `a $ field name in json format was accepted: ${dollar.text}`);
  }));

  test("args as a plain object and a module with .js are accepted", withLogs(async () => {
    const r1 = await server.post("/api/query", { path: "notes:echo", format: "convex_encoded_json", args: { value: "plain object" } }, CLIENT_HEADERS);
    assert.equal(r1.status, 200, r1.text);
    assert.equal(r1.json.status, "success", r1.text);
    assert.equal(r1.json.value, "plain object");
    const r2 = await server.post("/api/query", { path: "notes.js:echo", format: "convex_encoded_json", args: [{ value: "with .js" }] }, CLIENT_HEADERS);
    assert.equal(r2.status, 200, r2.text);
    assert.equal(r2.json.status, "success", r2.text);
    assert.equal(r2.json.value, "with .js");
  }));

  test("malformed special values are refused", withLogs(async () => {
    const bad = [
      ["$float holding an ordinary number", { $float: "AAAAAAAA+D8=" }],
      ["unknown $ key", { $foo: 1 }],
      ["$integer of the wrong length", { $integer: "AQAA" }],
      ["$bytes not base64", { $bytes: "***" }],
    ];
    for (const [name, value] of bad) {
      const r = await server.post("/api/query", { path: "notes:echo", format: "convex_encoded_json", args: [{ value }] }, CLIENT_HEADERS);
      const refused = (r.status >= 400 && r.json?.code) || (r.status === 200 && r.json?.status === "error");
      assert.ok(refused, `${name} was not refused: HTTP ${r.status} ${r.text}`);
    }
    await stillServes("malformed special values");
  }));

  test("ConvexError data reaches the client", withLogs(async () => {
    const err = await rejectsWith(client.mutation(api.notes.fail, {}), undefined);
    assert.ok(err instanceof ConvexError, `expected a ConvexError, got ${err?.constructor?.name}: ${err?.message}`);
    assert.deepEqual(err.data, { code: "NOPE", detail: 42 });
  }));

  test("a thrown error reaches the client with its message", withLogs(async () => {
    const err = await rejectsWith(client.query(api.notes.throws, {}), "boom");
    assert.ok(!(err instanceof ConvexError), "a plain error must not carry data");
    const r = await server.post("/api/query", { path: "notes:throws", format: "convex_encoded_json", args: [{}] }, CLIENT_HEADERS);
    assert.ok(r.status === 200 || r.status === 560, r.text);
    assert.equal(r.json.status, "error");
    assert.ok(r.json.errorMessage.includes("boom"), r.text);
    assert.equal(r.json.errorData, undefined, "errorData present on a plain error");
  }));

  test("internal, unknown and wrong-kind functions give the exact messages", withLogs(async () => {
    await rejectsWith(client.query(api.notes.count, {}), "Could not find public function for 'notes:count'.");
    await rejectsWith(client.query(api.notes.doesNotExist, {}), "Could not find public function for 'notes:doesNotExist'.");
    await rejectsWith(client.mutation(api.nosuchmodule.fn, {}), "Could not find public function for 'nosuchmodule:fn'.");
    await rejectsWith(
      client.query(api.notes.add, { text: "x" }),
      "Trying to execute notes:add as Query, but it is defined as Mutation.",
    );
    await rejectsWith(
      client.mutation(api.notes.list, {}),
      "Trying to execute notes:list as Mutation, but it is defined as Query.",
    );
    await rejectsWith(
      client.action(api.notes.add, { text: "x" }),
      "Trying to execute notes:add as Action, but it is defined as Mutation.",
    );
  }));

  test("bad arguments give ArgumentValidationError and write nothing", withLogs(async () => {
    const before = (await client.query(api.notes.list, {})).length;
    await rejectsWith(client.mutation(api.notes.add, { text: 5 }), "ArgumentValidationError");
    await rejectsWith(client.mutation(api.notes.add, {}), "ArgumentValidationError");
    await rejectsWith(client.mutation(api.notes.add, { text: "ok", unexpected: 1 }), "ArgumentValidationError");
    await rejectsWith(client.mutation(api.notes.add, { text: "ok", tags: "not an array" }), "ArgumentValidationError");
    const afterCount = (await client.query(api.notes.list, {})).length;
    assert.equal(afterCount, before, "a refused mutation wrote something");
  }));

  test("the admin key may call internal functions", withLogs(async () => {
    const admin = newClient(server, { admin: true });
    const count = await admin.query(api.notes.count, {});
    const listed = (await client.query(api.notes.list, {})).length;
    assert.equal(count, listed, "notes:count disagrees with notes:list");

    const viaFunction = await admin.function("notes:count", undefined, {});
    assert.equal(viaFunction, listed);
    // /api/function also runs public functions of any kind.
    const echoed = await admin.function(api.notes.echo, undefined, { value: 7n });
    assert.equal(echoed, 7n);

    // A wrong admin key is refused, not treated as anonymous.
    const impostor = newClient(server);
    impostor.setAdminAuth("not-the-admin-key");
    await rejectsWith(impostor.query(api.notes.count, {}), undefined);
    const r = await server.post("/api/query", { path: "notes:echo", format: "json", args: [{ value: 1 }] }, {
      ...CLIENT_HEADERS,
      Authorization: "Convex not-the-admin-key",
    });
    assertSystemError(r, { context: "wrong admin key" });
  }));

  test("log lines reach the client's logger", withLogs(async () => {
    const c = newClient(server);
    const v = await c.query(api.notes.logs, {});
    void v;
    const text = c.logged.map((l) => l.text).join("\n");
    assert.ok(/\[LOG\].*'hello'/.test(text), `logger did not get [LOG] 'hello': ${text}`);
    assert.ok(/\[WARN\].*'careful'/.test(text), `logger did not get [WARN] 'careful': ${text}`);

    const r = await server.post("/api/query", { path: "notes:logs", format: "convex_encoded_json", args: [{}] }, CLIENT_HEADERS);
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(r.json.logLines, ["[LOG] 'hello'", "[WARN] 'careful'"]);
  }));

  test("consistentQuery reads every query at one snapshot", withLogs(async () => {
    const pinned = newClient(server);
    const first = await pinned.consistentQuery(api.notes.list, {});
    await client.mutation(api.notes.add, { text: "written after the snapshot" });
    const second = await pinned.consistentQuery(api.notes.list, {});
    assert.deepEqual(second, first, "a consistent query saw a later write");
    const fresh = await newClient(server).consistentQuery(api.notes.list, {});
    assert.equal(fresh.length, first.length + 1, "a new client's consistent query misses the write");
    const latest = await client.query(api.notes.list, {});
    assert.ok(latest.some((n) => n.text === "written after the snapshot"));
  }));

  describe("bad input on /api/*", () => {
    const call = (body, headers = CLIENT_HEADERS, endpoint = "/api/query") => server.post(endpoint, body, headers);

    test("a body that is not JSON", withLogs(async () => {
      assertSystemError(await call("{not json"), { status: 400, context: "non-JSON body" });
      await stillServes("non-JSON body");
    }));

    test("a missing path", withLogs(async () => {
      assertSystemError(await call({ format: "convex_encoded_json", args: [{}] }), { status: 400, context: "missing path" });
      await stillServes("missing path");
    }));

    test("an unknown format", withLogs(async () => {
      const r = await call({ path: "notes:echo", format: "yaml", args: [{ value: 1 }] });
      assertSystemError(r, { status: 400, codes: ["BadFormat"], context: "unknown format" });
      await stillServes("unknown format");
    }));

    test("a 17 MiB body", withLogs(async () => {
      const big = JSON.stringify({ path: "notes:echo", format: "convex_encoded_json", args: [{ value: "x".repeat(17 * 1024 * 1024) }] });
      const r = await call(big);
      assertSystemError(r, { context: "17 MiB body" });
      assert.ok(r.status === 413 || r.status === 400, `expected 413 or 400, got ${r.status}`);
      await stillServes("17 MiB body");
    }));

    test("a 5,000-deep JSON nest", withLogs(async () => {
      const deep = "[".repeat(5000) + "]".repeat(5000);
      const body = `{"path":"notes:echo","format":"convex_encoded_json","args":[{"value":${deep}}]}`;
      const r = await call(body);
      assertSystemError(r, { status: 400, context: "5,000-deep nest" });
      await stillServes("5,000-deep nest");
    }));

    test("an invalid Convex-Client header", withLogs(async () => {
      const r = await call({ path: "notes:echo", format: "json", args: [{ value: 1 }] }, { "Convex-Client": "definitely not a version" });
      assertSystemError(r, { status: 400, codes: ["InvalidClientVersion"], context: "bad Convex-Client" });
      await stillServes("bad Convex-Client");
    }));

    test("an Authorization header that is neither Bearer nor Convex", withLogs(async () => {
      const r = await call({ path: "notes:echo", format: "json", args: [{ value: 1 }] }, { ...CLIENT_HEADERS, Authorization: "Basic dXNlcjpwYXNz" });
      assertSystemError(r, { context: "Basic auth header" });
      assert.ok(r.status === 401 || r.status === 400, `expected 401 or 400, got ${r.status}`);
      await stillServes("Basic auth header");
    }));

    test("an unknown endpoint", withLogs(async () => {
      const r = await call({ path: "notes:echo", args: [{}] }, CLIENT_HEADERS, "/api/definitely_not_an_endpoint");
      assertSystemError(r, { status: 404, context: "unknown endpoint" });
      await stillServes("unknown endpoint");
    }));

    test("a malformed function path", withLogs(async () => {
      const r = await call({ path: "notes:bad name!", format: "json", args: [{}] });
      const refused = (r.status >= 400 && r.json?.code) || (r.status === 200 && r.json?.status === "error");
      assert.ok(refused, `malformed path accepted: HTTP ${r.status} ${r.text}`);
      await stillServes("malformed path");
    }));
  });

  test("CORS on /api/* mirrors the origin", withLogs(async () => {
    const res = await fetch(`${server.url}/api/query`, {
      method: "OPTIONS",
      headers: {
        Origin: "http://app.example",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type,convex-client,authorization",
      },
    });
    await res.arrayBuffer();
    assert.ok(res.status === 200 || res.status === 204, `preflight status ${res.status}`);
    assert.equal(res.headers.get("access-control-allow-origin"), "http://app.example");
    assert.equal(res.headers.get("access-control-allow-credentials"), "true");
    assert.match(res.headers.get("access-control-allow-methods") ?? "", /POST/);
  }));

  describe("HTTP actions", () => {
    test("GET /hello on the site port", withLogs(async () => {
      const res = await fetch(`${server.siteUrl}/hello`);
      const text = await res.text();
      assert.equal(res.status, 200, text);
      assert.ok(text.length > 0, "empty /hello response");
    }));

    test("the same routes under /http/ on the API port", withLogs(async () => {
      const site = await fetch(`${server.siteUrl}/hello`);
      const siteText = await site.text();
      const api = await fetch(`${server.url}/http/hello`);
      const apiText = await api.text();
      assert.equal(api.status, 200, apiText);
      assert.equal(apiText, siteText);
    }));

    test("POST /echo/... (a path prefix route) echoes the body", withLogs(async () => {
      const payload = JSON.stringify({ greeting: "hi", n: 3 });
      for (const base of [server.siteUrl, `${server.url}/http`]) {
        const res = await fetch(`${base}/echo/some/deeper/path`, { method: "POST", body: payload, headers: { "content-type": "application/json" } });
        const text = await res.text();
        assert.equal(res.status, 200, text);
        assert.ok(text.includes("hi"), `echo lost the body: ${text}`);
      }
    }));

    test("GET /whoami without auth answers", withLogs(async () => {
      const res = await fetch(`${server.siteUrl}/whoami`);
      const text = await res.text();
      assert.equal(res.status, 200, text);
    }));

    test("an unrouted path is a 404 with Convex's text", withLogs(async () => {
      const res = await fetch(`${server.siteUrl}/nope`);
      assert.equal(res.status, 404);
      assert.equal((await res.text()).trim(), "No HttpAction routed for /nope");
      const viaApi = await fetch(`${server.url}/http/nope`);
      assert.equal(viaApi.status, 404);
      assert.equal((await viaApi.text()).trim(), "No HttpAction routed for /nope");
      // A wrong method on an existing path is unrouted too.
      const wrongMethod = await fetch(`${server.siteUrl}/hello`, { method: "DELETE" });
      assert.equal(wrongMethod.status, 404);
      await wrongMethod.arrayBuffer();
    }));
  });

  test("data survives a crash (SIGKILL) and restart", withLogs(async () => {
    const id = await client.mutation(api.notes.add, { text: "durable", author: "durability" });
    await server.kill();
    await server.restart();
    const c = newClient(server);
    const doc = await c.query(api.notes.get, { id });
    assert.equal(doc?.text, "durable");
    const byAuthor = await c.query(api.notes.byAuthor, { author: "durability" });
    assert.deepEqual(byAuthor.map((d) => d._id), [id]);
    client = c;
  }));
});
