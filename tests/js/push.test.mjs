// Unmodified Convex TypeScript pushed into tickethub with the pinned `convex` package's own CLI
// (`npx convex dev --once`, `npx convex deploy`), then run in tickethub's embedded QuickJS beside
// the built-in Rust app. The fixture is tests/js/fixtures/push/convex (schema.ts + messages.ts).
//
// Covers: the push protocol end to end; a table-free query answering right after the push; the
// pushed tables and indexes created by the push itself (a later push adds a table and an index
// on a table with rows), kept across restarts; queries and mutations through ConvexHttpClient
// (insert, get, patch, replace, delete, index range, order, take, filter, paginate, unique,
// db.normalizeId);
// argument validation with Convex's text; ConvexError data; frozen Date.now; console.* as log
// lines; internal functions hidden from clients; actions (fetch to a loopback echo server,
// timers, ctx.run*, the scheduler, the web APIs against known answers, refused addresses,
// ConvexError data); function handles; HTTP actions of http.ts (a webhook verified by the svix package inside the
// action, a prefix route, a throwing handler); file storage from an action (Blob in and out); crons.ts (an interval cron runs, calendar crons
// listed with their next run); the time and memory limits; a live ConvexClient subscription updated by a
// mutation; pushes that fail (a module that throws while loading, a TypeScript syntax error, a
// name the built-in app uses) changing nothing; and restarts keeping the pushed code.

import assert from "node:assert/strict";
import { readFile, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { after, before, describe, test } from "node:test";
import { ConvexClient } from "convex/browser";
import { anyApi } from "convex/server";
import { convex, convexOk, convexProject, PUSH_ONCE } from "./lib/cli.mjs";
import { startServer } from "./lib/server.mjs";
import { newClient, rejectsWith, waitFor, withLogs } from "./lib/helpers.mjs";
import { newUserId, newWebhookSecret, signDelivery, userCreated } from "./lib/clerk.mjs";
import { createServer } from "node:http";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const FIXTURE = path.join(HERE, "fixtures", "push", "convex");
const api = anyApi;

/** A project directory with the fixture's convex/ folder and the pinned package. */
function projectDir() {
  return convexProject("convex-push-", {
    convexDir: FIXTURE,
    packageJson: { name: "push-e2e", private: true, dependencies: { convex: "1.48.0" } },
  });
}

const PUSH = PUSH_ONCE;

/** The secret http.ts's webhook route verifies with (the server's environment gives it). */
const JS_WEBHOOK_SECRET = newWebhookSecret();

/** An HTTP server on loopback that answers every request with what it received, as JSON. */
async function startEcho() {
  const server = createServer((req, res) => {
    let body = "";
    req.on("data", (chunk) => (body += chunk));
    req.on("end", () => {
      const parsed = body ? JSON.parse(body) : null;
      res.writeHead(200, { "content-type": "application/json", "x-echo-from": req.headers["x-from"] ?? "" });
      res.end(JSON.stringify({ method: req.method, body: parsed?.body ?? null }));
    });
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address();
  return { port, url: `http://127.0.0.1:${port}`, close: () => new Promise((resolve) => server.close(resolve)) };
}

function pushOk(server, cwd, args = PUSH) {
  return convexOk(server, args, { cwd });
}

describe("npx convex dev pushes a convex/ folder into tickethub", { timeout: 900_000 }, () => {
  let server;
  let cwd;
  let http;

  before(async () => {
    // fetch() in actions reaches loopback only because this lists it.
    server = await startServer({
      which: "tickethub",
      env: { JS_WEBHOOK_SECRET, CLERK_WEBHOOK_SECRET: newWebhookSecret(), TICKETHUB_FETCH_ALLOW_HOSTS: "127.0.0.1" },
    });
    cwd = await projectDir();
    http = newClient(server);
  });
  after(async () => {
    await server?.cleanup();
    if (cwd) await rm(cwd, { recursive: true, force: true });
  });

  test("the first push installs the functions and creates their table at once; both survive a restart", withLogs(async () => {
    const r = await pushOk(server, cwd);
    assert.ok(r.ms < 60_000, `push took ${r.ms} ms`);
    // The CLI's own codegen ran against our analysis.
    const generated = await readFile(path.join(cwd, "convex", "_generated", "api.d.ts"), "utf8");
    assert.match(generated, /messages/);

    // A table-free query answers right away, deterministically: Date.now is frozen per call.
    const clock = await http.query(api.messages.clock, {});
    assert.equal(clock.a, clock.b);
    assert.equal(clock.same, true);
    assert.ok(Math.abs(clock.a - Date.now()) < 60_000, `frozen time ${clock.a} is now-ish`);
    assert.ok(clock.random >= 0 && clock.random < 1);
    assert.equal(clock.spin, 4999950000);

    // The built-in Rust app still answers beside it.
    assert.equal(await http.query(api.users.getUserById, { userId: "nobody" }), null);

    // schema.ts's table exists without a restart, with its index.
    assert.deepEqual(await http.query(api.messages.list, { channel: "general" }), []);
    await server.restart();
    assert.deepEqual(await http.query(api.messages.list, { channel: "general" }), []);
  }));

  test("queries and mutations: writes, reads, index ranges, pagination, validation, errors", withLogs(async () => {
    const id1 = await http.mutation(api.messages.send, { channel: "general", body: "hello" });
    const id2 = await http.mutation(api.messages.send, { channel: "general", body: "second message" });
    await http.mutation(api.messages.send, { channel: "random", body: "elsewhere" });
    assert.equal(typeof id1, "string");

    // db.normalizeId: an ID of the table comes back; anything else is null, never an error.
    assert.equal(await http.query(api.messages.normalize, { table: "messages", id: id1 }), id1);
    assert.equal(await http.query(api.messages.normalize, { table: "messages", id: "not-an-id" }), null);
    assert.equal(await http.query(api.messages.normalize, { table: "no_such_table", id: id1 }), null);

    const general = await http.query(api.messages.list, { channel: "general" });
    assert.deepEqual(general.map((m) => m.body), ["second message", "hello"], "index range, newest first");
    assert.equal(general[0]._id, id2);
    assert.equal(typeof general[0]._creationTime, "number");
    assert.ok(Math.abs(general[0].sentAt - Date.now()) < 60_000);

    const edited = await http.mutation(api.messages.edit, { id: id1, body: "hello, edited" });
    assert.equal(edited.body, "hello, edited");
    assert.equal(edited.channel, "general");
    await http.mutation(api.messages.replaceBody, { id: id2, body: "replaced" });
    const long = await http.query(api.messages.firstLong, { channel: "general", minLength: 9 });
    assert.equal(long.body, "hello, edited");

    // paginate: two pages of two, then done.
    const first = await http.query(api.messages.page, { cursor: null });
    assert.equal(first.page.length, 2);
    assert.equal(first.isDone, false);
    const second = await http.query(api.messages.page, { cursor: first.continueCursor });
    assert.equal(second.page.length, 1);
    const third = await http.query(api.messages.page, { cursor: second.continueCursor });
    assert.equal(third.page.length, 0);
    assert.equal(third.isDone, true);

    assert.equal((await http.query(api.messages.only, { channel: "random" })).body, "elsewhere");
    await rejectsWith(http.query(api.messages.only, { channel: "general" }), "unique() query returned more than one result");

    await http.mutation(api.messages.remove, { id: id2 });
    assert.deepEqual((await http.query(api.messages.list, { channel: "general" })).map((m) => m.body), ["hello, edited"]);

    // Argument validation is the runtime's, with Convex's text.
    await rejectsWith(http.mutation(api.messages.send, { channel: "general" }), "ArgumentValidationError");
    await rejectsWith(http.mutation(api.messages.send, { channel: "general", body: 5 }), "ArgumentValidationError");
    await rejectsWith(http.mutation(api.messages.edit, { id: "not-an-id", body: "x" }), "ArgumentValidationError");

    // ConvexError data reaches the client.
    const error = await rejectsWith(http.mutation(api.messages.send, { channel: "general", body: "  " }));
    assert.deepEqual(error.data, { code: "EMPTY_BODY", channel: "general" });

    // A plain throw is the function's message.
    await rejectsWith(http.mutation(api.messages.replaceBody, { id: id2, body: "gone" }), `no message ${id2}`);

    // console.* became log lines that the client prints.
    const logged = http.logged.map((l) => l.text).join("\n");
    assert.match(logged, /sending hello/, logged);

    // Internal functions: not for clients, fine for the admin key.
    await rejectsWith(http.query(api.messages.secret, {}), "Could not find public function");
    const admin = newClient(server, { admin: true });
    assert.equal(await admin.query(api.messages.secret, {}), "internal only");
    assert.equal(await http.query(api.messages.whoami, {}), null);
  }));

  test("functions call functions (ctx.runQuery / ctx.runMutation) in one transaction, and schedule others", withLogs(async () => {
    const result = await http.mutation(api.composed.sendAndCount, { channel: "inline", body: "one" });
    assert.equal(typeof result.id, "string");
    assert.equal(result.count, 1, "the inline query sees the inline mutation's write");
    assert.equal(result.sameClock, true, "Date.now stays frozen across inline calls");
    assert.equal((await http.mutation(api.composed.sendAndCount, { channel: "inline", body: "two" })).count, 2);

    // The caller's failure takes the inline write with it.
    await rejectsWith(http.mutation(api.composed.sendThenFail, { channel: "inline" }), "failing after the inline write");
    assert.deepEqual(await http.query(api.composed.summary, { a: "inline", b: "nothing" }), { inline: 2, nothing: 0 });

    // The runtime checks an inline call's arguments, and finds built-in Rust functions too.
    await rejectsWith(http.query(api.composed.badInlineArgs, {}), "ArgumentValidationError");
    assert.equal(await http.query(api.composed.builtinUser, { userId: "nobody" }), null);
    // Internal functions stay internal for clients.
    await rejectsWith(http.query(api.composed.countIn, { channel: "inline" }), "Could not find public function");

    // Function handles: called and scheduled through, from a mutation and from an action.
    const viaHandle = await http.mutation(api.composed.viaHandle, { channel: "handles" });
    assert.equal(viaHandle.handle, "function://composed.js:insertOne");
    await waitFor(async () => (await http.query(api.messages.list, { channel: "handles" })).length === 2, {
      what: "the job scheduled through a handle",
    });
    assert.equal(await http.action(api.composed.countViaHandle, { channel: "handles" }), 2);

    // ctx.scheduler: the job due now runs; the cancelled one never does.
    const jobs = await http.mutation(api.composed.schedule, { channel: "scheduled" });
    assert.equal(typeof jobs.soon, "string");
    // db.system.normalizeId knows the scheduler's table; a job's ID is no message's.
    assert.equal(await http.query(api.messages.normalize, { table: "_scheduled_functions", id: jobs.soon }), jobs.soon);
    assert.equal(await http.query(api.messages.normalize, { table: "messages", id: jobs.soon }), null);
    await waitFor(async () => (await http.query(api.messages.list, { channel: "scheduled" })).length === 1, {
      what: "the scheduled insert",
    });
    const rows = await http.query(api.messages.list, { channel: "scheduled" });
    assert.deepEqual(rows.map((m) => m.body), ["scheduled"]);
  }));

  test("actions: fetch, timers, ctx.runQuery/runMutation/runAction, the scheduler, web APIs, errors", withLogs(async () => {
    const echo = await startEcho();
    try {
      const r = await http.action(api.actions.relay, { channel: "acted", url: `${echo.url}/echo` });
      assert.equal(r.status, 200);
      assert.equal(r.method, "POST");
      assert.equal(r.echoedHeader, "an action", "the request's headers reached the server");
      assert.equal(r.count, 1, "the action's query sees its mutation's write");
      assert.deepEqual([r.doubled, r.tripled], [2, 3]);
      assert.ok(r.waited >= 50, `the clock runs in an action, and setTimeout waits (${r.waited} ms)`);
      assert.equal(r.job, "string");
      assert.equal(r.identity, null);
      await waitFor(async () => (await http.query(api.messages.list, { channel: "acted" })).length === 2, {
        what: "the job the action scheduled",
      });
      const bodies = (await http.query(api.messages.list, { channel: "acted" })).map((m) => m.body).sort();
      assert.deepEqual(bodies, ["fetched for acted", "scheduled by an action"]);

      assert.deepEqual(await http.action(api.actions.webApis, {}), {
        encoded: 6,
        decoded: "héllo",
        hmac: "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
        verified: true,
        forged: false,
        sha256: "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
        href: "https://example.com:8443/a/b?x=1&y=two&z=3+4#frag",
        host: "example.com:8443",
        y: "two",
        badUrl: "TypeError",
        uuid: true,
        random: true,
        header: "1, 2",
        responseJson: { ok: true },
      });

      // Addresses the server does not allow: a literal internal address, and a name that
      // resolves to loopback (only 127.0.0.1 is listed), are refused before any connection.
      assert.match(await http.action(api.actions.tryFetch, { url: "http://169.254.169.254/latest/meta-data" }), /^refused: .*internal address/);
      assert.match(await http.action(api.actions.tryFetch, { url: `http://localhost:${echo.port}/` }), /^refused: .*internal addresses/);
      assert.match(await http.action(api.actions.tryFetch, { url: "file:///etc/passwd" }), /^refused: .*http and https/);
      assert.equal(await http.action(api.actions.tryFetch, { url: `${echo.url}/ok` }), "status 200");

      // File storage from an action.
      const stored = await http.action(api.actions.storeAndRead, { text: "stored by an action" });
      assert.deepEqual(stored, {
        text: "stored by an action",
        type: "text/plain",
        size: 19,
        served: "stored by an action",
        wrongSha: stored.wrongSha,
        gone: null,
        uploadUrl: "string",
      });
      assert.match(stored.wrongSha, /SHA-256 is [0-9a-f]{64}, not the/);

      // Errors: ConvexError data from an action, and from a mutation into the action; fetch in a
      // query; argument validation.
      const error = await rejectsWith(http.action(api.actions.failsWithData, {}));
      assert.deepEqual(error.data, { reason: "sold out", left: 0 });
      assert.deepEqual(await http.action(api.actions.catchesMutationError, {}), { code: "refused" });
      await rejectsWith(http.query(api.actions.fetchInQuery, {}), "Can't use fetch() in queries and mutations");
      await rejectsWith(http.action(api.actions.relay, { channel: 1, url: "x" }), "ArgumentValidationError");
    } finally {
      await echo.close();
    }
  }));

  test("HTTP actions from http.ts: a svix-verified webhook, a prefix route, errors", withLogs(async () => {
    const userId = newUserId();
    const delivery = signDelivery(JS_WEBHOOK_SECRET, userCreated({ id: userId }));
    let res = await fetch(`${server.siteUrl}/js/webhook`, { method: "POST", headers: delivery.headers, body: delivery.body });
    assert.equal(res.status, 200, await res.clone().text());
    assert.deepEqual(await res.json(), { received: "user.created" });
    const rows = await http.query(api.messages.list, { channel: "webhooks" });
    assert.deepEqual(rows.map((m) => m.body), [`user.created ${userId}`]);

    // A forged signature is refused by svix inside the action.
    const forged = signDelivery(newWebhookSecret(), userCreated({ id: newUserId() }));
    res = await fetch(`${server.siteUrl}/js/webhook`, { method: "POST", headers: forged.headers, body: forged.body });
    assert.equal(res.status, 400);
    assert.match(await res.text(), /^refused: /);

    // A prefix route, on the site port and under /http on the API port.
    for (const base of [server.siteUrl, `${server.url}/http`]) {
      res = await fetch(`${base}/js/echo/a/b?q=1`);
      assert.equal(res.status, 201);
      assert.equal(res.headers.get("x-custom"), "yes");
      assert.deepEqual(await res.json(), { path: "/js/echo/a/b", q: "1" });
    }
    // A handler that throws: 500 with Convex's body; a path no route has: 404.
    res = await fetch(`${server.siteUrl}/js/throws`);
    assert.equal(res.status, 500);
    assert.match((await res.json()).code, /Server Error: Uncaught Error: an HTTP action that throws/);
    res = await fetch(`${server.siteUrl}/js/nothing`);
    assert.equal(res.status, 404);
    // The built-in Rust routes still answer beside them (an unsigned Clerk delivery is refused).
    res = await fetch(`${server.siteUrl}/clerk-users-webhook`, { method: "POST", body: "{}" });
    assert.ok(res.status >= 400 && res.status < 500, `the built-in webhook: ${res.status}`);
  }));

  test("crons.ts: an interval cron runs; calendar crons are listed with their schedule and next run", withLogs(async () => {
    await waitFor(async () => (await http.query(api.messages.list, { channel: "cron" })).length >= 2, {
      what: "two runs of the every-second cron",
      timeoutMs: 20_000,
    });
    const res = await fetch(`${server.url}/api/dashboard/crons`, { headers: { authorization: `Convex ${server.adminKey}` } });
    assert.equal(res.status, 200);
    const byName = new Map((await res.json()).crons.map((c) => [c.name, c]));
    assert.equal(byName.get("tick")?.schedule, "every 1000 ms");
    assert.equal(byName.get("nightly")?.schedule, "cron 30 3 * * *");
    assert.equal(byName.get("weekly report")?.schedule, "cron 5 17 * * 2");
    const next = new Date(byName.get("nightly").nextRunMs);
    assert.deepEqual([next.getUTCHours(), next.getUTCMinutes()], [3, 30]);
    assert.ok(byName.get("nightly").nextRunMs > Date.now());
  }));

  test("a call past the time or memory limit fails with Convex's text; the next call runs", withLogs(async () => {
    const started = Date.now();
    await rejectsWith(http.query(api.messages.forever, {}), "Function execution timed out (maximum duration: 1s)");
    assert.ok(Date.now() - started < 20_000, `stopped after ${Date.now() - started} ms`);
    await rejectsWith(http.query(api.messages.hog, {}), "JavaScript execution ran out of memory");
    const clock = await http.query(api.messages.clock, {});
    assert.equal(clock.a, clock.b);
  }));

  test("a live query is updated by a mutation", withLogs(async () => {
    const client = new ConvexClient(server.url);
    try {
      const seen = [];
      const unsubscribe = client.onUpdate(api.messages.list, { channel: "live" }, (value) => seen.push(value));
      await waitFor(() => seen.length >= 1, { what: "the first result" });
      assert.deepEqual(seen.at(-1), []);
      await http.mutation(api.messages.send, { channel: "live", body: "ping" });
      await waitFor(() => seen.at(-1)?.length === 1, { what: "the update" });
      assert.equal(seen.at(-1)[0].body, "ping");
      unsubscribe();
    } finally {
      await client.close();
    }
  }));

  test("the functions are listed by function-spec", withLogs(async () => {
    const r = await convex(server, ["function-spec"], { cwd });
    assert.equal(r.code, 0, r.stderr);
    const spec = JSON.parse(r.stdout);
    const byId = new Map(spec.functions.filter((f) => f.identifier).map((f) => [f.identifier, f]));
    const send = byId.get("messages.js:send");
    assert.ok(send, [...byId.keys()].join(", "));
    assert.equal(send.functionType, "Mutation");
    assert.deepEqual(send.args, {
      type: "object",
      value: { body: { fieldType: { type: "string" }, optional: false }, channel: { fieldType: { type: "string" }, optional: false } },
    });
    assert.deepEqual(byId.get("messages.js:secret").visibility, { kind: "internal" });
    assert.ok(byId.has("users.js:getUserById"), "the built-in app is listed too");
  }));

  test("failed pushes change nothing and say why", withLogs(async () => {
    const before = await http.query(api.messages.list, { channel: "general" });

    // A module that throws while loading: refused by the server, naming the module.
    await writeFile(path.join(cwd, "convex", "broken.ts"), 'import { query } from "./_generated/server";\nexport const x = query(async () => 1);\nthrow new Error("boom while loading");\n');
    let r = await convex(server, PUSH, { cwd });
    assert.notEqual(r.code, 0);
    assert.match(r.stdout + r.stderr, /broken\.js/);
    assert.match(r.stdout + r.stderr, /boom while loading/);

    // A syntax error: esbuild refuses it before anything is sent.
    await writeFile(path.join(cwd, "convex", "broken.ts"), "export const = ;\n");
    r = await convex(server, PUSH, { cwd });
    assert.notEqual(r.code, 0);

    // A function path the built-in app defines.
    await rm(path.join(cwd, "convex", "broken.ts"));
    await writeFile(path.join(cwd, "convex", "users.ts"), 'import { query } from "./_generated/server";\nexport const getUserById = query(async () => 1);\n');
    r = await convex(server, PUSH, { cwd });
    assert.notEqual(r.code, 0);
    assert.match(r.stdout + r.stderr, /PushNameClash/);
    assert.match(r.stdout + r.stderr, /users\.js:getUserById/);
    await rm(path.join(cwd, "convex", "users.ts"));

    // The old code still runs, and the built-in function is untouched.
    await rejectsWith(http.query(api.broken.x, {}), "Could not find public function");
    assert.deepEqual(await http.query(api.messages.list, { channel: "general" }), before);
    assert.equal(await http.query(api.users.getUserById, { userId: "nobody" }), null);
  }));

  test("npx convex deploy pushes too: a new table and a new index work at once; a restart keeps them", withLogs(async () => {
    const messages = (await http.query(api.messages.page, { cursor: null })).page;
    assert.ok(messages.length >= 1, "earlier tests left messages behind");
    // A new table with an index, and a new index on the existing table (backfilled).
    const schema = await readFile(path.join(cwd, "convex", "schema.ts"), "utf8");
    await writeFile(
      path.join(cwd, "convex", "schema.ts"),
      schema
        .replace('.index("by_channel", ["channel"])', '.index("by_channel", ["channel"]).index("by_body", ["body"])')
        .replace("});\n", '  tags: defineTable({ name: v.string(), uses: v.number() }).index("by_name", ["name"]),\n});\n'),
    );
    await writeFile(
      path.join(cwd, "convex", "extra.ts"),
      [
        'import { v } from "convex/values";',
        'import { mutation, query } from "./_generated/server";',
        "export const answer = query({ args: {}, handler: async () => 42 });",
        "export const tag = mutation({ args: { name: v.string() }, handler: async (ctx, { name }) => ctx.db.insert(\"tags\", { name, uses: 1 }) });",
        "export const tagNamed = query({ args: { name: v.string() }, handler: async (ctx, { name }) => (await ctx.db.query(\"tags\").withIndex(\"by_name\", (q) => q.eq(\"name\", name)).unique())?.uses ?? null });",
        "export const byBody = query({ args: { body: v.string() }, handler: async (ctx, { body }) => (await ctx.db.query(\"messages\").withIndex(\"by_body\", (q) => q.eq(\"body\", body)).collect()).map((m) => m._id) });",
        "",
      ].join("\n"),
    );
    await pushOk(server, cwd, ["deploy", "--typecheck", "disable", "--yes"]);
    const check = async () => {
      assert.equal(await http.query(api.extra.answer, {}), 42);
      assert.deepEqual(await http.query(api.extra.byBody, { body: messages[0].body }), [messages[0]._id], "the new index holds the existing rows");
      assert.equal(await http.query(api.extra.tagNamed, { name: "rust" }), 1);
    };
    await http.mutation(api.extra.tag, { name: "rust" });
    await check();
    await server.restart();
    await check();
    assert.ok((await http.query(api.messages.list, { channel: "general" })).length >= 1);
  }));
});

describe("tickethub serve --app none: only the pushed app", { timeout: 600_000 }, () => {
  let server;
  let cwd;

  before(async () => {
    server = await startServer({ which: "tickethub", extraArgs: ["--app", "none"] });
    cwd = await projectDir();
  });
  after(async () => {
    await server?.cleanup();
    if (cwd) await rm(cwd, { recursive: true, force: true });
  });

  test("no built-in functions or tables; a pushed users.ts is fine", withLogs(async () => {
    const http = newClient(server);
    await rejectsWith(http.query(api.users.getUserById, { userId: "x" }), "Could not find public function");
    await writeFile(path.join(cwd, "convex", "users.ts"), 'import { query } from "./_generated/server";\nexport const getUserById = query({ args: {}, handler: async () => "pushed" });\n');
    await pushOk(server, cwd);
    assert.equal(await http.query(api.users.getUserById, {}), "pushed");
    await server.restart();
    const id = await http.mutation(api.messages.send, { channel: "solo", body: "only me" });
    assert.equal((await http.query(api.messages.list, { channel: "solo" }))[0]._id, id);
  }));
});
