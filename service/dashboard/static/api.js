// The REST API as the dashboard sees it: same-origin fetches authenticated by the
// session cookie; a 401 sends the browser to the sign-in page. Whether a job or sweep has
// ended is the API's `terminal` field, never a list of states kept here.

export class ApiError extends Error {
  constructor(status, detail) {
    super(`${status}: ${detail}`);
    this.status = status;
    this.detail = detail;
  }
}

function detailOf(body) {
  if (body && typeof body.detail === "string") return body.detail;
  if (body && Array.isArray(body.detail)) return body.detail.map((e) => e.msg).join("; ");
  return JSON.stringify(body);
}

export async function api(path, { method = "GET", body } = {}) {
  const headers = { Accept: "application/json" };
  if (method !== "GET") headers["X-Recu-Dashboard"] = "1"; // the CSRF guard (see service.auth)
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method,
    headers,
    credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (response.status === 401 && !path.startsWith("/ui/")) {
    signIn();
    const err = new ApiError(401, "not signed in");
    err.redirecting = true; // nothing to show: the browser is on its way to the sign-in page
    throw err;
  }
  const text = await response.text();
  const parsed = text ? JSON.parse(text) : null;
  if (!response.ok) throw new ApiError(response.status, detailOf(parsed));
  return parsed;
}

export function signIn() {
  const next = encodeURIComponent(location.pathname + location.search);
  location.assign(`/ui/login?next=${next}`);
}

// Calls `tick` now and then every `ms` while the page is visible, until it returns false.
export function poll(tick, ms) {
  let timer = null;
  const run = async () => {
    timer = null;
    let again = true;
    if (!document.hidden) {
      try {
        again = (await tick()) !== false;
      } catch (err) {
        showError(err);
      }
    }
    if (again) timer = setTimeout(run, ms);
  };
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden && timer !== null) {
      clearTimeout(timer);
      run();
    }
  });
  return run();
}

export function showError(err) {
  const box = document.getElementById("error");
  if (!box || err.redirecting) return;
  box.textContent = err instanceof ApiError ? err.detail : String(err);
  box.hidden = false;
}

export function clearError() {
  const box = document.getElementById("error");
  if (box) box.hidden = true;
}

// The header: who is signed in, and a sign-out button; false (and off to the sign-in
// page) when nobody is.
export async function header() {
  const who = document.getElementById("who");
  const me = await api("/ui/whoami");
  if (me.user === null) {
    signIn();
    return false;
  }
  who.textContent = me.auth_disabled ? "auth disabled (dev)" : `${me.user}${me.admin ? " (admin)" : ""}`;
  const out = document.getElementById("signout");
  out.hidden = me.auth_disabled;
  out.addEventListener("click", async () => {
    await api("/ui/logout", { method: "POST" });
    location.assign("/ui/login");
  });
  return true;
}

// DOM helpers: el("td", {class: "num"}, "text", child, ...)
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

export function badge(state) {
  return el("span", { class: `state state-${state}` }, state);
}

// Why a queued job or sweep has not started (the API's pending_reason), or null.
export function pendingNote(item) {
  if (!item.pending_reason) return null;
  const blocked = item.pending_reason.startsWith("unschedulable");
  return el("span", { class: blocked ? "pending unschedulable" : "pending", "data-pending": item.id }, item.pending_reason);
}

export function fmt(value, digits = 4) {
  if (value === null || value === undefined) return "";
  if (typeof value !== "number") return String(value);
  if (Number.isInteger(value)) return String(value);
  return Math.abs(value) >= 1e4 || (Math.abs(value) < 1e-3 && value !== 0)
    ? value.toExponential(2)
    : value.toFixed(digits);
}

// The browser's UTC offset at `date` as "UTC", "UTC+01:00" or "UTC-05:30".
export function zone(date) {
  const minutes = -date.getTimezoneOffset();
  if (minutes === 0) return "UTC";
  const a = Math.abs(minutes);
  return `UTC${minutes > 0 ? "+" : "-"}${String(Math.floor(a / 60)).padStart(2, "0")}:${String(a % 60).padStart(2, "0")}`;
}

// An instant as local ISO-like text with its zone: "2026-12-08 01:07:29 UTC+01:00".
export function when(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  const p = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())} ${zone(d)}`;
}

// The dashboard's one accuracy format: a fraction in [0, 1] as a percentage, one decimal.
export function pct(value) {
  return value === null || value === undefined ? "" : `${(100 * value).toFixed(1)}%`;
}

// A metric's value as the dashboard shows it: accuracies (`*_acc`) as pct, others as fmt.
export function metricText(name, value) {
  return /_acc$/.test(name) ? pct(value) : fmt(value);
}

// Replaces the page with a clean message (an unknown id, or another user's job or sweep),
// leaving nothing of the page's shell under it.
export function notFound(what, back) {
  const main = document.querySelector("main");
  main.replaceChildren(
    el(
      "section",
      { class: "not-found", id: "not-found" },
      el("h1", {}, `${what} not found`),
      el("p", {}, "It does not exist, or it belongs to another user."),
      el("p", {}, el("a", { href: back.href }, back.text)),
    ),
  );
  document.title = `recu · ${what} not found`;
  document.body.dataset.loaded = "missing";
}

// Wall time from `start` to `end` (or to now while running), as 1h 02m / 3m 05s / 12s.
export function duration(start, end) {
  if (!start) return "";
  return span(((end ? new Date(end) : new Date()) - new Date(start)) / 1000);
}

// Seconds as 1h 02m / 3m 05s / 12s.
export function span(seconds) {
  const s = Math.max(0, Math.round(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  if (h) return `${h}h ${String(m).padStart(2, "0")}m`;
  if (m) return `${m}m ${String(s % 60).padStart(2, "0")}s`;
  return `${s}s`;
}

export function bytes(n) {
  const units = ["B", "KiB", "MiB", "GiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i += 1;
  }
  return `${i ? n.toFixed(1) : n} ${units[i]}`;
}
