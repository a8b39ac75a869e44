// JSON shown as people read it: indented, coloured by kind, each object and array collapsible,
// and a Copy button for the whole document.

import { copy, h } from "./dom.js";

function scalar(value) {
  if (value === null) return h("span", { class: "j-null" }, "null");
  switch (typeof value) {
    case "string": return h("span", { class: "j-string" }, JSON.stringify(value));
    case "number": return h("span", { class: "j-number" }, String(value));
    case "boolean": return h("span", { class: "j-bool" }, String(value));
    default: return h("span", {}, String(value));
  }
}

// `trailing` (a comma or nothing) goes right after the value, inside a fold, so that it stays
// on the closing bracket's line, and on the summary's when folded.
function node(value, depth, trailing = "") {
  const comma = trailing ? h("span", { class: "j-punct" }, trailing) : null;
  if (value === null || typeof value !== "object") return [scalar(value), comma];
  const isArray = Array.isArray(value);
  const entries = isArray ? value.map((v, i) => [i, v]) : Object.entries(value);
  const [open, close] = isArray ? ["[", "]"] : ["{", "}"];
  if (entries.length === 0) return [h("span", { class: "j-punct" }, open + close), comma];
  const items = entries.map(([key, v], i) =>
    h(
      "div",
      { class: "j-item" },
      isArray ? null : [h("span", { class: "j-key" }, JSON.stringify(key)), h("span", { class: "j-punct" }, ": ")],
      node(v, depth + 1, i < entries.length - 1 ? "," : ""),
    ),
  );
  const noun = isArray ? (entries.length === 1 ? "item" : "items") : entries.length === 1 ? "key" : "keys";
  return h(
    "details",
    { class: "j-fold", open: depth < 3 ? true : null },
    h(
      "summary",
      { class: "j-punct", "aria-label": `${isArray ? "array" : "object"} of ${entries.length}` },
      h("span", { class: "j-open" }, open),
      h("span", { class: "j-summary" }, `${open} ${entries.length} ${noun} ${close}${trailing}`),
    ),
    h("div", { class: "j-body" }, items),
    h("span", { class: "j-punct j-close" }, close, trailing),
  );
}

// A labelled, copyable JSON block.
export function jsonBlock(value, label) {
  const text = JSON.stringify(value, null, 2);
  const code = h("div", { class: "json", role: "group", "aria-label": label, "data-json": "" }, node(value, 0));
  const button = h("button", { type: "button", class: "small", "aria-label": `Copy ${label}` }, "Copy");
  button.addEventListener("click", () => copy(text, button, code));
  return h("div", { class: "json-block" }, h("div", { class: "json-tools" }, h("span", { class: "json-label" }, label), button), code);
}
