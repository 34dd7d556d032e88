// The official Convex CLI (`npx convex`, the pinned `convex` package's own binary) against the
// tickethub binary as a self-hosted deployment: CONVEX_SELF_HOSTED_URL and
// CONVEX_SELF_HOSTED_ADMIN_KEY, nothing else. Covers run (--identity, --watch, and the refused
// --inline-query), run --push, data, logs --history, env set/get/list/remove (and a Clerk webhook verified
// with a secret set that way), function-spec, and the admin-key and unsupported-endpoint answers.

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdir, mkdtemp, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { CONVEX_BIN, cliEnv, convex, convexOk } from "./lib/cli.mjs";
import { startServer } from "./lib/server.mjs";
import { newUserId, newWebhookSecret, sendSigned, userCreated } from "./lib/clerk.mjs";
import { newClient, rejectsWith, waitFor, withLogs } from "./lib/helpers.mjs";
import { startIssuer } from "./lib/oidc.mjs";
import { anyApi } from "convex/server";
import Stripe from "stripe";

/**
 * An empty project directory: the CLI wants a package.json that depends on `convex` (and reads
 * no .env.local from here).
 */
async function projectDir() {
  const dir = await mkdtemp(path.join(tmpdir(), "convex-cli-"));
  await writeFile(path.join(dir, "package.json"), JSON.stringify({ name: "cli-e2e", private: true, dependencies: { convex: "1.48.0" } }));
  return dir;
}

/** Like `convexOk`, returning the CLI's standard output. */
async function convexOut(server, args, opts) {
  return (await convexOk(server, args, opts)).stdout;
}

describe("the official Convex CLI against tickethub", { timeout: 600_000 }, () => {
  let server;
  let cwd;

  before(async () => {
    // No CLERK_WEBHOOK_SECRET in the process environment: the CLI sets it.
    server = await startServer({ which: "tickethub" });
    cwd = await projectDir();
  });
  after(async () => {
    await server?.cleanup();
    if (cwd) await rm(cwd, { recursive: true, force: true });
  });

  const run = (args, opts = {}) => convex(server, args, { cwd, ...opts });
  const runOk = (args, opts = {}) => convexOut(server, args, { cwd, ...opts });

  test("run: a mutation, then a query with and without --identity", withLogs(async () => {
    const userId = newUserId();
    const id = JSON.parse(await runOk(["run", "users:updateUser", JSON.stringify({ userId, name: "Ada", email: "ada@example.org" })]));
    assert.match(id, /^[0-9a-z]{20,}$/, "updateUser returns the new document id");

    const row = JSON.parse(await runOk(["run", "users:getUserById", JSON.stringify({ userId })]));
    assert.equal(row._id, id);
    assert.equal(row.name, "Ada");
    assert.equal(row.email, "ada@example.org");

    // users:current reads the caller's identity: as the admin (no user) it is null, which the
    // CLI prints as nothing; acting as the user it is that user's row.
    assert.equal((await runOk(["run", "users:current"])).trim(), "");
    const asUser = await runOk(["run", "users:current", "--identity", JSON.stringify({ subject: userId, issuer: "https://clerk.example" })]);
    assert.equal(JSON.parse(asUser)._id, id);
    const asOther = await runOk(["run", "users:current", "--identity", JSON.stringify({ subject: newUserId(), issuer: "https://clerk.example" })]);
    assert.equal(asOther.trim(), "", "another user has no row");

    // A function error: non-zero exit, the function's message on stderr.
    const bad = await run(["run", "users:updateUser", JSON.stringify({ userId })]);
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /ArgumentValidationError|missing the required field/i, bad.stderr);
  }));

  test("run --watch: a live subscription prints each new value", withLogs(async () => {
    const userId = newUserId();
    await runOk(["run", "users:updateUser", JSON.stringify({ userId, name: "Before", email: "b@example.org" })]);
    const child = spawn(CONVEX_BIN, ["run", "--watch", "users:getUserById", JSON.stringify({ userId })], {
      cwd,
      env: cliEnv(server),
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    let err = "";
    child.stdout.on("data", (d) => (out += d));
    child.stderr.on("data", (d) => (err += d));
    try {
      await waitFor(() => out.includes('"Before"'), { timeoutMs: 30_000, what: `first value (stderr: ${err})` });
      await runOk(["run", "users:updateUser", JSON.stringify({ userId, name: "After", email: "b@example.org" })]);
      await waitFor(() => out.includes('"After"'), { timeoutMs: 30_000, what: `updated value (stdout: ${out}, stderr: ${err})` });
      assert.ok(out.indexOf('"Before"') < out.indexOf('"After"'));
      assert.equal(child.exitCode, null, "--watch keeps running");
    } finally {
      child.kill("SIGKILL");
    }
  }));

  test("run --watch --identity subscribes as that user", withLogs(async () => {
    const userId = newUserId();
    await runOk(["run", "users:updateUser", JSON.stringify({ userId, name: "Watched", email: "w@example.org" })]);
    const child = spawn(CONVEX_BIN, ["run", "--watch", "users:current", "--identity", JSON.stringify({ subject: userId, issuer: "https://clerk.example" })], {
      cwd,
      env: cliEnv(server),
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    let err = "";
    child.stdout.on("data", (d) => (out += d));
    child.stderr.on("data", (d) => (err += d));
    try {
      await waitFor(() => out.includes('"Watched"'), { timeoutMs: 30_000, what: `the impersonated user's row (stdout: ${out}, stderr: ${err})` });
    } finally {
      child.kill("SIGKILL");
    }
  }));

  test("run --inline-query is refused at once with a clear message", withLogs(async () => {
    const r = await run(["run", "--inline-query", "async (ctx) => 1"]);
    assert.notEqual(r.code, 0);
    assert.match(r.stdout + r.stderr, /not supported by tickethub/, r.stderr);
    assert.ok(r.ms < 20_000, `took ${r.ms} ms (a 404 would be retried for a minute)`);
  }));

  test("run --push pushes the project's convex/ folder, then runs", withLogs(async () => {
    // A real project for the CLI's local bundling step: a convex/ folder and the package.
    const project = await projectDir();
    try {
      await mkdir(path.join(project, "convex"));
      await writeFile(path.join(project, "convex", "probe.ts"), 'import { query } from "./_generated/server";\nexport const get = query(async () => 1);\n');
      await symlink(path.join(path.dirname(CONVEX_BIN), ".."), path.join(project, "node_modules"), "dir");
      const r = await convex(server, ["run", "--push", "--typecheck", "disable", "probe:get"], { cwd: project });
      assert.equal(r.code, 0, r.stdout + r.stderr);
      assert.equal(r.stdout.trim(), "1");
      assert.ok(r.ms < 60_000, `took ${r.ms} ms`);
    } finally {
      await rm(project, { recursive: true, force: true });
    }
  }));

  test("data: the table list, a table's documents with --limit and --order, a system table", withLogs(async () => {
    const tables = (await runOk(["data"])).trim().split("\n").map((l) => l.trim());
    assert.ok(tables.includes("users"), `users missing from ${tables}`);
    assert.ok(tables.includes("events"), `events missing from ${tables}`);
    assert.ok(!tables.some((t) => t.startsWith("_")), "system tables are not listed");

    const names = ["d1", "d2", "d3", "d4"];
    for (const name of names) {
      await runOk(["run", "users:updateUser", JSON.stringify({ userId: `data_${name}_${newUserId()}`, name, email: `${name}@example.org` })]);
    }
    const newest = JSON.parse(await runOk(["data", "users", "--limit", "2", "--format", "json"]));
    assert.deepEqual(newest.map((d) => d.name), ["d4", "d3"], "default order is newest first");
    const oldestFirst = JSON.parse(await runOk(["data", "users", "--limit", "1000", "--order", "asc", "--format", "json"]));
    const positions = names.map((n) => oldestFirst.findIndex((d) => d.name === n));
    assert.ok(positions.every((p, i) => p >= 0 && (i === 0 || p > positions[i - 1])), `asc order: ${positions}`);
    for (const doc of oldestFirst) {
      assert.equal(typeof doc._id, "string");
      assert.equal(typeof doc._creationTime, "number");
    }
    // The pretty table names the columns and warns that more exist.
    const pretty = await run(["data", "users", "--limit", "1"]);
    assert.equal(pretty.code, 0, pretty.stderr);
    assert.match(pretty.stdout, /_id/);
    assert.match(pretty.stdout, /d4/);

    // System tables through `db.system`: the environment variables table.
    await runOk(["env", "set", "DATA_PROBE", "visible"]);
    const envRows = JSON.parse(await runOk(["data", "_environment_variables", "--format", "json"]));
    assert.ok(envRows.some((r) => r.name === "DATA_PROBE" && r.value === "visible"), JSON.stringify(envRows));

    const missing = await run(["data", "no_such_table"]);
    assert.notEqual(missing.code, 0);
    assert.match(missing.stderr + missing.stdout, /no_such_table/);
  }));

  test("env: set, get, list, remove; invalid names refused", withLogs(async () => {
    await runOk(["env", "set", "GREETING", "hello world"]);
    await runOk(["env", "set", "OTHER=1"]);
    assert.equal((await runOk(["env", "get", "GREETING"])).trim(), "hello world");
    const list = await runOk(["env", "list"]);
    assert.match(list, /GREETING=/);
    assert.match(list, /OTHER=1/);
    await runOk(["env", "remove", "GREETING"]);
    const gone = await run(["env", "get", "GREETING"]);
    assert.match(gone.stdout + gone.stderr, /not found/i);
    assert.doesNotMatch(await runOk(["env", "list"]), /GREETING/);

    // Through the endpoint directly: stable codes.
    const headers = { Authorization: `Convex ${server.adminKey}` };
    const invalid = await server.post("/api/update_environment_variables", { changes: [{ name: "1BAD", value: "x" }] }, headers);
    assert.equal(invalid.status, 400);
    assert.equal(invalid.json.code, "EnvironmentVariableNameInvalid");
    const big = await server.post("/api/update_environment_variables", { changes: [{ name: "BIG", value: "x".repeat(8193) }] }, headers);
    assert.equal(big.status, 400);
    assert.equal(big.json.code, "EnvironmentVariableValueTooLarge");
    const listed = await fetch(`${server.url}/api/v1/list_environment_variables`, { headers });
    const vars = (await listed.json()).environmentVariables;
    assert.equal(vars.OTHER, "1");
    assert.equal(vars.BIG, undefined, "a refused update wrote nothing");
  }));

  test("env set CLERK_WEBHOOK_SECRET: a delivery signed with it is accepted, another refused", withLogs(async () => {
    const userId = newUserId();
    const payload = userCreated({ id: userId, firstName: "Env", lastName: "Secret", email: "env@example.org" });
    // Not configured yet (not in the server's environment): the endpoint says so.
    const before = await sendSigned(server.siteUrl, newWebhookSecret(), payload);
    assert.equal(before.status, 500, before.text);

    const secret = newWebhookSecret();
    await runOk(["env", "set", "CLERK_WEBHOOK_SECRET", secret]);
    const wrong = await sendSigned(server.siteUrl, newWebhookSecret(), payload);
    assert.equal(wrong.status, 400, `a delivery signed with another secret: ${wrong.text}`);
    assert.equal(await server.adminRun("users:getUserById", { userId }), null);
    const ok = await sendSigned(server.siteUrl, secret, payload);
    assert.equal(ok.status, 200, ok.text);
    const row = await server.adminRun("users:getUserById", { userId });
    assert.equal(row.name, "Env Secret");

    // Rotated without a restart: the old secret stops working at once.
    await runOk(["env", "set", "CLERK_WEBHOOK_SECRET", newWebhookSecret()]);
    const stale = await sendSigned(server.siteUrl, secret, userCreated({ id: newUserId() }));
    assert.equal(stale.status, 400, stale.text);
  }));

  test("logs --history: recent calls with their kind, identifier, lines and errors", withLogs(async () => {
    const userId = newUserId();
    await runOk(["run", "users:getUserById", JSON.stringify({ userId })]);
    // A refused webhook delivery logs a WARN line inside the HTTP action.
    const refused = await sendSigned(server.siteUrl, newWebhookSecret(), userCreated({ id: userId }));
    assert.equal(refused.status, 400);

    const child = spawn(CONVEX_BIN, ["logs", "--history", "50", "--success"], { cwd, env: cliEnv(server), stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    child.stdout.on("data", (d) => (out += d));
    child.stderr.on("data", (d) => (err += d));
    try {
      await waitFor(() => out.includes("Function executed") && out.includes("[WARN]"), { timeoutMs: 30_000, what: `log history (stdout: ${out}, stderr: ${err})` });
      assert.match(out, /\[CONVEX Q\(users:getUserById\)\] Function executed in \d+ ms/);
      assert.match(out, /\[CONVEX H\(POST \/clerk-users-webhook\)\] \[WARN\]/);
      // New calls stream in while it runs.
      await runOk(["run", "users:updateUser", JSON.stringify({ userId, name: "Streamed", email: "s@example.org" })]);
      await waitFor(() => /\[CONVEX M\(users:updateUser\)\] Function executed/.test(out), { timeoutMs: 30_000, what: `a new call streamed (stdout: ${out})` });
    } finally {
      child.kill("SIGKILL");
    }

    // --jsonl prints the raw entries: Convex's FunctionExecution shape.
    const jsonl = spawn(CONVEX_BIN, ["logs", "--history", "3", "--jsonl"], { cwd, env: cliEnv(server), stdio: ["ignore", "pipe", "pipe"] });
    let raw = "";
    jsonl.stdout.on("data", (d) => (raw += d));
    try {
      await waitFor(() => raw.trim().split("\n").filter((l) => l.startsWith("{")).length >= 3, { timeoutMs: 30_000, what: "three jsonl entries" });
    } finally {
      jsonl.kill("SIGKILL");
    }
    const entries = raw.trim().split("\n").filter((l) => l.startsWith("{")).map((l) => JSON.parse(l));
    for (const e of entries) {
      assert.equal(e.kind, "Completion");
      assert.ok(["Query", "Mutation", "Action", "HttpAction"].includes(e.udfType), e.udfType);
      assert.equal(typeof e.identifier, "string");
      assert.ok(e.timestamp > 1.6e9 && e.timestamp < 1e11, `timestamp in seconds: ${e.timestamp}`);
      assert.ok(e.executionTime >= 0 && e.executionTime < 60);
      assert.ok(Array.isArray(e.logLines));
      assert.equal(typeof e.requestId, "string");
    }
  }));

  test("function-spec: every function with kind, visibility and validators, and the HTTP routes", withLogs(async () => {
    const spec = JSON.parse(await runOk(["function-spec"]));
    assert.equal(spec.url, server.url);
    const byId = new Map(spec.functions.filter((f) => f.identifier).map((f) => [f.identifier, f]));
    const get = byId.get("users.js:getUserById");
    assert.ok(get, `users.js:getUserById missing from ${[...byId.keys()].join(", ")}`);
    assert.equal(get.functionType, "Query");
    assert.deepEqual(get.visibility, { kind: "public" });
    assert.deepEqual(get.args, { type: "object", value: { userId: { fieldType: { type: "string" }, optional: false } } });
    const upsert = byId.get("users.js:upsertUserFromClerk");
    assert.equal(upsert.functionType, "Mutation");
    assert.deepEqual(upsert.visibility, { kind: "internal" });
    assert.ok(![...byId.keys()].some((k) => k.startsWith("_system/")), "built-in functions are not listed");
    const routes = spec.functions.filter((f) => f.functionType === "HttpAction");
    assert.ok(routes.some((r) => r.method === "POST" && r.path === "/clerk-users-webhook"), JSON.stringify(routes));
  }));

  test("a wrong admin key gets 403 BadDeployKey; the CLI says so and stops", withLogs(async () => {
    const bad = await fetch(`${server.url}/api/update_environment_variables`, {
      method: "POST",
      headers: { Authorization: "Convex not-the-key", "Content-Type": "application/json" },
      body: JSON.stringify({ changes: [] }),
    });
    assert.equal(bad.status, 403);
    assert.equal((await bad.json()).code, "BadDeployKey");
    const r = await run(["env", "set", "X", "1"], { adminKey: "not-the-key" });
    assert.notEqual(r.code, 0);
    assert.match(r.stdout + r.stderr, /admin key was invalid/);
    assert.ok(r.ms < 20_000, `took ${r.ms} ms`);
    const logs = await run(["logs"], { adminKey: "not-the-key", timeoutMs: 30_000 });
    assert.notEqual(logs.code, 0);
    assert.match(logs.stdout + logs.stderr, /admin key was invalid/);
  }));

  test("endpoints the CLI uses that tickethub does not implement answer a fast 400", withLogs(async () => {
    const headers = { Authorization: `Convex ${server.adminKey}` };
    for (const endpoint of ["/api/deploy2/evaluate_schema", "/api/push_config", "/api/run_test_function"]) {
      const r = await server.post(endpoint, {}, headers);
      assert.equal(r.status, 400, `${endpoint}: ${r.text}`);
      assert.equal(r.json.code, "NotSupported");
      assert.match(r.json.message, /not supported by tickethub/);
    }
  }));
});

describe("deployment variables over the process environment", { timeout: 300_000 }, () => {
  let server;
  let issuer;
  let cwd;
  const processSecret = newWebhookSecret();

  before(async () => {
    issuer = await startIssuer();
    // Started with a webhook secret and no auth provider in its process environment.
    server = await startServer({ which: "tickethub", env: { CLERK_WEBHOOK_SECRET: processSecret } });
    cwd = await projectDir();
  });
  after(async () => {
    await server?.cleanup();
    await issuer?.stop();
    if (cwd) await rm(cwd, { recursive: true, force: true });
  });

  test("the deployment's CLERK_WEBHOOK_SECRET wins; removing it falls back to the process's", withLogs(async () => {
    const deliver = (secret) => sendSigned(server.siteUrl, secret, userCreated({ id: newUserId() }));
    assert.equal((await deliver(processSecret)).status, 200);
    const deploymentSecret = newWebhookSecret();
    await convexOut(server, ["env", "set", "CLERK_WEBHOOK_SECRET", deploymentSecret], { cwd });
    assert.equal((await deliver(deploymentSecret)).status, 200);
    assert.equal((await deliver(processSecret)).status, 400, "the process secret no longer applies");
    await convexOut(server, ["env", "remove", "CLERK_WEBHOOK_SECRET"], { cwd });
    assert.equal((await deliver(processSecret)).status, 200);
    assert.equal((await deliver(deploymentSecret)).status, 400);
  }));

  test("env set STRIPE_WEBHOOK_SECRET: Stripe deliveries verify with it at once", withLogs(async () => {
    const stripe = new Stripe("sk_test_never_used_for_network_calls");
    const deliver = async (secret) => {
      const body = JSON.stringify({ id: `evt_${randomBytes(8).toString("hex")}`, object: "event", type: "payment_intent.succeeded", data: { object: { id: "pi_1" } } });
      const header = stripe.webhooks.generateTestHeaderString({ payload: body, secret });
      const res = await fetch(`${server.siteUrl}/stripe-webhook`, { method: "POST", headers: { "content-type": "application/json", "stripe-signature": header }, body });
      return { status: res.status, text: await res.text() };
    };
    const secret = `whsec_${randomBytes(24).toString("hex")}`;
    assert.equal((await deliver(secret)).status, 500, "not configured yet");
    await convexOut(server, ["env", "set", "STRIPE_WEBHOOK_SECRET", secret], { cwd });
    const ok = await deliver(secret);
    assert.equal(ok.status, 200, ok.text);
    assert.equal(JSON.parse(ok.text).outcome, "ignored");
    const wrong = await deliver(`whsec_${randomBytes(24).toString("hex")}`);
    assert.ok(wrong.status >= 400 && wrong.status < 500, `${wrong.status} ${wrong.text}`);
  }));

  test("env set CLERK_JWT_ISSUER_DOMAIN turns JWT auth on without a restart", withLogs(async () => {
    const userId = newUserId();
    await server.adminRun("users:updateUser", { userId, name: "Jwt", email: "jwt@example.org" });
    const client = newClient(server, { auth: await issuer.tokenFor(userId) });
    await rejectsWith(client.query(anyApi.users.current, {}), "");
    await convexOut(server, ["env", "set", "CLERK_JWT_ISSUER_DOMAIN", issuer.issuer], { cwd });
    const row = await waitFor(async () => {
      try {
        return await newClient(server, { auth: await issuer.tokenFor(userId) }).query(anyApi.users.current, {});
      } catch {
        return null;
      }
    }, { timeoutMs: 10_000, what: "the token accepted after env set" });
    assert.equal(row.userId, userId);
    assert.equal(row.name, "Jwt");
  }));
});
