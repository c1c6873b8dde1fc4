// The admin API from the browser: the session cookie goes with every call
// (same origin), and state-changing calls carry the session's CSRF token.

let csrf = null;

/** An admin API error: the problem+json body when there is one. */
export class ApiError extends Error {
  constructor(status, problem) {
    super(problem && (problem.detail || problem.title) || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
  }
}

export function setCsrf(token) { csrf = token; }

export async function api(method, path, body) {
  const headers = { "Accept": "application/json" };
  if (method !== "GET" && method !== "HEAD") {
    if (csrf) headers["X-CSRF-Token"] = csrf;
  }
  const init = { method, headers, credentials: "same-origin", cache: "no-store" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const res = await fetch(path, init);
  if (res.status === 204) return null;
  const text = await res.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = null; }
  if (!res.ok) throw new ApiError(res.status, data);
  return data;
}

export const get = (path) => api("GET", path);
export const post = (path, body) => api("POST", path, body);
export const patch = (path, body) => api("PATCH", path, body);
export const del = (path) => api("DELETE", path);
