// Hand-written SVG charts: a time-series line chart (overview) and a bar
// chart (a queue's latency histogram). No library.

import { h, fmtNum } from './api.js';

const W = 640;
const H = 200;
const PAD = { left: 56, right: 12, top: 12, bottom: 26 };

export const COLORS = ['#e8710a', '#1a73e8', '#188038', '#9334e6', '#d93025', '#00838f', '#795548', '#5f6368'];

/** The smallest "nice" number (1, 2 or 5 × 10^n) at least `v`. */
export function niceStep(v) {
  if (!(v > 0)) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 5]) {
    if (m * p >= v * (1 - 1e-9)) return m * p;
  }
  return 10 * p;
}

/** The top of an axis of four nice steps that holds `max`; whole steps for counts. */
export function axisTop(max, whole) {
  const step = niceStep(max / 4);
  return 4 * (whole ? Math.max(1, Math.ceil(step)) : step);
}

function clock(t) {
  const d = new Date(t);
  return [d.getHours(), d.getMinutes(), d.getSeconds()].map((x) => String(x).padStart(2, '0')).join(':');
}

/**
 * A line chart.
 * - series: [{key, label}] (colors in order),
 * - points: [{t: ms, v: {key: number}}], oldest first,
 * - fmt: formats a value for the axis and the legend,
 * - window: how many ms of the latest points to show,
 * - whole: values are counts (whole-number axis steps).
 */
export function lineChart(attrs, { series, points, fmt = fmtNum, window: span = 60 * 1000, whole = false }) {
  const now = points.length ? points[points.length - 1].t : Date.now();
  const t0 = now - span;
  const shown = points.filter((p) => p.t >= t0);
  let max = 0;
  for (const p of shown) for (const s of series) max = Math.max(max, p.v[s.key] || 0);
  const ymax = axisTop(max, whole);
  const x = (t) => PAD.left + ((t - t0) / span) * (W - PAD.left - PAD.right);
  const y = (v) => H - PAD.bottom - (v / ymax) * (H - PAD.top - PAD.bottom);

  const svg = h('svg:svg', { viewBox: `0 0 ${W} ${H}`, class: 'chart', role: 'img', preserveAspectRatio: 'none' });
  // Grid and y labels: 0, ¼, ½, ¾, max.
  for (let i = 0; i <= 4; i++) {
    const v = (ymax * i) / 4;
    svg.append(h('svg:line', { x1: PAD.left, x2: W - PAD.right, y1: y(v), y2: y(v), class: 'grid' }));
    svg.append(h('svg:text', { x: PAD.left - 6, y: y(v) + 4, class: 'axis', 'text-anchor': 'end' }, fmt(v)));
  }
  // x labels: start, middle, end of the window.
  for (const t of [t0, t0 + span / 2, now]) {
    svg.append(h('svg:text', { x: x(t), y: H - 8, class: 'axis', 'text-anchor': t === t0 ? 'start' : t === now ? 'end' : 'middle' }, clock(t)));
  }
  series.forEach((s, i) => {
    const pts = shown.filter((p) => typeof p.v[s.key] === 'number');
    if (!pts.length) return;
    const color = s.color || COLORS[i % COLORS.length];
    if (pts.length === 1) {
      svg.append(h('svg:circle', { cx: x(pts[0].t), cy: y(pts[0].v[s.key]), r: 3, fill: color }));
      return;
    }
    svg.append(h('svg:polyline', {
      points: pts.map((p) => `${x(p.t).toFixed(1)},${y(p.v[s.key]).toFixed(1)}`).join(' '),
      fill: 'none', stroke: color, 'stroke-width': 2, 'data-series': s.key,
    }));
  });

  const last = shown.length ? shown[shown.length - 1].v : {};
  const legend = h('ul', { class: 'legend' }, series.map((s, i) => h('li', { 'data-series': s.key },
    h('span', { class: 'swatch', style: { background: s.color || COLORS[i % COLORS.length] } }),
    h('span', { class: 'legend-label' }, s.label),
    h('span', { class: 'legend-value', 'data-test': `legend-${s.key}` }, typeof last[s.key] === 'number' ? fmt(last[s.key]) : '–'))));
  return h('div', Object.assign({ class: 'chart-box' }, attrs), svg, legend);
}

/**
 * A bar chart of histogram buckets [[upper bound, count], …]: one bar per
 * bucket, labelled "≤ bound".
 */
export function barChart(attrs, { buckets, unit = 'ms' }) {
  const n = Math.max(buckets.length, 1);
  const max = axisTop(Math.max(0, ...buckets.map((b) => b[1])), true);
  const bw = (W - PAD.left - PAD.right) / n;
  const y = (v) => H - PAD.bottom - (v / max) * (H - PAD.top - PAD.bottom);
  const svg = h('svg:svg', { viewBox: `0 0 ${W} ${H}`, class: 'chart', role: 'img' });
  for (let i = 0; i <= 4; i++) {
    const v = (max * i) / 4;
    svg.append(h('svg:line', { x1: PAD.left, x2: W - PAD.right, y1: y(v), y2: y(v), class: 'grid' }));
    svg.append(h('svg:text', { x: PAD.left - 6, y: y(v) + 4, class: 'axis', 'text-anchor': 'end' }, fmtNum(v)));
  }
  buckets.forEach(([le, count], i) => {
    const x0 = PAD.left + i * bw;
    const label = le === null || le === 'inf' || le === Infinity ? '+∞' : `≤${fmtNum(le)}`;
    svg.append(h('svg:rect', {
      x: x0 + bw * 0.1, width: bw * 0.8, y: y(count), height: Math.max(0, H - PAD.bottom - y(count)),
      class: 'bar', 'data-test': 'latency-bar',
    }, h('svg:title', null, `${label} ${unit}: ${fmtNum(count)}`)));
    if (n <= 16 || i % Math.ceil(n / 16) === 0) {
      svg.append(h('svg:text', { x: x0 + bw / 2, y: H - 8, class: 'axis', 'text-anchor': 'middle' }, label));
    }
  });
  return h('div', Object.assign({ class: 'chart-box' }, attrs), svg);
}
