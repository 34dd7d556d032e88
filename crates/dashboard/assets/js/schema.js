// The Schema page: tables, fields with validators and indexes, as loaded from schema.toml.

import { call, isAbort } from "./api.js";
import { h, message, replace } from "./dom.js";
import { cellText } from "./format.js";

export function schemaPage(root) {
  const stop = new AbortController();
  replace(root, h("h2", {}, "Schema"), message("info", "Loading…"));
  call("schema", { signal: stop.signal })
    .then(({ tables }) => {
      const sorted = (tables ?? []).slice().sort((a, b) => Number(a.system) - Number(b.system) || a.name.localeCompare(b.name));
      replace(
        root,
        h("h2", {}, "Schema"),
        h(
          "div",
          { class: "schema", id: "schema" },
          sorted.map((t) =>
            h(
              "article",
              { class: "card", dataset: { table: t.name } },
              h("h3", {}, t.name, t.system ? h("span", { class: "badge" }, "system") : null, t.validate === false ? h("span", { class: "badge" }, "not validated") : null),
              h(
                "table",
                { class: "fields" },
                h("tbody", {}, (t.fields ?? []).map((f) => h("tr", {}, h("td", { class: "name" }, f.name), h("td", { class: "mono" }, cellText(f.validator, 200))))),
              ),
              h("h4", {}, "Indexes"),
              h(
                "ul",
                { class: "indexes" },
                (t.indexes ?? []).map((i) => h("li", {}, h("span", { class: "name" }, i.name), " ", h("span", { class: "mono" }, `[${(i.fields ?? []).join(", ")}]`))),
              ),
            ),
          ),
        ),
      );
    })
    .catch((error) => {
      if (!isAbort(error)) replace(root, h("h2", {}, "Schema"), message("error", error.message));
    });
  return () => stop.abort();
}
