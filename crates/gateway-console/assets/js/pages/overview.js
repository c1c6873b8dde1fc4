// Overview: traffic, errors, latency and cache over the last hour or day,
// by route and upstream, and the dark launches' verdicts. Refreshes every
// 10 seconds while open.
import { get } from "../api.js";
import { h, card, tile, table, fmt } from "../ui.js";
import { lineChart, columns } from "../charts.js";

const REFRESH_MS = 10_000;

export async function render(root, ctx) {
  let windowName = sessionStorage.getItem("overview-window") || "hour";
  const body = h("div", { id: "overview" });
  const picker = h("div", { class: "row", role: "group", "aria-label": "Time window" },
    h("span", { class: "muted" }, "Window:"),
    ...[["hour", "Last hour (by minute)"], ["day", "Last day (by hour)"]].map(([w, label]) =>
      h("button", {
        type: "button", class: w === windowName ? "" : "secondary", "aria-pressed": String(w === windowName),
        id: `window-${w}`,
        onclick: () => { windowName = w; sessionStorage.setItem("overview-window", w); draw(); },
      }, label)));
  root.append(h("h1", {}, "Overview"), picker, body);

  let data = null;
  async function load() { data = await get("/v1/console/overview"); draw(); }

  function draw() {
    if (!data) return;
    for (const b of picker.querySelectorAll("button")) {
      const on = b.id === `window-${windowName}`;
      b.className = on ? "" : "secondary";
      b.setAttribute("aria-pressed", String(on));
    }
    const total = data.total[windowName];
    const c = columns(total);
    const last = total.points.length ? total.points[total.points.length - 1] : null;
    const sum = (k) => total.points.reduce((a, p) => a + p[k], 0);
    const reqs = sum("requests");
    const hits = sum("cache_hits"); const misses = sum("cache_misses");
    const tiles = h("div", { class: "tiles" },
      tile("requests in window", fmt.num(reqs)),
      tile("requests/s (current bucket)", last ? (last.requests / total.step).toFixed(2) : "–"),
      tile("error rate (5xx)", fmt.pct(reqs ? sum("errors") / reqs : null), sum("errors") ? "bad" : "ok"),
      tile("p50 (current)", fmt.ms(last && last.p50_ms)),
      tile("p99 (current)", fmt.ms(last && last.p99_ms)),
      tile("cache hit ratio", fmt.pct(hits + misses ? hits / (hits + misses) : null)),
      tile("in flight", fmt.num(data.in_flight)),
    );
    const charts = h("div", { class: "grid" });
    const box = (id) => { const d = h("div", { id }); charts.append(h("div", { class: "card" }, d)); return d; };
    body.replaceChildren(tiles, charts);
    const routeNames = data.routes.map((r) => r.name);
    const perRoute = data.routes.map((r) => ({ label: r.name, values: columns(r.history[windowName]).perSec }));
    lineChart(box("chart-requests"), {
      title: "Requests per second", x: c.x, yLabel: "req/s",
      series: [{ label: "all", values: c.perSec }, ...perRoute],
    });
    lineChart(box("chart-errors"), {
      title: "Error rate (5xx)", x: c.x, yLabel: "share",
      series: [{ label: "all", values: c.errRate, color: "#d62728" },
        ...data.routes.map((r) => ({ label: r.name, values: columns(r.history[windowName]).errRate }))],
    });
    lineChart(box("chart-latency"), {
      title: "Latency", x: c.x, yLabel: "ms",
      series: [{ label: "p50", values: c.p50 }, { label: "p99", values: c.p99, color: "#ff7f0e" }],
    });
    lineChart(box("chart-cache"), {
      title: "Cache hit ratio", x: c.x, yLabel: "share",
      series: [{ label: "hit ratio", values: c.hit, color: "#2ca02c" }],
    });
    lineChart(box("chart-upstreams"), {
      title: "Requests per second by upstream", x: c.x, yLabel: "req/s",
      series: data.upstreams.length
        ? data.upstreams.map((u) => ({ label: u.name, values: columns(u.history[windowName]).perSec }))
        : [{ label: "no upstream traffic yet", values: c.x.map(() => null) }],
    });
    lineChart(box("chart-route-latency"), {
      title: "p99 latency by route", x: c.x, yLabel: "ms",
      series: routeNames.length
        ? data.routes.map((r) => ({ label: r.name, values: columns(r.history[windowName]).p99 }))
        : [{ label: "no routed traffic yet", values: c.x.map(() => null) }],
    });
    body.append(card("Dark launches",
      data.dark_launches.length
        ? table("Active dark launches and their verdicts", ["launch", "state", "samples", "score", "verdict"],
          data.dark_launches.map((l) => [
            h("a", { href: `#/shadow/${encodeURIComponent(l.name)}` }, l.name),
            l.state, fmt.num(l.samples), `${l.score}/100`, verdict(l.verdict)]))
        : h("p", { class: "muted" }, "No dark launches configured.")));
  }

  await load();
  const timer = setInterval(() => load().catch(() => {}), REFRESH_MS);
  return () => clearInterval(timer);
}

export function verdict(v) {
  const name = typeof v === "string" ? v : (v && (v.verdict || v.kind || JSON.stringify(v)));
  const cls = /promote|pass|safe/i.test(name) ? "ok" : /block|fail|reject/i.test(name) ? "bad" : "warn";
  return h("span", { class: `pill ${cls}` }, name);
}
