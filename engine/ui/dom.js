// Small DOM helpers shared by the pages. Text always goes in as text, never as HTML.

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2), value);
    } else if (key === "class") {
      el.className = value;
    } else if (value === true) {
      el.setAttribute(key, "");
    } else {
      el.setAttribute(key, String(value));
    }
  }
  append(el, children);
  return el;
}

// Replaces the children of `el`; null, undefined and false children are left out.
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === undefined || child === null || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else if (child instanceof Node) el.appendChild(child);
    else el.appendChild(document.createTextNode(String(child)));
  }
}

// The time in the browser's time zone; the exact UTC time on hover.
export function time(iso) {
  if (!iso) return h("span", { class: "muted" }, "—");
  const date = new Date(iso);
  return h(
    "time",
    { datetime: iso, title: `${date.toString()} (${iso})` },
    date.toLocaleString(undefined, {
      year: "numeric", month: "short", day: "numeric",
      hour: "2-digit", minute: "2-digit", second: "2-digit",
    }),
  );
}

export function relative(iso) {
  if (!iso) return "";
  const seconds = Math.round((Date.now() - new Date(iso).getTime()) / 1000);
  if (seconds < 60) return "just now";
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ago`;
  if (seconds < 86400) return `${Math.floor(seconds / 3600)} h ago`;
  return `${Math.floor(seconds / 86400)} d ago`;
}

export function duration(ms) {
  if (ms === null || ms === undefined) return "—";
  if (ms < 1000) return `${ms} ms`;
  if (ms < 60000) return `${(ms / 1000).toFixed(ms < 10000 ? 2 : 1)} s`;
  return `${Math.floor(ms / 60000)} min ${Math.round((ms % 60000) / 1000)} s`;
}

export function micros(us) {
  if (us < 1000) return `${us} µs`;
  return duration(Math.round(us / 1000));
}

export function bytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

export function badge(status) {
  return h("span", { class: `badge status-${status}`, "data-status": status }, status);
}

export function loading(what) {
  return h("p", { class: "state loading", role: "status" }, h("span", { class: "spinner", "aria-hidden": "true" }), `Loading ${what}…`);
}

export function empty(title, ...hint) {
  return h("div", { class: "state empty" }, h("p", { class: "state-title" }, title), hint.length ? h("p", {}, ...hint) : null);
}

export function failure(error, retry) {
  return h(
    "div",
    { class: "state error", role: "alert" },
    h("p", { class: "state-title" }, "Something went wrong"),
    h("p", {}, error.message || String(error)),
    retry ? h("button", { type: "button", onclick: retry }, "Try again") : null,
  );
}

// Copies `text`; where the clipboard API is not allowed, selects `fallback` (an input or a
// code element) so that the user can copy it by hand. Says which in `status`.
export async function copy(text, button, fallback) {
  const label = button.dataset.label || button.textContent;
  button.dataset.label = label;
  try {
    await navigator.clipboard.writeText(text);
    button.textContent = "Copied";
    button.classList.add("copied");
    announce("Copied to the clipboard");
  } catch (_) {
    if (fallback) {
      if (fallback.select) {
        fallback.focus();
        fallback.select();
      } else {
        const range = document.createRange();
        range.selectNodeContents(fallback);
        const selection = getSelection();
        selection.removeAllRanges();
        selection.addRange(range);
      }
    }
    button.textContent = "Selected: press Ctrl+C";
    announce("The clipboard is not available here; the text is selected, press Ctrl+C to copy it");
  }
  setTimeout(() => {
    button.textContent = label;
    button.classList.remove("copied");
  }, 2000);
}

export function announce(message) {
  const region = document.getElementById("announce");
  if (region) {
    region.textContent = "";
    region.textContent = message;
  }
}

// A field that shows a URL with a Copy URL button.
export function urlField(url, label = "Webhook URL") {
  if (!url) return h("span", { class: "muted" }, "no URL (the file name is not a valid flow id)");
  const input = h("input", { type: "text", readonly: true, value: url, class: "url", "aria-label": label, spellcheck: "false" });
  const button = h("button", { type: "button", class: "copy-url" }, "Copy URL");
  button.addEventListener("click", () => copy(url, button, input));
  return h("div", { class: "url-field" }, input, button);
}

export function navigate(href) {
  window.dispatchEvent(new CustomEvent("weir:navigate", { detail: href }));
}

export function link(href, ...children) {
  return h("a", { href }, ...children);
}

// A short label for a run id (its end is where ULIDs differ).
export function shortId(id) {
  return id ? `…${id.slice(-8)}` : "";
}
