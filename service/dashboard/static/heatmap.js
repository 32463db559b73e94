// A rows × columns heat map (layers × epochs) as SVG: one rect per cell coloured on the
// sequential scale of charts.js, row names on the left (a click on one calls `onRow`;
// `marked` rows get a swatch of their line's colour), epoch ticks below, a colour bar with
// the unit, and a read-out of the one cell under the pointer. Rows keep a fixed height,
// so 40 layers are as readable as 18: the map grows taller, not denser.
import { colour, ticks } from "/ui/static/charts.js";

const NS = "http://www.w3.org/2000/svg";
const W = 900;
const ROW = 14; // px per row
const CHAR = 6.1; // px per character of an 11 px row name
const M = { right: 10, top: 6, bottom: 34 };

function svg(tag, attrs = {}, text = null) {
  const node = document.createElementNS(NS, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  if (text !== null) node.textContent = text;
  return node;
}

function range(values) {
  const finite = values.filter(Number.isFinite);
  if (!finite.length) return [0, 1];
  const lo = Math.min(...finite);
  const hi = Math.max(...finite);
  return lo === hi ? [lo - 0.5, hi + 0.5] : [lo, hi];
}

// Column indices to label: the first column at or after each "nice" epoch (1, 2 or 5
// times a power of ten apart), at most one label per 40 px.
function epochTicks(columns, width) {
  if (!columns.length) return [];
  const nice = ticks(columns[0], columns.at(-1), Math.max(Math.floor(width / 40), 1), 1);
  const at = nice.map((e) => columns.findIndex((c) => c >= e)).filter((i) => i >= 0);
  return [...new Set(at)];
}

// rows: names; columns: epoch numbers; values[r][c]: number or null; unit: the colour
// bar's label (what the values are, with their unit); format(v): one value as text with
// its unit, for the read-out.
export function heatmap(host, { rows, columns, values, unit, format, onRow = null, marked = new Map() }) {
  const left = 16 + CHAR * Math.max(8, ...rows.map((r) => r.length));
  const H = M.top + rows.length * ROW + M.bottom;
  const cell = (W - left - M.right) / Math.max(columns.length, 1);
  const [lo, hi] = range(values.flat());
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart heatmap", role: "img", "data-rows": rows.length, "data-columns": columns.length });
  const cells = svg("g", { class: "cells" });
  rows.forEach((name, r) => {
    columns.forEach((epoch, c) => {
      const v = values[r][c];
      cells.append(
        svg("rect", {
          x: (left + c * cell).toFixed(2),
          y: M.top + r * ROW,
          width: (cell + 0.3).toFixed(2), // overlap a hair: no seams between cells
          height: ROW - 1,
          fill: Number.isFinite(v) ? colour((v - lo) / (hi - lo)) : "#eee",
          class: "cell",
          "data-layer": name,
          "data-epoch": epoch,
        }),
      );
    });
    const y = M.top + r * ROW + ROW / 2 + 4;
    const label = svg("text", { x: left - 6, y, "text-anchor": "end", class: `row-label${onRow ? " pickable" : ""}`, "data-layer": name }, name);
    if (onRow) label.addEventListener("click", () => onRow(name));
    root.append(label);
    if (marked.has(name)) root.append(svg("rect", { x: 2, y: y - 8, width: 10, height: 10, fill: marked.get(name), class: "swatch", "data-layer": name }));
  });
  root.append(cells);
  const bottom = M.top + rows.length * ROW;
  for (const i of epochTicks(columns, W - left - M.right)) {
    const x = left + (i + 0.5) * cell;
    root.append(svg("line", { x1: x, x2: x, y1: bottom, y2: bottom + 4, class: "tick" }));
    root.append(svg("text", { x, y: bottom + 15, "text-anchor": "middle" }, columns[i]));
  }
  root.append(svg("text", { x: (left + W - M.right) / 2, y: H - 4, "text-anchor": "middle", class: "axis-label" }, "epoch"));
  const focus = svg("rect", { width: cell, height: ROW - 1, class: "focus", visibility: "hidden" });
  root.append(focus);

  const readout = document.createElement("div");
  readout.className = "readout";
  readout.textContent = "Point at a cell to read it.";
  root.addEventListener("mousemove", (event) => {
    const box = root.getBoundingClientRect();
    const px = ((event.clientX - box.left) / box.width) * W;
    const py = ((event.clientY - box.top) / box.height) * H;
    const c = Math.floor((px - left) / cell);
    const r = Math.floor((py - M.top) / ROW);
    if (c < 0 || r < 0 || c >= columns.length || r >= rows.length) return;
    focus.setAttribute("x", left + c * cell);
    focus.setAttribute("y", M.top + r * ROW);
    focus.setAttribute("visibility", "visible");
    const v = values[r][c];
    readout.textContent = `${rows[r]}, epoch ${columns[c]}: ${Number.isFinite(v) ? format(v) : "not recorded"}`;
  });
  root.addEventListener("mouseleave", () => focus.setAttribute("visibility", "hidden"));

  const bar = document.createElement("div");
  bar.className = "colourbar";
  const ramp = document.createElement("span");
  ramp.className = "ramp";
  const low = document.createElement("span");
  const high = document.createElement("span");
  low.textContent = String(Number(lo.toPrecision(3)));
  high.textContent = String(Number(hi.toPrecision(3)));
  bar.append(`${unit}: `, low, ramp, high);
  host.replaceChildren(root, bar, readout);
  return root;
}
