// Jobs list: filter by state and kind, page through, refreshed every 2 s; a queued job
// says why it has not started. Ticked jobs (kept across refreshes and pages) open the
// compare view.
import { badge, duration, el, pct, pendingNote, when } from "/ui/static/api.js";
import { listing } from "/ui/static/listing.js";

const chosen = new Set();

function pick(id, box) {
  if (box.checked) chosen.add(id);
  else chosen.delete(id);
  const button = document.getElementById("compare");
  button.disabled = chosen.size < 2;
  button.textContent = chosen.size ? `Compare ${chosen.size}` : "Compare";
}

function row(job) {
  const spec = job.spec;
  const box = el("input", { type: "checkbox", class: "pick", "aria-label": `compare job ${job.id}`, checked: chosen.has(job.id) });
  box.addEventListener("change", () => pick(job.id, box));
  return el(
    "tr",
    { "data-job": job.id, "data-state": job.state },
    el("td", {}, box),
    el("td", {}, el("a", { href: `/ui/jobs/${job.id}` }, `#${job.id}`)),
    el("td", {}, badge(job.state), pendingNote(job)),
    el("td", {}, `${spec.model}${spec.binary === false ? " (fp)" : ""}`),
    el("td", {}, spec.dataset?.name ?? ""),
    el("td", {}, spec.tau ? `${spec.tau.kind} ${spec.tau.tau_s}→${spec.tau.tau_e}` : ""),
    el("td", { class: "num" }, `${job.current_epoch}/${spec.epochs}`),
    el("td", { class: "num", title: job.best_epoch ? `best at epoch ${job.best_epoch}` : "" }, pct(job.best_test_acc)),
    el("td", { class: "num" }, pct(job.last_test_acc)),
    el("td", { class: "num" }, duration(job.started_at, job.finished_at)),
    el("td", {}, when(job.created_at)),
  );
}

document.getElementById("compare").addEventListener("click", () => {
  location.assign(`/ui/compare?jobs=${[...chosen].sort((a, b) => a - b).join(",")}`);
});
await listing({ path: "/jobs", table: "#jobs", row, defaults: { state: "", kind: "train" } });
