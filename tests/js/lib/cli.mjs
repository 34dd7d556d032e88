// The pinned `convex` package's own CLI (`npx convex`), run against a tickethub server as a
// self-hosted deployment: CONVEX_SELF_HOSTED_URL and CONVEX_SELF_HOSTED_ADMIN_KEY, nothing else.

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { cp, mkdir, mkdtemp, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

export const CONVEX_BIN = path.join(path.dirname(fileURLToPath(import.meta.url)), "..", "node_modules", ".bin", "convex");

/** The CLI's environment: only the self-hosted pair (and PATH/HOME), no deploy keys. */
export function cliEnv(server, adminKey = server.adminKey) {
  return {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    CONVEX_SELF_HOSTED_URL: server.url,
    CONVEX_SELF_HOSTED_ADMIN_KEY: adminKey,
    // No colors, no interactive prompts.
    NO_COLOR: "1",
    FORCE_COLOR: "0",
    CI: "1",
  };
}

function convexOnce(server, args, { cwd, adminKey = server.adminKey, timeoutMs = 120_000, input } = {}) {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const child = spawn(CONVEX_BIN, args, { cwd, env: cliEnv(server, adminKey), stdio: ["pipe", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    child.on("error", reject);
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr, all: stdout + stderr, ms: Date.now() - started });
    });
    child.stdin.end(input);
  });
}

/**
 * Runs `npx convex <args>` in `cwd` against `server`; resolves to
 * {code, signal, stdout, stderr, all, ms}. Killed after `timeoutMs`. A spawn that fails with
 * ENOMEM (a busy shared machine) is retried a few times.
 */
export async function convex(server, args, opts = {}) {
  for (let attempt = 0; ; attempt++) {
    try {
      return await convexOnce(server, args, opts);
    } catch (err) {
      if (err.code !== "ENOMEM" || attempt >= 5) throw err;
      await new Promise((r) => setTimeout(r, 1000 * (attempt + 1)));
    }
  }
}

/** Like `convex`, but the command must succeed; the failure shows the CLI's and the server's output. */
export async function convexOk(server, args, opts) {
  const r = await convex(server, args, opts);
  assert.equal(
    r.code,
    0,
    `npx convex ${args.join(" ")} failed (${r.code}):\nstdout: ${r.stdout}\nstderr: ${r.stderr}\n--- server log ---\n${server.output().slice(-4000)}`,
  );
  return r;
}

/** `npx convex dev --once`, as the tests push: no type check, no log tailing. */
export const PUSH_ONCE = ["dev", "--once", "--typecheck", "disable", "--tail-logs", "disable"];

const NODE_MODULES = path.join(path.dirname(fileURLToPath(import.meta.url)), "..", "node_modules");

/**
 * A throwaway Convex project in a new temporary directory (`prefix`...): `convexDir` copied in
 * as `convex/`, then `files` (path under `convex/` → text) written, this suite's node_modules
 * linked in (the pinned `convex` package and its CLI), and `packageJson` (an object) written.
 * Returns the directory; the caller removes it.
 */
export async function convexProject(prefix, { convexDir, files = {}, packageJson }) {
  const dir = await mkdtemp(path.join(tmpdir(), prefix));
  await writeFile(path.join(dir, "package.json"), JSON.stringify(packageJson));
  await symlink(NODE_MODULES, path.join(dir, "node_modules"), "dir");
  await mkdir(path.join(dir, "convex"), { recursive: true });
  if (convexDir) await cp(convexDir, path.join(dir, "convex"), { recursive: true });
  for (const [name, text] of Object.entries(files)) await writeFile(path.join(dir, "convex", name), text);
  return dir;
}
