// Turning values into text. The server sends documents in Convex's display form (`123n` for an
// int64, bytes as base64); these helpers only lay that out, as text.

/** Pretty text of a display-form value (a string from the server is shown as it is). */
export function displayText(value, indent = 2) {
  if (typeof value === "string") return value;
  return JSON.stringify(value, null, indent) ?? "undefined";
}

/** One-line text for a table cell, shortened. */
export function cellText(value, max = 80) {
  let text;
  if (value === undefined) text = "";
  else if (typeof value === "string") text = value;
  else text = JSON.stringify(value);
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

/** A display-form document's field: works for an object or for a field map. */
export function field(displayDoc, name) {
  if (displayDoc && typeof displayDoc === "object") return displayDoc[name];
  return undefined;
}

export function time(ms) {
  if (typeof ms !== "number" || !Number.isFinite(ms)) return String(ms ?? "");
  const d = new Date(ms);
  return d.toISOString().replace("T", " ").replace("Z", "");
}

export function clock(ms) {
  if (typeof ms !== "number") return String(ms ?? "");
  return new Date(ms).toTimeString().slice(0, 8);
}

export function duration(ms) {
  if (typeof ms !== "number") return "";
  if (ms < 1) return `${Math.round(ms * 1000)} µs`;
  if (ms < 1000) return `${ms.toFixed(ms < 10 ? 2 : 0)} ms`;
  return `${(ms / 1000).toFixed(2)} s`;
}

export function number(n) {
  if (typeof n !== "number") return String(n ?? "");
  return n.toLocaleString("en-US", { maximumFractionDigits: 2 });
}

export function bytes(n) {
  if (typeof n !== "number") return String(n ?? "");
  const units = ["B", "KiB", "MiB", "GiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i += 1;
  }
  return `${n.toFixed(i === 0 ? 0 : 1)} ${units[i]}`;
}

/** Parse JSON typed by a person; returns {ok, value} or {ok: false, error} with a readable message. */
export function parseJson(text, what) {
  const trimmed = text.trim();
  if (trimmed === "") return { ok: false, error: `${what} is empty; write JSON, e.g. {} or "text".` };
  try {
    return { ok: true, value: JSON.parse(trimmed) };
  } catch (e) {
    return { ok: false, error: `${what} is not valid JSON: ${e.message}` };
  }
}
