// The quota meter, its live countdown, and the limit: Send waits out the countdown, then the
// quota is asked for again (consuming nothing) and Send comes back by itself.

import { formatDuration, make } from "./dom.js";

const RETRY_MS = 3000;

export class Quota {
  // ui: {meter, text, reset, source, limit, limitTitle, countdown}; refresh() asks /api/quota
  // and returns whether it answered; onBlocked(blocked) follows the limit; badge(name) colours.
  constructor(ui, { refresh, onBlocked, announce, badge }) {
    Object.assign(this, { ui, refresh, onBlocked, announce, badge });
    this.quota = null;        // {limit, remaining, reset_after} as last heard; null: unlimited
    this.servedBy = "";       // the replica whose count that was
    this.resetAt = 0;         // ms since epoch when the quota next grows
    this.refreshedFor = 0;    // the resetAt whose passing already asked for a refresh
    this.blockedUntil = 0;    // ms since epoch; 0 while sending is allowed
    this.rechecking = false;
  }

  get blocked() { return this.blockedUntil > 0; }
  get limit() { return this.quota ? this.quota.limit : 0; }

  // servedBy is shown when the count is one replica's among several; enabled is false when
  // rate limiting is switched off (no quota then), true when the quota is merely unknown.
  set(quota, servedBy = "", scaled = false, enabled = true, receivedAt = Date.now()) {
    const { ui } = this;
    this.quota = quota || null;
    this.servedBy = servedBy;
    ui.source.hidden = !(scaled && servedBy && quota);
    if (!ui.source.hidden) ui.source.replaceChildren("As counted by", this.badge(servedBy));
    if (!quota) {
      ui.meter.hidden = true;
      ui.text.textContent = enabled ? "Quota unknown right now." : "Unlimited: rate limiting is off.";
      ui.reset.textContent = "";
      this.resetAt = 0;
      if (this.blocked) this.unblock();
      return;
    }
    ui.meter.hidden = false;
    ui.meter.max = Math.max(1, quota.limit);
    ui.meter.low = 0.5;
    ui.meter.high = Math.max(1, quota.limit / 2);
    ui.meter.optimum = quota.limit;
    ui.meter.value = quota.remaining;
    ui.text.replaceChildren(make("strong", "", `${quota.remaining} of ${quota.limit}`), " left");
    this.resetAt = quota.reset_after > 0 ? receivedAt + quota.reset_after * 1000 : 0;
    if (quota.remaining <= 0) this.block(this.resetAt);
    else if (this.blocked) this.unblock();
    this.render();
  }

  // No count can be had (FAIL_MODE=closed with the storage down): say so, rather than keep
  // "Loading..." or the last full meter on screen.
  unavailable(text) {
    const { ui } = this;
    this.quota = null;
    this.resetAt = 0;
    ui.source.hidden = true;
    ui.meter.hidden = true;
    ui.text.textContent = text;
    ui.reset.textContent = "Asking again every few seconds…";
    if (this.blocked) this.unblock();
  }

  block(until) {
    const wasBlocked = this.blocked;
    this.blockedUntil = Math.max(until, Date.now() + 1000, this.blockedUntil);
    this.ui.limit.hidden = false;
    this.ui.limitTitle.textContent = `You've used all ${this.limit || "your"} messages for now.`;
    this.render();
    this.onBlocked(true);
    if (!wasBlocked) {
      const seconds = Math.ceil((this.blockedUntil - Date.now()) / 1000);
      this.announce(`Limit reached. You can send again in ${seconds} seconds.`);
    }
  }

  unblock() {
    this.blockedUntil = 0;
    this.ui.limit.hidden = true;
    this.onBlocked(false);
    this.announce("You can send messages again.");
  }

  render(now = Date.now()) {
    const { ui, quota } = this;
    if (quota) {
      if (this.resetAt > now) ui.reset.textContent = `Resets in ${formatDuration((this.resetAt - now) / 1000)}`;
      else if (quota.remaining >= quota.limit) ui.reset.textContent = "Nothing used in this window yet.";
      else ui.reset.textContent = "Resetting…";
    }
    if (this.blocked) {
      const left = (this.blockedUntil - now) / 1000;
      ui.countdown.textContent = left > 0 ? formatDuration(left) : "a moment";
    }
  }

  // Called a few times a second: the countdown, and asking again once it has run out.
  async tick() {
    const now = Date.now();
    this.render(now);
    if (this.blocked && now >= this.blockedUntil && !this.rechecking) {
      this.rechecking = true;
      const answered = await this.refresh();
      this.rechecking = false;
      if (!answered && this.blocked) this.blockedUntil = Date.now() + RETRY_MS;
    } else if (this.resetAt && now >= this.resetAt && this.refreshedFor !== this.resetAt) {
      this.refreshedFor = this.resetAt;
      await this.refresh();
    }
  }
}
