// Dark launches: the list with verdicts, and one launch's report: score
// and verdict over time, endpoint table, primary and candidate latency
// side by side, a diff browser with the differing JSON paths highlighted,
// and pause, resume and stop.
import { get, post } from "../api.js";
import { h, card, table, fmt, say, guard } from "../ui.js";
import { lineChart, categoryChart } from "../charts.js";
import { verdict } from "./overview.js";

export async function render(root, ctx) {
  if (ctx.args[0]) return renderLaunch(root, ctx, ctx.args[0]);
  root.append(h("h1", {}, "Dark launches"));
  const list = (await get("/v1/shadow")).launches;
  root.append(card("Launches", list.length
    ? table("Dark launches", ["launch", "state", "routes", "candidate", "samples", "score", "verdict"],
      list.map((l) => [h("a", { href: `#/shadow/${encodeURIComponent(l.name)}` }, l.name), l.state,
        (l.routes || []).join(", "), l.candidate, fmt.num(l.samples), `${l.score}/100`, verdict(l.verdict)]))
    : h("p", { class: "muted" }, "No dark launches. Add a [[dark_launches]] section to the config.")));
}

async function renderLaunch(root, ctx, name) {
  const path = `/v1/shadow/${encodeURIComponent(name)}`;
  const r = await get(path);
  const a = r.assessment;
  const controls = h("div", { class: "row" },
    ...[["pause", "Pause"], ["resume", "Resume"], ["stop", "Stop for good"]].map(([act, label]) =>
      h("button", { type: "button", id: `launch-${act}`, class: act === "stop" ? "danger" : "secondary", "data-change": true,
        disabled: r.state === "stopped" || (act === "pause" && r.state === "paused") || (act === "resume" && r.state !== "paused"),
        onclick: async () => {
          try { await post(`${path}/${act}`); say(`${label}: done.`); root.replaceChildren(); await renderLaunch(root, ctx, name); } catch (e) { say(e.message, true); }
        } }, label)));
  root.append(h("p", {}, h("a", { href: "#/shadow" }, "← all launches")),
    h("h1", {}, `${r.name} `, verdict(a.verdict)),
    h("p", {}, `State ${r.state} · candidate ${r.candidate} · score ${a.score}/100 · report of ${fmt.time(r.generated_at)}`),
    controls,
    a.reasons && a.reasons.length ? h("ul", {}, a.reasons.map((x) => h("li", {}, x))) : "");

  const history = await get(`/v1/console/shadow/${encodeURIComponent(name)}/history`).catch(() => ({ points: [] }));
  const scoreBox = h("div", { id: "chart-launch-score" });
  const latBox = h("div", { id: "chart-launch-latency" });
  root.append(h("div", { class: "grid" }, h("div", { class: "card" }, scoreBox), h("div", { class: "card" }, latBox)));
  const pts = history.points;
  lineChart(scoreBox, { title: "Score and samples over time", x: pts.map((p) => p.t), yLabel: "score", y2Label: "samples",
    series: [{ label: "score", values: pts.map((p) => p.score) }, { label: "samples", values: pts.map((p) => p.samples), scale: "y2", color: "#999" }] });
  const eps = a.endpoints.filter((e) => e.latency);
  const labels = eps.flatMap((e) => [`${e.endpoint} p50`, `${e.endpoint} p99`]);
  categoryChart(latBox, { title: "Latency: primary and candidate side by side", labels, yLabel: "ms",
    series: [{ label: "primary", values: eps.flatMap((e) => [e.latency.primary_p50_ms, e.latency.primary_p99_ms]) },
      { label: "candidate", values: eps.flatMap((e) => [e.latency.candidate_p50_ms, e.latency.candidate_p99_ms]) }] });

  root.append(card("Endpoints", table("Per endpoint", ["endpoint", "compared", "match rate", "95% interval", "errors primary / candidate", "p99 primary / candidate", "score", "verdict"],
    a.endpoints.map((e) => [h("code", {}, e.endpoint), fmt.num(e.compared), fmt.pct(e.match_rate),
      `${fmt.pct(e.match_lower)} – ${fmt.pct(e.match_upper)}`,
      `${fmt.pct(e.primary_error_rate)} / ${fmt.pct(e.candidate_error_rate)}`,
      e.latency ? `${fmt.ms(e.latency.primary_p99_ms)} / ${fmt.ms(e.latency.candidate_p99_ms)}${e.latency.regression ? " (regression)" : ""}` : "–",
      `${e.score}/100`, verdict(e.verdict)]))));
  root.append(card("Differing fields", table("Most frequent differences", ["field", "count"],
    (r.top_fields || []).map((f) => [h("code", {}, f.field), fmt.num(f.count)]))));

  const browser = h("div", { id: "diff-browser" });
  root.append(card("Diff browser", browser));
  const examples = r.examples || [];
  if (!examples.length) browser.append(h("p", { class: "muted" }, "No differing examples recorded yet."));
  else {
    const pick = h("select", { id: "example-pick", "aria-label": "Example" },
      examples.map((e, i) => h("option", { value: i }, `${e.method} ${e.uri} — ${e.field} (${e.category})`)));
    const pane = h("div", {});
    const show = () => pane.replaceChildren(example(examples[Number(pick.value)]));
    pick.addEventListener("change", show);
    browser.append(pick, pane);
    show();
  }
  guard(root, ctx.access);
}

function example(e) {
  const paths = new Set(e.diffs.map((d) => normalise(d.path)));
  const side = (label, s) => h("div", {},
    h("h2", {}, `${label}: ${s.status ?? "no answer"} · ${fmt.ms(s.latency_ms)}`),
    s.error ? h("p", { class: "bad" }, s.error) : "",
    h("pre", { class: "json", dataset: { side: label } }, body(s.body, paths)));
  return h("div", {},
    table("Differences in this example", ["path", "kind", "primary", "candidate"],
      e.diffs.map((d) => [h("code", {}, d.path), d.kind, h("code", {}, d.primary ?? "–"), h("code", {}, d.candidate ?? "–")])),
    h("div", { class: "diffpair" }, side("primary", e.primary), side("candidate", e.candidate)));
}

function normalise(p) { return String(p || "").replace(/^\$/, ""); }

/** Pretty JSON with every value at a differing path marked. */
function body(text, paths) {
  if (text === null || text === undefined) return "(no body)";
  let v;
  try { v = JSON.parse(text); } catch { return text; }
  const out = [];
  const key = (k) => (/^[A-Za-z0-9_-]+$/.test(k) ? `.${k}` : `['${k.replace(/\\/g, "\\\\").replace(/'/g, "\\'")}']`);
  const walk = (val, path, indent) => {
    const pad = "  ".repeat(indent);
    let node;
    if (Array.isArray(val)) {
      const parts = ["[\n"];
      val.forEach((x, i) => { parts.push(`${pad}  `); parts.push(...walk(x, `${path}[${i}]`, indent + 1)); parts.push(i < val.length - 1 ? ",\n" : "\n"); });
      parts.push(`${pad}]`);
      node = parts;
    } else if (val && typeof val === "object") {
      const ks = Object.keys(val);
      const parts = ["{\n"];
      ks.forEach((k, i) => { parts.push(`${pad}  ${JSON.stringify(k)}: `); parts.push(...walk(val[k], path + key(k), indent + 1)); parts.push(i < ks.length - 1 ? ",\n" : "\n"); });
      parts.push(`${pad}}`);
      node = parts;
    } else {
      node = [JSON.stringify(val)];
    }
    if (paths.has(path)) return [h("mark", { class: "diff", title: `differs at $${path}` }, ...node)];
    return node;
  };
  out.push(...walk(v, "", 0));
  return out;
}
