import type { Middleware } from 'koa';
import { isLoopbackHost } from '../loopback.js';
import { HttpError } from './errors.js';

const STATE_CHANGING = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);

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
 */
export function localOnly(opts: LocalOnlyOptions): Middleware {
  return async (ctx, next) => {
    const host = ctx.get('host');
    if (opts.checkHost && !isLoopbackHostHeader(host)) {
      throw new HttpError(403, 'forbidden_host', 'this service answers only to localhost; set API_TOKEN to serve other host names');
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
