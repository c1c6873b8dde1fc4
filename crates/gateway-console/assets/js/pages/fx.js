// FX: a rate chart for any pair over any range back to 1999, providers
// with their last fetch and state (stale when their newest fixing is
// overdue), the latest fixing's disputed currencies, and a converter that
// shows the spread (and tier) a conversion carries. Read through the admin API's FX proxy (/v1/console/fx/...).
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
      out.replaceChildren(conversionText(r));
    } catch (e) { out.textContent = ""; say(e.message, true); }
  });
  root.append(card("Converter", conv, out));

  const providers = await get(`${FX}/v1/providers`).catch((e) => { say(e.message, true); return null; });
  if (providers) {
    root.append(card("Providers", providers.providers.length
      ? table("Rate providers", ["provider", "format", "last fetch", "last success", "newest fixing", "state", "failures in a row", "last error"],
        providers.providers.map((p) => [p.name, p.format, fmt.time(p.last_attempt), fmt.time(p.last_success), p.last_fixing || "–",
          h("span", { class: `pill ${STATE_PILL[p.state] || ""}` }, p.state), String(p.consecutive_failures), p.last_error || "–"]))
      : h("p", { class: "muted" }, "No providers are fetched: the rates come from the bundled ECB history only."),
      h("p", {}, `Latest fixing from: ${providers.latest_fixing_providers.join(", ") || "none"} · consensus ${providers.consensus.method}, tolerance ${providers.consensus.tolerance_bps} bps`)));
  }
  const latest = await get(`${FX}/v1/rates/latest?sources=true`).catch(() => null);
  if (latest && latest.sources) {
    const disputed = Object.entries(latest.sources).filter(([, src]) => src.disputed);
    root.append(card("Disputed fixings", h("div", { id: "fx-disputed" }, disputed.length
      ? table(`Currencies the providers disagree on, fixing of ${latest.date}`, ["currency", "consensus per EUR", "values per EUR"],
        disputed.map(([code, src]) => [code, src.consensus_per_eur,
          src.values.map((x) => `${x.provider} ${x.per_eur}${x.outlier ? " (outlier)" : ""}`).join(", ")]))
      : h("p", { class: "muted" }, `No disputed currency in the fixing of ${latest.date}.`))));
  }
}

const STATE_PILL = { healthy: "ok", stale: "warn", failing: "bad" };

/** A conversion answer as a sentence: the mid amount, then the customer's
 *  with the spread (and tier) it carries. */
function conversionText(r) {
  const tier = r.customer.tier ? `, tier ${r.customer.tier}` : "";
  return `${r.amount} ${r.from} = ${r.mid.amount} ${r.to} at the mid rate ${r.mid.rate}; ` +
    `customer ${r.customer.amount} ${r.to} at ${r.customer.rate} (spread ${r.customer.spread_bps} bps${tier}); ` +
    `fixing of ${r.date}${r.stale ? ", stale" : ""}${r.provenance.disputed ? ", disputed" : ""}`;
}

/** [[unixSeconds, rate]] from a /v1/rates series answer. */
function seriesRows(data, quote) {
  const rates = data.rates || {};
  return Object.keys(rates).sort().map((d) => [Date.parse(`${d}T00:00:00Z`) / 1000, Number(rates[d][quote])]);
}
