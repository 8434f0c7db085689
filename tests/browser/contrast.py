"""Contrast of every visible text on the page, computed from the styles Chromium rendered.

For each element with text of its own, the text colour is blended over the backgrounds behind
it (the element's and its ancestors', alpha and opacity included) and the WCAG 2 contrast
ratio computed. Disabled controls are left out (WCAG exempts inactive components), and so is
text clipped to nothing (the visually hidden live regions).
"""

from __future__ import annotations

from typing import Any

from playwright.sync_api import Page

AA = 4.5

_MEASURE = """
() => {
  const parse = (value) => {
    const m = value.match(/rgba?\\(([^)]+)\\)/);
    if (!m) return null;
    const parts = m[1].split(/[\\s,\\/]+/).filter(Boolean).map(Number);
    return { r: parts[0], g: parts[1], b: parts[2], a: parts.length > 3 ? parts[3] : 1 };
  };
  const over = (top, under) => {
    const a = top.a + under.a * (1 - top.a);
    const mix = (t, u) => (t * top.a + u * under.a * (1 - top.a)) / (a || 1);
    return { r: mix(top.r, under.r), g: mix(top.g, under.g), b: mix(top.b, under.b), a };
  };
  const lum = ({ r, g, b }) => {
    const lin = (c) => { c /= 255; return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4; };
    return 0.2126 * lin(r) + 0.7152 * lin(g) + 0.0722 * lin(b);
  };
  const hex = ({ r, g, b }) => "#" + [r, g, b].map((c) => Math.round(c).toString(16).padStart(2, "0")).join("");
  const canvas = parse(getComputedStyle(document.documentElement).backgroundColor);
  const base = canvas && canvas.a > 0 ? { ...canvas, a: 1 }
    : (matchMedia("(prefers-color-scheme: dark)").matches ? { r: 18, g: 18, b: 18, a: 1 } : { r: 255, g: 255, b: 255, a: 1 });
  const found = [];
  for (const el of document.body.querySelectorAll("*")) {
    if (el instanceof SVGElement || ["SCRIPT", "STYLE", "NOSCRIPT"].includes(el.tagName)) continue;
    const own = [...el.childNodes].filter((n) => n.nodeType === Node.TEXT_NODE && n.textContent.trim());
    const field = (el.tagName === "TEXTAREA" || el.tagName === "INPUT") && el.value;
    if (!own.length && !field) continue;
    if (el.closest(":disabled")) continue;
    let visible = field;
    for (const node of own) {
      const range = document.createRange();
      range.selectNodeContents(node);
      const box = range.getBoundingClientRect();
      if (box.width > 1 && box.height > 1) visible = true;
    }
    const style = getComputedStyle(el);
    if (!visible || style.visibility !== "visible" || !el.getClientRects().length) continue;
    // The backgrounds behind the text, nearest first, and the opacity of the whole chain.
    const layers = [];
    let opacity = 1;
    for (let node = el; node && node !== document.documentElement; node = node.parentElement) {
      const s = getComputedStyle(node);
      opacity *= Number(s.opacity);
      const bg = parse(s.backgroundColor);
      if (bg && bg.a > 0) layers.push(bg);
    }
    let bg = base;
    for (const layer of layers.reverse()) bg = over(layer, bg);
    const fg = parse(style.color);
    const text = over({ ...fg, a: fg.a * opacity }, bg);
    const [hi, lo] = [lum(text), lum(bg)].sort((a, b) => b - a);
    const ratio = (hi + 0.05) / (lo + 0.05);
    const name = el.id ? `#${el.id}` : `${el.tagName.toLowerCase()}.${[...el.classList].join(".")}`;
    found.push({
      element: name, text: (field || own.map((n) => n.textContent).join(" ")).trim().slice(0, 60),
      ratio: Math.round(ratio * 100) / 100, color: hex(text), background: hex(bg),
    });
  }
  return found;
}
"""


def text_contrast(page: Page) -> list[dict[str, Any]]:
    """Every visible text element: {element, text, ratio, color, background}."""
    return list(page.evaluate(_MEASURE))


def below_aa(page: Page, scheme: str) -> list[str]:
    """The texts under 4.5:1 in `scheme` ("light" or "dark"), one readable line each."""
    page.emulate_media(color_scheme=scheme)  # type: ignore[arg-type]
    return [
        f"{scheme}: {t['element']} {t['ratio']}:1 ({t['color']} on {t['background']}) {t['text']!r}"
        for t in text_contrast(page) if t["ratio"] < AA
    ]
