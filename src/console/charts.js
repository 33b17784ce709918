// @ts-check
// Bar charts over runs, drawn as SVG here: no library, nothing from elsewhere. Colours come
// from style.css's variables, so the charts follow the light and dark settings. The drawing
// is hidden from screen readers; each chart's caption states its figures, and a table under
// it lists every run's numbers, for the keyboard and screen readers alike.
import { fmtNumber, h } from './dom.js';

/**
 * One quantity per run; several in a chart are stacked.
 * @template R
 * @typedef {{ label: string; value: (run: R) => number; cls: string | ((run: R) => string); total?: boolean }} Series
 */

const SVG = 'http://www.w3.org/2000/svg';
// Drawing units; the picture is stretched to the width of its box (no text in it).
const WIDTH = 600;
const HEIGHT = 140;
const BAR = 0.7;

/** @param {string} tag @param {Record<string, string | number>} attrs @param {...Element} children */
function svg(tag, attrs, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) el.setAttribute(name, String(value));
  el.append(...children);
  return el;
}

/**
 * A figure: the bars (one group per run, oldest on the left, with a tooltip) and a caption
 * that states the figures; then every run's numbers as a table, opened on demand.
 * @template {{ id: number }} R
 * @param {{ id: string; title: string; runs: R[]; series: Series<R>[]; format?: (n: number) => string }} chart runs newest first, as the API lists them
 */
export function barChart({ id, title, runs, series, format = fmtNumber }) {
  const ordered = [...runs].reverse();
  const top = Math.max(0, ...ordered.map((run) => series.reduce((sum, s) => sum + s.value(run), 0)));
  const slot = WIDTH / Math.max(ordered.length, 1);
  const y = (/** @type {number} */ v) => (top === 0 ? 0 : (v / top) * (HEIGHT - 2));
  const marks = ordered.map((run, i) => {
    let base = HEIGHT;
    const bars = series.map((s) => {
      const height = y(s.value(run));
      base -= height;
      const cls = typeof s.cls === 'function' ? s.cls(run) : s.cls;
      return svg('rect', { class: `chart-bar ${cls}`, x: i * slot + (slot * (1 - BAR)) / 2, y: base, width: slot * BAR, height });
    });
    const tip = svg('title', {});
    tip.textContent = `Run #${run.id}: ${series.map((s) => `${s.label} ${format(s.value(run))}`).join(', ')}`;
    // The whole column shows the tooltip, however short its bar.
    return svg('g', { class: 'mark', 'data-run': run.id }, tip, svg('rect', { class: 'hit', x: i * slot, y: 0, width: slot, height: HEIGHT }), ...bars);
  });
  const picture = svg(
    'svg',
    { class: 'chart', viewBox: `0 0 ${WIDTH} ${HEIGHT}`, preserveAspectRatio: 'none', 'aria-hidden': 'true', focusable: 'false' },
    svg('line', { class: 'axis', x1: 0, x2: WIDTH, y1: HEIGHT - 0.5, y2: HEIGHT - 0.5, 'vector-effect': 'non-scaling-stroke' }),
    svg('line', { class: 'grid', x1: 0, x2: WIDTH, y1: 1.5, y2: 1.5, 'vector-effect': 'non-scaling-stroke' }),
    ...marks,
  );
  return h(
    'div',
    { class: 'chart-box', id },
    h(
      'figure',
      { class: 'chart-figure', 'aria-labelledby': `${id}-caption` },
      // The caption comes last, under the picture, so the charts line up; it names the chart too.
      h('div', { class: 'chart-title', 'aria-hidden': 'true' }, title),
      h('div', { class: 'chart-scale', 'aria-hidden': 'true' }, h('span', null, format(top)), h('span', null, '0')),
      picture,
      series.length > 1
        ? h('ul', { class: 'legend', 'aria-hidden': 'true' }, series.map((s) => h('li', null, h('span', { class: `swatch ${typeof s.cls === 'string' ? s.cls : ''}` }), s.label)))
        : null,
      h('figcaption', { id: `${id}-caption` }, h('span', { class: 'sr-only' }, `${title}. `), summary(runs, series, format)),
    ),
    h(
      'details',
      { id: `${id}-numbers` },
      h('summary', null, 'Numbers'),
      h(
        'table',
        { class: 'chart-table' },
        h('thead', null, h('tr', null, h('th', { scope: 'col' }, 'Run'), series.map((s) => h('th', { scope: 'col', class: 'num' }, s.label)))),
        h('tbody', null, runs.map((run) => h('tr', { 'data-run': run.id }, h('th', { scope: 'row' }, `#${run.id}`), series.map((s) => h('td', { class: 'num' }, format(s.value(run))))))),
      ),
    ),
  );
}

/**
 * "10 runs, #3 to #12. Duration: newest 1.2 s (run #12), highest 4.5 s (run #7)." For each series, and its
 * total where that means something.
 * @template {{ id: number }} R
 * @param {R[]} runs newest first @param {Series<R>[]} series @param {(n: number) => string} format
 */
function summary(runs, series, format) {
  const newest = runs[0];
  const oldest = runs[runs.length - 1];
  if (!newest || !oldest) return 'No finished run yet.';
  const span = runs.length === 1 ? `1 run, #${newest.id}` : `${runs.length} runs, #${oldest.id} to #${newest.id}`;
  const parts = series.map((s) => {
    const highest = runs.reduce((a, b) => (s.value(b) > s.value(a) ? b : a));
    const total = s.total ? `, ${format(runs.reduce((sum, r) => sum + s.value(r), 0))} in all` : '';
    return `${s.label.toLowerCase()}: newest ${format(s.value(newest))} (run #${newest.id}), highest ${format(s.value(highest))} (run #${highest.id})${total}`;
  });
  return `${span}. ${parts.map((p) => p[0]?.toUpperCase() + p.slice(1)).join('. ')}.`;
}
