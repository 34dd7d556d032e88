// The Stripe payment webhook of the tickethub binary, end to end. Every signature comes from
// the official `stripe` npm package (`stripe.webhooks.generateTestHeaderString`); users come
// from Svix-signed Clerk webhooks; the app is driven by the official ConvexHttpClient with
// Clerk-shaped RS256 tokens. Covers the paid story (ticket issued, redelivery, refund), a
// refused purchase recorded for the organizer, and the hostile-input list, each refused with
// a 4xx and nothing written.

import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { anyApi } from "convex/server";
import Stripe from "stripe";
import { startServer } from "./lib/server.mjs";
import { startIssuer } from "./lib/oidc.mjs";
import { newUserId, newWebhookSecret, sendSigned, userCreated } from "./lib/clerk.mjs";
import { newClient, rejectsWith, safeJson, withLogs } from "./lib/helpers.mjs";

const api = anyApi;
const DAY_MS = 24 * 60 * 60_000;
// No request leaves this machine: the client is only used for its webhook helpers.
const stripe = new Stripe("sk_test_never_used_for_network_calls");

const newStripeSecret = () => `whsec_${randomBytes(24).toString("hex")}`;
const hex = (bytes) => randomBytes(bytes).toString("hex");

/** A `checkout.session.completed` event as Stripe sends it (the fields that matter, and some that do not). */
function checkoutCompleted({ eventId, userId, waitingListId, paymentIntentId, amount = 4999 }) {
  const metadata = {};
  if (eventId !== undefined) metadata.eventId = eventId;
  if (userId !== undefined) metadata.userId = userId;
  if (waitingListId !== undefined) metadata.waitingListId = waitingListId;
  return {
    id: `evt_${hex(12)}`,
    object: "event",
    api_version: "2025-02-24.acacia",
    created: Math.floor(Date.now() / 1000),
    livemode: false,
    pending_webhooks: 1,
    request: { id: null, idempotency_key: null },
    type: "checkout.session.completed",
    data: {
      object: {
        id: `cs_test_${hex(16)}`,
        object: "checkout.session",
        amount_subtotal: amount,
        amount_total: amount,
        currency: "usd",
        customer_details: { email: "buyer@example.org", name: "Buyer" },
        expires_at: Math.floor(Date.now() / 1000) + 1800,
        metadata,
        mode: "payment",
        payment_intent: paymentIntentId ?? `pi_${hex(12)}`,
        payment_status: "paid",
        status: "complete",
      },
    },
  };
}

/** A `charge.refunded` event for the charge of `paymentIntentId`. */
function chargeRefunded(paymentIntentId, { amount = 4999, refunded = true } = {}) {
  return {
    id: `evt_${hex(12)}`,
    object: "event",
    api_version: "2025-02-24.acacia",
    created: Math.floor(Date.now() / 1000),
    livemode: false,
    type: "charge.refunded",
    data: {
      object: {
        id: `ch_${hex(12)}`,
        object: "charge",
        amount,
        amount_refunded: refunded ? amount : Math.floor(amount / 2),
        payment_intent: paymentIntentId,
        refunded,
        status: "succeeded",
      },
    },
  };
}

/** `{body, header}`: the body as sent and its `Stripe-Signature`, made by the stripe package. */
function sign(payload, { secret, timestamp, scheme } = {}) {
  const body = typeof payload === "string" ? payload : JSON.stringify(payload);
  const header = stripe.webhooks.generateTestHeaderString({ payload: body, secret, timestamp, scheme });
  return { body, header };
}

async function post(server, body, headers = {}) {
  const res = await fetch(`${server.siteUrl}/stripe-webhook`, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body,
  });
  const text = await res.text();
  let json = null;
  try {
    json = JSON.parse(text);
  } catch {
    json = null;
  }
  return { status: res.status, text, json };
}

/** Signs with `secret` and delivers. */
async function deliver(server, secret, payload, opts = {}) {
  const { body, header } = sign(payload, { secret, ...opts });
  return post(server, body, { "stripe-signature": header });
}

function assertReceived(r, outcome, what) {
  assert.equal(r.status, 200, `${what}: expected 200, got ${r.status} ${r.text}`);
  assert.equal(r.json?.received, true, `${what}: ${r.text}`);
  assert.equal(r.json?.outcome, outcome, `${what}: ${r.text}`);
}

function assertRefused(r, { status, code }, what) {
  assert.ok(r.status >= 400 && r.status < 500, `${what}: expected 4xx, got ${r.status} ${r.text}`);
  assert.equal(r.status, status, `${what}: ${r.text}`);
  assert.equal(r.json?.code, code, `${what}: ${r.text}`);
  assert.ok(r.json.message.length > 0, `${what}: empty message`);
}

function eventArgs(userId, overrides = {}) {
  return {
    name: "Rust Conf",
    description: "A conference about Rust",
    location: "Berlin",
    eventDate: Date.now() + 30 * DAY_MS,
    price: 49.99,
    totalTickets: 3,
    userId,
    ...overrides,
  };
}

describe("tickethub with Stripe", { timeout: 600_000 }, () => {
  let issuer;
  let server;
  let clerkSecret;
  let stripeSecret;
  const as = async (userId) => newClient(server, { auth: await issuer.tokenFor(userId) });

  /** A user made the way production makes them: a signed Clerk `user.created`. */
  async function signUp(firstName) {
    const userId = newUserId();
    const r = await sendSigned(server.siteUrl, clerkSecret, userCreated({ id: userId, firstName }));
    assert.equal(r.status, 200, `user.created: ${r.text}`);
    const client = await as(userId);
    const row = await client.query(api.users.current, {});
    assert.equal(row?.userId, userId, "the Clerk webhook did not create the user");
    return { userId, client };
  }

  /** The buyer's waiting-list entry for `eventId`. */
  async function entryOf(buyer, eventId) {
    const entries = await buyer.client.query(api.events.getUserWaitingList, { userId: buyer.userId });
    return entries.find((e) => e.eventId === eventId) ?? null;
  }

  /** A buyer who joined `eventId` and holds an offer. */
  async function buyerWithOffer(name, eventId) {
    const buyer = await signUp(name);
    const joined = await buyer.client.mutation(api.events.joinWaitingList, { eventId, userId: buyer.userId });
    assert.equal(joined.status, "offered", safeJson(joined));
    buyer.entry = await entryOf(buyer, eventId);
    return buyer;
  }

  const tickets = (user) => user.client.query(api.tickets.getUserTickets, { userId: user.userId });
  const processed = (stripeEventId) => server.adminRun("payments:getStripeEvent", { stripeEventId });

  before(async () => {
    issuer = await startIssuer();
    clerkSecret = newWebhookSecret();
    stripeSecret = newStripeSecret();
    server = await startServer({
      which: "tickethub",
      env: {
        CLERK_WEBHOOK_SECRET: clerkSecret,
        CLERK_JWT_ISSUER_DOMAIN: issuer.issuer,
        STRIPE_WEBHOOK_SECRET: stripeSecret,
      },
    });
  });
  after(async () => {
    await server?.cleanup();
    await issuer?.stop();
  });

  test("the whole story: sign-up, event with image, offer, checkout issues the ticket once, refund", withLogs(async () => {
    const organizer = await signUp("Olga");
    const eventId = await organizer.client.mutation(api.events.create, eventArgs(organizer.userId));

    // The organizer uploads the event's image; its URL serves the same bytes to anyone.
    const image = randomBytes(256 * 1024);
    const uploadUrl = await organizer.client.mutation(api.storage.generateUploadUrl, {});
    const uploaded = await fetch(uploadUrl, { method: "POST", headers: { "content-type": "image/png" }, body: image });
    assert.equal(uploaded.status, 200, await uploaded.clone().text());
    const { storageId } = await uploaded.json();
    await organizer.client.mutation(api.storage.updateEventImage, { eventId, storageId });

    const buyer = await buyerWithOffer("Bea", eventId);
    const shown = await buyer.client.query(api.events.getById, { eventId });
    assert.equal(shown.imageStorageId, storageId);
    const imageUrl = await buyer.client.query(api.storage.getUrl, { storageId });
    const served = await fetch(imageUrl);
    assert.equal(served.status, 200);
    assert.equal(served.headers.get("content-type"), "image/png");
    assert.ok(Buffer.from(await served.arrayBuffer()).equals(image), "the image URL served other bytes");

    const paymentIntentId = `pi_${hex(12)}`;
    const event = checkoutCompleted({
      eventId,
      userId: buyer.userId,
      waitingListId: buyer.entry._id,
      paymentIntentId,
      amount: 4999,
    });
    const signed = sign(event, { secret: stripeSecret });
    // What we send is what Stripe's own library accepts.
    assert.equal(stripe.webhooks.constructEvent(signed.body, signed.header, stripeSecret).id, event.id);

    // Stripe may deliver one event more than once at the same time: exactly one applies it.
    const concurrent = await Promise.all(
      Array.from({ length: 5 }, () => post(server, signed.body, { "stripe-signature": signed.header })),
    );
    for (const r of concurrent) assert.equal(r.status, 200, r.text);
    assert.deepEqual(concurrent.map((r) => r.json.outcome).sort(), ["applied", "duplicate", "duplicate", "duplicate", "duplicate"]);
    const [ticket] = await tickets(buyer);
    assert.ok(ticket, "no ticket was issued");
    assert.equal(ticket.eventId, eventId);
    assert.equal(ticket.status, "valid");
    assert.equal(ticket.paymentIntentId, paymentIntentId);
    assert.equal(ticket.amount, 4999);
    assert.equal((await entryOf(buyer, eventId)).status, "purchased");
    assert.equal((await processed(event.id))?.outcome, "applied");

    // Stripe retries: the same delivery, and the same event signed again later.
    assertReceived(await post(server, signed.body, { "stripe-signature": signed.header }), "duplicate", "same delivery");
    assertReceived(await deliver(server, stripeSecret, event), "duplicate", "redelivery");
    // Another event about the same payment issues no second ticket either.
    const again = { ...event, id: `evt_${hex(12)}` };
    assertReceived(await deliver(server, stripeSecret, again), "duplicate", "second event, same payment");
    const afterRetries = await tickets(buyer);
    assert.equal(afterRetries.length, 1, safeJson(afterRetries));
    assert.deepEqual(afterRetries[0], ticket, "a redelivery changed the ticket");
    const avail = await buyer.client.query(api.events.checkAvailability, { eventId });
    assert.equal(avail.purchasedCount, 1);

    // A partial refund leaves the ticket valid; the full refund marks it refunded.
    assertReceived(await deliver(server, stripeSecret, chargeRefunded(paymentIntentId, { refunded: false })), "ignored", "partial refund");
    assert.equal((await tickets(buyer))[0].status, "valid");
    const refund = chargeRefunded(paymentIntentId);
    assertReceived(await deliver(server, stripeSecret, refund), "applied", "refund");
    assert.equal((await tickets(buyer))[0].status, "refunded");
    assertReceived(await deliver(server, stripeSecret, refund), "duplicate", "refund redelivery");
    assert.equal((await tickets(buyer))[0].status, "refunded");
    const [seller] = await organizer.client.query(api.events.getSellerEvents, { userId: organizer.userId });
    assert.equal(seller.metrics.refundedTickets, 1);
    assert.equal(seller.metrics.soldTickets, 0);

    // Other event types are acknowledged and change nothing.
    const other = { ...chargeRefunded(paymentIntentId), type: "payment_intent.succeeded" };
    assertReceived(await deliver(server, stripeSecret, other), "ignored", "payment_intent.succeeded");
    assert.equal(await processed(other.id), null);
  }));

  test("a refused purchase answers 2xx and is recorded for the organizer only", withLogs(async () => {
    const organizer = await signUp("Otto");
    const eventId = await organizer.client.mutation(api.events.create, eventArgs(organizer.userId));
    const late = await buyerWithOffer("Lee", eventId);
    // The offer lapses (released) before Stripe's webhook arrives.
    await late.client.mutation(api.waitingList.releaseTicket, { eventId, waitingListId: late.entry._id });

    const paymentIntentId = `pi_${hex(12)}`;
    const event = checkoutCompleted({ eventId, userId: late.userId, waitingListId: late.entry._id, paymentIntentId, amount: 4999 });
    const concurrent = await Promise.all(Array.from({ length: 4 }, () => deliver(server, stripeSecret, event)));
    for (const r of concurrent) assert.equal(r.status, 200, r.text);
    assert.deepEqual(concurrent.map((r) => r.json.outcome).sort(), ["duplicate", "duplicate", "duplicate", "refused"]);
    assert.deepEqual(await tickets(late), []);
    assert.equal((await processed(event.id))?.outcome, "refused");

    const refusals = await organizer.client.query(api.payments.getPurchaseRefusals, { eventId });
    assert.equal(refusals.length, 1, safeJson(refusals));
    const [refusal] = refusals;
    assert.equal(refusal.stripeEventId, event.id);
    assert.equal(refusal.paymentIntentId, paymentIntentId);
    assert.equal(refusal.amount, 4999);
    assert.equal(refusal.userId, late.userId);
    assert.equal(refusal.waitingListId, late.entry._id);
    assert.match(refusal.reason, /expired/);
    assert.equal(refusal.refundedAt, undefined);

    // Only the organizer sees it.
    await rejectsWith(late.client.query(api.payments.getPurchaseRefusals, { eventId }), `Not authorized to act for user ${organizer.userId}`);

    // A redelivery records nothing twice.
    assertReceived(await deliver(server, stripeSecret, event), "duplicate", "refused redelivery");
    assert.equal((await organizer.client.query(api.payments.getPurchaseRefusals, { eventId })).length, 1);

    // The organizer refunds it in Stripe; the refund settles the refusal.
    assertReceived(await deliver(server, stripeSecret, chargeRefunded(paymentIntentId)), "applied", "refund of a refused purchase");
    const [settled] = await organizer.client.query(api.payments.getPurchaseRefusals, { eventId });
    assert.equal(typeof settled.refundedAt, "number");

    // A cancelled event: the offer is gone with it.
    const cancelled = await organizer.client.mutation(api.events.create, eventArgs(organizer.userId, { name: "Cancelled" }));
    const unlucky = await buyerWithOffer("Uma", cancelled);
    await organizer.client.mutation(api.events.cancelEvent, { eventId: cancelled });
    const onCancelled = checkoutCompleted({ eventId: cancelled, userId: unlucky.userId, waitingListId: unlucky.entry._id });
    assertReceived(await deliver(server, stripeSecret, onCancelled), "refused", "checkout on a cancelled event");
    const [cancelledRefusal] = await organizer.client.query(api.payments.getPurchaseRefusals, { eventId: cancelled });
    assert.equal(cancelledRefusal?.stripeEventId, onCancelled.id, safeJson(cancelledRefusal));
    assert.deepEqual(await tickets(unlucky), []);

    // A session without our metadata is recorded too (the payment still has to be refunded).
    const bare = checkoutCompleted({});
    assertReceived(await deliver(server, stripeSecret, bare), "refused", "checkout without metadata");
    assert.equal((await processed(bare.id))?.outcome, "refused");
  }));

  test("hostile deliveries are refused with 4xx and write nothing", withLogs(async () => {
    const organizer = await signUp("Ines");
    const eventId = await organizer.client.mutation(api.events.create, eventArgs(organizer.userId));
    const buyer = await buyerWithOffer("Hal", eventId);
    // A live purchase: correctly signed, it would issue a ticket (checked at the end).
    const event = checkoutCompleted({ eventId, userId: buyer.userId, waitingListId: buyer.entry._id });
    const body = JSON.stringify(event);
    const now = Math.floor(Date.now() / 1000);
    const good = sign(body, { secret: stripeSecret });
    const goodV1 = good.header.split(",v1=")[1];
    const refusalsBefore = await organizer.client.query(api.payments.getPurchaseRefusals, { eventId });

    const oversized = JSON.stringify({ ...event, padding: "x".repeat(1024 * 1024 + 1) });
    const attacks = [
      ["missing header", () => post(server, body), { status: 400, code: "MissingHeader" }],
      ["bad signature", () => post(server, body, { "stripe-signature": `t=${now},v1=${hex(32)}` }), { status: 400, code: "InvalidSignature" }],
      ["old timestamp", () => deliver(server, stripeSecret, body, { timestamp: now - 600 }), { status: 400, code: "TimestampTooOld" }],
      ["future timestamp", () => deliver(server, stripeSecret, body, { timestamp: now + 600 }), { status: 400, code: "TimestampTooNew" }],
      [
        "body changed after signing",
        () => post(server, body.replace('"amount_total":4999', '"amount_total":1'), { "stripe-signature": good.header }),
        { status: 400, code: "InvalidSignature" },
      ],
      ["another secret", () => deliver(server, newStripeSecret(), body), { status: 400, code: "InvalidSignature" }],
      ["only v0", () => deliver(server, stripeSecret, body, { scheme: "v0" }), { status: 400, code: "NoV1Signature" }],
      ["v1 moved to v0", () => post(server, body, { "stripe-signature": `t=${now},v0=${goodV1}` }), { status: 400, code: "NoV1Signature" }],
      ["malformed header", () => post(server, body, { "stripe-signature": `v1=${goodV1}` }), { status: 400, code: "MalformedHeader" }],
      ["oversized body", () => deliver(server, stripeSecret, oversized), { status: 413, code: "BodyTooLarge" }],
      ["non-JSON", () => deliver(server, stripeSecret, "this is not JSON"), { status: 400, code: "PayloadNotJson" }],
      ["JSON but not an event", () => deliver(server, stripeSecret, '{"hello":"world"}'), { status: 400, code: "InvalidEvent" }],
    ];
    assert.ok(body.includes('"amount_total":4999'), "the tampering below must change the body");
    for (const [what, send, expected] of attacks) {
      assertRefused(await send(), expected, what);
    }

    assert.equal(await processed(event.id), null, "a refused delivery recorded the event");
    assert.deepEqual(await tickets(buyer), [], "a refused delivery issued a ticket");
    assert.equal((await entryOf(buyer, eventId)).status, "offered");
    assert.deepEqual(await organizer.client.query(api.payments.getPurchaseRefusals, { eventId }), refusalsBefore);

    // The same event, correctly signed, does issue the ticket: the attacks carried a live purchase.
    assertReceived(await post(server, good.body, { "stripe-signature": good.header }), "applied", "the genuine delivery");
    assert.equal((await tickets(buyer)).length, 1);
  }));

  test("without a usable secret: a start-up warning and 500, nothing written", withLogs(async () => {
    for (const secret of ["", "sk_test_an_api_key_not_a_webhook_secret"]) {
      const bare = await startServer({ which: "tickethub", env: { STRIPE_WEBHOOK_SECRET: secret } });
      try {
        const warning = secret === "" ? /STRIPE_WEBHOOK_SECRET is not set/ : /STRIPE_WEBHOOK_SECRET is not usable/;
        assert.match(bare.output(), warning);
        const event = checkoutCompleted({});
        const r = await deliver(bare, stripeSecret, event);
        assert.equal(r.status, 500, r.text);
        assert.equal(r.json?.code, "WebhookSecretNotConfigured", r.text);
        assert.equal(await bare.adminRun("payments:getStripeEvent", { stripeEventId: event.id }), null);
      } finally {
        await bare.cleanup();
      }
    }
  }));
});
