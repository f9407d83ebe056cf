// Live: four charts of the fleet's load, drawn as inline SVG from GET /api/live every 2 s.
import { $, DASH, api, clock, errorText, h, say, start } from "/static/console.js";

const WINDOW_S = 600; // the most the charts show
const MIN_SPAN_S = 60; // the least: a young series is not squeezed against the right edge
const POLL_MS = 2000;
const SVG = "http://www.w3.org/2000/svg";
const W = 640;
const H = 200;
const PAD = { left: 46, right: 12, top: 12, bottom: 24 };

const CHARTS = [
  { key: "turns_per_s", title: "Turns per second", unit: "/s", digits: 2, cls: "c-turns", id: "turns", floor: 1 },
  { key: "first_audio_p95_s", title: "First audio p95", unit: " s", digits: 2, cls: "c-p95", id: "p95", floor: 1 },
  { key: "escalations_per_s", title: "Escalations per second", unit: "/s", digits: 2, cls: "c-esc", id: "escalations",
    floor: 1 },
  { key: "cache_hits_per_s", title: "Cache hits per second", unit: "/s", digits: 2, cls: "c-hits", id: "cache-hits",
    floor: 1 },
];

let points = [];
let lastT = 0;

function svg(tag, attrs = {}, text = null) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (text !== null) node.textContent = text;
  return node;
}

/** A round axis maximum at or above v: 1, 2, 2.5, 5 times a power of ten. */
function niceMax(v, floor) {
  const m = Math.max(v, floor);
  const p = 10 ** Math.floor(Math.log10(m));
  for (const f of [1, 2, 2.5, 5, 10]) if (m <= f * p) return f * p;
  return 10 * p;
}

function fmt(v, digits) {
  return v === null || v === undefined ? DASH : Number(v).toFixed(digits);
}

function buildCard(c) {
  const card = h(
    "div",
    { class: `chart-card ${c.cls}`, testid: `chart-${c.id}` },
    h("div", { class: "chart-head" },
      h("span", { class: "chart-title" }, c.title),
      h("span", { class: "chart-peak", testid: `peak-${c.id}` }),
      h("span", { class: "chart-now", testid: `value-${c.id}` }, DASH)),
  );
  const chart = svg("svg", { class: "chart", viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": c.title });
  chart.dataset.testid = `svg-${c.id}`;
  card.append(chart);
  return card;
}

function spanLabel(seconds) {
  return seconds < 120 ? `−${Math.round(seconds)} s` : `−${Math.round(seconds / 60)} min`;
}

function draw(c, now) {
  const card = $(`[data-testid="chart-${c.id}"]`);
  const chart = $("svg", card);
  const oldest = points.length ? points[0].t : now;
  const span = Math.min(WINDOW_S, Math.max(MIN_SPAN_S, now - oldest));
  const from = now - span;
  const shown = points.filter((p) => p.t >= from);
  const values = shown.map((p) => p[c.key]).filter((v) => v !== null && v !== undefined);
  const peak = values.length ? Math.max(...values) : null;
  const top = niceMax(peak ?? 0, c.floor);
  const iw = W - PAD.left - PAD.right;
  const ih = H - PAD.top - PAD.bottom;
  const x = (t) => PAD.left + ((t - from) / span) * iw;
  const y = (v) => PAD.top + ih - (v / top) * ih;

  const parts = [];
  for (const f of [0, 0.25, 0.5, 0.75, 1]) {
    const yy = y(top * f);
    parts.push(svg("line", { class: f === 0 ? "axis" : "grid-line", x1: PAD.left, x2: W - PAD.right, y1: yy, y2: yy }));
    if (f === 0 || f === 0.5 || f === 1) {
      parts.push(svg("text", { class: "tick", x: PAD.left - 6, y: yy + 4, "text-anchor": "end" },
        Number((top * f).toPrecision(3)).toString()));
    }
  }
  for (const [f, label] of [[0, spanLabel(span)], [0.5, spanLabel(span / 2)], [1, clock(now)]]) {
    parts.push(svg("text", { class: "tick", x: PAD.left + f * iw, y: H - 6,
      "text-anchor": f === 0 ? "start" : f === 1 ? "end" : "middle" }, label));
  }
  // The line, broken where the value is missing (p95 before the first turn); an area under it.
  let d = "";
  let area = "";
  let run = [];
  const flush = () => {
    if (run.length > 1) {
      area += `M${run[0][0]},${y(0)} ` + run.map(([px, py]) => `L${px},${py}`).join(" ") +
        ` L${run[run.length - 1][0]},${y(0)} Z `;
    }
    run = [];
  };
  let pen = false;
  for (const p of shown) {
    const v = p[c.key];
    if (v === null || v === undefined) {
      pen = false;
      flush();
      continue;
    }
    const px = x(p.t).toFixed(1);
    const py = y(v).toFixed(1);
    d += `${pen ? "L" : "M"}${px},${py} `;
    run.push([px, py]);
    pen = true;
  }
  flush();
  if (area) parts.push(svg("path", { class: "area", d: area.trim() }));
  if (d) {
    const line = svg("path", { class: "line", d: d.trim() });
    line.dataset.testid = `line-${c.id}`;
    line.dataset.points = String(values.length);
    parts.push(line);
  }
  const last = shown[shown.length - 1];
  if (last && last[c.key] !== null && last[c.key] !== undefined) {
    parts.push(svg("circle", { class: "dot", cx: x(last.t).toFixed(1), cy: y(last[c.key]).toFixed(1), r: 3.5 }));
  }
  if (!values.length) {
    parts.push(svg("text", { class: "nodata", x: PAD.left + iw / 2, y: PAD.top + ih / 2, "text-anchor": "middle" },
      shown.length ? "no value yet" : "waiting for data…"));
  }
  chart.replaceChildren(...parts);
  const nowValue = last ? last[c.key] : null;
  const valueBox = $(`[data-testid="value-${c.id}"]`, card);
  valueBox.textContent = nowValue === null || nowValue === undefined ? DASH : `${fmt(nowValue, c.digits)}${c.unit}`;
  valueBox.dataset.value = nowValue === null || nowValue === undefined ? "" : String(nowValue);
  const peakBox = $(`[data-testid="peak-${c.id}"]`, card);
  peakBox.textContent = `peak ${peak === null ? DASH : fmt(peak, c.digits) + c.unit}`;
  peakBox.dataset.value = peak === null ? "" : String(peak);
}

async function poll() {
  try {
    const fresh = await api(`/api/live?since=${lastT}`);
    if (fresh.length) {
      points = points.concat(fresh);
      lastT = fresh[fresh.length - 1].t;
    }
    const now = points.length ? Math.max(lastT, Date.now() / 1000) : Date.now() / 1000;
    points = points.filter((p) => p.t >= now - WINDOW_S);
    for (const c of CHARTS) draw(c, now);
    const last = points[points.length - 1];
    $('[data-testid="live-edges-up"]').textContent = last ? String(last.edges_up) : DASH;
    $('[data-testid="live-sessions"]').textContent = last ? String(last.sessions) : DASH;
    // Each point is a rate over one sampling interval: their sum times the interval is the turns.
    const interval = points.length > 1 ? (points[points.length - 1].t - points[0].t) / (points.length - 1) : 2;
    const turns = points.reduce((acc, p) => acc + p.turns_per_s, 0) * interval;
    $('[data-testid="live-turns-window"]').textContent = String(Math.round(turns));
    $("#updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
    say($("#banner"), "error", "");
  } catch (exc) {
    if (exc.status !== 401) say($("#banner"), "error", `Could not load the live series: ${errorText(exc)}`);
  }
}

start("live", async () => {
  $("#charts").replaceChildren(...CHARTS.map(buildCard));
  const tick = async () => {
    await poll();
    setTimeout(tick, POLL_MS);
  };
  tick();
});
