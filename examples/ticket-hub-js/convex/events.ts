import { ConvexError, v } from "convex/values";
import { internal } from "./_generated/api";
import { Id } from "./_generated/dataModel";
import { mutation, MutationCtx, query, QueryCtx } from "./_generated/server";
import { JOIN_WINDOW_MS, JOINS_PER_WINDOW, OFFER_MS } from "./constants";
import { eventFields } from "./schema";

export const get = query({
  args: {},
  handler: async (ctx) => (await ctx.db.query("events").collect()).filter((e) => !e.is_cancelled),
});

export const getById = query({
  args: { eventId: v.id("events") },
  handler: async (ctx, { eventId }) => await ctx.db.get(eventId),
});

export const create = mutation({
  args: eventFields,
  handler: async (ctx, args) => await ctx.db.insert("events", args),
});

/** Tickets sold (valid or used) and offers still open, for one event. */
export async function counts(ctx: QueryCtx, eventId: Id<"events">) {
  const now = Date.now();
  const tickets = await ctx.db
    .query("tickets")
    .withIndex("by_event", (q) => q.eq("eventId", eventId))
    .collect();
  const purchasedCount = tickets.filter((t) => t.status === "valid" || t.status === "used").length;
  const offers = await ctx.db
    .query("waitingList")
    .withIndex("by_event_status", (q) => q.eq("eventId", eventId).eq("status", "offered"))
    .collect();
  const activeOffers = offers.filter((o) => (o.offerExpiresAt ?? 0) > now).length;
  return { purchasedCount, activeOffers };
}

export const checkAvailability = query({
  args: { eventId: v.id("events") },
  handler: async (ctx, { eventId }) => {
    const event = await ctx.db.get(eventId);
    if (!event) throw new ConvexError("Event not found");
    const { purchasedCount, activeOffers } = await counts(ctx, eventId);
    const availableSpots = event.totalTickets - (purchasedCount + activeOffers);
    return { available: availableSpots > 0, availableSpots, totalTickets: event.totalTickets, purchasedCount, activeOffers };
  },
});

/** Count this join against the user's window, or refuse it with a ConvexError. */
async function rateLimitJoin(ctx: MutationCtx, userId: string) {
  const windowStart = Math.floor(Date.now() / JOIN_WINDOW_MS) * JOIN_WINDOW_MS;
  const window = await ctx.db
    .query("joinWindows")
    .withIndex("by_user_window", (q) => q.eq("userId", userId).eq("windowStart", windowStart))
    .unique();
  if (window && window.count >= JOINS_PER_WINDOW) {
    const minutes = Math.ceil((windowStart + JOIN_WINDOW_MS - Date.now()) / 60_000);
    throw new ConvexError(`You've joined the waiting list too many times. Please wait ${minutes} minutes before trying again.`);
  }
  if (window) await ctx.db.patch(window._id, { count: window.count + 1 });
  else await ctx.db.insert("joinWindows", { userId, windowStart, count: 1 });
}

export const joinWaitingList = mutation({
  args: { eventId: v.id("events"), userId: v.string() },
  handler: async (ctx, { eventId, userId }) => {
    await rateLimitJoin(ctx, userId);
    const existing = await ctx.db
      .query("waitingList")
      .withIndex("by_user_event", (q) => q.eq("userId", userId).eq("eventId", eventId))
      .filter((q) => q.neq(q.field("status"), "expired"))
      .first();
    if (existing) throw new Error("Already in waiting list for this event");
    const event = await ctx.db.get(eventId);
    if (!event) throw new Error("Event not found");
    const { purchasedCount, activeOffers } = await counts(ctx, eventId);
    if (purchasedCount + activeOffers < event.totalTickets) {
      const offerExpiresAt = Date.now() + OFFER_MS;
      const waitingListId = await ctx.db.insert("waitingList", { eventId, userId, status: "offered", offerExpiresAt });
      await ctx.scheduler.runAt(offerExpiresAt, internal.waitingList.expireOffer, { waitingListId, eventId });
      return { success: true, status: "offered", message: "Ticket offered - you have 30 minutes to purchase" };
    }
    await ctx.db.insert("waitingList", { eventId, userId, status: "waiting" });
    return { success: true, status: "waiting", message: "Added to waiting list - you'll be notified when a ticket becomes available" };
  },
});

export const purchaseTicket = mutation({
  args: {
    eventId: v.id("events"),
    userId: v.string(),
    waitingListId: v.id("waitingList"),
    paymentInfo: v.object({ paymentIntentId: v.string(), amount: v.number() }),
  },
  handler: async (ctx, { eventId, userId, waitingListId, paymentInfo }) => {
    const entry = await ctx.db.get(waitingListId);
    if (!entry) throw new Error("Waiting list entry not found");
    if (entry.status !== "offered") throw new Error("Invalid waiting list status - ticket offer may have expired");
    if (entry.userId !== userId) throw new Error("Waiting list entry does not belong to this user");
    const event = await ctx.db.get(eventId);
    if (!event) throw new Error("Event not found");
    if (event.is_cancelled) throw new Error("Event is no longer active");
    const ticketId = await ctx.db.insert("tickets", {
      eventId,
      userId,
      purchasedAt: Date.now(),
      status: "valid",
      paymentIntentId: paymentInfo.paymentIntentId,
      amount: paymentInfo.amount,
    });
    await ctx.db.patch(waitingListId, { status: "purchased" });
    await ctx.runMutation(internal.waitingList.processQueue, { eventId });
    return ticketId;
  },
});

/** Each row with its event joined in, as the front end lists a user's tickets and offers. */
async function withEvents<T extends { eventId: Id<"events"> }>(ctx: QueryCtx, rows: T[]) {
  return await Promise.all(rows.map(async (row) => ({ ...row, event: await ctx.db.get(row.eventId) })));
}

export const getUserTickets = query({
  args: { userId: v.string() },
  handler: async (ctx, { userId }) => {
    const tickets = await ctx.db
      .query("tickets")
      .withIndex("by_user", (q) => q.eq("userId", userId))
      .collect();
    return await withEvents(ctx, tickets);
  },
});

export const search = query({
  args: { searchTerm: v.string() },
  handler: async (ctx, { searchTerm }) => {
    const term = searchTerm.toLowerCase();
    return (await ctx.db.query("events").collect()).filter(
      (e) => !e.is_cancelled && [e.name, e.description, e.location].some((text) => text.toLowerCase().includes(term)),
    );
  },
});

export const getUserWaitingList = query({
  args: { userId: v.string() },
  handler: async (ctx, { userId }) => {
    const entries = await ctx.db
      .query("waitingList")
      .withIndex("by_user_event", (q) => q.eq("userId", userId))
      .collect();
    return await withEvents(ctx, entries);
  },
});
