// The console's JSON API: same origin, session cookie, CSRF header on state-changing requests.
// A 401 from any call but the sign-in ones sends the browser to /login?next=<where it was>.

export const session = { user: null, role: null, csrf: null };

export class ApiError extends Error {
  constructor(status, body, retryAfter) {
    super((body && body.error) || `HTTP ${status}`);
    this.status = status;
    this.body = body;
    this.retryAfter = retryAfter;
  }
}

export function loginUrl() {
  const here = location.pathname + location.search;
  return here.startsWith("/login") ? "/login" : `/login?next=${encodeURIComponent(here)}`;
}

let onUnauthorized = () => location.assign(loginUrl());
export function setUnauthorizedHandler(fn) {
  onUnauthorized = fn;
}

export async function api(method, path, body, { noRedirect = false } = {}) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET" && session.csrf) headers["X-CSRF-Token"] = session.csrf;
  const res = await fetch(path, {
    method,
    headers,
    credentials: "same-origin",
    cache: "no-store",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  let data = null;
  if (res.status !== 204) {
    const text = await res.text();
    try {
      data = text ? JSON.parse(text) : null;
    } catch {
      data = { error: text.slice(0, 200) };
    }
  }
  if (!res.ok) {
    const retry = parseInt(res.headers.get("Retry-After") || "", 10);
    const err = new ApiError(res.status, data, isFinite(retry) ? retry : null);
    if (res.status === 401 && !noRedirect) {
      session.user = session.role = session.csrf = null;
      onUnauthorized();
    }
    throw err;
  }
  return data;
}

export function setSession(data) {
  session.user = (data && data.user) || null;
  session.role = (data && data.role) || null;
  session.csrf = (data && data.csrf) || null;
}

export function canCommand() {
  return session.role === "operator" || session.role === "admin";
}

/** A path segment from device data, encoded so that an id cannot leave its segment. */
export function seg(s) {
  return encodeURIComponent(String(s));
}
