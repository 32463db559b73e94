// A paged, filtered list that refreshes every 2 s (the jobs and sweeps pages). Each
// filter is a <select> whose id is the query parameter it sets; the filters and the
// offset live in the page's query string, so a reload or a shared link shows the same.
import { api, clearError, header, poll } from "/ui/static/api.js";

const PAGE = 25;

export async function listing({ path, table, row, defaults }) {
  const params = new URLSearchParams(location.search);
  const view = { offset: Math.max(0, Number(params.get("offset")) || 0) };
  for (const [key, value] of Object.entries(defaults)) view[key] = params.get(key) || value;
  let total = 0;

  const refresh = async () => {
    const q = new URLSearchParams({ offset: view.offset, limit: PAGE });
    for (const key of Object.keys(defaults)) if (view[key]) q.set(key, view[key]);
    const page = await api(`${path}?${q}`);
    clearError();
    total = page.total;
    document.querySelector(`${table} tbody`).replaceChildren(...page.items.map(row));
    document.getElementById("empty").hidden = page.items.length > 0;
    const last = Math.min(view.offset + page.items.length, total);
    document.getElementById("range").textContent = total ? `${view.offset + 1}–${last} of ${total}` : "";
    document.getElementById("prev").disabled = view.offset === 0;
    document.getElementById("next").disabled = view.offset + PAGE >= total;
  };

  const go = (offset) => {
    view.offset = offset;
    const q = new URLSearchParams();
    for (const [key, value] of Object.entries(defaults)) if (view[key] !== value) q.set(key, view[key]);
    if (view.offset) q.set("offset", view.offset);
    history.replaceState(null, "", `${location.pathname}${q.size ? `?${q}` : ""}`);
    refresh();
  };

  if (!(await header())) return;
  for (const key of Object.keys(defaults)) {
    const select = document.getElementById(key);
    select.value = view[key];
    select.addEventListener("change", () => {
      view[key] = select.value;
      go(0);
    });
  }
  document.getElementById("prev").addEventListener("click", () => go(Math.max(0, view.offset - PAGE)));
  document.getElementById("next").addEventListener("click", () => {
    if (view.offset + PAGE < total) go(view.offset + PAGE);
  });
  poll(refresh, 2000);
}
