// The Webhooks page (home): one row per webhook received, newest first, filtered by flow and
// status, paged by the API's cursor, and live: new webhooks appear at the top and running rows
// change status as the event stream says. It never loads a payload.

import { api } from "./api.js";
import { badge, duration, empty, failure, fill, h, loading, shortId, time } from "./dom.js";

const STATUSES = ["queued", "running", "retrying", "succeeded", "failed", "filtered"];
const PAGE = 50;

// An Options menu: a button that opens a list of links; Escape or a click elsewhere closes it.
export function optionsMenu(run) {
  const id = `menu-${run.id}`;
  const button = h("button", { type: "button", class: "small options", "aria-haspopup": "true", "aria-expanded": "false", "aria-controls": id }, "Options");
  const menu = h(
    "ul",
    { class: "menu", id, hidden: true, "aria-label": `Options for run ${run.id}` },
    h("li", {}, h("a", { href: `/runs/${run.id}/payload`, class: "menu-payload" }, "Payload")),
    h("li", {}, h("a", { href: `/runs/${run.id}`, class: "menu-run" }, "Open run")),
  );
  const close = () => {
    menu.hidden = true;
    button.setAttribute("aria-expanded", "false");
    document.removeEventListener("click", outside, true);
  };
  const outside = (event) => {
    if (!menu.contains(event.target) && event.target !== button) close();
  };
  button.addEventListener("click", () => {
    if (!menu.hidden) return close();
    menu.hidden = false;
    button.setAttribute("aria-expanded", "true");
    menu.querySelector("a").focus();
    document.addEventListener("click", outside, true);
  });
  const wrap = h("div", { class: "options-wrap" }, button, menu);
  wrap.addEventListener("keydown", (event) => {
    const links = [...menu.querySelectorAll("a")];
    const at = links.indexOf(document.activeElement);
    if (menu.hidden) return;
    if (event.key === "Escape") {
      close();
      button.focus();
    } else if (event.key === "ArrowDown") {
      event.preventDefault();
      links[(at + 1) % links.length].focus();
    } else if (event.key === "ArrowUp") {
      event.preventDefault();
      links[(at - 1 + links.length) % links.length].focus();
    }
  });
  menu.addEventListener("click", () => close());
  return wrap;
}

function row(run, flows) {
  // A run whose stored records cannot be read: its id and what is wrong, nothing else.
  if (run.status === "damaged") {
    return h(
      "tr",
      { "data-run-id": run.id },
      h("td", { "data-label": "Flow" }, h("span", { class: "muted id" }, "unknown")),
      h("td", { "data-label": "Received" }, h("span", { class: "muted id" }, shortId(run.id))),
      h("td", { "data-label": "Status", class: "status-cell" }, badge("damaged")),
      h("td", { "data-label": "Error", colspan: "3" }, run.error || ""),
    );
  }
  const flow = flows.get(run.flow_id);
  const tr = h(
    "tr",
    { "data-run-id": run.id },
    h(
      "td",
      { "data-label": "Flow" },
      h("a", { href: `/flows/${encodeURIComponent(run.flow_id)}`, class: "flow-name" }, flow && flow.name ? flow.name : run.flow_id),
      h("span", { class: "muted id" }, run.flow_id),
    ),
    h("td", { "data-label": "Received" }, h("a", { href: `/runs/${run.id}`, "aria-label": `Run ${run.id}` }, time(run.received_at)), h("span", { class: "muted id" }, shortId(run.id))),
    h("td", { "data-label": "Status", class: "status-cell" }, badge(run.status)),
    h("td", { "data-label": "Duration", class: "num" }, duration(run.duration_ms)),
    h("td", { "data-label": "Attempt", class: "num" }, String(run.attempt)),
    h("td", { "data-label": "Options" }, optionsMenu(run)),
  );
  return tr;
}

// A table of runs, kept by id, updated in place. Shared with the Flow page.
export function runTable(caption) {
  const body = h("tbody", {});
  const table = h(
    "table",
    { class: "runs" },
    h("caption", { class: "visually-hidden" }, caption),
    h("thead", {}, h("tr", {}, ["Flow", "Received", "Status", "Duration", "Attempt", "Options"].map((c) => h("th", { scope: "col" }, c)))),
    body,
  );
  return {
    table,
    // Shows exactly `runs`, reusing rows whose run did not change (an open menu stays open).
    show(runs, flows) {
      const old = new Map([...body.children].map((tr) => [tr.dataset.runId, tr]));
      const rows = runs.map((run) => {
        const existing = old.get(run.id);
        const key = `${run.status}|${run.duration_ms}|${run.attempt}`;
        if (existing && existing.dataset.key === key) return existing;
        const fresh = row(run, flows);
        fresh.dataset.key = key;
        if (existing && existing.contains(document.activeElement)) return existing;
        return fresh;
      });
      fill(body, ...rows);
    },
    // Applies a status change from the event stream to a row shown, at once.
    setStatus(runId, status) {
      const tr = body.querySelector(`tr[data-run-id="${CSS.escape(runId)}"]`);
      if (!tr) return false;
      fill(tr.querySelector(".status-cell"), badge(status));
      tr.dataset.key = "";
      return true;
    },
  };
}

// Calls `fn` at most once per `ms`, and once more after the last call.
export function throttle(fn, ms) {
  let timer = null;
  let again = false;
  return () => {
    if (timer) {
      again = true;
      return;
    }
    fn();
    timer = setTimeout(function tick() {
      timer = null;
      if (again) {
        again = false;
        fn();
        timer = setTimeout(tick, ms);
      }
    }, ms);
  };
}

export async function webhooksPage(el, { query }, ctx) {
  const flowFilter = query.get("flow") || "";
  const statusFilter = query.get("status") || "";
  const cursor = query.get("cursor") || "";
  let flows = new Map();

  const flowSelect = h("select", { id: "filter-flow", name: "flow" }, h("option", { value: "" }, "All flows"));
  const statusSelect = h(
    "select",
    { id: "filter-status", name: "status" },
    h("option", { value: "" }, "Any status"),
    STATUSES.map((s) => h("option", { value: s, selected: s === statusFilter }, s)),
  );
  const apply = () => {
    const params = new URLSearchParams();
    if (flowSelect.value) params.set("flow", flowSelect.value);
    if (statusSelect.value) params.set("status", statusSelect.value);
    const q = params.toString();
    ctx.go(q ? `/?${q}` : "/");
  };
  flowSelect.addEventListener("change", apply);
  statusSelect.addEventListener("change", apply);

  const list = h("div", { class: "list", "aria-live": "polite", "aria-busy": "true" }, loading("webhooks"));
  const pager = h("nav", { class: "pager", "aria-label": "Pages" });
  fill(el, 
    h("div", { class: "page-head" }, h("h1", {}, "Webhooks"), h("p", { class: "muted" }, "Every webhook received, newest first, and what its flow did with it.")),
    h(
      "form",
      { class: "filters", role: "search", "aria-label": "Filter webhooks", onsubmit: (e) => e.preventDefault() },
      h("div", { class: "field" }, h("label", { for: "filter-flow" }, "Flow"), flowSelect),
      h("div", { class: "field" }, h("label", { for: "filter-status" }, "Status"), statusSelect),
    ),
    list,
    pager,
  );

  const table = runTable("Webhooks received, newest first");
  let shown = false;
  let stopped = false;
  const params = () => {
    const p = new URLSearchParams({ limit: String(PAGE) });
    if (flowFilter) p.set("flow", flowFilter);
    if (statusFilter) p.set("status", statusFilter);
    if (cursor) p.set("cursor", cursor);
    return p;
  };

  async function loadFlows() {
    try {
      const body = await api("/api/flows");
      flows = new Map(body.flows.map((f) => [f.id, f]));
      const ids = [...flows.keys()];
      if (flowFilter && !flows.has(flowFilter)) ids.push(flowFilter);
      fill(flowSelect, h("option", { value: "" }, "All flows"), ids.map((id) => h("option", { value: id, selected: id === flowFilter }, flows.get(id)?.name ? `${flows.get(id).name} (${id})` : id)));
    } catch (e) {
      if (ctx.handle(e)) stopped = true;
    }
  }

  async function load() {
    if (stopped) return;
    try {
      const page = await api(`/api/runs?${params()}`);
      if (stopped) return;
      list.setAttribute("aria-busy", "false");
      if (page.runs.length === 0) {
        shown = false;
        fill(list, 
          flowFilter || statusFilter || cursor
            ? empty("No webhooks match", "Try another flow or status, or ", h("a", { href: "/" }, "show them all"), ".")
            : empty("No webhooks yet", "Send one to a flow's webhook URL (see ", h("a", { href: "/flows" }, "Flows"), "); it appears here at once."),
        );
      } else {
        if (!shown) fill(list, h("div", { class: "table-wrap" }, table.table));
        shown = true;
        table.show(page.runs, flows);
      }
      const here = new URLSearchParams();
      if (flowFilter) here.set("flow", flowFilter);
      if (statusFilter) here.set("status", statusFilter);
      const newest = here.toString() ? `/?${here}` : "/";
      const older = new URLSearchParams(here);
      if (page.next_cursor) older.set("cursor", page.next_cursor);
      fill(pager, 
        cursor ? h("a", { href: newest, class: "button" }, "← Newest") : null,
        page.next_cursor ? h("a", { href: `/?${older}`, class: "button", rel: "next" }, "Older →") : null,
      );
    } catch (e) {
      if (ctx.handle(e)) {
        stopped = true;
        return;
      }
      list.setAttribute("aria-busy", "false");
      fill(list, failure(e, load));
    }
  }

  await loadFlows();
  await load();

  // Live: only the first page takes new rows; every page updates the statuses it shows.
  const refresh = throttle(load, 300);
  const off = ctx.onEvent((type, data) => {
    if (type === "reset") return refresh();
    if (type.startsWith("flow.")) return loadFlows();
    if (!type.startsWith("run.")) return;
    if (data.run_id) table.setStatus(data.run_id, data.status);
    if (!cursor && (!flowFilter || !data.flow_id || data.flow_id === flowFilter)) refresh();
  });
  return () => {
    stopped = true;
    off();
  };
}
