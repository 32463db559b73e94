// The job page's configuration panel (its resolved spec, grouped, every field shown) and
// its reproducibility record (GET /jobs/{id}/manifest: code, packages, host, device, data).
import { ApiError, api, bytes, el, when } from "/ui/static/api.js";

// [group, [[dotted path, label, what null means], ...]] (null means "default" unless
// said); any spec field not named here is listed under "Other", so none is ever hidden.
export const GROUPS = [
  ["Run", [["model", "model"], ["binary", "binary (ReCU layers)"], ["recipe", "recipe", "none"], ["epochs", "epochs"], ["batch_size", "batch size"], ["seed", "seed"], ["precision", "precision"], ["device", "device"], ["kernels", "kernels"], ["compile", "torch.compile"], ["channels_last", "channels_last"]]],
  ["ReCU", [["tau.kind", "τ schedule"], ["tau.tau_s", "τ start (tau_s)"], ["tau.tau_e", "τ end (tau_e)"], ["binary_options.clamp", "clamp to ±Q(τ)"], ["binary_options.standardize", "weight standardisation"], ["binary_options.activation_ste", "activation STE"], ["binary_options.alpha", "alpha (channel scale)"], ["binary_options.scale_activations", "activation standardisation"], ["binary_options.weights", "weights (stage)"], ["binary_options.weight_binarizer", "weight binarizer"], ["binary_options.biper_frequency", "BiPer frequency"], ["binary_options.biper_regularizer", "BiPer regulariser"], ["binary_options.activation_threshold", "sign threshold"], ["binary_options.activation", "block activation"], ["binary_options.reste_o_start", "ReSTE o start"], ["binary_options.reste_o_end", "ReSTE o end"], ["binary_options.ede_t_start", "EDE t start"], ["binary_options.ede_t_end", "EDE t end"]]],
  ["Optimiser", [["optimizer.name", "optimiser"], ["optimizer.lr", "learning rate"], ["optimizer.momentum", "momentum"], ["optimizer.weight_decay", "weight decay"], ["optimizer.warmup_epochs", "warm-up epochs", "default: min(5, epochs / 10)"], ["optimizer.lr_schedule", "lr schedule"], ["optimizer.label_smoothing", "label smoothing"]]],
  ["Data", [["dataset.name", "dataset"], ["dataset.root", "root", "the dataset's default"], ["dataset.num_train", "train images (at most)"], ["dataset.num_test", "test images (at most)"], ["dataset.val_fraction", "validation fraction"], ["dataset.split_seed", "split seed"], ["dataset.image_size", "image size"], ["dataset.crop_padding", "crop padding"], ["dataset.flip", "random flip"], ["dataset.loader", "loader"], ["dataset.crop_scale", "crop scale"], ["dataset.workers", "decoding workers"]]],
  ["Resources", [["resources.num_workers", "workers (DDP)"], ["resources.use_gpu", "GPU"], ["resources.gpus_per_worker", "GPUs per worker"], ["resources.cpus_per_worker", "CPUs per worker"]]],
  ["Checkpoints", [["checkpoint.every_epochs", "every N epochs"], ["checkpoint.keep", "keep newest"], ["checkpoint.export", "export .bnn"]]],
  ["Chain", [["after", "waits for jobs", "none"], ["init_from", "starts from", "fresh weights"], ["init_from.job_id", "starts from job"], ["init_from.checkpoint", "its checkpoint"], ["distill", "distils from", "no teacher"], ["distill.teacher_job_id", "teacher job"], ["distill.checkpoint", "teacher's checkpoint"], ["distill.temperature", "temperature"], ["distill.weight", "soft-loss weight"]]],
];

// Leaf values of a nested object as {dotted path: value}.
export function flatten(node, prefix = "", out = {}) {
  for (const [key, value] of Object.entries(node ?? {})) {
    const path = prefix ? `${prefix}.${key}` : key;
    if (value && typeof value === "object" && !Array.isArray(value)) flatten(value, path, out);
    else out[path] = value;
  }
  return out;
}

export function valueText(value, nullText = "default") {
  if (value === null || value === undefined) return nullText;
  if (value === true) return "on";
  if (value === false) return "off";
  if (Array.isArray(value)) return value.length ? value.join(" – ") : nullText;
  return String(value);
}

// rows: [[path, label, value, what null means], ...]
function group(title, rows) {
  return el(
    "div",
    { class: "group" },
    el("h3", {}, title),
    el("dl", {}, ...rows.flatMap(([path, label, value, nullText]) => [el("dt", {}, label), el("dd", { "data-field": path, class: value === null ? "muted" : null }, valueText(value, nullText))])),
  );
}

export function configPanel(spec) {
  const values = flatten(spec);
  const named = new Set(GROUPS.flatMap(([, fields]) => fields.map(([path]) => path)));
  const groups = GROUPS.map(([title, fields]) => [title, fields.filter(([path]) => path in values).map(([path, label, nullText]) => [path, label, values[path], nullText])]);
  const other = Object.keys(values).filter((p) => !named.has(p)).map((p) => [p, p, values[p]]);
  if (other.length) groups.push(["Other", other]);
  document.getElementById("config").replaceChildren(...groups.filter(([, rows]) => rows.length).map(([t, rows]) => group(t, rows)));
}

function manifestGroups(m) {
  const d = m.device;
  const data = m.dataset;
  const git = m.git_commit ? `${m.git_commit.slice(0, 12)}${m.git_dirty ? " (uncommitted changes)" : m.git_dirty === false ? " (clean)" : ""}` : "not a git checkout";
  return [
    ["Recorded", [["attempt", "attempt", m.attempt], ["recorded_at", "at", when(m.recorded_at)], ["seed", "seed", m.seed], ["world_size", "world size", m.world_size]]],
    ["Code", [["recu_version", "recu", m.recu_version], ["git_commit", "git commit", git], ["python", "python", m.python], ["torch", "torch", m.packages?.torch ?? ""]]],
    ["Machine", [["hostname", "host", m.hostname], ["device", "device", `${d.count} × ${d.type}${d.names?.length ? `: ${d.names.join(", ")}` : ""}`], ["cuda", "CUDA / cuDNN", d.cuda ? `${d.cuda} / ${d.cudnn ?? "?"}` : "none"]]],
    ["Data", [["dataset", "dataset", data.name], ["examples", "train / validation / test", `${data.train_examples} / ${data.val_examples ?? 0} / ${data.test_examples}`], ["files", "source files", data.files === null ? "none (generated data)" : `${data.files} (${bytes(data.bytes ?? 0)})`], ["listing_sha256", "listing sha256", data.listing_sha256 ?? "none"], ["content_sha256", "content sha256", data.content_sha256 ?? "not computed (streamed)"]]],
  ];
}

// The manifest of the job's latest attempt (null until recorded); an empty state, with no
// request, before the job starts.
export async function manifestPanel(job) {
  const box = document.getElementById("manifest");
  const empty = (text) => box.replaceChildren(el("p", { class: "empty-state", id: "manifest-empty" }, text));
  if (!job.started_at) return empty("Not recorded yet: the job has not started.");
  let m;
  try {
    m = await api(`/jobs/${job.id}/manifest`);
  } catch (err) {
    if (!(err instanceof ApiError) || err.status !== 409) throw err; // 409: not recorded yet
    return empty(job.terminal ? "No manifest was recorded: the job ended before its worker recorded one." : "Not recorded yet: the worker records it as the attempt starts.");
  }
  const packages = Object.entries(m.packages ?? {}).sort(([a], [b]) => a.localeCompare(b));
  box.replaceChildren(
    ...manifestGroups(m).map(([title, rows]) => group(title, rows)),
    el("details", {}, el("summary", {}, `${packages.length} packages`), el("table", { class: "list compact" }, el("tbody", {}, ...packages.map(([n, v]) => el("tr", {}, el("td", {}, n), el("td", {}, v)))))),
    el("details", {}, el("summary", {}, "the resolved recipe (JSON)"), el("pre", { class: "json" }, JSON.stringify(m.recipe, null, 2))),
  );
  return m;
}
