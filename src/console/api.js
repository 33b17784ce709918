// @ts-check
// Every call to the service goes through here. With API_TOKEN set, the token is asked for
// once, kept in sessionStorage (this tab only), and sent as a header: never in a URL. So
// photos and downloads are fetched too, and shown from blob: URLs.

const TOKEN_KEY = 'userjoin.token';

/** The service says in the page whether it wants a token, so the console asks before it calls. */
export const authRequired = document.querySelector('meta[name="userjoin-auth"]')?.getAttribute('content') === 'bearer';

export class ApiError extends Error {
  /** @param {number} status @param {string} code @param {string} message */
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export const getToken = () => sessionStorage.getItem(TOKEN_KEY);

export function forgetToken() {
  sessionStorage.removeItem(TOKEN_KEY);
}

/** @type {Promise<void> | null} */
let asking = null;

/** Resolves once a token is stored; one dialog serves every caller waiting at the same time. */
function ensureToken(message = '') {
  if (!authRequired || getToken()) return Promise.resolve();
  asking ??= askForToken(message).finally(() => (asking = null));
  return asking;
}

/** @param {string} message */
function askForToken(message) {
  const dialog = /** @type {HTMLDialogElement} */ (document.getElementById('token-dialog'));
  const form = /** @type {HTMLFormElement} */ (document.getElementById('token-form'));
  const input = /** @type {HTMLInputElement} */ (document.getElementById('token-input'));
  const text = /** @type {HTMLElement} */ (document.getElementById('token-message'));
  if (message) text.textContent = message;
  input.value = '';
  return new Promise((resolve) => {
    // Nothing works without a token: Escape does not close this dialog.
    /** @param {Event} e */
    const noCancel = (e) => e.preventDefault();
    dialog.addEventListener('cancel', noCancel);
    form.addEventListener(
      'submit',
      () => {
        sessionStorage.setItem(TOKEN_KEY, input.value.trim());
        input.value = '';
        dialog.removeEventListener('cancel', noCancel);
        resolve(undefined);
      },
      { once: true },
    );
    dialog.showModal();
    input.focus();
  });
}

/**
 * A request to the service. Answers 2xx (and 304) come back; anything else throws ApiError
 * with the service's own message. A refused token is forgotten and asked for again.
 * @param {string} path
 * @param {{ method?: string }} [opts]
 * @returns {Promise<Response>}
 */
export async function request(path, opts = {}) {
  let message = '';
  for (;;) {
    await ensureToken(message);
    const token = getToken();
    /** @type {Record<string, string>} */
    const headers = { Accept: 'application/json' };
    if (token) headers.Authorization = `Bearer ${token}`;
    let res;
    try {
      res = await fetch(path, { method: opts.method ?? 'GET', headers });
    } catch {
      throw new ApiError(0, 'unreachable', 'The service cannot be reached. Is it running?');
    }
    if (res.status === 401 && authRequired) {
      forgetToken();
      message = 'That token was refused. Enter the API token the service was started with.';
      continue;
    }
    if (!res.ok) throw await errorOf(res);
    return res;
  }
}

/** @param {Response} res */
async function errorOf(res) {
  try {
    const json = /** @type {unknown} */ (await res.json());
    const body = /** @type {{ error?: { code?: string; message?: string } }} */ (json);
    if (body.error?.message) return new ApiError(res.status, body.error.code ?? 'error', body.error.message);
  } catch {
    // Not our JSON error: fall through.
  }
  return new ApiError(res.status, 'http_error', `The service answered ${res.status} ${res.statusText}`);
}

/**
 * @template T
 * @param {string} path
 * @param {{ method?: string }} [opts]
 * @returns {Promise<T>}
 */
export async function getJson(path, opts) {
  const body = /** @type {unknown} */ (await (await request(path, opts)).json());
  return /** @type {T} */ (body);
}

/** A blob: URL of what path answers; revoke it when done. @param {string} path */
export async function blobUrl(path) {
  return URL.createObjectURL(await (await request(path)).blob());
}

/**
 * Saves what path answers as a file. Without a token, the browser downloads it itself
 * (streamed to disk); with one, it is fetched with the header first.
 * @param {string} path
 * @param {string} filename
 */
export async function download(path, filename) {
  const a = document.createElement('a');
  a.download = filename;
  if (!authRequired) {
    a.href = path;
    a.click();
    return;
  }
  const url = await blobUrl(path);
  a.href = url;
  a.click();
  // The download has its own copy once started.
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}
