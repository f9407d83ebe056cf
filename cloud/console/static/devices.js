// Devices: the table (filter by state and edge), bind a waiting device by its activation code,
// move a device to another edge, revoke a device's token (and lift the revocation).
import {
  $, DASH, agoEpoch, api, badge, confirmDialog, errorText, every, fillRows, h, say, session, stamp, start,
} from "/static/console.js";

let edges = [];
const chosen = new Map(); // device id -> edge picked in its "Move to" select, kept across refreshes

function edgeOptions(select, first, keep) {
  const current = keep ?? select.value;
  select.replaceChildren(h("option", { value: "" }, first));
  for (const e of edges) {
    select.append(h("option", { value: e.id }, e.status === "up" ? e.id : `${e.id} (stale)`));
  }
  if ([...select.options].some((o) => o.value === current)) select.value = current;
}

async function loadEdges() {
  edges = await api("/api/edges");
  edgeOptions($("#bind-edge"), "— no edge yet —");
  edgeOptions($("#filter-edge"), "all edges");
}

async function move(device, select) {
  const box = $("#move-result");
  const target = select.value;
  if (!target) {
    say(box, "error", `Pick the edge to move ${device.id} to.`);
    return;
  }
  const from = device.edge_id || "no edge";
  const ok = await confirmDialog({
    title: "Move device",
    body: h("p", {}, "Assign ", h("b", {}, device.id), ` to edge ${target} (now: ${from})? `,
      "It connects there the next time it asks for its configuration."),
    ok: `Move to ${target}`,
  });
  if (!ok) return;
  try {
    const moved = await api(`/api/devices/${encodeURIComponent(device.id)}/move`, {
      method: "POST", body: { edge: target },
    });
    chosen.delete(device.id);
    say(box, "ok", `Moved ${moved.id} from ${from} to ${moved.edge_id}.`);
    await refresh();
  } catch (exc) {
    say(box, "error", `Could not move ${device.id}: ${errorText(exc)}`);
  }
}

async function revoke(device) {
  const box = $("#move-result");
  const lifting = d => d.revoked_at != null;
  const reasonInput = h("input", { type: "text", maxlength: "200", testid: "revoke-reason",
    "aria-label": "reason", placeholder: "reason (kept in the audit log)" });
  const ok = await confirmDialog(lifting(device)
    ? {
      title: "Lift the revocation",
      body: h("p", {}, "Let ", h("b", {}, device.id),
        " connect again? It gets a new token at its next configuration check (its next boot)."),
      ok: "Lift revocation",
    }
    : {
      title: "Revoke device token",
      body: h("div", {}, h("p", {}, "Revoke the token of ", h("b", {}, device.id), "? ",
        "Its session is closed now, every edge refuses it and it gets no new token until you lift this."),
        reasonInput),
      ok: "Revoke", danger: true,
    });
  if (!ok) return;
  const action = lifting(device) ? "unrevoke" : "revoke";
  try {
    const out = await api(`/api/devices/${encodeURIComponent(device.id)}/${action}`, {
      method: "POST", body: action === "revoke" ? { reason: reasonInput.value.trim() } : undefined,
    });
    const later = out.published ? "" : ` Not sent to the edges yet (${out.error}); the console retries.`;
    say(box, out.published ? "ok" : "error",
      `${action === "revoke" ? "Revoked" : "Lifted the revocation of"} ${out.device.id}.${later}`);
    await refresh();
  } catch (exc) {
    say(box, "error", `Could not ${action} ${device.id}: ${errorText(exc)}`);
  }
}

function row(d) {
  const select = h("select", { testid: "move-edge", "aria-label": `move ${d.id} to edge` });
  edgeOptions(select, "choose edge…", chosen.get(d.id) || "");
  select.addEventListener("change", () => chosen.set(d.id, select.value));
  const button = h("button", { type: "button", class: "small", testid: "move-submit" }, "Move");
  button.addEventListener("click", () => move(d, select));
  const revoked = d.revoked_at != null;
  const token = h("button", { type: "button", class: revoked ? "small" : "small danger", testid: "revoke-submit" },
    revoked ? "Lift revocation" : "Revoke");
  token.addEventListener("click", () => revoke(d));
  const state = d.state === "pending" ? "pending" : d.state === "active" ? "active" : "seen";
  return h(
    "tr",
    { testid: "device-row", "data-device": d.id, "data-state": d.state },
    h("td", { class: "mono", testid: "device-id" }, d.id),
    h("td", {}, badge(d.state, state, "device-state"),
      d.activation_pending ? h("span", { class: "muted small" }, " code issued") : null),
    h("td", { class: "mono", testid: "device-edge" }, d.edge_id || DASH),
    h("td", { class: "mono", testid: "device-connected" }, d.connected_edge || DASH),
    h("td", { testid: "device-last-seen", title: stamp(d.last_seen) }, d.last_seen ? agoEpoch(d.last_seen) : "never"),
    h("td", { class: "mono" }, d.firmware || DASH),
    h("td", { title: d.bound_at ? stamp(d.bound_at) : "" }, d.bound_by || DASH),
    h("td", {}, h("div", { class: "actions" }, select, button)),
    h("td", { testid: "device-token", title: revoked ? `${stamp(d.revoked_at)} ${d.revoked_reason}` : "" },
      h("div", { class: "actions" }, revoked ? badge(`revoked by ${d.revoked_by}`, "bad", "device-revoked") : null,
        token)),
  );
}

async function refresh() {
  const params = new URLSearchParams();
  const state = $("#filter-state").value;
  const edge = $("#filter-edge").value;
  if (state) params.set("state", state);
  if (edge) params.set("edge", edge);
  try {
    const qs = params.toString();
    const list = await api(`/api/devices${qs ? "?" + qs : ""}`);
    // Do not rebuild the table under an open select: the admin is choosing an edge.
    const focused = document.activeElement;
    if (focused && focused.tagName === "SELECT" && $("#devices").contains(focused)) return;
    fillRows($("#devices"), list.map(row), state || edge ? "No device matches the filter." : "No device yet.");
    $("#count").textContent = `${list.length} device${list.length === 1 ? "" : "s"}`;
    $("#updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
    say($("#banner"), "error", "");
  } catch (exc) {
    if (exc.status !== 401) say($("#banner"), "error", `Could not load the devices: ${errorText(exc)}`);
  }
}

async function bind(event) {
  event.preventDefault();
  const box = $("#bind-result");
  const code = $("#bind-code").value.trim();
  const edge = $("#bind-edge").value;
  if (!/^\d{6}$/.test(code)) {
    say(box, "error", "An activation code is 6 digits.");
    return;
  }
  try {
    const d = await api("/api/devices/bind", { method: "POST", body: { code, edge } });
    say(box, "ok", `Bound ${d.id} (by ${session.user})${d.edge_id ? ` to edge ${d.edge_id}` : ""}.`);
    $("#bind-code").value = "";
    await refresh();
  } catch (exc) {
    say(box, "error", `Could not bind code ${code}: ${errorText(exc)}`);
  }
}

function readFilters() {
  const q = new URLSearchParams(location.search);
  if (q.get("state")) $("#filter-state").value = q.get("state");
  return q.get("edge") || "";
}

function writeFilters() {
  const q = new URLSearchParams();
  if ($("#filter-state").value) q.set("state", $("#filter-state").value);
  if ($("#filter-edge").value) q.set("edge", $("#filter-edge").value);
  const qs = q.toString();
  history.replaceState(null, "", `${location.pathname}${qs ? "?" + qs : ""}`);
}

start("devices", async () => {
  const edgeFilter = readFilters();
  await loadEdges();
  if (edgeFilter) {
    if (![...$("#filter-edge").options].some((o) => o.value === edgeFilter)) {
      $("#filter-edge").append(h("option", { value: edgeFilter }, edgeFilter));
    }
    $("#filter-edge").value = edgeFilter;
  }
  $("#bind-form").addEventListener("submit", bind);
  for (const id of ["#filter-state", "#filter-edge"]) {
    $(id).addEventListener("change", () => {
      writeFilters();
      refresh();
    });
  }
  $("#refresh").addEventListener("click", async () => {
    await loadEdges().catch(() => {});
    await refresh();
  });
  every(5000, refresh);
  setInterval(() => loadEdges().catch(() => {}), 15000);
});
