// Consumers and keys: search by consumer name, create (secret shown once),
// a key's usage, rotate, revoke, edit; the audit log with filters.
import { get, post, patch } from "../api.js";
import { h, card, table, field, fmt, say, guard } from "../ui.js";
import { lineChart } from "../charts.js";

export async function render(root, ctx) {
  if (ctx.args[0]) return renderKey(root, ctx, ctx.args[0]);
  root.append(h("h1", {}, "Consumers & keys"));

  const created = h("div", { id: "created" });
  const form = h("form", { class: "inline", id: "create-key-form" },
    field("new-owner", "Consumer (name or id; a new name creates it)", { required: true, autocomplete: "off" }),
    field("new-name", "Key name", { placeholder: "default" }),
    field("new-scopes", "Scopes (comma-separated)", { placeholder: "route:fx" }),
    field("new-plan", "Plan"),
    field("new-expires", "Expires in", { placeholder: "90d" }),
    h("button", { type: "submit", id: "create-key", "data-change": true }, "Create key"));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const v = (id) => form.querySelector(`#${id}`).value.trim();
    const body = { owner: v("new-owner") };
    if (v("new-name")) body.name = v("new-name");
    if (v("new-scopes")) body.scopes = v("new-scopes").split(",").map((s) => s.trim()).filter(Boolean);
    if (v("new-plan")) body.plan = v("new-plan");
    if (v("new-expires")) body.expires_in = v("new-expires");
    try {
      const issued = await post("/v1/keys", body);
      showSecret(created, issued, "Key created");
      form.reset();
      await list();
    } catch (e) { say(e.message, true); }
  });
  root.append(card("Create a key", form, created));

  const search = h("input", { id: "key-search", type: "search", placeholder: "consumer name", "aria-controls": "key-list" });
  const status = h("select", { id: "key-status", "aria-label": "Status" },
    ["", "active", "retiring", "expired", "revoked"].map((s) => h("option", { value: s }, s || "any status")));
  const listBox = h("div", { id: "key-list" });
  root.append(card("Keys",
    h("div", { class: "row" }, h("label", { for: "key-search" }, "Search by consumer"), search, status),
    listBox));

  let keys = [];
  async function list() {
    const q = status.value ? `?status=${encodeURIComponent(status.value)}` : "";
    keys = (await get(`/v1/keys${q}`)).keys;
    draw();
  }
  function draw() {
    const needle = search.value.trim().toLowerCase();
    const shown = keys.filter((k) => !needle
      || (k.consumer_name || "").toLowerCase().includes(needle) || k.consumer_id.toLowerCase().includes(needle));
    listBox.replaceChildren(shown.length
      ? table(`${shown.length} keys`, ["key", "name", "consumer", "status", "scopes", "expires", "last used"],
        shown.map((k) => [
          h("a", { href: `#/keys/${encodeURIComponent(k.id)}` }, k.id), k.name,
          k.consumer_name || k.consumer_id, statusPill(k.status),
          (k.scopes || []).join(", ") || "all", fmt.time(k.expires_at), fmt.time(k.last_used_at)]),
        (i) => ({ dataset: { keyId: shown[i].id, consumer: shown[i].consumer_name || "" } }))
      : h("p", { class: "muted" }, "No keys match."));
  }
  search.addEventListener("input", draw);
  status.addEventListener("change", () => list());
  await list();

  const audit = h("div", { id: "audit" });
  root.append(card("Audit log", audit));
  await auditLog(audit, null);
  guard(root, ctx.access);
}

export function statusPill(s) {
  const cls = s === "active" ? "ok" : s === "retiring" ? "warn" : "bad";
  return h("span", { class: `pill ${cls}` }, s);
}

/** The one place a secret is shown: with a copy button and a warning. */
function showSecret(box, issued, title) {
  const input = h("input", { id: "new-secret", readonly: true, value: issued.secret, "aria-label": "New key secret" });
  const copy = h("button", { type: "button", id: "copy-secret", class: "secondary", onclick: async () => {
    try { await navigator.clipboard.writeText(issued.secret); say("Secret copied."); } catch {
      input.select(); say("Select and copy the secret by hand (clipboard not available).", true);
    }
  } }, "Copy");
  box.replaceChildren(h("div", { class: "secret", role: "alert" },
    h("strong", {}, `${title}: ${issued.key.id}`),
    h("p", { class: "warn" }, "This secret is shown once and never again. Copy it now and store it safely."),
    h("div", { class: "row" }, input, copy),
    h("button", { type: "button", class: "secondary", id: "dismiss-secret", onclick: () => box.replaceChildren() }, "I have stored it")));
  input.focus();
  input.select();
}

async function renderKey(root, ctx, id) {
  const k = await get(`/v1/keys/${encodeURIComponent(id)}`);
  root.append(h("p", {}, h("a", { href: "#/keys" }, "← all keys")),
    h("h1", {}, `Key ${k.id} `, statusPill(k.status)));
  root.append(card("Details", table("Key details", ["field", "value"], [
    ["consumer", `${k.consumer_name || ""} (${k.consumer_id})`], ["name", k.name], ["environment", k.environment],
    ["scopes", (k.scopes || []).join(", ") || "all routes"], ["plan", k.plan || "consumer's plan"],
    ["created", `${fmt.time(k.created_at)} by ${k.created_by}`], ["expires", fmt.time(k.expires_at)],
    ["last used", fmt.time(k.last_used_at)], ["grace until", fmt.time(k.grace_until)],
    ["predecessor", k.predecessor ? h("a", { href: `#/keys/${k.predecessor}` }, k.predecessor) : "–"],
    ["successor", k.successor ? h("a", { href: `#/keys/${k.successor}` }, k.successor) : "–"],
    ["revoked", k.revoked_at ? `${fmt.time(k.revoked_at)}: ${k.revoked_reason || "no reason given"}` : "–"],
    ["metadata", h("code", {}, JSON.stringify(k.metadata || {}))],
  ])));

  const usage = await get(`/v1/keys/${encodeURIComponent(id)}/usage`);
  const x = usage.hours.map((u) => u.t);
  const reqBox = h("div", { id: "chart-key-requests" });
  const refBox = h("div", { id: "chart-key-refusals" });
  root.append(h("div", { class: "grid" }, h("div", { class: "card" }, reqBox), h("div", { class: "card" }, refBox)));
  lineChart(reqBox, { title: "Requests per hour (this node)", x, yLabel: "requests", bars: true,
    series: [{ label: "requests", values: usage.hours.map((u) => u.requests) }] });
  const reasons = Object.keys(usage.hours[0] ? usage.hours[0].refusals : {});
  lineChart(refBox, { title: "Refusals per hour by reason", x, yLabel: "refusals",
    series: reasons.map((r) => ({ label: r, values: usage.hours.map((u) => u.refusals[r]) })) });
  if (k.status === "retiring") {
    const used = usage.hours.reduce((a, u) => a + u.requests, 0);
    const who = usage.grace_clients || { clients: [], others: 0 };
    root.append(card("Grace period", h("div", { id: "grace-use" },
      h("p", {}, used ? `Still in use: ${used} requests with this old key in the last day; last at ${fmt.time(k.last_used_at)}. Each hour of use is also in the audit log (key.used_in_grace), with these clients.`
        : "Not used since it was rotated."),
      who.clients.length ? table("Clients still sending this key (this node)", ["address", "user agent", "requests", "first seen", "last seen"],
        who.clients.map((c) => [c.ip || "unknown", c.user_agent || "none sent", String(c.requests), fmt.time(c.first_seen), fmt.time(c.last_seen)])) : null,
      who.others ? h("p", {}, `…and ${who.others} requests from other clients.`) : null)));
  }

  const issuedBox = h("div", { id: "created" });
  const rotate = h("form", { class: "inline", id: "rotate-form" },
    field("rotate-grace", "Grace (old key keeps working)", { placeholder: "24h" }),
    h("button", { type: "submit", id: "rotate-key", "data-change": true, disabled: k.status !== "active" }, "Rotate"));
  rotate.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const grace = rotate.querySelector("#rotate-grace").value.trim();
    try {
      const issued = await post(`/v1/keys/${encodeURIComponent(id)}/rotate`, grace ? { grace } : {});
      showSecret(issuedBox, issued, "Successor issued");
      say(`Rotated: ${issued.key.id} replaces ${id}.`);
    } catch (e) { say(e.message, true); }
  });
  const revoke = h("form", { class: "inline", id: "revoke-form" },
    field("revoke-reason", "Reason (audit log)", { required: true }),
    h("button", { type: "submit", id: "revoke-key", class: "danger", "data-change": true, disabled: k.status === "revoked" }, "Revoke now"));
  revoke.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      await post(`/v1/keys/${encodeURIComponent(id)}/revoke`, { reason: revoke.querySelector("#revoke-reason").value });
      say(`Revoked ${id}.`);
      root.replaceChildren();
      await renderKey(root, ctx, id);
    } catch (e) { say(e.message, true); }
  });
  root.append(card("Rotate", rotate, issuedBox), card("Revoke", revoke));

  const edit = h("form", { id: "edit-key-form" },
    h("div", { class: "inline" },
      field("edit-name", "Name", { value: k.name }),
      field("edit-scopes", "Scopes (comma-separated)", { value: (k.scopes || []).join(",") }),
      field("edit-plan", "Plan (empty: the consumer's)", { value: k.plan || "" }),
      field("edit-expires", "Expires at (RFC 3339, empty: never)", { value: k.expires_at || "" })),
    field("edit-metadata", "Metadata (JSON object)", { tag: "textarea" }),
    h("button", { type: "submit", id: "save-key", "data-change": true }, "Save changes"));
  edit.querySelector("#edit-metadata").value = JSON.stringify(k.metadata || {}, null, 2);
  edit.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const v = (i) => edit.querySelector(`#${i}`).value.trim();
    let metadata;
    try { metadata = JSON.parse(v("edit-metadata") || "{}"); } catch (e) { say(`Metadata is not JSON: ${e.message}`, true); return; }
    try {
      await patch(`/v1/keys/${encodeURIComponent(id)}`, {
        name: v("edit-name"), scopes: v("edit-scopes").split(",").map((s) => s.trim()).filter(Boolean),
        plan: v("edit-plan") || null, expires_at: v("edit-expires") || null, metadata,
      });
      say("Saved.");
      root.replaceChildren();
      await renderKey(root, ctx, id);
    } catch (e) { say(e.message, true); }
  });
  root.append(card("Edit", edit));
  const audit = h("div", { id: "audit" });
  root.append(card("Audit log of this key", audit));
  await auditLog(audit, id);
  guard(root, ctx.access);
}

/** The audit log, newest first, filtered by action and actor. */
async function auditLog(box, keyId) {
  const path = keyId ? `/v1/keys/${encodeURIComponent(keyId)}/audit?limit=500` : "/v1/audit?limit=500";
  const entries = (await get(path)).entries;
  const actions = [...new Set(entries.map((e) => e.action))].sort();
  const action = h("select", { id: "audit-action", "aria-label": "Filter by action" },
    h("option", { value: "" }, "any action"), actions.map((a) => h("option", { value: a }, a)));
  const actor = h("input", { id: "audit-actor", type: "search", placeholder: "actor", "aria-label": "Filter by actor" });
  const key = h("input", { id: "audit-key", type: "search", placeholder: "key id", "aria-label": "Filter by key id" });
  const out = h("div", {});
  const draw = () => {
    const shown = entries.filter((e) => (!action.value || e.action === action.value)
      && (!actor.value || e.actor.includes(actor.value)) && (!key.value || (e.key_id || "").includes(key.value)));
    out.replaceChildren(table(`${shown.length} of ${entries.length} entries`, ["when", "actor", "action", "key", "detail"],
      shown.map((e) => [fmt.time(e.at), e.actor, e.action, e.key_id || "–", h("code", {}, JSON.stringify(e.detail))])));
  };
  for (const el of [action, actor, key]) el.addEventListener("input", draw);
  box.replaceChildren(h("div", { class: "row" }, action, actor, keyId ? "" : key), out);
  draw();
}
