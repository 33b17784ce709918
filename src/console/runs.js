// @ts-check
import { getJson } from './api.js';
import { detailDialog, fmtAgo, fmtDateTime, fmtDuration, fmtNumber, h, replace } from './dom.js';
import { folderOfKey, reprocess, scopeButtons, userIdOfKey } from './reprocess.js';

/**
 * @typedef {{ key: string; reason: string }} Issue
 * @typedef {{ scanned: number; read: number; new: number; updated: number; unchanged: number; rejected: number; ignored: number }} Counts
 * @typedef {{
 *   id: number; trigger: string; full: boolean; status: 'running' | 'succeeded' | 'failed' | 'aborted';
 *   started_at: string; finished_at: string | null; output_written: boolean;
 *   progress: { phase: string; done: number; total: number | null };
 *   error: string | null; counts: Counts; rejected: Issue[]; warnings: Issue[]; issues_left_out: number;
 * }} Run
 */

const LIVE_MS = 1000;
const IDLE_MS = 10_000;
const HISTORY = 25;
// A run may reject a million files; the page shows this many of each list.
const ISSUES_SHOWN = 1000;

/**
 * Follows the runs: the history every IDLE_MS, and a run in progress (from any instance)
 * every LIVE_MS through GET /runs/:id, until it ends.
 */
export class RunWatcher {
  /** @param {(err: unknown) => void} onError */
  constructor(onError) {
    this.onError = onError;
    /** @type {Run[]} */
    this.runs = [];
    /** @type {number | null} */
    this.nextBefore = null;
    /** @type {Run | null} */
    this.current = null;
    /** @type {string} */
    this.note = '';
    /** @type {Set<() => void>} */
    this.listeners = new Set();
    /** @type {ReturnType<typeof setTimeout> | undefined} */
    this.timer = undefined;
    this.loaded = false;
  }

  /** @param {() => void} fn */
  subscribe(fn) {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  start() {
    void this.tick();
  }

  /** A run just started or joined by a button. @param {Run & { joined_existing_run?: boolean }} run */
  follow(run) {
    this.note = run.joined_existing_run ? `Run #${run.id} was already in progress; following it.` : '';
    this.current = run;
    this.emit();
    void this.tick();
  }

  async tick() {
    clearTimeout(this.timer);
    try {
      if (this.current && this.current.status === 'running') {
        // Counts only: the lists (up to 10,000 rows each) are fetched when a run's details open.
        /** @type {Run} */
        const run = await getJson(`/runs/${this.current.id}?issues=0`);
        this.current = run;
        // The history shows the run too, with the same live counts, and its end.
        if (run.status !== 'running' || !this.runs.some((r) => r.id === run.id)) await this.loadHistory();
        this.runs = this.runs.map((r) => (r.id === run.id ? run : r));
      } else {
        await this.loadHistory();
        const running = this.runs.find((r) => r.status === 'running');
        if (running) this.current = running;
        else if (this.current) this.current = this.runs.find((r) => r.id === this.current?.id) ?? this.current;
      }
      this.emit();
    } catch (err) {
      this.onError(err);
    }
    this.timer = setTimeout(() => void this.tick(), this.current?.status === 'running' ? LIVE_MS : IDLE_MS);
  }

  async loadHistory() {
    const page = /** @type {{ data: Run[]; next_before: number | null }} */ (await getJson(`/runs?limit=${HISTORY}`));
    // Older pages the operator loaded stay, below the fresh first page.
    const older = this.runs.filter((r) => r.id < (page.data[page.data.length - 1]?.id ?? 0));
    this.runs = [...page.data, ...older];
    if (older.length === 0) this.nextBefore = page.next_before;
    this.loaded = true;
  }

  async loadOlder() {
    if (this.nextBefore === null) return;
    const page = /** @type {{ data: Run[]; next_before: number | null }} */ (await getJson(`/runs?limit=${HISTORY}&before=${this.nextBefore}`));
    this.runs = [...this.runs, ...page.data];
    this.nextBefore = page.next_before;
    this.emit();
  }

  emit() {
    for (const fn of this.listeners) fn();
  }
}

/**
 * @param {HTMLElement} root
 * @param {RunWatcher} watcher
 * @param {(err: unknown) => void} onError
 */
export function runsView(root, watcher, onError) {
  const live = h('section', { class: 'card live', 'aria-labelledby': 'live-title', 'aria-live': 'polite' });
  const history = h('section', { class: 'card', 'aria-labelledby': 'history-title' });
  root.append(live, history);

  const render = () => {
    renderLive(live, watcher);
    renderHistory(history, watcher, onError);
  };
  const unsubscribe = watcher.subscribe(render);
  render();
  document.title = 'Runs · userjoin';
  return { destroy: () => unsubscribe() };
}

/** @param {HTMLElement} el @param {RunWatcher} watcher */
function renderLive(el, watcher) {
  const run = watcher.current;
  const title = h('h2', { id: 'live-title' }, 'Current run');
  if (!watcher.loaded && !run) return replace(el, title, h('p', { class: 'muted' }, 'Loading…'));
  if (!run || run.status !== 'running') {
    const last = run ?? watcher.runs[0];
    return replace(
      el,
      title,
      h('p', { class: 'muted', id: 'live-state' }, 'No run in progress.', last ? [' Last: ', h('strong', null, `run #${last.id}`), ` ${last.status}`, last.finished_at ? ` ${fmtAgo(last.finished_at)}.` : '.'] : ' No run yet: press "Run now".'),
      watcher.note ? h('p', { class: 'muted' }, watcher.note) : null,
    );
  }
  const c = run.counts;
  replace(
    el,
    title,
    h(
      'p',
      { id: 'live-state' },
      h('span', { class: 'badge running' }, 'running'),
      ' ',
      h('strong', null, `Run #${run.id}`),
      ` ${run.full ? 'reprocessing everything' : 'processing changes'}, started ${fmtAgo(run.started_at)} by ${run.trigger}.`,
    ),
    h('progress', { 'aria-label': `Run #${run.id}: ${run.progress.phase}`, ...(run.progress.total ? { max: run.progress.total, value: run.progress.done } : {}) }),
    h(
      'dl',
      { class: 'stats' },
      stat('Phase', run.progress.phase),
      stat('Users done', fmtNumber(run.progress.done)),
      stat('Objects listed', fmtNumber(c.scanned)),
      stat('Read', fmtNumber(c.read)),
      stat('New', fmtNumber(c.new)),
      stat('Updated', fmtNumber(c.updated)),
      stat('Rejected', fmtNumber(c.rejected)),
    ),
    watcher.note ? h('p', { class: 'muted' }, watcher.note) : null,
  );
}

/** @param {string} label @param {string} value */
const stat = (label, value) => h('div', null, h('dt', null, label), h('dd', null, value));

/** @param {HTMLElement} el @param {RunWatcher} watcher @param {(err: unknown) => void} onError */
function renderHistory(el, watcher, onError) {
  const rows = watcher.runs.map((run) =>
    h(
      'tr',
      { 'data-run': run.id },
      h('td', null, h('button', { type: 'button', class: 'link', 'aria-label': `Run ${run.id}: details`, onclick: () => void openRun(run.id, onError) }, `#${run.id}`)),
      h('td', null, h('span', { class: `badge ${run.status}` }, run.status)),
      h('td', null, run.trigger, run.full ? h('span', { class: 'tag' }, 'full') : null),
      h('td', { title: fmtDateTime(run.started_at) }, fmtAgo(run.started_at)),
      h('td', { class: 'num' }, run.finished_at ? fmtDuration(Date.parse(run.finished_at) - Date.parse(run.started_at)) : '…'),
      ...['scanned', 'read', 'new', 'updated', 'unchanged'].map((k) => h('td', { class: 'num' }, fmtNumber(run.counts[/** @type {keyof Counts} */ (k)]))),
      h('td', { class: `num ${run.counts.rejected > 0 ? 'warn' : ''}` }, fmtNumber(run.counts.rejected)),
      h('td', { class: 'num' }, fmtNumber(run.counts.ignored)),
    ),
  );
  replace(
    el,
    h('h2', { id: 'history-title' }, 'History'),
    rows.length === 0
      ? h('p', { class: 'muted' }, watcher.loaded ? 'No runs yet.' : 'Loading…')
      : h(
          'div',
          { class: 'table-wrap' },
          h(
            'table',
            { id: 'runs-table' },
            h('caption', { class: 'sr-only' }, 'Runs, newest first. Open a run for its rejected files and warnings.'),
            h(
              'thead',
              null,
              h('tr', null, ...['Run', 'Status', 'Trigger', 'Started', 'Duration', 'Scanned', 'Read', 'New', 'Updated', 'Unchanged', 'Rejected', 'Ignored'].map((t, i) => h('th', { scope: 'col', class: i >= 4 ? 'num' : null }, t))),
            ),
            h('tbody', null, rows),
          ),
        ),
    watcher.nextBefore !== null
      ? h('p', null, h('button', { type: 'button', onclick: () => void watcher.loadOlder().catch(onError) }, 'Older runs'))
      : null,
  );
}

/** The run's details, with every rejected file and warning and its reason. @param {number} id @param {(err: unknown) => void} onError */
export async function openRun(id, onError) {
  let run;
  try {
    // One more than is shown, to tell whether there are more warnings (their count is not kept).
    run = /** @type {Run} */ (await getJson(`/runs/${id}?issues=${ISSUES_SHOWN + 1}`));
  } catch (err) {
    onError(err);
    return;
  }
  const { dialog, title, body } = detailDialog();
  title.textContent = `Run #${run.id}`;
  const c = run.counts;
  replace(
    body,
    h(
      'p',
      null,
      h('span', { class: `badge ${run.status}` }, run.status),
      ` Started ${fmtDateTime(run.started_at)} by ${run.trigger}${run.full ? ', reprocessing everything' : ''}.`,
      run.finished_at ? ` Took ${fmtDuration(Date.parse(run.finished_at) - Date.parse(run.started_at))}.` : '',
      run.output_written ? ' output.csv was written.' : '',
    ),
    run.error ? h('p', { class: 'error-text' }, h('strong', null, 'Why it failed: '), run.error) : null,
    h(
      'dl',
      { class: 'stats' },
      ...Object.entries(c).map(([k, v]) => stat(k[0]?.toUpperCase() + k.slice(1), fmtNumber(v))),
    ),
    run.issues_left_out > 0
      ? h('p', null, `${fmtNumber(run.issues_left_out)} more rejected files and warnings were counted but not recorded: the run reached RUN_ISSUES_LIMIT.`)
      : null,
    issueList('Rejected files', 'rejected', run.rejected, c.rejected, 'No file was rejected.', (key) => [
      ...scopeButtons({ userId: userIdOfKey(key) }, `user ${userIdOfKey(key)}`, onError),
      folderOfKey(key) ? h('button', { type: 'button', 'aria-label': `Reprocess ${folderOfKey(key)}`, onclick: () => void reprocess({ prefix: folderOfKey(key) }, onError) }, 'Folder') : null,
    ]),
    issueList('Warnings', 'warnings', run.warnings, null, 'No warnings.'),
  );
  dialog.showModal();
}

/**
 * @param {string} title @param {string} id @param {Issue[]} issues @param {number | null} total null: not counted
 * @param {string} none @param {(key: string) => Array<HTMLElement | null>} [actions] buttons for each file
 */
function issueList(title, id, issues, total, none, actions) {
  const shown = issues.slice(0, ISSUES_SHOWN);
  const more = Math.max(total ?? 0, issues.length) > shown.length;
  const count = total !== null ? fmtNumber(Math.max(total, issues.length)) : more ? `over ${fmtNumber(shown.length)}` : fmtNumber(issues.length);
  return h(
    'section',
    { 'aria-labelledby': `${id}-title` },
    h('h3', { id: `${id}-title` }, `${title} (${count})`),
    shown.length === 0
      ? h('p', { class: 'muted' }, none)
      : h(
          'div',
          { class: 'table-wrap issues' },
          h(
            'table',
            { id: `${id}-table` },
            h('thead', null, h('tr', null, h('th', { scope: 'col' }, 'File'), h('th', { scope: 'col' }, 'Reason'), actions ? h('th', { scope: 'col' }, 'Actions') : null)),
            h('tbody', null, shown.map((i) => h('tr', null, h('td', { class: 'key' }, i.key), h('td', null, i.reason), actions ? h('td', { class: 'buttons' }, actions(i.key)) : null))),
          ),
        ),
    more ? h('p', { class: 'muted' }, `Showing the first ${fmtNumber(shown.length)}; the log lists every one.`) : null,
  );
}
