// Clerk integration of the tickethub binary: Svix-signed user webhooks (signed with the
// real `svix` package) and Clerk-shaped RS256 session tokens from a local OIDC issuer,
// used through the official ConvexHttpClient.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { anyApi } from "convex/server";
import { startServer } from "./lib/server.mjs";
import { OidcIssuer, startIssuer, tamperPayload } from "./lib/oidc.mjs";
import {
  deliver,
  newMsgId,
  newUserId,
  newWebhookSecret,
  otherEvent,
  sendSigned,
  signDelivery,
  userCreated,
  userDeleted,
  userUpdated,
} from "./lib/clerk.mjs";
import { assertSystemError, newClient, rejectsWith, waitFor, withLogs } from "./lib/helpers.mjs";

const api = anyApi;
const AUTH_CODES = ["Unauthenticated", "NoAuthProvider", "InvalidAuthHeader"];
const CLIENT_HEADERS = { "Convex-Client": "npm-1.48.0" };
const MINUTE_MS = 60_000;

function assertAccepted(r, what) {
  assert.ok(r.status >= 200 && r.status < 300, `${what}: expected 2xx, got ${r.status} ${r.text}`);
}

function assertRefused(r, what) {
  assert.ok(r.status >= 400 && r.status < 500, `${what}: expected 4xx, got ${r.status} ${r.text}`);
}

describe("tickethub with Clerk", { timeout: 600_000 }, () => {
  let issuer;
  let secret;
  let server;

  before(async () => {
    issuer = await startIssuer();
    secret = newWebhookSecret();
    server = await startServer({
      which: "tickethub",
      env: { CLERK_WEBHOOK_SECRET: secret, CLERK_JWT_ISSUER_DOMAIN: issuer.issuer },
    });
  });
  after(async () => {
    await server?.cleanup();
    await issuer?.stop();
  });

  const userRow = (userId) => server.adminRun("users:getUserById", { userId });

  test("the seed document's flow: created, read with a JWT, updated, deleted", withLogs(async () => {
    const userId = newUserId();
    const created = await sendSigned(
      server.siteUrl,
      secret,
      userCreated({ id: userId, firstName: "Ada", lastName: "Lovelace", email: "ada@example.org", phone: "+15555550100", updatedAt: 1764000100000 }),
    );
    assert.equal(created.status, 200, `user.created: ${created.text}`);

    const client = newClient(server, { auth: await issuer.tokenFor(userId) });
    const row = await client.query(api.users.getUserById, { userId });
    assert.ok(row, "the webhook did not create the user");
    assert.equal(row.userId, userId);
    assert.equal(row.name, "Ada Lovelace");
    // The primary address is the one named by primary_email_address_id, not the first one.
    assert.equal(row.email, "ada@example.org");
    assert.equal(row.phone, "+15555550100");
    assert.equal(row.stripeConnectId, undefined);
    assert.equal(typeof row._id, "string");

    const current = await client.query(api.users.current, {});
    assert.deepEqual(current, row, "users:current differs from users:getUserById");

    const updated = await sendSigned(
      server.siteUrl,
      secret,
      userUpdated({ id: userId, firstName: "Augusta", lastName: "King", email: "augusta@example.org", phone: null, updatedAt: 1764000200000 }),
    );
    assert.equal(updated.status, 200, `user.updated: ${updated.text}`);
    const afterUpdate = await client.query(api.users.getUserById, { userId });
    assert.equal(afterUpdate._id, row._id, "an update must keep the same document");
    assert.equal(afterUpdate.name, "Augusta King");
    assert.equal(afterUpdate.email, "augusta@example.org");
    assert.equal(afterUpdate.phone, undefined, "a removed phone number must be removed");

    const deleted = await sendSigned(server.siteUrl, secret, userDeleted(userId, Date.now()));
    assert.equal(deleted.status, 200, `user.deleted: ${deleted.text}`);
    assert.equal(await client.query(api.users.getUserById, { userId }), null);
    assert.equal(await client.query(api.users.current, {}), null);
  }));

  test("name falls back to username, then the primary email", withLogs(async () => {
    const a = newUserId();
    const b = newUserId();
    assert.equal((await sendSigned(server.siteUrl, secret, userCreated({ id: a, firstName: null, lastName: null, username: "adal" }))).status, 200);
    assert.equal((await sendSigned(server.siteUrl, secret, userCreated({ id: b, firstName: "  ", lastName: null, username: null, email: "only@example.org" }))).status, 200);
    assert.equal((await userRow(a))?.name, "adal");
    const rowB = await userRow(b);
    assert.equal(rowB?.name, "only@example.org");
    assert.equal(rowB?.email, "only@example.org");
  }));

  test("other event types are acknowledged and ignored", withLogs(async () => {
    for (const type of ["session.created", "email.created", "organization.created"]) {
      const r = await sendSigned(server.siteUrl, secret, otherEvent(type));
      assert.equal(r.status, 200, `${type}: ${r.text}`);
    }
  }));

  describe("webhook attacks are refused and write nothing", () => {
    // Each case gets a valid delivery for a fresh user and returns what to send instead.
    const cases = {
      "signed with the wrong secret": (_d, payload) => signDelivery(newWebhookSecret(), payload),
      "tampered body": (d) => ({ ...d, body: d.body.replace('"Ada"', '"Eve"') }),
      "tampered svix-id": (d) => ({ ...d, headers: { ...d.headers, "svix-id": newMsgId() } }),
      "tampered svix-timestamp": (d) => ({
        ...d,
        headers: { ...d.headers, "svix-timestamp": String(Number(d.timestamp) - 1) },
      }),
      "timestamp 6 minutes old": (_d, payload) => signDelivery(secret, payload, { date: new Date(Date.now() - 6 * MINUTE_MS) }),
      "timestamp 6 minutes ahead": (_d, payload) => signDelivery(secret, payload, { date: new Date(Date.now() + 6 * MINUTE_MS) }),
      "svix-id missing": (d) => ({ ...d, headers: without(d.headers, "svix-id") }),
      "svix-timestamp missing": (d) => ({ ...d, headers: without(d.headers, "svix-timestamp") }),
      "svix-signature missing": (d) => ({ ...d, headers: without(d.headers, "svix-signature") }),
      "only a non-v1 signature": (d) => ({
        ...d,
        headers: { ...d.headers, "svix-signature": d.signature.replace(/^v1,/, "v2,") },
      }),
      "a v1a (asymmetric) signature only": (d) => ({
        ...d,
        headers: { ...d.headers, "svix-signature": d.signature.replace(/^v1,/, "v1a,") },
      }),
      "garbage signature": (d) => ({ ...d, headers: { ...d.headers, "svix-signature": "v1,this is not base64 at all!!" } }),
      "empty signature header": (d) => ({ ...d, headers: { ...d.headers, "svix-signature": "" } }),
      "non-numeric timestamp": (d) => ({ ...d, headers: { ...d.headers, "svix-timestamp": "yesterday" } }),
      "signature of a different message": (d, payload) => {
        const other = signDelivery(secret, { ...payload, type: "user.updated" }, { msgId: d.msgId, date: new Date(Number(d.timestamp) * 1000) });
        return { ...d, headers: { ...d.headers, "svix-signature": other.signature } };
      },
    };

    for (const [name, attack] of Object.entries(cases)) {
      test(name, withLogs(async () => {
        const userId = newUserId();
        const payload = userCreated({ id: userId, firstName: "Ada" });
        const valid = signDelivery(secret, payload);
        const sent = attack(valid, payload);
        const r = await deliver(server.siteUrl, sent.body, sent.headers);
        assertRefused(r, name);
        assert.equal(await userRow(userId), null, `${name}: the user was written`);
      }));
    }

    test("validly signed body that is not JSON", withLogs(async () => {
      const d = signDelivery(secret, null, { body: "this is not json {" });
      assertRefused(await deliver(server.siteUrl, d.body, d.headers), "non-JSON body");
    }));

    test("validly signed JSON that is not a Clerk event", withLogs(async () => {
      const userId = newUserId();
      for (const body of ["[]", "42", "null", "\"a string\""]) {
        const d = signDelivery(secret, null, { body });
        const r = await deliver(server.siteUrl, d.body, d.headers);
        assert.ok(r.status >= 400 && r.status < 500, `body ${body}: expected 4xx, got ${r.status} ${r.text}`);
      }
      assert.equal(await userRow(userId), null);
    }));

    test("a 2 MiB body", withLogs(async () => {
      const userId = newUserId();
      const payload = userCreated({ id: userId });
      payload.data.unsafe_metadata = { padding: "x".repeat(2 * 1024 * 1024) };
      const d = signDelivery(secret, payload);
      const r = await deliver(server.siteUrl, d.body, d.headers);
      assertRefused(r, "2 MiB body");
      assert.equal(await userRow(userId), null, "the oversized delivery was applied");
    }));

    test("the server keeps serving after the attacks", withLogs(async () => {
      const userId = newUserId();
      assert.equal((await sendSigned(server.siteUrl, secret, userCreated({ id: userId }))).status, 200);
      assert.ok(await userRow(userId));
    }));
  });

  test("several signatures, one of them valid, are accepted", withLogs(async () => {
    const userId = newUserId();
    const d = signDelivery(secret, userCreated({ id: userId }));
    const stale = signDelivery(newWebhookSecret(), userCreated({ id: userId }), { msgId: d.msgId, date: new Date(Number(d.timestamp) * 1000) });
    const header = `v1,${Buffer.alloc(32, 7).toString("base64")} v2,abc ${stale.signature} ${d.signature}`;
    const r = await deliver(server.siteUrl, d.body, { ...d.headers, "svix-signature": header });
    assert.equal(r.status, 200, r.text);
    assert.equal((await userRow(userId))?.userId, userId);
  }));

  test("Standard Webhooks header names (webhook-*) are accepted", withLogs(async () => {
    const userId = newUserId();
    const d = signDelivery(secret, userCreated({ id: userId }));
    const headers = {
      "content-type": "application/json",
      "webhook-id": d.msgId,
      "webhook-timestamp": d.timestamp,
      "webhook-signature": d.signature,
    };
    const r = await deliver(server.siteUrl, d.body, headers);
    assert.equal(r.status, 200, r.text);
    assert.equal((await userRow(userId))?.userId, userId);
  }));

  describe("delivery order and retries", () => {
    test("a duplicate svix-id is applied once", withLogs(async () => {
      const userId = newUserId();
      const first = signDelivery(secret, userCreated({ id: userId, firstName: "First", updatedAt: 1764000100000 }));
      assertAccepted(await deliver(server.siteUrl, first.body, first.headers), "first delivery");
      const update = await sendSigned(server.siteUrl, secret, userUpdated({ id: userId, firstName: "Second", updatedAt: 1764000200000 }));
      assertAccepted(update, "update");
      assert.equal((await userRow(userId)).name, "Second Lovelace");
      // Clerk retries the very same delivery (same id, body and signature).
      const retry = await deliver(server.siteUrl, first.body, first.headers);
      assertAccepted(retry, "retried delivery");
      assert.equal((await userRow(userId)).name, "Second Lovelace", "the retried delivery was applied again");
    }));

    test("a duplicate svix-id with a different (newer) body is not applied again", withLogs(async () => {
      const userId = newUserId();
      const msgId = newMsgId();
      assertAccepted(await sendSigned(server.siteUrl, secret, userCreated({ id: userId, firstName: "Once", updatedAt: 1764000100000 }), { msgId }), "first");
      const again = await sendSigned(server.siteUrl, secret, userUpdated({ id: userId, firstName: "Twice", updatedAt: 1764000900000 }), { msgId });
      assertAccepted(again, "same id again");
      assert.equal((await userRow(userId)).name, "Once Lovelace");
    }));

    test("an older user.updated after a newer one is ignored", withLogs(async () => {
      const userId = newUserId();
      assertAccepted(await sendSigned(server.siteUrl, secret, userCreated({ id: userId, firstName: "Created", updatedAt: 1764000100000 })), "created");
      assertAccepted(await sendSigned(server.siteUrl, secret, userUpdated({ id: userId, firstName: "Newer", email: "newer@example.org", updatedAt: 1764000300000 })), "newer");
      assertAccepted(await sendSigned(server.siteUrl, secret, userUpdated({ id: userId, firstName: "Older", email: "older@example.org", updatedAt: 1764000200000 })), "older");
      const row = await userRow(userId);
      assert.equal(row.name, "Newer Lovelace", "an out-of-order update overwrote a newer one");
      assert.equal(row.email, "newer@example.org");
    }));

    test("a stale user.updated after user.deleted does not resurrect the user", withLogs(async () => {
      const userId = newUserId();
      const createdAt = Date.now() - 10 * MINUTE_MS;
      assertAccepted(await sendSigned(server.siteUrl, secret, userCreated({ id: userId, createdAt, updatedAt: createdAt })), "created");
      assert.ok(await userRow(userId));
      assertAccepted(await sendSigned(server.siteUrl, secret, userDeleted(userId, Date.now())), "deleted");
      assert.equal(await userRow(userId), null);
      // A retry of an update made before the deletion arrives late.
      const stale = await sendSigned(server.siteUrl, secret, userUpdated({ id: userId, firstName: "Zombie", createdAt, updatedAt: createdAt + MINUTE_MS }));
      assertAccepted(stale, "stale update");
      assert.equal(await userRow(userId), null, "a stale update resurrected a deleted user");
    }));

    test("deleting an unknown user is acknowledged", withLogs(async () => {
      assertAccepted(await sendSigned(server.siteUrl, secret, userDeleted(newUserId(), Date.now())), "delete unknown");
    }));

    test("stripeConnectId survives Clerk updates", withLogs(async () => {
      const userId = newUserId();
      assertAccepted(await sendSigned(server.siteUrl, secret, userCreated({ id: userId, updatedAt: 1764000100000 })), "created");
      const client = newClient(server, { auth: await issuer.tokenFor(userId) });
      await client.mutation(api.users.updateOrCreateUserStripeConnectId, { userId, stripeConnectId: "acct_1TestConnect" });
      assert.equal(await client.query(api.users.getUsersStripeConnectId, { userId }), "acct_1TestConnect");
      assertAccepted(
        await sendSigned(server.siteUrl, secret, userUpdated({ id: userId, firstName: "Renamed", updatedAt: 1764000500000 })),
        "update",
      );
      const row = await userRow(userId);
      assert.equal(row.name, "Renamed Lovelace");
      assert.equal(row.stripeConnectId, "acct_1TestConnect", "a Clerk update wiped stripeConnectId");
      assert.equal(await client.query(api.users.getUsersStripeConnectId, { userId }), "acct_1TestConnect");
    }));

    test("updateOrCreateUserStripeConnectId without a user row fails", withLogs(async () => {
      const userId = newUserId();
      const client = newClient(server, { auth: await issuer.tokenFor(userId) });
      await rejectsWith(client.mutation(api.users.updateOrCreateUserStripeConnectId, { userId, stripeConnectId: "acct_x" }), "User not found");
    }));
  });

  describe("JWT attacks are refused with 401 before any function runs", () => {
    const attacks = {
      "alg none": async (sub) => issuer.unsignedToken(sub),
      "HS256 keyed with the RSA public key": async (sub) => issuer.hs256WithPublicKey(sub),
      "wrong issuer": async (sub) => issuer.tokenFor(sub, { iss: "https://evil-issuer-00.clerk.accounts.dev" }),
      "wrong audience": async (sub) => issuer.tokenFor(sub, { aud: "not-convex" }),
      "no audience": async (sub) => issuer.tokenFor(sub, { aud: undefined }),
      expired: async (sub) => {
        const now = Math.floor(Date.now() / 1000);
        return issuer.tokenFor(sub, { iat: now - 3600, nbf: now - 3600, exp: now - 600 });
      },
      "nbf in the future": async (sub) => {
        const now = Math.floor(Date.now() / 1000);
        return issuer.tokenFor(sub, { nbf: now + 600, iat: now, exp: now + 1200 });
      },
      "unknown kid": async (sub) => issuer.tokenFor(sub, {}, { kid: "ins_not_a_published_kid" }),
      "known kid signed by a stranger's key": async (sub) => {
        const stranger = await OidcIssuer.strangerKey(issuer.current.kid);
        return issuer.tokenFor(sub, {}, { key: stranger });
      },
      "tampered payload": async (sub) => tamperPayload(await issuer.tokenFor(sub), (c) => ({ ...c, sub: "user_2admin" })),
      "not a JWT at all": async () => "hello-i-am-not-a-jwt",
      "two segments only": async (sub) => (await issuer.tokenFor(sub)).split(".").slice(0, 2).join("."),
    };

    test("a valid token is accepted (control)", withLogs(async () => {
      const r = await server.post("/api/query", { path: "users:current", format: "json", args: [{}] }, {
        ...CLIENT_HEADERS,
        Authorization: `Bearer ${await issuer.tokenFor(newUserId())}`,
      });
      assert.equal(r.status, 200, r.text);
      assert.equal(r.json.status, "success", r.text);
      assert.equal(r.json.value, null);
    }));

    for (const [name, make] of Object.entries(attacks)) {
      test(name, withLogs(async () => {
        const userId = newUserId();
        assertAccepted(await sendSigned(server.siteUrl, secret, userCreated({ id: userId })), "setup user");
        const token = await make(userId);
        const r = await server.post("/api/query", { path: "users:current", format: "json", args: [{}] }, {
          ...CLIENT_HEADERS,
          Authorization: `Bearer ${token}`,
        });
        assertSystemError(r, { status: 401, codes: AUTH_CODES, context: name });
        const m = await server.post("/api/mutation", { path: "users:updateUser", format: "json", args: [{ userId, name: "Hacked", email: "h@x" }] }, {
          ...CLIENT_HEADERS,
          Authorization: `Bearer ${token}`,
        });
        assertSystemError(m, { status: 401, codes: AUTH_CODES, context: `${name} (mutation)` });
        assert.notEqual((await userRow(userId)).name, "Hacked");
        // The official client surfaces the refusal as an error too.
        const client = newClient(server, { auth: token });
        await rejectsWith(client.query(api.users.current, {}), undefined, name);
      }));
    }
  });

  describe("caller checks", () => {
    test("a user may act only for themselves; the admin key for anyone", withLogs(async () => {
      const a = newUserId();
      const b = newUserId();
      for (const id of [a, b]) assertAccepted(await sendSigned(server.siteUrl, secret, userCreated({ id, firstName: id.slice(-4) })), "setup");
      const clientA = newClient(server, { auth: await issuer.tokenFor(a) });
      assert.equal((await clientA.query(api.users.getUserById, { userId: a })).userId, a);
      await rejectsWith(clientA.query(api.users.getUserById, { userId: b }), `Not authorized to act for user ${b}`);
      await rejectsWith(clientA.mutation(api.users.updateUser, { userId: b, name: "Mallory", email: "m@example.org" }), `Not authorized to act for user ${b}`);
      await rejectsWith(clientA.query(api.tickets.getUserTickets, { userId: b }), `Not authorized to act for user ${b}`);
      assert.notEqual((await userRow(b)).name, "Mallory");

      const anonymous = newClient(server);
      await rejectsWith(anonymous.query(api.users.getUserById, { userId: a }), "Not authenticated");
      await rejectsWith(anonymous.mutation(api.users.updateUser, { userId: a, name: "Anon", email: "anon@example.org" }), "Not authenticated");

      const admin = newClient(server, { admin: true });
      assert.equal((await admin.query(api.users.getUserById, { userId: b })).userId, b);
      const id = await admin.mutation(api.users.updateUser, { userId: b, name: "Renamed By Admin", email: "b@example.org" });
      assert.equal(typeof id, "string");
      assert.equal((await userRow(b)).name, "Renamed By Admin");
    }));

    test("users:updateUser upserts the caller's own row", withLogs(async () => {
      const a = newUserId();
      const client = newClient(server, { auth: await issuer.tokenFor(a) });
      assert.equal(await client.query(api.users.current, {}), null);
      const id = await client.mutation(api.users.updateUser, { userId: a, name: "Self Made", email: "self@example.org" });
      const row = await client.query(api.users.current, {});
      assert.equal(row?._id, id);
      assert.equal(row.name, "Self Made");
      assert.equal(row.email, "self@example.org");
      const again = await client.mutation(api.users.updateUser, { userId: a, name: "Self Made Again", email: "self@example.org" });
      assert.equal(again, id, "a second updateUser must update the same row");
      assert.equal((await userRow(a)).name, "Self Made Again");
    }));

    test("internal functions are not callable with a user token", withLogs(async () => {
      const a = newUserId();
      const client = newClient(server, { auth: await issuer.tokenFor(a) });
      await rejectsWith(
        client.mutation(api.users.upsertUserFromClerk, { data: userCreated({ id: a }).data }),
        "Could not find public function for 'users:upsertUserFromClerk'.",
      );
      await rejectsWith(client.mutation(api.users.deleteUser, { userId: a }), "Could not find public function for 'users:deleteUser'.");
      assert.equal(await userRow(a), null);
    }));
  });
});

describe("JWKS rotation", { timeout: 300_000 }, () => {
  let issuer;
  let server;
  before(async () => {
    issuer = await startIssuer();
    server = await startServer({
      which: "tickethub",
      env: { CLERK_WEBHOOK_SECRET: newWebhookSecret(), CLERK_JWT_ISSUER_DOMAIN: issuer.issuer },
    });
  });
  after(async () => {
    await server?.cleanup();
    await issuer?.stop();
  });

  test("a key newly published at the issuer is accepted without a restart", withLogs(async () => {
    const callAs = async (token) =>
      server.post("/api/query", { path: "users:current", format: "json", args: [{}] }, { ...CLIENT_HEADERS, Authorization: `Bearer ${token}` });
    const first = await callAs(await issuer.tokenFor(newUserId()));
    assert.equal(first.status, 200, `token from the original key: ${first.text}`);
    assert.ok(issuer.requests.jwks >= 1, "the server never fetched the JWKS");

    const newKid = await issuer.rotate();
    const token = await issuer.tokenFor(newUserId());
    assert.ok(token.length > 0 && newKid.startsWith("ins_"));
    // A server may rate-limit JWKS refreshes, so allow it a little time, but no restart.
    const accepted = await waitFor(async () => (await callAs(token)).status === 200, {
      timeoutMs: 60_000,
      intervalMs: 500,
      what: "a token signed with the rotated-in key to be accepted",
    });
    assert.ok(accepted);
    const client = newClient(server, { auth: token });
    assert.equal(await client.query(api.users.current, {}), null);
  }));
});

describe("tickethub without CLERK_WEBHOOK_SECRET", { timeout: 120_000 }, () => {
  let server;
  before(async () => {
    server = await startServer({ which: "tickethub" });
  });
  after(async () => {
    await server?.cleanup();
  });

  test("starts, and the webhook answers 500 without writing", withLogs(async () => {
    const userId = newUserId();
    const r = await sendSigned(server.siteUrl, newWebhookSecret(), userCreated({ id: userId }));
    assert.equal(r.status, 500, r.text);
    assert.equal(await server.adminRun("users:getUserById", { userId }), null);
    // Everything else still works.
    const client = newClient(server);
    assert.ok(Array.isArray(await client.query(api.events.get, {})));
  }));
});

function without(headers, name) {
  const copy = { ...headers };
  delete copy[name];
  return copy;
}
