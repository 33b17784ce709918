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
 *
 * Only the event webhook takes Basic, because Ceph radosgw can send nothing else. A browser
 * sends Basic credentials it has cached on its own, to any page's requests, so Basic on the
 * API would let other web pages read data; an event only says "look at this key again".
 */
export function accessCheck(opts: AccessOptions): AccessCheck {
  const local = localOnly({ checkHost: opts.loopback });
  const eventTokens = [opts.eventsToken, opts.apiToken].filter((t): t is string => !!t);
  const open: Middleware = (_ctx, next) => next();
  const checks: Record<Access, Middleware> = {
    api: opts.apiToken ? tokenAuth([opts.apiToken]) : local,
    events: eventTokens.length > 0 ? tokenAuth(eventTokens, { basic: true }) : local,
    public: opts.apiToken ? open : local,
  };
  return (access) => checks[access];
}

/**
 * Requires one of the given tokens, as `Authorization: Bearer <token>`, or with `basic` also
 * as the password of `Authorization: Basic` under any user name. Tokens are compared as
 * SHA-256 digests with timingSafeEqual: constant time, whatever their lengths.
 */
export function tokenAuth(tokens: string[], opts: { basic?: boolean } = {}): Middleware {
  const expected = tokens.map(digest);
  const basic = opts.basic ?? false;
  const [challenge, message] = basic
    ? ['Bearer realm="userjoin", Basic realm="userjoin"', 'a valid "Authorization: Bearer <token>" header, or Basic with the token as the password, is required']
    : ['Bearer realm="userjoin"', 'a valid "Authorization: Bearer <token>" header is required'];
  return async (ctx, next) => {
    const token = presentedToken(ctx.get('authorization'), basic);
    const given = token !== null ? digest(token) : null;
    // Every token is compared, so the time taken does not say which one matched.
    const ok = given !== null && expected.map((e) => timingSafeEqual(given, e)).includes(true);
    if (!ok) throw new HttpError(401, 'unauthorized', message, { 'WWW-Authenticate': challenge });
    await next();
  };
}

/** The token an Authorization header presents, or null. */
function presentedToken(header: string, basic: boolean): string | null {
  const bearer = /^Bearer\s+(\S+)\s*$/i.exec(header);
  if (bearer) return bearer[1]!;
  const credentials = basic ? /^Basic\s+([A-Za-z0-9+/]+={0,2})\s*$/i.exec(header) : null;
  if (!credentials) return null;
  // RFC 7617: base64 of "user:password"; a user name has no colon, a password may.
  const pair = Buffer.from(credentials[1]!, 'base64').toString('utf8');
  const colon = pair.indexOf(':');
  return colon >= 0 ? pair.slice(colon + 1) : null;
}
