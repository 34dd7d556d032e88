// The Health page: the health series of the last minutes, charted as inline SVG built with DOM
// APIs (no markup strings), refreshed every few seconds.

import { call, isAbort, sleep } from "./api.js";
import { h, message, replace, s } from "./dom.js";
import { bytes, number } from "./format.js";

const REFRESH_MS = 2_000;
const W = 320;
const H = 120;
const PAD = { left: 44, right: 8, top: 8, bottom: 18 };

/** Titles and units of the series the server is known to send; others are shown by their key. */
function describe(key) {
  const k = key.toLowerCase();
  const unit = /bytes|size|memory|rss/.test(k) ? "bytes" : /ms|duration|p50|p99/.test(k) ? "ms" : "";
  const title = key.replace(/[_.]/g, " ").replace(/([a-z])([A-Z])/g, "$1 $2");
  return { title: title.charAt(0).toUpperCase() + title.slice(1), unit };
}

function fmt(value, unit) {
  if (unit === "bytes") return bytes(value);
  if (unit === "ms") return `${number(value)} ms`;
  return number(value);
}

function chart(key, points) {
  const { title, unit } = describe(key);
  const values = points.map((p) => p[1]).filter((v) => typeof v === "number" && Number.isFinite(v));
  const last = values.length ? values[values.length - 1] : null;
  const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart", role: "img", "aria-label": title });
  const x0 = PAD.left;
  const x1 = W - PAD.right;
  const y0 = H - PAD.bottom;
  const y1 = PAD.top;
  svg.append(s("line", { x1: x0, y1: y0, x2: x1, y2: y0, class: "axis" }), s("line", { x1: x0, y1: y0, x2: x0, y2: y1, class: "axis" }));
  if (points.length >= 1) {
    const tMin = points[0][0];
    const tMax = Math.max(points[points.length - 1][0], tMin + 1);
    const vMax = Math.max(...values, 0) || 1;
    const px = (t) => x0 + ((t - tMin) / (tMax - tMin)) * (x1 - x0);
    const py = (v) => y0 - (v / vMax) * (y0 - y1);
    const coords = points.filter((p) => typeof p[1] === "number").map((p) => `${px(p[0]).toFixed(1)},${py(p[1]).toFixed(1)}`);
    svg.append(
      s("polygon", { points: `${x0},${y0} ${coords.join(" ")} ${px(points[points.length - 1][0]).toFixed(1)},${y0}`, class: "area" }),
      s("polyline", { points: coords.join(" "), class: "line" }),
      s("text", { x: x0 - 4, y: y1 + 8, class: "tick", "text-anchor": "end" }, fmt(vMax, unit)),
      s("text", { x: x0 - 4, y: y0, class: "tick", "text-anchor": "end" }, "0"),
      s("text", { x: x1, y: H - 4, class: "tick", "text-anchor": "end" }, "now"),
      s("text", { x: x0, y: H - 4, class: "tick" }, `-${Math.round((tMax - tMin) / 1000)} s`),
    );
  }
  return h(
    "article",
    { class: "card chart-card", dataset: { series: key } },
    h("h3", {}, title),
    h("p", { class: "big" }, last === null ? "no data" : fmt(last, unit)),
    svg,
  );
}

export function healthPage(root) {
  const stop = new AbortController();
  const grid = h("div", { class: "charts", id: "charts" }, message("info", "Loading…"));
  replace(root, h("div", { class: "toolbar" }, h("h2", {}, "Health"), h("span", { class: "muted" }, "The same figures for Prometheus: GET /metrics")), grid);

  (async () => {
    while (!stop.signal.aborted) {
      try {
        const { series } = await call("health", { signal: stop.signal });
        const keys = Object.keys(series ?? {}).sort();
        replace(grid, keys.length ? keys.map((k) => chart(k, series[k] ?? [])) : message("info", "No health data yet."));
      } catch (error) {
        if (isAbort(error) || error.unauthorized) return;
        replace(grid, message("error", error.message));
      }
      await sleep(REFRESH_MS, stop.signal);
    }
  })();
  return () => stop.abort();
}
