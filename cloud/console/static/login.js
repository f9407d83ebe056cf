// The login page: POST /api/login, then back to the page that sent us here (same origin only).
import { $, ApiError, api, errorText, say } from "/static/console.js";

/** The "next" parameter when it is a path on this site ("/devices?state=pending"), else /fleet. */
export function safeNext(raw) {
  if (!raw || !raw.startsWith("/") || raw.startsWith("//") || raw.startsWith("/\\")) return "/fleet";
  try {
    const url = new URL(raw, location.origin);
    if (url.origin !== location.origin || url.pathname.startsWith("/login")) return "/fleet";
    return url.pathname + url.search + url.hash;
  } catch {
    return "/fleet";
  }
}

let unlockTimer = null;

function lockFor(seconds, button, box, text) {
  clearInterval(unlockTimer);
  let left = Math.max(1, Math.ceil(seconds));
  button.disabled = true;
  say(box, "error", text);
  const show = () => (button.textContent = `Log in (wait ${left} s)`);
  show();
  unlockTimer = setInterval(() => {
    left -= 1;
    if (left > 0) return show();
    clearInterval(unlockTimer);
    button.disabled = false;
    button.textContent = "Log in";
  }, 1000);
}

async function submit(event) {
  event.preventDefault();
  const box = $("#login-error");
  const button = $("#login-submit");
  const username = $("#username").value.trim();
  const password = $("#password").value;
  if (!username || !password) {
    say(box, "error", "Enter your user name and password.");
    return;
  }
  button.disabled = true;
  say(box, "error", "");
  try {
    await api("/api/login", { method: "POST", body: { username, password } });
    location.assign(safeNext(new URLSearchParams(location.search).get("next")));
    return;
  } catch (exc) {
    const text = errorText(exc);
    if (exc instanceof ApiError && exc.status === 429 && exc.retryAfter) {
      lockFor(Number(exc.retryAfter), button, box, text);
      return;
    }
    say(box, "error", text);
    $("#password").select();
  }
  button.disabled = false;
}

$("#login-form").addEventListener("submit", submit);
