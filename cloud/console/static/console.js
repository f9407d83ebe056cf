// What every console page shares: the API client (CSRF header, 401 -> login), the top navigation,
// DOM helpers, formatting, messages and the confirmation dialog. Plain ES module, no build step;
// the CSP forbids inline scripts and styles, so nothing here sets a style attribute.

export const session = { user: "", csrf: "" };

export class ApiError extends Error {
  constructor(status, message, retryAfter = null) {
    super(message);
    this.status = status;
    this.retryAfter = retryAfter;
  }
}

/** The readable text of an error answer: {"detail": "..."} or FastAPI's list of validation errors. */
export function detailText(data, status, statusText = "") {
  const detail = data && typeof data === "object" ? data.detail : null;
  if (typeof detail === "string" && detail) return detail;
  if (Array.isArray(detail) && detail.length) {
    return detail
      .map((d) => {
        const where = Array.isArray(d.loc) ? d.loc.filter((p) => p !== "body").join(".") : "";
        return where ? `${where}: ${d.msg}` : String(d.msg || JSON.stringify(d));
      })
      .join("\n");
  }
  if (typeof data === "string" && data.trim()) return `HTTP ${status}: ${data.trim().slice(0, 300)}`;
  return `HTTP ${status}${statusText ? " " + statusText : ""}`;
}

/** Where the login page sends us back to: the page we are on. */
export function loginUrl() {
  return "/login?next=" + encodeURIComponent(location.pathname + location.search);
}

let redirecting = false;

/** Call the JSON API. Throws ApiError with the server's message; a 401 goes to the login page. */
export async function api(path, { method = "GET", body } = {}) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET" && session.csrf) headers["X-CSRF-Token"] = session.csrf;
  let res;
  try {
    res = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "same-origin",
      cache: "no-store",
    });
  } catch (exc) {
    throw new ApiError(0, `the console did not answer (${exc.message})`);
  }
  if (res.status === 401 && path !== "/api/login") {
    if (!redirecting) {
      redirecting = true;
      location.assign(loginUrl());
    }
    throw new ApiError(401, "your session ended: log in again");
  }
  const text = res.status === 204 ? "" : await res.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = text;
    }
  }
  if (!res.ok) {
    throw new ApiError(res.status, detailText(data, res.status, res.statusText), res.headers.get("Retry-After"));
  }
  return data;
}

// -- DOM helpers ------------------------------------------------------------------------------

/** h("td", {class: "num", testid: "x", onclick: fn}, "text", node, ...) */
export function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "testid") node.dataset.testid = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on") && typeof value === "function") node.addEventListener(key.slice(2), value);
    else if (key === "style") throw new Error("no style attributes: the CSP refuses them");
    else if (key.startsWith("data-")) node.setAttribute(key, value);
    else if (value === true) node.setAttribute(key, "");
    else if (key in node && typeof node[key] !== "function") node[key] = value;
    else node.setAttribute(key, value);
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export function $(selector, root = document) {
  return root.querySelector(selector);
}

export function clear(node) {
  node.replaceChildren();
  return node;
}

/** A table body's rows, or one row saying there is nothing. */
export function fillRows(tbody, rows, emptyText) {
  if (rows.length) {
    tbody.replaceChildren(...rows);
  } else {
    const cols = tbody.closest("table").querySelectorAll("thead th").length || 1;
    tbody.replaceChildren(h("tr", { testid: "empty-row" }, h("td", { class: "empty", colSpan: cols }, emptyText)));
  }
}

export function badge(text, kind, testid) {
  return h("span", { class: `badge ${kind}`, testid }, text);
}

// -- formatting -------------------------------------------------------------------------------
export const DASH = "—";

export function num(value, digits = 2) {
  if (value === null || value === undefined || Number.isNaN(value)) return DASH;
  return Number(value).toFixed(digits);
}

export function pct(ratio) {
  if (ratio === null || ratio === undefined) return DASH;
  return `${(ratio * 100).toFixed(1)} %`;
}

/** "3 s ago", "4 min ago", "2 h ago", "5 d ago". */
export function ago(seconds) {
  if (seconds === null || seconds === undefined) return DASH;
  const s = Math.max(0, seconds);
  if (s < 60) return `${Math.round(s)} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return `${Math.floor(s / 86400)} d ago`;
}

export function agoEpoch(epoch) {
  return epoch ? ago(Date.now() / 1000 - epoch) : DASH;
}

const pad = (n) => String(n).padStart(2, "0");

/** Local time, "2024-05-01 13:04:05". */
export function stamp(epoch) {
  if (!epoch) return DASH;
  const d = new Date(epoch * 1000);
  return (
    `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`
  );
}

export function clock(epoch) {
  const d = new Date(epoch * 1000);
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** A unified diff as coloured lines (CSS classes add / del / hunk / file). */
export function diffView(diff, testid = "diff") {
  const pre = h("pre", { class: "diff", testid });
  const lines = (diff || "").replace(/\n$/, "").split("\n");
  if (!diff) {
    pre.append(h("span", { class: "same" }, "(no change from the published config)"));
    return pre;
  }
  for (const line of lines) {
    let kind = "same";
    if (line.startsWith("+++") || line.startsWith("---")) kind = "file";
    else if (line.startsWith("@@")) kind = "hunk";
    else if (line.startsWith("+")) kind = "add";
    else if (line.startsWith("-")) kind = "del";
    pre.append(h("span", { class: kind }, line || " "));
  }
  return pre;
}

// -- messages ---------------------------------------------------------------------------------

/** Show text in a message box (class error / ok / info / warn); empty text hides it. */
export function say(box, kind, text) {
  if (!box) return;
  box.className = `msg ${kind}`;
  box.textContent = text || "";
  box.hidden = !text;
}

export function errorText(exc) {
  return exc instanceof ApiError ? exc.message : `unexpected error: ${exc && exc.message ? exc.message : exc}`;
}

// -- confirmation dialog ----------------------------------------------------------------------
let dialog = null;

/** A modal yes/no question; body is text or a node. Resolves true when confirmed. */
export function confirmDialog({ title, body, ok = "Confirm", danger = false }) {
  if (!dialog) {
    dialog = h(
      "dialog",
      { class: "confirm", testid: "confirm-dialog" },
      h("div", { class: "dlg-head", testid: "confirm-title" }),
      h("div", { class: "dlg-body", testid: "confirm-body" }),
      h(
        "div",
        { class: "dlg-foot" },
        h("button", { type: "button", testid: "confirm-cancel", value: "cancel" }, "Cancel"),
        h("button", { type: "button", testid: "confirm-ok", value: "ok" }),
      ),
    );
    document.body.append(dialog);
  }
  $(".dlg-head", dialog).textContent = title;
  const bodyBox = clear($(".dlg-body", dialog));
  append(bodyBox, [body]);
  const okButton = $('[data-testid="confirm-ok"]', dialog);
  okButton.textContent = ok;
  okButton.className = danger ? "danger" : "primary";
  const cancelButton = $('[data-testid="confirm-cancel"]', dialog);
  return new Promise((resolve) => {
    const done = (answer) => {
      okButton.onclick = cancelButton.onclick = dialog.oncancel = null;
      if (dialog.open) dialog.close();
      resolve(answer);
    };
    okButton.onclick = () => done(true);
    cancelButton.onclick = () => done(false);
    dialog.oncancel = () => done(false);
    dialog.showModal();
    cancelButton.focus();
  });
}

// -- polling ----------------------------------------------------------------------------------

/** Run fn now and then every ms after each run finishes (never two at once). */
export function every(ms, fn) {
  let timer = null;
  const tick = async () => {
    try {
      await fn();
    } finally {
      timer = setTimeout(tick, ms);
    }
  };
  tick();
  return () => clearTimeout(timer);
}

// -- page shell -------------------------------------------------------------------------------
const PAGES = [
  ["fleet", "Fleet"],
  ["devices", "Devices"],
  ["routing", "Routing"],
  ["live", "Live"],
  ["audit", "Audit"],
];

async function logout() {
  redirecting = true; // a refresh answered 401 meanwhile must not send us to log in again
  try {
    await api("/api/logout", { method: "POST" });
  } catch {
    // already logged out, or the console is unreachable: the login page says which
  }
  location.assign("/login");
}

/** Every page but the login page: load the session (user, CSRF token) and draw the top nav. */
export async function initPage(current) {
  const nav = h(
    "nav",
    { class: "topnav", testid: "nav" },
    h("span", { class: "brand" }, "Xiaozhi ", h("span", {}, "fleet")),
    ...PAGES.map(([name, label]) =>
      h(
        "a",
        {
          class: `navlink${name === current ? " active" : ""}`,
          href: `/${name}`,
          testid: `nav-${name}`,
          "aria-current": name === current ? "page" : null,
        },
        label,
      ),
    ),
    h("span", { class: "spacer" }),
    h("span", { class: "user", testid: "nav-user" }),
    h("button", { type: "button", class: "logout small", testid: "logout", onclick: logout }, "Log out"),
  );
  document.body.prepend(nav);
  const who = await api("/api/session");
  session.user = who.user;
  session.csrf = who.csrf;
  $('[data-testid="nav-user"]', nav).textContent = who.user;
  return who;
}

/** Run a page's start function; an error while starting is shown in the page's #banner. */
export function start(current, main) {
  const run = async () => {
    try {
      await initPage(current);
      await main();
    } catch (exc) {
      if (exc instanceof ApiError && exc.status === 401) return;
      say($("#banner"), "error", errorText(exc));
    }
  };
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", run);
  else run();
}
