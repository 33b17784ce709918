// @ts-check
import { ApiError, authRequired, forgetToken, getJson } from './api.js';
import { h, replace } from './dom.js';
import { overviewView } from './overview.js';
import { preview as previewRun } from './reprocess.js';
import { RunWatcher, runsView } from './runs.js';
import { usersView } from './users.js';

/** @typedef {{ destroy(): void }} View */

const main = /** @type {HTMLElement} */ (document.getElementById('main'));
const skip = /** @type {HTMLElement} */ (document.getElementById('skip'));
const alertBox = /** @type {HTMLElement} */ (document.getElementById('alert'));
const health = /** @type {HTMLElement} */ (document.getElementById('health'));
const runNow = /** @type {HTMLButtonElement} */ (document.getElementById('run-now'));
const reprocess = /** @type {HTMLButtonElement} */ (document.getElementById('reprocess'));
const preview = /** @type {HTMLButtonElement} */ (document.getElementById('preview'));
const signOut = /** @type {HTMLButtonElement} */ (document.getElementById('sign-out'));
const confirmDialog = /** @type {HTMLDialogElement} */ (document.getElementById('confirm-dialog'));

/** Shows what went wrong, in the service's own words, until the next success. @param {unknown} err */
export function showError(err) {
  const message = err instanceof ApiError ? err.message : err instanceof Error ? err.message : String(err);
  replace(alertBox, h('span', null, message), h('button', { type: 'button', class: 'quiet', onclick: clearError }, 'Dismiss'));
  alertBox.hidden = false;
}

export function clearError() {
  alertBox.hidden = true;
  alertBox.replaceChildren();
}

const watcher = new RunWatcher(showError);

/** @type {View | null} */
let view = null;

/** Each view by its path; an unknown path opens the first, the Overview. @type {Record<string, (query: string) => View>} */
const views = {
  '/overview': () => overviewView(main, watcher, showError),
  '/runs': () => runsView(main, watcher, showError),
  '/users': (query) => usersView(main, new URLSearchParams(query), showError),
};

function route() {
  // Only #/... (or none, the Overview) is a route: an in-page anchor such as the skip
  // link's #main keeps the view.
  const isRoute = location.hash === '' || location.hash.startsWith('#/');
  if (view && !isRoute) return;
  const [asked = '', query = ''] = (isRoute ? location.hash : '').slice(1).split('?');
  const path = Object.hasOwn(views, asked) ? asked : '/overview';
  view?.destroy();
  main.replaceChildren();
  for (const name of Object.keys(views)) {
    const link = /** @type {HTMLElement} */ (document.getElementById(`nav-${name.slice(1)}`));
    if (name === path) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  view = /** @type {(query: string) => View} */ (views[path])(query);
}

/** Starts a run (or joins the one in progress) and follows it. @param {boolean} full */
async function start(full) {
  runNow.disabled = reprocess.disabled = true;
  try {
    /** @type {import('./runs.js').Run & { joined_existing_run: boolean }} */
    const run = await getJson(`/data${full ? '?full=true' : ''}`, { method: 'POST' });
    clearError();
    watcher.follow(run);
  } catch (err) {
    showError(err);
  } finally {
    runNow.disabled = reprocess.disabled = false;
  }
}

runNow.addEventListener('click', () => void start(false));
// A run started elsewhere in the console (Reprocess on a file or a user).
window.addEventListener('userjoin:run', (e) => {
  clearError();
  watcher.follow(/** @type {CustomEvent<import('./runs.js').Run & { joined_existing_run: boolean }>} */ (e).detail);
});
preview.addEventListener('click', () => void previewRun({}, 'the next run', showError));
reprocess.addEventListener('click', () => {
  confirmDialog.returnValue = '';
  confirmDialog.showModal();
});
confirmDialog.addEventListener('close', () => {
  if (confirmDialog.returnValue === 'confirm') void start(true);
  reprocess.focus();
});

signOut.hidden = !authRequired;
signOut.addEventListener('click', () => {
  forgetToken();
  location.reload();
});

/** /health needs no token; it says whether the database and the store answer. */
async function checkHealth() {
  try {
    const res = await fetch('/health', { headers: { Accept: 'application/json' } });
    const json = /** @type {unknown} */ (await res.json());
    const body = /** @type {{ checks: { database: string; store: string } }} */ (json);
    const part = (/** @type {string} */ name, /** @type {string} */ state) =>
      h('span', { class: `dot ${state === 'ok' ? 'ok' : 'bad'}`, title: `${name}: ${state}` }, `${name} ${state === 'ok' ? 'ok' : 'unavailable'}`);
    replace(health, part('Database', body.checks.database), part('Store', body.checks.store));
  } catch {
    replace(health, h('span', { class: 'dot bad' }, 'Service unreachable'));
  }
}

// The skip link moves the focus without changing the address (Back stays one step per view).
skip.addEventListener('click', (e) => {
  e.preventDefault();
  main.focus();
});
window.addEventListener('hashchange', route);
route();
void checkHealth();
setInterval(() => void checkHealth(), 15_000);
// Its first call asks for the token, when one is needed.
watcher.start();
