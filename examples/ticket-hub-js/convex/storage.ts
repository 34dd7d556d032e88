import { v } from "convex/values";
import { internal } from "./_generated/api";
import { action, internalMutation, mutation, query } from "./_generated/server";

export const generateUploadUrl = mutation({
  args: {},
  handler: async (ctx) => await ctx.storage.generateUploadUrl(),
});

export const setEventImage = internalMutation({
  args: { eventId: v.id("events"), storageId: v.id("_storage") },
  handler: async (ctx, { eventId, storageId }) => {
    const event = await ctx.db.get(eventId);
    if (!event) throw new Error("Event not found");
    if (event.imageStorageId) await ctx.storage.delete(event.imageStorageId);
    await ctx.db.patch(eventId, { imageStorageId: storageId });
  },
});

export const getEventImageUrl = query({
  args: { eventId: v.id("events") },
  handler: async (ctx, { eventId }) => {
    const event = await ctx.db.get(eventId);
    return event?.imageStorageId ? await ctx.storage.getUrl(event.imageStorageId) : null;
  },
});

/** Fetch an image from the organizer's site, keep it in file storage, and show it on the event. */
export const importEventImage = action({
  args: { eventId: v.id("events"), url: v.string() },
  handler: async (ctx, { eventId, url }) => {
    const response = await fetch(url);
    if (!response.ok) throw new Error(`Fetching the image failed: ${response.status}`);
    const image = await response.blob();
    const storageId = await ctx.storage.store(image);
    await ctx.runMutation(internal.storage.setEventImage, { eventId, storageId });
    return { storageId, size: image.size, type: image.type };
  },
});
