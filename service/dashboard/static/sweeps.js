// Sweeps list: filter by state, page through, refreshed every 2 s; a queued sweep says
// why it has not started.
import { badge, el, metricText, pendingNote, when } from "/ui/static/api.js";
import { listing } from "/ui/static/listing.js";

function counts(c) {
  return Object.entries(c)
    .map(([state, n]) => `${n} ${state}`)
    .join(", ");
}

function row(sweep) {
  const base = sweep.spec.base;
  return el(
    "tr",
    { "data-sweep": sweep.id, "data-state": sweep.state },
    el("td", {}, el("a", { href: `/ui/sweeps/${sweep.id}` }, `#${sweep.id}`)),
    el("td", {}, badge(sweep.state), pendingNote(sweep)),
    el("td", {}, base.model),
    el("td", {}, base.dataset?.name ?? ""),
    el("td", {}, counts(sweep.trial_counts)),
    el("td", {}, `${sweep.spec.metric} (${sweep.spec.mode})`),
    el("td", { class: "num" }, sweep.best ? metricText(sweep.spec.metric, sweep.best.value) : ""),
    el("td", {}, when(sweep.created_at)),
  );
}

await listing({ path: "/sweeps", table: "#sweeps", row, defaults: { state: "" } });
