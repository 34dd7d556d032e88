// Convex file storage end to end: the tickethub binary, uploads with `fetch` and real bytes,
// the app's storage module through the official ConvexHttpClient with Clerk-style JWTs.
// Covers upload → getUrl → the same bytes and headers, Range, Digest, one-time and expiring
// upload URLs, hostile input (each refused with 4xx and nothing written), a 500 MB upload with
// the server's resident memory sampled, and kill -9 during uploads.

import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import http from "node:http";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { anyApi } from "convex/server";
import { startServer } from "./lib/server.mjs";
import { startIssuer } from "./lib/oidc.mjs";
import { newUserId, newWebhookSecret } from "./lib/clerk.mjs";
import { newClient, rejectsWith, waitFor } from "./lib/helpers.mjs";

const api = anyApi;
const MINUTE_MS = 60_000;
const DAY_MS = 24 * 60 * MINUTE_MS;
const MiB = 1024 * 1024;
const UUID_PATH = /^\/api\/storage\/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

const sha256 = (bytes) => createHash("sha256").update(bytes).digest();
const hex = (bytes) => sha256(bytes).toString("hex");

async function startApp({ extraArgs = [] } = {}) {
  const issuer = await startIssuer();
  const server = await startServer({
    which: "tickethub",
    testClock: true,
    extraArgs,
    env: { CLERK_WEBHOOK_SECRET: newWebhookSecret(), CLERK_JWT_ISSUER_DOMAIN: issuer.issuer },
  });
  const now = () => Math.floor(Date.now() / 1000);
  const as = async (userId) =>
    newClient(server, { auth: await issuer.tokenFor(userId, { iat: now() - 5, nbf: now() - 5, exp: now() + 14 * 86400 }) });
  return { issuer, server, as };
}

function eventArgs(userId) {
  return {
    name: "Rust Conf",
    description: "A conference about Rust",
    location: "Berlin",
    eventDate: Date.now() + 30 * DAY_MS,
    price: 49.99,
    totalTickets: 10,
    userId,
  };
}

/** POST `body` to an upload URL; returns {status, json, text}. */
async function upload(url, body, headers = {}) {
  const res = await fetch(url, { method: "POST", body, headers, duplex: "half" });
  const text = await res.text();
  let json = null;
  try {
    json = JSON.parse(text);
  } catch {
    json = null;
  }
  return { status: res.status, json, text, headers: res.headers };
}

function blobsDir(server) {
  return path.join(server.dataDir, "storage", "blobs");
}

/** Every blob file on disk, as hex digests. */
function blobFiles(server) {
  const root = blobsDir(server);
  if (!existsSync(root)) return [];
  const out = [];
  for (const shard of readdirSync(root)) {
    if (shard === "tmp") continue;
    for (const name of readdirSync(path.join(root, shard))) out.push(name);
  }
  return out.sort();
}

function tmpFiles(server) {
  const dir = path.join(blobsDir(server), "tmp");
  return existsSync(dir) ? readdirSync(dir) : [];
}

/** The `_storage` rows (admin-only built-in query). */
async function storageRows(server) {
  return server.adminRun("_system/storage:list", {});
}

/** What is on disk and in `_storage`, to show an operation wrote nothing. */
async function footprint(server) {
  return { blobs: blobFiles(server), rows: (await storageRows(server)).length, tmp: tmpFiles(server) };
}

/** A raw GET with the path exactly as given (fetch would normalize `..`). */
function rawGet(server, rawPath) {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: "127.0.0.1", port: server.port, path: rawPath, method: "GET" }, (res) => {
      let text = "";
      res.setEncoding("utf8");
      res.on("data", (d) => (text += d));
      res.on("end", () => {
        let json = null;
        try {
          json = JSON.parse(text);
        } catch {
          json = null;
        }
        resolve({ status: res.statusCode, json, text });
      });
    });
    req.on("error", reject);
    req.end();
  });
}

/** Resident set size of a process in KiB, from /proc/<pid>/status. */
function rssKiB(pid) {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const match = status.match(/^VmRSS:\s+(\d+)\s+kB$/m);
  return match ? Number(match[1]) : 0;
}

describe("file storage", { timeout: 600_000 }, () => {
  let app;
  let organizer, other, O, X, eventId;

  before(async () => {
    app = await startApp({ extraArgs: ["--max-upload-bytes", String(8 * MiB)] });
    O = newUserId();
    X = newUserId();
    organizer = await app.as(O);
    other = await app.as(X);
    eventId = await organizer.mutation(api.events.create, eventArgs(O));
  });

  after(async () => {
    await app?.server.cleanup();
    await app?.issuer.close?.();
  });

  test("upload → getUrl serves the same bytes with Convex's headers; events keep working with an image", async () => {
    const { server } = app;
    const url = await organizer.mutation(api.storage.generateUploadUrl, {});
    assert.ok(url.startsWith(`${server.url}/api/storage/upload?token=`), url);
    const bytes = randomBytes(300_000);
    const r = await upload(url, bytes, { "Content-Type": "image/png" });
    assert.equal(r.status, 200, r.text);
    const { storageId } = r.json;
    assert.equal(typeof storageId, "string");

    const fileUrl = await organizer.query(api.storage.getUrl, { storageId });
    assert.ok(fileUrl.startsWith(server.url), fileUrl);
    assert.match(new URL(fileUrl).pathname, UUID_PATH);
    const res = await fetch(fileUrl); // no auth
    const body = Buffer.from(await res.arrayBuffer());
    assert.equal(res.status, 200);
    assert.ok(body.equals(bytes), "served bytes differ from the upload");
    assert.equal(res.headers.get("content-type"), "image/png");
    assert.equal(res.headers.get("content-length"), String(bytes.length));
    assert.equal(res.headers.get("etag"), `"${hex(bytes)}"`);
    assert.match(res.headers.get("cache-control"), /immutable/);
    assert.equal(res.headers.get("accept-ranges"), "bytes");
    assert.equal(res.headers.get("digest"), `sha-256=${sha256(bytes).toString("base64")}`);

    // The `_storage` row has Convex's shape: sha256 in base64, size, contentType.
    const row = (await storageRows(server)).find((d) => d._id === storageId);
    assert.deepEqual(
      { sha256: row.sha256, size: row.size, contentType: row.contentType },
      { sha256: sha256(bytes).toString("base64"), size: bytes.length, contentType: "image/png" },
    );
    assert.equal(typeof row._creationTime, "number");

    // Only the organizer may set the event's image.
    await rejectsWith(other.mutation(api.storage.updateEventImage, { eventId, storageId }), "Not authorized");
    await organizer.mutation(api.storage.updateEventImage, { eventId, storageId });
    const event = await organizer.query(api.events.getById, { eventId });
    assert.equal(event.imageStorageId, storageId);
    const listed = (await organizer.query(api.events.get, {})).find((e) => e._id === eventId);
    assert.equal(listed.imageStorageId, storageId);

    // Identical content is stored once.
    const again = await upload(await organizer.mutation(api.storage.generateUploadUrl, {}), bytes);
    assert.equal(again.status, 200, again.text);
    assert.notEqual(again.json.storageId, storageId);
    assert.equal(blobFiles(server).filter((b) => b === hex(bytes)).length, 1);

    // A file an event shows may be deleted only by its organizer; the blob stays while the
    // second row still holds the same content, and goes with the last one.
    await rejectsWith(other.mutation(api.storage.deleteImage, { storageId }), "Not authorized");
    await organizer.mutation(api.storage.updateEventImage, { eventId, storageId: null });
    assert.equal((await organizer.query(api.events.getById, { eventId })).imageStorageId, undefined);
    await organizer.mutation(api.storage.deleteImage, { storageId });
    assert.equal(await organizer.query(api.storage.getUrl, { storageId }), null);
    assert.equal((await fetch(fileUrl)).status, 404);
    const secondUrl = await organizer.query(api.storage.getUrl, { storageId: again.json.storageId });
    const second = await fetch(secondUrl);
    assert.equal(second.status, 200, "the other row still serves the same content");
    assert.ok(Buffer.from(await second.arrayBuffer()).equals(bytes));
    await organizer.mutation(api.storage.deleteImage, { storageId: again.json.storageId });
    const gone = await fetch(secondUrl);
    assert.equal(gone.status, 404);
    assert.equal((await gone.json()).code, "FileNotFound");
    await waitFor(() => !blobFiles(server).includes(hex(bytes)), { what: "the deleted file's blob to be removed" });
  });

  test("a Range request gets 206 with the slice; bad ranges get 416", async () => {
    const bytes = randomBytes(10_000);
    const r = await upload(await organizer.mutation(api.storage.generateUploadUrl, {}), bytes, {
      "Content-Type": "application/octet-stream",
    });
    const fileUrl = await organizer.query(api.storage.getUrl, { storageId: r.json.storageId });

    let res = await fetch(fileUrl, { headers: { Range: "bytes=100-199" } });
    assert.equal(res.status, 206);
    assert.equal(res.headers.get("content-range"), `bytes 100-199/${bytes.length}`);
    assert.equal(res.headers.get("content-length"), "100");
    assert.ok(Buffer.from(await res.arrayBuffer()).equals(bytes.subarray(100, 200)));

    res = await fetch(fileUrl, { headers: { Range: "bytes=-16" } });
    assert.equal(res.status, 206);
    assert.ok(Buffer.from(await res.arrayBuffer()).equals(bytes.subarray(bytes.length - 16)));

    res = await fetch(fileUrl, { headers: { Range: "bytes=9990-" } });
    assert.equal(res.status, 206);
    assert.ok(Buffer.from(await res.arrayBuffer()).equals(bytes.subarray(9990)));

    for (const range of [`bytes=${bytes.length}-`, "bytes=0-1,5-6"]) {
      res = await fetch(fileUrl, { headers: { Range: range } });
      assert.equal(res.status, 416, range);
      assert.equal(res.headers.get("content-range"), `bytes */${bytes.length}`);
      assert.equal((await res.json()).code, "RangeNotSatisfiable");
    }
  });

  test("the Digest header is checked: a match is stored, a mismatch is refused and nothing kept", async () => {
    const { server } = app;
    const bytes = randomBytes(50_000);
    const good = await upload(await organizer.mutation(api.storage.generateUploadUrl, {}), bytes, {
      Digest: `sha-256=${sha256(bytes).toString("base64")}`,
    });
    assert.equal(good.status, 200, good.text);

    const before = await footprint(server);
    const other = randomBytes(50_000);
    const bad = await upload(await organizer.mutation(api.storage.generateUploadUrl, {}), other, {
      Digest: `sha-256=${sha256(bytes).toString("base64")}`,
    });
    assert.equal(bad.status, 400, bad.text);
    assert.equal(bad.json.code, "Sha256Mismatch");
    const malformed = await upload(await organizer.mutation(api.storage.generateUploadUrl, {}), other, {
      Digest: "sha-256=bm9wZQ==",
    });
    assert.equal(malformed.status, 400, malformed.text);
    assert.equal(malformed.json.code, "InvalidDigestHeader");
    assert.deepEqual(await footprint(server), before);
  });

  test("upload URLs work once and expire after an hour", async () => {
    const { server } = app;
    const url = await organizer.mutation(api.storage.generateUploadUrl, {});
    assert.equal((await upload(url, randomBytes(1000))).status, 200);
    const before = await footprint(server);
    const replay = await upload(url, randomBytes(1000));
    assert.equal(replay.status, 410, replay.text);
    assert.equal(replay.json.code, "UploadUrlUsed");

    const late = await organizer.mutation(api.storage.generateUploadUrl, {});
    await server.advanceTime(59 * MINUTE_MS);
    const stillValid = await organizer.mutation(api.storage.generateUploadUrl, {});
    await server.advanceTime(2 * MINUTE_MS);
    const expired = await upload(late, randomBytes(1000));
    assert.equal(expired.status, 410, expired.text);
    assert.equal(expired.json.code, "UploadUrlExpired");
    assert.deepEqual(await footprint(server), before);
    assert.equal((await upload(stillValid, randomBytes(1000))).status, 200);
  });

  test("hostile input is refused with 4xx and nothing is written", async () => {
    const { server } = app;
    const url = new URL(await organizer.mutation(api.storage.generateUploadUrl, {}));
    const token = url.searchParams.get("token");
    const [expires, nonce, mac] = token.split(".");
    const before = await footprint(server);
    const withToken = (t) => `${server.url}/api/storage/upload?token=${encodeURIComponent(t)}`;
    const forged = [
      "",
      "garbage",
      `${expires}.${nonce}.${Buffer.alloc(32).toString("base64url")}`, // a made-up signature
      `${Number(expires) + 10 * DAY_MS}.${nonce}.${mac}`, // a later expiry under the old signature
      `${expires}.${randomBytes(16).toString("base64url")}.${mac}`, // another nonce
      `${token}.extra`,
    ];
    for (const t of forged) {
      const r = await upload(withToken(t), randomBytes(100));
      assert.equal(r.status, 403, `token ${JSON.stringify(t)}: ${r.text}`);
      assert.equal(r.json.code, "InvalidUploadToken");
    }
    const none = await upload(`${server.url}/api/storage/upload`, randomBytes(100));
    assert.equal(none.status, 403);

    // Over the limit (8 MiB here): with a declared length, and streamed without one.
    const big = await upload(url.href, Buffer.alloc(9 * MiB, 7));
    assert.equal(big.status, 413, big.text);
    assert.equal(big.json.code, "FileTooLarge");
    const streamed = await upload(
      url.href,
      new ReadableStream({
        start(controller) {
          for (let i = 0; i < 9; i++) controller.enqueue(new Uint8Array(MiB).fill(i));
          controller.close();
        },
      }),
    );
    assert.equal(streamed.status, 413, streamed.text);
    assert.equal(streamed.json.code, "FileTooLarge");

    // A storageId of another table, where an id("_storage") is expected.
    await rejectsWith(organizer.query(api.storage.getUrl, { storageId: eventId }), "ArgumentValidationError");
    await rejectsWith(
      organizer.mutation(api.storage.updateEventImage, { eventId, storageId: eventId }),
      "ArgumentValidationError",
    );
    await rejectsWith(organizer.mutation(api.storage.deleteImage, { storageId: eventId }), "ArgumentValidationError");

    // Odd paths under /api/storage/.
    for (const raw of [
      "/api/storage/../../etc/passwd",
      "/api/storage/..%2F..%2Fetc%2Fpasswd",
      "/api/storage/%2e%2e/%2e%2e/tickethub.sqlite3",
      `/api/storage/${eventId}`,
      "/api/storage/00000000-0000-0000-0000-00000000000g",
      "/api/storage/00000000-0000-0000-0000-000000000000/x",
      `/api/storage/${"a".repeat(5000)}`,
    ]) {
      const r = await rawGet(server, raw);
      assert.ok(r.status >= 400 && r.status < 500, `${raw}: ${r.status} ${r.text}`);
      assert.ok(r.json?.code, `${raw}: ${r.text}`);
    }
    const missing = await rawGet(server, "/api/storage/00000000-0000-0000-0000-000000000000");
    assert.equal(missing.status, 404);
    assert.equal(missing.json.code, "FileNotFound");

    // An anonymous caller gets no upload URL.
    await rejectsWith(newClient(server).mutation(api.storage.generateUploadUrl, {}), "Not authenticated");

    assert.deepEqual(await footprint(server), before);
    // The URL whose uploads were all refused still works once.
    assert.equal((await upload(url.href, randomBytes(100))).status, 200);
  });
});

describe("file storage: big files and crashes", { timeout: 900_000 }, () => {
  test("a 500 MB upload streams through with resident memory flat, and downloads intact", async () => {
    const app = await startApp();
    try {
      const { server } = app;
      const user = await app.as(newUserId());
      const pid = server.child.pid;
      // Warm up the paths once (allocator arenas, thread pools), then take the baseline.
      const warm = await upload(await user.mutation(api.storage.generateUploadUrl, {}), randomBytes(4 * MiB));
      assert.equal(warm.status, 200, warm.text);
      const baseline = rssKiB(pid);

      const total = 500 * MiB;
      const chunk = 1 * MiB;
      const hash = createHash("sha256");
      let sent = 0;
      const body = new ReadableStream({
        pull(controller) {
          if (sent >= total) {
            controller.close();
            return;
          }
          const piece = Buffer.alloc(chunk, sent / chunk);
          piece.writeUInt32LE(sent / chunk, 0);
          hash.update(piece);
          sent += chunk;
          controller.enqueue(piece);
        },
      });
      let peak = baseline;
      const sampler = setInterval(() => {
        peak = Math.max(peak, rssKiB(pid));
      }, 20);
      let r;
      try {
        r = await upload(await user.mutation(api.storage.generateUploadUrl, {}), body, {
          "Content-Type": "video/mp4",
        });
      } finally {
        clearInterval(sampler);
      }
      assert.equal(r.status, 200, r.text);
      const digest = hash.digest("hex");
      const growthMiB = (peak - baseline) / 1024;
      console.log(`500 MB upload: RSS baseline ${(baseline / 1024).toFixed(1)} MiB, peak ${(peak / 1024).toFixed(1)} MiB, growth ${growthMiB.toFixed(1)} MiB`);
      assert.ok(growthMiB < 16, `resident memory grew by ${growthMiB.toFixed(1)} MiB during a 500 MB upload`);

      // The download streams too, and hashes to the same digest.
      const fileUrl = await user.query(api.storage.getUrl, { storageId: r.json.storageId });
      const res = await fetch(fileUrl);
      assert.equal(res.headers.get("content-length"), String(total));
      assert.equal(res.headers.get("etag"), `"${digest}"`);
      const down = createHash("sha256");
      let downPeak = rssKiB(pid);
      let received = 0;
      for await (const part of res.body) {
        down.update(part);
        received += part.length;
        if ((received & (64 * MiB - 1)) < part.length) downPeak = Math.max(downPeak, rssKiB(pid));
      }
      assert.equal(received, total);
      assert.equal(down.digest("hex"), digest);
      const downGrowth = (downPeak - baseline) / 1024;
      console.log(`500 MB download: RSS growth ${downGrowth.toFixed(1)} MiB over the upload baseline`);
      assert.ok(downGrowth < 16, `resident memory grew by ${downGrowth.toFixed(1)} MiB during a 500 MB download`);
    } finally {
      await app.server.cleanup();
      await app.issuer.close?.();
    }
  });

  test("kill -9 during uploads: every acknowledged upload is complete, and no orphan blob survives a restart", async () => {
    const app = await startApp();
    try {
      const { server } = app;
      const user = await app.as(newUserId());
      const N = 12;
      const urls = [];
      for (let i = 0; i < N; i++) urls.push(await user.mutation(api.storage.generateUploadUrl, {}));
      const contents = urls.map((_, i) => randomBytes((2 + (i % 4)) * MiB));
      const acked = [];
      let killed = false;
      const started = contents.map((bytes, i) => {
        // Each body trickles in 256 KiB pieces, so uploads are mid-flight when the kill lands.
        let offset = 0;
        const body = new ReadableStream({
          async pull(controller) {
            if (offset >= bytes.length) {
              controller.close();
              return;
            }
            await new Promise((r) => setTimeout(r, 5 + i * 3));
            controller.enqueue(bytes.subarray(offset, offset + 256 * 1024));
            offset += 256 * 1024;
          },
        });
        return upload(urls[i], body, { "Content-Type": "application/octet-stream" })
          .then((r) => {
            if (r.status === 200 && !killed) acked.push({ storageId: r.json.storageId, bytes });
          })
          .catch(() => {});
      });
      await waitFor(() => acked.length >= 3, { what: "three acknowledged uploads", intervalMs: 5 });
      killed = true;
      const ackedAtKill = acked.slice();
      await server.kill();
      await Promise.all(started);
      // Also plant what a crash at the worst moments leaves: a published blob whose row never
      // committed, and a half-written temp file. The restart must collect both.
      const orphan = randomBytes(1000);
      const { mkdirSync, writeFileSync } = await import("node:fs");
      mkdirSync(path.join(blobsDir(server), hex(orphan).slice(0, 2)), { recursive: true });
      writeFileSync(path.join(blobsDir(server), hex(orphan).slice(0, 2), hex(orphan)), orphan);
      writeFileSync(path.join(blobsDir(server), "tmp", "interrupted.part"), orphan.subarray(0, 10));
      await server.restart();

      // Nothing half-written, and no blob without a row.
      assert.deepEqual(tmpFiles(server), []);
      const rows = await storageRows(server);
      const referenced = [...new Set(rows.map((r) => Buffer.from(r.sha256, "base64").toString("hex")))].sort();
      assert.deepEqual(blobFiles(server), referenced, "blob files and _storage rows disagree after the restart");
      for (const name of blobFiles(server)) {
        const shard = name.slice(0, 2);
        assert.equal(hex(readFileSync(path.join(blobsDir(server), shard, name))), name, `blob ${name} is torn`);
      }
      // Every acknowledged upload survived, complete.
      const reader = await app.as(newUserId());
      for (const { storageId, bytes } of ackedAtKill) {
        const fileUrl = await reader.query(api.storage.getUrl, { storageId });
        assert.ok(fileUrl, `acknowledged upload ${storageId} is gone after kill -9`);
        const res = await fetch(fileUrl);
        const body = Buffer.from(await res.arrayBuffer());
        assert.equal(res.status, 200);
        assert.equal(hex(body), hex(bytes));
        assert.equal(res.headers.get("etag"), `"${hex(bytes)}"`);
      }
      console.log(`kill -9: ${ackedAtKill.length} acknowledged of ${N}; ${rows.length} rows, ${blobFiles(server).length} blobs after restart`);
    } finally {
      await app.server.cleanup();
      await app.issuer.close?.();
    }
  });
});
