// Jobs list: filter by state and kind, page through, refreshed every 2 s; a queued job
// says why it has not started.
import { badge, duration, el, fmt, pendingNote, when } from "/ui/static/api.js";
import { listing } from "/ui/static/listing.js";

function row(job) {
  const spec = job.spec;
  return el(
    "tr",
    { "data-job": job.id, "data-state": job.state },
    el("td", {}, el("a", { href: `/ui/jobs/${job.id}` }, `#${job.id}`)),
    el("td", {}, badge(job.state), pendingNote(job)),
    el("td", {}, `${spec.model}${spec.binary === false ? " (fp)" : ""}`),
    el("td", {}, spec.dataset?.name ?? ""),
    el("td", {}, spec.tau ? `${spec.tau.kind} ${spec.tau.tau_s}→${spec.tau.tau_e}` : ""),
    el("td", { class: "num" }, `${job.current_epoch}/${spec.epochs}`),
    el("td", { class: "num", title: job.best_epoch ? `best at epoch ${job.best_epoch}` : "" }, fmt(job.best_test_acc)),
    el("td", { class: "num" }, fmt(job.last_test_acc)),
    el("td", { class: "num" }, duration(job.started_at, job.finished_at)),
    el("td", {}, when(job.created_at)),
  );
}

await listing({ path: "/jobs", table: "#jobs", row, defaults: { state: "", kind: "train" } });
