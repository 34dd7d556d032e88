// Benchmark (not a test; prints figures, asserts nothing about time): issue #12's targets
// "the first page of a 1M-document table, measured in the browser from navigation to rendered:
// within 2x of the same page on a 1k-document table" and "the dashboard's assets: at most 300 KB
// uncompressed in total".
//
// Prepare the two data dirs once (the store's own bulk loader, 10,000 documents a mutation):
//   cargo build --release -p bench -p tickethub-server --bins
//   target/release/bench prepare-users --dir /tmp/dashbench/users-1k --count 1000
//   target/release/bench prepare-users --dir /tmp/dashbench/users-1m --count 1000000
// Then, from tests/js:
//   TICKETHUB_BIN=$PWD/../../target/release/tickethub \
//   node bench/dashboard-first-page.mjs /tmp/dashbench/users-1k /tmp/dashbench/users-1m [reps]
//
// Both servers run at once, on their own ports; the repetitions alternate 1k, 1M, 1k, 1M... so
// the shared machine's load falls on both alike. Each repetition is a fresh browser context (cold
// HTTP cache): it logs in with the admin key through the login form (that load fetches the
// assets cold), goes to about:blank, then navigates to /dashboard#/data/users (the measured
// navigation; the assets may come from the cache the login filled, the same for both tables). The figure is the page's own clock (performance.now(), whose
// zero is the navigation's start) at the first animation frame after the first document row
// (`#documents tr[data-id]`, rendered by assets/js/data.js) is in the DOM; "rows in DOM" is the
// mutation itself. The first visit after a server starts is printed apart: it also counts the
// table for the tables list (cached afterwards), the others are the steady state.

import { spawn } from "node:child_process";
import { readdirSync, statSync } from "node:fs";
import net from "node:net";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const CHROMIUM = "/usr/bin/chromium";
const ADMIN_KEY = "dashbench-admin-key-0123456789abcdef";
const ROW = "#documents tr[data-id]";
const ASSETS_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../../crates/dashboard/assets");
const LAUNCH_ARGS = [
  "--headless=new",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

// Runs in the page before its own scripts: note when the first row lands and the frame after.
const OBSERVE_ROWS = `(() => {
  const marks = (window.__firstPage = {});
  const seen = () => {
    if (marks.rows !== undefined || !document.querySelector(${JSON.stringify(ROW)})) return;
    marks.rows = performance.now();
    requestAnimationFrame(() => { marks.frame = performance.now(); });
  };
  new MutationObserver(seen).observe(document, { childList: true, subtree: true });
})();`;

const [dir1k, dir1m, repsArg] = process.argv.slice(2);
const REPS = Number(repsArg ?? 9);
const BIN = process.env.TICKETHUB_BIN;
if (!dir1k || !dir1m || !BIN) {
  console.error("usage: TICKETHUB_BIN=... node bench/dashboard-first-page.mjs <1k data dir> <1M data dir> [reps]");
  process.exit(2);
}

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

async function startServer(dataDir) {
  const port = await freePort();
  const sitePort = await freePort();
  const child = spawn(
    BIN,
    ["serve", "--port", String(port), "--site-port", String(sitePort), "--data-dir", dataDir, "--admin-key", ADMIN_KEY],
    { stdio: ["ignore", "ignore", "inherit"] },
  );
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 60_000;
  for (;;) {
    try {
      if ((await fetch(`${url}/instance_name`)).ok) break;
    } catch {
      // not listening yet
    }
    if (child.exitCode !== null) throw new Error(`tickethub exited with ${child.exitCode} on ${dataDir}`);
    if (Date.now() > deadline) throw new Error(`tickethub on ${dataDir} did not answer within 60 s`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return { url, child };
}

async function firstPage(browser, server) {
  const context = await browser.newContext();
  try {
    const page = await context.newPage();
    await page.addInitScript(OBSERVE_ROWS);
    await page.goto(`${server.url}/dashboard`);
    await page.fill("#admin-key", ADMIN_KEY);
    await page.click("#login-button");
    await page.waitForSelector("nav #nav-data");
    await page.goto("about:blank");
    await page.goto(`${server.url}/dashboard#/data/users`);
    await page.waitForFunction(() => window.__firstPage?.frame !== undefined, null, { timeout: 120_000 });
    const marks = await page.evaluate(() => window.__firstPage);
    const rows = await page.locator(ROW).count();
    // Decoded (uncompressed) bodies of the page and its /dashboard/* files, by the page's own
    // resource timing: what this navigation loaded, whether from the network or the cache.
    const dashboardBytes = await page.evaluate(() =>
      [...performance.getEntriesByType("navigation"), ...performance.getEntriesByType("resource")]
        .filter((e) => new URL(e.name).pathname.startsWith("/dashboard"))
        .reduce((sum, e) => sum + e.decodedBodySize, 0),
    );
    return { rowsMs: marks.rows, renderedMs: marks.frame, rows, dashboardBytes };
  } finally {
    await context.close();
  }
}

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

function assetsOnDisk(dir) {
  let total = 0;
  const files = [];
  for (const name of readdirSync(dir, { recursive: true })) {
    const p = path.join(dir, name);
    if (statSync(p).isFile()) {
      total += statSync(p).size;
      files.push(name);
    }
  }
  return { total, files };
}

async function assetsServed(url, files) {
  let total = 0;
  const missing = [];
  for (const f of files) {
    const res = await fetch(`${url}/dashboard/${f}`);
    if (!res.ok) missing.push(`${f} (${res.status})`);
    total += (await res.arrayBuffer()).byteLength;
  }
  return { total, missing };
}

const small = await startServer(dir1k);
const large = await startServer(dir1m);
const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: LAUNCH_ARGS });
try {
  const runs = { "1k": [], "1M": [] };
  let pageBytes = 0;
  for (let i = 0; i < REPS + 1; i++) {
    for (const [label, server] of [["1k", small], ["1M", large]]) {
      const r = await firstPage(browser, server);
      pageBytes = r.dashboardBytes;
      runs[label].push(r);
      console.log(
        `${label} rep ${i}${i === 0 ? " (first visit)" : ""}: rows in DOM ${r.rowsMs.toFixed(1)} ms, rendered ${r.renderedMs.toFixed(1)} ms, ${r.rows} rows`,
      );
    }
  }
  const steady = (label) => runs[label].slice(1);
  const med = (label, key) => median(steady(label).map((r) => r[key]));
  console.log("");
  console.log(`first page, navigation -> rendered, median of ${REPS} (first visit excluded):`);
  for (const label of ["1k", "1M"]) {
    const xs = steady(label).map((r) => r.renderedMs);
    console.log(
      `  ${label}: median ${med(label, "renderedMs").toFixed(1)} ms (rows in DOM ${med(label, "rowsMs").toFixed(1)} ms), min ${Math.min(...xs).toFixed(1)}, max ${Math.max(...xs).toFixed(1)}; first visit ${runs[label][0].renderedMs.toFixed(1)} ms`,
    );
  }
  console.log(`  ratio 1M/1k (median rendered): ${(med("1M", "renderedMs") / med("1k", "renderedMs")).toFixed(2)} (target <= 2)`);
  console.log(
    `  ratio 1M/1k (first visit):      ${(runs["1M"][0].renderedMs / runs["1k"][0].renderedMs).toFixed(2)}`,
  );

  const disk = assetsOnDisk(ASSETS_DIR);
  const served = await assetsServed(small.url, disk.files);
  console.log("");
  console.log("dashboard assets (uncompressed):");
  console.log(`  crates/dashboard/assets: ${disk.total} bytes in ${disk.files.length} files (${(disk.total / 1024).toFixed(1)} KiB; budget 300 KB)`);
  console.log(`  served by the binary, the same files: ${served.total} bytes${served.missing.length ? `; not served: ${served.missing.join(", ")}` : ""}`);
  console.log(`  loaded by the page on the measured navigation (/dashboard*, decoded, resource timing): ${pageBytes} bytes`);
} finally {
  await browser.close();
  small.child.kill("SIGTERM");
  large.child.kill("SIGTERM");
}
