// Sentinel console: line charts as inline SVG, drawn here (no library, no inline styles: every
// colour comes from app.css through classes, which the page's CSP allows).

const NS = "http://www.w3.org/2000/svg";
const W = 760;
const H = 260;
const M = { left: 70, right: 16, top: 18, bottom: 38 };
let uid = 0;

function el(tag, attrs, text) {
  const n = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs || {}))
    n.setAttribute(k, String(v));
  if (text !== undefined)
    n.textContent = text;
  return n;
}

/** 541645617 -> "541.6M"; 0.0123 -> "0.0123". */
export function fmtNum(v) {
  if (typeof v !== "number" || !isFinite(v))
    return String(v);
  const a = Math.abs(v);
  const units = [[1e12, "T"], [1e9, "G"], [1e6, "M"], [1e3, "k"]];
  for (const [div, suffix] of units)
    if (a >= div)
      return trim((v / div).toFixed(a / div >= 100 ? 1 : 2)) + suffix;
  if (a === 0)
    return "0";
  if (a >= 1)
    return trim(v.toFixed(2));
  return String(Number(v.toPrecision(3)));
}

function trim(s) {
  return s.includes(".") ? s.replace(/\.?0+$/, "") : s;
}

/** Epoch ms -> "14:30" (UTC), or "14:30:30" when @p seconds. */
export function fmtClock(ms, seconds) {
  const iso = new Date(ms).toISOString();
  return iso.slice(11, seconds ? 19 : 16);
}

/** Evenly spaced "nice" ticks over [lo, hi]. */
function ticks(lo, hi, n) {
  const span = hi - lo;
  if (!(span > 0))
    return [lo];
  const raw = span / n;
  const mag = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 2, 2.5, 5, 10].map((f) => f * mag).find((s) => span / s <= n) || raw;
  const out = [];
  for (let t = Math.ceil(lo / step) * step; t <= hi + step * 1e-9; t += step)
    out.push(t);
  return out;
}

const TIME_STEPS = [60e3, 120e3, 300e3, 600e3, 900e3, 1800e3, 3600e3, 7200e3, 21600e3, 43200e3,
  86400e3];

function timeTicks(from, to, n) {
  const step = TIME_STEPS.find((s) => (to - from) / s <= n) || TIME_STEPS[TIME_STEPS.length - 1];
  const out = [];
  for (let t = Math.ceil(from / step) * step; t <= to; t += step)
    out.push(t);
  return out;
}

/**
 * Draws one series.
 * opts: points [[ts, value], ...] (may be empty), anomalies [{ts, value, expected, score,
 * confidence, detector}], from, to (epoch ms, the window), onset (epoch ms or null), label (text
 * for screen readers). Returns an <svg> element.
 */
export function drawChart(opts) {
  const id = "chart" + ++uid;
  const points = (opts.points || []).filter((p) => isFinite(p[0]) && isFinite(p[1]));
  const anomalies = (opts.anomalies || []).filter((a) => isFinite(a.ts) && isFinite(a.value));
  const from = opts.from;
  const to = opts.to > opts.from ? opts.to : opts.from + 60e3;

  const values = points.map((p) => p[1]).concat(anomalies.map((a) => a.value));
  for (const a of anomalies)
    if (typeof a.expected === "number" && isFinite(a.expected))
      values.push(a.expected);
  let lo = values.length ? Math.min(...values) : 0;
  let hi = values.length ? Math.max(...values) : 1;
  if (hi === lo) {
    const pad = Math.abs(hi) * 0.1 || 1;
    lo -= pad;
    hi += pad;
  } else {
    const pad = (hi - lo) * 0.08;
    lo -= pad;
    hi += pad;
  }
  const pw = W - M.left - M.right;
  const ph = H - M.top - M.bottom;
  const x = (t) => M.left + ((t - from) / (to - from)) * pw;
  const y = (v) => M.top + (1 - (v - lo) / (hi - lo)) * ph;

  const svg = el("svg", {
    class: "chart", viewBox: `0 0 ${W} ${H}`, role: "img", "aria-labelledby": id + "-t " + id + "-d",
    preserveAspectRatio: "xMidYMid meet",
  });
  svg.appendChild(el("title", { id: id + "-t" }, opts.label || "series"));
  svg.appendChild(el("desc", { id: id + "-d" },
    `${points.length} points from ${new Date(from).toISOString()} to ${new Date(to).toISOString()}` +
    `, ${anomalies.length} anomal${anomalies.length === 1 ? "y" : "ies"} marked`));

  // Axes and grid.
  const grid = el("g", { class: "grid" });
  for (const v of ticks(lo, hi, 4)) {
    grid.appendChild(el("line", { x1: M.left, x2: W - M.right, y1: y(v), y2: y(v) }));
    grid.appendChild(el("text", { class: "tick y", x: M.left - 6, y: y(v) + 4 }, fmtNum(v)));
  }
  for (const t of timeTicks(from, to, 7)) {
    grid.appendChild(el("line", { x1: x(t), x2: x(t), y1: M.top, y2: H - M.bottom }));
    grid.appendChild(el("text", { class: "tick x", x: x(t), y: H - M.bottom + 16 }, fmtClock(t)));
  }
  grid.appendChild(el("text", { class: "tick unit", x: W - M.right, y: H - 4 }, "UTC"));
  svg.appendChild(grid);
  svg.appendChild(el("rect", { class: "frame", x: M.left, y: M.top, width: pw, height: ph }));

  // Onset.
  if (typeof opts.onset === "number" && opts.onset >= from && opts.onset <= to) {
    svg.appendChild(el("line", { class: "onset-line", x1: x(opts.onset), x2: x(opts.onset),
      y1: M.top, y2: H - M.bottom }));
    svg.appendChild(el("text", { class: "onset-label", x: x(opts.onset) + 4, y: M.top + 12 },
      "onset"));
  }

  // The series itself, broken where the data has a gap (more than 5 typical intervals).
  if (points.length) {
    const steps = [];
    for (let i = 1; i < points.length; i++)
      steps.push(points[i][0] - points[i - 1][0]);
    steps.sort((a, b) => a - b);
    const typical = steps.length ? steps[Math.floor(steps.length / 2)] : 0;
    let d = "";
    for (let i = 0; i < points.length; i++) {
      const gap = i > 0 && typical > 0 && points[i][0] - points[i - 1][0] > 5 * typical;
      d += (i === 0 || gap ? "M" : "L") + x(points[i][0]).toFixed(1) + " " +
        y(points[i][1]).toFixed(1);
    }
    svg.appendChild(el("path", { class: "series-line", d }));
    if (points.length === 1)
      svg.appendChild(el("circle", { class: "series-dot", cx: x(points[0][0]),
        cy: y(points[0][1]), r: 2 }));
  }

  // Expected values: a dashed line through them, and a link from each to its anomaly.
  const withExp = anomalies.filter((a) => typeof a.expected === "number" && isFinite(a.expected))
    .sort((a, b) => a.ts - b.ts);
  if (withExp.length > 1) {
    const d = withExp.map((a, i) => (i ? "L" : "M") + x(a.ts).toFixed(1) + " " +
      y(a.expected).toFixed(1)).join("");
    svg.appendChild(el("path", { class: "expected-line", d }));
  }
  for (const a of withExp) {
    svg.appendChild(el("line", { class: "expected-link", x1: x(a.ts), x2: x(a.ts),
      y1: y(a.expected), y2: y(a.value) }));
    const s = 4;
    const cx = x(a.ts);
    const cy = y(a.expected);
    const mark = el("path", { class: "expected-point",
      d: `M${cx - s} ${cy}L${cx} ${cy - s}L${cx + s} ${cy}L${cx} ${cy + s}Z` });
    mark.appendChild(el("title", {}, `expected ${fmtNum(a.expected)} at ${fmtClock(a.ts, true)}`));
    svg.appendChild(mark);
  }

  // Anomalies on top.
  for (const a of anomalies) {
    const c = el("circle", { class: "anomaly-point", cx: x(a.ts), cy: y(a.value), r: 5 });
    let t = `anomaly at ${new Date(a.ts).toISOString()}: ${fmtNum(a.value)}`;
    if (typeof a.expected === "number")
      t += ` (expected ${fmtNum(a.expected)})`;
    if (typeof a.score === "number")
      t += `, score ${a.score.toFixed(2)}`;
    if (a.detector)
      t += `, detector ${a.detector}`;
    c.appendChild(el("title", {}, t));
    svg.appendChild(c);
  }
  return svg;
}
