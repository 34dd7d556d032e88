import { v } from "convex/values";
import { internalMutation, query, QueryCtx } from "./_generated/server";

/** The user row of a Clerk user id, or null. */
async function byClerkId(ctx: QueryCtx, userId: string) {
  return await ctx.db
    .query("users")
    .withIndex("by_user_id", (q) => q.eq("userId", userId))
    .unique();
}

/** Clerk's user object, as much of it as this app reads. */
interface ClerkUser {
  id: string;
  first_name?: string | null;
  last_name?: string | null;
  username?: string | null;
  primary_email_address_id?: string | null;
  email_addresses?: { id: string; email_address: string }[];
}

export const upsertUserFromClerk = internalMutation({
  args: { data: v.any() },
  handler: async (ctx, { data }) => {
    const user = data as ClerkUser;
    const email =
      user.email_addresses?.find((e) => e.id === user.primary_email_address_id)?.email_address ??
      user.email_addresses?.[0]?.email_address ??
      "";
    const name = [user.first_name, user.last_name].filter(Boolean).join(" ").trim() || user.username || email;
    const existing = await byClerkId(ctx, user.id);
    if (existing) {
      await ctx.db.patch(existing._id, { name, email });
      return existing._id;
    }
    return await ctx.db.insert("users", { userId: user.id, name, email });
  },
});

export const deleteUser = internalMutation({
  args: { userId: v.string() },
  handler: async (ctx, { userId }) => {
    const existing = await byClerkId(ctx, userId);
    if (existing) await ctx.db.delete(existing._id);
  },
});

export const getUserById = query({
  args: { userId: v.string() },
  handler: async (ctx, { userId }) => await byClerkId(ctx, userId),
});
