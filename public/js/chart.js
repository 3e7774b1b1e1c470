import { s } from './dom.js';

export const HOUR_MS = 60 * 60 * 1000;

/** Step path through (x, value) points, held until xEnd. */
function stepPath(points, xEnd, y) {
  if (points.length === 0) return '';
  let d = `M${points[0].x.toFixed(1)},${y(points[0].v).toFixed(1)}`;
  for (let i = 1; i < points.length; i++) {
    d += `H${points[i].x.toFixed(1)}V${y(points[i].v).toFixed(1)}`;
  }
  return `${d}H${Math.max(xEnd, points[points.length - 1].x).toFixed(1)}`;
}

/** One-line summary of a node's load history, for tooltips and screen readers. */
export function describeLoad(samples) {
  if (!samples || samples.length === 0) return 'No load data for the last hour';
  const last = samples[samples.length - 1];
  const peak = Math.max(...samples.map((p) => p.queue));
  return `Queue ${last.queue} of ${last.slots} slots now, peak ${peak} in the last hour (${samples.length} samples)`;
}

/**
 * Queue (filled area) vs slots (dashed line) over the last hour, as an inline SVG. No library.
 * `axes` adds labels for the larger chart of the node dialog.
 */
export function loadChart(samples, { width, height, now = Date.now(), windowMs = HOUR_MS, axes = false }) {
  const pad = axes ? { l: 34, r: 10, t: 10, b: 24 } : { l: 1, r: 3, t: 3, b: 2 };
  const w = width - pad.l - pad.r;
  const ht = height - pad.t - pad.b;
  const start = now - windowMs;
  const list = (samples || []).filter((p) => p && typeof p.t === 'number').sort((a, b) => a.t - b.t);
  const max = Math.ceil(Math.max(1, ...list.map((p) => Math.max(p.queue || 0, p.slots || 0))));
  const x = (t) => pad.l + (Math.max(0, Math.min(windowMs, t - start)) / windowMs) * w;
  const y = (v) => pad.t + ht - (Math.max(0, v || 0) / max) * ht;
  const xEnd = pad.l + w;

  const svg = s('svg', {
    class: axes ? 'chart' : 'sparkline',
    width,
    height,
    viewBox: `0 0 ${width} ${height}`,
    role: 'img',
    'aria-label': describeLoad(list),
  });
  svg.appendChild(s('title', null, describeLoad(list)));
  svg.appendChild(s('rect', { class: 'chart-bg', x: pad.l, y: pad.t, width: w, height: ht }));

  if (axes) {
    // Counts of tasks: whole-number ticks only.
    const ticks = max >= 2 ? [0, Math.round(max / 2), max] : [0, max];
    for (const v of ticks) {
      const yy = y(v);
      svg.appendChild(s('line', { class: 'chart-grid', x1: pad.l, x2: xEnd, y1: yy, y2: yy }));
      svg.appendChild(s('text', { class: 'chart-label', x: pad.l - 6, y: yy + 4, 'text-anchor': 'end' }, v));
    }
    const labels = [
      [0, '−60 min'],
      [0.5, '−30 min'],
      [1, 'now'],
    ];
    for (const [f, text] of labels) {
      svg.appendChild(
        s('text', { class: 'chart-label', x: pad.l + f * w, y: height - 6, 'text-anchor': f === 0 ? 'start' : f === 1 ? 'end' : 'middle' }, text),
      );
    }
  }

  if (list.length === 0) {
    if (axes) svg.appendChild(s('text', { class: 'chart-empty', x: pad.l + w / 2, y: pad.t + ht / 2, 'text-anchor': 'middle' }, 'No data yet'));
    return svg;
  }
  const queue = list.map((p) => ({ x: x(p.t), v: p.queue }));
  const slots = list.map((p) => ({ x: x(p.t), v: p.slots }));
  const q = stepPath(queue, xEnd, y);
  const base = y(0).toFixed(1);
  svg.appendChild(s('path', { class: 'chart-queue-area', d: `${q}V${base}H${queue[0].x.toFixed(1)}Z` }));
  svg.appendChild(s('path', { class: 'chart-queue', d: q }));
  svg.appendChild(s('path', { class: 'chart-slots', d: stepPath(slots, xEnd, y) }));
  // Sample markers: every sample on the large chart when they are few, else only the latest one.
  const marked = axes && queue.length <= 60 ? queue : queue.slice(-1);
  for (const p of marked) svg.appendChild(s('circle', { class: 'chart-point', cx: p.x.toFixed(1), cy: y(p.v).toFixed(1), r: axes ? 3 : 2 }));
  return svg;
}
