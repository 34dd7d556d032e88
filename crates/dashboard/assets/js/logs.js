// The Logs page: a live stream of function calls (the logs long poll), newest first, filtered by
// function and outcome on the server.

import { call, isAbort, sleep } from "./api.js";
import { h, replace } from "./dom.js";
import { clock, duration } from "./format.js";
import { logList } from "./functions.js";

const LONG_POLL_MS = 25_000;
const MAX_SHOWN = 500;

export function logsPage(root) {
  let stop = new AbortController();
  const pathInput = h("input", { id: "logs-path", placeholder: "function, e.g. users:current", list: "logs-functions" });
  const functionsList = h("datalist", { id: "logs-functions" });
  const outcome = h(
    "select",
    { id: "logs-outcome" },
    h("option", { value: "" }, "all outcomes"),
    h("option", { value: "success" }, "success"),
    h("option", { value: "failure" }, "failure"),
  );
  const status = h("span", { class: "muted", id: "logs-status" }, "connecting…");
  const rows = h("tbody", { id: "log-rows" });
  const table = h(
    "table",
    { class: "logs", id: "logs" },
    h("thead", {}, h("tr", {}, ["time", "function", "kind", "duration", "outcome", "details"].map((c) => h("th", {}, c)))),
    rows,
  );
  const form = h(
    "form",
    { class: "toolbar", id: "logs-filter", onsubmit: (e) => { e.preventDefault(); restart(); } },
    h("h2", {}, "Logs"),
    pathInput,
    functionsList,
    outcome,
    h("button", { type: "submit", id: "logs-apply" }, "Filter"),
    status,
  );
  outcome.addEventListener("change", () => restart());
  replace(root, form, table);

  call("functions", { signal: stop.signal })
    .then((r) => replace(functionsList, (r.functions ?? []).map((f) => h("option", { value: f.path }))))
    .catch(() => {});

  function entryRow(e) {
    const failed = e.outcome !== "success";
    const details = h("td", { class: "details" });
    if (e.error) details.append(h("div", { class: "error-text" }, typeof e.error === "string" ? e.error : (e.error.message ?? JSON.stringify(e.error))));
    if (e.logLines?.length) details.append(logList(e.logLines));
    return h(
      "tr",
      { class: failed ? "failure" : "success", dataset: { path: e.path ?? "", outcome: e.outcome ?? "" } },
      h("td", { title: new Date(e.timestamp).toISOString() }, clock(e.timestamp)),
      h("td", { class: "path" }, e.path ?? ""),
      h("td", {}, e.kind ?? ""),
      h("td", {}, duration(e.durationMs)),
      h("td", { class: "outcome" }, e.outcome ?? ""),
      details,
    );
  }

  async function loop(signal) {
    let cursor = 0;
    while (!signal.aborted) {
      try {
        const r = await call("logs", {
          query: { cursor, timeoutMs: LONG_POLL_MS, path: pathInput.value.trim(), outcome: outcome.value },
          signal,
        });
        if (signal.aborted) return;
        status.textContent = "live";
        cursor = r.cursor ?? cursor;
        for (const e of r.entries ?? []) rows.prepend(entryRow(e));
        while (rows.children.length > MAX_SHOWN) rows.lastChild.remove();
      } catch (error) {
        if (isAbort(error) || error.unauthorized) return;
        status.textContent = `reconnecting (${error.message})`;
        await sleep(2_000, signal);
      }
    }
  }

  function restart() {
    stop.abort();
    stop = new AbortController();
    rows.replaceChildren();
    status.textContent = "connecting…";
    loop(stop.signal);
  }

  loop(stop.signal);
  return () => stop.abort();
}
