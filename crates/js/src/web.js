// The web APIs that actions and HTTP actions use, as Convex's runtime provides them: TextEncoder,
// TextDecoder, crypto (getRandomValues, randomUUID, subtle digest and HMAC), URL,
// URLSearchParams, Blob, Headers, Request, Response, fetch and timers; and the Blob side of
// `ctx.storage.store` / `get` in actions. The byte-level work is Rust's
// (`web.rs`: `__tickethub_web`); fetch and timers are serviced by the action driver (`action.rs`)
// through the prelude's `__tickethub_action` hooks.
(function () {
  "use strict";
  const web = globalThis.__tickethub_web;
  delete globalThis.__tickethub_web;
  const hooks = globalThis.__tickethub_action;

  // ---- bytes ----
  function toBytes(data, what) {
    if (data instanceof Uint8Array) return data;
    if (data instanceof ArrayBuffer) return new Uint8Array(data);
    if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    throw new TypeError(`${what} must be an ArrayBuffer or a typed array`);
  }
  function ownBuffer(bytes) {
    return bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength
      ? bytes.buffer
      : bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
  }

  class TextEncoder {
    get encoding() { return "utf-8"; }
    encode(input = "") { return web.utf8Encode(String(input)); }
    encodeInto(input, destination) {
      const bytes = web.utf8Encode(String(input));
      const written = Math.min(bytes.length, destination.length);
      destination.set(bytes.subarray(0, written));
      return { read: String(input).length, written };
    }
  }
  class TextDecoder {
    #fatal;
    #ignoreBOM;
    constructor(label = "utf-8", options = {}) {
      const name = String(label).trim().toLowerCase();
      if (name !== "utf-8" && name !== "utf8" && name !== "unicode-1-1-utf-8") {
        throw new RangeError(`TextDecoder: only UTF-8 is supported, not ${JSON.stringify(label)}`);
      }
      this.#fatal = Boolean(options.fatal);
      this.#ignoreBOM = Boolean(options.ignoreBOM);
    }
    get encoding() { return "utf-8"; }
    get fatal() { return this.#fatal; }
    get ignoreBOM() { return this.#ignoreBOM; }
    decode(input) {
      if (input === undefined) return "";
      return web.utf8Decode(toBytes(input, "TextDecoder.decode's input"), this.#fatal, this.#ignoreBOM);
    }
  }

  // ---- crypto ----
  function hashName(algorithm) {
    const name = typeof algorithm === "string" ? algorithm : algorithm?.name;
    if (typeof name !== "string") throw new TypeError("A hash algorithm must be named");
    return name.toUpperCase();
  }
  class CryptoKey {
    #secret;
    constructor(secret, algorithm, extractable, usages) {
      this.#secret = secret;
      this.type = "secret";
      this.algorithm = algorithm;
      this.extractable = extractable;
      this.usages = usages;
    }
    static secretOf(key, usage) {
      if (!(key instanceof CryptoKey)) throw new TypeError("Expected a CryptoKey");
      if (!key.usages.includes(usage)) throw new TypeError(`This key cannot be used to ${usage}`);
      return key.#secret;
    }
  }
  function hmacKey(key) {
    if (hashName(key.algorithm) !== "HMAC") {
      throw new TypeError(`Only HMAC keys are supported, not ${key.algorithm.name}`);
    }
    return key.algorithm.hash.name;
  }
  const subtle = {
    async digest(algorithm, data) {
      return ownBuffer(web.digest(hashName(algorithm), toBytes(data, "digest's data")));
    },
    async importKey(format, keyData, algorithm, extractable, usages) {
      if (format !== "raw") throw new TypeError(`importKey: only the "raw" format is supported, not ${format}`);
      if (hashName(algorithm) !== "HMAC") {
        throw new TypeError(`importKey: only HMAC keys are supported, not ${hashName(algorithm)}`);
      }
      const hash = hashName(algorithm.hash);
      const secret = toBytes(keyData, "the key").slice();
      return new CryptoKey(
        secret, { name: "HMAC", hash: { name: hash }, length: secret.length * 8 }, Boolean(extractable), [...usages],
      );
    },
    async exportKey(format, key) {
      if (format !== "raw") throw new TypeError(`exportKey: only the "raw" format is supported`);
      if (!key.extractable) throw new TypeError("This key is not extractable");
      return ownBuffer(CryptoKey.secretOf(key, key.usages[0]).slice());
    },
    async sign(algorithm, key, data) {
      const hash = hmacKey(key);
      return ownBuffer(web.hmac(hash, CryptoKey.secretOf(key, "sign"), toBytes(data, "sign's data")));
    },
    async verify(algorithm, key, signature, data) {
      const hash = hmacKey(key);
      return web.hmacVerify(
        hash, CryptoKey.secretOf(key, "verify"), toBytes(signature, "the signature"), toBytes(data, "verify's data"),
      );
    },
  };
  globalThis.crypto = {
    subtle,
    getRandomValues(array) {
      if (!ArrayBuffer.isView(array) || array instanceof Float32Array || array instanceof Float64Array || array instanceof DataView) {
        throw new TypeError("crypto.getRandomValues takes an integer typed array");
      }
      new Uint8Array(array.buffer, array.byteOffset, array.byteLength).set(web.randomBytes(array.byteLength));
      return array;
    },
    randomUUID() {
      const b = web.randomBytes(16);
      b[6] = (b[6] & 0x0f) | 0x40;
      b[8] = (b[8] & 0x3f) | 0x80;
      const hex = Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
      return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
    },
  };
  globalThis.CryptoKey = CryptoKey;

  // ---- URL and URLSearchParams ----
  class URLSearchParams {
    #pairs = [];
    #onChange = null;
    constructor(init = "") {
      if (init instanceof URLSearchParams) this.#pairs = init.#pairs.map(([k, v]) => [k, v]);
      else if (typeof init === "string") this.#pairs = web.formDecode(init);
      else if (init !== null && typeof init === "object") {
        const source = typeof init[Symbol.iterator] === "function" ? init : Object.entries(init);
        for (const pair of source) {
          const [k, v, ...rest] = pair;
          if (rest.length > 0 || pair.length !== 2) throw new TypeError("Each URLSearchParams pair needs a name and a value");
          this.#pairs.push([String(k), String(v)]);
        }
      }
    }
    static linked(query, onChange) {
      const params = new URLSearchParams(query);
      params.#onChange = onChange;
      return params;
    }
    static relink(params, query) { params.#pairs = web.formDecode(query); }
    #changed() { if (this.#onChange) this.#onChange(this.toString()); }
    get size() { return this.#pairs.length; }
    append(name, value) { this.#pairs.push([String(name), String(value)]); this.#changed(); }
    delete(name) { this.#pairs = this.#pairs.filter(([k]) => k !== String(name)); this.#changed(); }
    get(name) { return this.#pairs.find(([k]) => k === String(name))?.[1] ?? null; }
    getAll(name) { return this.#pairs.filter(([k]) => k === String(name)).map(([, v]) => v); }
    has(name) { return this.#pairs.some(([k]) => k === String(name)); }
    set(name, value) {
      name = String(name);
      const at = this.#pairs.findIndex(([k]) => k === name);
      if (at < 0) this.#pairs.push([name, String(value)]);
      else this.#pairs = this.#pairs.filter(([k], i) => k !== name || i === at).map((p, i) => (i === at ? [name, String(value)] : p));
      this.#changed();
    }
    sort() { this.#pairs.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)); this.#changed(); }
    forEach(callback, thisArg) { for (const [k, v] of this.#pairs) callback.call(thisArg, v, k, this); }
    *entries() { for (const [k, v] of this.#pairs) yield [k, v]; }
    *keys() { for (const [k] of this.#pairs) yield k; }
    *values() { for (const [, v] of this.#pairs) yield v; }
    [Symbol.iterator]() { return this.entries(); }
    toString() { return web.formEncode(this.#pairs); }
  }

  class URL {
    #parts;
    #params;
    constructor(url, base) {
      this.#parts = base === undefined ? web.urlParse(String(url)) : web.urlParse(String(url), String(base));
      this.#params = URLSearchParams.linked(this.#parts.search, (query) => {
        this.#parts = web.urlSet(this.#parts.href, "search", query);
      });
    }
    static canParse(url, base) {
      try { new URL(url, base); return true; } catch (_) { return false; }
    }
    #set(part, value) {
      this.#parts = web.urlSet(this.#parts.href, part, String(value));
      URLSearchParams.relink(this.#params, this.#parts.search);
    }
    get href() { return this.#parts.href; }
    set href(v) { this.#set("href", v); }
    get origin() { return this.#parts.origin; }
    get protocol() { return this.#parts.protocol; }
    set protocol(v) { this.#set("protocol", v); }
    get username() { return this.#parts.username; }
    set username(v) { this.#set("username", v); }
    get password() { return this.#parts.password; }
    set password(v) { this.#set("password", v); }
    get host() { return this.#parts.host; }
    set host(v) { this.#set("host", v); }
    get hostname() { return this.#parts.hostname; }
    set hostname(v) { this.#set("hostname", v); }
    get port() { return this.#parts.port; }
    set port(v) { this.#set("port", v); }
    get pathname() { return this.#parts.pathname; }
    set pathname(v) { this.#set("pathname", v); }
    get search() { return this.#parts.search; }
    set search(v) { this.#set("search", v); }
    get hash() { return this.#parts.hash; }
    set hash(v) { this.#set("hash", v); }
    get searchParams() { return this.#params; }
    toString() { return this.href; }
    toJSON() { return this.href; }
  }
  globalThis.URL = URL;
  globalThis.URLSearchParams = URLSearchParams;
  globalThis.TextEncoder = TextEncoder;
  globalThis.TextDecoder = TextDecoder;

  // ---- Headers ----
  const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
  function headerName(name) {
    name = String(name);
    if (!TOKEN.test(name)) throw new TypeError(`Invalid header name ${JSON.stringify(name)}`);
    return name.toLowerCase();
  }
  function headerValue(value) {
    value = String(value).replace(/^[\t\n\r ]+|[\t\n\r ]+$/g, "");
    if (/[\0\r\n]/.test(value)) throw new TypeError("Invalid header value");
    return value;
  }
  class Headers {
    #map = new Map();
    constructor(init) {
      if (init === undefined || init === null) return;
      if (init instanceof Headers) {
        for (const [k, values] of init.#map) this.#map.set(k, [...values]);
      } else if (typeof init[Symbol.iterator] === "function") {
        for (const pair of init) {
          if (pair.length !== 2) throw new TypeError("Each header pair needs a name and a value");
          this.append(pair[0], pair[1]);
        }
      } else {
        for (const name of Object.keys(init)) this.append(name, init[name]);
      }
    }
    append(name, value) {
      const key = headerName(name);
      const values = this.#map.get(key);
      if (values) values.push(headerValue(value));
      else this.#map.set(key, [headerValue(value)]);
    }
    set(name, value) { this.#map.set(headerName(name), [headerValue(value)]); }
    get(name) {
      const values = this.#map.get(headerName(name));
      return values === undefined ? null : values.join(", ");
    }
    getSetCookie() { return [...(this.#map.get("set-cookie") ?? [])]; }
    has(name) { return this.#map.has(headerName(name)); }
    delete(name) { this.#map.delete(headerName(name)); }
    forEach(callback, thisArg) { for (const [k, v] of this.entries()) callback.call(thisArg, v, k, this); }
    *entries() {
      for (const name of [...this.#map.keys()].sort()) {
        if (name === "set-cookie") for (const v of this.#map.get(name)) yield [name, v];
        else yield [name, this.#map.get(name).join(", ")];
      }
    }
    *keys() { for (const [k] of this.entries()) yield k; }
    *values() { for (const [, v] of this.entries()) yield v; }
    [Symbol.iterator]() { return this.entries(); }
  }
  globalThis.Headers = Headers;

  // ---- Blob: bytes and a type, held whole ----
  class Blob {
    #bytes;
    #type;
    constructor(parts = [], options = {}) {
      const chunks = [];
      for (const part of parts) {
        if (part instanceof Blob) chunks.push(part.#bytes);
        else if (part instanceof ArrayBuffer || ArrayBuffer.isView(part)) chunks.push(toBytes(part, "a Blob part"));
        else chunks.push(web.utf8Encode(String(part)));
      }
      const bytes = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
      let at = 0;
      for (const chunk of chunks) {
        bytes.set(chunk, at);
        at += chunk.length;
      }
      this.#bytes = bytes;
      const type = String(options.type ?? "");
      this.#type = /^[\x20-\x7e]*$/.test(type) ? type.toLowerCase() : "";
    }
    static bytesOf(blob) { return blob.#bytes; }
    get size() { return this.#bytes.length; }
    get type() { return this.#type; }
    async arrayBuffer() { return ownBuffer(this.#bytes.slice()); }
    async bytes() { return this.#bytes.slice(); }
    async text() { return web.utf8Decode(this.#bytes, false, false); }
    slice(start = 0, end = this.size, type = "") {
      return new Blob([this.#bytes.slice(start, end)], { type });
    }
  }
  globalThis.Blob = Blob;

  // `ctx.storage.store` / `get` in actions hand the host Blob objects.
  hooks.jsSyscalls["storage/storeBlob"] = async ({ blob, options }) => {
    if (!(blob instanceof Blob)) {
      throw new Error("store() expects a Blob. If you are trying to store a Request, `await request.blob()` will give you the correct input.");
    }
    return JSON.parse(await hooks.request("1.0/storageStore", JSON.stringify({
      blob: web.base64Encode(Blob.bytesOf(blob)), contentType: blob.type, sha256: options?.sha256,
    })));
  };
  hooks.jsSyscalls["storage/getBlob"] = async ({ storageId }) => {
    const result = JSON.parse(await hooks.request("1.0/storageGet", JSON.stringify({ storageId })));
    return result === null ? null : new Blob([web.base64Decode(result.blob)], { type: result.contentType ?? "" });
  };

  // ---- bodies: held whole, as bytes ----
  function extractBody(body, headers) {
    if (body === undefined || body === null) return null;
    let contentType = null;
    let bytes;
    if (typeof body === "string") {
      bytes = web.utf8Encode(body);
      contentType = "text/plain;charset=UTF-8";
    } else if (body instanceof URLSearchParams) {
      bytes = web.utf8Encode(body.toString());
      contentType = "application/x-www-form-urlencoded;charset=UTF-8";
    } else if (body instanceof ArrayBuffer || ArrayBuffer.isView(body)) {
      bytes = toBytes(body, "the body").slice();
    } else if (body instanceof Blob) {
      bytes = Blob.bytesOf(body).slice();
      if (body.type !== "") contentType = body.type;
    } else {
      throw new TypeError("A body must be a string, an ArrayBuffer, a typed array, a Blob or URLSearchParams (streams and FormData are not supported)");
    }
    if (contentType !== null && !headers.has("content-type")) headers.set("content-type", contentType);
    return bytes;
  }
  class Body {
    #bytes;
    #used = false;
    constructor(bytes) { this.#bytes = bytes; }
    static bytesOf(body) { return body.#bytes; }
    get bodyUsed() { return this.#used; }
    get body() {
      if (this.#bytes === null) return null;
      // A one-chunk stream: enough for code that reads `body.getReader()`.
      let done = false;
      const bytes = this.#bytes;
      return {
        getReader: () => ({
          read: async () => (done ? { done: true, value: undefined } : ((done = true), { done: false, value: bytes.slice() })),
          releaseLock() {},
          cancel: async () => { done = true; },
        }),
      };
    }
    #consume() {
      if (this.#used) throw new TypeError("Body has already been used");
      this.#used = true;
      return this.#bytes ?? new Uint8Array(0);
    }
    async arrayBuffer() { return ownBuffer(this.#consume().slice()); }
    async bytes() { return this.#consume().slice(); }
    async text() { return web.utf8Decode(this.#consume(), false, false); }
    async json() { return JSON.parse(await this.text()); }
    async blob() { return new Blob([this.#consume()], { type: this.headers.get("content-type") ?? "" }); }
    async formData() { throw new TypeError("FormData bodies are not supported by tickethub; use text() and URLSearchParams"); }
  }

  const METHODS = ["DELETE", "GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH"];
  class Request extends Body {
    #url;
    #method;
    #headers;
    constructor(input, init = {}) {
      const from = input instanceof Request ? input : null;
      const headers = new Headers(init.headers ?? from?.headers);
      let method = String(init.method ?? from?.method ?? "GET");
      if (METHODS.includes(method.toUpperCase())) method = method.toUpperCase();
      const body = init.body !== undefined ? extractBody(init.body, headers) : from ? Body.bytesOf(from)?.slice() ?? null : null;
      if (body !== null && (method === "GET" || method === "HEAD")) {
        throw new TypeError("Request with GET/HEAD method cannot have body.");
      }
      super(body);
      this.#url = from ? from.url : new URL(String(input)).href;
      this.#method = method;
      this.#headers = headers;
    }
    get url() { return this.#url; }
    get method() { return this.#method; }
    get headers() { return this.#headers; }
    get redirect() { return "follow"; }
    get signal() { return undefined; }
    clone() { return new Request(this); }
  }

  const REDIRECTS = [301, 302, 303, 307, 308];
  /** Init key only fetch() sets: the final URL and whether redirects were followed. */
  const FETCHED = Symbol("fetched");
  class Response extends Body {
    #status;
    #statusText;
    #headers;
    #url;
    #redirected;
    constructor(body = null, init = {}) {
      const status = init.status ?? 200;
      if (!Number.isInteger(status) || status < 200 || status > 599) {
        throw new RangeError(`The status ${status} is outside the range 200 to 599`);
      }
      const headers = new Headers(init.headers);
      const bytes = extractBody(body, headers);
      if (bytes !== null && (status === 204 || status === 205 || status === 304)) {
        throw new TypeError(`A response with status ${status} cannot have a body`);
      }
      super(bytes);
      this.#status = status;
      this.#statusText = String(init.statusText ?? "");
      this.#headers = headers;
      this.#url = init[FETCHED]?.url ?? "";
      this.#redirected = Boolean(init[FETCHED]?.redirected);
    }
    static json(data, init = {}) {
      const headers = new Headers(init.headers);
      if (!headers.has("content-type")) headers.set("content-type", "application/json");
      return new Response(JSON.stringify(data), { ...init, headers });
    }
    static redirect(url, status = 302) {
      if (!REDIRECTS.includes(status)) throw new RangeError(`Invalid redirect status ${status}`);
      return new Response(null, { status, headers: { location: new URL(String(url)).href } });
    }
    get status() { return this.#status; }
    get statusText() { return this.#statusText; }
    get ok() { return this.#status >= 200 && this.#status < 300; }
    get headers() { return this.#headers; }
    get url() { return this.#url; }
    get redirected() { return this.#redirected; }
    get type() { return "default"; }
    clone() {
      return new Response(Body.bytesOf(this)?.slice() ?? null, {
        status: this.#status, statusText: this.#statusText, headers: this.#headers,
        [FETCHED]: { url: this.#url, redirected: this.#redirected },
      });
    }
  }
  globalThis.Request = Request;
  globalThis.Response = Response;

  // ---- fetch: the action driver sends it (only to addresses the server allows) ----
  globalThis.fetch = async function fetch(input, init) {
    hooks.requireAction("fetch()");
    const request = new Request(input, init);
    const bytes = Body.bytesOf(request);
    const answer = JSON.parse(await hooks.request("tickethub/fetch", JSON.stringify({
      url: request.url,
      method: request.method,
      headers: [...request.headers],
      body: bytes === null ? null : web.base64Encode(bytes),
    })));
    const status = answer.status;
    const bodiless = status === 204 || status === 205 || status === 304 || request.method === "HEAD";
    return new Response(bodiless ? null : web.base64Decode(answer.body), {
      // The Response constructor refuses statuses below 200; a fetched 1xx never arrives.
      status: Math.max(status, 200),
      statusText: answer.statusText,
      headers: answer.headers,
      [FETCHED]: { url: answer.url, redirected: answer.redirected },
    });
  };

  // ---- host side of HTTP actions ----
  Object.defineProperty(globalThis, "__tickethub_http", {
    value: {
      request(url, method, headers, bodyBase64) {
        return new Request(url, { method, headers, body: bodyBase64 == null ? undefined : web.base64Decode(bodyBase64) });
      },
      response(value) {
        if (!(value instanceof Response)) {
          throw new TypeError(`An HTTP action must return a Response, not ${value === null ? "null" : typeof value}`);
        }
        const bytes = Body.bytesOf(value);
        return JSON.stringify({
          status: value.status,
          headers: [...value.headers],
          body: bytes === null ? null : web.base64Encode(bytes),
        });
      },
    },
  });
})();
