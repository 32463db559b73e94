// What each plotted number is: the axis label with its unit, and the factor from the
// stored value to the shown one (fractions are shown as %). One table for every chart.

export const CURVES = {
  loss: { axis: "cross-entropy loss (nats)", scale: 1 },
  acc: { axis: "accuracy (%)", scale: 100, format: (v) => `${v.toFixed(1)}%` }, // as api.js pct
  tau: { axis: "τ (ReCU clamp quantile, no unit)", scale: 1 },
  lr: { axis: "learning rate (per step)", scale: 1 },
};

// Per-layer weight telemetry (recu_core/telemetry.py): `axis` for a chart's axis,
// `meaning` for the caption and the hover read-out.
export const TELEMETRY = {
  beyond_clamp: { axis: "beyond the clamp (%)", unit: "% of weights", scale: 100, meaning: "dead weights: |w1| > Q, pulled back by the clamp" },
  flip_rate: { axis: "sign flips (%)", unit: "% of weights", scale: 100, meaning: "weights whose sign changed since the previous epoch" },
  quant_error: { axis: "quantisation error (%)", unit: "% of ‖w2‖²", scale: 100, meaning: "‖w2 − s·sign(w2)‖² / ‖w2‖², s = mean|w2|" },
  entropy_bits: { axis: "entropy (bits)", unit: "bits", scale: 1, meaning: "Shannon entropy of the w1/b histogram (48 bins: at most 5.58 bits)" },
  q: { axis: "clamp bound Q (weight units)", unit: "weight units", scale: 1, meaning: "Q = −b·ln(2 − 2τ), b = mean|w1| of the standardised weights" },
};

// [epoch, value × scale] points of one metric, skipping epochs without it.
export function points(rows, key, scale = 1) {
  return rows.filter((r) => Number.isFinite(r.metrics[key])).map((r) => [r.epoch, scale * r.metrics[key]]);
}
