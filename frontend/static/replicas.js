// Each replica's own view of the caller's quota, asked through nginx's /replica/<name>/ routes:
// identical when the replicas share Redis, different when each counts in memory.

import { describe, request } from "./api.js";
import { make, meter } from "./dom.js";

// ui: {list, verdict, refresh}; info is /api/info's answer; badge(name) colours a name.
export async function showReplicaViews(ui, info, badge) {
  const names = info.replicas;
  ui.refresh.disabled = true;
  const views = await Promise.all(
    names.map((name) => request(`/replica/${encodeURIComponent(name)}/api/quota`)),
  );
  ui.refresh.disabled = false;
  const remaining = [];
  ui.list.replaceChildren(...names.map((name, i) => {
    const res = views[i];
    const item = make("li", "replica");
    item.dataset.replica = name;
    item.appendChild(badge(name));
    const quota = res.ok && res.body ? res.body.quota : null;
    if (quota) {
      remaining.push(quota.remaining);
      const bar = meter(quota);
      bar.setAttribute("aria-label", `${name}: ${quota.remaining} of ${quota.limit} left`);
      item.append(bar, make("span", "replica-text", `${quota.remaining} of ${quota.limit} left`));
    } else if (res.ok) {
      item.appendChild(make("span", "replica-text", "no limit"));
    } else {
      item.appendChild(make("span", "replica-text replica-down", describe(res)));
    }
    return item;
  }));
  let verdict;
  let agree = false;
  if (remaining.length < names.length) {
    verdict = "Some replicas did not answer.";
  } else if (new Set(remaining).size === 1) {
    agree = true;
    verdict = info.storage.kind === "redis"
      ? "All replicas agree: they share one count in Redis."
      : "All replicas agree, for now. Send a few messages and watch them drift apart.";
  } else {
    verdict = "The replicas disagree: each one counts you on its own, so together they allow more than the limit.";
  }
  ui.verdict.textContent = verdict;
  ui.verdict.className = `verdict ${agree ? "verdict-good" : "verdict-bad"}`;
}
