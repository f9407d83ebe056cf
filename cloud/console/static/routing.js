// Routing: edit the fleet's routing.yaml, check it with the edges' own validator (and see the diff),
// publish it with a comment, look at and roll back to earlier versions.
import {
  $, DASH, api, badge, confirmDialog, diffView, errorText, fillRows, h, say, stamp, start,
} from "/static/console.js";

const state = {
  connected: false,
  published: null, // the text in the KV bucket, null when nothing is published
  kvRevision: null,
  loaded: null, // what the editor was last filled with from the server
  lastCheck: null, // {text, valid}
  versions: [],
  viewing: null,
};

const editor = () => $("#routing-text");

function updatePublish() {
  const text = editor().value;
  const reasons = [];
  if (!state.connected) reasons.push("publishing is disabled while the console is not connected to NATS");
  if (!text.trim()) reasons.push("the config is empty");
  else if (text === state.published) reasons.push("edit the config: the editor holds the published one");
  else if (!state.lastCheck || state.lastCheck.text !== text) reasons.push("check this text first");
  else if (!state.lastCheck.valid) reasons.push("fix the errors the check found");
  if (!$("#routing-comment").value.trim()) reasons.push("write a comment");
  $("#routing-publish").disabled = reasons.length > 0;
  const hint = reasons.length ? `To publish: ${reasons.join("; ")}.` : "Ready to publish.";
  $("#publish-hint").textContent = hint;
}

function showStatus(data) {
  state.connected = data.nats_connected;
  state.published = data.current;
  state.kvRevision = data.kv_revision;
  const nats = $("#nats-state");
  nats.replaceChildren(badge(data.nats_connected ? "connected" : "not connected",
    data.nats_connected ? "up" : "down", null));
  nats.dataset.connected = String(data.nats_connected);
  $("#kv-revision").textContent = data.kv_revision ?? (data.current === null ? "none" : DASH);
  $("#version-count").textContent = String(data.versions.length);
  say($("#nats-down"), "warn", data.nats_connected ? "" :
    "The console is not connected to the NATS hub: publishing and rolling back are disabled until it " +
    "reconnects. The history below comes from the console's database.");
  say($("#kv-error"), "error", data.error && data.nats_connected ? `Could not read the published config: ${data.error}` : "");
}

function versionRow(v) {
  const current = state.kvRevision !== null && v.kv_revision === state.kvRevision;
  const view = h("button", { type: "button", class: "small", testid: "version-view" }, "View");
  view.addEventListener("click", () => showVersion(v));
  const back = h("button", {
    type: "button", class: "small", testid: "version-rollback", disabled: !state.connected || current,
    title: current ? "this version is the one published" : "",
  }, "Roll back…");
  back.addEventListener("click", () => rollback(v));
  return h(
    "tr",
    { class: current ? "current" : "", testid: "version-row", "data-version": String(v.id) },
    h("td", { class: "num mono" }, `v${v.id}`, current ? " " : null, current ? badge("current", "ok", null) : null),
    h("td", { testid: "version-author" }, v.author),
    h("td", {}, stamp(v.created_at)),
    h("td", { class: "wrap", testid: "version-comment" }, v.comment || DASH),
    h("td", { class: "num", testid: "version-kv" }, v.kv_revision ?? DASH),
    h("td", { testid: "version-rollback-of" }, v.rollback_of ? `v${v.rollback_of}` : DASH),
    h("td", {}, h("div", { class: "actions" }, view, back)),
  );
}

async function load({ force = false } = {}) {
  const data = await api("/api/routing");
  showStatus(data);
  state.versions = data.versions;
  fillRows($("#versions"), data.versions.map(versionRow), "Nothing has been published from the console yet.");
  const text = data.current ?? "";
  // The editor follows the published config unless the admin has edited it.
  if (force || state.loaded === null || editor().value === state.loaded) {
    editor().value = text;
    state.loaded = text;
  }
  updatePublish();
  say($("#banner"), "error", "");
}

function showCheck(result, text) {
  state.lastCheck = { text, valid: result.valid };
  $("#check-panel").hidden = false;
  say($("#check-result"), result.valid ? "ok" : "error",
    result.valid ? "Valid: every edge would accept this config." : "Invalid: the edges would refuse this config.");
  const err = $("#check-error");
  err.textContent = result.error || "";
  err.hidden = !result.error;
  $("#check-diff").replaceChildren(diffView(result.diff, "routing-diff"));
  updatePublish();
}

function hideCheck() {
  $("#check-panel").hidden = true;
}

async function check() {
  const text = editor().value;
  say($("#routing-result"), "info", "");
  try {
    showCheck(await api("/api/routing/check", { method: "POST", body: { text } }), text);
  } catch (exc) {
    say($("#routing-result"), "error", `Could not check the config: ${errorText(exc)}`);
  }
}

async function publish() {
  const text = editor().value;
  const comment = $("#routing-comment").value.trim();
  if (!state.lastCheck || state.lastCheck.text !== text || !state.lastCheck.valid || !comment) {
    updatePublish();
    return;
  }
  let diff = "";
  try {
    // The diff again, against what is published right now (someone else may have published).
    const fresh = await api("/api/routing/check", { method: "POST", body: { text } });
    if (!fresh.valid) return showCheck(fresh, text);
    diff = fresh.diff;
  } catch (exc) {
    say($("#routing-result"), "error", `Could not check the config: ${errorText(exc)}`);
    return;
  }
  const ok = await confirmDialog({
    title: "Publish this routing config to every edge?",
    body: [h("p", {}, "Comment: ", h("b", {}, comment)), diffView(diff, "confirm-diff")],
    ok: "Publish",
  });
  if (!ok) return;
  try {
    const out = await api("/api/routing/publish", { method: "POST", body: { text, comment } });
    say($("#routing-result"), "ok",
      `Published v${out.version.id} as KV revision ${out.version.kv_revision}: every edge applies it within seconds.`);
    $("#routing-comment").value = "";
    state.lastCheck = null;
    hideCheck();
    await load({ force: true });
  } catch (exc) {
    say($("#routing-result"), "error", `Not published: ${errorText(exc)}`);
    await load().catch(() => {});
  }
}

async function rollback(v) {
  let diff = "";
  try {
    diff = (await api("/api/routing/check", { method: "POST", body: { text: v.text } })).diff;
  } catch (exc) {
    say($("#routing-result"), "error", `Could not prepare the rollback: ${errorText(exc)}`);
    return;
  }
  const ok = await confirmDialog({
    title: `Roll back to v${v.id}?`,
    body: [
      h("p", {}, `This publishes v${v.id} (by ${v.author}, ${stamp(v.created_at)}: "${v.comment || "no comment"}") `,
        "again as a new version. Changes:"),
      diffView(diff, "confirm-diff"),
    ],
    ok: `Roll back to v${v.id}`,
    danger: true,
  });
  if (!ok) return;
  try {
    const out = await api("/api/routing/rollback", { method: "POST", body: { version_id: v.id } });
    say($("#routing-result"), "ok",
      `Rolled back: v${out.version.id} republishes v${v.id} as KV revision ${out.version.kv_revision}.`);
    state.lastCheck = null;
    hideCheck();
    await load({ force: true });
  } catch (exc) {
    say($("#routing-result"), "error", `Not rolled back: ${errorText(exc)}`);
  }
}

function showVersion(v) {
  state.viewing = v;
  $("#view-title").textContent =
    `v${v.id} by ${v.author}, ${stamp(v.created_at)}${v.comment ? ` — ${v.comment}` : ""}`;
  $("#view-text").textContent = v.text;
  $("#view-panel").hidden = false;
  $("#view-panel").scrollIntoView({ block: "nearest" });
}

start("routing", async () => {
  editor().addEventListener("input", () => {
    if (state.lastCheck && state.lastCheck.text !== editor().value) hideCheck();
    updatePublish();
  });
  $("#routing-comment").addEventListener("input", updatePublish);
  $("#routing-check").addEventListener("click", check);
  $("#routing-publish").addEventListener("click", publish);
  $("#routing-reset").addEventListener("click", () => {
    editor().value = state.published ?? "";
    state.loaded = editor().value;
    hideCheck();
    updatePublish();
  });
  $("#view-close").addEventListener("click", () => ($("#view-panel").hidden = true));
  $("#view-load").addEventListener("click", () => {
    if (!state.viewing) return;
    editor().value = state.viewing.text;
    hideCheck();
    updatePublish();
    editor().focus();
  });
  await load();
  // The link state and the history follow the hub; the editor only while it is untouched.
  setInterval(() => load().catch((exc) => {
    if (exc.status !== 401) say($("#banner"), "error", `Could not refresh: ${errorText(exc)}`);
  }), 5000);
});
