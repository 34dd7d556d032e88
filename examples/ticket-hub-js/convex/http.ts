import { httpRouter } from "convex/server";
import { Webhook } from "svix";
import { internal } from "./_generated/api";
import { httpAction } from "./_generated/server";

const http = httpRouter();

// Clerk's user events, signed by Svix: verified here, then mirrored into `users`.
http.route({
  path: "/clerk-users-webhook",
  method: "POST",
  handler: httpAction(async (ctx, request) => {
    const secret = process.env.CLERK_WEBHOOK_SECRET;
    if (!secret) return new Response("CLERK_WEBHOOK_SECRET is not set", { status: 500 });
    const payload = await request.text();
    let event: { type: string; data: any };
    try {
      event = new Webhook(secret).verify(payload, {
        "svix-id": request.headers.get("svix-id") ?? "",
        "svix-timestamp": request.headers.get("svix-timestamp") ?? "",
        "svix-signature": request.headers.get("svix-signature") ?? "",
      }) as typeof event;
    } catch (e) {
      return new Response(`Webhook verification failed: ${(e as Error).message}`, { status: 400 });
    }
    switch (event.type) {
      case "user.created":
      case "user.updated":
        await ctx.runMutation(internal.users.upsertUserFromClerk, { data: event.data });
        break;
      case "user.deleted":
        await ctx.runMutation(internal.users.deleteUser, { userId: event.data.id });
        break;
      default:
        console.log("Ignored Clerk webhook event", event.type);
    }
    return new Response(null, { status: 200 });
  }),
});

export default http;
