// TLS to PostgreSQL, end to end: the real tickethub binary against a Postgres that has TLS on
// (`tests/pg-cluster start-tls`: a throwaway CA signs a certificate for 127.0.0.1 and pg.test).
// - verify-full with the CA: tickethub serves, and every one of its connections is encrypted
//   (pg_stat_ssl, read with psql);
// - the certificate is really checked: another CA's roots, or a host name the certificate does
//   not carry, make tickethub refuse to start with DatabaseMisconfigured and the reason;
// - verify-ca checks the chain but not the name; require against a server without TLS is refused;
// - an sslmode typo is refused at the command line.
//
// Runs in the Postgres run of tests/run (it starts its own TLS cluster, so one run is enough; the
// SQLite run skips it and says so).

import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { after, before, describe, test } from "node:test";
import { anyApi } from "convex/server";
import { BACKEND, binaryPath, freshSchemaName, startServer, TEST_DATABASE_URL } from "./lib/server.mjs";
import { newClient, withLogs } from "./lib/helpers.mjs";

const api = anyApi;
const run = promisify(execFile);
const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const PG_CLUSTER = path.join(REPO_ROOT, "tests", "pg-cluster");

function postgresOnly(t) {
  if (BACKEND === "postgres") return false;
  t.skip("runs in the Postgres run only: it starts its own TLS cluster (tests/pg-cluster start-tls)");
  return true;
}

describe("TLS to Postgres", () => {
  let work = null;
  let clusterDir = null;
  let port = null;
  const servers = [];

  before(async () => {
    if (BACKEND !== "postgres") return;
    work = await mkdtemp(path.join(tmpdir(), "tickethub-pg-tls-"));
    clusterDir = path.join("/tmp", `tickethub-pg-tls-${process.pid}`);
    const { stdout } = await run(PG_CLUSTER, ["start-tls", clusterDir]);
    port = new URL(stdout.trim()).port;
    // A second CA that signed nothing the server shows.
    await run("openssl", [
      "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=some other CA",
      "-keyout", path.join(work, "other.key"), "-out", path.join(work, "other.pem"),
    ]);
  });

  after(async () => {
    for (const s of servers) await s.cleanup().catch(() => {});
    if (clusterDir) await run(PG_CLUSTER, ["stop", clusterDir]).catch(() => {});
    if (work) await rm(work, { recursive: true, force: true });
  });

  const url = (host, query) => `postgres://postgres@${host}:${port}/postgres?${query}`;
  const ca = () => path.join(clusterDir, "tls", "ca.pem");

  /** Starts tickethub on `databaseUrl`; resolves to the server, or to its refusal's text. */
  async function tryStart(databaseUrl) {
    try {
      const server = await startServer({ which: "tickethub", database: { url: databaseUrl, schema: freshSchemaName("tls") } });
      servers.push(server);
      return { server };
    } catch (err) {
      return { refusal: String(err.message) };
    }
  }

  test("verify-full with the CA: tickethub serves, and all its connections are encrypted", withLogs(async (t) => {
    if (postgresOnly(t)) return;
    const { server, refusal } = await tryStart(url("127.0.0.1", `sslmode=verify-full&sslrootcert=${ca()}`));
    assert.ok(server, refusal);
    const client = newClient(server);
    const id = await client.mutation(api.events.create, {
      name: "Encrypted", description: "over TLS", location: "Vienna",
      eventDate: Date.now() + 86_400_000, price: 10, totalTickets: 5, userId: "organizer_tls",
    });
    const event = await client.query(api.events.getById, { eventId: id });
    assert.equal(event.name, "Encrypted");

    const { stdout } = await run("psql", [
      url("127.0.0.1", "sslmode=disable"), "-At", "-c",
      `SELECT a.application_name || '=' || s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
       WHERE a.application_name LIKE 'tickethub ${server.database.schema} %' ORDER BY 1`,
    ]);
    const rows = stdout.trim().split("\n").filter(Boolean);
    t.diagnostic(`tickethub's connections: ${rows.join(", ")}`);
    assert.ok(rows.some((r) => r.includes(" writer=")), `no writer connection among ${rows}`);
    assert.ok(rows.some((r) => r.includes(" reader=")), `no reader connection among ${rows}`);
    for (const row of rows) assert.ok(row.endsWith("=true"), `a connection in plain text: ${row}`);
  }));

  test("another CA's roots, or a name the certificate does not carry: refused at start with the reason", withLogs(async (t) => {
    if (postgresOnly(t)) return;
    const otherCa = path.join(work, "other.pem");
    const untrusted = await tryStart(url("127.0.0.1", `sslmode=verify-full&sslrootcert=${otherCa}`));
    assert.ok(untrusted.refusal, "tickethub connected to a server whose certificate it cannot trust");
    assert.match(untrusted.refusal, /DatabaseMisconfigured/, untrusted.refusal);
    assert.match(untrusted.refusal, /UnknownIssuer|unknown issuer/i, untrusted.refusal);

    // `localhost` reaches the same server, but its certificate names 127.0.0.1 and pg.test.
    const wrongName = await tryStart(url("localhost", `sslmode=verify-full&sslrootcert=${ca()}`));
    assert.ok(wrongName.refusal, "verify-full accepted a certificate for another name");
    assert.match(wrongName.refusal, /DatabaseMisconfigured/, wrongName.refusal);
    assert.match(wrongName.refusal, /NotValidForName|not valid for name/i, wrongName.refusal);
    for (const text of [untrusted.refusal, wrongName.refusal]) assert.doesNotMatch(text, /panicked/);
  }));

  test("verify-ca checks the chain but not the name", withLogs(async (t) => {
    if (postgresOnly(t)) return;
    const { server, refusal } = await tryStart(url("localhost", `sslmode=verify-ca&sslrootcert=${ca()}`));
    assert.ok(server, refusal);
    const events = await newClient(server).query(api.events.get, {});
    assert.ok(Array.isArray(events));
  }));

  test("require against a Postgres without TLS is refused; an sslmode typo is refused at the command line", withLogs(async (t) => {
    if (postgresOnly(t)) return;
    const plain = new URL(TEST_DATABASE_URL);
    plain.searchParams.set("sslmode", "require");
    const noTls = await tryStart(plain.toString());
    assert.ok(noTls.refusal, "sslmode=require connected without TLS");
    assert.match(noTls.refusal, /DatabaseMisconfigured/, noTls.refusal);
    assert.match(noTls.refusal, /does not support TLS/, noTls.refusal);

    const typo = await run(binaryPath("tickethub"), [
      "serve", "--data-dir", work, "--database-url", url("127.0.0.1", "sslmode=verify_full"),
    ]).then(() => null, (err) => err);
    assert.ok(typo, "an unknown sslmode was accepted");
    assert.equal(typo.code, 2, typo.stderr);
    assert.match(typo.stderr, /sslmode=verify_full is not a mode Postgres knows/, typo.stderr);
  }));
});
