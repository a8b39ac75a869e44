// The Payload dialog (its own URL, /runs/{id}/payload): the request as it arrived, the body
// pretty-printed by its kind, a Raw view of the exact bytes, Copy and Download. Credentials of
// the flow's verify scheme are shown as •••.

import { api, rawPayload } from "./api.js";
import { bytes, copy, failure, fill, h, loading, time } from "./dom.js";
import { jsonBlock } from "./json.js";

const MASK = "•••";
const HEX_PREVIEW = 512;

function table(caption, rows, empty) {
  if (rows.length === 0) return h("p", { class: "muted" }, empty);
  return h(
    "div",
    { class: "table-wrap" },
    h(
      "table",
      { class: "kv" },
      h("caption", { class: "visually-hidden" }, caption),
      h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Name"), h("th", { scope: "col" }, "Value"))),
      h("tbody", {}, rows.map(([k, v]) => h("tr", {}, h("th", { scope: "row" }, k), h("td", {}, v)))),
    ),
  );
}

function flat(object) {
  const rows = [];
  for (const [k, v] of Object.entries(object || {})) {
    if (Array.isArray(v)) for (const item of v) rows.push([k, item]);
    else rows.push([k, typeof v === "string" ? v : JSON.stringify(v)]);
  }
  return rows;
}

export function hexPreview(data) {
  const lines = [];
  const n = Math.min(data.length, HEX_PREVIEW);
  for (let at = 0; at < n; at += 16) {
    const chunk = data.slice(at, Math.min(at + 16, n));
    const hex = [...chunk].map((b) => b.toString(16).padStart(2, "0")).join(" ");
    const text = [...chunk].map((b) => (b >= 32 && b < 127 ? String.fromCharCode(b) : ".")).join("");
    lines.push(`${at.toString(16).padStart(8, "0")}  ${hex.padEnd(47)}  ${text}`);
  }
  if (data.length > n) lines.push(`… ${data.length - n} more bytes`);
  return lines.join("\n");
}

function base64Bytes(text) {
  const binary = atob(text);
  const out = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) out[i] = binary.charCodeAt(i);
  return out;
}

function prettyBody(p) {
  const type = (p.content_type || "").toLowerCase();
  if (p.size === 0) return { node: h("p", { class: "muted" }, "No body."), text: "" };
  if (p.body_encoding === "json" && type.startsWith("application/x-www-form-urlencoded")) {
    return { node: table("Form fields", flat(p.body), "No fields."), text: JSON.stringify(p.body, null, 2), kind: "form" };
  }
  if (p.body_encoding === "json") return { node: jsonBlock(p.body, "Body"), text: JSON.stringify(p.body, null, 2), kind: "json" };
  if (p.body_encoding === "text") return { node: h("pre", { class: "text-body" }, p.body), text: p.body, kind: "text" };
  const data = base64Bytes(p.body || "");
  return { node: h("pre", { class: "hex" }, hexPreview(data)), text: hexPreview(data), kind: "binary" };
}

export async function payloadDialog(dialog, runId, ctx) {
  const close = h("button", { type: "button", class: "close", "aria-label": "Close" }, "×");
  const body = h("div", { class: "dialog-body" }, loading("the payload"));
  fill(dialog, 
    h("div", { class: "dialog-head" }, h("h2", { id: "dialog-title" }, "Payload"), close),
    body,
  );
  const leave = () => {
    if (dialog.open) dialog.close();
  };
  close.addEventListener("click", leave);
  dialog.onclose = () => {
    if (location.pathname.endsWith("/payload")) ctx.go(ctx.previous || "/", { replace: false });
  };
  if (!dialog.open) dialog.showModal();

  let p;
  try {
    p = await api(`/api/runs/${encodeURIComponent(runId)}/payload`);
  } catch (e) {
    if (ctx.handle(e)) return;
    fill(body, failure(e, () => payloadDialog(dialog, runId, ctx)));
    return;
  }
  const secretHeaders = new Set((p.secret_headers || []).map((s) => s.toLowerCase()));
  const secretQuery = new Set(p.secret_query || []);
  const headers = flat(p.headers).map(([k, v]) => [k, secretHeaders.has(k.toLowerCase()) ? MASK : v]);
  const query = flat(p.query).map(([k, v]) => [k, secretQuery.has(k) ? MASK : v]);
  const pretty = prettyBody(p);

  const view = h("div", { class: "body-view" }, pretty.node);
  let raw = null;
  const tabPretty = h("button", { type: "button", role: "tab", id: "tab-pretty", "aria-selected": "true", "aria-controls": "body-panel" }, "Pretty");
  const tabRaw = h("button", { type: "button", role: "tab", id: "tab-raw", "aria-selected": "false", "aria-controls": "body-panel" }, "Raw");
  const copyButton = h("button", { type: "button" }, "Copy");
  const downloadButton = h("button", { type: "button" }, "Download");
  const select = async (which) => {
    tabPretty.setAttribute("aria-selected", String(which === "pretty"));
    tabRaw.setAttribute("aria-selected", String(which === "raw"));
    if (which === "pretty") return fill(view, pretty.node);
    fill(view, loading("the exact bytes"));
    try {
      raw = raw || (await rawPayload(runId));
    } catch (e) {
      fill(view, failure(e));
      return;
    }
    let text;
    try {
      text = new TextDecoder("utf-8", { fatal: true }).decode(raw.bytes);
      fill(view, h("pre", { class: "raw", "data-raw": "" }, text));
    } catch (_) {
      fill(view, h("p", { class: "muted" }, "Not UTF-8 text: the bytes in hex."), h("pre", { class: "raw hex", "data-raw": "" }, hexPreview(raw.bytes)));
    }
  };
  tabPretty.addEventListener("click", () => select("pretty"));
  tabRaw.addEventListener("click", () => select("raw"));
  copyButton.addEventListener("click", async () => {
    const rawSelected = tabRaw.getAttribute("aria-selected") === "true";
    const text = rawSelected && raw ? new TextDecoder().decode(raw.bytes) : pretty.text;
    copy(text, copyButton, view.querySelector("pre, .json"));
  });
  downloadButton.addEventListener("click", async () => {
    try {
      raw = raw || (await rawPayload(runId));
    } catch (e) {
      fill(view, failure(e));
      return;
    }
    const url = URL.createObjectURL(new Blob([raw.bytes], { type: raw.contentType }));
    const a = h("a", { href: url, download: `payload-${runId}` });
    document.body.appendChild(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  });

  fill(body, 
    h(
      "dl",
      { class: "facts" },
      h("dt", {}, "Method"), h("dd", {}, h("code", {}, p.method)),
      h("dt", {}, "Path"), h("dd", {}, h("code", { class: "break" }, p.path)),
      h("dt", {}, "Received"), h("dd", {}, time(p.received_at)),
      h("dt", {}, "From"), h("dd", {}, p.remote_addr || h("span", { class: "muted" }, "unknown")),
      h("dt", {}, "Size"), h("dd", {}, `${bytes(p.size)}${p.content_type ? ` · ${p.content_type}` : ""}`),
      h("dt", {}, "Run"), h("dd", {}, h("a", { href: `/runs/${p.run_id}` }, "Open run")),
    ),
    h("h3", {}, "Query"),
    table("Query parameters", query, "No query parameters."),
    h("h3", {}, "Headers"),
    table("Headers", headers, "No headers."),
    h(
      "div",
      { class: "body-head" },
      h("h3", {}, "Body"),
      h("div", { role: "tablist", "aria-label": "Body view", class: "tabs" }, tabPretty, tabRaw),
      h("div", { class: "actions" }, copyButton, downloadButton),
    ),
    h("div", { id: "body-panel", role: "tabpanel" }, view),
  );
}
