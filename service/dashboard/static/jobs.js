// Jobs list: filter by state and kind, page through, refreshed every 2 s.
import { api, badge, clearError, duration, el, fmt, header, poll, when } from "/ui/static/api.js";

const PAGE = 25;
const params = new URLSearchParams(location.search);
const view = {
  state: params.get("state") || "",
  kind: params.get("kind") || "train",
  offset: Math.max(0, Number(params.get("offset")) || 0),
};
let total = 0;

function remember() {
  const q = new URLSearchParams();
  if (view.state) q.set("state", view.state);
  if (view.kind !== "train") q.set("kind", view.kind);
  if (view.offset) q.set("offset", view.offset);
  history.replaceState(null, "", `${location.pathname}${q.size ? `?${q}` : ""}`);
}

function row(job) {
  const spec = job.spec;
  const latest = job.latest_metrics || {};
  return el(
    "tr",
    { "data-job": job.id, "data-state": job.state },
    el("td", {}, el("a", { href: `/ui/jobs/${job.id}` }, `#${job.id}`)),
    el("td", {}, badge(job.state)),
    el("td", {}, `${spec.model}${spec.binary === false ? " (fp)" : ""}`),
    el("td", {}, spec.dataset?.name ?? ""),
    el("td", {}, spec.tau ? `${spec.tau.kind} ${spec.tau.tau_s}→${spec.tau.tau_e}` : ""),
    el("td", { class: "num" }, `${job.current_epoch}/${spec.epochs}`),
    el("td", { class: "num" }, fmt(latest.test_acc)),
    el("td", { class: "num" }, duration(job.started_at, job.finished_at)),
    el("td", {}, when(job.created_at)),
  );
}

async function refresh() {
  const q = new URLSearchParams({ kind: view.kind, offset: view.offset, limit: PAGE });
  if (view.state) q.set("state", view.state);
  const page = await api(`/jobs?${q}`);
  clearError();
  total = page.total;
  document.querySelector("#jobs tbody").replaceChildren(...page.items.map(row));
  document.getElementById("empty").hidden = page.items.length > 0;
  const last = Math.min(view.offset + page.items.length, total);
  document.getElementById("range").textContent = total ? `${view.offset + 1}–${last} of ${total}` : "";
  document.getElementById("prev").disabled = view.offset === 0;
  document.getElementById("next").disabled = view.offset + PAGE >= total;
  document.getElementById("live").dataset.at = new Date().toISOString();
}

function bind() {
  const state = document.getElementById("state");
  const kind = document.getElementById("kind");
  state.value = view.state;
  kind.value = view.kind;
  const changed = () => {
    view.state = state.value;
    view.kind = kind.value;
    view.offset = 0;
    remember();
    refresh();
  };
  state.addEventListener("change", changed);
  kind.addEventListener("change", changed);
  document.getElementById("prev").addEventListener("click", () => {
    view.offset = Math.max(0, view.offset - PAGE);
    remember();
    refresh();
  });
  document.getElementById("next").addEventListener("click", () => {
    if (view.offset + PAGE < total) view.offset += PAGE;
    remember();
    refresh();
  });
}

if (await header()) {
  bind();
  poll(refresh, 2000);
}
