// @ts-check
// Small DOM helpers. Text from the API (names, file keys, reasons) is hostile input: it only
// ever goes in as text nodes or attribute values, never as HTML.

/** @typedef {Node | string | number | null | undefined | false} Child */

/**
 * An element with attributes and children. `on<event>` attributes add listeners; `false`,
 * null and undefined leave an attribute out.
 * @template {keyof HTMLElementTagNameMap} K
 * @param {K} tag
 * @param {Record<string, unknown> | null} [attrs]
 * @param {...(Child | Child[])} children
 * @returns {HTMLElementTagNameMap[K]}
 */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs ?? {})) {
    if (value === false || value === null || value === undefined) continue;
    if (name.startsWith('on') && typeof value === 'function') el.addEventListener(name.slice(2), /** @type {EventListener} */ (value));
    else if (typeof value === 'string' || typeof value === 'number') el.setAttribute(name, String(value));
    else if (value === true) el.setAttribute(name, '');
  }
  append(el, children);
  return el;
}

/**
 * @param {Element} el
 * @param {Array<Child | Child[]>} children
 */
export function append(el, children) {
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(typeof child === 'number' ? String(child) : child);
  }
}

/** @param {Element} el @param {...(Child | Child[])} children */
export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
}

const number = new Intl.NumberFormat();
/** @param {number} n */
export const fmtNumber = (n) => number.format(n);

const dateTime = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'medium' });
/** @param {string} iso */
export const fmtDateTime = (iso) => dateTime.format(new Date(iso));

const utcDateTime = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'medium', timeZone: 'UTC' });
/** Birth times are given in UTC, so they are shown in UTC. @param {string} iso */
export const fmtUtc = (iso) => `${utcDateTime.format(new Date(iso))} UTC`;

/** The date part of an ISO timestamp, as stored (UTC). @param {string} iso */
export const fmtDate = (iso) => iso.slice(0, 10);

const relative = new Intl.RelativeTimeFormat(undefined, { numeric: 'auto' });
/** "3 minutes ago". @param {string} iso @param {number} [now] */
export function fmtAgo(iso, now = Date.now()) {
  const s = (Date.parse(iso) - now) / 1000;
  for (const [unit, size] of /** @type {Array<[Intl.RelativeTimeFormatUnit, number]>} */ ([['day', 86400], ['hour', 3600], ['minute', 60]])) {
    if (Math.abs(s) >= size) return relative.format(Math.round(s / size), unit);
  }
  return relative.format(Math.round(s), 'second');
}

/** "1 h 02 min", "4.2 s". @param {number} ms */
export function fmtDuration(ms) {
  if (ms < 10_000) return `${(ms / 1000).toFixed(1)} s`;
  const s = Math.round(ms / 1000);
  if (s < 3600) return `${Math.floor(s / 60)} min ${String(s % 60).padStart(2, '0')} s`;
  return `${Math.floor(s / 3600)} h ${String(Math.floor((s % 3600) / 60)).padStart(2, '0')} min`;
}

/** Age in whole years at now, as the API's age filters count it (calendar time). @param {string} iso */
export function ageOf(iso, now = new Date()) {
  const born = new Date(iso);
  let years = now.getUTCFullYear() - born.getUTCFullYear();
  const before =
    now.getUTCMonth() < born.getUTCMonth() || (now.getUTCMonth() === born.getUTCMonth() && now.getUTCDate() < born.getUTCDate());
  if (before) years--;
  return years;
}

/** The page's one detail dialog (index.html), with its title and body. */
export function detailDialog() {
  return {
    dialog: /** @type {HTMLDialogElement} */ (document.getElementById('detail-dialog')),
    title: /** @type {HTMLElement} */ (document.getElementById('detail-title')),
    body: /** @type {HTMLElement} */ (document.getElementById('detail-body')),
  };
}
