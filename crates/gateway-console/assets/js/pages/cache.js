// Cache: hit ratio over time, entries and bytes, purge by URL, prefix or
// tag, hard or soft.
import { get, post } from "../api.js";
import { h, card, tile, table, field, fmt, say, guard } from "../ui.js";
import { lineChart, columns } from "../charts.js";

export async function render(root, ctx) {
  root.append(h("h1", {}, "Cache"));
  const tiles = h("div", { class: "tiles", id: "cache-tiles" });
  const chartBox = h("div", { id: "chart-cache-ratio" });
  const perRoute = h("div", { id: "cache-routes" });
  root.append(tiles, h("div", { class: "grid" }, h("div", { class: "card" }, chartBox), card("By route", perRoute)));

  const form = h("form", { class: "inline", id: "purge-form" },
    field("purge-kind", "Purge by", { tag: "select", options: [["url", "URL"], ["prefix", "URL prefix"], ["tag", "tag"]] }),
    field("purge-value", "Value", { required: true, placeholder: "a full URL as clients ask for it, or its start" }),
    h("div", {}, h("label", { for: "purge-mode" }, "Mode"),
      h("select", { id: "purge-mode" }, h("option", { value: "soft" }, "soft (mark stale, revalidate)"), h("option", { value: "hard" }, "hard (remove)"))),
    h("button", { type: "submit", id: "purge", "data-change": true }, "Purge"));
  const result = h("p", { id: "purge-result", role: "status" });
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const kind = form.querySelector("#purge-kind").value;
    const body = { [kind]: form.querySelector("#purge-value").value.trim(), soft: form.querySelector("#purge-mode").value === "soft" };
    try {
      const r = await post("/v1/cache/purge", body);
      result.textContent = `${r.soft ? "Soft" : "Hard"} purge: ${r.purged} stored response(s) ${r.soft ? "marked stale" : "removed"}.`;
      await load();
    } catch (e) { result.textContent = ""; say(e.message, true); }
  });
  root.append(card("Purge", form, result));
  guard(root, ctx.access);

  async function load() {
    const [stats, hist] = await Promise.all([get("/v1/cache/stats"), get("/v1/console/overview")]);
    const c = columns(hist.total.hour);
    const hits = (stats.requests.hit || 0) + (stats.requests.stale || 0);
    const all = Object.values(stats.requests).reduce((a, b) => a + b, 0);
    tiles.replaceChildren(tile("entries", fmt.num(stats.entries)), tile("bytes", `${fmt.bytes(stats.bytes)} of ${fmt.bytes(stats.max_bytes)}`),
      tile("hit ratio since start", fmt.pct(all ? hits / all : null)), tile("evictions", fmt.num(stats.evictions)), tile("purged", fmt.num(stats.purged)));
    lineChart(chartBox, { title: "Cache hit ratio (last hour)", x: c.x, yLabel: "share", series: [{ label: "hit ratio", values: c.hit, color: "#2ca02c" }] });
    const statuses = [...new Set(Object.values(stats.routes).flatMap((r) => Object.keys(r.requests)))].sort();
    perRoute.replaceChildren(table("Cache outcomes by route", ["route", ...statuses, "stored"],
      Object.entries(stats.routes).map(([name, r]) => [name, ...statuses.map((s) => fmt.num(r.requests[s] || 0)), fmt.num(r.stored)])));
  }
  await load();
  const timer = setInterval(() => load().catch(() => {}), 10_000);
  return () => clearInterval(timer);
}
