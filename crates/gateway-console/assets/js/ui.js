// Small DOM helpers shared by the pages.

/** Builds an element: h("button", {type: "button", onclick}, "Text"). */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(el.dataset, v);
    else if (v === true) el.setAttribute(k, "");
    else el.setAttribute(k, String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

/** A table with a caption (for screen readers) and one row per item. */
export function table(caption, headers, rows, rowAttrs) {
  return h("div", { class: "scroll" },
    h("table", {},
      h("caption", { class: "muted", style: "text-align:left" }, caption),
      h("thead", {}, h("tr", {}, headers.map((t) => h("th", { scope: "col" }, t)))),
      h("tbody", {}, rows.map((r, i) => h("tr", rowAttrs ? rowAttrs(i) : {}, r.map((c) => h("td", {}, c)))))));
}

/** A labelled input inside a div, for inline forms. */
export function field(id, label, attrs = {}) {
  const input = attrs.tag === "select"
    ? h("select", { id, name: id }, (attrs.options || []).map((o) => h("option", { value: o[0] }, o[1])))
    : h(attrs.tag || "input", { id, name: id, ...attrs, tag: undefined });
  return h("div", {}, h("label", { for: id }, label), input);
}

export function card(title, ...children) {
  return h("section", { class: "card", "aria-label": title }, h("h2", {}, title), ...children);
}

export function tile(label, value, cls) {
  return h("div", { class: "tile" }, h("div", { class: `v ${cls || ""}` }, value), h("div", { class: "l" }, label));
}

let statusTimer = null;
/** A message in the live region (read out by screen readers). */
export function say(text, bad = false) {
  const el = document.getElementById("status");
  el.textContent = text;
  el.className = bad ? "status bad" : "status";
  clearTimeout(statusTimer);
  statusTimer = setTimeout(() => { el.textContent = ""; }, 8000);
}

export const fmt = {
  num(n) { return n === null || n === undefined ? "–" : Number(n).toLocaleString("en"); },
  pct(x) { return x === null || x === undefined || Number.isNaN(x) ? "–" : `${(x * 100).toFixed(1)}%`; },
  ms(x) { return x === null || x === undefined ? "–" : `${Number(x).toFixed(x < 10 ? 2 : 0)} ms`; },
  time(t) { return t ? new Date(t).toLocaleString() : "–"; },
  bytes(b) {
    if (b === null || b === undefined) return "–";
    const u = ["B", "KiB", "MiB", "GiB"]; let i = 0; let v = b;
    while (v >= 1024 && i < u.length - 1) { v /= 1024; i += 1; }
    return `${v.toFixed(i ? 1 : 0)} ${u[i]}`;
  },
};

/** Disables every control marked as a change when the caller is a viewer. */
export function guard(root, access) {
  if (access !== "viewer") return;
  for (const el of root.querySelectorAll("[data-change]")) {
    el.disabled = true;
    el.title = "Read-only: signed in with the viewer token";
  }
}
