// Audit: the console's audit log, newest first, a page at a time (GET /api/audit?before=<id>).
import { $, api, badge, diffView, errorText, fillRows, h, say, stamp, start } from "/static/console.js";

const params = new URLSearchParams(location.search);
const LIMIT = Math.min(1000, Math.max(1, Number(params.get("limit")) || 50));
const pages = []; // the "before" of each page shown so far (null: the newest)
let before = null;
let lastPage = [];

function short(value) {
  const text = typeof value === "string" && value ? value : JSON.stringify(value);
  return text.length > 120 ? text.slice(0, 117) + "…" : text;
}

function detailCell(detail) {
  const cell = h("td", { class: "detail", testid: "audit-detail" });
  const entries = Object.entries(detail || {}).filter(([k, v]) => k !== "diff" && v !== null);
  cell.append(entries.map(([k, v]) => `${k}=${short(v)}`).join("  "));
  if (detail && detail.diff) {
    cell.append(h("details", {}, h("summary", {}, "diff"), diffView(detail.diff, "audit-diff")));
  }
  return cell;
}

function row(a) {
  return h(
    "tr",
    { testid: "audit-row", "data-id": String(a.id), "data-action": a.action, "data-ok": String(a.ok) },
    h("td", { class: "num mono" }, String(a.id)),
    h("td", {}, stamp(a.at)),
    h("td", { testid: "audit-user" }, a.user),
    h("td", { class: "mono", testid: "audit-action" }, a.action),
    h("td", { class: "mono", testid: "audit-target" }, a.target || ""),
    h("td", {}, a.ok ? badge("ok", "ok", "audit-ok") : badge("failed", "bad", "audit-ok")),
    detailCell(a.detail),
  );
}

async function show(target) {
  try {
    const q = new URLSearchParams({ limit: String(LIMIT) });
    if (target !== null) q.set("before", String(target));
    const entries = await api(`/api/audit?${q}`);
    before = target;
    lastPage = entries;
    fillRows($("#entries"), entries.map(row), target === null ? "The audit log is empty." : "No older entries.");
    $("#newer").disabled = pages.length === 0;
    $("#newest").disabled = target === null;
    $("#older").disabled = entries.length < LIMIT;
    $("#range").textContent = entries.length
      ? `entries #${entries[entries.length - 1].id} to #${entries[0].id}, ${LIMIT} per page`
      : "";
    say($("#banner"), "error", "");
  } catch (exc) {
    if (exc.status !== 401) say($("#banner"), "error", `Could not load the audit log: ${errorText(exc)}`);
  }
}

start("audit", async () => {
  $("#older").addEventListener("click", () => {
    if (!lastPage.length) return;
    pages.push(before);
    show(lastPage[lastPage.length - 1].id);
  });
  $("#newer").addEventListener("click", () => {
    if (!pages.length) return;
    show(pages.pop());
  });
  $("#newest").addEventListener("click", () => {
    pages.length = 0;
    show(null);
  });
  await show(null);
});
