// The Functions page: every registered function with kind, visibility and argument validator;
// run one with JSON arguments as admin or acting as a user (subject + issuer).

import { call, isAbort } from "./api.js";
import { h, message, replace } from "./dom.js";
import { displayText, duration, parseJson } from "./format.js";

export function functionsPage(root, [selected]) {
  const stop = new AbortController();
  const listBox = h("aside", { class: "fn-list", id: "function-list" });
  const detail = h("section", { class: "fn-detail", id: "function-detail" });
  replace(root, h("div", { class: "functions-page" }, listBox, detail));
  let functions = [];
  let filter = "";

  function renderList() {
    const items = functions.filter((f) => f.path.toLowerCase().includes(filter.toLowerCase()));
    const ul = h(
      "ul",
      {},
      items.map((f) =>
        h(
          "li",
          {},
          h(
            "a",
            { href: `#/functions/${encodeURIComponent(f.path)}`, class: f.path === selected ? "active" : "", dataset: { path: f.path } },
            h("span", { class: "name" }, f.path),
            h("span", { class: `badge kind-${f.kind}` }, f.kind),
            f.visibility !== "public" ? h("span", { class: "badge internal" }, f.visibility) : null,
          ),
        ),
      ),
    );
    replace(listBox.querySelector(".list-body"), ul);
  }

  listBox.append(
    h("h2", {}, "Functions"),
    h("input", {
      type: "search",
      id: "function-filter",
      placeholder: "filter",
      oninput: (e) => {
        filter = e.target.value;
        renderList();
      },
    }),
    h("div", { class: "list-body" }, message("info", "Loading…")),
  );

  function renderDetail(fn) {
    if (!fn) {
      replace(detail, message("info", "Pick a function to see its arguments and run it."));
      return;
    }
    const args = h("textarea", { id: "run-args", rows: 6, spellcheck: "false" }, "{}");
    const asAdmin = h("input", { type: "radio", name: "as", value: "admin", checked: true, id: "as-admin" });
    const asUser = h("input", { type: "radio", name: "as", value: "user", id: "as-user" });
    const subject = h("input", { id: "act-subject", placeholder: "subject, e.g. user_2abc…" });
    const issuer = h("input", { id: "act-issuer", placeholder: "issuer, e.g. https://….clerk.accounts.dev" });
    const claims = h("input", { id: "act-claims", placeholder: "more claims as JSON (optional), e.g. {\"email\": \"a@b.c\"}" });
    const result = h("div", { class: "run-result", id: "run-result" });
    const button = h("button", { type: "submit", id: "run-button" }, "Run");
    const form = h(
      "form",
      {
        id: "run-form",
        onsubmit: async (e) => {
          e.preventDefault();
          const parsed = parseJson(args.value, "The arguments");
          if (!parsed.ok) return replace(result, message("error", parsed.error));
          if (parsed.value === null || typeof parsed.value !== "object" || Array.isArray(parsed.value)) {
            return replace(result, message("error", "The arguments must be a JSON object, e.g. {}."));
          }
          const body = { path: fn.path, args: parsed.value };
          if (asUser.checked) {
            if (!subject.value.trim() || !issuer.value.trim()) {
              return replace(result, message("error", "Acting as a user needs a subject and an issuer."));
            }
            let extra = {};
            if (claims.value.trim()) {
              const c = parseJson(claims.value, "The extra claims");
              if (!c.ok) return replace(result, message("error", c.error));
              extra = c.value;
            }
            body.actAs = { ...extra, subject: subject.value.trim(), issuer: issuer.value.trim() };
          }
          button.disabled = true;
          replace(result, message("info", "Running…"));
          try {
            renderResult(result, await call("run", { method: "POST", body }));
          } catch (error) {
            replace(result, message("error", `${error.code}: ${error.message}`));
          } finally {
            button.disabled = false;
          }
        },
      },
      h("label", { for: "run-args" }, "Arguments (JSON object)"),
      args,
      h(
        "fieldset",
        { class: "identity" },
        h("legend", {}, "Identity"),
        h("label", {}, asAdmin, "admin"),
        h("label", {}, asUser, "act as a user"),
        subject,
        issuer,
        claims,
      ),
      button,
    );
    replace(
      detail,
      h("h2", { id: "function-path" }, fn.path),
      h("p", {}, h("span", { class: `badge kind-${fn.kind}` }, fn.kind), " ", h("span", { class: "badge" }, fn.visibility)),
      h("h3", {}, "Arguments"),
      h("pre", { class: "display", id: "function-args" }, displayText(fn.args ?? "any")),
      fn.kind === "httpAction" ? message("info", "HTTP actions run through their routes, not from here.") : form,
      result,
    );
  }

  (async () => {
    try {
      const r = await call("functions", { signal: stop.signal });
      functions = (r.functions ?? []).slice().sort((a, b) => a.path.localeCompare(b.path));
      renderList();
      renderDetail(functions.find((f) => f.path === selected));
    } catch (error) {
      if (!isAbort(error)) replace(listBox.querySelector(".list-body"), message("error", error.message));
    }
  })();
  return () => stop.abort();
}

function renderResult(box, r) {
  const meta = h("p", { class: "muted", id: "run-meta" }, `${r.ok ? "Succeeded" : "Failed"} in ${duration(r.durationMs)}`, r.requestId ? ` · request ${r.requestId}` : "");
  const parts = [meta];
  if (r.ok) {
    parts.push(h("h3", {}, "Result"), h("pre", { class: "display", id: "run-value" }, displayText(r.value ?? null)));
  } else {
    parts.push(
      h("h3", {}, "Error"),
      h("pre", { class: "display error", id: "run-error" }, r.error?.message ?? "unknown error"),
      r.error?.data !== undefined ? h("pre", { class: "display", id: "run-error-data" }, displayText(r.error.data)) : null,
    );
  }
  const lines = r.logLines ?? [];
  parts.push(h("h3", {}, `Log lines (${lines.length})`), logList(lines));
  replace(box, ...parts);
}

export function logList(lines) {
  return h(
    "ul",
    { class: "log-lines" },
    lines.map((l) => (typeof l === "string" ? h("li", {}, l) : h("li", { class: `level-${l.level}` }, h("span", { class: "level" }, l.level), " ", l.message))),
  );
}
