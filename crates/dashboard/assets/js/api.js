// The admin key and every call to the dashboard API. The key lives in sessionStorage only and is
// sent as `Authorization: Convex <key>`: never in a URL, never in a cookie.

const KEY = "tickethub.adminKey";

export function adminKey() {
  return sessionStorage.getItem(KEY);
}

export function setAdminKey(key) {
  sessionStorage.setItem(KEY, key);
}

export function forgetAdminKey() {
  sessionStorage.removeItem(KEY);
}

/** An error answer of the API: `{code, message[, path]}` plus the HTTP status. */
export class ApiError extends Error {
  constructor(status, body) {
    super(body?.message ?? `HTTP ${status}`);
    this.status = status;
    this.code = body?.code ?? "HttpError";
    this.path = body?.path;
    this.body = body;
  }
  get unauthorized() {
    return this.status === 401 || this.status === 403;
  }
}

let onUnauthorized = () => {};
/** Called when a stored key stops working (e.g. the server restarted with another key). */
export function setUnauthorizedHandler(fn) {
  onUnauthorized = fn;
}

/**
 * Call `/api/dashboard/<endpoint>`. `query` is an object of search parameters (undefined values
 * left out); `body` is sent as JSON. Resolves to the parsed JSON answer.
 */
export async function call(endpoint, { method = "GET", query, body, key = adminKey(), signal } = {}) {
  const url = new URL(`/api/dashboard/${endpoint}`, location.origin);
  for (const [name, value] of Object.entries(query ?? {})) {
    if (value !== undefined && value !== null && value !== "") url.searchParams.set(name, String(value));
  }
  const headers = { Authorization: `Convex ${key ?? ""}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const res = await fetch(url, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    signal,
    credentials: "omit",
    cache: "no-store",
  });
  const text = await res.text();
  let json = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    json = null;
  }
  if (!res.ok) {
    const error = new ApiError(res.status, json ?? { message: text || `HTTP ${res.status}` });
    if (error.unauthorized && key === adminKey()) onUnauthorized(error);
    throw error;
  }
  return json;
}

/** True for the error an aborted fetch rejects with. */
export function isAbort(error) {
  return error?.name === "AbortError";
}

export const sleep = (ms, signal) =>
  new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener("abort", () => {
      clearTimeout(timer);
      resolve();
    });
  });
