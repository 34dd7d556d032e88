import { defineSchema, defineTable } from "convex/server";
import { v } from "convex/values";

/** What an organizer gives when creating an event (`events:create` takes exactly these). */
export const eventFields = {
  name: v.string(),
  description: v.string(),
  location: v.string(),
  eventDate: v.number(),
  price: v.number(),
  totalTickets: v.number(),
  userId: v.string(),
};

export default defineSchema({
  users: defineTable({
    name: v.string(),
    email: v.string(),
    userId: v.string(),
    phone: v.optional(v.string()),
  })
    .index("by_user_id", ["userId"])
    .index("by_email", ["email"]),
  events: defineTable({
    ...eventFields,
    imageStorageId: v.optional(v.id("_storage")),
    is_cancelled: v.optional(v.boolean()),
  }),
  tickets: defineTable({
    eventId: v.id("events"),
    userId: v.string(),
    purchasedAt: v.number(),
    status: v.union(v.literal("valid"), v.literal("used"), v.literal("refunded"), v.literal("cancelled")),
    paymentIntentId: v.optional(v.string()),
    amount: v.optional(v.number()),
  })
    .index("by_event", ["eventId"])
    .index("by_user", ["userId"])
    .index("by_user_event", ["userId", "eventId"]),
  waitingList: defineTable({
    eventId: v.id("events"),
    userId: v.string(),
    status: v.union(v.literal("waiting"), v.literal("offered"), v.literal("purchased"), v.literal("expired")),
    offerExpiresAt: v.optional(v.number()),
  })
    .index("by_event_status", ["eventId", "status"])
    .index("by_user_event", ["userId", "eventId"]),
  // Fixed-window rate limiting for joining waiting lists: one row per user and window.
  joinWindows: defineTable({
    userId: v.string(),
    windowStart: v.number(),
    count: v.number(),
  }).index("by_user_window", ["userId", "windowStart"]),
});
