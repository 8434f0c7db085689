// Talking to the server: every answer becomes {ok, status, body, servedBy, degraded}, never an
// exception. degraded: the answer was counted in the replica's own memory because the shared
// storage did not answer (X-RateLimit-Degraded).

const TIMEOUT_MS = 15000;

const degradedIn = (res) => res.headers.has("x-ratelimit-degraded");

// The API key typed into the page (API_KEYS): kept in this page's memory only, sent as
// Authorization: Bearer on every request, never stored or shown.
let apiKey = "";
export function setApiKey(key) { apiKey = key.trim(); }
const auth = () => (apiKey ? { Authorization: `Bearer ${apiKey}` } : {});

export async function request(path, init = {}) {
  const controller = new AbortController();
  const timer = window.setTimeout(() => controller.abort(), TIMEOUT_MS);
  try {
    const res = await fetch(path, {
      ...init,
      cache: "no-store",
      signal: controller.signal,
      headers: { Accept: "application/json", ...auth(), ...(init.headers || {}) },
    });
    let body = null;
    if ((res.headers.get("content-type") || "").includes("json")) {
      try { body = await res.json(); } catch (_) { body = null; }
    }
    const servedBy = res.headers.get("x-served-by") || (body && body.served_by) || "";
    return { ok: res.ok, status: res.status, statusText: res.statusText, body, servedBy,
             degraded: degradedIn(res) };
  } catch (err) {
    const failure = err && err.name === "AbortError" ? "timeout" : "network";
    return { ok: false, status: 0, body: null, servedBy: "", failure };
  } finally {
    window.clearTimeout(timer);
  }
}

export function postChat(message) {
  return request("/chat", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ message }),
  });
}

// POST /chat as Server-Sent Events. on.meta(data) and on.delta(text) are called as events
// arrive; the promise settles when the reply ends, with {ok, status, body, servedBy, outcome}:
// outcome "done" (body: the done event), "error" (body: the error event, the stream was cut),
// "stopped" (the signal aborted it: fetch closes the connection, the server stops the model),
// "dropped" (the connection broke without an end event). A refusal before the stream (429,
// 502, 503, 504, ...) is an ordinary answer of request()'s shape with outcome "refused".
export async function streamChat(message, history, on, signal) {
  let res;
  const timer = window.setTimeout(() => on.abort && on.abort(), TIMEOUT_MS);
  try {
    res = await fetch("/chat", {
      method: "POST", cache: "no-store", signal,
      headers: { "Content-Type": "application/json", Accept: "text/event-stream", ...auth() },
      body: JSON.stringify({ message, history }),
    });
  } catch (err) {
    const aborted = err && err.name === "AbortError";
    return { ok: false, status: 0, body: null, servedBy: "", outcome: aborted ? "stopped" : "refused",
             failure: "network" };
  } finally {
    window.clearTimeout(timer);
  }
  const servedBy = res.headers.get("x-served-by") || "";
  const degraded = degradedIn(res);
  if (!(res.headers.get("content-type") || "").startsWith("text/event-stream")) {
    let body = null;
    try { body = await res.json(); } catch (_) { body = null; }
    return { ok: false, status: res.status, statusText: res.statusText, body, servedBy, degraded,
             outcome: "refused" };
  }
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        let name = "message";
        let data = "";
        for (const line of block.split("\n")) {
          if (line.startsWith("event: ")) name = line.slice(7);
          else if (line.startsWith("data: ")) data += line.slice(6);
        }
        const parsed = data ? JSON.parse(data) : {};
        if (name === "meta") on.meta(parsed);
        else if (name === "delta") on.delta(parsed.text || "");
        else if (name === "done") return { ok: true, status: res.status, body: parsed, servedBy, degraded, outcome: "done" };
        else if (name === "error") return { ok: false, status: res.status, body: parsed, servedBy, degraded, outcome: "error" };
      }
    }
  } catch (err) {
    if (err && err.name === "AbortError") return { ok: false, status: res.status, body: null, servedBy, degraded, outcome: "stopped" };
  }
  return { ok: false, status: res.status, body: null, servedBy, degraded, outcome: signal && signal.aborted ? "stopped" : "dropped" };
}

// One sentence for any failed answer; error bodies are {"error", "detail"}.
export function describe(res) {
  if (res.status === 0) {
    return res.failure === "timeout"
      ? "The server took too long to answer."
      : "Can't reach the server: it is down or your connection dropped.";
  }
  const detail = res.body && typeof res.body.detail === "string" ? res.body.detail : "";
  const what = res.status >= 500 ? `Server error ${res.status}` : `Error ${res.status}`;
  return detail ? `${what}: ${detail}` : `${what}${res.statusText ? ` (${res.statusText})` : ""}.`;
}
