// The admin API, as the pages call it: same-origin relative URLs, the admin token (when one is
// set) from this browser session only, sent as a bearer header and never in a URL.

const TOKEN_KEY = "weir.admin-token";

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

export function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function setToken(value) {
  if (value) sessionStorage.setItem(TOKEN_KEY, value);
  else sessionStorage.removeItem(TOKEN_KEY);
}

export function authHeaders(extra = {}) {
  const headers = { ...extra };
  const t = token();
  if (t) headers["Authorization"] = `Bearer ${t}`;
  return headers;
}

// Fetches `path` (under /api) and returns the parsed JSON; throws ApiError on an error answer.
export async function api(path, { signal } = {}) {
  let response;
  try {
    response = await fetch(path, { headers: authHeaders({ Accept: "application/json" }), signal });
  } catch (e) {
    if (e.name === "AbortError") throw e;
    throw new ApiError(0, "Weir does not answer. Is it still running?");
  }
  if (!response.ok) {
    let message = `${response.status} ${response.statusText}`;
    try {
      const body = await response.json();
      if (body && body.error && body.error.message) message = body.error.message;
    } catch (_) {
      // Not JSON: keep the status line.
    }
    throw new ApiError(response.status, message);
  }
  return response.json();
}

// The exact bytes of a run's payload.
export async function rawPayload(runId) {
  const response = await fetch(`/api/runs/${encodeURIComponent(runId)}/payload?raw=true`, {
    headers: authHeaders(),
  });
  if (!response.ok) throw new ApiError(response.status, `${response.status} ${response.statusText}`);
  return {
    bytes: new Uint8Array(await response.arrayBuffer()),
    contentType: response.headers.get("content-type") || "application/octet-stream",
  };
}
