// FX: a rate chart for any pair over any range back to 1999, providers
// with their last fetch and staleness, disputed fixings, spread tiers and
// a converter. Read through the admin API's FX proxy (/v1/console/fx/...).
import { get } from "../api.js";
import { h, card, table, field, fmt, say } from "../ui.js";
import { lineChart } from "../charts.js";

const FX = "/v1/console/fx";

export async function render(root) {
  root.append(h("h1", {}, "FX"));
  let currencies = [];
  try { currencies = (await get(`${FX}/v1/currencies`)).currencies || []; } catch (e) {
    root.append(card("FX service", h("p", { class: "muted" }, `The FX service is not reachable from the admin API: ${e.message}`)));
    return;
  }
  const codes = currencies.map((c) => (typeof c === "string" ? c : c.code)).sort();
  const opts = codes.map((c) => [c, c]);
  const form = h("form", { class: "inline", id: "fx-form" },
    field("fx-base", "Base", { tag: "select", options: opts }),
    field("fx-quote", "Quote", { tag: "select", options: opts }),
    field("fx-start", "From", { type: "date", min: "1999-01-04", value: "2020-01-01" }),
    field("fx-end", "To", { type: "date", min: "1999-01-04", value: "2020-12-31" }),
    field("fx-interval", "Interval", { tag: "select", options: [["day", "day"], ["week", "week"], ["month", "month"]] }),
    h("button", { type: "submit", id: "fx-draw" }, "Draw"));
  form.querySelector("#fx-base").value = codes.includes("USD") ? "USD" : codes[0];
  form.querySelector("#fx-quote").value = codes.includes("JPY") ? "JPY" : codes[1];
  const chart = h("div", { id: "chart-fx" });
  root.append(card("Rate history", form, chart));
  form.addEventListener("submit", (ev) => { ev.preventDefault(); draw().catch((e) => say(e.message, true)); });

  async function draw() {
    const v = (id) => form.querySelector(`#${id}`).value;
    const q = new URLSearchParams({ base: v("fx-base"), symbols: v("fx-quote"), start: v("fx-start"), end: v("fx-end"), interval: v("fx-interval") });
    const data = await get(`${FX}/v1/rates?${q}`);
    const rows = seriesRows(data, v("fx-quote"));
    lineChart(chart, { title: `${v("fx-base")}/${v("fx-quote")} ${v("fx-start")} to ${v("fx-end")}`, x: rows.map((r) => r[0]), yLabel: v("fx-quote"),
      series: [{ label: `${v("fx-base")}/${v("fx-quote")}`, values: rows.map((r) => r[1]) }] });
    chart.dataset.pair = `${v("fx-base")}/${v("fx-quote")}`;
  }
  await draw().catch((e) => say(e.message, true));

  const conv = h("form", { class: "inline", id: "convert-form" },
    field("conv-amount", "Amount", { value: "100", inputmode: "decimal" }),
    field("conv-from", "From", { tag: "select", options: opts }),
    field("conv-to", "To", { tag: "select", options: opts }),
    h("button", { type: "submit", id: "convert" }, "Convert"));
  conv.querySelector("#conv-from").value = "USD";
  conv.querySelector("#conv-to").value = "JPY";
  const out = h("p", { id: "convert-result", role: "status" });
  conv.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const v = (id) => conv.querySelector(`#${id}`).value;
    try {
      const r = await get(`${FX}/v1/convert?${new URLSearchParams({ from: v("conv-from"), to: v("conv-to"), amount: v("conv-amount") })}`);
      out.textContent = `${r.amount ?? v("conv-amount")} ${v("conv-from")} = ${r.result ?? r.converted ?? JSON.stringify(r)} ${v("conv-to")}` +
        (r.rate ? ` (rate ${r.rate}${r.date ? `, ${r.date}` : ""}${r.stale ? ", stale" : ""})` : "");
    } catch (e) { out.textContent = ""; say(e.message, true); }
  });
  root.append(card("Converter", conv, out));

  const providers = await get(`${FX}/v1/providers`).catch(() => null);
  if (providers) {
    const list = providers.providers || providers;
    const rows = (Array.isArray(list) ? list : Object.entries(list).map(([k, v]) => ({ name: k, ...v })));
    root.append(card("Providers", table("Rate providers", ["provider", "last fetch", "latest fixing", "staleness", "state"],
      rows.map((p) => [p.name || p.id, fmt.time(p.last_fetch || p.last_success || p.last_fetch_at), p.latest_date || p.last_date || "–",
        p.stale === undefined ? (p.staleness || "–") : (p.stale ? h("span", { class: "pill warn" }, "stale") : h("span", { class: "pill ok" }, "fresh")),
        p.state || p.status || p.health || "–"]))));
    const disputed = providers.disputed || providers.disputes || [];
    root.append(card("Disputed fixings", disputed.length
      ? table("Fixings the providers disagree on", ["date", "currency", "values"], disputed.map((d) => [d.date, d.currency, h("code", {}, JSON.stringify(d.values || d))]))
      : h("p", { class: "muted" }, "No disputed fixings.")));
    const tiers = providers.spread_tiers || providers.tiers || [];
    if (tiers.length) root.append(card("Spread tiers", table("Customer spread by tier", ["tier", "spread"], tiers.map((t) => [t.name || t.tier, `${t.bps ?? t.spread_bps} bps`]))));
  }
}

/** [[unixSeconds, rate]] from a /v1/rates series answer. */
function seriesRows(data, quote) {
  const rates = data.rates || {};
  return Object.keys(rates).sort().map((d) => [Date.parse(`${d}T00:00:00Z`) / 1000, Number(rates[d][quote])]);
}
