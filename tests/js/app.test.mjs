// The Ticket Hub application end to end: the tickethub binary with the test clock and
// Clerk auth on (each user calls with their own RS256 token), driven by the official
// ConvexHttpClient. Covers the story of the waiting list, offers, purchases, expiry,
// cancellation, search, seller metrics, rate limiting, a purchase race, and restarts.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { anyApi } from "convex/server";
import { ConvexError } from "convex/values";
import { startServer } from "./lib/server.mjs";
import { startIssuer } from "./lib/oidc.mjs";
import { newUserId, newWebhookSecret } from "./lib/clerk.mjs";
import { newClient, rejectsWith, safeJson, withLogs } from "./lib/helpers.mjs";

const api = anyApi;
const MINUTE_MS = 60_000;
const DAY_MS = 24 * 60 * MINUTE_MS;
const OFFER_MS = 30 * MINUTE_MS;

/** Starts an issuer and a tickethub with the test clock and Clerk auth. */
async function startApp() {
  const issuer = await startIssuer();
  const server = await startServer({
    which: "tickethub",
    testClock: true,
    env: { CLERK_WEBHOOK_SECRET: newWebhookSecret(), CLERK_JWT_ISSUER_DOMAIN: issuer.issuer },
  });
  // Tokens live long: the server's test clock moves hours ahead of the real one.
  const now = () => Math.floor(Date.now() / 1000);
  const as = async (userId) =>
    newClient(server, { auth: await issuer.tokenFor(userId, { iat: now() - 5, nbf: now() - 5, exp: now() + 14 * 86400 }) });
  const admin = newClient(server, { admin: true });
  return { issuer, server, as, admin };
}

function eventArgs(userId, overrides = {}) {
  return {
    name: "Rust Conf",
    description: "A conference about Rust and systems programming",
    location: "Berlin",
    eventDate: Date.now() + 30 * DAY_MS,
    price: 49.99,
    totalTickets: 2,
    userId,
    ...overrides,
  };
}

async function entryFor(client, userId, eventId) {
  const entries = await client.query(api.events.getUserWaitingList, { userId });
  const mine = entries.filter((e) => e.eventId === eventId);
  assert.ok(mine.length <= 1, `more than one entry for ${userId}: ${safeJson(mine)}`);
  return mine[0] ?? null;
}

describe("Ticket Hub: the whole story", { timeout: 600_000 }, () => {
  let app;
  let organizer, u1, u2, u3;
  let O, U1, U2, U3;
  let eventId;
  let ticketId;

  before(async () => {
    app = await startApp();
    [O, U1, U2, U3] = [newUserId(), newUserId(), newUserId(), newUserId()];
    [organizer, u1, u2, u3] = await Promise.all([O, U1, U2, U3].map((id) => app.as(id)));
  });
  after(async () => {
    await app?.server.cleanup();
    await app?.issuer.stop();
  });

  test("an organizer creates an event with two tickets", withLogs(async () => {
    eventId = await organizer.mutation(api.events.create, eventArgs(O));
    assert.equal(typeof eventId, "string");
    const event = await u1.query(api.events.getById, { eventId });
    assert.equal(event.name, "Rust Conf");
    assert.equal(event.totalTickets, 2);
    assert.equal(event.price, 49.99);
    assert.equal(event.userId, O);
    const listed = await u1.query(api.events.get, {});
    assert.ok(listed.some((e) => e._id === eventId), "events:get lacks the new event");
    const avail = await u1.query(api.events.checkAvailability, { eventId });
    assert.deepEqual(
      { ...avail },
      { available: true, availableSpots: 2, totalTickets: 2, purchasedCount: 0, activeOffers: 0 },
    );
  }));

  test("three users join: two are offered, the third waits at position 3", withLogs(async () => {
    const r1 = await u1.mutation(api.events.joinWaitingList, { eventId, userId: U1 });
    const r2 = await u2.mutation(api.events.joinWaitingList, { eventId, userId: U2 });
    const r3 = await u3.mutation(api.events.joinWaitingList, { eventId, userId: U3 });
    for (const r of [r1, r2, r3]) {
      assert.equal(r.success, true);
      assert.equal(typeof r.message, "string");
    }
    assert.equal(r1.status, "offered");
    assert.equal(r2.status, "offered");
    assert.equal(r3.status, "waiting");

    const p1 = await u1.query(api.waitingList.getQueuePosition, { eventId, userId: U1 });
    const p3 = await u3.query(api.waitingList.getQueuePosition, { eventId, userId: U3 });
    assert.equal(p1.position, 1);
    assert.equal(p1.status, "offered");
    assert.equal(p3.position, 3);
    assert.equal(p3.status, "waiting");
    const e1 = await entryFor(u1, U1, eventId);
    assert.equal(typeof e1.offerExpiresAt, "number");
    assert.ok(e1.offerExpiresAt > e1._creationTime + OFFER_MS - 5_000, `offer expiry ${e1.offerExpiresAt} too early`);
    assert.ok(e1.offerExpiresAt <= e1._creationTime + OFFER_MS + 5_000, `offer expiry ${e1.offerExpiresAt} too late`);
    assert.equal(e1.event?._id, eventId, "getUserWaitingList must join the event in");

    const avail = await u1.query(api.events.checkAvailability, { eventId });
    assert.deepEqual({ ...avail }, { available: false, availableSpots: 0, totalTickets: 2, purchasedCount: 0, activeOffers: 2 });
    const ea = await u1.query(api.events.getEventAvailability, { eventId });
    assert.deepEqual({ ...ea }, { isSoldOut: true, totalTickets: 2, purchasedCount: 0, activeOffers: 2, remainingTickets: 0 });
  }));

  test("joining twice is refused", withLogs(async () => {
    await rejectsWith(u1.mutation(api.events.joinWaitingList, { eventId, userId: U1 }), "Already in waiting list for this event");
    await rejectsWith(u3.mutation(api.events.joinWaitingList, { eventId, userId: U3 }), "Already in waiting list for this event");
  }));

  test("a user cannot act for another user or buy with another user's offer", withLogs(async () => {
    const offerOfU2 = await entryFor(u2, U2, eventId);
    // U3 claims to be U2.
    await rejectsWith(
      u3.mutation(api.events.purchaseTicket, { eventId, userId: U2, waitingListId: offerOfU2._id, paymentInfo: { paymentIntentId: "pi_steal", amount: 4999 } }),
      `Not authorized to act for user ${U2}`,
    );
    // U3 as themselves, but with U2's offer.
    await rejectsWith(
      u3.mutation(api.events.purchaseTicket, { eventId, userId: U3, waitingListId: offerOfU2._id, paymentInfo: { paymentIntentId: "pi_steal2", amount: 4999 } }),
      undefined,
    );
    await rejectsWith(u3.mutation(api.events.joinWaitingList, { eventId, userId: U1 }), `Not authorized to act for user ${U1}`);
    const anonymous = newClient(app.server);
    await rejectsWith(anonymous.mutation(api.events.joinWaitingList, { eventId, userId: U1 }), "Not authenticated");
    assert.deepEqual(await u3.query(api.tickets.getUserTickets, { userId: U3 }), []);
    assert.equal((await entryFor(u2, U2, eventId)).status, "offered");
  }));

  test("a purchase makes a valid ticket listed for the buyer", withLogs(async () => {
    const offer = await entryFor(u1, U1, eventId);
    await u1.mutation(api.events.purchaseTicket, {
      eventId,
      userId: U1,
      waitingListId: offer._id,
      paymentInfo: { paymentIntentId: "pi_u1_1", amount: 4999 },
    });
    const tickets = await u1.query(api.events.getUserTickets, { userId: U1 });
    assert.equal(tickets.length, 1);
    const t = tickets[0];
    assert.equal(t.status, "valid");
    assert.equal(t.eventId, eventId);
    assert.equal(t.userId, U1);
    assert.equal(t.paymentIntentId, "pi_u1_1");
    assert.equal(t.amount, 4999);
    assert.equal(typeof t.purchasedAt, "number");
    assert.equal(t.event?._id, eventId, "events:getUserTickets must join the event in");
    assert.equal(t.event?.name, "Rust Conf");
    ticketId = t._id;

    const plain = await u1.query(api.tickets.getUserTickets, { userId: U1 });
    assert.deepEqual(plain.map((x) => x._id), [ticketId]);
    assert.equal(plain[0].event, undefined, "tickets:getUserTickets returns bare tickets");
    const forEvent = await u1.query(api.tickets.getUserTicketForEvent, { eventId, userId: U1 });
    assert.equal(forEvent?._id, ticketId);
    const details = await u1.query(api.tickets.getTicketWithDetails, { ticketId });
    assert.equal(details._id, ticketId);
    assert.equal(details.event._id, eventId);
    const valid = await u1.query(api.tickets.getValidTicketsForEvent, { eventId });
    assert.deepEqual(valid.map((x) => x._id), [ticketId]);

    assert.equal((await entryFor(u1, U1, eventId)).status, "purchased");
    const avail = await u1.query(api.events.checkAvailability, { eventId });
    assert.deepEqual({ ...avail }, { available: false, availableSpots: 0, totalTickets: 2, purchasedCount: 1, activeOffers: 1 });

    // A used offer cannot buy a second ticket.
    await rejectsWith(
      u1.mutation(api.events.purchaseTicket, { eventId, userId: U1, waitingListId: offer._id, paymentInfo: { paymentIntentId: "pi_u1_2", amount: 4999 } }),
      undefined,
    );
    assert.equal((await u1.query(api.tickets.getUserTickets, { userId: U1 })).length, 1);
  }));

  test("an event cannot shrink below the tickets sold", withLogs(async () => {
    const { userId: _ignored, ...rest } = eventArgs(O);
    void _ignored;
    await rejectsWith(
      organizer.mutation(api.events.updateEvent, { eventId, ...rest, totalTickets: 0 }),
      "Cannot reduce total tickets below 1 (number of tickets already sold)",
    );
    const same = await organizer.mutation(api.events.updateEvent, { eventId, ...rest, totalTickets: 2, location: "Berlin, Germany" });
    assert.equal(same, eventId);
    assert.equal((await organizer.query(api.events.getById, { eventId })).location, "Berlin, Germany");
  }));

  test("seller metrics count the sale", withLogs(async () => {
    const mine = await organizer.query(api.events.getSellerEvents, { userId: O });
    assert.equal(mine.length, 1);
    assert.equal(mine[0]._id, eventId);
    const m = mine[0].metrics;
    assert.equal(m.soldTickets, 1);
    assert.equal(m.refundedTickets, 0);
    assert.equal(m.cancelledTickets, 0);
    assert.ok(Math.abs(m.revenue - 49.99) < 1e-9, `revenue ${m.revenue}`);
    assert.deepEqual(await u1.query(api.events.getSellerEvents, { userId: U1 }), []);
  }));

  test("after 31 minutes the unused offer lapses and the waiting user is offered", withLogs(async () => {
    const before = await entryFor(u2, U2, eventId);
    assert.equal(before.status, "offered");
    const now = await app.server.advanceTime(31 * MINUTE_MS);
    assert.ok(now >= before.offerExpiresAt, `clock ${now} did not pass the expiry ${before.offerExpiresAt}`);

    const lapsed = await entryFor(u2, U2, eventId);
    assert.equal(lapsed.status, "expired");
    assert.equal(await u2.query(api.waitingList.getQueuePosition, { eventId, userId: U2 }), null);
    const promoted = await entryFor(u3, U3, eventId);
    assert.equal(promoted.status, "offered");
    assert.ok(promoted.offerExpiresAt > now, "the new offer must expire in the future");
    assert.ok(promoted.offerExpiresAt <= now + OFFER_MS + 5_000, "the new offer lasts 30 minutes");
    const avail = await u3.query(api.events.checkAvailability, { eventId });
    assert.deepEqual({ ...avail }, { available: false, availableSpots: 0, totalTickets: 2, purchasedCount: 1, activeOffers: 1 });
  }));

  test("the cleanup sweep returns null, as the original's does, and changes nothing live", withLogs(async () => {
    const offered = await entryFor(u3, U3, eventId);
    assert.equal(await app.admin.mutation(api.waitingList.cleanupExpiredOffers, {}), null);
    assert.deepEqual(await entryFor(u3, U3, eventId), offered);
  }));

  test("an expired offer cannot be bought", withLogs(async () => {
    const lapsed = await entryFor(u2, U2, eventId);
    await rejectsWith(
      u2.mutation(api.events.purchaseTicket, { eventId, userId: U2, waitingListId: lapsed._id, paymentInfo: { paymentIntentId: "pi_late", amount: 4999 } }),
      undefined,
    );
    assert.deepEqual(await u2.query(api.tickets.getUserTickets, { userId: U2 }), []);
  }));

  test("releaseTicket expires an offer and frees the spot", withLogs(async () => {
    const offer = await entryFor(u3, U3, eventId);
    await u3.mutation(api.waitingList.releaseTicket, { eventId, waitingListId: offer._id });
    assert.equal((await entryFor(u3, U3, eventId)).status, "expired");
    await rejectsWith(u3.mutation(api.waitingList.releaseTicket, { eventId, waitingListId: offer._id }), "No valid ticket offer found");
    const avail = await u3.query(api.events.checkAvailability, { eventId });
    assert.deepEqual({ ...avail }, { available: true, availableSpots: 1, totalTickets: 2, purchasedCount: 1, activeOffers: 0 });
    // An expired entry does not block joining again.
    const again = await u2.mutation(api.events.joinWaitingList, { eventId, userId: U2 });
    assert.equal(again.status, "offered");
    const offers = await u2.query(api.events.getUserWaitingList, { userId: U2 });
    assert.equal(offers.filter((e) => e.eventId === eventId && e.status === "offered").length, 1);
  }));

  test("search is case-insensitive over name, description and location", withLogs(async () => {
    const other = await organizer.mutation(api.events.create, eventArgs(O, { name: "Jazz Night", description: "Smooth evening", location: "Paris", totalTickets: 5 }));
    const ids = async (term) => (await u1.query(api.events.search, { searchTerm: term })).map((e) => e._id).sort();
    assert.deepEqual(await ids("rUsT"), [eventId]);
    assert.deepEqual(await ids("SYSTEMS programming"), [eventId]);
    assert.deepEqual(await ids("berlin"), [eventId]);
    assert.deepEqual(await ids("jazz"), [other]);
    assert.deepEqual(await ids("PARIS"), [other]);
    assert.deepEqual(await ids("no such thing anywhere"), []);
    assert.deepEqual(await ids("n"), [eventId, other].sort());
  }));

  test("cancelEvent is refused while tickets are valid, then succeeds after a refund", withLogs(async () => {
    await rejectsWith(
      organizer.mutation(api.events.cancelEvent, { eventId }),
      "Cannot cancel event with active tickets. Please refund all tickets first.",
    );
    assert.ok((await u1.query(api.events.get, {})).some((e) => e._id === eventId));

    await organizer.mutation(api.tickets.updateTicketStatus, { ticketId, status: "refunded" });
    assert.equal((await u1.query(api.tickets.getTicketWithDetails, { ticketId })).status, "refunded");
    const metrics = (await organizer.query(api.events.getSellerEvents, { userId: O })).find((e) => e._id === eventId).metrics;
    assert.equal(metrics.soldTickets, 0);
    assert.equal(metrics.refundedTickets, 1);
    assert.ok(Math.abs(metrics.revenue) < 1e-9, `revenue after refund ${metrics.revenue}`);

    const result = await organizer.mutation(api.events.cancelEvent, { eventId });
    assert.deepEqual({ ...result }, { success: true });
    assert.ok(!(await u1.query(api.events.get, {})).some((e) => e._id === eventId), "a cancelled event is still listed");
    assert.equal((await u1.query(api.events.getById, { eventId })).is_cancelled, true);
    assert.deepEqual((await u1.query(api.events.search, { searchTerm: "rust" })).map((e) => e._id), []);
    for (const [c, id] of [[u1, U1], [u2, U2], [u3, U3]]) {
      assert.equal(await entryFor(c, id, eventId), null, `waiting-list rows of ${id} survived the cancellation`);
    }
    // A cancelled event sells nothing: joining may be refused or accepted, but no
    // offer it yields can be bought.
    await u3.mutation(api.events.joinWaitingList, { eventId, userId: U3 }).catch(() => null);
    const late = await entryFor(u3, U3, eventId);
    if (late && late.status === "offered") {
      await rejectsWith(
        u3.mutation(api.events.purchaseTicket, { eventId, userId: U3, waitingListId: late._id, paymentInfo: { paymentIntentId: "pi_cancelled", amount: 4999 } }),
        undefined,
      );
    }
    assert.deepEqual(await u3.query(api.tickets.getUserTickets, { userId: U3 }), [], "a ticket was sold for a cancelled event");
  }));

  test("the fourth join within 30 minutes is refused as the original front end expects", withLogs(async () => {
    const R = newUserId();
    const r = await app.as(R);
    const events = [];
    for (let i = 0; i < 5; i++) {
      events.push(await organizer.mutation(api.events.create, eventArgs(O, { name: `Rate ${i}`, totalTickets: 3 })));
    }
    for (let i = 0; i < 3; i++) {
      const res = await r.mutation(api.events.joinWaitingList, { eventId: events[i], userId: R });
      assert.equal(res.success, true);
    }
    const err = await rejectsWith(r.mutation(api.events.joinWaitingList, { eventId: events[3], userId: R }), undefined);
    assert.ok(err instanceof ConvexError, `expected a ConvexError, got ${err?.constructor?.name}: ${err?.message}`);
    // The original join button: `error.message.includes(...)` picks the toast, whose text is
    // `error.data`, a string (N = Math.ceil(retryAfter / 60000); no time has passed, so 30).
    assert.ok(err.message.includes("joined the waiting list too many times"), `message: ${err.message}`);
    assert.equal(typeof err.data, "string", `data: ${safeJson(err.data)}`);
    const refusal = /^You've joined the waiting list too many times\. Please wait (\d+) minutes before trying again\.$/;
    const wait = err.data.match(refusal);
    assert.ok(wait, `data: ${err.data}`);
    assert.ok(Number(wait[1]) >= 29 && Number(wait[1]) <= 30, `wait: ${wait[1]} minutes`);
    assert.equal(await entryFor(r, R, events[3]), null, "a refused join wrote an entry");
    // Other users are not affected.
    const otherId = newUserId();
    const other = await app.as(otherId);
    assert.equal((await other.mutation(api.events.joinWaitingList, { eventId: events[3], userId: otherId })).success, true);
    // After the window the user may join again.
    await app.server.advanceTime(31 * MINUTE_MS);
    const later = await r.mutation(api.events.joinWaitingList, { eventId: events[4], userId: R });
    assert.equal(later.success, true);
  }));
});

describe("Ticket Hub: a purchase race", { timeout: 600_000 }, () => {
  let app;
  before(async () => {
    app = await startApp();
  });
  after(async () => {
    await app?.server.cleanup();
    await app?.issuer.stop();
  });

  test("40 users join 10 tickets at once and every offered user buys twice at once", withLogs(async () => {
    const O = newUserId();
    const organizer = await app.as(O);
    const eventId = await organizer.mutation(api.events.create, eventArgs(O, { name: "Race", totalTickets: 10 }));
    const users = await Promise.all(
      Array.from({ length: 40 }, async () => {
        const id = newUserId();
        return { id, client: await app.as(id) };
      }),
    );
    const joins = await Promise.all(users.map((u) => u.client.mutation(api.events.joinWaitingList, { eventId, userId: u.id })));
    const offeredCount = joins.filter((j) => j.status === "offered").length;
    assert.equal(offeredCount, 10, `offers: ${offeredCount}`);
    assert.equal(joins.filter((j) => j.status === "waiting").length, 30);

    const offered = [];
    for (const u of users) {
      const e = await entryFor(u.client, u.id, eventId);
      assert.ok(e, `no entry for ${u.id}`);
      if (e.status === "offered") offered.push({ ...u, entry: e });
    }
    assert.equal(offered.length, 10);

    const attempts = offered.flatMap((u) =>
      [1, 2].map((n) =>
        u.client
          .mutation(
            api.events.purchaseTicket,
            { eventId, userId: u.id, waitingListId: u.entry._id, paymentInfo: { paymentIntentId: `pi_${u.id}_${n}`, amount: 4999 } },
            { skipQueue: true },
          )
          .then(
            () => ({ user: u.id, ok: true }),
            (err) => ({ user: u.id, ok: false, message: err.message }),
          ),
      ),
    );
    const results = await Promise.all(attempts);
    for (const u of offered) {
      const mine = results.filter((r) => r.user === u.id);
      assert.equal(mine.filter((r) => r.ok).length, 1, `user ${u.id}: ${safeJson(mine)}`);
    }
    const valid = await organizer.query(api.tickets.getValidTicketsForEvent, { eventId });
    assert.equal(valid.length, 10);
    assert.equal(new Set(valid.map((t) => t.userId)).size, 10, "a buyer got two tickets");
    assert.deepEqual(new Set(valid.map((t) => t.userId)), new Set(offered.map((u) => u.id)));
    const avail = await organizer.query(api.events.checkAvailability, { eventId });
    assert.deepEqual({ ...avail }, { available: false, availableSpots: 0, totalTickets: 10, purchasedCount: 10, activeOffers: 0 });
    // Nobody else was offered a spot that does not exist.
    let stillWaiting = 0;
    for (const u of users) {
      const e = await entryFor(u.client, u.id, eventId);
      if (e.status === "waiting") stillWaiting += 1;
      else assert.equal(e.status, "purchased");
    }
    assert.equal(stillWaiting, 30);
  }));
});

describe("Ticket Hub: scheduled offers across a crash", { timeout: 600_000 }, () => {
  let app;
  before(async () => {
    app = await startApp();
  });
  after(async () => {
    await app?.server.cleanup();
    await app?.issuer.stop();
  });

  test("offers scheduled before SIGKILL expire after restart, and the queue moves on", withLogs(async () => {
    const [O, A, B, C] = [newUserId(), newUserId(), newUserId(), newUserId()];
    let [organizer, a, b, c] = await Promise.all([O, A, B, C].map((id) => app.as(id)));
    const eventId = await organizer.mutation(api.events.create, eventArgs(O, { name: "Crash", totalTickets: 1 }));
    assert.equal((await a.mutation(api.events.joinWaitingList, { eventId, userId: A })).status, "offered");
    assert.equal((await b.mutation(api.events.joinWaitingList, { eventId, userId: B })).status, "waiting");
    assert.equal((await c.mutation(api.events.joinWaitingList, { eventId, userId: C })).status, "waiting");
    const offerA = await entryFor(a, A, eventId);

    await app.server.kill();
    await app.server.restart();
    [organizer, a, b, c] = await Promise.all([O, A, B, C].map((id) => app.as(id)));

    // Nothing happened by itself: the offer is still there.
    assert.equal((await entryFor(a, A, eventId)).status, "offered");
    assert.equal((await entryFor(b, B, eventId)).status, "waiting");

    const now = await app.server.advanceTime(31 * MINUTE_MS);
    assert.ok(now >= offerA.offerExpiresAt, `clock ${now} did not pass the expiry ${offerA.offerExpiresAt}`);
    assert.equal((await entryFor(a, A, eventId)).status, "expired");
    const offerB = await entryFor(b, B, eventId);
    assert.equal(offerB.status, "offered", "the queue did not move on after the restart");
    assert.equal((await entryFor(c, C, eventId)).status, "waiting");
    const avail = await b.query(api.events.checkAvailability, { eventId });
    assert.equal(avail.activeOffers, 1, `exactly one active offer after expiry: ${safeJson(avail)}`);

    // Crash again with B's offer pending; it too expires exactly once and C moves up.
    await app.server.kill();
    await app.server.restart();
    [organizer, a, b, c] = await Promise.all([O, A, B, C].map((id) => app.as(id)));
    assert.equal((await entryFor(b, B, eventId)).status, "offered");
    // Advance from wherever the restarted server's clock stands (the test time survives a
    // restart) to past B's expiry.
    const restartedNow = await app.server.advanceTime(0);
    const later = await app.server.advanceTime(Math.max(0, offerB.offerExpiresAt - restartedNow) + MINUTE_MS);
    assert.ok(later >= offerB.offerExpiresAt, `clock ${later} did not pass the expiry ${offerB.offerExpiresAt}`);
    assert.equal((await entryFor(b, B, eventId)).status, "expired");
    assert.equal((await entryFor(c, C, eventId)).status, "offered");
    assert.equal((await c.query(api.events.checkAvailability, { eventId })).activeOffers, 1);
    // The expired users did not get a second offer from a replayed job.
    assert.equal((await entryFor(a, A, eventId)).status, "expired");

    const ticketsBefore = await organizer.query(api.tickets.getValidTicketsForEvent, { eventId });
    assert.deepEqual(ticketsBefore, []);
    const offerC = await entryFor(c, C, eventId);
    await c.mutation(api.events.purchaseTicket, { eventId, userId: C, waitingListId: offerC._id, paymentInfo: { paymentIntentId: "pi_c", amount: 4999 } });
    assert.equal((await organizer.query(api.tickets.getValidTicketsForEvent, { eventId })).length, 1);
  }));
});
