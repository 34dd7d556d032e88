// examples/ticket-hub-js: Ticket Hub's backend as an ordinary Convex TypeScript app, pushed with
// the pinned `convex` package's own CLI (`npx convex dev --once`) into `tickethub serve --app
// none`, and driven as its front end would: ConvexHttpClient, a live ConvexClient subscription,
// Clerk webhooks signed by the real svix package (verified by the svix package inside the HTTP
// action), the scheduler and a cron, file storage fed by an action's fetch, ConvexError data,
// argument validation, a rejected push that leaves the old code running, and a restart.

import assert from "node:assert/strict";
import { readFile, rm, writeFile } from "node:fs/promises";
import { createServer } from "node:http";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { after, before, describe, test } from "node:test";
import { ConvexClient } from "convex/browser";
import { anyApi } from "convex/server";
import { convex, convexOk, convexProject, PUSH_ONCE } from "./lib/cli.mjs";
import { newUserId, newWebhookSecret, signDelivery, userCreated, userDeleted } from "./lib/clerk.mjs";
import { newClient, rejectsWith, waitFor, withLogs } from "./lib/helpers.mjs";
import { startServer } from "./lib/server.mjs";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const APP = path.join(HERE, "..", "..", "examples", "ticket-hub-js");
const api = anyApi;
const PUSH = PUSH_ONCE;
const WEBHOOK_SECRET = newWebhookSecret();

/** A project directory with the example's convex/ folder and package.json. */
async function projectDir() {
  const packageJson = JSON.parse(await readFile(path.join(APP, "package.json"), "utf8"));
  return convexProject("ticket-hub-js-", { convexDir: path.join(APP, "convex"), packageJson });
}

/** A loopback "organizer site" serving one image. */
async function imageSite(bytes) {
  const server = createServer((req, res) => {
    if (req.url !== "/poster.png") {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { "content-type": "image/png", "content-length": bytes.length }).end(bytes);
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  return { url: `http://127.0.0.1:${server.address().port}`, close: () => new Promise((r) => server.close(r)) };
}

async function deliver(server, payload) {
  const d = signDelivery(WEBHOOK_SECRET, payload);
  const res = await fetch(`${server.siteUrl}/clerk-users-webhook`, { method: "POST", headers: d.headers, body: d.body });
  return { status: res.status, text: await res.text() };
}

const eventArgs = (userId, totalTickets) => ({
  name: "Rust Meetup",
  description: "Talks about embedded JavaScript",
  location: "Lisbon",
  eventDate: Date.now() + 86_400_000,
  price: 12.5,
  totalTickets,
  userId,
});

describe("examples/ticket-hub-js pushed into tickethub --app none", { timeout: 900_000 }, () => {
  let server;
  let cwd;
  let http;

  before(async () => {
    server = await startServer({
      which: "tickethub",
      extraArgs: ["--app", "none"],
      env: { CLERK_WEBHOOK_SECRET: WEBHOOK_SECRET, TICKETHUB_FETCH_ALLOW_HOSTS: "127.0.0.1" },
    });
    cwd = await projectDir();
    http = newClient(server);
    await convexOk(server, PUSH, { cwd });
  });
  after(async () => {
    await server?.cleanup();
    if (cwd) await rm(cwd, { recursive: true, force: true });
  });

  test("Clerk webhooks, verified by svix inside the HTTP action, create, update and delete users", withLogs(async () => {
    const userId = newUserId();
    let r = await deliver(server, userCreated({ id: userId, firstName: "Ada", lastName: "Lovelace", email: "ada@example.org" }));
    assert.equal(r.status, 200, r.text);
    const user = await http.query(api.users.getUserById, { userId });
    assert.equal(user.name, "Ada Lovelace");
    assert.equal(user.email, "ada@example.org");

    // A forged signature is refused and writes nothing.
    const forged = signDelivery(newWebhookSecret(), userCreated({ id: newUserId() }));
    const res = await fetch(`${server.siteUrl}/clerk-users-webhook`, { method: "POST", headers: forged.headers, body: forged.body });
    assert.equal(res.status, 400);
    assert.match(await res.text(), /^Webhook verification failed/);

    r = await deliver(server, userDeleted(userId));
    assert.equal(r.status, 200, r.text);
    assert.equal(await http.query(api.users.getUserById, { userId }), null);
  }));

  test("the waiting list: a live availability query, offers, a purchase, the rate limit's ConvexError", withLogs(async () => {
    const organizer = newUserId();
    const eventId = await http.mutation(api.events.create, eventArgs(organizer, 1));
    const live = new ConvexClient(server.url);
    try {
      const seen = [];
      const unsubscribe = live.onUpdate(api.events.checkAvailability, { eventId }, (v) => seen.push(v));
      await waitFor(() => seen.length >= 1, { what: "the first availability" });
      assert.equal(seen.at(-1).availableSpots, 1);

      // The first buyer gets the one ticket offered; the live query sees the offer.
      const buyer = newUserId();
      const offered = await http.mutation(api.events.joinWaitingList, { eventId, userId: buyer });
      assert.equal(offered.status, "offered");
      await waitFor(() => seen.at(-1)?.activeOffers === 1, { what: "the offer in the live query" });
      assert.equal(seen.at(-1).available, false);

      // The second waits; the same user cannot join twice.
      const second = newUserId();
      assert.equal((await http.mutation(api.events.joinWaitingList, { eventId, userId: second })).status, "waiting");
      await rejectsWith(http.mutation(api.events.joinWaitingList, { eventId, userId: second }), "Already in waiting list for this event");

      // The buyer purchases: the ticket is theirs, and nothing is offered to the second (sold out).
      assert.deepEqual(await http.query(api.events.getUserTickets, { userId: buyer }), []);
      const ticketId = await purchase(http, eventId, buyer);
      const tickets = await http.query(api.events.getUserTickets, { userId: buyer });
      assert.equal(tickets.length, 1);
      assert.equal(tickets[0]._id, ticketId);
      assert.equal(tickets[0].event.name, "Rust Meetup");
      await waitFor(() => seen.at(-1)?.purchasedCount === 1 && seen.at(-1)?.activeOffers === 0, { what: "the purchase in the live query" });
      unsubscribe();
    } finally {
      await live.close();
    }

    // The rate limit: three joins per window, then a ConvexError whose data is the front end's text.
    const eager = newUserId();
    for (let i = 0; i < 3; i++) {
      const other = await http.mutation(api.events.create, eventArgs(organizer, 5));
      await http.mutation(api.events.joinWaitingList, { eventId: other, userId: eager });
    }
    const other = await http.mutation(api.events.create, eventArgs(organizer, 5));
    const error = await rejectsWith(http.mutation(api.events.joinWaitingList, { eventId: other, userId: eager }));
    assert.match(error.data, /^You've joined the waiting list too many times\. Please wait \d+ minutes before trying again\.$/);

    // Argument validation, with Convex's text.
    await rejectsWith(http.mutation(api.events.joinWaitingList, { eventId: "not an id", userId: eager }), "ArgumentValidationError");
    await rejectsWith(http.mutation(api.events.create, { ...eventArgs(organizer, 1), price: "free" }), "ArgumentValidationError");
  }));

  test("file storage: an action fetches an image, stores it, and the event shows it", withLogs(async () => {
    const bytes = Buffer.from(Array.from({ length: 4096 }, (_, i) => (i * 7) & 0xff));
    const site = await imageSite(bytes);
    try {
      const eventId = await http.mutation(api.events.create, eventArgs(newUserId(), 10));
      const stored = await http.action(api.storage.importEventImage, { eventId, url: `${site.url}/poster.png` });
      assert.equal(stored.size, bytes.length);
      assert.equal(stored.type, "image/png");
      const url = await http.query(api.storage.getEventImageUrl, { eventId });
      const served = await fetch(url);
      assert.equal(served.status, 200);
      assert.ok(Buffer.from(await served.arrayBuffer()).equals(bytes), "the served image is the fetched one");
      await rejectsWith(http.action(api.storage.importEventImage, { eventId, url: `${site.url}/missing.png` }), "Fetching the image failed: 404");

      // A new image replaces the old one, whose file the mutation deletes.
      await http.action(api.storage.importEventImage, { eventId, url: `${site.url}/poster.png` });
      const newUrl = await http.query(api.storage.getEventImageUrl, { eventId });
      assert.notEqual(newUrl, url);
      assert.equal((await fetch(url)).status, 404, "the replaced image is deleted");
      assert.equal((await fetch(newUrl)).status, 200);

      // An upload URL from a mutation takes a file, as the front end's image picker sends it.
      const uploadUrl = await http.mutation(api.storage.generateUploadUrl, {});
      const uploaded = await fetch(uploadUrl, { method: "POST", headers: { "content-type": "image/png" }, body: bytes });
      assert.equal(uploaded.status, 200);
      assert.match((await uploaded.json()).storageId, /^[0-9a-z]+$/);
    } finally {
      await site.close();
    }
  }));

  test("the cron is declared; a push that fails leaves the old code; a restart keeps the app", withLogs(async () => {
    const crons = await fetch(`${server.url}/api/dashboard/crons`, { headers: { authorization: `Convex ${server.adminKey}` } });
    const listed = (await crons.json()).crons.map((c) => `${c.name}: ${c.schedule}`);
    assert.deepEqual(listed, ["cleanup-expired-offers: every 60000 ms"]);

    const before = await http.query(api.events.get, {});
    await writeFile(path.join(cwd, "convex", "broken.ts"), 'import { query } from "./_generated/server";\nexport const x = query(async () => 1);\nthrow new Error("broken on purpose");\n');
    const r = await convex(server, PUSH, { cwd });
    assert.notEqual(r.code, 0);
    assert.match(r.stdout + r.stderr, /broken on purpose/);
    await rm(path.join(cwd, "convex", "broken.ts"));
    assert.deepEqual(await http.query(api.events.get, {}), before);

    await server.restart();
    assert.deepEqual(await http.query(api.events.get, {}), before);
    assert.equal((await http.query(api.events.search, { searchTerm: "embedded" })).length, before.length);
  }));
});

/** Buy the ticket offered to `userId` for `eventId`, as the front end does from the user's list. */
async function purchase(http, eventId, userId) {
  const entries = await http.query(api.events.getUserWaitingList, { userId });
  const offer = entries.find((e) => e.eventId === eventId && e.status === "offered");
  assert.ok(offer, `an offer for ${userId}: ${JSON.stringify(entries)}`);
  assert.equal(offer.event._id, eventId);
  return await http.mutation(api.events.purchaseTicket, {
    eventId,
    userId,
    waitingListId: offer._id,
    paymentInfo: { paymentIntentId: `pi_${userId}`, amount: 1250 },
  });
}
