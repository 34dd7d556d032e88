// The browser dashboard (/dashboard) driven by a real headless Chromium (Debian's `chromium`
// package, through playwright-core; no browser is downloaded). The tickethub binary runs with
// Clerk on: users arrive through real Svix-signed webhooks and call with real RS256 JWTs.
// Screenshots of the Data and Health pages go to docs/screenshots/ (the README shows them).

import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { after, before, describe, test } from "node:test";
import { anyApi } from "convex/server";
import { chromium } from "playwright-core";
import parsePrometheusTextFormat from "parse-prometheus-text-format";
import { BACKEND, startServer } from "./lib/server.mjs";
import { startIssuer } from "./lib/oidc.mjs";
import { newUserId, newWebhookSecret, sendSigned, userCreated } from "./lib/clerk.mjs";
import { newClient, waitFor, withLogs } from "./lib/helpers.mjs";

const api = anyApi;
const CHROMIUM = "/usr/bin/chromium";
const SCREENSHOTS = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../docs/screenshots");
const XSS_NAME = "<img src=x onerror=alert(1)>";
const PAGED_DOCS = 5_000;
const UI_TIMEOUT_MS = 30_000;

const LAUNCH_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

/** Every dashboard endpoint, for the "no key, no data" check. */
const ENDPOINTS = [
  ["GET", "/api/dashboard/tables"],
  ["GET", "/api/dashboard/documents?table=users&limit=10"],
  ["GET", "/api/dashboard/document?id=x"],
  ["POST", "/api/dashboard/documents", { table: "users", document: { name: "n", email: "e", userId: "u" } }],
  ["PATCH", "/api/dashboard/documents", { id: "x", patch: {} }],
  ["DELETE", "/api/dashboard/documents", { id: "x" }],
  ["GET", "/api/dashboard/functions"],
  ["POST", "/api/dashboard/run", { path: "users:current", args: {} }],
  ["GET", "/api/dashboard/logs?cursor=0&timeoutMs=0"],
  ["GET", "/api/dashboard/scheduled?state=pending"],
  ["POST", "/api/dashboard/scheduled/cancel", { id: "x" }],
  ["GET", "/api/dashboard/crons"],
  ["GET", "/api/dashboard/schema"],
  ["GET", "/api/dashboard/health"],
  ["GET", "/api/dashboard/changes?timeoutMs=0"],
  ["GET", "/metrics"],
];

describe("the dashboard in a real browser", { timeout: 900_000 }, () => {
  let issuer;
  let secret;
  let server;
  let browser;
  let page;
  const dialogs = [];
  const pageErrors = [];
  const cspViolations = [];
  let grace; // a user synced by webhook, used by several tests

  const admin = (endpoint, init = {}) =>
    fetch(`${server.url}/api/dashboard/${endpoint}`, {
      ...init,
      headers: { Authorization: `Convex ${server.adminKey}`, "Content-Type": "application/json", ...(init.headers ?? {}) },
    });
  const adminJson = async (endpoint, init) => {
    const res = await admin(endpoint, init);
    const text = await res.text();
    assert.ok(res.ok, `${endpoint}: HTTP ${res.status} ${text}`);
    return JSON.parse(text);
  };
  const userRow = (userId) => server.adminRun("users:getUserById", { userId });
  const goto = async (hash) => {
    await page.evaluate((h) => {
      location.hash = h;
    }, hash);
  };

  before(async () => {
    if (!existsSync(CHROMIUM)) {
      throw new Error(
        `Chromium is not installed at ${CHROMIUM}: install Debian's package 'chromium' (apt-get install -y chromium; .ci/run does it)`,
      );
    }
    issuer = await startIssuer();
    secret = newWebhookSecret();
    server = await startServer({
      which: "tickethub",
      env: { CLERK_WEBHOOK_SECRET: secret, CLERK_JWT_ISSUER_DOMAIN: issuer.issuer },
    });
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: LAUNCH_ARGS });
    const context = await browser.newContext({ viewport: { width: 1360, height: 860 } });
    page = await context.newPage();
    page.setDefaultTimeout(UI_TIMEOUT_MS);
    page.on("dialog", (dialog) => {
      dialogs.push(`${dialog.type()}: ${dialog.message()}`);
      dialog.dismiss().catch(() => {});
    });
    page.on("pageerror", (error) => pageErrors.push(String(error)));
    page.on("console", (msg) => {
      if (/Content Security Policy|Refused to/i.test(msg.text())) cspViolations.push(msg.text());
    });
  });
  after(async () => {
    await browser?.close();
    await server?.cleanup();
    await issuer?.stop();
  });

  test("the page is served with a strict CSP, no framing and nosniff", withLogs(async () => {
    const res = await fetch(`${server.url}/dashboard`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get("content-type"), /^text\/html/);
    const csp = res.headers.get("content-security-policy");
    for (const part of ["default-src 'self'", "script-src 'self'", "frame-ancestors 'none'", "base-uri 'none'"]) {
      assert.ok(csp?.includes(part), `CSP lacks ${part}: ${csp}`);
    }
    assert.ok(!/unsafe-inline|unsafe-eval/.test(csp), csp);
    assert.equal(res.headers.get("x-frame-options"), "DENY");
    assert.equal(res.headers.get("x-content-type-options"), "nosniff");
    const html = await res.text();
    assert.ok(!/<script>/.test(html), "inline script in the page");
    const js = await fetch(`${server.url}/dashboard/js/main.js`);
    assert.equal(js.status, 200);
    assert.match(js.headers.get("content-type"), /javascript/);
    assert.equal((await fetch(`${server.url}/dashboard/nope.js`)).status, 404);
  }));

  test("every dashboard endpoint refuses a caller without the admin key", withLogs(async () => {
    for (const [method, endpoint, body] of ENDPOINTS) {
      for (const auth of [undefined, "Convex not-the-admin-key", "Bearer x.y.z"]) {
        const headers = { "Content-Type": "application/json" };
        if (auth) headers.Authorization = auth;
        const res = await fetch(`${server.url}${endpoint}`, {
          method,
          headers,
          body: body === undefined ? undefined : JSON.stringify(body),
        });
        const text = await res.text();
        assert.ok(
          res.status === 401 || res.status === 403,
          `${method} ${endpoint} with ${auth ?? "no Authorization"}: HTTP ${res.status} ${text}`,
        );
        const json = JSON.parse(text);
        assert.equal(typeof json.code, "string", text);
        assert.deepEqual(Object.keys(json).filter((k) => !["code", "message"].includes(k)), [], `leaks more: ${text}`);
      }
    }
  }));

  test("logging in: a wrong key is refused with a message, the admin key opens the dashboard", withLogs(async () => {
    await page.goto(`${server.url}/dashboard`);
    await page.fill("#admin-key", "definitely-not-the-key");
    await page.click("#login-button");
    await page.waitForSelector("#login-status .msg-error");
    assert.match(await page.textContent("#login-status"), /refused/);
    assert.equal(await page.evaluate(() => sessionStorage.length), 0);

    await page.fill("#admin-key", server.adminKey);
    await page.click("#login-button");
    await page.waitForSelector("nav #nav-data");
    await page.waitForSelector("#tables a[data-table='users']");
    // The key lives in sessionStorage, never in the URL or a cookie.
    assert.equal(await page.evaluate(() => sessionStorage.getItem("tickethub.adminKey")), server.adminKey);
    assert.ok(!page.url().includes(server.adminKey));
    assert.deepEqual(await page.context().cookies(), []);
    // User and system tables are listed apart, with counts.
    assert.ok(await page.$("#tables a[data-table='_scheduled_functions']"), "system tables missing");
  }));

  test("a user delivered by a Svix-signed webhook appears in the open users table without a reload", withLogs(async () => {
    await goto("#/data/users");
    await page.waitForSelector("#table-title:text-is('users')");
    await page.waitForSelector("#page-info");
    const navigations = [];
    page.on("framenavigated", (frame) => navigations.push(frame.url()));
    const userId = newUserId();
    const r = await sendSigned(
      server.siteUrl,
      secret,
      userCreated({ id: userId, firstName: "Grace", lastName: "Hopper", email: "grace@example.org" }),
    );
    assert.equal(r.status, 200, r.text);
    await page.waitForSelector(`#documents td:text-is('${userId}')`);
    assert.deepEqual(navigations.filter((u) => !u.includes("#")), [], "the page reloaded");
    grace = { userId, row: await userRow(userId) };
    assert.ok(grace.row, "the webhook did not create the user");
    await page.waitForSelector(`#tables a[data-table='users'] .count[data-count='1']`);
  }));

  test("a Clerk user named like markup is shown as text, and no script runs", withLogs(async () => {
    const userId = newUserId();
    const r = await sendSigned(server.siteUrl, secret, userCreated({ id: userId, firstName: XSS_NAME, lastName: null, email: "x@example.org" }));
    assert.equal(r.status, 200, r.text);
    const cell = await page.waitForSelector(`#documents tr[data-id] td:has-text('${userId}')`);
    const row = await cell.evaluateHandle((td) => td.closest("tr"));
    const rowText = await row.evaluate((tr) => tr.textContent);
    assert.ok(rowText.includes("<img src=x onerror=alert(1)>"), `row shows: ${rowText}`);
    // Opening the document shows it as text too.
    await row.click();
    await page.waitForSelector(`#document-display:has-text('${userId}')`);
    assert.ok((await page.textContent("#document-display")).includes(XSS_NAME));
    assert.equal(await page.$$eval("#content img", (imgs) => imgs.length), 0, "an <img> was created from data");
    await page.waitForTimeout(500); // an onerror would fire right after the failed load
    assert.deepEqual(dialogs, [], "a dialog opened: script ran");
  }));

  test(`paging through ${PAGED_DOCS} documents, a lookup by index, and opening a document`, withLogs(async () => {
    const inFlight = 64;
    let next = 0;
    const worker = async () => {
      while (next < PAGED_DOCS) {
        const i = next++;
        await adminJson("documents", {
          method: "POST",
          body: JSON.stringify({ table: "rateLimits", document: { key: `k-${i}`, windowStart: i, count: i % 7 } }),
        });
      }
    };
    await Promise.all(Array.from({ length: inFlight }, worker));

    await goto("#/data/rateLimits");
    await page.waitForSelector(`#tables a[data-table='rateLimits'] .count[data-count='${PAGED_DOCS}']`);
    await page.waitForSelector("#documents tr[data-id]");
    await page.selectOption("#page-size", "250");
    await page.waitForSelector("#page-info:has-text('250 documents')");
    const seen = new Set();
    let pages = 0;
    for (;;) {
      const ids = await page.$$eval("#documents tr[data-id]", (trs) => trs.map((tr) => tr.dataset.id));
      for (const id of ids) seen.add(id);
      pages += 1;
      assert.ok(pages <= PAGED_DOCS / 250 + 1, "more pages than documents");
      if (await page.isDisabled("#next-page")) break;
      const info = await page.textContent("#page-info");
      await page.click("#next-page");
      await page.waitForFunction((before) => document.querySelector("#page-info")?.textContent !== before, info);
    }
    assert.equal(seen.size, PAGED_DOCS, `saw ${seen.size} distinct documents in ${pages} pages`);
    // Convex's paging may end with an empty page after a full one.
    assert.ok(pages === PAGED_DOCS / 250 || pages === PAGED_DOCS / 250 + 1, `${pages} pages`);

    // A lookup by index with an equality bound finds one document, which opens in display form.
    await page.selectOption("#index-select", "by_key");
    await page.fill("#index-bounds input[name='eq0']", "k-4242");
    await page.click("#apply-bounds");
    await page.waitForFunction(() => document.querySelectorAll("#documents tr[data-id]").length === 1);
    await page.click("#documents tr[data-id]");
    await page.waitForSelector("#document-display:has-text('k-4242')");
    const shown = await page.textContent("#document-display");
    assert.match(shown, /4242/);
  }));

  test("an edit that breaks the schema is refused in the page; bad JSON gets a message; a valid edit is saved", withLogs(async () => {
    await goto(`#/data/users`);
    const row = await page.waitForSelector(`#documents tr[data-id='${grace.row._id}']`);
    await row.click();
    await page.waitForSelector("#edit-form .field[data-field='email'] .field-value");
    const email = "#edit-form .field[data-field='email'] .field-value";

    // A number where the schema says string: refused next to the field, nothing written.
    await page.fill(email, "12345");
    await page.click("#save-button");
    await page.waitForSelector("#edit-form .field[data-field='email'] .field-error .msg-error");
    const fieldError = await page.textContent("#edit-form .field[data-field='email'] .field-error");
    assert.match(fieldError, /SchemaValidationError/);
    assert.equal((await userRow(grace.userId)).email, "grace@example.org", "the refused edit was written");

    // Bad JSON: a message in the page, no request, the page still works.
    await page.fill(email, "{oops");
    await page.click("#save-button");
    await page.waitForSelector("#edit-form .field[data-field='email'] .field-error:has-text('not valid JSON')");

    await page.fill(email, '"grace@navy.mil"');
    await page.click("#save-button");
    await page.waitForSelector("#edit-status .msg-ok");
    await waitFor(async () => (await userRow(grace.userId)).email === "grace@navy.mil", { what: "the valid edit" });
    await page.waitForSelector(`#document-display:has-text('grace@navy.mil')`);
  }));

  test("running users:current acting as a user shows that user's row; bad JSON args get a message", withLogs(async () => {
    await goto(`#/functions/${encodeURIComponent("users:current")}`);
    await page.waitForSelector("#function-path:text-is('users:current')");
    await page.fill("#run-args", "{not json");
    await page.click("#run-button");
    await page.waitForSelector("#run-result .msg-error:has-text('not valid JSON')");

    await page.fill("#run-args", "{}");
    await page.check("#as-user");
    await page.fill("#act-subject", grace.userId);
    await page.fill("#act-issuer", issuer.issuer);
    await page.click("#run-button");
    await page.waitForSelector("#run-value");
    const value = await page.textContent("#run-value");
    assert.ok(value.includes(grace.userId), value);
    assert.ok(value.includes("Grace Hopper"), value);
    assert.match(await page.textContent("#run-meta"), /Succeeded/);

    // As admin there is no user identity, so no row.
    await page.check("#as-admin");
    await page.click("#run-button");
    await page.waitForFunction(() => document.querySelector("#run-value")?.textContent.trim() === "null");
  }));

  test("a failing function's call appears in Logs, live, and the outcome filter keeps it", withLogs(async () => {
    await goto("#/logs");
    await page.waitForSelector("#logs-status:text-is('live')");
    const stranger = newClient(server, { auth: await issuer.tokenFor(newUserId()) });
    await assert.rejects(stranger.query(api.users.getUserById, { userId: grace.userId }));
    const failed = await page.waitForSelector("#log-rows tr.failure[data-path='users:getUserById']");
    assert.match(await failed.textContent(), /Not authorized/);

    await page.selectOption("#logs-outcome", "failure");
    await page.waitForSelector("#log-rows tr.failure[data-path='users:getUserById']");
    assert.equal(await page.$$eval("#log-rows tr.success", (trs) => trs.length), 0, "success rows under the failure filter");
  }));

  test("cancelling a scheduled job from the Schedules page", withLogs(async () => {
    const organizerId = newUserId();
    const buyerId = newUserId();
    const organizer = newClient(server, { auth: await issuer.tokenFor(organizerId) });
    const buyer = newClient(server, { auth: await issuer.tokenFor(buyerId) });
    const eventId = await organizer.mutation(api.events.create, {
      name: "Dashboard Conf",
      description: "An event whose offer expiry gets cancelled",
      location: "Lisbon",
      eventDate: Date.now() + 7 * 86_400_000,
      price: 10,
      totalTickets: 1,
      userId: organizerId,
    });
    await buyer.mutation(api.events.joinWaitingList, { eventId, userId: buyerId });
    const { jobs } = await adminJson("scheduled?state=pending");
    const job = jobs.find((j) => /^waitingList(\.js)?:expireOffer$/.test(j.name ?? j.path));
    assert.ok(job, `no pending expireOffer job: ${JSON.stringify(jobs)}`);
    const jobId = job._id ?? job.id;

    await goto("#/schedules");
    const row = await page.waitForSelector(`#jobs-table tr[data-id='${jobId}'][data-state='pending']`);
    await (await row.$(".cancel-job")).click();
    await page.waitForSelector("#jobs-status .msg-ok");
    await page.waitForFunction((id) => !document.querySelector(`#jobs-table tr[data-id='${id}']`), jobId);
    const after = await adminJson("scheduled?state=canceled");
    assert.ok(after.jobs.some((j) => (j._id ?? j.id) === jobId), `job not canceled: ${JSON.stringify(after)}`);
    // Crons are listed with their schedule.
    await page.waitForSelector("#crons-table tbody tr");
  }));

  test("the Schema page lists tables, validators and indexes", withLogs(async () => {
    await goto("#/schema");
    await page.waitForSelector("#schema article[data-table='users']");
    const text = await page.textContent("#schema article[data-table='users']");
    assert.ok(text.includes("by_user_id") && text.includes("email"), text);
  }));

  test("screenshots of the Data and Health pages", withLogs(async () => {
    await mkdir(SCREENSHOTS, { recursive: true });
    await goto("#/data/users");
    await page.waitForSelector(`#documents tr[data-id='${grace.row._id}']`);
    await page.click(`#documents tr[data-id='${grace.row._id}']`);
    await page.waitForSelector("#document-display");
    await page.screenshot({ path: path.join(SCREENSHOTS, "dashboard-data.png") });

    await goto("#/health");
    // A flat line at zero has no height, so "attached" rather than "visible".
    await page.waitForSelector("#charts .chart-card[data-series='rssBytes'] svg.chart polyline", { state: "attached" });
    // The node's role (cluster mode shows node id, role and leader; tests/js/cluster.test.mjs
    // checks those through the same API): a lone server says so.
    const health = await (await fetch(`${server.url}/api/dashboard/health`, { headers: { Authorization: `Convex ${server.adminKey}` } })).json();
    assert.deepEqual(health.node, { role: "single", nodeId: null, leaderUrl: null });
    assert.match(await page.textContent("#node-role"), /single server/);
    await page.screenshot({ path: path.join(SCREENSHOTS, "dashboard-health.png"), fullPage: true });
  }));

  test("/metrics is parsed by a Prometheus text-format parser", withLogs(async () => {
    const res = await fetch(`${server.url}/metrics`, { headers: { Authorization: `Convex ${server.adminKey}` } });
    const text = await res.text();
    assert.equal(res.status, 200, text);
    assert.match(res.headers.get("content-type"), /text\/plain|openmetrics/);
    const families = parsePrometheusTextFormat(text);
    assert.ok(families.length > 0, "no metric families");
    for (const family of families) {
      assert.match(family.name, /^[a-zA-Z_:][a-zA-Z0-9_:]*$/);
      for (const metric of family.metrics) {
        const value = metric.value ?? metric.count;
        assert.ok(value === undefined || !Number.isNaN(Number(value)), `${family.name}: ${JSON.stringify(metric)}`);
      }
    }
    // The storage engine, as an info-style gauge: one series, labelled, 1.
    const backend = families.find((f) => f.name === "tickethub_store_backend");
    assert.ok(backend, `no tickethub_store_backend in:\n${text}`);
    assert.deepEqual(backend.metrics.map((m) => [m.labels?.backend, Number(m.value)]), [[BACKEND, 1]]);
  }));

  test("the browser saw no script errors and no CSP violations", () => {
    assert.deepEqual(pageErrors, []);
    assert.deepEqual(cspViolations, []);
    assert.deepEqual(dialogs, []);
  });
});
