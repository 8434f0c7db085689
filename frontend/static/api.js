// Talking to the server: every answer becomes {ok, status, body, servedBy}, never an exception.

const TIMEOUT_MS = 15000;

export async function request(path, init = {}) {
  const controller = new AbortController();
  const timer = window.setTimeout(() => controller.abort(), TIMEOUT_MS);
  try {
    const res = await fetch(path, {
      ...init,
      cache: "no-store",
      signal: controller.signal,
      headers: { Accept: "application/json", ...(init.headers || {}) },
    });
    let body = null;
    if ((res.headers.get("content-type") || "").includes("json")) {
      try { body = await res.json(); } catch (_) { body = null; }
    }
    const servedBy = res.headers.get("x-served-by") || (body && body.served_by) || "";
    return { ok: res.ok, status: res.status, statusText: res.statusText, body, servedBy };
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
