// One job: summary (with its ETA while it runs), cancel, training curves, per-layer
// telemetry, configuration and reproducibility, checkpoints, events and logs. While the
// job is not terminal (the API's `terminal`) the page follows GET /jobs/{id}/stream and
// polls every 2 s only when the stream is unavailable (live.js).
import { ApiError, api, badge, bytes, clearError, duration, el, header, notFound, pct, pendingNote, poll, showError, when } from "/ui/static/api.js";
import { lineChart } from "/ui/static/charts.js";
import { eta } from "/ui/static/eta.js";
import { configPanel, manifestPanel } from "/ui/static/jobconfig.js";
import { follow, liveBadge } from "/ui/static/live.js";
import * as telemetry from "/ui/static/telemetry.js";
import { CURVES, points } from "/ui/static/units.js";

// curve points asked of the server, which downsamples evenly (?points=N overrides)
const MAX_POINTS = Number(new URLSearchParams(location.search).get("points")) || 500;
const jobId = Number(location.pathname.split("/").pop());
const state = { job: null, seenEpoch: -1, logOffset: 0, metrics: [], telemetryEpoch: 0, manifestShown: null, manifestTried: null };

function item(term, ...value) {
  return [el("dt", {}, term), el("dd", {}, ...value)];
}

function summary(job) {
  const s = job.spec;
  const latest = job.latest_metrics || {};
  const running = job.state === "running";
  const rows = [
    item("state", badge(job.state)),
    ...(job.pending_reason ? [item("waiting", pendingNote(job))] : []),
    item("attempt", `${job.attempt} of ${job.max_attempts}`),
    item("epoch", `${job.current_epoch} of ${s.epochs}`),
    ...(running ? [item("ETA", el("span", { id: "eta" }, eta(job, state.metrics).text))] : []),
    item("model", `${s.model}${s.binary ? " (binary)" : " (full precision)"} on ${s.dataset.name}`),
    ...(job.best_test_acc == null ? [] : [item("best test acc", `${pct(job.best_test_acc)} (epoch ${job.best_epoch})`)]),
    ...(job.last_test_acc == null ? [] : [item("last test acc", pct(job.last_test_acc))]),
    ...("best_val_acc" in latest ? [item("best val acc", pct(latest.best_val_acc)), item("test acc at best val", pct(latest.test_acc_at_best_val))] : []),
    item("created", when(job.created_at)),
    ...(job.started_at ? [item("started", when(job.started_at)), item("duration", duration(job.started_at, job.finished_at))] : []),
    ...(job.finished_at ? [item("finished", when(job.finished_at))] : []),
  ];
  if (job.parent_id) rows.push(item("sweep", el("a", { href: `/ui/sweeps/${job.parent_id}` }, `#${job.parent_id}`)));
  rows.push(...chainItems(s));
  document.getElementById("summary").replaceChildren(...rows.flat());
  document.getElementById("title").replaceChildren(`${job.kind === "trial" ? "Trial" : "Job"} #${job.id} `, badge(job.state));
  document.title = `recu · job ${job.id}`;
  document.getElementById("cancel").hidden = !["waiting", "queued", "running"].includes(job.state);
  const error = document.getElementById("job-error");
  error.hidden = !job.error;
  error.textContent = job.error || "";
  liveBadge(job.terminal);
}

// The jobs this one waits for, starts from and distils from, as links.
function chainItems(spec) {
  const link = (id) => el("a", { href: `/ui/jobs/${id}`, "data-chain": id }, `#${id}`);
  const out = [];
  if (spec.after?.length) out.push(item("waits for", el("span", {}, ...spec.after.flatMap((id, i) => (i ? [", ", link(id)] : [link(id)])))));
  if (spec.init_from) out.push(item("starts from", el("span", {}, link(spec.init_from.job_id), ` (${spec.init_from.checkpoint} checkpoint's weights)`)));
  if (spec.distill) out.push(item("distils from", el("span", {}, link(spec.distill.teacher_job_id), ` (${spec.distill.checkpoint}, T = ${spec.distill.temperature})`)));
  return out;
}

// Why there is nothing to plot yet, in words (null when there is).
function noEpochs(job) {
  if (state.metrics.length) return null;
  if (job.kind === "export") return "An export job trains nothing: it has no epochs.";
  if (job.state === "queued") return `No epochs yet: the job is queued (${job.pending_reason || "waiting for a worker"}).`;
  if (job.state === "waiting") return `No epochs yet: the job is ${job.pending_reason || "waiting for the jobs it depends on"}.`;
  if (job.state === "running" || job.state === "cancelling") return `No epochs yet: attempt ${job.attempt} is running its first epoch.`;
  if (job.state === "failed") return "No epochs: the job failed before its first epoch (the error is above), so no metrics or telemetry were recorded.";
  return `No epochs: the job was ${job.state} before its first epoch, so no metrics or telemetry were recorded.`;
}

function showEmpty(id, text, hideId) {
  const box = document.getElementById(id);
  box.hidden = !text;
  box.textContent = text || "";
  document.getElementById(hideId).hidden = Boolean(text);
}

function curves() {
  const rows = state.metrics;
  showEmpty("curves-empty", noEpochs(state.job), "curves");
  if (!rows.length) return;
  const acc = ["train_acc", "test_acc", ...(rows.some((r) => "val_acc" in r.metrics) ? ["val_acc"] : [])];
  const draw = (id, keys, unit) => lineChart(document.getElementById(id), { series: keys.map((k) => ({ name: k, points: points(rows, k, unit.scale) })), yLabel: unit.axis, format: unit.format });
  draw("chart-loss", ["train_loss", "test_loss"], CURVES.loss);
  draw("chart-acc", acc, CURVES.acc);
  draw("chart-tau", ["tau"], CURVES.tau);
  draw("chart-lr", ["lr"], CURVES.lr);
}

// tau at (the recorded epoch nearest to) `epoch`, for the histogram's clamp markers.
function tauAt(epoch) {
  let best = null;
  for (const r of state.metrics) {
    if ("tau" in r.metrics && (best === null || Math.abs(r.epoch - epoch) < Math.abs(best.epoch - epoch))) best = r;
  }
  return best ? best.metrics.tau : null;
}

async function loadTelemetry() {
  state.telemetryEpoch = await telemetry.load();
  const job = state.job;
  let why = noEpochs(job);
  if (!why && !state.telemetryEpoch) {
    why = job.spec.binary ? "No telemetry recorded yet: it is written just after each epoch's metrics." : "No per-layer telemetry: a full-precision model has no binary layers.";
  }
  showEmpty("telemetry-empty", why, "telemetry");
}

async function loadCheckpoints() {
  const rows = await api(`/jobs/${jobId}/checkpoints`);
  const every = state.job.spec.checkpoint?.every_epochs ?? 1;
  showEmpty("checkpoints-empty", rows.length ? null : state.job.terminal ? "No checkpoint was stored." : `No checkpoint yet: one is stored every ${every} epoch${every === 1 ? "" : "s"}.`, "checkpoints");
  document.querySelector("#checkpoints tbody").replaceChildren(
    ...rows.map((c) =>
      el(
        "tr",
        { "data-checkpoint": c.id, "data-best": c.best ? "true" : "false" },
        el("td", {}, `#${c.id}`),
        el("td", { class: "num" }, c.best ? `${c.epoch} (best)` : `${c.epoch}`),
        el("td", { class: "num" }, c.attempt),
        el("td", { class: "num" }, bytes(c.size)),
        el("td", { class: "hash", title: c.sha256 }, c.sha256.slice(0, 16)),
        el("td", {}, when(c.created_at)),
        el(
          "td",
          {},
          el("a", { href: `/checkpoints/${c.id}/download`, download: `job-${jobId}-epoch-${c.epoch}.safetensors`, class: "download" }, "safetensors"),
          " ",
          state.job.spec.binary ? el("a", { href: `/checkpoints/${c.id}/export`, download: `job-${jobId}-epoch-${c.epoch}.bnn` }, "packed .bnn") : null,
        ),
      ),
    ),
  );
}

function eventRow(e) {
  return el("tr", {}, el("td", {}, when(e.at)), el("td", {}, e.from_state ?? ""), el("td", {}, badge(e.to_state)), el("td", { class: "num" }, e.attempt), el("td", {}, e.reason));
}

function appendLogs(lines) {
  const pre = document.getElementById("logs");
  const follow = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
  pre.append(lines.map((l) => `${l.line}\n`).join(""));
  if (follow) pre.scrollTop = pre.scrollHeight;
  state.logOffset += lines.length;
  document.getElementById("logs-empty").hidden = state.logOffset > 0;
}

async function logs() {
  for (;;) {
    const lines = await api(`/jobs/${jobId}/logs?offset=${state.logOffset}&limit=1000`);
    if (lines.length) appendLogs(lines);
    if (lines.length < 1000) return;
  }
}

// The attempt's manifest, asked for until the worker has recorded it: again when the
// job's attempt, epoch or state moves on, not on every poll.
async function manifest(job) {
  const moment = `${job.attempt}/${job.current_epoch}/${job.state}`;
  if (state.manifestShown === job.attempt || state.manifestTried === moment) return;
  state.manifestTried = moment;
  if (await manifestPanel(job)) state.manifestShown = job.attempt;
}

// Everything by REST: the first drawing, every tick of the polling fallback, and the
// last drawing when a stream ends.
async function refresh() {
  const job = await api(`/jobs/${jobId}`);
  clearError();
  state.job = job;
  if (job.current_epoch !== state.seenEpoch || job.terminal) {
    state.metrics = await api(`/jobs/${jobId}/metrics?max_points=${MAX_POINTS}`);
    curves();
    await loadTelemetry();
    await loadCheckpoints();
    state.seenEpoch = job.current_epoch;
  }
  summary(job);
  await manifest(job);
  document.querySelector("#events tbody").replaceChildren(...(await api(`/jobs/${jobId}/events`)).map(eventRow));
  await logs();
  document.body.dataset.loaded = job.state; // for tests and scripts: the page has drawn this state
  return !job.terminal;
}

// After a streamed epoch: telemetry (written just after the epoch's metrics) and the
// checkpoints, fetched once for a burst of events and again while telemetry lags.
let reloading = null;
function reloadSoon(tries = 5) {
  if (reloading !== null) return;
  reloading = setTimeout(async () => {
    await loadTelemetry();
    await loadCheckpoints();
    reloading = null;
    const last = state.metrics.at(-1)?.epoch ?? 0;
    if (state.telemetryEpoch < last && tries > 1) setTimeout(() => reloadSoon(tries - 1), 1500);
  }, 300);
}

const streamed = {
  state: async (job) => {
    state.job = job;
    summary(job);
    await manifest(job);
    if (!job.terminal) document.body.dataset.loaded = job.state; // the end's refresh says it
  },
  event: (e) => document.querySelector("#events tbody").append(eventRow(e)),
  epoch: (row) => {
    if (row.epoch <= (state.metrics.at(-1)?.epoch ?? 0)) return; // drawn already
    state.metrics.push(row);
    state.seenEpoch = row.epoch;
    curves();
    summary({ ...state.job, current_epoch: Math.max(state.job.current_epoch, row.epoch) });
    reloadSoon();
  },
  log: (line) => appendLogs([line]),
  checkpoint: () => reloadSoon(),
  end: () => refresh(),
};

async function start() {
  let job;
  try {
    job = await api(`/jobs/${jobId}`);
  } catch (err) {
    if (err instanceof ApiError && (err.status === 404 || err.status === 422)) return notFound(`Job #${location.pathname.split("/").pop()}`, { href: "/ui/jobs", text: "← all jobs" });
    throw err;
  }
  state.job = job;
  document.getElementById("page").hidden = false;
  configPanel(job.spec);
  telemetry.setup(jobId, { tauAt, clamp: job.spec.binary_options?.clamp });
  if (job.terminal) return refresh(); // nothing will change: one drawing, nothing live
  state.metrics = await api(`/jobs/${jobId}/metrics?max_points=${MAX_POINTS}`);
  state.seenEpoch = job.current_epoch;
  curves();
  await loadTelemetry();
  await loadCheckpoints();
  summary(job);
  await manifest(job);
  document.getElementById("logs-empty").hidden = false;
  document.body.dataset.loaded = job.state;
  // events and log lines come with the stream, from the start
  follow(`/jobs/${jobId}/stream`, streamed, () => poll(refresh, 2000));
  return undefined;
}

if (await header()) {
  document.getElementById("cancel").addEventListener("click", async () => {
    if (!confirm(`Cancel job #${jobId}?`)) return;
    const button = document.getElementById("cancel");
    button.disabled = true;
    try {
      const result = await api(`/jobs/${jobId}/cancel`, { method: "POST" });
      document.getElementById("cancel").hidden = true;
      document.body.dataset.cancelled = result.state;
      await refresh();
    } finally {
      button.disabled = false;
    }
  });
  try {
    await start();
  } catch (err) {
    showError(err);
  }
}
