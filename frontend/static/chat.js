// The chat page: the conversation with a badge for the replica that answered, the mode
// banner, and the wiring of the quota, Burst and per-replica panels (quota.js, burst.js,
// replicas.js). Every string from the server or the user goes in with textContent.

import { describe, request, streamChat } from "./api.js";
import { burst } from "./burst.js";
import { $, announcer, badge as makeBadge, make } from "./dom.js";
import { Quota } from "./quota.js";
import { showReplicaViews } from "./replicas.js";

const PROBE_MS = 3000;
const HINT = $("message-hint").textContent;
const ui = {
  form: $("chat-form"), input: $("message"), send: $("send"), stop: $("stop"), hint: $("message-hint"),
  list: $("messages"), empty: $("empty"),
  notice: $("notice"), noticeText: $("notice-text"), noticeDismiss: $("notice-dismiss"),
  modeKind: $("mode-kind"), modeStorage: $("mode-storage"), modeStrategy: $("mode-strategy"),
  modeLimit: $("mode-limit"), modeNote: $("mode-note"),
  burstForm: $("burst-form"), burstCount: $("burst-count"), replicas: $("replicas"),
};
// history: the conversation so far, sent with each message (the server keeps the last few).
const state = { info: null, busy: false, probe: 0, history: [], controller: null };
const HISTORY_SENT = 12;
const announce = announcer($("announcer"));
const scaled = () => Boolean(state.info && state.info.mode === "scaled");
const limiting = () => !state.info || state.info.enabled;
const badge = (name) => makeBadge(name, state.info ? state.info.replicas : []);

// ---- notices, and finding the server again ---------------------------------------------

function showNotice(text) {
  ui.noticeText.textContent = text;
  ui.notice.hidden = false;
}

function fail(res) {
  if (res.status !== 0) { showNotice(describe(res)); return; }
  showNotice(`${describe(res)} Trying again every few seconds…`);
  if (state.probe) return;
  state.probe = window.setInterval(async () => {
    if (!(await request("/healthz")).ok) return;
    window.clearInterval(state.probe);
    state.probe = 0;
    ui.notice.hidden = true;
    announce("Connected to the server again.");
    await loadInfo();
    await refreshQuota();
  }, PROBE_MS);
}

function succeeded() {
  if (!state.probe) ui.notice.hidden = true;
}

// ---- the mode banner and the panels ------------------------------------------------------

function renderInfo(info) {
  state.info = info;
  const count = info.replicas.length;
  const redis = info.storage.kind === "redis";
  const many = info.mode === "scaled";
  ui.modeKind.textContent = many ? `Scaled · ${count} replicas` : "Single process";
  ui.modeStorage.textContent = redis ? "Redis, shared" : "Memory, per process";
  ui.modeStorage.className = `chip chip-${redis ? "redis" : "memory"}`;
  ui.modeStrategy.textContent = info.strategy;
  ui.modeLimit.textContent = info.enabled ? info.limits.join(" + ") || info.rate_limit : "limit off";
  let note;
  if (!info.enabled) note = "Rate limiting is switched off here: every message goes through.";
  else if (many && redis) note = `All ${count} replicas count in one shared Redis, so the limit holds whichever replica answers.`;
  else if (many) note = `Each of the ${count} replicas counts you in its own memory: behind the load balancer you get up to ${count} × the limit.`;
  else if (redis) note = "One process, counting in Redis.";
  else note = "One process counting in memory: exact, as long as there is only one.";
  ui.modeNote.textContent = note;
  ui.replicas.hidden = count === 0;
}

async function loadInfo() {
  const res = await request("/api/info");
  if (res.ok && res.body) { renderInfo(res.body); succeeded(); } else fail(res);
}

const quota = new Quota({
  meter: $("quota-meter"), text: $("quota-text"), reset: $("quota-reset"), source: $("quota-source"),
  limit: $("limit"), limitTitle: $("limit-title"), countdown: $("limit-countdown"),
}, { refresh: refreshQuota, onBlocked: updateSend, announce, badge });

async function refreshQuota() {
  const res = await request("/api/quota");
  if (res.ok && res.body) { quota.set(res.body.quota, res.servedBy, scaled(), res.body.enabled); succeeded(); } else fail(res);
  refreshReplicas();
  return res.ok;
}

const replicaUi = { list: $("replica-list"), verdict: $("replicas-verdict"), refresh: $("replicas-refresh") };
function refreshReplicas() {
  if (scaled()) showReplicaViews(replicaUi, state.info, badge);
}

// ---- the chat --------------------------------------------------------------------------

function updateSend() {
  ui.send.disabled = state.busy || quota.blocked;
  // The composer is closed while a reply streams; Stop is the one thing to press then.
  ui.input.disabled = state.busy;
  ui.stop.hidden = !state.busy;
}

function addMessage(item) {
  ui.empty.hidden = true;
  ui.list.appendChild(item);
  item.scrollIntoView({ block: "nearest" });
}

function mine(text) {
  const meta = make("p", "msg-meta", "Sending…");
  const item = make("li", "msg msg-me");
  item.append(make("span", "visually-hidden", "You: "), make("p", "msg-text", text), meta);
  addMessage(item);
  return meta;
}

// A reply that fills in as its tokens arrive. Text goes in with textContent, never as HTML.
function reply(servedBy) {
  const meta = make("p", "msg-meta");
  meta.append(make("span", "visually-hidden", "Reply from "), badge(servedBy || "unknown"));
  const body = make("p", "msg-text", "");
  const item = make("li", "msg msg-bot msg-streaming");
  item.append(meta, body);
  addMessage(item);
  return {
    item,
    add(text) { body.textContent += text; item.scrollIntoView({ block: "nearest" }); },
    end(note) {
      item.classList.remove("msg-streaming");
      if (note) { item.classList.add("msg-cut"); item.append(make("p", "msg-meta msg-ended", note)); }
    },
    text: () => body.textContent,
  };
}

async function send() {
  const text = ui.input.value.trim();
  if (state.busy || quota.blocked) return;
  if (!text) {
    ui.hint.textContent = "Type a message first.";
    ui.input.focus();
    return;
  }
  // Sending disables the button, which would drop the focus: give it back to the box.
  const keepFocus = [ui.input, ui.send].includes(document.activeElement);
  state.busy = true;
  updateSend();
  const meta = mine(text);
  ui.input.value = "";
  const history = state.history.slice(-HISTORY_SENT);
  let shown = null;
  state.controller = new AbortController();
  const res = await streamChat(text, history, {
    meta(data) {
      meta.textContent = "Sent";
      shown = reply(data.served_by || "");
      quota.set(data.quota, data.served_by, scaled(), limiting());
    },
    delta(piece) { if (shown) shown.add(piece); },
    abort() { state.controller.abort(); },
  }, state.controller.signal);
  state.controller = null;
  state.busy = false;
  if (shown) {
    // Whatever arrived stays, even when the reply ended early; the page says how it ended.
    const notes = {
      done: "",
      stopped: "Stopped: you ended this reply.",
      error: `Cut off: ${(res.body && res.body.detail) || "the model stopped mid-reply."}`,
      dropped: "Cut off: the connection dropped mid-reply.",
    };
    shown.end(notes[res.outcome] || "");
    state.history.push({ role: "user", content: text }, { role: "assistant", content: shown.text() });
    if (res.outcome === "done") quota.set(res.body.quota, res.servedBy, scaled(), limiting());
    succeeded();
  } else if (res.outcome === "stopped") {
    meta.textContent = "Stopped before the reply began.";
  } else {
    // Nothing typed is lost: the message goes back into the box.
    meta.classList.add("msg-failed");
    if (!ui.input.value) ui.input.value = text;
    if (res.status === 429 && res.body && res.body.quota) {
      meta.textContent = "Not sent. Over the limit: it is back in the box for later.";
      quota.set(res.body.quota, res.servedBy, scaled());
      quota.block(Date.now() + (res.body.retry_after || 1) * 1000);
    } else {
      meta.textContent = `Not sent. ${describe(res)} It is back in the box.`;
      fail(res);
    }
  }
  refreshReplicas();
  updateSend();
  if (keepFocus) ui.input.focus();
}

// ---- wiring ----------------------------------------------------------------------------

ui.form.addEventListener("submit", (event) => {
  event.preventDefault();
  send();
});
ui.input.addEventListener("keydown", (event) => {
  if (event.key !== "Enter" || event.shiftKey || event.isComposing) return;
  event.preventDefault();
  send();
});
ui.input.addEventListener("input", () => { ui.hint.textContent = HINT; });
ui.stop.addEventListener("click", () => { if (state.controller) state.controller.abort(); });

const burstUi = {
  button: $("burst"), summary: $("burst-summary"), table: $("burst-table"), rows: $("burst-rows"),
  allowed: $("burst-allowed"), blocked: $("burst-blocked"),
};
ui.burstForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  const count = Math.round(Number(ui.burstCount.value));
  if (!Number.isFinite(count) || count < 1 || count > 50) {
    burstUi.summary.textContent = "Choose between 1 and 50 requests.";
    ui.burstCount.focus();
    return;
  }
  const results = await burst(count, burstUi, { badge, limit: quota.limit });
  if (results.every((res) => !res.ok && res.status !== 429)) fail(results[0]);
  await refreshQuota();
});
replicaUi.refresh.addEventListener("click", () => refreshReplicas());
ui.noticeDismiss.addEventListener("click", () => { ui.notice.hidden = true; });
document.addEventListener("visibilitychange", () => {
  if (document.visibilityState === "visible" && state.info) refreshQuota();
});

window.setInterval(() => quota.tick(), 250);
await loadInfo();
await refreshQuota();
