// The Data page: tables (user and system apart, with counts), a table's documents in pages
// (newest first, or by an index with equality and range bounds), a document in display form,
// insert / edit as a patch / delete, and live updates through the `changes` long poll.

import { call, isAbort, sleep } from "./api.js";
import { h, message, replace } from "./dom.js";
import { cellText, displayText, number, parseJson } from "./format.js";

const PAGE_SIZES = [25, 50, 100, 250, 500];
const LONG_POLL_MS = 25_000;
const SYSTEM_FIELDS = new Set(["_id", "_creationTime"]);

export function dataPage(root, [tableArg]) {
  const stop = new AbortController();
  const state = {
    tables: [],
    schema: null,
    table: tableArg || null,
    index: "",
    order: "desc",
    eq: [],
    gte: "",
    lt: "",
    pageSize: 50,
    cursors: [null], // cursors[i] opens page i
    pageNo: 0,
    page: null,
    openId: null,
    loadSeq: 0, // numbers the page requests; only the newest one's answer is shown
  };

  const tablesBox = h("aside", { class: "tables", id: "tables" });
  const view = h("section", { class: "table-view", id: "table-view" });
  const docBox = h("section", { class: "doc-panel", id: "doc-panel" });
  replace(root, h("div", { class: "data-page" }, tablesBox, h("div", { class: "data-main" }, view, docBox)));

  async function loadTables() {
    try {
      const { tables } = await call("tables", { signal: stop.signal });
      state.tables = tables ?? [];
      renderTables();
    } catch (error) {
      if (!isAbort(error)) replace(tablesBox, message("error", `Tables: ${error.message}`));
    }
  }

  function renderTables() {
    const user = state.tables.filter((t) => !t.system);
    const system = state.tables.filter((t) => t.system);
    const list = (items) =>
      h(
        "ul",
        {},
        items.map((t) =>
          h(
            "li",
            {},
            h(
              "a",
              {
                href: `#/data/${encodeURIComponent(t.name)}`,
                class: t.name === state.table ? "active" : "",
                dataset: { table: t.name },
              },
              h("span", { class: "name" }, t.name),
              h("span", { class: "count", dataset: { count: String(t.count) } }, number(t.count)),
            ),
          ),
        ),
      );
    replace(
      tablesBox,
      h("h2", {}, "Tables"),
      list(user),
      h("h3", {}, "System tables"),
      list(system),
    );
  }

  async function loadSchema() {
    if (state.schema) return state.schema;
    try {
      state.schema = await call("schema", { signal: stop.signal });
    } catch {
      state.schema = { tables: [] };
    }
    return state.schema;
  }

  function tableSchema() {
    return state.schema?.tables?.find((t) => t.name === state.table) ?? null;
  }

  function currentIndex() {
    return tableSchema()?.indexes?.find((i) => i.name === state.index) ?? null;
  }

  function query() {
    const q = { table: state.table, limit: state.pageSize, cursor: state.cursors[state.pageNo] ?? undefined, order: state.order };
    if (state.index) {
      q.index = state.index;
      const eq = [];
      for (const raw of state.eq) {
        if (raw === "") break;
        eq.push(looseJson(raw));
      }
      if (eq.length) q.eq = JSON.stringify(eq);
      if (state.gte !== "") q.gte = JSON.stringify(looseJson(state.gte));
      if (state.lt !== "") q.lt = JSON.stringify(looseJson(state.lt));
    }
    return q;
  }

  async function loadPage() {
    if (!state.table) {
      replace(view, message("info", "Pick a table on the left."));
      return;
    }
    // Only the newest request's answer is shown: on a slow store an earlier, wider page (say,
    // the one asked for when an index was picked) can arrive after the one the user asked next.
    const seq = ++state.loadSeq;
    try {
      const page = await call("documents", { query: query(), signal: stop.signal });
      if (seq !== state.loadSeq) return;
      state.page = page;
      state.cursors[state.pageNo + 1] = state.page.continueCursor;
      renderView();
    } catch (error) {
      if (isAbort(error) || seq !== state.loadSeq) return;
      state.page = null;
      renderView(error);
    }
  }

  function renderView(error) {
    const schema = tableSchema();
    const indexSelect = h(
      "select",
      {
        id: "index-select",
        onchange: (e) => {
          state.index = e.target.value;
          state.eq = [];
          state.gte = state.lt = "";
          resetPaging();
          renderView();
          loadPage();
        },
      },
      h("option", { value: "", selected: state.index === "" }, "by creation time"),
      (schema?.indexes ?? []).map((i) =>
        h("option", { value: i.name, selected: state.index === i.name }, `${i.name} (${i.fields.join(", ")})`),
      ),
    );
    const orderSelect = h(
      "select",
      {
        id: "order-select",
        onchange: (e) => {
          state.order = e.target.value;
          resetPaging();
          loadPage();
        },
      },
      h("option", { value: "desc", selected: state.order === "desc" }, "newest first"),
      h("option", { value: "asc", selected: state.order === "asc" }, "oldest first"),
    );
    const sizeSelect = h(
      "select",
      {
        id: "page-size",
        onchange: (e) => {
          state.pageSize = Number(e.target.value);
          resetPaging();
          loadPage();
        },
      },
      PAGE_SIZES.map((n) => h("option", { value: String(n), selected: n === state.pageSize }, `${n} per page`)),
    );

    const bounds = h("form", { class: "bounds", id: "index-bounds", onsubmit: (e) => { e.preventDefault(); applyBounds(e.target); } });
    const index = currentIndex();
    if (index) {
      index.fields.forEach((f, i) => {
        bounds.append(
          h("label", {}, `${f} =`, h("input", { name: `eq${i}`, value: state.eq[i] ?? "", placeholder: "JSON or text", class: "eq", oninput: (e) => { state.eq[i] = e.target.value; } })),
        );
      });
      bounds.append(
        h("label", {}, "range ≥", h("input", { name: "gte", value: state.gte, placeholder: "next field ≥", oninput: (e) => { state.gte = e.target.value; } })),
        h("label", {}, "<", h("input", { name: "lt", value: state.lt, placeholder: "next field <", oninput: (e) => { state.lt = e.target.value; } })),
        h("button", { type: "submit", id: "apply-bounds" }, "Apply"),
      );
    }

    const toolbar = h(
      "div",
      { class: "toolbar" },
      h("h2", { id: "table-title" }, state.table),
      indexSelect,
      orderSelect,
      sizeSelect,
      h("button", { id: "insert-button", onclick: () => openInsert() }, "Insert document"),
    );

    const page = state.page;
    let body;
    if (error) {
      body = message("error", error.message);
    } else if (!page) {
      body = message("info", "Loading…");
    } else {
      body = documentsTable(page);
    }
    const pager = h(
      "div",
      { class: "pager" },
      h("button", { id: "prev-page", disabled: state.pageNo === 0, onclick: () => { state.pageNo -= 1; loadPage(); } }, "← Previous"),
      h("span", { id: "page-info" }, `Page ${state.pageNo + 1}${page ? ` · ${page.page.length} documents${page.isDone ? " · last page" : ""}` : ""}`),
      h("button", { id: "next-page", disabled: !page || page.isDone, onclick: () => { state.pageNo += 1; loadPage(); } }, "Next →"),
    );
    replace(view, toolbar, index ? bounds : null, body, pager);
  }

  function applyBounds(form) {
    const index = currentIndex();
    state.eq = index.fields.map((_, i) => form.elements[`eq${i}`].value.trim());
    state.gte = form.elements.gte.value.trim();
    state.lt = form.elements.lt.value.trim();
    resetPaging();
    loadPage();
  }

  function resetPaging() {
    state.cursors = [null];
    state.pageNo = 0;
  }

  function documentsTable(page) {
    const docs = page.page ?? [];
    const shown = page.display ?? docs;
    if (docs.length === 0) return message("info", "No documents.");
    const columns = ["_id"];
    for (const doc of docs) for (const k of Object.keys(doc)) if (!columns.includes(k) && k !== "_creationTime") columns.push(k);
    columns.push("_creationTime");
    return h(
      "table",
      { class: "docs", id: "documents" },
      h("thead", {}, h("tr", {}, columns.map((c) => h("th", {}, c)))),
      h(
        "tbody",
        {},
        docs.map((doc, i) => {
          const disp = shown[i];
          return h(
            "tr",
            { dataset: { id: doc._id }, class: doc._id === state.openId ? "open" : "", onclick: () => openDocument(doc._id) },
            columns.map((c) => h("td", {}, cellText(disp && typeof disp === "object" ? disp[c] : doc[c]))),
          );
        }),
      ),
    );
  }

  async function openDocument(id) {
    state.openId = id;
    for (const tr of view.querySelectorAll("tr[data-id]")) tr.classList.toggle("open", tr.dataset.id === id);
    replace(docBox, message("info", "Loading the document…"));
    try {
      const { document: doc, display } = await call("document", { query: { id }, signal: stop.signal });
      if (!doc) {
        replace(docBox, message("info", "This document no longer exists."));
        return;
      }
      renderDocument(doc, display);
    } catch (error) {
      if (!isAbort(error)) replace(docBox, message("error", error.message));
    }
  }

  function renderDocument(doc, display) {
    const fields = Object.entries(doc).filter(([k]) => !SYSTEM_FIELDS.has(k));
    const editor = fieldEditor(fields.map(([name, value]) => ({ name, value: JSON.stringify(value), original: JSON.stringify(value) })));
    const status = h("div", { class: "form-status", id: "edit-status" });
    const deleteButton = h(
      "button",
      {
        class: "danger",
        id: "delete-button",
        onclick: async () => {
          if (deleteButton.dataset.armed !== "yes") {
            deleteButton.dataset.armed = "yes";
            deleteButton.textContent = "Click again to delete";
            return;
          }
          try {
            await call("documents", { method: "DELETE", body: { id: doc._id } });
            state.openId = null;
            replace(docBox, message("ok", `Deleted ${doc._id}.`));
            loadPage();
            loadTables();
          } catch (error) {
            replace(status, message("error", error.message));
          }
        },
      },
      "Delete",
    );
    const form = h(
      "form",
      {
        id: "edit-form",
        onsubmit: async (e) => {
          e.preventDefault();
          const built = editor.collect({ onlyChanged: true });
          if (!built.ok) {
            replace(status, message("error", "Fix the fields marked in red; nothing was saved."));
            return;
          }
          const patch = built.value;
          if (Object.keys(patch).length === 0) {
            replace(status, message("info", "Nothing changed."));
            return;
          }
          replace(status, message("info", "Saving…"));
          try {
            await call("documents", { method: "PATCH", body: { id: doc._id, patch } });
            replace(status, message("ok", "Saved."));
            await openDocument(doc._id);
            replace(docBox.querySelector("#edit-status") ?? status, message("ok", "Saved."));
            loadPage();
          } catch (error) {
            editor.showError(error);
            replace(status, message("error", `Not saved: ${error.message}`));
          }
        },
      },
      h("h3", {}, "Edit (saved as a patch)"),
      editor.el,
      h("div", { class: "row" }, h("button", { type: "submit", id: "save-button" }, "Save"), deleteButton),
      status,
    );
    replace(
      docBox,
      h("div", { class: "doc-head" }, h("h3", {}, "Document"), h("button", { class: "link", onclick: () => replace(docBox) }, "Close")),
      h("pre", { class: "display", id: "document-display" }, displayText(display ?? doc)),
      form,
    );
  }

  async function openInsert() {
    const schema = await loadSchema();
    const t = schema.tables?.find((x) => x.name === state.table);
    const editor = fieldEditor((t?.fields ?? []).map((f) => ({ name: f.name, value: "", hint: f.validator })));
    const status = h("div", { class: "form-status", id: "insert-status" });
    const form = h(
      "form",
      {
        id: "insert-form",
        onsubmit: async (e) => {
          e.preventDefault();
          const built = editor.collect({ onlyChanged: false });
          if (!built.ok) {
            replace(status, message("error", "Fix the fields marked in red; nothing was written."));
            return;
          }
          try {
            const result = await call("documents", { method: "POST", body: { table: state.table, document: built.value } });
            replace(status, message("ok", `Inserted ${result?.id ?? result?._id ?? ""}.`));
            loadPage();
            loadTables();
          } catch (error) {
            editor.showError(error);
            replace(status, message("error", `Not inserted: ${error.message}`));
          }
        },
      },
      h("h3", {}, `Insert into ${state.table}`),
      h("p", { class: "muted" }, "Values are JSON (\"text\", 12, true, {\"$integer\": …}); empty fields are left out."),
      editor.el,
      h("button", { type: "submit", id: "insert-submit" }, "Insert"),
      status,
    );
    replace(docBox, form);
  }

  async function changesLoop() {
    let since;
    while (!stop.signal.aborted) {
      try {
        const r = await call("changes", { query: { since, timeoutMs: LONG_POLL_MS }, signal: stop.signal });
        const first = since === undefined;
        since = r.ts;
        const tables = Array.isArray(r.tables) ? r.tables : Object.keys(r.tables ?? {});
        if (!first && tables.length > 0) {
          loadTables();
          if (state.table && tables.includes(state.table)) {
            await loadPage();
            if (state.openId) openDocumentQuietly(state.openId);
          }
        }
      } catch (error) {
        if (isAbort(error) || error.unauthorized) return;
        await sleep(2_000, stop.signal);
      }
    }
  }

  // A live update refreshes the display of an open document but leaves an edit in progress alone.
  async function openDocumentQuietly(id) {
    const pre = docBox.querySelector("#document-display");
    if (!pre) return;
    try {
      const { document: doc, display } = await call("document", { query: { id }, signal: stop.signal });
      if (doc) pre.textContent = displayText(display ?? doc);
    } catch {
      // the next change or a click will try again
    }
  }

  (async () => {
    await Promise.all([loadTables(), loadSchema()]);
    if (!state.table) {
      const first = state.tables.find((t) => !t.system);
      if (first) {
        location.replace(`#/data/${encodeURIComponent(first.name)}`);
        return;
      }
    }
    renderView();
    await loadPage();
  })();
  changesLoop();
  return () => stop.abort();
}

/** Index bound text: JSON if it parses, else the text as a string. */
function looseJson(text) {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

/**
 * Rows of (field name, JSON value). `collect` checks every value and marks bad JSON next to its
 * field; `showError` puts a server validation error next to the field its `path` names.
 */
function fieldEditor(rows) {
  const list = h("div", { class: "fields" });
  const entries = [];
  const general = h("div", { class: "field-error", id: "form-error" });

  function addRow(row) {
    const name = h("input", { class: "field-name", value: row.name ?? "", placeholder: "field", readonly: row.original !== undefined });
    const value = h("input", { class: "field-value", value: row.value ?? "", placeholder: row.hint ?? "JSON value" });
    const error = h("div", { class: "field-error" });
    const remove = h("input", { type: "checkbox", class: "field-remove", title: "remove this field" });
    const el = h(
      "div",
      { class: "field", dataset: { field: row.name ?? "" } },
      name,
      value,
      row.original !== undefined ? h("label", { class: "remove" }, remove, "remove") : null,
      error,
    );
    name.addEventListener("input", () => (el.dataset.field = name.value.trim()));
    entries.push({ row, name, value, error, remove, el });
    list.append(el);
  }
  rows.forEach(addRow);

  return {
    el: h("div", {}, list, h("button", { type: "button", class: "link", onclick: () => addRow({}) }, "+ field"), general),
    collect({ onlyChanged }) {
      let ok = true;
      const value = {};
      for (const e of entries) {
        e.error.replaceChildren();
        e.el.classList.remove("invalid");
        const name = e.name.value.trim();
        if (!name) continue;
        if (e.row.original !== undefined && e.remove.checked) {
          // Convex's patch removes a field set to undefined; the API spells it {"$undefined": true}.
          value[name] = { $undefined: true };
          continue;
        }
        const text = e.value.value;
        if (text.trim() === "") continue;
        if (onlyChanged && e.row.original !== undefined && text.trim() === e.row.original) continue;
        const parsed = parseJson(text, `The value of ${name}`);
        if (!parsed.ok) {
          ok = false;
          e.el.classList.add("invalid");
          e.error.append(message("error", parsed.error));
          continue;
        }
        value[name] = parsed.value;
      }
      general.replaceChildren();
      return { ok, value };
    },
    showError(error) {
      const field = fieldOfPath(error.path);
      const target = entries.find((e) => field && e.name.value.trim() === field);
      const text = `${error.code}: ${error.message}`;
      if (target) {
        target.el.classList.add("invalid");
        replace(target.error, message("error", text));
      } else {
        replace(general, message("error", text));
      }
    },
  };
}

/** The top-level field a validation error's path names (`email`, `.email`, `/email/0`, `email[0]`). */
function fieldOfPath(path) {
  if (path === undefined || path === null) return null;
  const text = Array.isArray(path) ? String(path[0] ?? "") : String(path);
  const m = text.replace(/^[./$]+/, "").match(/^[^./[\]]+/);
  return m ? m[0] : null;
}
