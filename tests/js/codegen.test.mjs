// `tickethub codegen`: the real binary writes `_generated/` (api.d.ts, api.js, dataModel.d.ts);
// the pinned TypeScript compiler checks a front end against it (fixtures/codegen/frontend.ts,
// written like the original Ticket Hub front end, must pass; wrong_args.ts must fail with the
// expected error); and the generated api.js works at run time, calling the real server through
// ConvexHttpClient.

import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { copyFile, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { promisify } from "node:util";
import { after, before, describe, test } from "node:test";
import { binaryPath, startServer } from "./lib/server.mjs";
import { newClient } from "./lib/helpers.mjs";

const run = promisify(execFile);
const HERE = path.dirname(fileURLToPath(import.meta.url));
const FIXTURES = path.join(HERE, "fixtures", "codegen");
const TSC = path.join(HERE, "node_modules", "typescript", "bin", "tsc");

/** Runs a command; resolves to {code, stdout, stderr} whatever the exit code. */
async function runCommand(file, args, options = {}) {
  try {
    const { stdout, stderr } = await run(file, args, { maxBuffer: 16 * 1024 * 1024, ...options });
    return { code: 0, stdout, stderr };
  } catch (error) {
    if (typeof error.code !== "number") throw error;
    return { code: error.code, stdout: error.stdout, stderr: error.stderr };
  }
}

/** `tsc --noEmit` over one fixture, strict, resolving `@/…` as the Next.js front end does. */
async function typeCheck(dir, fixture) {
  const config = {
    compilerOptions: {
      strict: true,
      noEmit: true,
      target: "es2022",
      lib: ["es2022", "dom"],
      module: "esnext",
      moduleResolution: "bundler",
      // Our generated .d.ts files are checked too, not skipped as a library's would be.
      skipLibCheck: false,
      types: [],
      paths: { "@/*": ["./*"] },
    },
    files: [fixture],
  };
  const configPath = path.join(dir, `tsconfig.${fixture}.json`);
  await writeFile(configPath, JSON.stringify(config, null, 2));
  return runCommand(process.execPath, [TSC, "-p", configPath, "--pretty", "false"], { cwd: dir });
}

describe("tickethub codegen", () => {
  let dir;
  let generated;

  before(async () => {
    // Inside tests/js, so `convex` resolves from its node_modules for tsc and for node.
    dir = await mkdtemp(path.join(HERE, ".codegen-"));
    const out = path.join(dir, "convex");
    const result = await runCommand(binaryPath("tickethub"), ["codegen", "--out", out]);
    assert.equal(result.code, 0, `codegen failed: ${result.stderr}`);
    assert.match(result.stdout, /tickethub codegen: wrote .*_generated \(\d+ functions, \d+ tables\)/);
    generated = path.join(out, "_generated");
    for (const fixture of ["frontend.ts", "wrong_args.ts"]) {
      await copyFile(path.join(FIXTURES, fixture), path.join(dir, fixture));
    }
  });

  after(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  test("writes the three files, the shapes a Convex front end imports", async () => {
    const apiDts = await readFile(path.join(generated, "api.d.ts"), "utf8");
    const apiJs = await readFile(path.join(generated, "api.js"), "utf8");
    const dataModel = await readFile(path.join(generated, "dataModel.d.ts"), "utf8");
    assert.match(apiDts, /export declare const api: \{/);
    assert.match(apiDts, /export declare const internal: \{/);
    assert.match(apiDts, /get: FunctionReference<"query", "public", Record<string, never>, Array<Doc<"events">>>;/);
    assert.match(apiJs, /export const api = anyApi;/);
    assert.match(dataModel, /export type Doc<TableName extends TableNames> = DocumentByName<DataModel, TableName>;/);
    assert.match(dataModel, /"by_user_event": \["userId", "eventId", "_creationTime"\];/);
  });

  test("the front end's imports and calls type-check", async () => {
    const result = await typeCheck(dir, "frontend.ts");
    assert.equal(result.code, 0, `tsc reported errors:\n${result.stdout}${result.stderr}`);
  });

  test("a call with a wrong argument type does not", async () => {
    const result = await typeCheck(dir, "wrong_args.ts");
    assert.notEqual(result.code, 0, "tsc accepted a number as an Id<\"events\">");
    const errors = result.stdout.split("\n").filter((line) => line.includes("error TS"));
    assert.equal(errors.length, 1, result.stdout);
    assert.match(errors[0], /^wrong_args\.ts\(8,\d+\): error TS2322: Type 'number' is not assignable to type 'Id<"events">'\./);
  });

  test("api.js calls the real server through ConvexHttpClient", async () => {
    const server = await startServer({ which: "tickethub" });
    try {
      const { api, internal } = await import(pathToFileURL(path.join(generated, "api.js")).href);
      const client = newClient(server);
      assert.deepEqual(await client.query(api.events.get, {}), []);
      const eventId = await client.mutation(api.events.create, {
        name: "Rust Conf",
        description: "Talks",
        location: "Berlin",
        eventDate: 1.8e12,
        price: 49.99,
        totalTickets: 10,
        userId: "user_org",
      });
      const event = await client.query(api.events.getById, { eventId });
      assert.equal(event.name, "Rust Conf");
      assert.equal(event._id, eventId);
      const admin = newClient(server, { admin: true });
      assert.equal(await admin.query(internal.payments.getStripeEvent, { stripeEventId: "evt_none" }), null);
    } finally {
      await server.cleanup();
    }
  });
});
