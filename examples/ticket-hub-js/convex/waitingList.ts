import { v } from "convex/values";
import { internal } from "./_generated/api";
import { internalMutation } from "./_generated/server";
import { counts } from "./events";
import { OFFER_MS } from "./constants";

/** Offer free spots to the people waiting longest. */
export const processQueue = internalMutation({
  args: { eventId: v.id("events") },
  handler: async (ctx, { eventId }) => {
    const event = await ctx.db.get(eventId);
    if (!event) return 0;
    const { purchasedCount, activeOffers } = await counts(ctx, eventId);
    const free = event.totalTickets - (purchasedCount + activeOffers);
    if (free <= 0) return 0;
    const waiting = await ctx.db
      .query("waitingList")
      .withIndex("by_event_status", (q) => q.eq("eventId", eventId).eq("status", "waiting"))
      .order("asc")
      .take(free);
    for (const entry of waiting) {
      const offerExpiresAt = Date.now() + OFFER_MS;
      await ctx.db.patch(entry._id, { status: "offered", offerExpiresAt });
      await ctx.scheduler.runAt(offerExpiresAt, internal.waitingList.expireOffer, { waitingListId: entry._id, eventId });
    }
    return waiting.length;
  },
});

export const expireOffer = internalMutation({
  args: { waitingListId: v.id("waitingList"), eventId: v.id("events") },
  handler: async (ctx, { waitingListId, eventId }) => {
    const entry = await ctx.db.get(waitingListId);
    if (entry?.status !== "offered") return;
    await ctx.db.patch(waitingListId, { status: "expired" });
    await ctx.runMutation(internal.waitingList.processQueue, { eventId });
  },
});

/** The cron's sweep: offers whose time ran out (a missed expireOffer, say). */
export const cleanupExpiredOffers = internalMutation({
  args: {},
  handler: async (ctx) => {
    const now = Date.now();
    const offered = await ctx.db
      .query("waitingList")
      .filter((q) => q.and(q.eq(q.field("status"), "offered"), q.lt(q.field("offerExpiresAt"), now)))
      .collect();
    const events = new Set<string>();
    for (const entry of offered) {
      await ctx.db.patch(entry._id, { status: "expired" });
      events.add(entry.eventId);
    }
    for (const eventId of events) {
      await ctx.runMutation(internal.waitingList.processQueue, { eventId: eventId as any });
    }
    return offered.length;
  },
});
