// The Run page: the run's facts, then a vertical timeline of its steps as they ran, the
// webhook step first with its output (the `$.webhook` document mappings read). Live: it
// reloads when the event stream says the run moved on.

import { api } from "./api.js";
import { badge, duration, failure, fill, h, loading, micros, time } from "./dom.js";
import { jsonBlock } from "./json.js";
import { throttle } from "./webhooks.js";

const KNOWN = new Set(["index", "step_id", "plugin", "status", "input", "output", "logs", "error", "started_at", "duration_us", "attempts"]);

// 1 → "1st", 2 → "2nd", 11 → "11th".
function ordinal(n) {
  const tens = n % 100;
  const suffix = tens >= 11 && tens <= 13 ? "th" : ({ 1: "st", 2: "nd", 3: "rd" })[n % 10] || "th";
  return `${n}${suffix}`;
}

function logs(lines) {
  if (!lines || lines.length === 0) return null;
  return h(
    "div",
    { class: "logs-block" },
    h("h4", {}, "Logs"),
    h("ol", { class: "logs" }, lines.map((l) => h("li", { class: `log log-${l.level}` }, h("span", { class: "log-level" }, l.level), " ", h("span", { class: "log-message" }, l.message)))),
  );
}

function stepError(step) {
  if (!step.error) return null;
  const cls = step.status === "filtered" ? "step-error filtered" : "step-error";
  return h(
    "div",
    { class: cls, role: step.status === "failed" ? "alert" : null },
    h("h4", {}, step.status === "filtered" ? "Why it stopped the run" : "Error"),
    h("p", {}, h("span", { class: "error-kind" }, step.error.kind), " ", h("span", { class: "error-message" }, step.error.message)),
  );
}

// Every attempt of a step that may retry, oldest first, each with its error.
function attempts(step) {
  if (!step.attempts || step.attempts.length === 0) return null;
  return h(
    "div",
    { class: "attempts-block" },
    h("h4", {}, `Attempts (${step.attempts.length})`),
    h(
      "ol",
      { class: "attempts" },
      step.attempts.map((a) =>
        h(
          "li",
          { class: `attempt ${a.error ? "attempt-failed" : "attempt-succeeded"}`, "data-attempt": a.attempt },
          h("span", { class: "attempt-head" }, `Attempt ${a.attempt}`, " · ", time(a.started_at), " · ", micros(a.duration_us)),
          a.error ? [" ", h("span", { class: "error-kind" }, a.error.kind), " ", h("span", { class: "error-message" }, a.error.message)] : [" ", badge("succeeded")],
          a.retry_at ? h("span", { class: "muted" }, " · next attempt due ", time(a.retry_at)) : null,
        ),
      ),
    ),
  );
}

function stepItem(step, definition) {
  const extras = Object.fromEntries(Object.entries(step).filter(([k]) => !KNOWN.has(k)));
  let why = null;
  if (step.status === "skipped") {
    why = h("p", { class: "why" }, "Skipped: its ", h("code", {}, "when"), definition && definition.when ? [" (", h("code", {}, definition.when), ")"] : null, " selected nothing.");
  }
  return h(
    "li",
    { class: `step step-${step.status}`, "data-step-id": step.step_id },
    h(
      "div",
      { class: "step-head" },
      h("h3", {}, step.step_id),
      badge(step.status),
      h("span", { class: "muted" }, step.plugin),
      h("span", { class: "muted" }, "started ", time(step.started_at), " · ", micros(step.duration_us)),
    ),
    why,
    stepError(step),
    attempts(step),
    step.input !== null && step.input !== undefined ? jsonBlock(step.input, `Input of ${step.step_id}`) : null,
    step.output !== null && step.output !== undefined ? jsonBlock(step.output, `Output of ${step.step_id}`) : null,
    logs(step.logs),
    Object.keys(extras).length ? jsonBlock(extras, `More about ${step.step_id}`) : null,
  );
}

export async function runPage(el, { id }, ctx) {
  fill(el, loading("the run"));
  let stopped = false;
  async function load() {
    let data;
    let flow = null;
    try {
      data = await api(`/api/runs/${encodeURIComponent(id)}`);
    } catch (e) {
      if (ctx.handle(e)) {
        stopped = true;
        return;
      }
      fill(el, h("p", {}, h("a", { href: "/" }, "← Webhooks")), failure(e, load));
      return;
    }
    try {
      flow = await api(`/api/flows/${encodeURIComponent(data.run.flow_id)}`);
    } catch (_) {
      // The flow file may be gone; the run stands on its own.
    }
    if (stopped) return;
    const run = data.run;
    const definitions = new Map(((flow && flow.steps) || []).map((s) => [s.id, s]));
    const ran = new Set(data.steps.map((s) => s.step_id));
    const notRun = run.flow_version === (flow && flow.version) ? (flow.steps || []).filter((s) => !ran.has(s.id)) : [];
    fill(el, 
      h("p", { class: "crumbs" }, h("a", { href: `/?flow=${encodeURIComponent(run.flow_id)}` }, `← Webhooks of ${flow && flow.name ? flow.name : run.flow_id}`)),
      h("div", { class: "page-head" }, h("h1", {}, "Run ", h("code", { class: "break" }, run.id)), badge(run.status), run.status === "retrying" && run.next_attempt_at ? h("span", { class: "muted next-attempt" }, "next attempt ", time(run.next_attempt_at)) : null),
      h(
        "dl",
        { class: "facts" },
        h("dt", {}, "Flow"), h("dd", {}, h("a", { href: `/flows/${encodeURIComponent(run.flow_id)}` }, flow && flow.name ? flow.name : run.flow_id), " ", h("span", { class: "muted" }, `${run.flow_id} · version ${run.flow_version}`)),
        h("dt", {}, "Received"), h("dd", {}, time(run.received_at)),
        h("dt", {}, "Started"), h("dd", {}, time(run.started_at)),
        h("dt", {}, "Finished"), h("dd", {}, time(run.finished_at)),
        h("dt", {}, "Duration"), h("dd", {}, duration(run.duration_ms)),
        h("dt", {}, "Attempt"), h("dd", {}, String(run.attempt)),
        run.next_attempt_at ? [h("dt", {}, "Next attempt"), h("dd", {}, time(run.next_attempt_at))] : null,
        run.replay_of ? [h("dt", {}, "Replay of"), h("dd", { class: "replay-of" }, h("a", { href: `/runs/${encodeURIComponent(run.replay_of)}` }, run.replay_of))] : null,
        data.replays && data.replays.length ? [h("dt", {}, "Replayed by"), h("dd", { class: "replays" }, data.replays.map((r, i) => [i ? ", " : null, h("a", { href: `/runs/${encodeURIComponent(r)}` }, r)]))] : null,
        data.redeliveries ? [h("dt", {}, "Redeliveries"), h("dd", {}, `${data.redeliveries} (answered with this run)`)] : null,
        run.error_flow_of ? [h("dt", {}, "Error flow of"), h("dd", {}, h("a", { href: `/runs/${encodeURIComponent(run.error_flow_of)}` }, run.error_flow_of))] : null,
        h("dt", {}, "Payload"), h("dd", {}, h("a", { href: `/runs/${run.id}/payload` }, `${run.method} · ${run.body_size} bytes${run.content_type ? ` · ${run.content_type}` : ""}`)),
        run.token ? [h("dt", {}, "URL token"), h("dd", { class: "token-used" }, run.token === "previous" ? "the previous token, during its rotation's overlap" : "the current token")] : null,
        run.verify ? [h("dt", {}, "Verified"), h("dd", { class: "verify-used" }, `${run.verify.scheme} · secret ${run.verify.secret}`, " ", h("span", { class: "muted" }, `(the ${ordinal(run.verify.secret + 1)} in the flow's list)`))] : null,
      ),
      run.error ? h("div", { class: `run-error ${run.status}`, role: run.status === "failed" ? "alert" : null }, h("h2", {}, run.status === "filtered" ? "Filtered" : "Failed"), h("p", { class: "error-message" }, run.error)) : null,
      h("h2", {}, "Steps"),
      h(
        "ol",
        { class: "timeline" },
        h(
          "li",
          { class: "step step-webhook", "data-step-id": "webhook" },
          h("div", { class: "step-head" }, h("h3", {}, "webhook"), badge("succeeded"), h("span", { class: "muted" }, "the request as the flow's mappings read it: ", h("code", {}, "$.webhook"))),
          jsonBlock(data.webhook.output, "Output of the webhook step"),
        ),
        data.steps.map((s) => stepItem(s, definitions.get(s.step_id))),
        notRun.map((s) =>
          h("li", { class: "step step-pending", "data-step-id": s.id }, h("div", { class: "step-head" }, h("h3", {}, s.id), h("span", { class: "badge" }, ["queued", "running", "retrying"].includes(run.status) ? "waiting" : "not run"), h("span", { class: "muted" }, s.plugin)), ["queued", "running", "retrying"].includes(run.status) ? null : h("p", { class: "why" }, "Not run: an earlier step ended the run.")),
        ),
      ),
    );
  }
  await load();
  const refresh = throttle(load, 300);
  const off = ctx.onEvent((type, data) => {
    if (type === "reset" || (type.startsWith("run.") && data.run_id === id)) refresh();
  });
  return () => {
    stopped = true;
    off();
  };
}
