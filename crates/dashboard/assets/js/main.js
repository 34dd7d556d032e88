// The dashboard shell: login with the admin key, the left nav and hash routing
// (#/data/<table>, #/functions, #/logs, #/schedules, #/schema, #/health).

import { adminKey, call, forgetAdminKey, setAdminKey, setUnauthorizedHandler } from "./api.js";
import { h, message, replace } from "./dom.js";
import { dataPage } from "./data.js";
import { functionsPage } from "./functions.js";
import { logsPage } from "./logs.js";
import { schedulesPage } from "./schedules.js";
import { schemaPage } from "./schema.js";
import { healthPage } from "./health.js";

const PAGES = [
  { id: "data", title: "Data", render: dataPage },
  { id: "functions", title: "Functions", render: functionsPage },
  { id: "logs", title: "Logs", render: logsPage },
  { id: "schedules", title: "Schedules", render: schedulesPage },
  { id: "schema", title: "Schema", render: schemaPage },
  { id: "health", title: "Health", render: healthPage },
];

const root = document.getElementById("app");
// The open page's stop function (long polls and timers end when the page is left).
let stopPage = null;

function stopCurrent() {
  if (stopPage) {
    try {
      stopPage();
    } catch {
      // a page that fails to stop must not break navigation
    }
  }
  stopPage = null;
}

function showLogin(note) {
  stopCurrent();
  const input = h("input", {
    type: "password",
    id: "admin-key",
    name: "admin-key",
    autocomplete: "off",
    placeholder: "admin key",
    required: true,
  });
  const status = h("div", { id: "login-status" });
  if (note) status.append(message("error", note));
  const button = h("button", { type: "submit", id: "login-button" }, "Log in");
  const form = h(
    "form",
    {
      class: "login",
      id: "login-form",
      onsubmit: async (event) => {
        event.preventDefault();
        const key = input.value.trim();
        if (!key) return;
        button.disabled = true;
        replace(status, message("info", "Checking the key…"));
        try {
          await call("tables", { key });
          setAdminKey(key);
          showShell();
        } catch (error) {
          const text = error.unauthorized
            ? "That admin key was refused by this deployment. Use the key printed by `tickethub serve` (or given with --admin-key)."
            : `Could not reach the deployment: ${error.message}`;
          replace(status, message("error", text));
        } finally {
          button.disabled = false;
        }
      },
    },
    h("h1", {}, "tickethub"),
    h("p", { class: "muted" }, "Log in with this deployment's admin key. It stays in this tab only."),
    h("label", { for: "admin-key" }, "Admin key"),
    input,
    button,
    status,
  );
  replace(root, h("main", { class: "login-page" }, form));
  input.focus();
}

let main = null;
let nav = null;

function showShell() {
  nav = h(
    "nav",
    { class: "nav" },
    h("div", { class: "brand" }, "tickethub"),
    PAGES.map((page) => h("a", { href: `#/${page.id}`, id: `nav-${page.id}`, dataset: { page: page.id } }, page.title)),
    h("span", { class: "grow" }),
    h(
      "button",
      {
        class: "link",
        id: "logout",
        onclick: () => {
          forgetAdminKey();
          location.hash = "";
          showLogin();
        },
      },
      "Log out",
    ),
  );
  main = h("main", { class: "content", id: "content" });
  replace(root, h("div", { class: "shell" }, nav, main));
  route();
}

function route() {
  if (!adminKey()) return showLogin();
  if (!main) return showShell();
  stopCurrent();
  const [pageId, ...rest] = location.hash.replace(/^#\/?/, "").split("/");
  const page = PAGES.find((p) => p.id === pageId) ?? PAGES[0];
  for (const link of nav.querySelectorAll("a[data-page]")) {
    link.classList.toggle("active", link.dataset.page === page.id);
  }
  main.replaceChildren();
  main.dataset.page = page.id;
  try {
    stopPage = page.render(main, rest.map(decodeURIComponent)) ?? null;
  } catch (error) {
    replace(main, message("error", `This page failed: ${error.message}`));
  }
}

setUnauthorizedHandler(() => {
  forgetAdminKey();
  main = null;
  showLogin("The admin key is no longer accepted; log in again.");
});

window.addEventListener("hashchange", route);
route();
