// The chat page: the conversation with a badge for the replica that answered, the mode
// banner, and the wiring of the quota, Burst and per-replica panels (quota.js, burst.js,
// replicas.js). Every string from the server or the user goes in with textContent.

import { describe, request, setApiKey, streamChat } from "./api.js";
import { burst } from "./burst.js";
import { $, announcer, badge as makeBadge, make } from "./dom.js";
import { Quota } from "./quota.js";
import { askReplicas, judge, showReplicaViews } from "./replicas.js";
import { Tokens } from "./tokens.js";

const PROBE_MS = 3000;
const HINT = $("message-hint").textContent;
const ui = {
  form: $("chat-form"), input: $("message"), send: $("send"), stop: $("stop"), hint: $("message-hint"),
  list: $("messages"), empty: $("empty"),
  notice: $("notice"), noticeText: $("notice-text"), noticeDismiss: $("notice-dismiss"),
  modeKind: $("mode-kind"), modeStorage: $("mode-storage"), modeStrategy: $("mode-strategy"),
  modeEngine: $("mode-engine"),
  modeLimit: $("mode-limit"), modeNote: $("mode-note"),
  burstForm: $("burst-form"), burstCount: $("burst-count"), replicas: $("replicas"),
  limitOthers: $("limit-others"), quotaLive: $("quota-live"),
};
// history: the conversation so far, sent with each message (the server keeps the last few).
// verdict: what the replicas' counts added up to when last asked (replicas.js judge()).
// unreachable: the last answer that touched the limiter said the shared storage did not answer.
const state = {
  info: null, busy: false, probe: 0, history: [], controller: null,
  verdict: null, unreachable: false, quotaRetry: 0,
};
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
  const many = info.mode === "scaled";
  ui.modeKind.textContent = many ? `Scaled · ${count} replicas` : "Single process";
  ui.modeStrategy.textContent = info.strategy;
  ui.modeEngine.textContent = info.engine === "slowapi" ? "stock slowapi" : "chatlimit's limiter";
  ui.modeLimit.textContent = info.enabled ? info.limits.join(" + ") || info.rate_limit : "limit off";
  renderStorage();
  ui.replicas.hidden = !many;  // the one rule for scaled mode: /api/info's mode
}

// The storage chip and the note under it: what the deployment is configured with, unless the
// answers say the shared storage is not answering right now (X-RateLimit-Degraded, or a 503
// storage_unavailable under FAIL_MODE=closed).
function renderStorage() {
  const { info } = state;
  if (!info) return;
  const count = info.replicas.length;
  const redis = info.storage.kind === "redis";
  const many = info.mode === "scaled";
  const down = redis && state.unreachable;
  const closed = info.fail_mode === "closed";
  ui.modeStorage.textContent = !redis ? "Memory, per process"
    : down ? (closed ? "Redis unreachable: messages refused" : "Redis unreachable: each replica counts alone")
    : "Redis, shared";
  ui.modeStorage.className = `chip chip-${down ? "degraded" : redis ? "redis" : "memory"}`;
  let note;
  if (!info.enabled) note = "Rate limiting is switched off here: every message goes through.";
  else if (down && closed) note = "Redis is not answering, and this deployment refuses every message until it does (FAIL_MODE=closed).";
  else if (down && many) note = `Redis is not answering, so each of the ${count} replicas counts you in its own memory until it does: up to ${count} × the limit.`;
  else if (down) note = "Redis is not answering, so this process counts in its own memory until it does.";
  else if (many && redis) note = `All ${count} replicas count in one shared Redis, so the limit holds whichever replica answers.`;
  else if (many) note = `Each of the ${count} replicas counts you in its own memory: behind the load balancer you get up to ${count} × the limit.`;
  else if (redis) note = "One process, counting in Redis.";
  else note = "One process counting in memory: exact, as long as there is only one.";
  ui.modeNote.textContent = note;
}

// Every answer that went through the limiter says whether the shared storage answered.
function noteStorage(res) {
  let unreachable;
  if (res.status === 503 && res.body && res.body.error === "storage_unavailable") unreachable = true;
  else if (res.ok || res.status === 429) unreachable = Boolean(res.degraded);
  else return;
  if (unreachable === state.unreachable) return;
  state.unreachable = unreachable;
  renderStorage();
  announce(unreachable ? ui.modeStorage.textContent : "Redis answers again: the replicas share one count.");
}

async function loadInfo() {
  const res = await request("/api/info");
  if (res.ok && res.body) { renderInfo(res.body); succeeded(); } else fail(res);
}

const quota = new Quota({
  meter: $("quota-meter"), text: $("quota-text"), reset: $("quota-reset"), source: $("quota-source"),
  limit: $("limit"), limitTitle: $("limit-title"), countdown: $("limit-countdown"),
}, { refresh: refreshQuota, onBlocked: updateSend, announce, badge });

const tokens = new Tokens({
  card: $("token-card"), meter: $("token-meter"), text: $("token-text"),
  bill: $("bill"), billText: $("bill-text"), billVerdict: $("bill-verdict"),
});
state.user = "";
const refreshBill = () => tokens.bill(state.user, scaled());

function showTier(tier) {
  $("quota-tier").hidden = !tier;
  $("quota-tier-name").textContent = tier || "";
}

const unavailable = (res) => res.status === 503 && res.body && res.body.error === "storage_unavailable";

async function refreshQuota() {
  const res = await request("/api/quota");
  noteStorage(res);
  window.clearTimeout(state.quotaRetry);
  if (res.ok && res.body) {
    quota.set(res.body.quota, res.servedBy, scaled(), res.body.enabled);
    tokens.set(res.body.tokens);
    state.user = res.body.user || "";
    refreshBill();
    showTier(res.body.tier);
    succeeded();
  } else if (unavailable(res)) {
    // FAIL_MODE=closed with the storage down: nothing can be counted, so say that, and ask
    // again until it answers (Retry-After is a second).
    quota.unavailable("Redis is unreachable, so no message can be counted: each one is refused until it answers.");
    state.quotaRetry = window.setTimeout(refreshQuota, PROBE_MS);
  } else fail(res);
  refreshReplicas();
  return res.ok;
}

// API_KEYS: the key typed here is sent with every request from now on (api.js).
const keyForm = document.getElementById("key-form");
if (keyForm) {
  keyForm.addEventListener("submit", (event) => {
    event.preventDefault();
    setApiKey($("api-key").value);
    refreshQuota();
  });
}

const replicaUi = { list: $("replica-list"), verdict: $("replicas-verdict"), refresh: $("replicas-refresh") };
async function refreshReplicas() {
  if (!scaled()) return;
  replicaUi.refresh.disabled = true;
  const views = await askReplicas(state.info.replicas);
  replicaUi.refresh.disabled = false;
  state.verdict = judge(views, state.info);
  showReplicaViews(replicaUi, views, state.verdict, badge);
  updateLimitNote();
}

// In scaled mode with each replica counting alone, being out of quota is one replica's view:
// say which one counted you out, and that the others would still let you through.
function updateLimitNote() {
  const alone = scaled() && state.info.enabled && (state.info.storage.kind !== "redis" || state.unreachable);
  const { verdict } = state;
  if (!(quota.blocked && alone && verdict)) {
    ui.limitOthers.textContent = "";
    return;
  }
  const by = quota.servedBy || "The replica that answered";
  const others = verdict.open.filter((name) => name !== quota.servedBy);
  ui.limitOthers.textContent = others.length
    ? `${by} counted you out; ${listed(others)} would still let you through: each replica counts you on its own.`
    : `${by} counted you out, and so has every other replica.`;
}

function listed(names) {
  return names.length < 2 ? names.join("") : `${names.slice(0, -1).join(", ")} and ${names.at(-1)}`;
}

// Screen readers hear what is left after each message (a polite live region).
function sayQuota() {
  const q = quota.quota;
  if (q) ui.quotaLive.textContent = `${q.remaining} of ${q.limit} messages left.`;
}

// ---- the chat --------------------------------------------------------------------------

function updateSend() {
  ui.send.disabled = state.busy || quota.blocked;
  updateLimitNote();
  // The composer is closed while a reply streams; Stop is the one thing to press then.
  ui.input.disabled = state.busy;
  ui.stop.hidden = !state.busy;
}

function addMessage(item) {
  ui.empty.remove();
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
      tokens.set(data.tokens);
    },
    delta(piece) { if (shown) shown.add(piece); },
    abort() { state.controller.abort(); },
  }, state.controller.signal);
  state.controller = null;
  state.busy = false;
  noteStorage(res);
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
    if (res.body && res.body.tokens && res.body.tokens.remaining !== undefined) tokens.set(res.body.tokens);
    else if (res.outcome !== "done") window.setTimeout(refreshQuota, 500);  // settled by now
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
      tokens.set(res.body.tokens);
      quota.block(Date.now() + (res.body.retry_after || 1) * 1000);
      const why = { tokens: "You've used your token budget for now.",
                    streams: "Your other replies are still streaming." }[res.body.exceeded];
      if (why) $("limit-title").textContent = why;
    } else {
      meta.textContent = `Not sent. ${describe(res)} It is back in the box.`;
      fail(res);
    }
  }
  sayQuota();
  refreshReplicas();
  refreshBill();
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
  for (const res of results) noteStorage(res);
  if (results.every((res) => !res.ok && res.status !== 429)) fail(results[0]);
  // The burst belongs to the conversation too: one line in the chat, instead of "Say hello".
  addMessage(make("li", "msg msg-system", burstUi.summary.textContent));
  await refreshQuota();
  sayQuota();
});
replicaUi.refresh.addEventListener("click", () => refreshReplicas());
ui.noticeDismiss.addEventListener("click", () => { ui.notice.hidden = true; });
document.addEventListener("visibilitychange", () => {
  if (document.visibilityState === "visible" && state.info) refreshQuota();
});

window.setInterval(() => quota.tick(), 250);
await loadInfo();
await refreshQuota();
