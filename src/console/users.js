// @ts-check
import { blobUrl, download, getJson } from './api.js';
import { ageOf, fmtDate, fmtDateTime, fmtNumber, fmtUtc, h, replace } from './dom.js';
import { scopeButtons } from './reprocess.js';
import { openRun } from './runs.js';

/**
 * @typedef {{
 *   id: number; user_id: string; first_name: string; last_name: string; birthdate: string; birthts: number;
 *   img_path: string | null; img_format: string | null; img_width: number | null; img_height: number | null;
 *   created_at: string; updated_at: string; source: Source;
 * }} User
 * @typedef {{ key: string; etag: string }} FileVersion
 * @typedef {{ csv: FileVersion | null; image: FileVersion | null; run_id: number | null; changed_at: string | null }} Source
 */

const PAGE_SIZES = [25, 50, 100];
// Thumbnails are drawn at 48 CSS pixels; 96 keeps them sharp on high-density screens.
const THUMB_WIDTH = 96;
const DETAIL_WIDTH = 480;

/** The filters, as kept in the page's address (#/users?min_age=...). */
const FILTERS = ['min_age', 'max_age', 'is_image_exists', 'limit'];

/** @param {string} userId */
const photoPath = (userId, width = 0) => `/data/${encodeURIComponent(userId)}/image${width ? `?width=${width}` : ''}`;

/**
 * @param {HTMLElement} root
 * @param {URLSearchParams} params
 * @param {(err: unknown) => void} onError
 */
export function usersView(root, params, onError) {
  document.title = 'Users · userjoin';
  /** @type {string[]} */
  const blobs = [];
  /** @type {Array<string | null>} cursors of the pages before this one */
  const previous = [];
  /** @type {string | null} */
  let cursor = null;
  let destroyed = false;

  const limit = PAGE_SIZES.includes(Number(params.get('limit'))) ? Number(params.get('limit')) : 50;
  const field = (/** @type {string} */ name, /** @type {string} */ label, /** @type {Record<string, unknown>} */ attrs) =>
    h('div', { class: 'field' }, h('label', { for: `f-${name}` }, label), h('input', { id: `f-${name}`, name, value: params.get(name) ?? '', ...attrs }));
  const photo = params.get('is_image_exists') ?? '';
  const form = h(
    'form',
    { class: 'filters', id: 'user-filters', role: 'search', 'aria-label': 'Filter users' },
    field('min_age', 'Min age', { type: 'number', min: 0, max: 1000, step: 'any', inputmode: 'decimal', placeholder: 'any' }),
    field('max_age', 'Max age', { type: 'number', min: 0, max: 1000, step: 'any', inputmode: 'decimal', placeholder: 'any' }),
    h(
      'div',
      { class: 'field' },
      h('label', { for: 'f-photo' }, 'Photo'),
      h(
        'select',
        { id: 'f-photo', name: 'is_image_exists' },
        h('option', { value: '', selected: photo === '' }, 'Any'),
        h('option', { value: 'true', selected: photo === 'true' }, 'With photo'),
        h('option', { value: 'false', selected: photo === 'false' }, 'Without photo'),
      ),
    ),
    h(
      'div',
      { class: 'field' },
      h('label', { for: 'f-limit' }, 'Per page'),
      h('select', { id: 'f-limit', name: 'limit' }, PAGE_SIZES.map((n) => h('option', { value: n, selected: n === limit }, String(n)))),
    ),
    h('div', { class: 'field buttons' }, h('button', { type: 'submit', class: 'primary' }, 'Apply'), h('button', { type: 'button', id: 'reset-filters', onclick: reset }, 'Reset')),
    h('div', { class: 'field buttons end' }, h('button', { type: 'button', id: 'download-csv', onclick: () => void downloadCsv() }, 'Download CSV')),
  );
  const status = h('p', { class: 'muted', id: 'users-status', 'aria-live': 'polite' }, 'Loading…');
  const table = h('div', { class: 'table-wrap' });
  const pager = h('nav', { class: 'pager', 'aria-label': 'Pages' });
  root.append(h('section', { class: 'card', 'aria-labelledby': 'users-title' }, h('h2', { id: 'users-title' }, 'Users'), form, status, table, pager));

  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const next = new URLSearchParams();
    for (const [k, v] of new FormData(form)) if (typeof v === 'string' && v.trim() !== '' && FILTERS.includes(k)) next.set(k, v.trim());
    // Changing the address re-renders the view with the new filters, from the first page.
    const hash = `#/users${next.size ? `?${next}` : ''}`;
    if (location.hash === hash) {
      // Same address, so no re-render: start again from the first page here.
      previous.length = 0;
      void load(null);
    } else location.hash = hash;
  });

  function reset() {
    location.hash = '#/users';
  }

  /** The query of the current filters, without paging. */
  function filterQuery() {
    const q = new URLSearchParams();
    for (const name of ['min_age', 'max_age', 'is_image_exists']) {
      const v = params.get(name);
      if (v) q.set(name, v);
    }
    return q;
  }

  async function downloadCsv() {
    const q = filterQuery();
    q.set('format', 'csv');
    const name = ['users', params.get('min_age') && `min${params.get('min_age')}`, params.get('max_age') && `max${params.get('max_age')}`, photo && (photo === 'true' ? 'with-photo' : 'without-photo')]
      .filter(Boolean)
      .join('-');
    try {
      await download(`/data?${q}`, `${name}.csv`);
    } catch (err) {
      onError(err);
    }
  }

  /** @param {string | null} from */
  async function load(from) {
    const q = filterQuery();
    q.set('limit', String(limit));
    if (from) q.set('cursor', from);
    let page;
    try {
      page = /** @type {{ data: User[]; next_cursor: string | null }} */ (await getJson(`/data?${q}`));
    } catch (err) {
      replace(status, 'Could not load users.');
      onError(err);
      return;
    }
    if (destroyed) return;
    cursor = from;
    for (const url of blobs.splice(0)) URL.revokeObjectURL(url);
    const first = previous.length * limit + 1;
    replace(status, page.data.length === 0 ? 'No user matches these filters.' : `Users ${fmtNumber(first)}–${fmtNumber(first + page.data.length - 1)}, ordered by user_id.`);
    replace(table, page.data.length === 0 ? null : usersTable(page.data));
    replace(
      pager,
      h('button', { type: 'button', id: 'prev-page', disabled: previous.length === 0, onclick: () => void load(previous.pop() ?? null) }, '← Previous'),
      h('span', { class: 'muted' }, `Page ${previous.length + 1}`),
      h(
        'button',
        {
          type: 'button',
          id: 'next-page',
          disabled: !page.next_cursor,
          onclick: () => {
            previous.push(cursor);
            void load(page.next_cursor);
          },
        },
        'Next →',
      ),
    );
  }

  /** @param {User[]} users */
  function usersTable(users) {
    return h(
      'table',
      { id: 'users-table' },
      h('caption', { class: 'sr-only' }, 'Users. Open a user for details and the photo.'),
      h('thead', null, h('tr', null, ...['Photo', 'user_id', 'First name', 'Last name', 'Born', 'Age', 'Photo file'].map((t) => h('th', { scope: 'col' }, t)))),
      h(
        'tbody',
        null,
        users.map((u) =>
          h(
            'tr',
            { 'data-user': u.user_id },
            h('td', { class: 'thumb-cell' }, thumbnail(u)),
            h('td', { class: 'key' }, h('button', { type: 'button', class: 'link', onclick: () => void openUser(u) }, u.user_id)),
            h('td', null, u.first_name),
            h('td', null, u.last_name),
            h('td', null, fmtDate(u.birthdate)),
            h('td', { class: 'num' }, String(ageOf(u.birthdate))),
            h('td', { class: 'muted' }, u.img_format ? `${u.img_format} ${u.img_width}×${u.img_height}` : '—'),
          ),
        ),
      ),
    );
  }

  /** A thumbnail fetched with the token; initials for a user without a photo. @param {User} u */
  function thumbnail(u) {
    const initials = `${u.first_name[0] ?? ''}${u.last_name[0] ?? ''}`.toUpperCase();
    if (!u.img_path) return h('span', { class: 'avatar', 'aria-label': 'No photo' }, initials);
    const img = h('img', { class: 'thumb', alt: `Photo of ${u.first_name} ${u.last_name}`, width: 48, height: 48, decoding: 'async' });
    blobUrl(photoPath(u.user_id, THUMB_WIDTH)).then(
      (url) => {
        if (destroyed) return URL.revokeObjectURL(url);
        blobs.push(url);
        img.src = url;
      },
      (/** @type {unknown} */ err) => {
        img.replaceWith(h('span', { class: 'avatar missing', title: err instanceof Error ? err.message : 'Photo unavailable' }, initials));
      },
    );
    return img;
  }

  /**
   * Where the row came from: the files' keys and versions, and the run that last changed it,
   * which opens in the same dialog. @param {Source} s
   */
  function sourceFields(s) {
    const file = (/** @type {FileVersion | null} */ f, /** @type {string} */ none) => (f ? [h('span', { class: 'key' }, f.key), h('span', { class: 'muted' }, ` etag ${f.etag}`)] : none);
    const item = (/** @type {string} */ k, /** @type {import('./dom.js').Child | import('./dom.js').Child[]} */ v) => h('div', null, h('dt', null, k), h('dd', null, v));
    const run =
      s.run_id === null
        ? 'not recorded'
        : h('button', { type: 'button', class: 'link', id: 'source-run', 'aria-label': `Run ${s.run_id}: details`, onclick: () => void openRun(/** @type {number} */ (s.run_id), onError) }, `#${s.run_id}`);
    return h(
      'section',
      { 'aria-labelledby': 'source-title' },
      h('h3', { id: 'source-title' }, 'Source'),
      h(
        'dl',
        { class: 'fields', id: 'user-source' },
        item('CSV', file(s.csv, 'not recorded')),
        item('Photo', file(s.image, 'none')),
        item('Changed by run', run),
        item('Changed at', s.changed_at ? fmtDateTime(s.changed_at) : 'not recorded'),
      ),
    );
  }

  /** @param {User} u */
  async function openUser(u) {
    const dialog = /** @type {HTMLDialogElement} */ (document.getElementById('detail-dialog'));
    const title = /** @type {HTMLElement} */ (document.getElementById('detail-title'));
    const body = /** @type {HTMLElement} */ (document.getElementById('detail-body'));
    title.textContent = `${u.first_name} ${u.last_name}`;
    const figure = h('figure', { class: 'photo' }, u.img_path ? h('p', { class: 'muted' }, 'Loading photo…') : h('span', { class: 'avatar large' }, `${u.first_name[0] ?? ''}${u.last_name[0] ?? ''}`));
    const row = (/** @type {string} */ k, /** @type {string} */ v) => h('div', null, h('dt', null, k), h('dd', null, v));
    replace(
      body,
      h(
        'div',
        { class: 'user-detail' },
        figure,
        h(
          'dl',
          { class: 'fields', id: 'user-fields' },
          row('user_id', u.user_id),
          row('First name', u.first_name),
          row('Last name', u.last_name),
          row('Born', `${fmtUtc(u.birthdate)} (${ageOf(u.birthdate)} years)`),
          row('birthts', String(u.birthts)),
          row('Photo', u.img_path ? `${u.img_path} (${u.img_format}, ${u.img_width}×${u.img_height})` : 'none'),
          row('Row id', String(u.id)),
          row('First stored', fmtDateTime(u.created_at)),
          row('Last changed', fmtDateTime(u.updated_at)),
        ),
      ),
      sourceFields(u.source),
      h('p', { class: 'buttons' }, scopeButtons({ userId: u.user_id }, `user ${u.user_id}`, onError)),
      h(
        'p',
        { class: 'buttons' },
        u.img_path
          ? h(
              'button',
              {
                type: 'button',
                onclick: () => void download(photoPath(u.user_id), `${u.user_id}.${u.img_format === 'jpeg' ? 'jpg' : u.img_format}`).catch(onError),
              },
              'Download original',
            )
          : null,
        h('button', { type: 'button', class: 'danger', id: 'erase-user', onclick: () => askErase(u) }, 'Erase user…'),
      ),
    );
    dialog.showModal();
    if (!u.img_path) return;
    try {
      const url = await blobUrl(photoPath(u.user_id, DETAIL_WIDTH));
      blobs.push(url);
      replace(figure, h('img', { src: url, alt: `Photo of ${u.first_name} ${u.last_name}`, id: 'detail-photo' }));
    } catch (err) {
      replace(figure, h('p', { class: 'muted' }, err instanceof Error ? err.message : 'Photo unavailable'));
    }
  }

  /** Asks first (Cancel has the focus); erased, the detail closes and the page reloads. @param {User} u */
  function askErase(u) {
    const confirm = /** @type {HTMLDialogElement} */ (document.getElementById('erase-dialog'));
    const detail = /** @type {HTMLDialogElement} */ (document.getElementById('detail-dialog'));
    /** @type {HTMLElement} */ (document.getElementById('erase-title')).textContent = `Erase ${u.first_name} ${u.last_name} (${u.user_id})?`;
    confirm.returnValue = '';
    confirm.addEventListener(
      'close',
      () => {
        if (confirm.returnValue !== 'confirm') return;
        getJson(`/data/${encodeURIComponent(u.user_id)}`, { method: 'DELETE' })
          .then(() => {
            detail.close();
            return load(null);
          })
          .catch(onError);
      },
      { once: true },
    );
    confirm.showModal();
  }

  void load(null);
  return {
    destroy() {
      destroyed = true;
      for (const url of blobs.splice(0)) URL.revokeObjectURL(url);
    },
  };
}
