// The Flows page (every flow, its status, activity and webhook URL with Copy URL) and the Flow
// page (the webhook step with its URL and latest output, the refused webhooks, the steps, the TOML
// source and the flow's recent webhooks). Both follow edits of the flows folder and refusals live.

import { api } from "./api.js";
import { badge, bytes, empty, failure, fill, h, loading, relative, time, urlField } from "./dom.js";
import { jsonBlock } from "./json.js";
import { runTable, throttle } from "./webhooks.js";

function errors(flow) {
  if (!flow.errors || flow.errors.length === 0) return null;
  return h(
    "div",
    { class: "load-errors", role: "alert" },
    h("p", {}, flow.serving ? "This file has errors; the last good version keeps serving." : "This file has errors and no version serves."),
    h("ul", {}, flow.errors.map((d) => h("li", { class: "diagnostic" }, h("code", {}, `${d.file}:${d.line}:${d.column}`), ": ", d.message))),
  );
}

function status(flow) {
  return flow.status === "ok" ? badge("ok") : badge("error");
}

function lastRun(flow) {
  if (!flow.last_run) return h("span", { class: "muted" }, "no webhook yet");
  return h("span", {}, h("a", { href: `/runs/${flow.last_run.id}` }, badge(flow.last_run.status)), " ", time(flow.last_run.received_at), " ", h("span", { class: "muted" }, relative(flow.last_run.received_at)));
}

function flowCard(flow) {
  return h(
    "li",
    { class: "flow-card", "data-flow-id": flow.id },
    h("div", { class: "flow-head" }, h("h2", {}, h("a", { href: `/flows/${encodeURIComponent(flow.id)}` }, flow.name || flow.id)), status(flow)),
    h("p", { class: "muted" }, h("code", {}, flow.id), flow.version ? ` · version ${flow.version}` : null),
    flow.description ? h("p", {}, flow.description) : null,
    errors(flow),
    h(
      "dl",
      { class: "facts compact" },
      h("dt", {}, "Last run"), h("dd", {}, lastRun(flow)),
      h("dt", {}, "Last 24 h"), h("dd", {}, h("a", { href: `/?flow=${encodeURIComponent(flow.id)}` }, `${flow.runs_24h}${flow.runs_24h_capped ? "+" : ""} ${flow.runs_24h === 1 ? "run" : "runs"}`)),
      flow.rejections && flow.rejections.total > 0
        ? [h("dt", {}, "Refused"), h("dd", { class: "refused" }, h("a", { href: `/flows/${encodeURIComponent(flow.id)}#refusals-title` }, `${flow.rejections.total} ${flow.rejections.total === 1 ? "webhook" : "webhooks"}`))]
        : null,
    ),
    urlField(flow.webhook_url, `Webhook URL of ${flow.id}`),
  );
}

export async function flowsPage(el, _params, ctx) {
  const list = h("div", { "aria-live": "polite", "aria-busy": "true" }, loading("flows"));
  fill(el, h("div", { class: "page-head" }, h("h1", {}, "Flows"), h("p", { class: "muted" }, "The flows folder as Weir serves it. Edits show here live.")), list);
  let stopped = false;
  async function load() {
    try {
      const body = await api("/api/flows");
      if (stopped) return;
      list.setAttribute("aria-busy", "false");
      if (body.flows.length === 0) {
        fill(list, empty("No flows yet", "Save a flow file (", h("code", {}, "name.toml"), ") in the flows folder; it appears here with its webhook URL."));
        return;
      }
      // Keep the card that holds the focus (a Copy URL just pressed) in place.
      const old = new Map([...list.querySelectorAll(".flow-card")].map((c) => [c.dataset.flowId, c]));
      const cards = body.flows.map((f) => {
        const fresh = flowCard(f);
        const existing = old.get(f.id);
        if (existing && existing.contains(document.activeElement) && existing.querySelector(".url")?.value === f.webhook_url) {
          const head = existing.querySelector(".copy-url")?.textContent;
          if (head !== "Copy URL") return existing;
        }
        return fresh;
      });
      fill(list, h("ul", { class: "flows" }, cards));
    } catch (e) {
      if (ctx.handle(e)) {
        stopped = true;
        return;
      }
      list.setAttribute("aria-busy", "false");
      fill(list, failure(e, load));
    }
  }
  await load();
  const refresh = throttle(load, 500);
  const off = ctx.onEvent((type) => {
    if (type === "reset" || type.startsWith("flow.") || type === "run.accepted" || type === "run.finished" || type === "webhook.refused") refresh();
  });
  return () => {
    stopped = true;
    off();
  };
}

// A span of milliseconds in the largest whole unit: "7 d", "36 h", "90 s".
function span(ms) {
  for (const [unit, size] of [["d", 86400000], ["h", 3600000], ["min", 60000], ["s", 1000]]) {
    if (ms >= size && ms % size === 0) return `${ms / size} ${unit}`;
  }
  return ms >= 1000 ? `${(ms / 1000).toFixed(1)} s` : `${ms} ms`;
}

function dedupe(flow) {
  if (!flow.dedupe) return h("span", { class: "muted" }, "none");
  const from = flow.dedupe_from === "flow" ? "set in the flow" : flow.dedupe_from ? `the default of its ${flow.dedupe_from}` : null;
  return [
    h("code", {}, flow.dedupe),
    flow.dedupe_window_ms ? ` for ${span(flow.dedupe_window_ms)}` : " for good",
    from ? h("span", { class: "muted dedupe-from" }, ` (${from})`) : null,
  ];
}

function retain(r) {
  if (!r || (r.age_ms === null && r.runs === null)) return h("span", { class: "muted" }, "every finished run (no retain of its own)");
  const parts = [];
  if (r.runs !== null) parts.push(`the newest ${r.runs} finished runs`);
  if (r.age_ms !== null) parts.push(`finished runs younger than ${span(r.age_ms)}`);
  return parts.join(", and only ");
}

function retries(s) {
  if (!s.retries) return null;
  return h("p", { class: "retries" }, `Retries ${s.retries} ${s.retries === 1 ? "time" : "times"}`, s.backoff_ms !== undefined ? `, waiting ${span(s.backoff_ms)} before the first retry, doubling up to ${span(s.max_backoff_ms)}` : null, ".");
}

// The flow's refused webhooks: counts by reason, then the newest refusals.
function refusals(flow, page) {
  const total = (flow.rejections && flow.rejections.total) || 0;
  const reasons = Object.entries((flow.rejections && flow.rejections.by_reason) || {}).sort((a, b) => b[1] - a[1]);
  const rows = (page && page.rejections) || [];
  return h(
    "section",
    { class: "refusals", "aria-labelledby": "refusals-title" },
    h("h2", { id: "refusals-title" }, "Refused webhooks"),
    total === 0 && rows.length === 0
      ? h("p", { class: "muted" }, "None: every request to this URL so far passed the flow's checks.")
      : [
          h("p", { class: "refusal-counts" }, `${total} refused: `, reasons.map(([reason, n], i) => [i ? ", " : null, h("code", {}, reason), ` ${n}`])),
          page === null
            ? h("p", { class: "muted" }, "The list of refusals could not be read.")
            : h(
                "div",
                { class: "table-wrap" },
                h(
                  "table",
                  { class: "runs refusal-table" },
                  h("caption", { class: "visually-hidden" }, `Refused webhooks of ${flow.id}, newest first`),
                  h("thead", {}, h("tr", {}, ["Time", "Reason", "From", "Method", "Why"].map((c) => h("th", { scope: "col" }, c)))),
                  h(
                    "tbody",
                    {},
                    rows.map((r) =>
                      h(
                        "tr",
                        { class: "refusal", "data-seq": r.seq },
                        h("td", { "data-label": "Time" }, time(r.at)),
                        h("td", { "data-label": "Reason" }, h("code", { class: "reason" }, r.reason), " ", h("span", { class: "muted" }, String(r.status))),
                        h("td", { "data-label": "From" }, r.remote_addr || h("span", { class: "muted" }, "unknown")),
                        h("td", { "data-label": "Method" }, h("code", {}, r.method)),
                        h("td", { "data-label": "Why", class: "break" }, r.message),
                      ),
                    ),
                  ),
                ),
              ),
        ],
  );
}

function webhookStep(flow) {
  const respond = flow.respond ? (flow.respond.mode === "result" ? `the run's result (waits up to ${flow.respond.timeout_ms / 1000} s)` : "202 Accepted at once") : "—";
  return h(
    "section",
    { class: "card webhook-step", "aria-labelledby": "webhook-title" },
    h("h2", { id: "webhook-title" }, "Webhook"),
    urlField(flow.webhook_url, "Webhook URL"),
    h(
      "dl",
      { class: "facts" },
      h("dt", {}, "Methods"), h("dd", {}, (flow.methods || []).join(", ") || "—"),
      h("dt", {}, "Max body"), h("dd", {}, flow.max_body ? bytes(flow.max_body) : "—"),
      h("dt", {}, "Verify"), h("dd", {}, flow.verify ? h("code", {}, flow.verify) : h("span", { class: "muted" }, "none: anyone with the URL can send")),
      h("dt", {}, "Dedupe"), h("dd", { class: "dedupe" }, dedupe(flow)),
      h("dt", {}, "Responds"), h("dd", {}, respond),
      h("dt", {}, "Concurrency"), h("dd", { class: "concurrency" }, flow.concurrency ? `${flow.concurrency} ${flow.concurrency === 1 ? "run" : "runs"} at once` : h("span", { class: "muted" }, "no cap of its own (the server's --concurrency)")),
      h("dt", {}, "Order"), h("dd", { class: "order-by" }, flow.order_by ? ["one at a time per ", h("code", {}, flow.order_by)] : h("span", { class: "muted" }, "none: runs in parallel")),
      h("dt", {}, "Keeps"), h("dd", { class: "retain" }, retain(flow.retain)),
      h("dt", {}, "On failure"), h("dd", { class: "on-failure" }, flow.on_failure ? ["starts ", h("a", { href: `/flows/${encodeURIComponent(flow.on_failure)}` }, flow.on_failure)] : h("span", { class: "muted" }, "nothing")),
    ),
    flow.warnings && flow.warnings.length ? h("ul", { class: "warnings", role: "note" }, flow.warnings.map((w) => h("li", {}, w))) : null,
    h("h3", {}, "Output of the latest webhook"),
    flow.latest_webhook
      ? [h("p", { class: "muted" }, "From ", h("a", { href: `/runs/${flow.latest_webhook.run_id}` }, "the latest run"), ": what ", h("code", {}, "$.webhook"), " holds for the steps."), jsonBlock(flow.latest_webhook.output, "Output of the webhook step")]
      : h("p", { class: "muted" }, "No webhook received yet. Send one to the URL above."),
  );
}

function steps(flow) {
  if (!flow.steps) return null;
  return h(
    "section",
    { "aria-labelledby": "steps-title" },
    h("h2", { id: "steps-title" }, "Steps"),
    h(
      "ol",
      { class: "timeline" },
      flow.steps.map((s) =>
        h(
          "li",
          { class: "step", "data-step-id": s.id },
          h("div", { class: "step-head" }, h("h3", {}, s.id), h("span", { class: "muted" }, s.plugin)),
          s.when ? h("p", {}, "Runs when ", h("code", {}, s.when), " selects something.") : null,
          retries(s),
          jsonBlock(s.input, `Input mapping of ${s.id}`),
          jsonBlock(s.config, `Config of ${s.id}`),
        ),
      ),
    ),
  );
}

export async function flowPage(el, { id }, ctx) {
  fill(el, loading("the flow"));
  const table = runTable(`Recent webhooks of ${id}`);
  const recent = h("div", { "aria-live": "polite" });
  let stopped = false;
  let built = false;
  const head = h("div", {});

  async function loadRuns() {
    try {
      const page = await api(`/api/runs?flow=${encodeURIComponent(id)}&limit=10`);
      if (stopped) return;
      if (page.runs.length === 0) fill(recent, empty("No webhooks yet"));
      else {
        if (!recent.contains(table.table)) fill(recent, h("div", { class: "table-wrap" }, table.table));
        table.show(page.runs, new Map());
      }
    } catch (e) {
      if (!ctx.handle(e)) fill(recent, failure(e, loadRuns));
    }
  }

  async function load() {
    let flow;
    try {
      flow = await api(`/api/flows/${encodeURIComponent(id)}`);
    } catch (e) {
      if (ctx.handle(e)) {
        stopped = true;
        return;
      }
      fill(el, h("p", {}, h("a", { href: "/flows" }, "← Flows")), e.status === 404 ? empty("No such flow", `There is no flow file ${id}.toml in the flows folder (any more).`) : failure(e, load));
      built = false;
      return;
    }
    let refused = { rejections: [] };
    if (flow.rejections && flow.rejections.total > 0) {
      try {
        refused = await api(`/api/flows/${encodeURIComponent(id)}/rejections?limit=20`);
      } catch (e) {
        if (ctx.handle(e)) {
          stopped = true;
          return;
        }
        refused = null;
      }
    }
    if (stopped) return;
    fill(head, 
      h("p", { class: "crumbs" }, h("a", { href: "/flows" }, "← Flows")),
      h("div", { class: "page-head" }, h("h1", {}, flow.name || flow.id), status(flow)),
      h("p", { class: "muted" }, h("code", {}, flow.id), " · ", h("span", { class: "version" }, flow.version ? `version ${flow.version}` : "no version serving"), " · ", flow.file),
      flow.description ? h("p", {}, flow.description) : null,
      errors(flow),
      webhookStep(flow),
      refusals(flow, refused),
      steps(flow),
      h(
        "section",
        { "aria-labelledby": "source-title" },
        h("h2", { id: "source-title" }, "Source"),
        flow.source ? [h("p", { class: "muted" }, `The file as it serves, version ${flow.version} (read-only; edit it in the flows folder).`), h("pre", { class: "source", tabindex: "0", "aria-label": "Flow file source" }, flow.source)] : h("p", { class: "muted" }, "No version serves yet."),
      ),
    );
    if (!built) {
      fill(el, head, h("section", { "aria-labelledby": "recent-title" }, h("div", { class: "section-head" }, h("h2", { id: "recent-title" }, "Recent webhooks"), h("a", { href: `/?flow=${encodeURIComponent(id)}` }, "All of them →")), recent));
      built = true;
      loadRuns();
    }
  }
  await load();
  const refreshFlow = throttle(load, 300);
  const refreshRuns = throttle(() => {
    loadRuns();
    load();
  }, 500);
  const off = ctx.onEvent((type, data) => {
    if (type === "reset") return refreshRuns();
    // A refusal is in the list once its event comes: reload the counts and the newest rows.
    if ((type.startsWith("flow.") || type === "webhook.refused") && data.flow_id === id) refreshFlow();
    if (type.startsWith("run.") && (!data.flow_id || data.flow_id === id)) refreshRuns();
  });
  return () => {
    stopped = true;
    off();
  };
}
