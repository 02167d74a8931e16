// fetch for the app's own pages once signed in: same origin, the session's CSRF token (from the page's
// <meta name="csrf-token">) on every request, JSON in and out, the register's error code on failure.

export function csrfToken() {
  return document.querySelector('meta[name="csrf-token"]')?.content ?? "";
}

export class ApiError extends Error {
  constructor(status, code, detail) {
    super(code || String(status));
    this.status = status;
    this.code = code;
    this.detail = detail;
  }
}

export async function api(url, { method = "GET", body, headers = {} } = {}) {
  const init = { method, credentials: "same-origin", headers: { "X-CSRF-Token": csrfToken(), ...headers } };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(url, init);
  const type = response.headers.get("content-type") || "";
  const data = type.includes("json") ? await response.json().catch(() => ({})) : await response.text();
  if (response.status === 401) {
    // The session ended (idle, or signed out elsewhere): back to sign-in.
    window.location.assign("/app/signin");
  }
  if (!response.ok) throw new ApiError(response.status, data.error, data.detail);
  return data;
}
