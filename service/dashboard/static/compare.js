// Jobs side by side (/ui/compare?jobs=1,2,3): their test accuracy and loss curves
// overlaid (one colour per job), and the configuration fields that differ between them.
// One request, GET /compare, gives the jobs, their curves and the differences.
import { ApiError, api, badge, el, header, pct, showError, when } from "/ui/static/api.js";
import { PALETTE, lineChart } from "/ui/static/charts.js";
import { valueText } from "/ui/static/jobconfig.js";
import { CURVES, points } from "/ui/static/units.js";

const MAX_POINTS = 500;
const ids = [...new Set((new URLSearchParams(location.search).get("jobs") || "").split(",").map(Number).filter((n) => Number.isInteger(n) && n > 0))].slice(0, PALETTE.length);

// GET /compare for the ids; a job the API does not show (not found, another user's, or
// not one that trains) is named in its 404: it is left out and the rest asked again.
async function compare(wanted) {
  let asked = wanted;
  const missing = [];
  while (asked.length >= 2) {
    try {
      return { answer: await api(`/compare?jobs=${asked.join(",")}&max_points=${MAX_POINTS}`), missing };
    } catch (err) {
      if (!(err instanceof ApiError && err.status === 404)) throw err;
      const named = asked.filter((id) => new RegExp(`\\b${id}\\b`).test(err.detail));
      if (!named.length) throw err;
      missing.push(...named);
      asked = asked.filter((id) => !named.includes(id));
    }
  }
  return { answer: null, missing: [...missing, ...asked] };
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

// The API's differences (the spec fields whose values are not all equal), as table rows
// (one column per job).
function differences(runs, differing) {
  document.getElementById("diff-head").replaceChildren(el("th", {}, "field"), ...runs.map(({ job, colour }) => el("th", {}, swatch(colour), ` #${job.id}`)));
  document.querySelector("#diff tbody").replaceChildren(
    ...differing.map((d) => el("tr", { "data-field": d.path }, el("td", {}, d.path), ...d.values.map((v) => el("td", { class: "differs" }, valueText(v))))),
  );
  document.getElementById("diff-empty").hidden = differing.length > 0;
  document.getElementById("diff").hidden = differing.length === 0;
}

async function start() {
  const { answer, missing } = ids.length < 2 ? { answer: null, missing: [] } : await compare(ids);
  const note = document.getElementById("compare-note");
  note.hidden = !missing.length;
  note.textContent = missing.length ? `Not found (or not yours), left out: ${missing.map((id) => `#${id}`).join(", ")}.` : "";
  if (!answer) {
    note.hidden = !missing.length;
    if (missing.length) document.getElementById("choose").before(note);
    document.getElementById("choose").hidden = false;
    document.body.dataset.loaded = "choose";
    return;
  }
  const runs = answer.jobs.map((job, i) => ({ job, metrics: job.metrics, colour: PALETTE[i] }));
  document.getElementById("page").hidden = false;
  document.title = `recu · compare ${runs.map((r) => `#${r.job.id}`).join(" ")}`;
  jobsTable(runs);
  overlay("chart-acc", runs, "test_acc", CURVES.acc);
  overlay("chart-loss", runs, "test_loss", CURVES.loss);
  differences(runs, answer.differences);
  document.body.dataset.loaded = "compared";
}

if (await header()) {
  try {
    await start();
  } catch (err) {
    showError(err);
  }
}
