// Live queries over the Convex WebSocket sync protocol (wire-protocol.md §4), driven by the
// official `ConvexClient` on the `ws` package against the real tickethub binary, with
// Clerk-shaped JWTs from a local OIDC issuer and Svix-signed webhooks.
//
// What it shows: webhook writes reach subscribers; a mutation sent over the socket is
// visible in the same client's subscriptions when its promise resolves; auth on the
// socket (good, bad, switched tokens); writes to unrelated data re-run no subscription
// (counted through /api/sync_metrics); a client reconnects to a restarted server by
// itself and resumes its subscriptions; one commit fans out to 1,000 clients.
//
// Run: cargo build --release --bins && (cd tests/js && node --test sync.test.mjs)
// Timing is printed (fan-out latency p50/p99), never asserted.

import assert from "node:assert/strict";
import { performance } from "node:perf_hooks";
import { after, afterEach, before, describe, test } from "node:test";
import { startServer } from "./lib/server.mjs";
import { OidcIssuer, startIssuer } from "./lib/oidc.mjs";
import { newUserId, newWebhookSecret, sendSigned, userCreated, userDeleted, userUpdated } from "./lib/clerk.mjs";
import { newClient, rejectsWith, safeJson, waitFor, withLogs } from "./lib/helpers.mjs";
import { closeAll, forEachLimited, openClient, percentile, syncMetrics, watch, withTimeout } from "./lib/sync.mjs";

/** How many subscribed clients the fan-out test opens. */
const FAN_OUT_CLIENTS = 1_000;
/** Clients connecting at once while the fan-out test sets up (keeps a 2-core box responsive). */
const FAN_OUT_CONNECT_CONCURRENCY = 50;
const MINUTE_MS = 60_000;

// Clerk orders a user's deliveries by `updated_at`; each delivery here must be newer than
// the last one the server stored for that user, or it would be ignored as stale.
let clerkClock = Date.now();
const nextUpdatedAt = () => (clerkClock += 1_000);

describe("live queries over the WebSocket sync protocol", { timeout: 30 * MINUTE_MS }, () => {
  let issuer;
  let secret;
  let server;
  const clients = new Set();

  /** A ConvexClient that is closed after the current test. */
  const open = (opts = {}) => {
    const client = openClient(server, opts);
    clients.add(client);
    return client;
  };

  /** Creates a user through a signed `user.created` webhook; returns the Clerk id. */
  const createUser = async (firstName = "Ada") => {
    const userId = newUserId();
    const r = await sendSigned(
      server.siteUrl,
      secret,
      userCreated({ id: userId, firstName, lastName: "Lovelace", updatedAt: nextUpdatedAt() }),
    );
    assert.equal(r.status, 200, `user.created webhook: ${r.text}`);
    return userId;
  };

  /** Changes a user's name (and email) through a signed `user.updated` webhook. */
  const renameViaWebhook = async (userId, firstName, email) => {
    const r = await sendSigned(
      server.siteUrl,
      secret,
      userUpdated({ id: userId, firstName, lastName: "Lovelace", email, updatedAt: nextUpdatedAt() }),
    );
    assert.equal(r.status, 200, `user.updated webhook: ${r.text}`);
  };

  /** A client signed in as `userId`, subscribed to that user's row, with its first value in. */
  const subscribedToOwnRow = async (userId, label) => {
    const client = open({ token: await issuer.tokenFor(userId), label });
    const row = watch(client, "users:getUserById", { userId }, { label: `${label} users:getUserById` });
    await row.until((v) => v?.userId === userId, { what: "the initial row" });
    return { client, row };
  };

  before(async () => {
    issuer = await startIssuer();
    secret = newWebhookSecret();
    server = await startServer({
      which: "tickethub",
      env: { CLERK_WEBHOOK_SECRET: secret, CLERK_JWT_ISSUER_DOMAIN: issuer.issuer },
    });
  });

  afterEach(async () => {
    await closeAll(clients);
    clients.clear();
  });

  after(async () => {
    await closeAll(clients);
    await server?.cleanup();
    await issuer?.stop();
  });

  test(
    "a signed user.updated webhook reaches the subscriber; user.deleted turns it into null",
    withLogs(async () => {
      const userId = await createUser("Ada");
      const { row } = await subscribedToOwnRow(userId, "subscriber");
      assert.equal(row.latest.name, "Ada Lovelace");
      const seenBefore = row.values.length;

      await renameViaWebhook(userId, "Augusta", "augusta@example.org");
      const updated = await row.until((v) => v?.name === "Augusta Lovelace", { what: "the renamed row" });
      assert.equal(updated.email, "augusta@example.org");
      assert.equal(updated.userId, userId);
      assert.equal(updated._id, row.values[0]._id, "an update must keep the document id");
      assert.ok(row.values.length > seenBefore);
      assert.deepEqual(row.errors, []);

      const deleted = await sendSigned(server.siteUrl, secret, userDeleted(userId, nextUpdatedAt()));
      assert.equal(deleted.status, 200, `user.deleted webhook: ${deleted.text}`);
      assert.equal(await row.until((v) => v === null, { what: "null after user.deleted" }), null);
    }),
  );

  test(
    "a mutation sent over the socket is visible in the same client's subscriptions when it resolves",
    withLogs(async () => {
      const userId = await createUser("Own");
      const { client, row } = await subscribedToOwnRow(userId, "writer");
      const { row: otherRow } = await subscribedToOwnRow(userId, "second-tab");
      const docId = row.latest._id;

      // Several rounds, so a pass is not a lucky race between the transition and the await.
      for (let round = 1; round <= 5; round++) {
        const name = `Own Write ${round}`;
        const email = `own-${round}@example.org`;
        const result = await client.mutation("users:updateUser", { userId, name, email });
        // Checked synchronously, before anything else can run.
        const latest = row.latest;
        const local = row.currentValue();
        assert.equal(result, docId, `round ${round}: updateUser returns the document id`);
        assert.equal(
          latest?.name,
          name,
          `round ${round}: the onUpdate callback had not seen the write when the mutation resolved (got ${safeJson(latest)})`,
        );
        assert.equal(latest?.email, email, `round ${round}: email`);
        assert.equal(local?.name, name, `round ${round}: getCurrentValue() lags the resolved mutation`);
      }
      // Another connection of the same user sees the last write too (eventually).
      await otherRow.until((v) => v?.name === "Own Write 5", { what: "the other tab to see the write" });

      // A failing mutation over the socket rejects with the function's message and changes nothing.
      const stranger = newUserId();
      await rejectsWith(
        client.mutation("users:updateUser", { userId: stranger, name: "Mallory", email: "m@example.org" }),
        `Not authorized to act for user ${stranger}`,
      );
      assert.equal(row.latest.name, "Own Write 5");
    }),
  );

  describe("auth on the socket", () => {
    test(
      "users:current sees the signed-in caller",
      withLogs(async () => {
        const userId = await createUser("Current");
        const client = open({ token: await issuer.tokenFor(userId), label: "signed-in" });
        const current = watch(client, "users:current", {});
        assert.equal(await client.authChanged, true, "setAuth's onChange should report true for a valid token");
        const row = await current.until((v) => v?.userId === userId, { what: "users:current to be the caller's row" });
        assert.equal(row.name, "Current Lovelace");
        assert.deepEqual(client.authChanges, [true]);

        // The caller's own row through the caller-checked query works over the socket too.
        const own = watch(client, "users:getUserById", { userId });
        assert.equal((await own.until((v) => v !== undefined, { what: "getUserById" }))?._id, row._id);
        // ...and someone else's is refused as a query failure, not a value.
        const other = newUserId();
        const foreign = watch(client, "users:getUserById", { userId: other });
        const err = await foreign.untilError({ what: "a refusal for another user's row" });
        assert.match(err.message, new RegExp(`Not authorized to act for user ${other}`));
        assert.equal(foreign.values.length, 0, `no value should be delivered for a refused query, got ${safeJson(foreign.values)}`);
      }),
    );

    const badTokens = {
      "signed by a key the issuer never published": async (sub) =>
        issuer.sign(issuer.claimsFor(sub), { key: await OidcIssuer.strangerKey() }),
      expired: async (sub) => {
        const now = Math.floor(Date.now() / 1000);
        return issuer.tokenFor(sub, { iat: now - 7200, nbf: now - 7200, exp: now - 3600 });
      },
      "for another audience": async (sub) => issuer.tokenFor(sub, { aud: "not-convex" }),
    };
    for (const [name, makeToken] of Object.entries(badTokens)) {
      test(
        `a bad token (${name}) is reported as unauthenticated`,
        withLogs(async () => {
          const userId = await createUser("Victim");
          const client = open({ token: await makeToken(userId), label: `bad token (${name})` });
          const current = watch(client, "users:current", {});
          const authenticated = await withTimeout(
            client.authChanged,
            60_000,
            () => `setAuth's onChange was never called\n${client.describe()}`,
          );
          assert.equal(authenticated, false, "setAuth's onChange should report false for a bad token");
          // The client then carries on signed out: the caller is nobody.
          await waitFor(() => current.values.length > 0 || current.errors.length > 0, {
            timeoutMs: 60_000,
            what: "a users:current result",
          });
          for (const v of current.values) {
            assert.equal(v, null, `users:current must not see a user with a bad token, got ${safeJson(v)}`);
          }
          const own = watch(client, "users:getUserById", { userId });
          const err = await own.untilError({ what: "getUserById to be refused without a valid identity" });
          assert.match(err.message, /Not authenticated/);
          assert.equal(own.values.length, 0, `no row may leak, got ${safeJson(own.values)}`);
        }),
      );
    }

    test(
      "switching tokens on a live socket switches users:current",
      withLogs(async () => {
        const a = await createUser("Alice");
        const b = await createUser("Bob");
        const client = open({ token: await issuer.tokenFor(a), label: "switcher" });
        const current = watch(client, "users:current", {});
        await current.until((v) => v?.userId === a, { what: "users:current = Alice" });
        const tokenB = await issuer.tokenFor(b);
        const switched = new Promise((resolve) => client.setAuth(async () => tokenB, resolve));
        assert.equal(await withTimeout(switched, 60_000, () => `no onChange after switching tokens\n${client.describe()}`), true);
        await current.until((v) => v?.userId === b, { what: "users:current = Bob after setAuth" });
        // Sign out the way ConvexReactClient.clearAuth() does (an `Authenticate` with tokenType
        // None). Not `setAuth(async () => null)`: convex 1.48 builds that message while its socket
        // is paused for the token fetch and drops it, so nothing would reach the server.
        client.client.clearAuth();
        await current.until((v) => v === null, { what: "users:current = null after signing out" });
      }),
    );
  });

  describe("subscriptions re-run only when their data changes", () => {
    /**
     * Opens the only subscriber on the server (checked through the metrics), runs `writes`,
     * then writes the watched row as a barrier: commits reach subscriptions in order, so once
     * the barrier is seen, every earlier write has been considered. Returns the metric and
     * callback deltas across writes + barrier.
     */
    const measure = async (label, writes) => {
      const userId = await createUser("Watched");
      const { row } = await subscribedToOwnRow(userId, label);
      const metricsReady = await waitFor(
        async () => {
          const m = await syncMetrics(server);
          return m.connectionsOpen === 1 ? m : null;
        },
        { timeoutMs: 60_000, what: "the subscriber to be the only open connection" },
      );
      const before = await syncMetrics(server);
      assert.equal(before.connectionsOpen, 1, `another connection appeared: ${safeJson(before)}`);
      assert.ok(before.queryExecutions >= 1, `the subscription's first run was not counted: ${safeJson(metricsReady)}`);
      const callbacksBefore = row.values.length;

      await writes(userId);

      await renameViaWebhook(userId, "Barrier");
      await row.until((v) => v?.name === "Barrier Lovelace", { what: "the barrier write" });
      const afterBarrier = await syncMetrics(server);
      return {
        executions: afterBarrier.queryExecutions - before.queryExecutions,
        callbacks: row.values.length - callbacksBefore,
        before,
        after: afterBarrier,
      };
    };

    test(
      "20 writes to events cause no re-execution of a subscription on users",
      withLogs(async (t) => {
        const result = await measure("users-watcher", async (userId) => {
          const organizer = newClient(server, { auth: await issuer.tokenFor(userId) });
          for (let i = 0; i < 20; i++) {
            const id = await organizer.mutation("events:create", {
              name: `Isolation event ${i}`,
              description: "does not touch users",
              location: "Hall",
              eventDate: Date.now() + 86_400_000,
              price: 10,
              totalTickets: 100,
              userId,
            });
            assert.equal(typeof id, "string");
          }
        });
        t.diagnostic(`metrics before ${safeJson(result.before)} after ${safeJson(result.after)}`);
        assert.equal(
          result.executions,
          1,
          `expected exactly one re-run (for the barrier write to the watched row) across 20 events writes; got ${result.executions} (${safeJson(result.before)} -> ${safeJson(result.after)})`,
        );
        assert.equal(result.callbacks, 1, "the subscriber should hear only the barrier write");
      }),
    );

    test(
      "writes to another user's row cause no re-execution of a subscription on one user",
      withLogs(async (t) => {
        const result = await measure("one-user-watcher", async () => {
          const other = await createUser("Other");
          for (let i = 0; i < 5; i++) await renameViaWebhook(other, `Other${i}`);
        });
        t.diagnostic(`metrics before ${safeJson(result.before)} after ${safeJson(result.after)}`);
        assert.equal(
          result.executions,
          1,
          `expected exactly one re-run (the barrier) across writes to another users row; got ${result.executions} (${safeJson(result.before)} -> ${safeJson(result.after)})`,
        );
        assert.equal(result.callbacks, 1);
      }),
    );

    test(
      "the metrics endpoint requires the admin key",
      withLogs(async () => {
        for (const adminKey of [null, "not-the-admin-key"]) {
          let status = 0;
          try {
            await syncMetrics(server, { adminKey });
          } catch (err) {
            status = err.status;
          }
          assert.ok(status >= 400 && status < 500, `GET /api/sync_metrics with key ${adminKey}: expected 4xx, got ${status || "200"}`);
        }
      }),
    );
  });

  test(
    `one commit fans out to ${FAN_OUT_CLIENTS} subscribed clients`,
    { timeout: 20 * MINUTE_MS },
    withLogs(async (t) => {
      const userId = await createUser("Fan");
      const token = await issuer.tokenFor(userId, { exp: Math.floor(Date.now() / 1000) + 3600 });
      const watches = [];
      const indexes = Array.from({ length: FAN_OUT_CLIENTS }, (_, i) => i);
      await forEachLimited(indexes, FAN_OUT_CONNECT_CONCURRENCY, async (i) => {
        const client = open({ token, label: `fan-out #${i}` });
        const w = watch(client, "users:getUserById", { userId }, { label: `fan-out #${i}` });
        watches[i] = w;
        await w.until((v) => v?.name === "Fan Lovelace", { timeoutMs: 5 * MINUTE_MS, what: "the initial row" });
      });
      const before = await syncMetrics(server);
      t.diagnostic(`connected ${watches.length} clients; metrics ${safeJson(before)}`);
      assert.ok(before.connectionsOpen >= FAN_OUT_CLIENTS, `connectionsOpen ${before.connectionsOpen} < ${FAN_OUT_CLIENTS}`);

      let t0 = 0;
      const latenciesMs = new Array(FAN_OUT_CLIENTS).fill(null);
      const arrivals = watches.map((w, i) =>
        w
          .until((v) => v?.name === "Fanned Lovelace", { timeoutMs: 10 * MINUTE_MS, what: "the fanned-out commit" })
          .then((v) => {
            latenciesMs[i] = performance.now() - t0;
            return v;
          }),
      );
      // Time zero is just before the committing request leaves.
      t0 = performance.now();
      await renameViaWebhook(userId, "Fanned", "fanned@example.org");
      const results = await Promise.allSettled(arrivals);

      const missed = results.map((r, i) => (r.status === "rejected" ? i : -1)).filter((i) => i >= 0);
      const wrong = results
        .map((r, i) => (r.status === "fulfilled" && r.value.email !== "fanned@example.org" ? i : -1))
        .filter((i) => i >= 0);
      const after = await syncMetrics(server);
      const got = latenciesMs.filter((x) => x !== null);
      const summary =
        `fan-out: ${got.length}/${FAN_OUT_CLIENTS} clients saw the commit; commit-to-client latency ` +
        `p50 ${percentile(got, 50).toFixed(1)} ms, p99 ${percentile(got, 99).toFixed(1)} ms, max ${Math.max(...got).toFixed(1)} ms; ` +
        `queryExecutions +${after.queryExecutions - before.queryExecutions}, transitionsSent +${after.transitionsSent - before.transitionsSent}`;
      console.log(summary);
      t.diagnostic(summary);
      assert.deepEqual(
        missed,
        [],
        `${missed.length} clients never saw the commit; first failure:\n${results[missed[0]]?.reason?.message ?? ""}`,
      );
      assert.deepEqual(wrong, [], "some clients saw the new name with the wrong email");
      for (const w of watches) assert.deepEqual(w.errors, [], `${w.label} reported errors`);
    }),
  );

  // SIGKILL is a crash; SIGTERM is a graceful shutdown, which must not wait for the open
  // socket to go away by itself.
  for (const signal of ["SIGKILL", "SIGTERM"]) {
    test(
      `after a server restart (${signal}) the client reconnects by itself and its subscription resumes`,
      { timeout: 10 * MINUTE_MS },
      withLogs(async (t) => {
        const userId = await createUser("Before");
        const { client, row } = await subscribedToOwnRow(userId, "survivor");
        await renameViaWebhook(userId, "Committed");
        await row.until((v) => v?.name === "Committed Lovelace", { what: "a write before the restart" });
        const connectionsBefore = client.connectionState().connectionCount;
        const port = server.port;

        if (signal === "SIGTERM") {
          server.child.kill("SIGTERM");
          const exit = await withTimeout(server.exited, 60_000, () => "the server did not exit on SIGTERM with a sync client connected");
          t.diagnostic(`exit after SIGTERM: ${safeJson(exit)}`);
        }
        await server.restart(); // (SIGKILL if still running,) then the same binary on the same ports and data dir
        assert.equal(server.port, port, "precondition: the restarted server must listen on the same port for the client to find it");

        // New data written after the restart, over plain HTTP, must reach the old subscription.
        await renameViaWebhook(userId, "Restarted", "restarted@example.org");
        const resumed = await row.until((v) => v?.name === "Restarted Lovelace", {
          timeoutMs: 3 * MINUTE_MS,
          what: "the post-restart write",
        });
        assert.equal(resumed.email, "restarted@example.org");
        assert.equal(resumed._id, row.values[0]._id);
        const state = client.connectionState();
        t.diagnostic(`connection state after restart: ${safeJson(state)}`);
        assert.ok(state.connectionCount > connectionsBefore, `the client should have opened a new socket (${safeJson(state)})`);
        assert.equal(state.isWebSocketConnected, true);

        // And the socket is fully usable: a mutation over it resolves with its write visible.
        const id = await client.mutation("users:updateUser", { userId, name: "After Restart", email: "after@example.org" });
        assert.equal(id, resumed._id);
        assert.equal(row.latest?.name, "After Restart");
        assert.deepEqual(row.errors, []);
      }),
    );
  }
});
