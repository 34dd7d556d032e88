// A local OIDC issuer shaped like a Clerk frontend API, on 127.0.0.1.
//
// It serves `/.well-known/openid-configuration` and `/.well-known/jwks.json`, holds
// RS256 keys generated with `jose`, and signs Clerk-shaped session tokens (with the
// "convex" template's `aud` and profile claims). `rotate()` publishes a new key the
// way Clerk does when an instance's keys change.

import http from "node:http";
import { createHmac, randomBytes } from "node:crypto";
import { SignJWT, exportJWK, exportSPKI, generateKeyPair } from "jose";

const b64url = (input) => Buffer.from(input).toString("base64url");

async function makeKey(kid) {
  const { publicKey, privateKey } = await generateKeyPair("RS256", { extractable: true });
  const jwk = { ...(await exportJWK(publicKey)), kid, alg: "RS256", use: "sig" };
  return { kid, publicKey, privateKey, jwk };
}

export class OidcIssuer {
  constructor() {
    this.server = null;
    this.port = 0;
    this.keys = []; // published keys, newest last
    this.current = null; // key used by default for signing
    this.requests = { discovery: 0, jwks: 0 };
  }

  /** The issuer URL (`iss`), like `https://verb-noun-00.clerk.accounts.dev`: no trailing slash. */
  get issuer() {
    return `http://127.0.0.1:${this.port}`;
  }

  async start() {
    this.current = await makeKey(`ins_${randomBytes(10).toString("hex")}`);
    this.keys = [this.current];
    this.server = http.createServer((req, res) => this._handle(req, res));
    await new Promise((resolve, reject) => {
      this.server.once("error", reject);
      this.server.listen(0, "127.0.0.1", resolve);
    });
    this.port = this.server.address().port;
    return this;
  }

  _handle(req, res) {
    const url = new URL(req.url, this.issuer);
    const send = (status, body) => {
      res.writeHead(status, { "Content-Type": "application/json", "Cache-Control": "no-store" });
      res.end(JSON.stringify(body));
    };
    if (req.method === "GET" && url.pathname === "/.well-known/openid-configuration") {
      this.requests.discovery += 1;
      return send(200, {
        issuer: this.issuer,
        jwks_uri: `${this.issuer}/.well-known/jwks.json`,
        authorization_endpoint: `${this.issuer}/oauth/authorize`,
        token_endpoint: `${this.issuer}/oauth/token`,
        userinfo_endpoint: `${this.issuer}/oauth/userinfo`,
        response_types_supported: ["code"],
        subject_types_supported: ["public"],
        id_token_signing_alg_values_supported: ["RS256"],
        scopes_supported: ["openid", "email", "profile"],
        claims_supported: ["sub", "iss", "aud", "exp", "iat", "name", "email", "picture"],
      });
    }
    if (req.method === "GET" && url.pathname === "/.well-known/jwks.json") {
      this.requests.jwks += 1;
      return send(200, { keys: this.keys.map((k) => k.jwk) });
    }
    return send(404, { errors: [{ message: "not found" }] });
  }

  /**
   * Publishes a new signing key and makes it the default. The old key stays published
   * unless `dropOld` is set. Returns the new kid.
   */
  async rotate({ dropOld = false } = {}) {
    const fresh = await makeKey(`ins_${randomBytes(10).toString("hex")}`);
    this.keys = dropOld ? [fresh] : [...this.keys, fresh];
    this.current = fresh;
    return fresh.kid;
  }

  /** A key pair that the issuer never published (a stranger's). */
  static async strangerKey(kid) {
    return makeKey(kid ?? `ins_${randomBytes(10).toString("hex")}`);
  }

  /** The claims Clerk puts in a session token for `sub`, with the convex template's extras. */
  claimsFor(sub, overrides = {}) {
    const now = Math.floor(Date.now() / 1000);
    const claims = {
      azp: "http://localhost:3000",
      exp: now + 600,
      iat: now - 5,
      nbf: now - 5,
      iss: this.issuer,
      jti: randomBytes(10).toString("hex"),
      sid: `sess_${randomBytes(12).toString("hex")}`,
      sub,
      v: 2,
      fva: [0, -1],
      aud: "convex",
      name: "Test User",
      email: `${sub.toLowerCase()}@example.org`,
      picture: "https://img.example/u.png",
      nickname: sub,
      given_name: "Test",
      family_name: "User",
      updated_at: now - 60,
      phone_number: "+15555550100",
      email_verified: true,
      phone_number_verified: false,
      ...overrides,
    };
    for (const [k, v] of Object.entries(claims)) if (v === undefined) delete claims[k];
    return claims;
  }

  /**
   * Signs an RS256 session token.
   * @param {object} claims full claim set (see claimsFor) or `{sub}` plus overrides
   * @param {object} [opts] `key` (defaults to the current published key), `kid` (header
   *   kid, defaults to the key's), `header` (extra header fields)
   */
  async sign(claims, opts = {}) {
    const key = opts.key ?? this.current;
    const full = !("iss" in claims) && !("exp" in claims) ? this.claimsFor(claims.sub, claims) : claims;
    return new SignJWT(full)
      .setProtectedHeader({ alg: "RS256", kid: opts.kid ?? key.kid, typ: "JWT", ...(opts.header ?? {}) })
      .sign(key.privateKey);
  }

  /** A valid token for `sub` with default claims; `overrides` replace claims. */
  async tokenFor(sub, overrides = {}, opts = {}) {
    return this.sign(this.claimsFor(sub, overrides), opts);
  }

  /** An unsigned `alg: none` token with valid-looking claims. */
  unsignedToken(sub) {
    const header = b64url(JSON.stringify({ alg: "none", typ: "JWT", kid: this.current.kid }));
    const payload = b64url(JSON.stringify(this.claimsFor(sub)));
    return `${header}.${payload}.`;
  }

  /** The algorithm-confusion attack: HS256 whose HMAC key is the RSA public key's PEM text. */
  async hs256WithPublicKey(sub) {
    const pem = await exportSPKI(this.current.publicKey);
    const header = b64url(JSON.stringify({ alg: "HS256", typ: "JWT", kid: this.current.kid }));
    const payload = b64url(JSON.stringify(this.claimsFor(sub)));
    const sig = createHmac("sha256", pem).update(`${header}.${payload}`).digest("base64url");
    return `${header}.${payload}.${sig}`;
  }

  async stop() {
    if (!this.server) return;
    this.server.closeAllConnections?.();
    await new Promise((resolve) => this.server.close(() => resolve()));
    this.server = null;
  }
}

export async function startIssuer() {
  return new OidcIssuer().start();
}

/** Replaces the payload of a signed token with `mutate(claims)`, keeping header and signature. */
export function tamperPayload(token, mutate) {
  const [h, p, s] = token.split(".");
  const claims = JSON.parse(Buffer.from(p, "base64url").toString("utf8"));
  const changed = mutate(claims) ?? claims;
  return `${h}.${b64url(JSON.stringify(changed))}.${s}`;
}
