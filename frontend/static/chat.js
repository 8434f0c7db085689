"use strict";
// The chat page: messages with the replica that answered, the quota meter with a live
// countdown, the mode banner, Burst and each replica's own view of the caller's quota.
// Every string from the server or the user goes into the page with textContent, never as HTML.
(() => {
  const $ = (id) => document.getElementById(id);
  const ui = {
    form: $("chat-form"), input: $("message"), send: $("send"), hint: $("message-hint"),
    list: $("messages"), empty: $("empty"),
    limit: $("limit"), limitTitle: $("limit-title"), limitText: $("limit-text"),
    limitCountdown: $("limit-countdown"),
    meter: $("quota-meter"), quotaText: $("quota-text"), quotaReset: $("quota-reset"),
    quotaSource: $("quota-source"),
    notice: $("notice"), noticeText: $("notice-text"), noticeDismiss: $("notice-dismiss"),
    modeKind: $("mode-kind"), modeStorage: $("mode-storage"), modeStrategy: $("mode-strategy"),
    modeLimit: $("mode-limit"), modeNote: $("mode-note"),
    burstForm: $("burst-form"), burstCount: $("burst-count"), burst: $("burst"),
    burstSummary: $("burst-summary"), burstTable: $("burst-table"), burstRows: $("burst-rows"),
    burstAllowed: $("burst-allowed"), burstBlocked: $("burst-blocked"),
    replicas: $("replicas"), replicaList: $("replica-list"), replicasVerdict: $("replicas-verdict"),
    replicasRefresh: $("replicas-refresh"), announcer: $("announcer"),
  };
  const HINT = ui.hint.textContent;
  const PALETTE_SIZE = 8;
  const REQUEST_TIMEOUT_MS = 15000;
  const PROBE_INTERVAL_MS = 3000;

  const state = {
    info: null,
    quota: null,       // {limit, remaining, reset_after} as last heard, or null when unlimited
    resetAt: 0,        // ms since epoch when the quota next grows
    refreshedFor: 0,   // the resetAt whose passing already triggered a refresh
    blockedUntil: 0,   // ms since epoch; 0 while Send is allowed
    rechecking: false,
    busy: false,
    probe: 0,          // interval id while the server is unreachable
  };

  // ---- small helpers -------------------------------------------------------------------

  function make(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function formatDuration(seconds) {
    const s = Math.max(0, Math.ceil(seconds));
    const pad = (n) => String(n).padStart(2, "0");
    if (s >= 3600) return `${Math.floor(s / 3600)}:${pad(Math.floor(s / 60) % 60)}:${pad(s % 60)}`;
    return `${Math.floor(s / 60)}:${pad(s % 60)}`;
  }

  function announce(text) {
    // Cleared first so that the same sentence twice is still announced twice.
    ui.announcer.textContent = "";
    window.setTimeout(() => { ui.announcer.textContent = text; }, 60);
  }

  function colourClass(name) {
    // A stable colour per replica name: its place in the configured list, else a hash.
    const known = state.info ? state.info.replicas.indexOf(name) : -1;
    let index = known;
    if (index < 0) {
      let hash = 2166136261;
      for (const ch of name) hash = Math.imul(hash ^ ch.codePointAt(0), 16777619) >>> 0;
      index = hash;
    }
    return `replica-c${index % PALETTE_SIZE}`;
  }

  function badge(name) {
    return make("span", `badge ${colourClass(name)}`, name);
  }

  async function request(path, init = {}) {
    const controller = new AbortController();
    const timer = window.setTimeout(() => controller.abort(), REQUEST_TIMEOUT_MS);
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
      const timeout = err && err.name === "AbortError";
      return { ok: false, status: 0, body: null, servedBy: "", failure: timeout ? "timeout" : "network" };
    } finally {
      window.clearTimeout(timer);
    }
  }

  function describe(res) {
    if (res.status === 0) {
      return res.failure === "timeout"
        ? "The server took too long to answer."
        : "Can't reach the server: it is down or your connection dropped.";
    }
    const detail = res.body && typeof res.body.detail === "string" ? res.body.detail : "";
    const what = res.status >= 500 ? `Server error ${res.status}` : `Error ${res.status}`;
    return detail ? `${what}: ${detail}` : `${what}${res.statusText ? ` (${res.statusText})` : ""}.`;
  }

  // ---- notices and reconnecting ----------------------------------------------------------

  function showNotice(text) {
    ui.noticeText.textContent = text;
    ui.notice.hidden = false;
  }

  function clearNotice() {
    ui.notice.hidden = true;
    ui.noticeText.textContent = "";
  }

  function fail(res) {
    if (res.status === 0) {
      showNotice(`${describe(res)} Trying again every few seconds…`);
      startProbe();
    } else {
      showNotice(describe(res));
    }
  }

  function startProbe() {
    if (state.probe) return;
    state.probe = window.setInterval(async () => {
      const res = await request("/healthz");
      if (!res.ok) return;
      window.clearInterval(state.probe);
      state.probe = 0;
      clearNotice();
      announce("Connected to the server again.");
      await loadInfo();
      await refreshQuota();
      refreshReplicas();
    }, PROBE_INTERVAL_MS);
  }

  function succeeded() {
    if (!state.probe) clearNotice();
  }

  // ---- mode banner -----------------------------------------------------------------------

  function renderInfo(info) {
    state.info = info;
    const scaled = info.mode === "scaled";
    const count = info.replicas.length;
    ui.modeKind.textContent = scaled ? `Scaled · ${count} replicas` : "Single process";
    const redis = info.storage.kind === "redis";
    ui.modeStorage.textContent = redis ? "Redis, shared" : "Memory, per process";
    ui.modeStorage.className = `chip chip-${redis ? "redis" : "memory"}`;
    ui.modeStrategy.textContent = info.strategy;
    ui.modeLimit.textContent = info.enabled ? info.limits.join(" + ") || info.rate_limit : "limit off";
    let note;
    if (!info.enabled) note = "Rate limiting is switched off here: every message goes through.";
    else if (scaled && redis) note = `All ${count} replicas count in one shared Redis, so the limit holds whichever replica answers.`;
    else if (scaled) note = `Each of the ${count} replicas counts you in its own memory: behind the load balancer you get up to ${count} × the limit.`;
    else if (redis) note = "One process, counting in Redis.";
    else note = "One process counting in memory: exact, as long as there is only one.";
    ui.modeNote.textContent = note;
    ui.replicas.hidden = count === 0;
  }

  async function loadInfo() {
    const res = await request("/api/info");
    if (res.ok && res.body) { renderInfo(res.body); succeeded(); } else fail(res);
  }

  // ---- quota, countdown and the limit ------------------------------------------------------

  function setQuota(quota, servedBy, receivedAt = Date.now()) {
    state.quota = quota || null;
    // Behind a load balancer the quota is one replica's count: say whose.
    const scaled = state.info && state.info.replicas.length > 0;
    ui.quotaSource.hidden = !(scaled && servedBy && quota);
    if (!ui.quotaSource.hidden) ui.quotaSource.replaceChildren("As counted by", badge(servedBy));
    if (!quota) {
      ui.meter.hidden = true;
      ui.quotaText.textContent = "Unlimited: rate limiting is off.";
      ui.quotaReset.textContent = "";
      state.resetAt = 0;
      if (state.blockedUntil) unblock();
      return;
    }
    ui.meter.hidden = false;
    ui.meter.max = Math.max(1, quota.limit);
    ui.meter.low = 0.5;
    ui.meter.high = Math.max(1, quota.limit / 2);
    ui.meter.optimum = quota.limit;
    ui.meter.value = quota.remaining;
    ui.quotaText.replaceChildren(
      make("strong", "", `${quota.remaining} of ${quota.limit}`),
      document.createTextNode(" left"),
    );
    state.resetAt = quota.reset_after > 0 ? receivedAt + quota.reset_after * 1000 : 0;
    if (quota.remaining <= 0) block(state.resetAt);
    else if (state.blockedUntil) unblock();
    renderClock();
  }

  async function refreshQuota() {
    const res = await request("/api/quota");
    if (res.ok && res.body) { setQuota(res.body.quota, res.servedBy); succeeded(); } else fail(res);
    return res;
  }

  function block(until) {
    const wasBlocked = state.blockedUntil > 0;
    state.blockedUntil = Math.max(until, Date.now() + 1000, state.blockedUntil);
    ui.limit.hidden = false;
    const limit = state.quota ? state.quota.limit : "your";
    ui.limitTitle.textContent = `You've used all ${limit} messages for now.`;
    ui.limitText.textContent = "Send is back in";
    updateSend();
    renderClock();
    if (!wasBlocked) {
      const seconds = Math.ceil((state.blockedUntil - Date.now()) / 1000);
      announce(`Limit reached. You can send again in ${seconds} seconds.`);
    }
  }

  function unblock() {
    state.blockedUntil = 0;
    ui.limit.hidden = true;
    updateSend();
    announce("You can send messages again.");
  }

  async function recheck() {
    // The countdown ran out: ask (consuming nothing) whether the quota is really back.
    state.rechecking = true;
    const res = await refreshQuota();
    state.rechecking = false;
    if (!res.ok && state.blockedUntil) state.blockedUntil = Date.now() + PROBE_INTERVAL_MS;
  }

  function renderClock() {
    const now = Date.now();
    const quota = state.quota;
    if (quota) {
      if (state.resetAt > now) {
        ui.quotaReset.textContent = `Resets in ${formatDuration((state.resetAt - now) / 1000)}`;
      } else if (quota.remaining >= quota.limit) {
        ui.quotaReset.textContent = "Nothing used in this window yet.";
      } else {
        ui.quotaReset.textContent = "Resetting…";
      }
    }
    if (state.blockedUntil) {
      const left = (state.blockedUntil - now) / 1000;
      ui.limitCountdown.textContent = left > 0 ? formatDuration(left) : "a moment";
    }
  }

  function tick() {
    const now = Date.now();
    renderClock();
    if (state.blockedUntil && now >= state.blockedUntil && !state.rechecking) {
      recheck();
    } else if (state.resetAt && now >= state.resetAt && state.refreshedFor !== state.resetAt) {
      state.refreshedFor = state.resetAt;
      refreshQuota();
    }
  }

  function updateSend() {
    ui.send.disabled = state.busy || state.blockedUntil > 0;
  }

  // ---- the chat --------------------------------------------------------------------------

  function addMessage(node) {
    ui.empty.hidden = true;
    ui.list.appendChild(node);
    node.scrollIntoView({ block: "nearest" });
    return node;
  }

  function mine(text) {
    const item = make("li", "msg msg-me");
    item.append(make("span", "visually-hidden", "You: "), make("p", "msg-text", text));
    const meta = make("p", "msg-meta", "Sending…");
    item.appendChild(meta);
    addMessage(item);
    return meta;
  }

  function reply(text, servedBy) {
    const item = make("li", "msg msg-bot");
    const meta = make("p", "msg-meta");
    meta.append(make("span", "visually-hidden", "Reply from "), badge(servedBy || "unknown"));
    item.append(meta, make("p", "msg-text", text));
    addMessage(item);
  }

  async function send() {
    const text = ui.input.value.trim();
    if (state.busy || state.blockedUntil) return;
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
    const res = await request("/chat", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ message: text }),
    });
    state.busy = false;
    if (res.ok && res.body) {
      meta.textContent = "Sent";
      reply(res.body.reply, res.body.served_by || res.servedBy);
      setQuota(res.body.quota, res.body.served_by || res.servedBy);
      succeeded();
      refreshReplicas();
    } else {
      meta.classList.add("msg-failed");
      if (!ui.input.value) ui.input.value = text;
      if (res.status === 429 && res.body && res.body.quota) {
        meta.textContent = "Not sent: over the limit. It is back in the box for later.";
        setQuota(res.body.quota, res.servedBy);
        block(Date.now() + (res.body.retry_after || 1) * 1000);
        refreshReplicas();
      } else {
        meta.textContent = `Not sent: ${describe(res)} It is back in the box.`;
        fail(res);
      }
    }
    updateSend();
    if (keepFocus) ui.input.focus();
  }

  // ---- Burst -----------------------------------------------------------------------------

  async function burst(count) {
    ui.burst.disabled = true;
    ui.burstSummary.textContent = `Sending ${count} requests at once…`;
    const results = await Promise.all(Array.from({ length: count }, (_, i) => request("/chat", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ message: `Burst message ${i + 1} of ${count}` }),
    })));
    const rows = new Map();
    let allowed = 0;
    let blocked = 0;
    const errors = [];
    for (const res of results) {
      const name = res.servedBy || (res.status === 0 ? "no answer" : "proxy");
      const row = rows.get(name) || { allowed: 0, blocked: 0 };
      if (res.ok) { row.allowed += 1; allowed += 1; }
      else if (res.status === 429) { row.blocked += 1; blocked += 1; }
      else errors.push(res.status || res.failure);
      rows.set(name, row);
    }
    ui.burstRows.replaceChildren(...[...rows.entries()]
      .filter(([, row]) => row.allowed + row.blocked > 0)
      .sort(([a], [b]) => a.localeCompare(b, undefined, { numeric: true }))
      .map(([name, row]) => {
        const tr = make("tr");
        const th = make("th");
        th.scope = "row";
        th.appendChild(badge(name));
        tr.append(th, make("td", "", String(row.allowed)), make("td", "", String(row.blocked)));
        return tr;
      }));
    ui.burstAllowed.textContent = String(allowed);
    ui.burstBlocked.textContent = String(blocked);
    ui.burstTable.hidden = false;
    let summary = `${allowed} of ${count} allowed, ${blocked} blocked.`;
    const limit = state.quota ? state.quota.limit : 0;
    if (limit && allowed > limit) summary += ` More than the limit of ${limit} got through: the replicas count separately.`;
    if (errors.length) summary += ` ${errors.length} failed (${[...new Set(errors)].join(", ")}).`;
    ui.burstSummary.textContent = summary;
    ui.burst.disabled = false;
    if (errors.length === count) fail(results[0]);
    await refreshQuota();
    refreshReplicas();
  }

  // ---- each replica's view ---------------------------------------------------------------

  async function refreshReplicas() {
    const names = state.info ? state.info.replicas : [];
    if (!names.length) return;
    ui.replicasRefresh.disabled = true;
    const views = await Promise.all(names.map(
      (name) => request(`/replica/${encodeURIComponent(name)}/api/quota`),
    ));
    ui.replicasRefresh.disabled = false;
    const remaining = [];
    ui.replicaList.replaceChildren(...names.map((name, i) => {
      const res = views[i];
      const item = make("li", "replica");
      item.dataset.replica = name;
      item.appendChild(badge(name));
      const quota = res.ok && res.body ? res.body.quota : null;
      if (quota) {
        remaining.push(quota.remaining);
        const meter = make("meter");
        meter.max = Math.max(1, quota.limit);
        meter.low = 0.5;
        meter.high = Math.max(1, quota.limit / 2);
        meter.optimum = quota.limit;
        meter.value = quota.remaining;
        meter.setAttribute("aria-label", `${name}: ${quota.remaining} of ${quota.limit} left`);
        item.append(meter, make("span", "replica-text", `${quota.remaining} of ${quota.limit} left`));
      } else if (res.ok) {
        item.appendChild(make("span", "replica-text", "no limit"));
      } else {
        item.appendChild(make("span", "replica-text replica-down", describe(res)));
      }
      return item;
    }));
    const redis = state.info.storage.kind === "redis";
    let verdict;
    let good = true;
    if (remaining.length < names.length) {
      verdict = "Some replicas did not answer.";
      good = false;
    } else if (new Set(remaining).size === 1) {
      verdict = redis
        ? "All replicas agree: they share one count in Redis."
        : "All replicas agree, for now. Send a few messages and watch them drift apart.";
    } else {
      verdict = "The replicas disagree: each one counts you on its own, so together they allow more than the limit.";
      good = false;
    }
    ui.replicasVerdict.textContent = verdict;
    ui.replicasVerdict.className = `verdict ${good ? "verdict-good" : "verdict-bad"}`;
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
  ui.burstForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const count = Math.round(Number(ui.burstCount.value));
    if (!Number.isFinite(count) || count < 1 || count > 50) {
      ui.burstSummary.textContent = "Choose between 1 and 50 requests.";
      ui.burstCount.focus();
      return;
    }
    burst(count);
  });
  ui.replicasRefresh.addEventListener("click", () => refreshReplicas());
  ui.noticeDismiss.addEventListener("click", () => clearNotice());
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible" && state.info) refreshQuota();
  });

  window.setInterval(tick, 250);
  (async () => {
    await loadInfo();
    await refreshQuota();
    refreshReplicas();
  })();
})();
