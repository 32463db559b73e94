// One job: summary, cancel, training curves, per-layer telemetry, the latent-weight
// histogram with an epoch slider, checkpoints, events and logs; refreshed every 2 s
// until the job reaches a terminal state (the API's `terminal`).
import { api, badge, bytes, clearError, duration, el, fmt, header, pendingNote, poll, when } from "/ui/static/api.js";
import { histogram, lineChart } from "/ui/static/charts.js";

// curve points asked of the server, which downsamples evenly (?points=N overrides)
const MAX_POINTS = Number(new URLSearchParams(location.search).get("points")) || 500;
const TELEMETRY_POINTS = 200;
const jobId = Number(location.pathname.split("/").pop());
const state = { job: null, seenEpoch: -1, logOffset: 0, metrics: [], hist: [], layers: [] };

function item(term, ...value) {
  return [el("dt", {}, term), el("dd", {}, ...value)];
}

function summary(job) {
  const s = job.spec;
  const latest = job.latest_metrics || {};
  const rows = [
    item("state", badge(job.state)),
    ...(job.pending_reason ? [item("waiting", pendingNote(job))] : []),
    item("attempt", `${job.attempt} of ${job.max_attempts}`),
    item("epoch", `${job.current_epoch} of ${s.epochs}`),
    item("model", `${s.model}${s.binary ? " (binary)" : " (full precision)"}`),
    item("dataset", s.dataset.name),
    ...(s.recipe ? [item("recipe", s.recipe)] : []),
    item("tau", `${s.tau.kind} ${s.tau.tau_s} → ${s.tau.tau_e}`),
    item("optimiser", `${s.optimizer.name} lr ${s.optimizer.lr}`),
    item("batch size", s.batch_size),
    item("workers", s.resources ? `${s.resources.num_workers} × ${s.resources.use_gpu ? "GPU" : "CPU"}` : ""),
    item("best test acc", job.best_test_acc == null ? "" : `${fmt(job.best_test_acc)} (epoch ${job.best_epoch})`),
    item("last test acc", fmt(job.last_test_acc)),
    ...("best_val_acc" in latest ? [item("best val acc", fmt(latest.best_val_acc)), item("test acc at best val", fmt(latest.test_acc_at_best_val))] : []),
    item("created", when(job.created_at)),
    item("duration", duration(job.started_at, job.finished_at)),
  ];
  if (job.parent_id) rows.push(item("sweep", el("a", { href: `/ui/sweeps/${job.parent_id}` }, `#${job.parent_id}`)));
  document.getElementById("summary").replaceChildren(...rows.flat());
  document.getElementById("title").replaceChildren(`${job.kind === "trial" ? "Trial" : "Job"} #${job.id} `, badge(job.state));
  document.title = `recu · job ${job.id}`;
  document.getElementById("cancel").hidden = !(job.state === "queued" || job.state === "running");
  const error = document.getElementById("job-error");
  error.hidden = !job.error;
  error.textContent = job.error || "";
}

function series(rows, key) {
  return { name: key, points: rows.filter((r) => key in r.metrics).map((r) => [r.epoch, r.metrics[key]]) };
}

function curves(rows) {
  lineChart(document.getElementById("chart-loss"), { series: [series(rows, "train_loss"), series(rows, "test_loss")], yLabel: "cross-entropy" });
  lineChart(document.getElementById("chart-acc"), { series: [series(rows, "train_acc"), series(rows, "test_acc"), ...(rows.some((r) => "val_acc" in r.metrics) ? [series(rows, "val_acc")] : [])], yLabel: "accuracy" });
  lineChart(document.getElementById("chart-tau"), { series: [series(rows, "tau")], yLabel: "tau" });
  lineChart(document.getElementById("chart-lr"), { series: [series(rows, "lr")], yLabel: "lr" });
}

let telemetryRows = [];
function telemetryChart() {
  const field = document.getElementById("telemetry-field").value;
  const names = telemetryRows.length ? Object.keys(telemetryRows.at(-1).telemetry.layers) : [];
  lineChart(document.getElementById("chart-telemetry"), {
    series: names.map((name) => ({
      name,
      points: telemetryRows
        .filter((r) => r.telemetry.layers[name])
        .map((r) => [r.epoch, r.telemetry.layers[name][field]]),
    })),
    yLabel: field,
  });
}

// tau at (the recorded epoch nearest to) `epoch`, for the clamp marker +-Q/b = -ln(2 - 2 tau).
function tauAt(epoch) {
  let best = null;
  for (const r of state.metrics) {
    if ("tau" in r.metrics && (best === null || Math.abs(r.epoch - epoch) < Math.abs(best.epoch - epoch))) best = r;
  }
  return best ? best.metrics.tau : null;
}

function histChart() {
  const slider = document.getElementById("hist-slider");
  const row = state.hist[Number(slider.value)];
  const layer = document.getElementById("hist-layer").value;
  if (!row || !row.telemetry.layers[layer]) return;
  document.getElementById("hist-epoch").textContent = row.epoch;
  const t = row.telemetry;
  const markers = [];
  const tau = tauAt(row.epoch);
  if (state.job.spec.binary_options.clamp && tau !== null) {
    const bound = -Math.log(2 - 2 * tau);
    markers.push({ x: -bound, label: "−Q/b" }, { x: bound, label: "Q/b" });
  }
  histogram(document.getElementById("chart-hist"), {
    counts: t.layers[layer].hist,
    range: t.hist_range,
    markers,
    xLabel: `w1 / b (${t.layers[layer].beyond_clamp !== undefined ? `${fmt(100 * t.layers[layer].beyond_clamp, 2)}% beyond the clamp` : ""})`,
  });
}

async function loadHist(keepEpoch) {
  const layer = document.getElementById("hist-layer").value;
  if (!layer) return;
  const q = new URLSearchParams({ max_points: TELEMETRY_POINTS, layer });
  state.hist = await api(`/jobs/${jobId}/telemetry?${q}`);
  const slider = document.getElementById("hist-slider");
  const atEnd = Number(slider.value) >= Number(slider.max);
  slider.max = Math.max(state.hist.length - 1, 0);
  if (!keepEpoch || atEnd) slider.value = slider.max;
  histChart();
}

async function loadTelemetry() {
  telemetryRows = await api(`/jobs/${jobId}/telemetry?max_points=${TELEMETRY_POINTS}&hist=false`);
  const names = telemetryRows.length ? Object.keys(telemetryRows.at(-1).telemetry.layers) : [];
  const select = document.getElementById("hist-layer");
  if (names.join() !== state.layers.join()) {
    state.layers = names;
    const chosen = select.value;
    select.replaceChildren(...names.map((n) => el("option", { value: n }, n)));
    if (names.includes(chosen)) select.value = chosen;
  }
  telemetryChart();
  await loadHist(true);
}

function checkpoints(rows) {
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
          state.job.spec.binary
            ? el("a", { href: `/checkpoints/${c.id}/export`, download: `job-${jobId}-epoch-${c.epoch}.bnn` }, "packed .bnn")
            : null,
        ),
      ),
    ),
  );
}

function events(rows) {
  document.querySelector("#events tbody").replaceChildren(
    ...rows.map((e) =>
      el("tr", {}, el("td", {}, when(e.at)), el("td", {}, e.from_state ?? ""), el("td", {}, badge(e.to_state)), el("td", { class: "num" }, e.attempt), el("td", {}, e.reason)),
    ),
  );
}

async function logs() {
  for (;;) {
    const lines = await api(`/jobs/${jobId}/logs?offset=${state.logOffset}&limit=1000`);
    if (!lines.length) return;
    state.logOffset += lines.length;
    const pre = document.getElementById("logs");
    const follow = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
    pre.append(lines.map((l) => `${l.line}\n`).join(""));
    if (follow) pre.scrollTop = pre.scrollHeight;
    if (lines.length < 1000) return;
  }
}

async function refresh() {
  const job = await api(`/jobs/${jobId}`);
  clearError();
  state.job = job;
  summary(job);
  const changed = job.current_epoch !== state.seenEpoch || job.terminal;
  if (changed) {
    state.metrics = await api(`/jobs/${jobId}/metrics?max_points=${MAX_POINTS}`);
    curves(state.metrics);
    await loadTelemetry();
    checkpoints(await api(`/jobs/${jobId}/checkpoints`));
    state.seenEpoch = job.current_epoch;
  }
  events(await api(`/jobs/${jobId}/events`));
  await logs();
  document.body.dataset.loaded = job.state; // for tests and scripts: the page has drawn this state
  return !job.terminal;
}

if (await header()) {
  document.getElementById("telemetry-field").addEventListener("change", telemetryChart);
  document.getElementById("hist-layer").addEventListener("change", () => loadHist(false));
  document.getElementById("hist-slider").addEventListener("input", histChart);
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
  poll(refresh, 2000);
}
