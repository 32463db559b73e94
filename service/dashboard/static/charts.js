// Small SVG charts (line, histogram, scatter) drawn with the DOM: no library, no inline
// styles (the page's Content-Security-Policy forbids them), colours from app.css classes
// or SVG presentation attributes.

const NS = "http://www.w3.org/2000/svg";
const W = 640;
const H = 280;
const M = { left: 58, right: 14, top: 12, bottom: 38 };

export const PALETTE = [
  "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
  "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
];

function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS(NS, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  for (const child of children) node.append(child);
  return node;
}

// "Nice" tick values covering [lo, hi]: steps of 1, 2 or 5 times a power of ten.
// With `minStep`, never finer than it (1 for epochs).
export function ticks(lo, hi, count = 5, minStep = 0) {
  if (!(hi > lo)) return [lo];
  const raw = Math.max((hi - lo) / count, minStep);
  const power = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * power).find((s) => s >= raw);
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) {
    out.push(Number(v.toPrecision(12)));
  }
  return out;
}

function extent(values, pad = 0) {
  const finite = values.filter(Number.isFinite);
  if (!finite.length) return [0, 1];
  let lo = Math.min(...finite);
  let hi = Math.max(...finite);
  if (lo === hi) {
    const d = Math.abs(lo) * 0.05 || 0.5;
    lo -= d;
    hi += d;
  }
  const d = (hi - lo) * pad;
  return [lo - d, hi + d];
}

function label(v) {
  const a = Math.abs(v);
  if (a !== 0 && (a < 1e-3 || a >= 1e5)) return v.toExponential(1);
  return String(Number(v.toPrecision(4)));
}

function frame(xr, yr, xLabel, yLabel, xStep = 0) {
  const sx = (x) => M.left + ((x - xr[0]) / (xr[1] - xr[0])) * (W - M.left - M.right);
  const sy = (y) => H - M.bottom - ((y - yr[0]) / (yr[1] - yr[0])) * (H - M.top - M.bottom);
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart", role: "img" });
  const axes = svg("g", { class: "axes" });
  for (const t of ticks(yr[0], yr[1])) {
    axes.append(svg("line", { x1: M.left, x2: W - M.right, y1: sy(t), y2: sy(t), class: "grid" }));
    const text = svg("text", { x: M.left - 6, y: sy(t) + 4, "text-anchor": "end" });
    text.textContent = label(t);
    axes.append(text);
  }
  for (const t of ticks(xr[0], xr[1], 8, xStep)) {
    axes.append(svg("line", { x1: sx(t), x2: sx(t), y1: H - M.bottom, y2: H - M.bottom + 4, class: "tick" }));
    const text = svg("text", { x: sx(t), y: H - M.bottom + 16, "text-anchor": "middle" });
    text.textContent = label(t);
    axes.append(text);
  }
  axes.append(svg("rect", { x: M.left, y: M.top, width: W - M.left - M.right, height: H - M.top - M.bottom, class: "plot" }));
  const xl = svg("text", { x: (M.left + W - M.right) / 2, y: H - 4, "text-anchor": "middle", class: "axis-label" });
  xl.textContent = xLabel;
  const yl = svg("text", { x: 12, y: (M.top + H - M.bottom) / 2, "text-anchor": "middle", class: "axis-label", transform: `rotate(-90 12 ${(M.top + H - M.bottom) / 2})` });
  yl.textContent = yLabel;
  axes.append(xl, yl);
  root.append(axes);
  return { root, sx, sy };
}

// A series' colour: its own `colour`, else the palette's by position.
function seriesColour(s, i) {
  return s.colour || PALETTE[i % PALETTE.length];
}

function legend(series) {
  const box = document.createElement("div");
  box.className = "legend";
  series.forEach((s, i) => {
    const item = document.createElement("span");
    const swatch = document.createElement("i");
    swatch.style.background = seriesColour(s, i);
    item.append(swatch, s.name);
    box.append(item);
  });
  return box;
}

// One polyline per series (points [[x, y], ...], non-finite y skipped; an optional
// `colour`), a legend, and a hover read-out of every series at the nearest x (each value
// as `format` writes it).
export function lineChart(host, { series, xLabel = "epoch", yLabel = "", xStep = 1, format = label }) {
  const xs = series.flatMap((s) => s.points.map((p) => p[0]));
  const ys = series.flatMap((s) => s.points.map((p) => p[1]));
  const { root, sx, sy } = frame(extent(xs), extent(ys, 0.05), xLabel, yLabel, xStep);
  series.forEach((s, i) => {
    const pts = s.points.filter((p) => Number.isFinite(p[1]));
    const colour = seriesColour(s, i);
    root.append(
      svg("polyline", {
        points: pts.map((p) => `${sx(p[0]).toFixed(1)},${sy(p[1]).toFixed(1)}`).join(" "),
        stroke: colour,
        fill: "none",
        "stroke-width": 1.8,
        "data-series": s.name,
        "data-count": pts.length,
      }),
    );
    if (pts.length === 1) {
      root.append(svg("circle", { cx: sx(pts[0][0]), cy: sy(pts[0][1]), r: 3, fill: colour }));
    }
  });
  const rule = svg("line", { y1: M.top, y2: H - M.bottom, class: "rule", visibility: "hidden" });
  root.append(rule);
  const readout = document.createElement("div");
  readout.className = "readout";
  readout.hidden = true;
  const allX = [...new Set(xs)].sort((a, b) => a - b);
  root.addEventListener("mousemove", (event) => {
    if (!allX.length) return;
    const box = root.getBoundingClientRect();
    const px = ((event.clientX - box.left) / box.width) * W;
    const x = allX.reduce((best, v) => (Math.abs(sx(v) - px) < Math.abs(sx(best) - px) ? v : best));
    rule.setAttribute("x1", sx(x));
    rule.setAttribute("x2", sx(x));
    rule.setAttribute("visibility", "visible");
    const values = series
      .map((s) => [s.name, s.points.find((p) => p[0] === x)])
      .filter(([, p]) => p)
      .map(([name, p]) => `${name} ${format(p[1])}`);
    readout.textContent = `${xLabel} ${label(x)}: ${values.join(", ")}`;
    readout.hidden = false;
  });
  root.addEventListener("mouseleave", () => {
    rule.setAttribute("visibility", "hidden");
    readout.hidden = true;
  });
  host.replaceChildren(root, legend(series), readout);
  return root;
}

// Bars of `counts` over equal bins of [lo, hi], with dashed vertical markers.
export function histogram(host, { counts, range, markers = [], xLabel = "", yLabel = "fraction" }) {
  const total = counts.reduce((a, b) => a + b, 0) || 1;
  const fractions = counts.map((c) => c / total);
  const [lo, hi] = range;
  const { root, sx, sy } = frame([lo, hi], [0, Math.max(...fractions, 1e-6) * 1.08], xLabel, yLabel);
  const width = (hi - lo) / counts.length;
  fractions.forEach((f, i) => {
    const x0 = sx(lo + i * width);
    root.append(
      svg("rect", {
        x: x0 + 0.5,
        y: sy(f),
        width: Math.max(sx(lo + (i + 1) * width) - x0 - 1, 0.5),
        height: sy(0) - sy(f),
        class: "bar",
        "data-bin": i,
      }),
    );
  });
  for (const m of markers) {
    if (!(m.x > lo && m.x < hi)) continue;
    root.append(svg("line", { x1: sx(m.x), x2: sx(m.x), y1: M.top, y2: H - M.bottom, class: "marker" }));
    const text = svg("text", { x: sx(m.x) + 3, y: M.top + 12, class: "marker-label" });
    text.textContent = m.label;
    root.append(text);
  }
  host.replaceChildren(root);
  return root;
}

// Sequential colour scale (dark blue -> green -> yellow) for t in [0, 1].
export function colour(t) {
  const stops = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];
  const u = Math.min(Math.max(t, 0), 1) * (stops.length - 1);
  const i = Math.min(Math.floor(u), stops.length - 2);
  const f = u - i;
  const rgb = stops[i].map((a, k) => Math.round(a + (stops[i + 1][k] - a) * f));
  return `rgb(${rgb.join(",")})`;
}

// Points {x, y, value, title, best, href}: coloured by value (no value: grey), the best
// one ringed; a colour bar from min to max.
export function scatter(host, { points, xLabel, yLabel, valueLabel }) {
  const { root, sx, sy } = frame(
    extent(points.map((p) => p.x), 0.08),
    extent(points.map((p) => p.y), 0.08),
    xLabel,
    yLabel,
  );
  const [vlo, vhi] = extent(points.map((p) => p.value));
  for (const p of points) {
    const scored = Number.isFinite(p.value);
    const dot = svg("circle", {
      cx: sx(p.x),
      cy: sy(p.y),
      r: p.best ? 8 : 6,
      fill: scored ? colour((p.value - vlo) / (vhi - vlo)) : "#bbb",
      class: p.best ? "point best" : "point",
      "data-value": scored ? p.value : "",
    });
    const tip = svg("title");
    tip.textContent = p.title;
    dot.append(tip);
    root.append(p.href ? wrapLink(dot, p.href) : dot);
    if (p.best) {
      const star = svg("text", { x: sx(p.x) + 10, y: sy(p.y) - 8, class: "best-label" });
      star.textContent = "best";
      root.append(star);
    }
  }
  const bar = document.createElement("div");
  bar.className = "colourbar";
  const ramp = document.createElement("span");
  ramp.className = "ramp";
  const lo = document.createElement("span");
  const hi = document.createElement("span");
  lo.textContent = label(vlo);
  hi.textContent = label(vhi);
  bar.append(`${valueLabel}: `, lo, ramp, hi);
  host.replaceChildren(root, bar);
  return root;
}

function wrapLink(node, href) {
  const a = svg("a", { href });
  a.append(node);
  return a;
}
