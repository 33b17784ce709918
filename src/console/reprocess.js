// @ts-check
// Targeted reprocessing and previews (dry runs): POST /data with user_id or prefix, and with
// dry_run=true. A started run is announced with a "userjoin:run" window event, which the app
// hands to its run watcher, so this module needs nothing of the views that use it.
import { getJson } from './api.js';
import { detailDialog, fmtNumber, h, replace } from './dom.js';

/** @typedef {{ userId?: string; prefix?: string }} Scope */
/** @typedef {string | number | null} Value */
/**
 * @typedef {{
 *   counts: Record<string, number>; list_limit: number; output_would_be_written: boolean;
 *   new: Array<{ user_id: string; fields: Record<string, Value> }>;
 *   updated: Array<{ user_id: string; changes: Record<string, { old: Value; new: Value }> }>;
 *   rejected: Array<{ key: string; reason: string }>; erased: Array<{ user_id: string }>;
 * }} DryRun
 */

/** @param {Scope} scope @param {boolean} dry */
function query(scope, dry) {
  const q = new URLSearchParams();
  if (scope.userId !== undefined) q.append('user_id', scope.userId);
  if (scope.prefix !== undefined) q.append('prefix', scope.prefix);
  if (dry) q.append('dry_run', 'true');
  const s = q.toString();
  return s ? `?${s}` : '';
}

/** The user_id of a user file's key: its file name without the extension. @param {string} key */
export const userIdOfKey = (key) => {
  const base = key.slice(key.lastIndexOf('/') + 1);
  const dot = base.lastIndexOf('.');
  return dot > 0 ? base.slice(0, dot) : base;
};

/** The folder a key is in ("" at the top). @param {string} key */
export const folderOfKey = (key) => key.slice(0, key.lastIndexOf('/') + 1);

/** Starts a run of this scope (or joins one that covers it) and has the app follow it. @param {Scope} scope @param {(err: unknown) => void} onError */
export async function reprocess(scope, onError) {
  try {
    /** @type {{ id: number }} */
    const run = await getJson(`/data${query(scope, false)}`, { method: 'POST' });
    window.dispatchEvent(new CustomEvent('userjoin:run', { detail: run }));
    location.hash = '#/runs';
  } catch (err) {
    onError(err);
  }
}

/** A "Reprocess" and a "Preview" button for a scope. @param {Scope} scope @param {string} what @param {(err: unknown) => void} onError */
export function scopeButtons(scope, what, onError) {
  return [
    h('button', { type: 'button', 'aria-label': `Reprocess ${what}`, onclick: () => void reprocess(scope, onError) }, 'Reprocess'),
    h('button', { type: 'button', 'aria-label': `Preview ${what}`, onclick: () => void preview(scope, what, onError) }, 'Preview'),
  ];
}

/** Runs a dry run and shows its answer in the detail dialog. @param {Scope} scope @param {string} what @param {(err: unknown) => void} onError */
export async function preview(scope, what, onError) {
  /** @type {DryRun} */
  let dry;
  try {
    dry = await getJson(`/data${query(scope, true)}`, { method: 'POST' });
  } catch (err) {
    onError(err);
    return;
  }
  const { dialog, title, body } = detailDialog();
  title.textContent = `Preview: ${what}`;
  const c = dry.counts;
  const fmt = (/** @type {Value} */ v) => (v === null ? '—' : String(v));
  /** @param {string} id @param {string} label @param {number} count @param {HTMLElement[]} rows */
  const list = (id, label, count, rows) =>
    h(
      'section',
      { 'aria-labelledby': `preview-${id}` },
      h('h3', { id: `preview-${id}` }, `${label} (${fmtNumber(count)})`),
      rows.length === 0 ? h('p', { class: 'muted' }, 'None.') : h('ul', { id: `preview-${id}-list` }, rows),
      count > rows.length ? h('p', { class: 'muted' }, `Showing the first ${fmtNumber(rows.length)}.`) : null,
    );
  replace(
    body,
    h('p', null, 'Nothing was written: this is what a run would do now.', dry.output_would_be_written ? ' It would rewrite output.csv.' : ''),
    h('dl', { class: 'stats', id: 'preview-counts' }, ...Object.entries(c).map(([k, v]) => h('div', null, h('dt', null, k[0]?.toUpperCase() + k.slice(1)), h('dd', null, fmtNumber(v))))),
    list('new', 'New users', c.new ?? 0, dry.new.map((u) => h('li', null, h('strong', null, u.user_id), ` ${fmt(u.fields.first_name)} ${fmt(u.fields.last_name)}`))),
    list(
      'updated',
      'Updated users',
      c.updated ?? 0,
      dry.updated.map((u) =>
        h('li', null, h('strong', null, u.user_id), ': ', Object.entries(u.changes).map(([f, ch]) => `${f} ${fmt(ch.old)} → ${fmt(ch.new)}`).join('; ')),
      ),
    ),
    list('rejected', 'Rejected files', c.rejected ?? 0, dry.rejected.map((i) => h('li', null, h('span', { class: 'key' }, i.key), `: ${i.reason}`))),
    list('erased', 'Erased users', c.erased ?? 0, dry.erased.map((u) => h('li', null, u.user_id))),
  );
  if (!dialog.open) dialog.showModal();
}
