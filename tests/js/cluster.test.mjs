// Several tickethub nodes over one PostgreSQL (cluster mode: --node-id, --advertise-url), behind
// a real load balancer (HAProxy from Debian, round-robin for HTTP and WebSocket), driven by the
// official `convex` clients:
// - a follower's subscription sees a write made through another node, and a mutation sent
//   through a follower resolves only once that follower's subscription shows it;
// - failover under load: kill -9 of the leader while ConvexClients are subscribed through the
//   balancer and writers send mutations: a follower leads within the lease TTL, subscriptions
//   resume, no acknowledged write is lost, `_creationTime` never goes backwards for a writer;
// - split brain: the leader is paused (SIGSTOP) past its lease, another takes over, the old one
//   resumes (SIGCONT): it cannot commit (its epoch is stale), becomes a follower, and nothing is
//   half-written;
// - the dashboard's API (`/api/dashboard/health`, which its Health page reads) names each node's
//   role, id and leader, as /metrics does;
// - through a follower, the writes that are not one function call reach the leader: a Clerk
//   webhook (an HTTP action) creates the user, a file upload is stored and served by every node,
//   an environment variable and a dashboard document edit land;
// - a Postgres crash-restart (`tests/pg-cluster restart-immediate`) under writers and
//   subscribers through the balancer: refusals carry retry codes, the cluster recovers by itself
//   (one leader, followers' watchers hear commits again), nothing acknowledged is lost, commit
//   timestamps never go backwards;
// - scheduled jobs across a kill -9 of the leader (the notes example's `notes:scheduleRun`, whose
//   every run leaves a note): every due mutation job runs exactly once, no action job twice;
// - figures (t.diagnostic): commit-to-subscriber latency on a follower against the leader, and
//   reads through the balancer with 1, 2 and 3 nodes.
//
// RUNS ONLY ON POSTGRES RUNS (TICKETHUB_TEST_DATABASE_URL, as tests/run sets for its Postgres
// half) and with haproxy installed (`apt-get install -y haproxy`; .ci/run does); otherwise every
// test skips and says why.
//
// Run: TICKETHUB_TEST_DATABASE_URL=$(tests/pg-cluster start /tmp/pg) TICKETHUB_TEST_PG_DIR=/tmp/pg \
//        TICKETHUB_BIN=target/release/tickethub NOTES_BIN=target/release/notes-server \
//        node --test tests/js/cluster.test.mjs

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { anyApi } from "convex/server";
import { ConvexHttpClient } from "convex/browser";
import { Server, binaryPath, freePort, freshSchemaName, liveServers } from "./lib/server.mjs";
import { waitFor } from "./lib/helpers.mjs";
import { closeAll, openClient, percentile, watch } from "./lib/sync.mjs";
import { newUserId, newWebhookSecret, sendSigned, userCreated } from "./lib/clerk.mjs";
import { convexOk, convexProject } from "./lib/cli.mjs";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { fileURLToPath } from "node:url";

const api = anyApi;
const DAY_MS = 24 * 3600 * 1000;
/** The failover time the nodes run with (the default is 10 s; shorter keeps the test quick). */
const LEASE_TTL_MS = 3000;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const run = promisify(execFile);
const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const PG_CLUSTER = path.join(REPO_ROOT, "tests", "pg-cluster");
/** The tests/pg-cluster directory of the Postgres to crash-restart (tests/run sets it). */
const PG_DIR = process.env.TICKETHUB_TEST_PG_DIR || null;
/** What a caller may hear while the database or the leadership is away: each says "retry". */
const RETRY_CODES = /\b(DatabaseUnavailable|LeaderUnavailable|WriterFenced|ServerOverloaded)\b/;
const WEBHOOK_SECRET = newWebhookSecret();

function haproxyPath() {
  for (const p of ["/usr/sbin/haproxy", "/usr/bin/haproxy", "/usr/local/sbin/haproxy"]) if (existsSync(p)) return p;
  return null;
}

function eventArgs(i, tag = "cluster") {
  return {
    name: `${tag} ${i}`,
    description: `cluster test ${i}`,
    location: "Vienna",
    eventDate: Date.now() + 30 * DAY_MS,
    price: 10 + (i % 40),
    totalTickets: 100,
    userId: `organizer_${i % 5}`,
  };
}

/** One cluster: Postgres (given or throwaway), N nodes on one schema, and HAProxy over them. */
class Cluster {
  /** `which`: the tickethub binary or the notes example's; `env`: every node's environment. */
  constructor({ which = "tickethub", env = {} } = {}) {
    this.which = which;
    this.env = env;
    this.nodes = [];
    this.balancers = [];
  }

  async start(count) {
    this.databaseUrl = process.env.TICKETHUB_TEST_DATABASE_URL;
    this.schema = freshSchemaName("cluster");
    this.adminKey = `cluster-admin-${randomBytes(24).toString("hex")}`;
    for (let i = 1; i <= count; i++) {
      const node = await this.newNode(`n${i}`);
      await node.start();
      // The first node takes the lease; the others start as followers.
      if (i === 1) await this.waitForLeader();
    }
    this.balancer = await this.startBalancer(this.nodes);
    return this;
  }

  async newNode(id) {
    const port = await freePort();
    let sitePort = await freePort();
    while (sitePort === port) sitePort = await freePort();
    const dataDir = await mkdtemp(path.join(tmpdir(), `tickethub-cluster-${id}-`));
    const node = new Server({
      bin: binaryPath(this.which),
      env: this.env,
      extraArgs: ["--node-id", id, "--advertise-url", `http://127.0.0.1:${port}`, "--lease-ttl-ms", String(LEASE_TTL_MS)],
      testClock: false,
      adminKey: this.adminKey,
      dataDir,
      ownsDataDir: true,
      label: id,
      database: { url: this.databaseUrl, schema: this.schema },
    });
    node.port = port;
    node.sitePort = sitePort;
    node.id = id;
    liveServers.add(node);
    this.nodes.push(node);
    return node;
  }

  /** `leader`, `follower`, or null when the node does not answer (killed, stopped). */
  async role(node) {
    try {
      const res = await fetch(`${node.url}/metrics`, {
        headers: { authorization: `Convex ${this.adminKey}` },
        signal: AbortSignal.timeout(1000),
      });
      const text = await res.text();
      const m = text.match(/tickethub_cluster_leader\{role="(\w+)"\} (\d)/);
      return m ? m[1] : null;
    } catch {
      return null;
    }
  }

  async leaders(nodes = this.nodes) {
    const roles = await Promise.all(nodes.map((n) => this.role(n)));
    return nodes.filter((_, i) => roles[i] === "leader");
  }

  async waitForLeader({ among = this.nodes, timeoutMs = 30_000 } = {}) {
    let found = null;
    await waitFor(
      async () => {
        const leaders = await this.leaders(among);
        found = leaders.length === 1 ? leaders[0] : null;
        return found !== null;
      },
      { timeoutMs, intervalMs: 50, what: "exactly one leader" },
    );
    return found;
  }

  async followers() {
    const roles = await Promise.all(this.nodes.map((n) => this.role(n)));
    return this.nodes.filter((_, i) => roles[i] === "follower");
  }

  /** GET an admin endpoint of `node` (the dashboard's API); the parsed JSON. */
  async adminGet(node, endpoint) {
    const res = await fetch(`${node.url}${endpoint}`, { headers: { authorization: `Convex ${this.adminKey}` } });
    const text = await res.text();
    assert.equal(res.status, 200, `${endpoint} on ${node.id}: ${text}`);
    return JSON.parse(text);
  }

  /** Run an (internal or public) function as admin on `node`; its value. */
  async adminRun(node, pathName, args = {}) {
    const res = await fetch(`${node.url}/api/function`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Convex ${this.adminKey}` },
      body: JSON.stringify({ path: pathName, args, format: "json" }),
    });
    const text = await res.text();
    const json = JSON.parse(text);
    assert.equal(json.status, "success", `${pathName} on ${node.id}: ${text}`);
    return json.value;
  }

  /** HAProxy in front of `nodes`: round-robin, HTTP and WebSocket (HTTP mode tunnels upgrades). */
  async startBalancer(nodes) {
    const port = await freePort();
    const dir = await mkdtemp(path.join(tmpdir(), "tickethub-haproxy-"));
    const servers = nodes.map((n) => `    server ${n.id} 127.0.0.1:${n.port} check inter 300 fall 2 rise 1`).join("\n");
    const config = `global
    maxconn 4096
defaults
    mode http
    timeout connect 2s
    timeout client 60s
    timeout server 60s
    timeout tunnel 1h
    retries 3
    option redispatch
frontend api
    bind 127.0.0.1:${port}
    default_backend nodes
backend nodes
    balance roundrobin
    option httpchk GET /instance_name
${servers}
`;
    const configPath = path.join(dir, "haproxy.cfg");
    await writeFile(configPath, config);
    const child = spawn(haproxyPath(), ["-db", "-f", configPath], { stdio: ["ignore", "pipe", "pipe"] });
    let log = "";
    child.stdout.on("data", (d) => (log += d));
    child.stderr.on("data", (d) => (log += d));
    const balancer = { url: `http://127.0.0.1:${port}`, child, dir, log: () => log };
    this.balancers.push(balancer);
    await waitFor(
      async () => {
        try {
          const res = await fetch(`${balancer.url}/instance_name`, { signal: AbortSignal.timeout(1000) });
          await res.arrayBuffer();
          return res.status === 200;
        } catch {
          return false;
        }
      },
      { timeoutMs: 10_000, what: "haproxy answering" },
    );
    return balancer;
  }

  output() {
    return this.nodes.map((n) => `----- ${n.id} -----\n${n.output().slice(-6000)}`).join("\n");
  }

  async stop() {
    for (const b of this.balancers) {
      b.child.kill("SIGKILL");
      await rm(b.dir, { recursive: true, force: true });
    }
    for (const n of this.nodes) {
      try {
        n.child?.kill("SIGCONT");
      } catch {
        // gone
      }
      await n.cleanup();
    }
  }
}

function httpClient(url) {
  return new ConvexHttpClient(url, { logger: false });
}

function prerequisitesMissing(t) {
  if (!haproxyPath()) {
    t.skip("haproxy is not installed (apt-get install -y haproxy; .ci/run installs it)");
    return true;
  }
  if (!process.env.TICKETHUB_TEST_DATABASE_URL) {
    t.skip("Postgres only: set TICKETHUB_TEST_DATABASE_URL (tests/run does, with tests/pg-cluster)");
    return true;
  }
  return false;
}

describe("several nodes over one Postgres", { timeout: 900_000 }, () => {
  let cluster = null;
  const clients = [];
  /** Set through a follower by one test; the leader after the failover must still show it. */
  const envVarName = `CLUSTER_${randomBytes(4).toString("hex").toUpperCase()}`;
  before(async () => {
    if (!haproxyPath() || !process.env.TICKETHUB_TEST_DATABASE_URL) return;
    cluster = await new Cluster({ env: { CLERK_WEBHOOK_SECRET: WEBHOOK_SECRET } }).start(3);
  });
  after(async () => {
    await closeAll(clients);
    if (cluster) await cluster.stop();
  });

  test("each node's role, id and leader are in the dashboard's API and in /metrics", async (t) => {
    if (prerequisitesMissing(t)) return;
    try {
      const leader = await cluster.waitForLeader();
      for (const node of cluster.nodes) {
        const { node: shown } = await cluster.adminGet(node, "/api/dashboard/health");
        const role = await cluster.role(node);
        assert.equal(shown.role, role, `${node.id}: the dashboard and /metrics disagree`);
        assert.equal(shown.nodeId, node.id);
        // Followers name the leader's advertised URL; the leader names itself.
        assert.equal(shown.leaderUrl, leader.url, `${node.id}'s leader`);
      }
      const roles = await Promise.all(cluster.nodes.map(async (n) => (await cluster.adminGet(n, "/api/dashboard/health")).node.role));
      assert.deepEqual(roles.filter((r) => r === "leader").length, 1, `roles: ${roles}`);
      t.diagnostic(`roles: ${cluster.nodes.map((n, i) => `${n.id}=${roles[i]}`).join(", ")}`);
    } catch (e) {
      e.message += `\n${cluster.output()}`;
      throw e;
    }
  });

  test("through a follower: a Clerk webhook (HTTP action) creates the user, a file upload lands and is served, admin writes reach the leader", async (t) => {
    if (prerequisitesMissing(t)) return;
    try {
      const leader = await cluster.waitForLeader();
      const [follower] = await cluster.followers();
      assert.ok(follower, "a follower");

      // The Clerk webhook, signed as Svix does, to the follower's site port: the follower relays
      // it to the leader, which runs the HTTP action (and its mutation) and answers.
      const userId = newUserId();
      const created = await sendSigned(follower.siteUrl, WEBHOOK_SECRET, userCreated({ id: userId, firstName: "Grace", lastName: "Hopper", email: "grace@example.org" }));
      assert.equal(created.status, 200, `user.created through ${follower.id}: ${created.text}`);
      const row = await cluster.adminRun(follower, "users:getUserById", { userId });
      assert.ok(row, "the webhook through a follower did not create the user");
      assert.equal(row.name, "Grace Hopper");
      // The same through the API port's /http prefix, and a bad signature is still refused.
      const again = await sendSigned(`${follower.url}/http`, WEBHOOK_SECRET, userCreated({ id: newUserId(), firstName: "Ada" }));
      assert.equal(again.status, 200, `through /http on ${follower.id}: ${again.text}`);
      const forged = await sendSigned(follower.siteUrl, newWebhookSecret(), userCreated({ id: newUserId() }));
      assert.ok(forged.status >= 400 && forged.status < 500, `a forged webhook through a follower: ${forged.status} ${forged.text}`);

      // A file upload through the follower: generateUploadUrl is a mutation (forwarded); the URL
      // names the leader's origin, so the POST is sent to the follower's instead, which relays it.
      const viaFollower = httpClient(follower.url);
      const uploadUrl = new URL(await viaFollower.mutation(api.storage.generateUploadUrl, {}));
      const bytes = randomBytes(300_000);
      const res = await fetch(`${follower.url}${uploadUrl.pathname}${uploadUrl.search}`, {
        method: "POST",
        body: bytes,
        headers: { "content-type": "application/octet-stream" },
      });
      const uploaded = await res.text();
      assert.equal(res.status, 200, `upload through ${follower.id}: ${uploaded}`);
      const { storageId } = JSON.parse(uploaded);
      assert.ok(storageId, uploaded);
      const fileUrl = new URL(await viaFollower.query(api.storage.getUrl, { storageId }));
      for (const node of cluster.nodes) {
        const served = await fetch(`${node.url}${fileUrl.pathname}`);
        const body = Buffer.from(await served.arrayBuffer());
        assert.equal(served.status, 200, `the file through ${node.id}`);
        assert.ok(body.equals(bytes), `the file's bytes through ${node.id}`);
      }

      // Admin writes: an environment variable set through the follower is the leader's.
      const name = envVarName;
      const set = await fetch(`${follower.url}/api/update_environment_variables`, {
        method: "POST",
        headers: { "content-type": "application/json", authorization: `Convex ${cluster.adminKey}` },
        body: JSON.stringify({ changes: [{ name, value: "from a follower" }] }),
      });
      assert.equal(set.status, 200, `env set through ${follower.id}: ${await set.text()}`);
      const listed = await fetch(`${leader.url}/api/v1/list_environment_variables`, { headers: { authorization: `Convex ${cluster.adminKey}` } });
      assert.equal((await listed.json()).environmentVariables?.[name], "from a follower");
      // A dashboard document edit through the follower.
      const inserted = await fetch(`${follower.url}/api/dashboard/documents`, {
        method: "POST",
        headers: { "content-type": "application/json", authorization: `Convex ${cluster.adminKey}` },
        body: JSON.stringify({ table: "events", document: { ...eventArgs(7, "dashboard via follower"), eventDate: Date.now() + DAY_MS } }),
      });
      const insertedText = await inserted.text();
      assert.equal(inserted.status, 200, `dashboard insert through ${follower.id}: ${insertedText}`);
      const events = await httpClient(leader.url).query(api.events.get, {});
      assert.ok(events.some((e) => e.name === "dashboard via follower 7"), insertedText);
    } catch (e) {
      e.message += `\n${cluster.output()}`;
      throw e;
    }
  });

  test("a follower's subscription sees a write made through another node; a write through a follower resolves once that follower shows it", async (t) => {
    if (prerequisitesMissing(t)) return;
    try {
      const leader = await cluster.waitForLeader();
      const [follower] = await cluster.followers();
      assert.ok(follower, "a follower");
      const sub = openClient(follower, { label: "on follower" });
      clients.push(sub);
      const w = watch(sub, "events:get", {});
      await w.until((v) => Array.isArray(v));
      const id = await httpClient(leader.url).mutation(api.events.create, eventArgs(1, "through leader"));
      await w.until((v) => v.some((e) => e._id === id), { timeoutMs: 5000, what: "the leader's write" });

      // Through the follower's WebSocket: forwarded to the leader; it resolves only when the
      // follower's own subscription reflects it.
      for (let i = 0; i < 5; i++) {
        const id2 = await sub.mutation(api.events.create, eventArgs(100 + i, "through follower"));
        assert.ok(
          w.latest.some((e) => e._id === id2),
          `round ${i}: the follower's subscription had not seen its forwarded write when the mutation resolved`,
        );
      }
      // And over HTTP through the follower.
      const id3 = await httpClient(follower.url).mutation(api.events.create, eventArgs(200, "http via follower"));
      await w.until((v) => v.some((e) => e._id === id3), { timeoutMs: 5000, what: "the HTTP write via the follower" });
    } catch (e) {
      e.message += `\n${cluster.output()}`;
      throw e;
    }
  });

  test("commit-to-subscriber latency on a follower against the leader (figures)", async (t) => {
    if (prerequisitesMissing(t)) return;
    const leader = await cluster.waitForLeader();
    const [follower] = await cluster.followers();
    const onLeader = openClient(leader, { label: "latency leader", trace: false });
    const onFollower = openClient(follower, { label: "latency follower", trace: false });
    clients.push(onLeader, onFollower);
    const tag = `lat-${randomBytes(3).toString("hex")}`;
    const wl = watch(onLeader, "events:get", {});
    const wf = watch(onFollower, "events:get", {});
    await wl.until(Array.isArray);
    await wf.until(Array.isArray);
    const writer = httpClient(leader.url);
    const leaderMs = [];
    const followerMs = [];
    for (let i = 0; i < 40; i++) {
      const name = `${tag} ${i}`;
      const started = performance.now();
      const seen = (w, into) =>
        w.until((v) => v.some((e) => e.name === name), { timeoutMs: 10_000 }).then(() => into.push(performance.now() - started));
      const both = Promise.all([seen(wl, leaderMs), seen(wf, followerMs)]);
      await writer.mutation(api.events.create, { ...eventArgs(i), name });
      await both;
    }
    const fmt = (xs) => `p50 ${percentile(xs, 50).toFixed(1)} ms, p99 ${percentile(xs, 99).toFixed(1)} ms`;
    t.diagnostic(`commit-to-subscriber (write via leader HTTP, 40 rounds): leader ${fmt(leaderMs)}; follower ${fmt(followerMs)}`);
    console.log(`FIGURE commit-to-subscriber leader ${fmt(leaderMs)} | follower ${fmt(followerMs)}`);
    assert.ok(percentile(followerMs, 99) < 5000, "a follower hears of a commit within the poll interval at worst");
  });

  test("split brain: a paused leader that resumes after a takeover cannot commit, and follows", async (t) => {
    if (prerequisitesMissing(t)) return;
    try {
      const old = await cluster.waitForLeader();
      const others = cluster.nodes.filter((n) => n !== old);
      const before = (await httpClient(others[0].url).query(api.events.get, {})).length;
      old.child.kill("SIGSTOP");
      const stoppedAt = Date.now();
      // A write sent to the paused leader waits in its socket; it is answered after SIGCONT.
      const pending = httpClient(old.url)
        .mutation(api.events.create, eventArgs(1, "sent to the paused leader"))
        .then((id) => ({ id }), (error) => ({ error: String(error?.message ?? error) }));
      const fresh = await cluster.waitForLeader({ among: others, timeoutMs: LEASE_TTL_MS * 3 + 10_000 });
      const tookMs = Date.now() - stoppedAt;
      t.diagnostic(`new leader ${fresh.id} after ${tookMs} ms (lease TTL ${LEASE_TTL_MS} ms)`);
      const idNew = await httpClient(fresh.url).mutation(api.events.create, eventArgs(2, "new leader"));
      old.child.kill("SIGCONT");
      const answer = await pending;
      // Either the old node's writer tried first and was fenced (a clear, retryable error), or
      // it had already stepped down and forwarded the write to the new leader.
      if (answer.error) {
        assert.match(answer.error, /WriterFenced|LeaderUnavailable/, `the paused leader's write: ${answer.error}`);
      }
      await waitFor(async () => (await cluster.role(old)) === "follower", { timeoutMs: 10_000, what: "the old leader to follow" });
      assert.equal((await cluster.leaders()).length, 1, "one leader");
      const events = await httpClient(fresh.url).query(api.events.get, {});
      const ids = new Set(events.map((e) => e._id));
      assert.ok(ids.has(idNew), "the new leader's write");
      if (answer.id) assert.ok(ids.has(answer.id), "the forwarded write is there");
      assert.equal(events.length, before + 1 + (answer.id ? 1 : 0), "nothing else was written, nothing half-written");
      // The old node serves again, as a follower: a write through it is forwarded.
      const idAfter = await httpClient(old.url).mutation(api.events.create, eventArgs(3, "via the old leader"));
      assert.ok((await httpClient(fresh.url).query(api.events.get, {})).some((e) => e._id === idAfter));
    } catch (e) {
      e.message += `\n${cluster.output()}`;
      throw e;
    }
  });

  test("a push through a follower reaches every node without a restart: its table, functions and data", async (t) => {
    if (prerequisitesMissing(t)) return;
    let dir = null;
    try {
      await cluster.waitForLeader();
      const [follower, other] = await cluster.followers();
      dir = await convexProject("cluster-push-", {
        packageJson: { name: "cluster-push", private: true, dependencies: { convex: "1.48.0" } },
        files: {
          "schema.ts": [
            'import { defineSchema, defineTable } from "convex/server";',
            'import { v } from "convex/values";',
            'export default defineSchema({ clusterNotes: defineTable({ topic: v.string(), text: v.string() }).index("by_topic", ["topic"]) });',
          ].join("\n"),
          "clusterNotes.ts": [
            'import { v } from "convex/values";',
            'import { mutation, query } from "./_generated/server";',
            'export const add = mutation({ args: { topic: v.string(), text: v.string() }, handler: async (ctx, a) => await ctx.db.insert("clusterNotes", a) });',
            'export const byTopic = query({ args: { topic: v.string() }, handler: async (ctx, { topic }) =>',
            '  (await ctx.db.query("clusterNotes").withIndex("by_topic", (q) => q.eq("topic", topic)).collect()).map((n) => n.text) });',
          ].join("\n"),
        },
      });
      // The CLI talks to a follower, which relays every push step to the leader.
      await convexOk({ url: follower.url, adminKey: cluster.adminKey, output: () => "" }, ["deploy", "--typecheck", "disable", "--yes"], { cwd: dir });
      const pushedAt = Date.now();
      // Every node runs the new functions on the new table, without a restart: the followers
      // reload the push when they hear of the commit that stored it.
      for (const node of cluster.nodes) {
        await waitFor(async () => {
          try {
            return Array.isArray(await httpClient(node.url).query(api.clusterNotes.byTopic, { topic: "none" }));
          } catch {
            return false;
          }
        }, { timeoutMs: 15_000, what: `the pushed query on ${node.id}` });
      }
      const everywhereMs = Date.now() - pushedAt;
      t.diagnostic(`the pushed functions answered on all ${cluster.nodes.length} nodes ${everywhereMs} ms after the CLI finished`);
      console.log(`FIGURE cluster push reaches every node ${everywhereMs} ms after the CLI`);
      // A write through one follower: read back there at once, and through the other follower
      // once it has heard of the commit (within the commit-log poll at worst).
      await httpClient(follower.url).mutation(api.clusterNotes.add, { topic: "push", text: "from a follower" });
      assert.deepEqual(await httpClient(follower.url).query(api.clusterNotes.byTopic, { topic: "push" }), ["from a follower"]);
      await waitFor(async () => (await httpClient(other.url).query(api.clusterNotes.byTopic, { topic: "push" })).length === 1, {
        timeoutMs: 10_000,
        what: "the write on the other follower",
      });
    } catch (e) {
      e.message += `\n${cluster.output()}`;
      throw e;
    } finally {
      if (dir) await rm(dir, { recursive: true, force: true });
    }
  });

  test("failover under load: kill -9 of the leader through the balancer loses no acknowledged write", async (t) => {
    if (prerequisitesMissing(t)) return;
    try {
      const leader = await cluster.waitForLeader();
      const lb = cluster.balancer;
      // Subscribers through the balancer (round-robin: they land on different nodes).
      const subs = [];
      for (let i = 0; i < 4; i++) {
        const c = openClient(lb, { label: `lb sub ${i}`, trace: false });
        clients.push(c);
        subs.push(watch(c, "events:get", {}));
      }
      for (const w of subs) await w.until(Array.isArray);
      const acked = [];
      const failures = [];
      let stopped = false;
      let n = 0;
      const writers = Array.from({ length: 6 }, async (_, wi) => {
        const client = httpClient(lb.url);
        const mine = [];
        while (!stopped) {
          const i = n++;
          try {
            const id = await client.mutation(api.events.create, eventArgs(i, `load w${wi}`));
            acked.push(id);
            mine.push(id);
          } catch (err) {
            failures.push(String(err?.message ?? err));
            await sleep(50);
          }
        }
        return mine;
      });
      await waitFor(() => acked.length >= 200, { timeoutMs: 60_000, what: "200 acknowledged writes" });
      await leader.kill();
      const killedAt = Date.now();
      const others = cluster.nodes.filter((n) => n !== leader);
      const fresh = await cluster.waitForLeader({ among: others, timeoutMs: LEASE_TTL_MS * 3 + 10_000 });
      const tookMs = Date.now() - killedAt;
      t.diagnostic(`kill -9 of ${leader.id}: ${fresh.id} leads after ${tookMs} ms (lease TTL ${LEASE_TTL_MS} ms)`);
      console.log(`FIGURE failover ${tookMs} ms with lease TTL ${LEASE_TTL_MS} ms`);
      assert.ok(tookMs < LEASE_TTL_MS + 3000, `a new leader within the lease TTL and a poll (${tookMs} ms)`);
      const atFailover = acked.length;
      await waitFor(() => acked.length >= atFailover + 200, { timeoutMs: 60_000, what: "200 more writes after the failover" });
      stopped = true;
      const perWriter = await Promise.all(writers);
      // Every failure during the gap carries a retryable code.
      for (const f of failures) {
        assert.match(f, /LeaderUnavailable|WriterFenced|DatabaseUnavailable|ServerOverloaded|fetch failed|502|503|Server Error/, `failure: ${f}`);
      }
      const events = await httpClient(fresh.url).query(api.events.get, {});
      const byId = new Map(events.map((e) => [e._id, e]));
      const missing = acked.filter((id) => !byId.has(id));
      assert.deepEqual(missing, [], `${missing.length} of ${acked.length} acknowledged writes are missing`);
      // A writer's acknowledged writes come in order: their creation times never go backwards,
      // across the failover too.
      for (const mine of perWriter) {
        const times = mine.map((id) => byId.get(id)._creationTime);
        for (let i = 1; i < times.length; i++) assert.ok(times[i] > times[i - 1], "creation times only go up");
      }
      // Subscriptions resumed by themselves and show the last write.
      const last = acked[acked.length - 1];
      for (const w of subs) await w.until((v) => v.some((e) => e._id === last), { timeoutMs: 20_000, what: "the last write after the failover" });
      t.diagnostic(`${acked.length} acknowledged writes, ${failures.length} refused during the failover`);
      // The new leader serves the deployment's variables as the table holds them, also those set
      // while it followed (it reloads them when it takes the lead).
      const listed = await fetch(`${fresh.url}/api/v1/list_environment_variables`, { headers: { authorization: `Convex ${cluster.adminKey}` } });
      const vars = (await listed.json()).environmentVariables ?? {};
      assert.equal(vars[envVarName], "from a follower", `the variables on the new leader ${fresh.id}: ${JSON.stringify(vars)}`);
    } catch (e) {
      e.message += `\n${cluster.output()}`;
      throw e;
    }
  });
});

/**
 * `count` writers creating events through `url` (ConvexHttpClient) until `stop()`: each keeps
 * its acknowledged ids in order; every failure is kept with its message.
 */
function writeLoad(url, count, tag) {
  const acked = [];
  const failures = [];
  let stopped = false;
  let n = 0;
  const writers = Array.from({ length: count }, async (_, wi) => {
    const client = httpClient(url);
    const mine = [];
    while (!stopped) {
      const i = n++;
      try {
        const id = await client.mutation(api.events.create, eventArgs(i, `${tag} w${wi}`));
        acked.push(id);
        mine.push(id);
      } catch (err) {
        failures.push({ at: Date.now(), message: String(err?.message ?? err) });
        await sleep(100);
      }
    }
    return mine;
  });
  return {
    acked,
    failures,
    async stop() {
      stopped = true;
      return Promise.all(writers);
    },
  };
}

describe("a Postgres crash-restart under the cluster", { timeout: 900_000 }, () => {
  let cluster = null;
  const clients = [];
  after(async () => {
    await closeAll(clients);
    if (cluster) await cluster.stop();
  });

  test("writers through the balancer get retryable codes, the cluster recovers by itself, nothing acknowledged is lost", async (t) => {
    if (prerequisitesMissing(t)) return;
    if (!PG_DIR) {
      t.skip("needs TICKETHUB_TEST_PG_DIR, the tests/pg-cluster directory of the Postgres to restart (tests/run sets it)");
      return;
    }
    cluster = await new Cluster().start(3);
    try {
      const lb = cluster.balancer;
      const subs = [];
      for (let i = 0; i < 3; i++) {
        const c = openClient(lb, { label: `pg-restart lb sub ${i}`, trace: false });
        clients.push(c);
        subs.push(watch(c, "events:get", {}));
      }
      for (const w of subs) await w.until(Array.isArray);
      const load = writeLoad(lb.url, 6, "pg-restart");
      await waitFor(() => load.acked.length >= 150, { timeoutMs: 60_000, what: "150 acknowledged writes" });

      const gapStart = Date.now();
      await run(PG_CLUSTER, ["restart-immediate", PG_DIR]);
      const gapEnd = Date.now();
      // No node is restarted: the cluster must come back by itself.
      const recoveredAt = await waitFor(
        async () => {
          await httpClient(lb.url).mutation(api.events.create, eventArgs(-1, "pg-restart probe"));
          return Date.now();
        },
        { timeoutMs: 90_000, intervalMs: 250, what: "a write through the balancer after the Postgres restart" },
      );
      const ackedAtRecovery = load.acked.length;
      await waitFor(() => load.acked.length >= ackedAtRecovery + 150, { timeoutMs: 90_000, what: "writes to flow again" });
      const perWriter = await load.stop();

      for (const n of cluster.nodes) assert.equal(n.child.exitCode, null, `${n.id} exited during the Postgres restart`);
      const leader = await cluster.waitForLeader();
      // /metrics answers within 1 s or counts as down: on a loaded machine, ask again.
      let followers = [];
      await waitFor(async () => (followers = await cluster.followers()).length === 2, { timeoutMs: 30_000, intervalMs: 250, what: "two followers again" });

      // Every refusal in the gap names a stable retry code.
      const messages = load.failures.map((f) => f.message);
      const unclear = messages.filter((m) => !RETRY_CODES.test(m));
      assert.deepEqual(unclear.slice(0, 5), [], `${unclear.length} of ${messages.length} refusals without a stable retry code`);
      const counts = {};
      for (const m of messages) {
        const code = m.match(RETRY_CODES)[1];
        counts[code] = (counts[code] ?? 0) + 1;
      }

      // Nothing acknowledged is lost, and a writer's commit timestamps only go up (the
      // `_creationTime` of its writes, in the order they were acknowledged), across the gap.
      const events = await httpClient(leader.url).query(api.events.get, {});
      const byId = new Map(events.map((e) => [e._id, e]));
      const missing = load.acked.filter((id) => !byId.has(id));
      assert.deepEqual(missing, [], `${missing.length} of ${load.acked.length} acknowledged writes are missing`);
      for (const mine of perWriter) {
        const times = mine.map((id) => byId.get(id)._creationTime);
        for (let i = 1; i < times.length; i++) assert.ok(times[i] > times[i - 1], "creation times only go up");
      }
      const newest = Math.max(...events.map((e) => e._creationTime));
      const probe = await httpClient(lb.url).mutation(api.events.create, eventArgs(-2, "pg-restart last"));
      const probeDoc = (await httpClient(leader.url).query(api.events.get, {})).find((e) => e._id === probe);
      assert.ok(probeDoc._creationTime > newest, "a write after recovery is newer than every earlier one");

      // Subscriptions through the balancer resumed by themselves, and each follower's watcher
      // hears commits again (its own subscription shows a write made through the leader).
      for (const w of subs) await w.until((v) => v.some((e) => e._id === probe), { timeoutMs: 30_000, what: "the last write on a balancer subscription" });
      for (const f of followers) {
        const c = openClient(f, { label: `pg-restart on ${f.id}`, trace: false });
        clients.push(c);
        const w = watch(c, "events:get", {});
        await w.until(Array.isArray);
        const id = await httpClient(leader.url).mutation(api.events.create, eventArgs(-3, `after restart for ${f.id}`));
        await w.until((v) => v.some((e) => e._id === id), { timeoutMs: 10_000, what: `${f.id}'s watcher to hear a new commit` });
      }
      t.diagnostic(
        `postgres restart -m immediate: pg_ctl took ${gapEnd - gapStart} ms; writes through the balancer again ${recoveredAt - gapEnd} ms after; ` +
          `${messages.length} refusals ${JSON.stringify(counts)}; all ${load.acked.length} acknowledged writes there; leader after: ${leader.id}`,
      );
      console.log(`FIGURE cluster postgres restart: writes again ${recoveredAt - gapEnd} ms after pg_ctl returned; refusals ${JSON.stringify(counts)}`);
    } catch (e) {
      e.message += `\n${cluster.output()}`;
      throw e;
    }
  });
});

describe("scheduled jobs across a failover (notes example)", { timeout: 900_000 }, () => {
  let cluster = null;
  after(async () => {
    if (cluster) await cluster.stop();
  });

  /** Schedule `count` jobs through `client`, due from `firstMs` every 50 ms; every third an action. */
  async function scheduleJobs(client, tag, count, firstMs) {
    const jobs = [];
    for (let i = 0; i < count; i++) {
      const key = `${tag}-${i}`;
      const viaAction = i % 3 === 2;
      jobs.push({ key, viaAction });
      await client.mutation(api.notes.scheduleRun, { key, delayMs: firstMs + i * 50, viaAction });
    }
    return jobs;
  }

  /**
   * Wait until every job of `tag` has ended on `node` (the leader), then check how often each
   * ran: a mutation job exactly once, an action job at most once (and once if it succeeded).
   * Returns a line for the figures.
   */
  async function checkRuns(node, tag, jobs, killedAt) {
    const mine = (rows) => rows.filter((r) => typeof r.args?.key === "string" && r.args.key.startsWith(`${tag}-`));
    let rows = [];
    await waitFor(
      async () => {
        rows = mine(await cluster.adminRun(node, "_system/scheduler:list", { limit: 10_000 }));
        return rows.length === jobs.length && rows.every((r) => r.state.kind === "success" || r.state.kind === "failed");
      },
      { timeoutMs: 60_000, intervalMs: 250, what: `every job of batch ${tag} to end` },
    );
    const notes = (await cluster.adminRun(node, "notes:byAuthor", { author: "scheduler" })).filter((n) => n.text.startsWith(`${tag}-`));
    const runs = new Map();
    for (const n of notes) runs.set(n.text, (runs.get(n.text) ?? 0) + 1);
    const stateOf = new Map(rows.map((r) => [r.args.key, r.state]));
    const twice = jobs.filter((j) => (runs.get(j.key) ?? 0) > 1).map((j) => `${j.key}×${runs.get(j.key)}`);
    assert.deepEqual(twice, [], "jobs that ran more than once");
    const failedActions = [];
    for (const j of jobs) {
      const state = stateOf.get(j.key);
      const ran = runs.get(j.key) ?? 0;
      if (!j.viaAction) {
        // A scheduled mutation runs with its success mark in one transaction, fenced by the
        // lease epoch: exactly once.
        assert.equal(state.kind, "success", `mutation job ${j.key}: ${JSON.stringify(state)}`);
        assert.equal(ran, 1, `mutation job ${j.key} ran ${ran} times`);
      } else if (state.kind === "success") {
        assert.equal(ran, 1, `action job ${j.key} succeeded but ran ${ran} times`);
      } else {
        // Only an action the killed leader had started may fail, and it is never retried.
        assert.match(state.error ?? "", /stopped while this action was running/, `action job ${j.key}: ${JSON.stringify(state)}`);
        failedActions.push(`${j.key}(ran ${ran})`);
      }
    }
    const before = notes.filter((n) => n._creationTime < killedAt).length;
    return `${before} ran before the kill, ${notes.length - before} after; interrupted actions marked failed: ${failedActions.length ? failedActions.join(", ") : "none"}; none ran twice`;
  }

  test("kill -9 of the leader while jobs come due: every due job runs, none runs twice, also when a node leads a second time", async (t) => {
    if (prerequisitesMissing(t)) return;
    cluster = await new Cluster({ which: "notes-server" }).start(3);
    try {
      const first = await cluster.waitForLeader();
      const client = httpClient(cluster.balancer.url);
      const tag = randomBytes(3).toString("hex");
      // Jobs come due every 50 ms over 6 s, from before the kill to well after the takeover.
      const jobs = await scheduleJobs(client, `${tag}a`, 120, 1000);
      await sleep(2500);
      await first.kill();
      const killedAt = Date.now();
      const second = await cluster.waitForLeader({ among: cluster.nodes.filter((n) => n !== first), timeoutMs: LEASE_TTL_MS * 3 + 10_000 });
      const tookMs = Date.now() - killedAt;
      const firstLine = await checkRuns(second, `${tag}a`, jobs, killedAt);
      t.diagnostic(`batch 1: ${jobs.length} jobs (${jobs.filter((j) => j.viaAction).length} actions); kill -9 of ${first.id}, ${second.id} leads after ${tookMs} ms; ${firstLine}`);

      // A node leads a second time: the leader is paused past its lease (the third node takes
      // over), resumed (it follows), then the third is killed while a second batch comes due,
      // so the paused one leads again and must redo a term's start-up (interrupted actions,
      // crons, variables) rather than trust what it remembered from its first term.
      const third = cluster.nodes.find((n) => n !== first && n !== second);
      const jobs2 = await scheduleJobs(client, `${tag}b`, 60, 6000);
      second.child.kill("SIGSTOP");
      await cluster.waitForLeader({ among: [third], timeoutMs: LEASE_TTL_MS * 3 + 10_000 });
      second.child.kill("SIGCONT");
      await waitFor(async () => (await cluster.role(second)) === "follower", { timeoutMs: 10_000, what: `${second.id} to follow` });
      await third.kill();
      const killed2At = Date.now();
      const again = await cluster.waitForLeader({ among: [second], timeoutMs: LEASE_TTL_MS * 3 + 10_000 });
      assert.equal(again, second);
      const secondLine = await checkRuns(second, `${tag}b`, jobs2, killed2At);
      t.diagnostic(`batch 2: ${jobs2.length} jobs; ${second.id} paused, ${third.id} led, was killed, ${second.id} leads again; ${secondLine}`);
    } catch (e) {
      e.message += `\n${cluster.output()}`;
      throw e;
    }
  });
});

describe("reads through the balancer with 1, 2 and 3 nodes (figures)", { timeout: 600_000 }, () => {
  test("queries/s", async (t) => {
    if (prerequisitesMissing(t)) return;
    if (!process.env.TICKETHUB_CLUSTER_BENCH) {
      t.skip("figures only: set TICKETHUB_CLUSTER_BENCH=1");
      return;
    }
    const cluster = await new Cluster().start(3);
    try {
      const leader = await cluster.waitForLeader();
      const writer = httpClient(leader.url);
      for (let i = 0; i < 20; i++) await writer.mutation(api.events.create, eventArgs(i, "bench"));
      const figures = [];
      for (const count of [1, 2, 3]) {
        const lb = await cluster.startBalancer(cluster.nodes.slice(0, count));
        const deadline = Date.now() + 5000;
        let done = 0;
        await Promise.all(
          Array.from({ length: 32 }, async () => {
            const c = httpClient(lb.url);
            while (Date.now() < deadline) {
              await c.query(api.events.get, {});
              done++;
            }
          }),
        );
        figures.push(`${count} node(s): ${(done / 5).toFixed(0)} queries/s`);
        // The same through wrk, which costs far less CPU per request than 32 JS clients on
        // these 2 cores: indexed point reads (users by clerkId).
        const wrk = await run("wrk", [
          "-t2", "-c32", "-d5s", "-s", path.join(REPO_ROOT, "bench", "scripts", "bench.lua"), lb.url,
          "--", "convex", "read", "cl", "1000",
        ]).catch((e) => ({ stdout: "", stderr: String(e) }));
        const rate = /Requests\/sec:\s+([\d.]+)/.exec(wrk.stdout)?.[1] ?? `wrk failed: ${wrk.stderr.slice(0, 200)}`;
        const non2xx = /Non-2xx or 3xx responses:\s+(\d+)/.exec(wrk.stdout)?.[1] ?? "0";
        figures.push(`${count} node(s) under wrk: ${rate} point reads/s (${non2xx} non-2xx)`);
      }
      t.diagnostic(figures.join("; "));
      console.log(`FIGURE reads through haproxy, 32 clients, events:get (20 rows): ${figures.join("; ")}`);
    } finally {
      await cluster.stop();
    }
  });
});
