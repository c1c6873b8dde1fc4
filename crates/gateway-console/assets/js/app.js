// The console's shell: sign-in, navigation by URL hash, one page at a time.
import { api, get, post, del, setCsrf, ApiError } from "./api.js";
import { say } from "./ui.js";
import * as overview from "./pages/overview.js";
import * as routes from "./pages/routes.js";
import * as keys from "./pages/keys.js";
import * as cache from "./pages/cache.js";
import * as shadow from "./pages/shadow.js";
import * as fx from "./pages/fx.js";

const pages = { overview, routes, keys, cache, shadow, fx };
const state = { access: null, stop: null };

const $ = (id) => document.getElementById(id);

function showSignIn(message) {
  state.access = null;
  $("nav").hidden = true;
  $("who").hidden = true;
  $("page").replaceChildren();
  $("sign-in").hidden = false;
  $("sign-in-error").textContent = message || "";
  $("token").focus();
}

function signedIn(session) {
  state.access = session.access;
  setCsrf(session.csrf);
  $("sign-in").hidden = true;
  $("nav").hidden = false;
  $("who").hidden = false;
  const badge = $("access-badge");
  badge.textContent = session.access === "viewer" ? "viewer (read only)" : "admin";
  badge.className = `badge ${session.access}`;
  route();
}

async function route() {
  if (!state.access) return;
  if (state.stop) { state.stop(); state.stop = null; }
  const hash = location.hash.replace(/^#\/?/, "") || "overview";
  const [name, ...rest] = hash.split("/");
  const page = pages[name] || overview;
  for (const a of document.querySelectorAll("#nav a")) {
    a.toggleAttribute("aria-current", a.getAttribute("href") === `#/${name}`);
    if (a.getAttribute("href") === `#/${name}`) a.setAttribute("aria-current", "page");
  }
  const root = $("page");
  root.replaceChildren();
  document.title = `Gatehouse – ${name}`;
  try {
    state.stop = await page.render(root, { access: state.access, args: rest.map(decodeURIComponent) }) || null;
  } catch (e) {
    handle(e);
  }
}

/** Errors from any page: a lost session goes back to sign-in. */
export function handle(e) {
  if (e instanceof ApiError && e.status === 401) {
    showSignIn("Your session ended; sign in again.");
  } else {
    say(e.message || String(e), true);
  }
}
window.addEventListener("unhandledrejection", (ev) => handle(ev.reason));

$("sign-in-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  $("sign-in-error").textContent = "";
  try {
    const session = await post("/v1/console/session", { token: $("token").value });
    $("token").value = "";
    signedIn(session);
  } catch (e) {
    $("sign-in-error").textContent = e instanceof ApiError ? e.message : String(e);
    $("token").select();
  }
});

$("sign-out").addEventListener("click", async () => {
  try { await del("/v1/console/session"); } catch { /* ends locally anyway */ }
  if (state.stop) { state.stop(); state.stop = null; }
  setCsrf(null);
  showSignIn("Signed out.");
});

window.addEventListener("hashchange", route);

// A reload keeps the session: ask who we are.
api("GET", "/v1/console/session")
  .then((s) => (s && s.csrf ? signedIn(s) : showSignIn()))
  .catch(() => showSignIn());

