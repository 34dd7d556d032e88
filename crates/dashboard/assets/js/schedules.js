// The Schedules page: scheduled functions by state (cancel on pending ones) and the crons with
// their schedule, last run and next run.

import { call, isAbort } from "./api.js";
import { h, message, replace } from "./dom.js";
import { cellText, time } from "./format.js";

const STATES = ["pending", "inProgress", "success", "failed", "canceled"];

export function schedulesPage(root) {
  const stop = new AbortController();
  const stateSelect = h(
    "select",
    { id: "job-state", onchange: () => loadJobs() },
    h("option", { value: "" }, "all states"),
    STATES.map((s) => h("option", { value: s, selected: s === "pending" }, s)),
  );
  const jobsBox = h("div", { id: "jobs" });
  const cronsBox = h("div", { id: "crons" });
  const status = h("div", { id: "jobs-status" });
  replace(
    root,
    h("div", { class: "toolbar" }, h("h2", {}, "Scheduled functions"), stateSelect, h("button", { id: "jobs-refresh", onclick: () => loadJobs() }, "Refresh")),
    status,
    jobsBox,
    h("h2", {}, "Crons"),
    cronsBox,
  );

  async function loadJobs() {
    try {
      const { jobs } = await call("scheduled", { query: { state: stateSelect.value }, signal: stop.signal });
      renderJobs(jobs ?? []);
    } catch (error) {
      if (!isAbort(error)) replace(jobsBox, message("error", error.message));
    }
  }

  function jobState(job) {
    const s = job.state;
    return typeof s === "string" ? s : (s?.kind ?? s?.type ?? JSON.stringify(s));
  }

  function renderJobs(jobs) {
    if (jobs.length === 0) return replace(jobsBox, message("info", "No scheduled functions in this state."));
    replace(
      jobsBox,
      h(
        "table",
        { class: "docs", id: "jobs-table" },
        h("thead", {}, h("tr", {}, ["id", "function", "scheduled for", "state", "args", ""].map((c) => h("th", {}, c)))),
        h(
          "tbody",
          {},
          jobs.map((job) => {
            const id = job._id ?? job.id;
            const state = jobState(job);
            return h(
              "tr",
              { dataset: { id: String(id), state } },
              h("td", { class: "mono" }, String(id)),
              h("td", {}, job.name ?? job.path ?? ""),
              h("td", {}, time(job.scheduledTime ?? job.scheduledAt ?? job.ts)),
              h("td", { class: "state" }, state),
              h("td", { class: "mono" }, cellText(job.args, 120)),
              h("td", {}, state === "pending" ? h("button", { class: "danger cancel-job", onclick: () => cancel(id) }, "Cancel") : null),
            );
          }),
        ),
      ),
    );
  }

  async function cancel(id) {
    try {
      await call("scheduled/cancel", { method: "POST", body: { id } });
      replace(status, message("ok", `Canceled ${id}.`));
    } catch (error) {
      replace(status, message("error", `Not canceled: ${error.message}`));
    }
    loadJobs();
  }

  async function loadCrons() {
    try {
      const { crons } = await call("crons", { signal: stop.signal });
      const list = crons ?? [];
      if (list.length === 0) return replace(cronsBox, message("info", "No crons."));
      replace(
        cronsBox,
        h(
          "table",
          { class: "docs", id: "crons-table" },
          h("thead", {}, h("tr", {}, ["name", "function", "schedule", "last run", "next run"].map((c) => h("th", {}, c)))),
          h(
            "tbody",
            {},
            list.map((c) =>
              h(
                "tr",
                {},
                h("td", {}, c.name ?? ""),
                h("td", {}, c.function ?? c.path ?? c.functionPath ?? ""),
                h("td", { class: "mono" }, cellText(c.schedule ?? c.cronspec, 120)),
                h("td", {}, (c.lastRunMs ?? c.lastRun) == null ? "never" : time(c.lastRunMs ?? c.lastRun)),
                h("td", {}, (c.nextRunMs ?? c.nextRun) == null ? "" : time(c.nextRunMs ?? c.nextRun)),
              ),
            ),
          ),
        ),
      );
    } catch (error) {
      if (!isAbort(error)) replace(cronsBox, message("error", error.message));
    }
  }

  loadJobs();
  loadCrons();
  return () => stop.abort();
}
