// The job page's per-layer weight telemetry: a layers × epochs heat map of one field (any
// number of layers stays readable), the lines of a few chosen layers in distinct colours
// (a click on a layer's name adds or removes one), and one layer's latent-weight histogram
// with an epoch slider.
import { api, el } from "/ui/static/api.js";
import { PALETTE, histogram, lineChart } from "/ui/static/charts.js";
import { heatmap } from "/ui/static/heatmap.js";
import { TELEMETRY } from "/ui/static/units.js";

const POINTS = 200; // epochs asked of the server, which downsamples evenly
export const MAX_LINES = 6;
const view = { jobId: null, tauAt: null, clamp: false, rows: [], layers: [], colours: new Map(), hist: [] };

function field() {
  return document.getElementById("telemetry-field").value;
}

// Number → text with the field's unit ("12.3 % of weights", "4.21 bits").
function shown(meta) {
  return (v) => `${Number(v.toPrecision(3))} ${meta.unit}`;
}

// The default lines: the first, the middle and the last layer.
function defaults(layers) {
  const picks = [0, Math.floor((layers.length - 1) / 2), layers.length - 1];
  return [...new Set(picks)].map((i) => layers[i]);
}

function toggle(name) {
  if (view.colours.has(name)) view.colours.delete(name);
  else if (view.colours.size < MAX_LINES) {
    const used = new Set(view.colours.values());
    view.colours.set(name, PALETTE.find((c) => !used.has(c)));
  }
  draw();
}

function draw() {
  const key = field();
  const meta = TELEMETRY[key];
  document.getElementById("telemetry-meaning").textContent = meta.meaning;
  const value = (row, name) => {
    const v = row.telemetry.layers[name]?.[key];
    return Number.isFinite(v) ? meta.scale * v : null;
  };
  heatmap(document.getElementById("chart-heatmap"), {
    rows: view.layers,
    columns: view.rows.map((r) => r.epoch),
    values: view.layers.map((name) => view.rows.map((r) => value(r, name))),
    unit: meta.axis,
    format: shown(meta),
    onRow: toggle,
    marked: view.colours,
  });
  lineChart(document.getElementById("chart-telemetry"), {
    series: [...view.colours].map(([name, colour]) => ({
      name,
      colour,
      points: view.rows.map((r) => [r.epoch, value(r, name)]).filter((p) => p[1] !== null),
    })),
    yLabel: meta.axis,
    format: shown(meta),
  });
}

function drawHist() {
  const slider = document.getElementById("hist-slider");
  const row = view.hist[Number(slider.value)];
  const layer = document.getElementById("hist-layer").value;
  if (!row || !row.telemetry.layers[layer]) return;
  document.getElementById("hist-epoch").textContent = row.epoch;
  const t = row.telemetry;
  const markers = [];
  const tau = view.tauAt(row.epoch);
  if (view.clamp && tau !== null) {
    const bound = -Math.log(2 - 2 * tau); // the clamp +-Q/b = -ln(2 - 2 tau), in units of b
    markers.push({ x: -bound, label: "−Q/b" }, { x: bound, label: "Q/b" });
  }
  const beyond = t.layers[layer].beyond_clamp;
  histogram(document.getElementById("chart-hist"), {
    counts: t.layers[layer].hist,
    range: t.hist_range,
    markers,
    xLabel: `w1 / b (units of b = mean|w1|)${Number.isFinite(beyond) ? `: ${(100 * beyond).toFixed(1)}% beyond the clamp` : ""}`,
    yLabel: "fraction of weights",
  });
}

async function loadHist(keepEpoch) {
  const layer = document.getElementById("hist-layer").value;
  if (!layer) return;
  const q = new URLSearchParams({ max_points: POINTS, layer });
  view.hist = await api(`/jobs/${view.jobId}/telemetry?${q}`);
  const slider = document.getElementById("hist-slider");
  const atEnd = Number(slider.value) >= Number(slider.max);
  slider.max = Math.max(view.hist.length - 1, 0);
  if (!keepEpoch || atEnd) slider.value = slider.max;
  drawHist();
}

// tauAt(epoch): tau at (the recorded epoch nearest to) it; clamp: the job clamps.
export function setup(jobId, { tauAt, clamp }) {
  Object.assign(view, { jobId, tauAt, clamp });
  document.getElementById("max-lines").textContent = MAX_LINES;
  document.getElementById("telemetry-field").addEventListener("change", draw);
  document.getElementById("hist-layer").addEventListener("change", () => loadHist(false));
  document.getElementById("hist-slider").addEventListener("input", drawHist);
}

// Fetches and draws it all; returns the last epoch with telemetry (0: none yet).
export async function load() {
  view.rows = await api(`/jobs/${view.jobId}/telemetry?max_points=${POINTS}&hist=false`);
  const names = view.rows.length ? Object.keys(view.rows.at(-1).telemetry.layers) : [];
  if (names.join() !== view.layers.join()) {
    view.layers = names;
    const select = document.getElementById("hist-layer");
    const chosen = select.value;
    select.replaceChildren(...names.map((n) => el("option", { value: n }, n)));
    if (names.includes(chosen)) select.value = chosen;
    view.colours = new Map((names.length ? defaults(names) : []).map((n, i) => [n, PALETTE[i]]));
  }
  if (!view.rows.length) return 0;
  draw();
  await loadHist(true);
  return view.rows.at(-1).epoch;
}
