// Fleet: every edge that sent a heartbeat, its load and health; refreshed every 2 s.
import { $, DASH, ago, api, badge, errorText, every, fillRows, h, num, pct, say, start } from "/static/console.js";

function linkCell(up, stale) {
  if (stale) return h("span", { class: "muted", title: "unknown: no recent heartbeat", testid: "edge-link" }, "?");
  if (up === true) return badge("up", "up", "edge-link");
  if (up === false) return badge("down", "down", "edge-link");
  return h("span", { class: "muted", title: "this edge has no cloud link configured", testid: "edge-link" }, DASH);
}

function routingCell(routing) {
  if (!routing) return h("td", { class: "muted" }, DASH);
  const origin = String(routing.origin || "");
  let text = origin.startsWith("kv") ? "hub" : origin || DASH;
  if (routing.revision !== null && routing.revision !== undefined) text += ` rev ${routing.revision}`;
  const cell = h("td", { testid: "edge-routing", title: origin }, text);
  if (routing.error) cell.append(" ", badge("refused a config", "bad", null));
  return cell;
}

function row(e) {
  const stale = e.status !== "up";
  const over = e.capacity_turns_per_s !== null && e.demand_turns_per_s > e.capacity_turns_per_s;
  const sessions = e.sessions === null ? DASH : `${e.sessions} / ${e.max_sessions ?? DASH}`;
  return h(
    "tr",
    {
      class: stale ? "stale" : "", testid: "edge-row", "data-edge": e.id, "data-status": e.status,
      title: stale ? `no heartbeat for ${Math.round(e.age_s)} s: the figures are the last ones it sent` : "",
    },
    h("td", { class: "mono", testid: "edge-id", title: e.ws_url || "" }, e.id),
    h("td", {}, badge(e.status, stale ? "stale" : "up", "edge-status")),
    h("td", { class: "num", testid: "edge-sessions" }, sessions),
    h("td", { class: "num" }, num(e.capacity_turns_per_s)),
    h("td", { class: over ? "num over" : "num", title: over ? "demand exceeds capacity" : "" },
      num(e.demand_turns_per_s)),
    h("td", {}, linkCell(e.cloud_link, stale)),
    h("td", { class: "mono", testid: "edge-version" }, e.version || DASH),
    h("td", { testid: "edge-last-seen", title: new Date(e.last_seen * 1000).toLocaleString() }, ago(e.age_s)),
    h("td", { class: "num" }, e.first_audio_p95_s === null ? DASH : `${num(e.first_audio_p95_s, 2)} s`),
    h("td", { class: "num" }, pct(e.escalation_ratio)),
    routingCell(e.routing),
  );
}

function totals(edges) {
  const up = edges.filter((e) => e.status === "up");
  const sum = (key) => up.reduce((acc, e) => acc + (e[key] || 0), 0);
  const connected = sum("sessions");
  const slots = sum("max_sessions");
  $('[data-testid="edges-up"]').textContent = String(up.length);
  $("#edges-total").textContent = `of ${edges.length}`;
  $('[data-testid="devices-connected"]').textContent = String(connected);
  $("#capacity-total").textContent = num(sum("capacity_turns_per_s"));
  $("#demand-total").textContent = num(sum("demand_turns_per_s"));
  const foot = $("#totals");
  foot.replaceChildren(
    h(
      "tr",
      { testid: "totals-row" },
      h("td", {}, `Total: ${edges.length} edge${edges.length === 1 ? "" : "s"}`),
      h("td", {}, `${up.length} up`),
      h("td", { class: "num" }, `${connected} / ${slots}`),
      h("td", { class: "num" }, num(sum("capacity_turns_per_s"))),
      h("td", { class: "num" }, num(sum("demand_turns_per_s"))),
      h("td", { colSpan: 6, class: "muted" }, "totals count edges that are up"),
    ),
  );
}

async function refresh() {
  try {
    const edges = await api("/api/edges");
    fillRows($("#edges"), edges.map(row), "No edge has sent a heartbeat yet.");
    totals(edges);
    $("#updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
    say($("#banner"), "error", "");
  } catch (exc) {
    if (exc.status !== 401) say($("#banner"), "error", `Could not load the edges: ${errorText(exc)}`);
  }
}

start("fleet", async () => {
  every(2000, refresh);
});
