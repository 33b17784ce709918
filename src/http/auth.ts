import { createHash, timingSafeEqual } from 'node:crypto';
import type { Middleware } from 'koa';
import type { Access, AccessCheck } from './api.js';
import { HttpError } from './errors.js';
import { localOnly } from './localOnly.js';

const digest = (s: string) => createHash('sha256').update(s).digest();

export interface AccessOptions {
  apiToken: string | null;
  /** Opens the 'events' routes alone. */
  eventsToken: string | null;
  /** The service listens on loopback: without a token, only loopback Host headers are served. */
  loopback: boolean;
}

/**
 * What each access means for this service. A route whose token is set needs it; without one,
 * the loopback rules guard it. A token already stops other web pages (they cannot send the
 * header), so the browser checks matter only without one. The event webhook also takes
 * EVENTS_TOKEN; with neither token it is guarded as the rest.
 */
export function accessCheck(opts: AccessOptions): AccessCheck {
  const local = localOnly({ checkHost: opts.loopback });
  const eventTokens = [opts.eventsToken, opts.apiToken].filter((t): t is string => !!t);
  const open: Middleware = (_ctx, next) => next();
  const checks: Record<Access, Middleware> = {
    api: opts.apiToken ? bearerAuth([opts.apiToken]) : local,
    events: eventTokens.length > 0 ? bearerAuth(eventTokens) : local,
    public: opts.apiToken ? open : local,
  };
  return (access) => checks[access];
}

/**
 * Requires `Authorization: Bearer <token>`, with one of the given tokens. Tokens are compared
 * as SHA-256 digests with timingSafeEqual: constant time, whatever their lengths.
 */
export function bearerAuth(tokens: string[]): Middleware {
  const expected = tokens.map(digest);
  return async (ctx, next) => {
    const header = ctx.get('authorization');
    const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
    const given = match ? digest(match[1]!) : null;
    // Every token is compared, so the time taken does not say which one matched.
    const ok = given !== null && expected.map((e) => timingSafeEqual(given, e)).includes(true);
    if (!ok) {
      throw new HttpError(401, 'unauthorized', 'a valid "Authorization: Bearer <token>" header is required', {
        'WWW-Authenticate': 'Bearer realm="userjoin"',
      });
    }
    await next();
  };
}
