// One sweep: summary, best trial and its checkpoint, tau_s x tau_e coloured by the
// metric (best ringed), every trial's metric curve, the seed groups (each point's mean ±
// std over its seeds, the best group marked when ranked by group mean), the trials table.
// Until the sweep is terminal (the API's `terminal`) the page follows
// GET /sweeps/{id}/stream, whose `sweep` events are the whole view
// (GET /sweeps/{id}?max_points=200); it polls every 2 s only when the stream is
// unavailable (live.js).
import { ApiError, api, badge, clearError, el, fmt, header, metricText, notFound, pct, pendingNote, poll, showError, when } from "/ui/static/api.js";
import { lineChart, scatter } from "/ui/static/charts.js";
import { follow, liveBadge } from "/ui/static/live.js";
import { CURVES } from "/ui/static/units.js";

const MAX_POINTS = 200;
const sweepId = Number(location.pathname.split("/").pop());

function item(term, ...value) {
  return [el("dt", {}, term), el("dd", {}, ...value)];
}

function dimension(d) {
  if (d.kind === "grid" || d.kind === "choice") return `${d.kind} ${JSON.stringify(d.values)}`;
  return `${d.kind} [${d.low}, ${d.high}]`;
}

function latest(trial, metric) {
  for (let i = trial.metrics.length - 1; i >= 0; i -= 1) {
    if (metric in trial.metrics[i]) return trial.metrics[i][metric];
  }
  return null;
}

// A trial's value of a dotted spec path: searched (its params) or fixed (the base spec).
function param(sweep, trial, path) {
  if (path in trial.params) return trial.params[path];
  return path.split(".").reduce((node, key) => node?.[key], sweep.spec.base);
}

function summary(sweep) {
  const s = sweep.spec;
  const best = sweep.best;
  const rows = [
    item("state", badge(sweep.state)),
    ...(sweep.pending_reason ? [item("waiting", pendingNote(sweep))] : []),
    item("model", `${s.base.model} on ${s.base.dataset.name}, ${s.base.epochs} epochs`),
    item("metric", `${s.metric} (${s.mode})`),
    item("search", `${s.search}, ${s.num_samples} sample(s), ${s.max_concurrent_trials} at once`),
    item("scheduler", s.scheduler.kind),
    item("space", el("ul", { class: "space" }, ...Object.entries(s.space).map(([k, d]) => el("li", {}, `${k}: ${dimension(d)}`)))),
    ...(s.seeds ? [item("seeds", `${s.seeds.join(", ")} (every point once per seed), ranked by ${s.rank_by === "group_mean" ? "group mean" : "trial"}`)] : []),
    item("trials", Object.entries(sweep.trial_counts).map(([k, n]) => `${n} ${k}`).join(", ")),
    item("created", when(sweep.created_at)),
  ];
  if (best) {
    rows.push(
      item(
        "best",
        el("a", { href: `/ui/jobs/${best.trial_id}` }, `trial ${best.index} (#${best.trial_id})`),
        ` ${s.metric} ${metricText(s.metric, best.value)} with `,
        Object.entries(best.params).map(([k, v]) => `${k}=${fmt(v)}`).join(", "),
        best.checkpoint ? " · " : "",
        best.checkpoint
          ? el("a", { href: `/checkpoints/${best.checkpoint.id}/download`, download: `sweep-${sweep.id}-best.safetensors`, class: "download" }, `checkpoint #${best.checkpoint.id}`)
          : null,
      ),
    );
  }
  document.getElementById("summary").replaceChildren(...rows.flat());
  document.getElementById("title").replaceChildren(`Sweep #${sweep.id} `, badge(sweep.state));
  document.title = `recu · sweep ${sweep.id}`;
  document.getElementById("cancel").hidden = !(sweep.state === "queued" || sweep.state === "running");
  const error = document.getElementById("job-error");
  error.hidden = !sweep.error;
  error.textContent = sweep.error || "";
  liveBadge(sweep.terminal);
}

// The sweep's metric as shown: accuracies as %, with the axis label saying so.
function metricUnit(metric) {
  return /_acc$/.test(metric) ? { ...CURVES.acc, axis: `${metric} (%)` } : { scale: 1, axis: metric };
}

// Why no trial has a curve yet, in words (null when one has).
function noCurves(sweep) {
  if (sweep.trials.some((t) => t.metrics.length)) return null;
  if (sweep.state === "queued") return `No epochs yet: the sweep is queued (${sweep.pending_reason || "waiting for a worker"}).`;
  if (!sweep.terminal) return "No epochs yet: the first trials are starting.";
  return `No epochs: the sweep ${sweep.state} before any trial finished an epoch.`;
}

function charts(sweep) {
  const metric = sweep.spec.metric;
  const unit = metricUnit(metric);
  const why = noCurves(sweep);
  const empty = document.getElementById("curves-empty");
  empty.hidden = !why;
  empty.textContent = why || "";
  const bestId = sweep.best?.trial_id;
  scatter(document.getElementById("chart-scatter"), {
    points: sweep.trials.map((t) => {
      const value = latest(t, metric);
      const x = param(sweep, t, "tau.tau_s");
      const y = param(sweep, t, "tau.tau_e");
      return {
        x,
        y,
        value: value === null ? NaN : unit.scale * value,
        best: t.id === bestId,
        href: `/ui/jobs/${t.id}`,
        title: `trial ${t.index} (${t.state}): tau_s ${x}, tau_e ${y}, ${metric} ${metricText(metric, value)}`,
      };
    }),
    xLabel: "tau_s (τ at the first epoch)",
    yLabel: "tau_e (τ at the last epoch)",
    valueLabel: unit.axis,
  });
  document.getElementById("curves-caption").textContent = `${metric} per epoch, every trial`;
  lineChart(document.getElementById("chart-trials"), {
    series: sweep.trials.map((t) => ({
      name: `trial ${t.index}`,
      points: t.metrics.filter((m) => metric in m).map((m) => [m.epoch, unit.scale * m[metric]]),
    })),
    yLabel: unit.axis,
    format: unit.format,
  });
}

// An accuracy's mean ± sample std over a group's seeds, as the CLI prints it: 91.3 ± 0.4%.
function spreadText(spread) {
  if (spread.mean === null) return "";
  if (spread.std === null) return pct(spread.mean);
  return `${(100 * spread.mean).toFixed(1)} ± ${pct(spread.std)}`;
}

function groupsTable(sweep) {
  const section = document.getElementById("groups-section");
  section.hidden = !sweep.groups.length;
  if (!sweep.groups.length) return;
  const metric = sweep.spec.metric;
  const paths = Object.keys(sweep.spec.space);
  const other = /_acc$/.test(metric) ? [] : [metric]; // accuracies are in the table already
  document.getElementById("groups-caption").textContent =
    sweep.spec.rank_by === "group_mean"
      ? `Each point run once per seed: mean ± std over the seeds that reported. Ranked by the mean ${metric}; ★ marks the best group.`
      : "Each point run once per seed: mean ± std over the seeds that reported.";
  document.getElementById("group-head").replaceChildren(
    ...["group", ...paths, "seeds", "reported", "best test acc", "last test acc", ...other, ""].map((h) => el("th", {}, h)),
  );
  document.querySelector("#groups tbody").replaceChildren(
    ...sweep.groups.map((g) =>
      el(
        "tr",
        { "data-group": g.index, class: g.best ? "best" : null },
        el("td", { class: "num" }, g.index),
        ...paths.map((p) => el("td", { class: "num" }, fmt(g.params[p]))),
        el("td", {}, g.seeds.join(", ")),
        el("td", { class: "num" }, `${g.reported}/${g.seeds.length}`),
        el("td", { class: "num" }, spreadText(g.best_test_acc)),
        el("td", { class: "num" }, spreadText(g.last_test_acc)),
        ...other.map(() => el("td", { class: "num" }, g.metric.mean === null ? "" : `${fmt(g.metric.mean)}${g.metric.std === null ? "" : ` ± ${fmt(g.metric.std)}`}`)),
        el("td", {}, g.best ? "★ best group" : ""),
      ),
    ),
  );
}

function table(sweep) {
  const metric = sweep.spec.metric;
  const paths = [...Object.keys(sweep.spec.space), ...(sweep.spec.seeds ? ["seed"] : [])];
  document.getElementById("trial-head").replaceChildren(
    ...["trial", "job", "state", ...paths, "epoch", metric, ""].map((h) => el("th", {}, h)),
  );
  document.querySelector("#trials tbody").replaceChildren(
    ...sweep.trials.map((t) =>
      el(
        "tr",
        { "data-trial": t.id, class: t.id === sweep.best?.trial_id ? "best" : null },
        el("td", { class: "num" }, t.index),
        el("td", {}, el("a", { href: `/ui/jobs/${t.id}` }, `#${t.id}`)),
        el("td", {}, badge(t.state)),
        ...paths.map((p) => el("td", { class: "num" }, fmt(t.params[p]))),
        el("td", { class: "num" }, t.current_epoch),
        el("td", { class: "num" }, metricText(metric, latest(t, metric))),
        el("td", {}, t.id === sweep.best?.trial_id ? "★ best" : ""),
      ),
    ),
  );
}

function draw(sweep) {
  clearError();
  summary(sweep);
  charts(sweep);
  groupsTable(sweep);
  table(sweep);
  document.body.dataset.loaded = sweep.state;
}

async function refresh() {
  const sweep = await api(`/sweeps/${sweepId}?max_points=${MAX_POINTS}`);
  draw(sweep);
  return !sweep.terminal;
}

async function start() {
  let sweep;
  try {
    sweep = await api(`/sweeps/${sweepId}?max_points=${MAX_POINTS}`);
  } catch (err) {
    if (err instanceof ApiError && (err.status === 404 || err.status === 422)) return notFound(`Sweep #${location.pathname.split("/").pop()}`, { href: "/ui/sweeps", text: "← all sweeps" });
    throw err;
  }
  document.getElementById("page").hidden = false;
  draw(sweep);
  if (sweep.terminal) return undefined;
  follow(`/sweeps/${sweepId}/stream`, { sweep: draw, end: refresh }, () => poll(refresh, 2000));
  return undefined;
}

if (await header()) {
  document.getElementById("cancel").addEventListener("click", async () => {
    if (!confirm(`Cancel sweep #${sweepId} and every running trial?`)) return;
    await api(`/sweeps/${sweepId}/cancel`, { method: "POST" });
    await refresh();
  });
  try {
    await start();
  } catch (err) {
    showError(err);
  }
}
