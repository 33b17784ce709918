import type { Middleware } from 'koa';
import { isLoopbackHost } from '../loopback.js';
import { HttpError } from './errors.js';

const STATE_CHANGING = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);
const FOREIGN_SITE = new Set(['cross-site', 'same-site']);

export interface LocalOnlyOptions {
  /** Accept only loopback Host headers: on when the service listens on loopback. */
  checkHost: boolean;
}

/**
 * Protects a service that has no API token from the web pages its user visits. Use it only
 * without a token: with one, a page cannot send the bearer header, so auth already blocks it.
 *
 * - Host check (DNS rebinding): a page on evil.example can point its own name at 127.0.0.1,
 *   and its requests then carry `Host: evil.example`. Only loopback names are accepted.
 * - Origin check (CSRF): a page can POST cross-origin without reading the answer, which is
 *   enough to start a run. Browsers send Origin on such requests; tools such as curl send
 *   none, so a request without Origin passes.
 * - Sec-Fetch-Site check, on every method: an <img> or a fetch from another page carries no
 *   Origin on GET, but browsers mark it cross-site or same-site. Both are refused, so the
 *   service does no work for it. same-site too: a site ignores the port, so a page on
 *   http://127.0.0.1:8080 is same-site to this service, and same-site always means another
 *   origin (the service's own pages send same-origin). `none` (a typed URL, a bookmark) and
 *   no header (curl, older browsers) pass. A link from another site is refused as well.
 */
export function localOnly(opts: LocalOnlyOptions): Middleware {
  return async (ctx, next) => {
    const host = ctx.get('host');
    if (opts.checkHost && !isLoopbackHostHeader(host)) {
      throw new HttpError(403, 'forbidden_host', 'this service answers only to localhost; set API_TOKEN to serve other host names');
    }
    if (FOREIGN_SITE.has(ctx.get('sec-fetch-site'))) {
      throw new HttpError(403, 'cross_site', 'requests from other web pages are refused; open the service by its URL, or set API_TOKEN to use it from other pages');
    }
    const origin = ctx.get('origin');
    if (origin !== '' && STATE_CHANGING.has(ctx.method) && !sameOrigin(origin, `${ctx.protocol}://${host}`)) {
      throw new HttpError(403, 'cross_origin', 'cross-origin requests that change state are refused; set API_TOKEN to use the API from other origins');
    }
    await next();
  };
}

/** `localhost`, `127.x.x.x` or `[::1]`, each with an optional port. An absent Host is refused. */
export function isLoopbackHostHeader(host: string): boolean {
  const m = /^(\[[0-9a-f:.]+\]|[^:[\]]+)(:\d{1,5})?$/i.exec(host.trim());
  return m !== null && isLoopbackHost(m[1]!);
}

function sameOrigin(origin: string, own: string): boolean {
  try {
    // URL normalizes case and default ports on both sides. "null" (sandboxed frames, file://)
    // does not parse, so it is refused.
    return new URL(origin).origin === new URL(own).origin;
  } catch {
    return false;
  }
}
