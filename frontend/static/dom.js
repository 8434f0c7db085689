// Small DOM helpers. Text only ever goes in through textContent, never as HTML.

export const $ = (id) => document.getElementById(id);

export function make(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

export function formatDuration(seconds) {
  const s = Math.max(0, Math.ceil(seconds));
  const pad = (n) => String(n).padStart(2, "0");
  if (s >= 3600) return `${Math.floor(s / 3600)}:${pad(Math.floor(s / 60) % 60)}:${pad(s % 60)}`;
  return `${Math.floor(s / 60)}:${pad(s % 60)}`;
}

const PALETTE_SIZE = 8;

// A stable colour per replica name: its place in the configured list, else a hash of it.
export function colourClass(name, replicas = []) {
  let index = replicas.indexOf(name);
  if (index < 0) {
    index = 2166136261;
    for (const ch of name) index = Math.imul(index ^ ch.codePointAt(0), 16777619) >>> 0;
  }
  return `replica-c${index % PALETTE_SIZE}`;
}

export function badge(name, replicas) {
  return make("span", `badge ${colourClass(name, replicas)}`, name);
}

export function meter(quota) {
  const node = make("meter");
  node.max = Math.max(1, quota.limit);
  node.low = 0.5;
  node.high = Math.max(1, quota.limit / 2);
  node.optimum = quota.limit;
  node.value = quota.remaining;
  return node;
}

// Screen readers hear what goes into an aria-live region; clearing it first means the same
// sentence twice is still announced twice.
export function announcer(region) {
  return (text) => {
    region.textContent = "";
    window.setTimeout(() => { region.textContent = text; }, 60);
  };
}
