// Routes and upstreams: the running config, and each cluster's targets
// with health, breaker state, ejections and in-flight counts.
import { get } from "../api.js";
import { h, card, table, fmt } from "../ui.js";

const REFRESH_MS = 5_000;

export async function render(root) {
  root.append(h("h1", {}, "Routes & upstreams"));
  const ups = h("div", { id: "upstreams" });
  const routes = h("div", { id: "routes" });
  const raw = h("details", {}, h("summary", {}, "Running config (secrets redacted)"), h("pre", { id: "running-config" }));
  root.append(card("Upstream clusters", ups), card("Routes", routes), card("Config", raw));

  async function load() {
    const status = await get("/v1/upstreams");
    ups.replaceChildren(...Object.values(status).map((c) => h("div", { class: "card", dataset: { cluster: c.name } },
      h("h2", {}, `${c.name} `, breaker(c.circuit), h("span", { class: "muted" }, ` · ${c.in_flight} in flight`)),
      table(`Targets of ${c.name}`, ["target", "health", "weight", "in flight", "connections", "failures in a row", "ejections", "ejected for", "last error"],
        c.targets.map((t) => [t.address, health(t.state), t.weight, t.in_flight, t.open_connections,
          t.consecutive_failures, t.times_ejected, t.ejected_for ? `${dur(t.ejected_for)}` : "–", t.last_error || "–"])))));
  }
  const cfg = await get("/v1/config");
  raw.querySelector("pre").textContent = JSON.stringify(cfg.config, null, 2);
  routes.replaceChildren(h("p", { class: "muted" }, `From ${cfg.file}`),
    table("Routes in match order", ["route", "match", "cluster", "auth", "cache", "timeout"],
      (cfg.config.routes || []).map((r) => [r.name,
        h("code", {}, [r.methods && r.methods.join(","), r.host, r.path_template || r.path_prefix || r.path].filter(Boolean).join(" ")),
        r.cluster, r.auth ? (r.auth.methods || []).join(", ") : "none", r.cache ? "yes" : "no", r.timeout || "default"])));
  await load();
  const timer = setInterval(() => load().catch(() => {}), REFRESH_MS);
  return () => clearInterval(timer);
}

function dur(d) {
  if (typeof d === "object" && d && "secs" in d) return `${d.secs}s`;
  return String(d);
}

function breaker(state) {
  const s = typeof state === "string" ? state : JSON.stringify(state);
  const cls = /closed/i.test(s) ? "ok" : /half/i.test(s) ? "warn" : "bad";
  return h("span", { class: `pill ${cls}`, title: "circuit breaker" }, `breaker ${s}`);
}

function health(state) {
  const s = typeof state === "string" ? state : JSON.stringify(state);
  const cls = /healthy/i.test(s) && !/un/i.test(s) ? "ok" : "bad";
  return h("span", { class: `pill ${cls}` }, s);
}
