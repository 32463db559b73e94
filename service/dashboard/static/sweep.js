// One sweep: summary, best trial and its checkpoint, tau_s x tau_e coloured by the
// metric (best ringed), every trial's metric curve, the trials table; refreshed every
// 2 s until the sweep reaches a terminal state (the API's `terminal`).
import { api, badge, clearError, el, fmt, header, pendingNote, poll, when } from "/ui/static/api.js";
import { lineChart, scatter } from "/ui/static/charts.js";

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
    item("trials", Object.entries(sweep.trial_counts).map(([k, n]) => `${n} ${k}`).join(", ")),
    item("created", when(sweep.created_at)),
  ];
  if (best) {
    rows.push(
      item(
        "best",
        el("a", { href: `/ui/jobs/${best.trial_id}` }, `trial ${best.index} (#${best.trial_id})`),
        ` ${s.metric} ${fmt(best.value)} with `,
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
}

function charts(sweep) {
  const metric = sweep.spec.metric;
  const bestId = sweep.best?.trial_id;
  scatter(document.getElementById("chart-scatter"), {
    points: sweep.trials.map((t) => {
      const value = latest(t, metric);
      const x = param(sweep, t, "tau.tau_s");
      const y = param(sweep, t, "tau.tau_e");
      return {
        x,
        y,
        value: value ?? NaN,
        best: t.id === bestId,
        href: `/ui/jobs/${t.id}`,
        title: `trial ${t.index} (${t.state}): tau_s ${x}, tau_e ${y}, ${metric} ${fmt(value)}`,
      };
    }),
    xLabel: "tau_s",
    yLabel: "tau_e",
    valueLabel: metric,
  });
  document.getElementById("curves-caption").textContent = `${metric} per epoch, every trial`;
  lineChart(document.getElementById("chart-trials"), {
    series: sweep.trials.map((t) => ({
      name: `trial ${t.index}`,
      points: t.metrics.filter((m) => metric in m).map((m) => [m.epoch, m[metric]]),
    })),
    yLabel: metric,
  });
}

function table(sweep) {
  const metric = sweep.spec.metric;
  const paths = Object.keys(sweep.spec.space);
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
        el("td", { class: "num" }, fmt(latest(t, metric))),
        el("td", {}, t.id === sweep.best?.trial_id ? "★ best" : ""),
      ),
    ),
  );
}

async function refresh() {
  const sweep = await api(`/sweeps/${sweepId}?max_points=${MAX_POINTS}`);
  clearError();
  summary(sweep);
  charts(sweep);
  table(sweep);
  document.body.dataset.loaded = sweep.state;
  return !sweep.terminal;
}

if (await header()) {
  document.getElementById("cancel").addEventListener("click", async () => {
    if (!confirm(`Cancel sweep #${sweepId} and every running trial?`)) return;
    await api(`/sweeps/${sweepId}/cancel`, { method: "POST" });
    await refresh();
  });
  poll(refresh, 2000);
}
