// Charts, drawn with the vendored uPlot (see vendor/uplot/VENDORED.md).
import uPlot from "../vendor/uplot/uPlot.esm.js";

const palette = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#17becf"];

function width(el) { return Math.max(280, el.clientWidth || el.parentElement.clientWidth || 600); }

/**
 * A time-series line chart. `x` are Unix seconds; `series` are
 * [{label, values, scale?}]. The chart follows its box's width.
 */
export function lineChart(el, { title, x, series, yLabel, y2Label, bars }) {
  el.replaceChildren();
  el.classList.add("chart");
  el.setAttribute("role", "img");
  el.setAttribute("aria-label", `${title}: ${series.map((s) => s.label).join(", ")}`);
  const hasData = x.length > 0 && series.some((s) => s.values.some((v) => v !== null && v !== 0));
  el.dataset.points = String(x.length);
  el.dataset.hasData = hasData ? "true" : "false";
  const axes = [{}, { label: yLabel, size: 60 }];
  const scales = { x: { time: true } };
  if (y2Label) {
    axes.push({ side: 1, label: y2Label, scale: "y2", grid: { show: false }, size: 60 });
    scales.y2 = { auto: true };
  }
  const opts = {
    title, width: width(el), height: 220, scales, axes,
    series: [{}, ...series.map((s, i) => ({
      label: s.label, stroke: s.color || palette[i % palette.length], width: 2, scale: s.scale || "y",
      fill: bars ? `${s.color || palette[i % palette.length]}55` : undefined,
      paths: bars ? uPlot.paths.bars({ size: [0.8, 40] }) : undefined,
      spanGaps: false,
    }))],
  };
  const plot = new uPlot(opts, [x, ...series.map((s) => s.values)], el);
  const ro = new ResizeObserver(() => plot.setSize({ width: width(el), height: 220 }));
  ro.observe(el);
  return plot;
}

/** Bars over categories (e.g. a latency histogram): `x` are indexes, `labels` their names. */
export function categoryChart(el, { title, labels, series, yLabel }) {
  el.replaceChildren();
  el.classList.add("chart");
  el.setAttribute("role", "img");
  el.setAttribute("aria-label", `${title}: ${series.map((s) => s.label).join(", ")}`);
  el.dataset.hasData = series.some((s) => s.values.some((v) => v)) ? "true" : "false";
  const x = labels.map((_, i) => i);
  const opts = {
    title, width: width(el), height: 220,
    scales: { x: { time: false } },
    axes: [{ values: (u, ticks) => ticks.map((t) => labels[t] ?? "") }, { label: yLabel, size: 60 }],
    series: [{ label: "bucket", value: (u, v) => labels[v] ?? "" }, ...series.map((s, i) => ({
      label: s.label, stroke: palette[i % palette.length], fill: `${palette[i % palette.length]}44`,
      paths: uPlot.paths.bars({ size: [0.4, 30], align: i === 0 ? -1 : 1 }),
    }))],
  };
  const plot = new uPlot(opts, [x, ...series.map((s) => s.values)], el);
  const ro = new ResizeObserver(() => plot.setSize({ width: width(el), height: 220 }));
  ro.observe(el);
  return plot;
}

/** A history view (SeriesView from the admin API) as columns. */
export function columns(view) {
  const pts = view ? view.points : [];
  const x = pts.map((p) => p.t);
  const perSec = pts.map((p) => p.requests / view.step);
  const errRate = pts.map((p) => (p.requests ? p.errors / p.requests : null));
  const p50 = pts.map((p) => p.p50_ms);
  const p99 = pts.map((p) => p.p99_ms);
  const hit = pts.map((p) => (p.cache_hits + p.cache_misses ? p.cache_hits / (p.cache_hits + p.cache_misses) : null));
  return { x, perSec, errRate, p50, p99, hit };
}
