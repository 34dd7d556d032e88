// The Health page: the health series of the last minutes, charted as inline SVG built with DOM
// APIs (no markup strings), refreshed every few seconds. A series is either a list of
// [unixMs, value] points or, for figures by function kind, an object of such lists.

import { call, isAbort, sleep } from "./api.js";
import { h, message, replace, s } from "./dom.js";
import { bytes, number } from "./format.js";

const REFRESH_MS = 2_000;
const W = 320;
const H = 130;
const PAD = { left: 48, right: 8, top: 8, bottom: 18 };
const COLORS = ["#3f51b5", "#e65100", "#2e7d32", "#8e24aa", "#00838f"];

/** The series the server sends, in the order shown; unknown ones follow under their own key. */
const KNOWN = {
  callsPerSec: { title: "Function calls / s", unit: "" },
  p50Ms: { title: "p50 duration", unit: "ms" },
  p99Ms: { title: "p99 duration", unit: "ms" },
  commitsPerSec: { title: "Commits / s", unit: "" },
  batchSize: { title: "Commit batch size", unit: "" },
  httpConnections: { title: "Open HTTP connections", unit: "" },
  wsConnections: { title: "Open WebSockets", unit: "" },
  subscriptions: { title: "Live subscriptions", unit: "" },
  dbBytes: { title: "Database size", unit: "bytes" },
  rssBytes: { title: "Resident memory", unit: "bytes" },
};

function describe(key) {
  if (KNOWN[key]) return KNOWN[key];
  const unit = /bytes|size|memory|rss/i.test(key) ? "bytes" : /ms$/i.test(key) ? "ms" : "";
  return { title: key, unit };
}

function fmt(value, unit) {
  if (unit === "bytes") return bytes(value);
  if (unit === "ms") return `${number(value)} ms`;
  return number(value);
}

const finite = (v) => typeof v === "number" && Number.isFinite(v);

function chart(key, data) {
  const { title, unit } = describe(key);
  // One line per kind (for by-kind figures) or a single line.
  const lines = Array.isArray(data) ? [["", data]] : Object.entries(data ?? {});
  const all = lines.flatMap(([, points]) => points ?? []);
  const values = all.map((p) => p[1]).filter(finite);
  const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart", role: "img", "aria-label": title });
  const x0 = PAD.left;
  const x1 = W - PAD.right;
  const y0 = H - PAD.bottom;
  const y1 = PAD.top;
  svg.append(s("line", { x1: x0, y1: y0, x2: x1, y2: y0, class: "axis" }), s("line", { x1: x0, y1: y0, x2: x0, y2: y1, class: "axis" }));
  let headline = "no data";
  if (all.length > 0) {
    const times = all.map((p) => p[0]);
    const tMin = Math.min(...times);
    const tMax = Math.max(Math.max(...times), tMin + 1);
    const vMax = Math.max(...values, 0) || 1;
    const px = (t) => x0 + ((t - tMin) / (tMax - tMin)) * (x1 - x0);
    const py = (v) => y0 - (v / vMax) * (y0 - y1);
    lines.forEach(([, points], i) => {
      const coords = (points ?? []).filter((p) => finite(p[1])).map((p) => `${px(p[0]).toFixed(1)},${py(p[1]).toFixed(1)}`);
      if (coords.length === 0) return;
      if (lines.length === 1) {
        svg.append(s("polygon", { points: `${coords[0].split(",")[0]},${y0} ${coords.join(" ")} ${coords[coords.length - 1].split(",")[0]},${y0}`, class: "area" }));
      }
      svg.append(s("polyline", { points: coords.join(" "), class: "line", stroke: COLORS[i % COLORS.length] }));
    });
    svg.append(
      s("text", { x: x0 - 4, y: y1 + 8, class: "tick", "text-anchor": "end" }, fmt(vMax, unit)),
      s("text", { x: x0 - 4, y: y0, class: "tick", "text-anchor": "end" }, "0"),
      s("text", { x: x1, y: H - 4, class: "tick", "text-anchor": "end" }, "now"),
      s("text", { x: x0, y: H - 4, class: "tick" }, `-${Math.round((tMax - tMin) / 1000)} s`),
    );
    const latest = lines.map(([, points]) => points?.[points.length - 1]?.[1]).filter(finite);
    headline = fmt(lines.length === 1 ? latest[0] : latest.reduce((a, b) => Math.max(a, b), 0), unit);
    if (lines.length > 1 && key === "callsPerSec") headline = fmt(latest.reduce((a, b) => a + b, 0), unit);
  }
  const legend =
    lines.length > 1
      ? h(
          "ul",
          { class: "legend" },
          lines.map(([name, points], i) =>
            h(
              "li",
              {},
              h("span", { class: `swatch swatch-${i % COLORS.length}` }),
              `${name} ${fmt(points?.[points.length - 1]?.[1] ?? 0, unit)}`,
            ),
          ),
        )
      : null;
  return h("article", { class: "card chart-card", dataset: { series: key } }, h("h3", {}, title), h("p", { class: "big" }, headline), svg, legend);
}

/** This node's place in a cluster, as one line: `single server`, or its id, role and leader. */
export function describeNode(node) {
  if (!node || node.role === "single") return "Role: single server (not in a cluster)";
  const leader = node.role === "leader" ? "this node" : node.leaderUrl ?? "none right now (failover in progress)";
  return `Node ${node.nodeId} · role: ${node.role} · leader: ${leader}`;
}

export function healthPage(root) {
  const stop = new AbortController();
  const grid = h("div", { class: "charts", id: "charts" }, message("info", "Loading…"));
  const node = h("p", { class: "muted", id: "node-role" });
  replace(
    root,
    h("div", { class: "toolbar" }, h("h2", {}, "Health"), h("span", { class: "muted" }, "The same figures for Prometheus: GET /metrics (admin key)")),
    node,
    grid,
  );

  (async () => {
    while (!stop.signal.aborted) {
      try {
        const { series, node: role } = await call("health", { signal: stop.signal });
        replace(node, describeNode(role));
        const keys = Object.keys(series ?? {});
        const order = Object.keys(KNOWN);
        keys.sort((a, b) => (order.indexOf(a) + 1 || 99) - (order.indexOf(b) + 1 || 99) || a.localeCompare(b));
        replace(grid, keys.length ? keys.map((k) => chart(k, series[k])) : message("info", "No health data yet."));
      } catch (error) {
        if (isAbort(error) || error.unauthorized) return;
        replace(grid, message("error", error.message));
      }
      await sleep(REFRESH_MS, stop.signal);
    }
  })();
  return () => stop.abort();
}
