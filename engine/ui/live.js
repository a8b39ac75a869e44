// The event stream (`GET /api/events`), read with fetch() so that the admin token goes in the
// Authorization header (EventSource cannot send headers, and a token never goes in a URL).
// Reconnects with Last-Event-ID; a `reset` event, or a stream that cannot resume, tells the
// pages to reload what they show.

import { authHeaders } from "./api.js";

const listeners = new Set();
let lastId = null;
let started = false;
let controller = null;
let setState = () => {};

export function onEvent(listener) {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

function dispatch(type, data) {
  for (const listener of [...listeners]) {
    try {
      listener(type, data);
    } catch (e) {
      console.error(e);
    }
  }
}

// Parses the SSE text format: blocks separated by a blank line, `field: value` lines.
function parseBlock(block) {
  let type = "message";
  let id = null;
  const data = [];
  for (const line of block.split("\n")) {
    if (line === "" || line.startsWith(":")) continue;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") type = value;
    else if (field === "data") data.push(value);
    else if (field === "id") id = value;
  }
  return data.length || type !== "message" ? { type, id, data: data.join("\n") } : null;
}

async function connect() {
  controller = new AbortController();
  const headers = authHeaders({ Accept: "text/event-stream" });
  if (lastId) headers["Last-Event-ID"] = lastId;
  const response = await fetch("/api/events", { headers, signal: controller.signal, cache: "no-store" });
  if (response.status === 401) {
    const error = new Error("unauthorized");
    error.status = 401;
    throw error;
  }
  if (!response.ok || !response.body) throw new Error(`the event stream answered ${response.status}`);
  setState("live");
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value.replace(/\r\n?/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const event = parseBlock(block);
      if (!event) continue;
      if (event.id) lastId = event.id;
      let data = {};
      try {
        data = event.data ? JSON.parse(event.data) : {};
      } catch (_) {
        // Not JSON: pass it on empty.
      }
      dispatch(event.type, data);
    }
  }
}

// Starts the stream once; `state` is told "live", "reconnecting" or "signed-out".
export function startLive(state) {
  setState = state;
  if (started) return;
  started = true;
  (async () => {
    let pause = 500;
    while (started) {
      try {
        await connect();
        pause = 500;
      } catch (e) {
        if (e.name === "AbortError") return;
        if (e.status === 401) {
          setState("signed-out");
          started = false;
          return;
        }
      }
      setState("reconnecting");
      await new Promise((resolve) => setTimeout(resolve, pause));
      pause = Math.min(pause * 2, 10000);
    }
  })();
}

export function stopLive() {
  started = false;
  if (controller) controller.abort();
}
