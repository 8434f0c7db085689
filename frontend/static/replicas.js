// Each replica's own count of the caller, asked through nginx's /replica/<name>/ routes, and
// the verdict judged by what was used. Comparing what each replica has *left* reads equal
// numbers as agreement (three replicas at 0 left have let three quotas through), so the panel
// adds up what they let through instead: with memory (or while Redis is unreachable) every
// replica counts alone and their sum is what you got; with Redis they all read one count.

import { describe, request } from "./api.js";
import { make, meter } from "./dom.js";

// -> [{name, res, quota}]: quota is null when the replica did not answer or has no limit.
export async function askReplicas(names) {
  const answers = await Promise.all(
    names.map((name) => request(`/replica/${encodeURIComponent(name)}/api/quota`)),
  );
  return names.map((name, i) => {
    const res = answers[i];
    return { name, res, quota: res.ok && res.body ? res.body.quota : null };
  });
}

// What the views add up to: {tone: "good" | "bad" | "open", text, together, limit, out, open,
// shared}.
// out: the replicas with nothing left for you; open: those that would still let you through.
export function judge(views, info) {
  const counted = views.filter((view) => view.quota);
  const out = counted.filter((view) => view.quota.remaining <= 0).map((view) => view.name);
  const open = counted.filter((view) => view.quota.remaining > 0).map((view) => view.name);
  if (views.some((view) => !view.res.ok)) {
    return { tone: "bad", text: "Some replicas did not answer.", together: 0, limit: 0, out, open };
  }
  if (counted.length < views.length) {
    return { tone: "open", text: "Rate limiting is off: every replica lets everything through.",
             together: 0, limit: 0, out, open };
  }
  const used = counted.map((view) => Math.max(0, view.quota.limit - view.quota.remaining));
  const limit = counted.length ? counted[0].quota.limit : 0;
  const degraded = views.some((view) => view.res.degraded);
  const shared = info.storage.kind === "redis" && !degraded;
  // With one shared count every replica reports the same number; alone, each its own part.
  const together = shared ? Math.max(0, ...used) : used.reduce((a, b) => a + b, 0);
  let tone;
  let text;
  if (together > limit) {
    tone = "bad";
    text = `Together they let ${together} through; the limit is ${limit}. Each replica counts you on its own, so you get up to ${views.length} \u00d7 the limit.`;
  } else if (shared) {
    tone = "good";
    text = `They share one count in Redis: ${together} of ${limit} used, whichever replica answers.`;
  } else {
    tone = "open";
    text = `Together they let ${together} through; the limit is ${limit}. Each replica counts you on its own, so the sum can pass the limit: send a few more, or a burst.`;
  }
  return { tone, text, together, limit, out, open, shared };
}

// ui: {list, verdict}; badge(name) colours a name. A replica reading the shared count "sees"
// it; one counting alone "let" that many through itself.
export function showReplicaViews(ui, views, verdict, badge) {
  ui.list.replaceChildren(...views.map(({ name, res, quota }) => {
    const item = make("li", "replica");
    item.dataset.replica = name;
    item.appendChild(badge(name));
    if (quota) {
      const used = Math.max(0, quota.limit - quota.remaining);
      const counted = verdict.shared ? `sees ${used} used` : `let ${used} through`;
      const text = `${counted}, ${quota.remaining} of ${quota.limit} left`;
      const bar = meter(quota);
      bar.setAttribute("aria-label", `${name}: ${text}`);
      item.append(bar, make("span", "replica-text", text));
    } else if (res.ok) {
      item.appendChild(make("span", "replica-text", "no limit"));
    } else {
      item.appendChild(make("span", "replica-text replica-down", describe(res)));
    }
    return item;
  }));
  ui.verdict.textContent = verdict.text;
  ui.verdict.className = `verdict verdict-${verdict.tone}`;
}
