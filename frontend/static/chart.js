// The live chart (scaled mode): allowed and blocked /chat requests per replica over the last
// minute, from each replica's GET /api/stats asked through nginx's /replica/<name>/ routes.
// Plain SVG built with DOM calls (no library, no CDN); every number goes in as text.
// It starts itself: chat.js needs nothing from it.

import { request } from "./api.js";
import { $, badge, make } from "./dom.js";

const POLL_MS = 2000;
const SVG = "http://www.w3.org/2000/svg";
const WIDTH = 240;
const HEIGHT = 48;

function svg(tag, attrs) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, String(value));
  return node;
}

// One replica's minute: a bar per bucket, allowed stacked under blocked (and shadow, the
// requests shadow mode let through that the limit would have refused).
function bars(series, scale) {
  const buckets = series.allowed.length;
  const slot = WIDTH / buckets;
  const chart = svg("svg", {
    viewBox: `0 0 ${WIDTH} ${HEIGHT}`, preserveAspectRatio: "none", class: "chart-bars", "aria-hidden": "true",
  });
  chart.appendChild(svg("line", { x1: 0, y1: HEIGHT - 0.5, x2: WIDTH, y2: HEIGHT - 0.5, class: "chart-axis" }));
  for (let i = 0; i < buckets; i += 1) {
    let top = HEIGHT - 1;
    for (const kind of ["allowed", "blocked", "shadow"]) {
      const value = series[kind][i];
      if (!value) continue;
      const height = Math.max(1, (value / scale) * (HEIGHT - 4));
      top -= height;
      chart.appendChild(svg("rect", {
        x: i * slot + 1, y: top, width: slot - 2, height, class: `chart-${kind}`,
      }));
    }
  }
  return chart;
}

function render(ui, names, answers, colour) {
  const ok = answers.filter((res) => res.ok && res.body);
  // One scale for every replica, so their bars compare.
  const scale = Math.max(1, ...ok.flatMap((res) => res.body.series.allowed.map(
    (a, i) => a + res.body.series.blocked[i] + res.body.series.shadow[i])));
  let allowed = 0;
  let blocked = 0;
  let shadow = 0;
  ui.list.replaceChildren(...names.map((name, i) => {
    const res = answers[i];
    const item = make("li", "chart-replica");
    item.dataset.replica = name;
    item.appendChild(colour(name));
    if (!(res.ok && res.body)) {
      item.appendChild(make("span", "chart-text replica-down", "no answer"));
      return item;
    }
    const stats = res.body;
    allowed += stats.allowed;
    blocked += stats.blocked;
    shadow += stats.shadow;
    item.dataset.allowed = String(stats.allowed);
    item.dataset.blocked = String(stats.blocked);
    let text = `${stats.allowed} allowed · ${stats.blocked} blocked`;
    if (stats.shadow) text += ` · ${stats.shadow} would be refused`;
    const chart = bars(stats.series, scale);
    item.setAttribute("aria-label", `${name}: ${text} in the last minute`);
    item.append(chart, make("span", "chart-text", text));
    return item;
  }));
  let total = `All replicas, last minute: ${allowed} allowed, ${blocked} blocked.`;
  if (shadow) total += ` Shadow mode let ${shadow} through that the limit would refuse.`;
  ui.total.textContent = total;
  ui.total.dataset.allowed = String(allowed);
  ui.total.dataset.blocked = String(blocked);
}

async function poll(ui, names, colour) {
  if (document.visibilityState !== "visible") return;
  const answers = await Promise.all(
    names.map((name) => request(`/replica/${encodeURIComponent(name)}/api/stats`)),
  );
  render(ui, names, answers, colour);
}

async function start() {
  const ui = { card: $("live-chart"), list: $("chart-list"), total: $("chart-total") };
  if (!ui.card) return;
  const info = await request("/api/info");
  if (!(info.ok && info.body && info.body.mode === "scaled")) return;
  const names = info.body.replicas;
  // The replica list makes each badge the colour it has everywhere else on the page.
  const colour = (name) => badge(name, names);
  ui.card.hidden = false;
  const tick = () => poll(ui, names, colour);
  await tick();
  window.setInterval(tick, POLL_MS);
  document.addEventListener("visibilitychange", tick);
}

start();
