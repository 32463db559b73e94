// A running job's ETA: the epochs left times the mean time of its last RECENT epochs
// (the trainer's `epoch_time_s`, else the gaps between the epochs' `recorded_at`).
import { span, when } from "/ui/static/api.js";

export const RECENT = 5;

function epochSeconds(rows) {
  const measured = rows.map((r) => r.metrics.epoch_time_s).filter(Number.isFinite);
  if (measured.length) return measured.slice(-RECENT);
  const gaps = [];
  for (let i = 1; i < rows.length; i += 1) {
    const epochs = rows[i].epoch - rows[i - 1].epoch;
    if (epochs > 0) gaps.push((new Date(rows[i].recorded_at) - new Date(rows[i - 1].recorded_at)) / 1000 / epochs);
  }
  return gaps.slice(-RECENT);
}

// {seconds, text} for `job` (its spec.epochs, current_epoch) and its metric rows; seconds
// is null while there is nothing to measure yet.
export function eta(job, rows, now = new Date()) {
  const left = Math.max(job.spec.epochs - job.current_epoch, 0);
  const times = epochSeconds(rows);
  if (!times.length) return { seconds: null, text: "estimating (after the first epoch)" };
  const mean = times.reduce((a, b) => a + b, 0) / times.length;
  const seconds = left * mean;
  const done = new Date(now.getTime() + seconds * 1000);
  return {
    seconds,
    text: `${span(seconds)} left, about ${when(done.toISOString())} (${left} epoch${left === 1 ? "" : "s"} × ${mean.toFixed(1)} s, the mean of the last ${times.length})`,
  };
}
