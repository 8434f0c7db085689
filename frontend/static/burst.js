// Burst: N messages at once, like a script would send them, and a table of what each replica
// allowed and blocked.

import { postChat } from "./api.js";
import { make } from "./dom.js";

function tally(results) {
  const rows = new Map();
  const totals = { allowed: 0, blocked: 0, errors: [] };
  for (const res of results) {
    const name = res.servedBy || (res.status === 0 ? "no answer" : "proxy");
    const row = rows.get(name) || { allowed: 0, blocked: 0 };
    if (res.ok) { row.allowed += 1; totals.allowed += 1; }
    else if (res.status === 429) { row.blocked += 1; totals.blocked += 1; }
    else { totals.errors.push(res.status || res.failure); continue; }
    rows.set(name, row);
  }
  return { rows, totals };
}

// ui: {button, summary, table, rows, allowed, blocked}; badge(name) colours a replica name.
export async function burst(count, ui, { badge, limit }) {
  ui.button.disabled = true;
  ui.summary.textContent = `Sending ${count} requests at once…`;
  const results = await Promise.all(
    Array.from({ length: count }, (_, i) => postChat(`Burst message ${i + 1} of ${count}`)),
  );
  const { rows, totals } = tally(results);
  ui.rows.replaceChildren(...[...rows.entries()]
    .sort(([a], [b]) => a.localeCompare(b, undefined, { numeric: true }))
    .map(([name, row]) => {
      const tr = make("tr");
      const th = make("th");
      th.scope = "row";
      th.appendChild(badge(name));
      tr.append(th, make("td", "", String(row.allowed)), make("td", "", String(row.blocked)));
      return tr;
    }));
  ui.allowed.textContent = String(totals.allowed);
  ui.blocked.textContent = String(totals.blocked);
  ui.table.hidden = false;
  let summary = `${totals.allowed} of ${count} allowed, ${totals.blocked} blocked.`;
  if (limit && totals.allowed > limit) {
    summary += ` More than the limit of ${limit} got through: the replicas count separately.`;
  }
  if (totals.errors.length) {
    summary += ` ${totals.errors.length} failed (${[...new Set(totals.errors)].join(", ")}).`;
  }
  ui.summary.textContent = summary;
  ui.button.disabled = false;
  return results;
}
