// Jobs side by side (/ui/compare?jobs=1,2,3): their test accuracy and loss curves
// overlaid (one colour per job), and the configuration fields that differ between them.
// Read from GET /jobs/{id} and GET /jobs/{id}/metrics, like any client.
import { ApiError, api, badge, el, header, pct, showError, when } from "/ui/static/api.js";
import { PALETTE, lineChart } from "/ui/static/charts.js";
import { flatten, valueText } from "/ui/static/jobconfig.js";
import { CURVES, points } from "/ui/static/units.js";

const MAX_POINTS = 500;
const ids = [...new Set((new URLSearchParams(location.search).get("jobs") || "").split(",").map(Number).filter((n) => Number.isInteger(n) && n > 0))].slice(0, PALETTE.length);

async function load(id) {
  try {
    const [job, metrics] = await Promise.all([api(`/jobs/${id}`), api(`/jobs/${id}/metrics?max_points=${MAX_POINTS}`)]);
    return { job, metrics };
  } catch (err) {
    if (err instanceof ApiError && err.status === 404) return { id, missing: true };
    throw err;
  }
}

function swatch(colour) {
  const i = el("i", { class: "swatch" });
  i.style.background = colour; // CSSOM, which the CSP allows (no inline style attribute)
  return i;
}

function jobsTable(runs) {
  document.querySelector("#compare-jobs tbody").replaceChildren(
    ...runs.map(({ job, colour }) =>
      el(
        "tr",
        { "data-job": job.id },
        el("td", {}, swatch(colour)),
        el("td", {}, el("a", { href: `/ui/jobs/${job.id}` }, `#${job.id}`)),
        el("td", {}, badge(job.state)),
        el("td", {}, job.spec.model),
        el("td", {}, job.spec.dataset?.name ?? ""),
        el("td", { class: "num" }, `${job.current_epoch}/${job.spec.epochs}`),
        el("td", { class: "num" }, pct(job.best_test_acc)),
        el("td", { class: "num" }, pct(job.last_test_acc)),
        el("td", {}, when(job.created_at)),
      ),
    ),
  );
}

function overlay(id, runs, key, unit) {
  lineChart(document.getElementById(id), {
    series: runs.map(({ job, metrics, colour }) => ({ name: metrics.length ? `#${job.id}` : `#${job.id} (no epochs)`, colour, points: points(metrics, key, unit.scale) })),
    yLabel: unit.axis,
    format: unit.format,
  });
}

// The spec fields whose values are not all equal, as table rows (one column per job).
function differences(runs) {
  const flat = runs.map(({ job }) => flatten(job.spec));
  const paths = [...new Set(flat.flatMap(Object.keys))].sort();
  const differing = paths.filter((p) => new Set(flat.map((f) => JSON.stringify(f[p] ?? null))).size > 1);
  document.getElementById("diff-head").replaceChildren(el("th", {}, "field"), ...runs.map(({ job, colour }) => el("th", {}, swatch(colour), ` #${job.id}`)));
  document.querySelector("#diff tbody").replaceChildren(
    ...differing.map((p) => el("tr", { "data-field": p }, el("td", {}, p), ...flat.map((f) => el("td", { class: "differs" }, valueText(f[p]))))),
  );
  document.getElementById("diff-empty").hidden = differing.length > 0;
  document.getElementById("diff").hidden = differing.length === 0;
}

async function start() {
  if (ids.length < 2) {
    document.getElementById("choose").hidden = false;
    document.body.dataset.loaded = "choose";
    return;
  }
  const loaded = await Promise.all(ids.map(load));
  const missing = loaded.filter((r) => r.missing).map((r) => `#${r.id}`);
  const runs = loaded.filter((r) => !r.missing).map((r, i) => ({ ...r, colour: PALETTE[i] }));
  const note = document.getElementById("compare-note");
  note.hidden = !missing.length;
  note.textContent = missing.length ? `Not found (or not yours), left out: ${missing.join(", ")}.` : "";
  document.getElementById("page").hidden = false;
  document.title = `recu · compare ${runs.map((r) => `#${r.job.id}`).join(" ")}`;
  jobsTable(runs);
  overlay("chart-acc", runs, "test_acc", CURVES.acc);
  overlay("chart-loss", runs, "test_loss", CURVES.loss);
  differences(runs);
  document.body.dataset.loaded = "compared";
}

if (await header()) {
  try {
    await start();
  } catch (err) {
    showError(err);
  }
}
