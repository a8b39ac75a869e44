// The shell: routing in the browser (every page has a URL that reloads to itself), the sign-in
// form when the admin API asks for a token, and the live indicator.

import { ApiError, api, setToken, token } from "./api.js";
import { fill, h } from "./dom.js";
import { onEvent, startLive, stopLive } from "./live.js";
import { webhooksPage } from "./webhooks.js";
import { payloadDialog } from "./payload.js";
import { runPage } from "./run.js";
import { flowPage, flowsPage } from "./flows.js";

const main = document.getElementById("main");
let current = null; // the page shown: { cleanup }

function routeOf(url) {
  const path = url.pathname.replace(/\/+$/, "") || "/";
  let m;
  if (path === "/") return { page: "webhooks" };
  if (path === "/flows") return { page: "flows" };
  if ((m = path.match(/^\/flows\/([^/]+)$/))) return { page: "flow", id: decodeURIComponent(m[1]) };
  if ((m = path.match(/^\/runs\/([^/]+)\/payload$/))) return { page: "payload", id: decodeURIComponent(m[1]) };
  if ((m = path.match(/^\/runs\/([^/]+)$/))) return { page: "run", id: decodeURIComponent(m[1]) };
  return { page: "missing" };
}

function setNav(page) {
  for (const a of document.querySelectorAll("[data-nav]")) {
    const on = a.dataset.nav === page || (page === "flow" && a.dataset.nav === "flows") || ((page === "run" || page === "payload") && a.dataset.nav === "webhooks");
    if (on) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
}

// Renders the page of the current URL. A page is a function (container, params, ctx) that
// fills the container and returns a cleanup function.
async function render() {
  const url = new URL(location.href);
  const route = routeOf(url);
  setNav(route.page);
  const dialog = document.getElementById("dialog");
  if (route.page !== "payload" && dialog.open) dialog.close();
  if (route.page === "payload") {
    // The dialog opens over the Webhooks page.
    if (!current || current.page !== "webhooks") await show("webhooks", webhooksPage, url, {});
    payloadDialog(dialog, route.id, ctx);
    return;
  }
  const pages = { webhooks: webhooksPage, flows: flowsPage, flow: flowPage, run: runPage };
  const page = pages[route.page];
  if (!page) {
    show("missing", (el) => {
      fill(el, h("div", { class: "state empty" }, h("h1", {}, "No such page"), h("p", {}, h("a", { href: "/" }, "Go to the Webhooks page"))));
    }, url, route);
    return;
  }
  await show(route.page, page, url, route);
}

async function show(name, page, url, route) {
  if (current && current.cleanup) current.cleanup();
  const container = h("div", { class: `page page-${name}` });
  fill(main, container);
  current = { page: name, cleanup: null };
  const cleanup = await page(container, { ...route, query: url.searchParams }, ctx);
  if (current && current.page === name) current.cleanup = cleanup;
}

function go(href, { replace = false } = {}) {
  const here = location.pathname + location.search;
  if (!here.endsWith("/payload")) ctx.previous = here;
  if (replace) history.replaceState(null, "", href);
  else history.pushState(null, "", href);
  render();
  if (!href.includes("/payload")) main.focus({ preventScroll: true });
}

// What pages get: navigation, the sign-in hook and the live event stream.
const ctx = {
  go,
  // The page before the one shown, where the Payload dialog returns to.
  previous: null,
  onEvent,
  // Pages call this with an ApiError; a 401 shows the sign-in form.
  handle(error) {
    if (error instanceof ApiError && error.status === 401) {
      signIn(token() ? "That token was not accepted." : null);
      return true;
    }
    return false;
  },
};

function setLive(state) {
  const el = document.getElementById("live");
  el.dataset.state = state;
  el.textContent = { live: "Live", reconnecting: "Reconnecting…", "signed-out": "" }[state] || "";
  if (state === "signed-out") signIn(token() ? "That token was not accepted." : null);
}

let signingIn = false;
function signIn(message) {
  if (signingIn) return;
  signingIn = true;
  stopLive();
  if (current && current.cleanup) current.cleanup();
  current = null;
  const dialog = document.getElementById("dialog");
  if (dialog.open) dialog.close();
  document.getElementById("signout").hidden = true;
  const input = h("input", { id: "token", name: "token", type: "password", autocomplete: "current-password", required: true, spellcheck: "false" });
  const error = h("p", { id: "signin-error", class: "form-error", role: "alert" }, message || "");
  const form = h(
    "form",
    { class: "signin", "aria-labelledby": "signin-title" },
    h("h1", { id: "signin-title" }, "Sign in to Weir"),
    h("p", { class: "muted" }, "This Weir asks for its admin token. It is kept for this browser tab only, until you close it or sign out."),
    h("label", { for: "token" }, "Admin token"),
    input,
    error,
    h("button", { type: "submit", class: "primary" }, "Sign in"),
  );
  if (message) input.setAttribute("aria-describedby", "signin-error");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.textContent = "";
    setToken(input.value.trim());
    try {
      await api("/api/health");
    } catch (e) {
      if (e.status === 401) {
        setToken(null);
        error.textContent = "That token was not accepted.";
        input.setAttribute("aria-describedby", "signin-error");
        input.select();
        return;
      }
      error.textContent = e.message;
      return;
    }
    signingIn = false;
    started();
  });
  fill(main, h("div", { class: "page page-signin" }, form));
  input.focus();
}

function started() {
  document.getElementById("signout").hidden = !token();
  startLive(setLive);
  render();
}

document.addEventListener("click", (event) => {
  if (event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
  const a = event.target.closest("a[href]");
  if (!a || a.target || a.hasAttribute("download")) return;
  const url = new URL(a.href, location.href);
  if (url.origin !== location.origin || url.pathname.startsWith("/api/") || url.pathname.startsWith("/ui/")) return;
  event.preventDefault();
  go(url.pathname + url.search);
});
window.addEventListener("popstate", render);
window.addEventListener("weir:navigate", (e) => go(e.detail));
document.getElementById("signout").addEventListener("click", () => {
  setToken(null);
  signingIn = false;
  signIn(null);
});

// First: does the API answer without (or with the kept) token?
(async () => {
  try {
    await api("/api/health");
    started();
  } catch (e) {
    if (e.status === 401) signIn(token() ? "That token was not accepted." : null);
    else {
      fill(main, h("div", { class: "state error", role: "alert" }, h("p", { class: "state-title" }, "Weir does not answer"), h("p", {}, e.message), h("button", { type: "button", onclick: () => location.reload() }, "Try again")));
    }
  }
})();
