// @ts-check
import { getJson } from './api.js';
import { barChart } from './charts.js';
import { fmtAgo, fmtDateTime, fmtDuration, fmtNumber, h, replace } from './dom.js';

/**
 * @typedef {import('./runs.js').Run} Run
 * @typedef {import('./runs.js').RunWatcher} RunWatcher
 * @typedef {{
 *   users: number; users_with_photo: number; pending_events: number; last_success_at: string | null;
 *   schedule: string | null; next_run_at: string | null;
 * }} Overview
 */

// GET /overview counts rows: this often, and at once when a run ends.
const REFRESH_MS = 10_000;
// The watcher holds the newest page of runs (25); the charts show its finished ones.
const CHARTED = 25;

/**
 * The view the console opens on: the figures of GET /overview, the last run, and charts over
 * the last finished runs, from the run watcher.
 * @param {HTMLElement} root
 * @param {RunWatcher} watcher
 * @param {(err: unknown) => void} onError
 */
export function overviewView(root, watcher, onError) {
  const glance = h('section', { class: 'card', 'aria-labelledby': 'glance-title' });
  const charts = h('section', { class: 'card', 'aria-labelledby': 'charts-title' });
  root.append(glance, charts);
  /** @type {Overview | null} */
  let figures = null;
  // Loads overlap (a run ends while one is in flight): only the newest one's answer is shown and
  // schedules the next, so no second timer chain starts, and none acts once the view is gone.
  let generation = 0;
  /** @type {ReturnType<typeof setTimeout> | undefined} */
  let timer;
  const newestState = () => (watcher.runs[0] ? `${watcher.runs[0].id}:${watcher.runs[0].status}` : '');
  let seen = newestState();
  let drawn = '';

  const render = () => {
    renderGlance(glance, figures, watcher);
    const finished = watcher.runs.filter((r) => r.finished_at !== null).slice(0, CHARTED);
    // Redrawn only when the runs changed, so an open table and the focus stay put.
    const state = JSON.stringify(finished.map((r) => [r.id, r.status, r.counts]));
    if (state !== drawn || !watcher.loaded) {
      drawn = state;
      renderCharts(charts, finished, watcher.loaded);
    }
  };
  const load = async () => {
    const mine = ++generation;
    clearTimeout(timer);
    try {
      const got = /** @type {Overview} */ (await getJson('/overview'));
      if (mine !== generation) return;
      figures = got;
      render();
    } catch (err) {
      if (mine !== generation) return;
      onError(err);
    }
    timer = setTimeout(() => void load(), REFRESH_MS);
  };
  const unsubscribe = watcher.subscribe(() => {
    // A run that started or ended changes the figures: ask again at once.
    if (newestState() !== seen) {
      seen = newestState();
      void load();
    }
    render();
  });
  render();
  void load();
  document.title = 'Overview · userjoin';
  return {
    destroy: () => {
      // Every load in flight is now stale.
      generation++;
      clearTimeout(timer);
      unsubscribe();
    },
  };
}

/** @param {string} id @param {string} label @param {import('./dom.js').Child | import('./dom.js').Child[]} value @param {import('./dom.js').Child | import('./dom.js').Child[]} [detail] */
const tile = (id, label, value, detail) =>
  h('div', { class: 'tile', id }, h('dt', null, label), h('dd', { class: 'tile-value' }, value), detail ? h('dd', { class: 'muted' }, detail) : null);

/** @param {HTMLElement} el @param {Overview | null} o @param {RunWatcher} watcher */
function renderGlance(el, o, watcher) {
  const title = h('h2', { id: 'glance-title' }, 'At a glance');
  if (!o) return replace(el, title, h('p', { class: 'muted' }, 'Loading…'));
  const share = o.users === 0 ? '' : ` (${Math.round((o.users_with_photo / o.users) * 100)}%)`;
  replace(
    el,
    title,
    h(
      'dl',
      { class: 'tiles' },
      tile('ov-users', 'Users', fmtNumber(o.users), [h('span', { id: 'ov-photos' }, fmtNumber(o.users_with_photo)), ` with a photo${share}`]),
      lastRunTile(watcher, o),
      tile(
        'ov-next-run',
        'Next scheduled run',
        o.next_run_at ? h('span', { title: fmtDateTime(o.next_run_at) }, fmtAgo(o.next_run_at)) : 'Not scheduled',
        o.schedule
          ? [o.next_run_at ? `${fmtDateTime(o.next_run_at)} · ` : '', 'SCHEDULE ', h('code', null, o.schedule)]
          : 'SCHEDULE=off: runs start from "Run now", POST /data, events or the CLI',
      ),
      tile(
        'ov-backlog',
        'Event backlog',
        h('span', { id: 'ov-pending' }, fmtNumber(o.pending_events)),
        o.pending_events === 1 ? 'key named by an event, not processed yet' : 'keys named by events, not processed yet',
      ),
    ),
  );
}

/** @param {RunWatcher} watcher @param {Overview} o */
function lastRunTile(watcher, o) {
  const run = watcher.runs[0];
  const success = o.last_success_at ? `Last success ${fmtAgo(o.last_success_at)}.` : 'No successful run yet.';
  if (!run) return tile('ov-last-run', 'Last run', watcher.loaded ? 'None yet' : '…', success);
  const when = run.finished_at
    ? `finished ${fmtAgo(run.finished_at)}, took ${fmtDuration(Date.parse(run.finished_at) - Date.parse(run.started_at))}.`
    : `started ${fmtAgo(run.started_at)} by ${run.trigger}.`;
  return tile(
    'ov-last-run',
    'Last run',
    [h('span', { class: `badge ${run.status}` }, run.status), ' ', `#${run.id}`],
    [`${when} `, run.status === 'succeeded' ? '' : success],
  );
}

/** @param {HTMLElement} el @param {Run[]} runs newest first @param {boolean} loaded */
function renderCharts(el, runs, loaded) {
  // The tables the operator opened stay open, and the focus stays on the same table.
  const open = new Set(Array.from(el.querySelectorAll('details[open]'), (d) => d.id));
  const focused = el.contains(document.activeElement) ? document.activeElement?.closest('details')?.id : undefined;
  const title = h('h2', { id: 'charts-title' }, runs.length === 1 ? 'The last finished run' : `The last ${runs.length} finished runs`);
  if (runs.length === 0) return replace(el, title, h('p', { class: 'muted' }, loaded ? 'No finished run yet: press "Run now".' : 'Loading…'));
  const duration = (/** @type {Run} */ r) => Date.parse(r.finished_at ?? r.started_at) - Date.parse(r.started_at);
  replace(
    el,
    title,
    h(
      'div',
      { class: 'charts' },
      barChart({ id: 'chart-duration', title: 'Duration', runs, format: fmtDuration, series: [{ label: 'Duration', value: duration, cls: (r) => r.status }] }),
      barChart({
        id: 'chart-users',
        title: 'Users new and updated',
        runs,
        series: [
          { label: 'New', value: (r) => r.counts.new, cls: 's-new', total: true },
          { label: 'Updated', value: (r) => r.counts.updated, cls: 's-updated', total: true },
        ],
      }),
      barChart({ id: 'chart-rejected', title: 'Files rejected', runs, series: [{ label: 'Rejected', value: (r) => r.counts.rejected, cls: 's-rejected', total: true }] }),
    ),
  );
  for (const id of open) el.querySelector(`#${id}`)?.setAttribute('open', '');
  if (focused) /** @type {HTMLElement | null} */ (el.querySelector(`#${focused} > summary`))?.focus();
}
