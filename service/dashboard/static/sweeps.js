// Sweeps list: filter by state, page through, refreshed every 2 s.
import { api, badge, clearError, el, fmt, header, poll, when } from "/ui/static/api.js";

const PAGE = 25;
const view = { state: new URLSearchParams(location.search).get("state") || "", offset: 0 };
let total = 0;

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
    el("td", {}, badge(sweep.state)),
    el("td", {}, base.model),
    el("td", {}, base.dataset?.name ?? ""),
    el("td", {}, counts(sweep.trial_counts)),
    el("td", {}, `${sweep.spec.metric} (${sweep.spec.mode})`),
    el("td", { class: "num" }, sweep.best ? fmt(sweep.best.value) : ""),
    el("td", {}, when(sweep.created_at)),
  );
}

async function refresh() {
  const q = new URLSearchParams({ offset: view.offset, limit: PAGE });
  if (view.state) q.set("state", view.state);
  const page = await api(`/sweeps?${q}`);
  clearError();
  total = page.total;
  document.querySelector("#sweeps tbody").replaceChildren(...page.items.map(row));
  document.getElementById("empty").hidden = page.items.length > 0;
  const last = Math.min(view.offset + page.items.length, total);
  document.getElementById("range").textContent = total ? `${view.offset + 1}–${last} of ${total}` : "";
  document.getElementById("prev").disabled = view.offset === 0;
  document.getElementById("next").disabled = view.offset + PAGE >= total;
}

if (await header()) {
  const state = document.getElementById("state");
  state.value = view.state;
  state.addEventListener("change", () => {
    view.state = state.value;
    view.offset = 0;
    history.replaceState(null, "", view.state ? `?state=${view.state}` : location.pathname);
    refresh();
  });
  document.getElementById("prev").addEventListener("click", () => {
    view.offset = Math.max(0, view.offset - PAGE);
    refresh();
  });
  document.getElementById("next").addEventListener("click", () => {
    if (view.offset + PAGE < total) view.offset += PAGE;
    refresh();
  });
  poll(refresh, 2000);
}
